// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Tier 3, BTF tracepoints (no trampolines: older kernels, arm64 < 6.0, locked-down hosts): SIGKILL.
 * It never refuses: the kill comes with (sys_enter) or after (sys_exit) the syscall, which completes.
 *  - exec: sched_process_exec fires once the new image is installed and before its first instruction;
 *    the queued SIGKILL is delivered on the way back to userspace.
 *  - open of a protected file (open, openat, openat2, creat, open_by_handle_at): raw sys_exit looks
 *    the new fd up; the opener dies before open() returns, so it never writes (an O_TRUNC has already
 *    truncated).
 *  - ftruncate of a protected file; truncate/rename/link/unlink of a name whose directory is protected
 *    (a `dir` rule), where the tier can find that directory: a single-component name relative to a
 *    dirfd or the cwd, or /name. Raw sys_exit with ret == 0: the effect has happened. Deeper paths are
 *    not resolved here (no path walk in BPF), except unlink and truncate on ext4, whose own tracepoints
 *    give the inode: the LSM and fentry tiers see the rest.
 *  - connect, and sendto/sendmsg/sendmmsg with a destination address (UDP, TCP Fast Open): raw
 *    sys_enter; the process dies when the call returns (a TCP SYN or one datagram may leave).
 *  - init_module/finit_module, bpf(), io_uring_setup(): raw sys_enter; the call completes, the
 *    caller dies on its way back (io_uring: the tier cannot see the ring's operations, so the ring
 *    itself is the rule's object).
 *  - A process that shares the fd table of a process killed for an open or a send (CLONE_FILES) is
 *    killed at its next syscall's entry (endura_tainted): that syscall still completes.
 * Every syscall is decoded with its ABI: 32-bit compat numbers and registers (endura_syscalls.bpf.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

static __always_inline void endura_tp_note_kill(__u32 type, __u32 rule_id);
#define ENDURA_NOTE_KILL(type, rule_id) endura_tp_note_kill(type, rule_id)

#include "endura_policy.bpf.h"
#include "endura_syscalls.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ENDURA_AT_FDCWD -100
#define ENDURA_AT_REMOVEDIR 0x200
#define ENDURA_SIGKILL_BIT (1UL << (ENDURA_SIGKILL - 1))
#define ENDURA_MAX_MMSG 16 /* sendmmsg entries checked (the kernel takes up to 1024) */
#define ENDURA_SYS_CONNECT 3 /* socketcall(2) calls: include/uapi/linux/net.h */
#define ENDURA_SYS_SENDTO 11
#define ENDURA_SYS_SENDMSG 16
#define ENDURA_SYS_SENDMMSG 20

/* fd tables (struct files_struct *) of processes killed for an open or a send, and how to recognise them */
struct endura_taint {
	__u32 type;    /* the event type of the kill */
	__u32 rule_id;
	__u32 detail;
	__s32 fd;      /* the fd the killed process got (open) or used (send) ... */
	__u64 file;    /* ... its struct file, inode number and f_mode: once every process using the table */
	__u64 ino;     /* is gone, the files_struct and the struct file can both be recycled for another */
	__u32 fmode;   /* process (seen: the next process of a test loop); a socket's inode number is new, */
	__u32 pad;     /* and a protected file at that fd with that mode was itself a denied open */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct endura_taint);
} endura_tainted SEC(".maps");

/*
 * > 0 once endura_tainted has an entry: the cheap test sys_enter makes on every syscall. A map of its own,
 * not a field of endura_config: the config map is read-only for programs and frozen (self-protection).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} endura_tainted_any SEC(".maps");

static __always_inline bool endura_tainted_present(void)
{
	__u32 zero = 0;
	__u32 *any = bpf_map_lookup_elem(&endura_tainted_any, &zero);

	return any && *any;
}

/* what the last policy call on this CPU killed for (type 0: nothing) */
struct endura_tp_kill {
	__u32 type;
	__u32 rule_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct endura_tp_kill);
} endura_tp_last SEC(".maps");

/* a file name read from user memory (too big for the 512-byte stack next to an event) */
struct endura_tp_name {
	char name[ENDURA_PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct endura_tp_name);
} endura_tp_names SEC(".maps");

static __always_inline void endura_tp_note_kill(__u32 type, __u32 rule_id)
{
	__u32 zero = 0;
	struct endura_tp_kill *last = bpf_map_lookup_elem(&endura_tp_last, &zero);

	if (last) {
		last->type = type;
		last->rule_id = rule_id;
	}
}

static __always_inline struct endura_tp_kill *endura_tp_kill_reset(void)
{
	__u32 zero = 0;
	struct endura_tp_kill *last = bpf_map_lookup_elem(&endura_tp_last, &zero);

	if (last)
		last->type = 0;
	return last;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(endura_tp_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	endura_exec_policy(bprm, ENDURA_TIER_TRACEPOINT, false);
	return 0;
}

static __always_inline struct file *endura_fd_file(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *file = NULL;

	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) < 0)
		return NULL;
	return file;
}

static __always_inline bool endura_sigkill_pending(void)
{
	struct task_struct *task = bpf_get_current_task_btf();

	return task->pending.signal.sig[0] & ENDURA_SIGKILL_BIT;
}

/* After a policy call: when it killed, mark the caller's fd table (fd: the object's fd in it). */
static __always_inline void endura_taint_after(struct endura_tp_kill *last, struct endura_config *cfg, long fd,
					       __u32 detail)
{
	struct endura_taint taint = {};
	struct file *file;
	__u64 files;

	if (!last || !last->type)
		return;
	files = (__u64)bpf_get_current_task_btf()->files;
	if (!files)
		return;
	taint.type = last->type;
	taint.rule_id = last->rule_id;
	taint.detail = detail;
	taint.fd = fd;
	file = endura_fd_file(fd);
	taint.file = (__u64)file;
	taint.ino = BPF_CORE_READ(file, f_inode, i_ino);
	taint.fmode = BPF_CORE_READ(file, f_mode);
	if (bpf_map_update_elem(&endura_tainted, &files, &taint, BPF_ANY) == 0) {
		__u32 zero = 0;
		__u32 *any = bpf_map_lookup_elem(&endura_tainted_any, &zero);

		if (any && !*any)
			__sync_fetch_and_add(any, 1);
	}
}

/*
 * A process sharing the fd table of one killed for an open or a send holds the same fds: kill it at
 * its next syscall (which still completes). A files_struct recycled for another process is recognised
 * (struct endura_taint) and left alone.
 */
static __always_inline void endura_check_tainted(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct endura_taint *taint;
	struct endura_event *e;
	struct file *file;
	__u64 files = (__u64)task->files;
	__u32 action;
	int kill_result;

	taint = bpf_map_lookup_elem(&endura_tainted, &files);
	if (!taint || endura_sigkill_pending())
		return;
	file = endura_fd_file(taint->fd);
	if (!file || (__u64)file != taint->file || BPF_CORE_READ(file, f_inode, i_ino) != taint->ino ||
	    BPF_CORE_READ(file, f_mode) != taint->fmode)
		return;
	endura_decide(ENDURA_RULE_KILL, false, true, &action, &kill_result);
	e = endura_event_begin(taint->type, ENDURA_TIER_TRACEPOINT, taint->rule_id, action, kill_result);
	if (e) {
		e->detail = taint->detail;
		e->dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
		e->ino = BPF_CORE_READ(file, f_inode, i_ino);
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(file, f_path.dentry, d_name.name));
		bpf_ringbuf_submit(e, 0);
	}
}

/* ---------------------------------------------------------------- sys_exit: opens and file changes */

#define ENDURA_CHECK_SKIP_SELF (1 << 8)	/* a name in directory `dentry`: only its `below` verdicts */
#define ENDURA_CHECK_USER_NAME (1 << 9)	/* the event's name: the one endura_name_op() read (else the dentry's) */
#define ENDURA_CHECK_NAME_AT1 (1 << 10) /* ... after its leading '/' */
#define ENDURA_CHECK_FMODE_SHIFT 4	/* open events: f_mode (read 1, write 2) in bits 4-5 */

/* The write verdict of a `path` rule on `name` (kernel memory) in the directory dir, merged into *best. */
static __always_inline void endura_name_verdict(struct dentry *dir, const char *name, struct endura_verdict *best)
{
	struct endura_name_key key = {};
	struct endura_file_key dir_key;
	struct endura_file_rule *rule;

	if (endura_key_of_dentry(dir, &dir_key) != 0)
		return;
	key.dev = dir_key.dev;
	key.ino = dir_key.ino;
	if (bpf_probe_read_kernel_str(key.name, sizeof(key.name), name) < 0)
		return;
	rule = bpf_map_lookup_elem(&endura_file_names, &key);
	if (rule && rule->self[ENDURA_SLOT_WRITE].action > best->action)
		*best = rule->self[ENDURA_SLOT_WRITE];
}

/*
 * The one file check of sys_exit: (mnt, dentry) looked up in endura_files for the `wanted` slots
 * (flags bits 0-1), reported as FILE_OPEN_DENIED (op 0: an open, detail f_mode) or FILE_OP_DENIED
 * (detail op), and killed for. Returns whether a rule matched. A global function, so that the verifier
 * checks the ancestor walk once for opens, ftruncate and names (pointers arrive as numbers: only read
 * through bpf_probe_read_kernel).
 */
__noinline int endura_file_check(__u64 mnt, __u64 dentry, __u32 flags, __u32 op)
{
	struct endura_config *cfg = endura_cfg();
	struct endura_file_key key = {};
	struct endura_verdict best = {};
	struct endura_tp_name *buf;
	struct endura_event *e;
	__u32 action, zero = 0;
	int kill_result;

	if (!cfg || !dentry)
		return 0;
	buf = bpf_map_lookup_elem(&endura_tp_names, &zero);
	if (flags & ENDURA_CHECK_SKIP_SELF) { /* constant arguments: the verifier walks each form once */
		endura_lookup_dentry(&endura_files, NULL, (struct vfsmount *)mnt, (struct dentry *)dentry, true, true,
				     1 << ENDURA_SLOT_WRITE, &key, &best);
		/* the name in that directory: a `path` rule on it (the names map), e.g. renamed over or created */
		if (cfg->name_rules && (flags & ENDURA_CHECK_USER_NAME) && buf)
			endura_name_verdict((struct dentry *)dentry, &buf->name[(flags & ENDURA_CHECK_NAME_AT1) ? 1 : 0],
					    &best);
	} else {
		endura_lookup_dentry(&endura_files, &endura_file_names, (struct vfsmount *)mnt, (struct dentry *)dentry,
				     cfg->file_subtree_rules != 0, false, flags & 3, &key, &best);
	}
	if (best.action == ENDURA_RULE_NONE)
		return 0;
	endura_decide(best.action, false, true, &action, &kill_result);
	e = endura_event_begin(op ? ENDURA_EVENT_FILE_OP_DENIED : ENDURA_EVENT_FILE_OPEN_DENIED, ENDURA_TIER_TRACEPOINT,
			       best.rule_id, action, kill_result);
	if (!e)
		return 1;
	e->dev = key.dev;
	e->ino = key.ino;
	e->detail = op ? op : (flags >> ENDURA_CHECK_FMODE_SHIFT) & 3;
	if ((flags & ENDURA_CHECK_USER_NAME) && buf)
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename),
					  &buf->name[(flags & ENDURA_CHECK_NAME_AT1) ? 1 : 0]);
	else
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename),
					  BPF_CORE_READ((struct dentry *)dentry, d_name.name));
	bpf_ringbuf_submit(e, 0);
	return 1;
}

/* an open file (by fd): its own rule and its directories'; op 0 = it was just opened */
static __always_inline int endura_fd_check(struct endura_config *cfg, struct file *file, __u32 op)
{
	__u32 fmode, wanted;

	if (!file)
		return 0;
	if (op) {
		wanted = 1 << ENDURA_SLOT_WRITE;
		fmode = 0;
	} else {
		fmode = BPF_CORE_READ(file, f_mode) & (ENDURA_FMODE_READ | ENDURA_FMODE_WRITE);
		wanted = 0;
		if ((fmode & ENDURA_FMODE_READ) && cfg->file_read_rules)
			wanted |= 1 << ENDURA_SLOT_READ;
		if (fmode & ENDURA_FMODE_WRITE)
			wanted |= 1 << ENDURA_SLOT_WRITE;
		if (!wanted)
			return 0; /* e.g. a read-only open while no rule denies reading: no lookup at all */
	}
	return endura_file_check((__u64)BPF_CORE_READ(file, f_path.mnt), (__u64)BPF_CORE_READ(file, f_path.dentry),
				 wanted | fmode << ENDURA_CHECK_FMODE_SHIFT, op);
}

/*
 * Whether the name endura_name_op() read has a '/' after its first character (a path of more than one
 * component). A global function: its answer is a number the verifier does not know, so what follows is
 * not explored once per position of the loop's exit (24,000 instructions instead of 2,000).
 */
__noinline int endura_name_has_dir(void)
{
	struct endura_tp_name *buf;
	__u32 zero = 0;
	int i;

	buf = bpf_map_lookup_elem(&endura_tp_names, &zero);
	if (!buf)
		return 1;
	for (i = 1; i < ENDURA_PATH_LEN; i++) {
		if (buf->name[i] == '\0')
			return 0;
		if (buf->name[i] == '/')
			return 1;
	}
	return 0;
}

/*
 * A name (dirfd, user path) changed by a path syscall: when the directory it is in can be found without
 * a path walk, its `below` (dir rule) write verdicts apply. Found: a single component relative to the
 * dirfd or the cwd, or "/name" (the task's root). Returns whether it reported (and killed). Global:
 * verified once for its nine call sites.
 */
__noinline int endura_name_op(__s64 dirfd, __u64 upath, __u32 op)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct endura_tp_name *buf;
	struct vfsmount *mnt;
	struct dentry *dir;
	struct file *file;
	__u32 zero = 0, flags = (1 << ENDURA_SLOT_WRITE) | ENDURA_CHECK_SKIP_SELF | ENDURA_CHECK_USER_NAME;
	int len;

	buf = bpf_map_lookup_elem(&endura_tp_names, &zero);
	if (!buf || !upath)
		return 0;
	len = bpf_probe_read_user_str(buf->name, sizeof(buf->name), (const void *)upath);
	if (len <= 1 || endura_name_has_dir())
		return 0; /* a deeper path: not resolved by this tier */
	if (buf->name[0] == '/') {
		flags |= ENDURA_CHECK_NAME_AT1;
		mnt = BPF_CORE_READ(task, fs, root.mnt);
		dir = BPF_CORE_READ(task, fs, root.dentry);
	} else if ((int)dirfd == ENDURA_AT_FDCWD) {
		mnt = BPF_CORE_READ(task, fs, pwd.mnt);
		dir = BPF_CORE_READ(task, fs, pwd.dentry);
	} else {
		file = endura_fd_file((int)dirfd);
		if (!file)
			return 0;
		mnt = BPF_CORE_READ(file, f_path.mnt);
		dir = BPF_CORE_READ(file, f_path.dentry);
	}
	return endura_file_check((__u64)mnt, (__u64)dir, flags, op);
}

static __always_inline void endura_open_exit(struct pt_regs *regs, struct endura_config *cfg, int sc, bool compat,
					     long ret)
{
	struct endura_tp_kill *last;
	struct file *file;
	__u64 flags = 0;

	if (!cfg->file_read_rules) { /* only write rules: a read-only open cannot match (the common case) */
		if (sc == ENDURA_SC_OPENAT || sc == ENDURA_SC_OPEN_BY_HANDLE)
			flags = endura_sc_arg(regs, compat, 2);
		else if (sc == ENDURA_SC_OPEN)
			flags = endura_sc_arg(regs, compat, 1);
		else if (sc == ENDURA_SC_OPENAT2) /* struct open_how { __u64 flags; ... } */
			bpf_probe_read_user(&flags, sizeof(flags), (void *)endura_sc_arg(regs, compat, 2));
		else
			flags = 1; /* creat: O_WRONLY */
		if ((flags & ENDURA_O_ACCMODE) == ENDURA_O_RDONLY)
			return; /* (O_RDONLY|O_TRUNC is undefined; Linux truncates only with write access) */
	}
	last = endura_tp_kill_reset();
	file = endura_fd_file(ret);
	if (endura_fd_check(cfg, file, 0))
		endura_taint_after(last, cfg, ret, 0);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(endura_tp_sys_exit, struct pt_regs *regs, long ret)
{
	struct endura_config *cfg;
	bool compat, layout32;
	int sc;

	/* runs at the exit of every syscall: the cheapest tests first */
	if (ret < 0)
		return 0;
	sc = endura_sc_classify(regs, ENDURA_SC_NR(regs), true, &compat, &layout32);
	if (sc == ENDURA_SC_NONE)
		return 0;
	cfg = endura_cfg();
	if (!cfg || !cfg->file_rules)
		return 0;
	if (sc <= ENDURA_SC_OPEN_BY_HANDLE) {
		endura_open_exit(regs, cfg, sc, compat, ret);
		return 0;
	}
	if (ret != 0 || endura_sigkill_pending())
		return 0; /* failed, or killed already (ext4's tracepoints saw this unlink or truncate) */
	if (sc == ENDURA_SC_FTRUNCATE) {
		endura_fd_check(cfg, endura_fd_file((int)endura_sc_arg(regs, compat, 0)), ENDURA_FILE_OP_TRUNCATE);
		return 0;
	}
	if (!cfg->file_subtree_rules && !cfg->name_rules)
		return 0; /* only directory rules and protected names can match a name here */
	switch (sc) {
	case ENDURA_SC_TRUNCATE:
		endura_name_op(ENDURA_AT_FDCWD, endura_sc_arg(regs, compat, 0), ENDURA_FILE_OP_TRUNCATE);
		break;
	case ENDURA_SC_RENAME:
		if (!endura_name_op(ENDURA_AT_FDCWD, endura_sc_arg(regs, compat, 0), ENDURA_FILE_OP_RENAME_FROM))
			endura_name_op(ENDURA_AT_FDCWD, endura_sc_arg(regs, compat, 1), ENDURA_FILE_OP_RENAME_TO);
		break;
	case ENDURA_SC_RENAMEAT:
		if (!endura_name_op(endura_sc_arg(regs, compat, 0), endura_sc_arg(regs, compat, 1),
				    ENDURA_FILE_OP_RENAME_FROM))
			endura_name_op(endura_sc_arg(regs, compat, 2), endura_sc_arg(regs, compat, 3),
				       ENDURA_FILE_OP_RENAME_TO);
		break;
	case ENDURA_SC_LINK:
		endura_name_op(ENDURA_AT_FDCWD, endura_sc_arg(regs, compat, 1), ENDURA_FILE_OP_LINK_TO);
		break;
	case ENDURA_SC_LINKAT:
		endura_name_op(endura_sc_arg(regs, compat, 2), endura_sc_arg(regs, compat, 3), ENDURA_FILE_OP_LINK_TO);
		break;
	case ENDURA_SC_UNLINK:
		endura_name_op(ENDURA_AT_FDCWD, endura_sc_arg(regs, compat, 0), ENDURA_FILE_OP_UNLINK);
		break;
	case ENDURA_SC_UNLINKAT:
		endura_name_op(endura_sc_arg(regs, compat, 0), endura_sc_arg(regs, compat, 1),
			       endura_sc_arg(regs, compat, 2) & ENDURA_AT_REMOVEDIR ? ENDURA_FILE_OP_RMDIR
										   : ENDURA_FILE_OP_UNLINK);
		break;
	}
	return 0;
}

/*
 * An interpreter reading an exec-denied file (`sh x.sh`, a `#!` script, `ld.so ./payload`): a program of
 * its own on the raw sys_exit (attached with exec rules), not the open calls' own exit tracepoints
 * (those cost an open+close loop ~35 %, measured with tests/integration/test_sensor_bench.py) and not
 * inside endura_tp_sys_exit (both walks in one program tripled its verifier cost).
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(endura_tp_sys_exit_interp, struct pt_regs *regs, long ret)
{
	struct endura_config *cfg;
	bool compat, layout32;
	int sc;

	if (ret < 0)
		return 0;
	sc = endura_sc_classify(regs, ENDURA_SC_NR(regs), true, &compat, &layout32);
	if (sc == ENDURA_SC_NONE || sc > ENDURA_SC_OPEN_BY_HANDLE)
		return 0; /* not an open: 32-bit opens are decoded too */
	cfg = endura_cfg();
	if (!cfg || !cfg->exec_interpreters || !endura_current_is_interpreter(cfg))
		return 0; /* the common case: not an interpreter, nothing read from the fd table */
	endura_interpreted_policy(endura_fd_file(ret), ENDURA_TIER_TRACEPOINT, false);
	return 0;
}

/*
 * ext4's own tracepoints (the root filesystem of most hosts): they see unlink and truncate of any path,
 * however deep, with the inode itself, in the caller's context. Loaded only where the kernel has them
 * (Program.needs in enforce.py). The walk up is not possible without the mount: the file's own rules
 * and its directory's `dir` rules count, not those of directories further up.
 */
#define ENDURA_PF_KTHREAD 0x00200000

static __always_inline void endura_ext4_op(struct dentry *dentry, __u32 op)
{
	struct endura_config *cfg = endura_cfg();
	struct endura_tp_name *buf;
	__u32 zero = 0;

	if (!cfg || !cfg->file_rules || !dentry || (bpf_get_current_task_btf()->flags & ENDURA_PF_KTHREAD))
		return;
	if (endura_file_check(0, (__u64)dentry, 1 << ENDURA_SLOT_WRITE, op))
		return;
	buf = bpf_map_lookup_elem(&endura_tp_names, &zero);
	if (!buf || (!cfg->file_subtree_rules && !cfg->name_rules))
		return;
	bpf_probe_read_kernel_str(buf->name, sizeof(buf->name), BPF_CORE_READ(dentry, d_name.name));
	endura_file_check(0, (__u64)BPF_CORE_READ(dentry, d_parent),
			  (1 << ENDURA_SLOT_WRITE) | ENDURA_CHECK_SKIP_SELF | ENDURA_CHECK_USER_NAME, op);
}

/* (struct inode *parent, struct dentry *dentry): read as a number, for endura_file_check()'s arguments */
SEC("tp_btf/ext4_unlink_enter")
int endura_tp_ext4_unlink(__u64 *ctx)
{
	struct dentry *dentry = NULL;

	bpf_probe_read_kernel(&dentry, sizeof(dentry), &ctx[1]);
	endura_ext4_op(dentry, ENDURA_FILE_OP_UNLINK);
	return 0;
}

/*
 * ext4_truncate(): truncate(2), ftruncate(2), O_TRUNC. Not for inodes without a name (i_nlink 0): a
 * deleted file is truncated when its last user lets go (possibly any process), which is no attack.
 */
SEC("tp_btf/ext4_truncate_enter")
int BPF_PROG(endura_tp_ext4_truncate, struct inode *inode)
{
	struct hlist_node *alias;

	if (!BPF_CORE_READ(inode, i_nlink))
		return 0;
	alias = BPF_CORE_READ(inode, i_dentry.first);
	if (!alias)
		return 0;
	endura_ext4_op((struct dentry *)((void *)alias - bpf_core_field_offset(struct dentry, d_u.d_alias)),
		       ENDURA_FILE_OP_TRUNCATE);
	return 0;
}

/* ---------------------------------------------------------------- sys_enter: sends, modules, bpf(), io_uring */

/*
 * A user sockaddr (len bytes) through the net rules; fd: the socket (for the fd-table mark). A global
 * function: verified once however many call sites (connect, sendto, sendmsg, sendmmsg's loop, socketcall).
 */
__noinline int endura_sockaddr(__s64 fd, __u64 uaddr, __s64 len, __u32 how)
{
	struct endura_config *cfg = endura_cfg();
	struct endura_tp_kill *last;
	__u8 sa[32] = {};

	if (!cfg || !uaddr || len < 4) /* a send without an address: to the connected peer, checked at connect */
		return 0;
	/* fixed sizes (a length the verifier can bound): sockaddr_in6, else sockaddr_in near a page's end */
	if (bpf_probe_read_user(sa, 28, (void *)uaddr) < 0 && bpf_probe_read_user(sa, 16, (void *)uaddr) < 0)
		return 0;
	last = endura_tp_kill_reset();
	endura_net_policy(sa, how, ENDURA_TIER_TRACEPOINT, false);
	endura_taint_after(last, cfg, fd, how);
	return 0;
}

/* a user msghdr: its msg_name (32-bit layout: struct compat_msghdr { u32 msg_name; s32 msg_namelen; ...}) */
static __always_inline void endura_msghdr(long fd, unsigned long umsg, bool layout32)
{
	__u64 name = 0;
	__s32 namelen = 0;
	__u32 name32 = 0;

	if (layout32) {
		if (bpf_probe_read_user(&name32, 4, (void *)umsg) < 0 ||
		    bpf_probe_read_user(&namelen, 4, (void *)(umsg + 4)) < 0)
			return;
		name = name32;
	} else if (bpf_probe_read_user(&name, 8, (void *)umsg) < 0 ||
		   bpf_probe_read_user(&namelen, 4, (void *)(umsg + 8)) < 0) {
		return;
	}
	endura_sockaddr(fd, name, namelen, ENDURA_NET_SENDMSG);
}

/* sendmmsg: the first ENDURA_MAX_MMSG messages (struct mmsghdr: 64 bytes, compat 32) */
static __always_inline void endura_mmsghdr(long fd, unsigned long uvec, unsigned long vlen,
					   bool layout32)
{
	int i;

	for (i = 0; i < ENDURA_MAX_MMSG; i++) {
		if (i >= vlen || endura_sigkill_pending())
			break;
		endura_msghdr(fd, uvec + i * (layout32 ? 32 : 64), layout32);
	}
}

/* i386 socketcall(call, args): the network calls among them, arguments in a user array of u32 */
static __always_inline void endura_socketcall(unsigned long call, unsigned long uargs)
{
	__u32 a[6] = {};

	if (call != ENDURA_SYS_CONNECT && call != ENDURA_SYS_SENDTO && call != ENDURA_SYS_SENDMSG &&
	    call != ENDURA_SYS_SENDMMSG)
		return;
	if (bpf_probe_read_user(a, sizeof(a), (void *)uargs) < 0 &&
	    bpf_probe_read_user(a, 4 * 4, (void *)uargs) < 0) /* the array may end near a page edge */
		return;
	if (call == ENDURA_SYS_CONNECT)
		endura_sockaddr((int)a[0], a[1], (int)a[2], ENDURA_NET_CONNECT);
	else if (call == ENDURA_SYS_SENDTO)
		endura_sockaddr((int)a[0], a[4], (int)a[5], ENDURA_NET_SENDMSG);
	else if (call == ENDURA_SYS_SENDMSG)
		endura_msghdr((int)a[0], a[1], true);
	else
		endura_mmsghdr((int)a[0], a[1], a[2], true);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(endura_tp_sys_enter, struct pt_regs *regs, long id)
{
	struct endura_config *cfg = endura_cfg();
	struct file *file;
	bool compat, layout32;
	int sc;

	if (!cfg)
		return 0;
	if (endura_tainted_present())
		endura_check_tainted();
	sc = endura_sc_classify(regs, (int)id, false, &compat, &layout32);
	if (sc == ENDURA_SC_NONE)
		return 0;
	switch (sc) {
	case ENDURA_SC_CONNECT:
		if (cfg->net_rules)
			endura_sockaddr((int)endura_sc_arg(regs, compat, 0), endura_sc_arg(regs, compat, 1),
					(int)endura_sc_arg(regs, compat, 2), ENDURA_NET_CONNECT);
		break;
	case ENDURA_SC_SENDTO:
		if (cfg->net_rules)
			endura_sockaddr((int)endura_sc_arg(regs, compat, 0), endura_sc_arg(regs, compat, 4),
					(int)endura_sc_arg(regs, compat, 5), ENDURA_NET_SENDMSG);
		break;
	case ENDURA_SC_SENDMSG:
		if (cfg->net_rules)
			endura_msghdr((int)endura_sc_arg(regs, compat, 0), endura_sc_arg(regs, compat, 1), layout32);
		break;
	case ENDURA_SC_SENDMMSG:
		if (cfg->net_rules)
			endura_mmsghdr((int)endura_sc_arg(regs, compat, 0), endura_sc_arg(regs, compat, 1),
				       (__u32)endura_sc_arg(regs, compat, 2), layout32);
		break;
	case ENDURA_SC_SOCKETCALL:
		if (cfg->net_rules)
			endura_socketcall(endura_sc_arg(regs, compat, 0), endura_sc_arg(regs, compat, 1));
		break;
	case ENDURA_SC_FINIT_MODULE:
		file = endura_fd_file((int)endura_sc_arg(regs, compat, 0));
		endura_tamper_policy(ENDURA_TAMPER_MODULE_LOAD, ENDURA_MODULE_FINIT,
				     file ? (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name) : NULL, false,
				     ENDURA_TIER_TRACEPOINT, false);
		break;
	case ENDURA_SC_INIT_MODULE:
		endura_tamper_policy(ENDURA_TAMPER_MODULE_LOAD, ENDURA_MODULE_INIT, NULL, false, ENDURA_TIER_TRACEPOINT,
				     false);
		break;
	case ENDURA_SC_BPF:
		endura_tamper_policy(ENDURA_TAMPER_BPF, (__u32)endura_sc_arg(regs, compat, 0), NULL, false,
				     ENDURA_TIER_TRACEPOINT, false);
		break;
	case ENDURA_SC_IO_URING_SETUP:
		endura_tamper_policy(ENDURA_TAMPER_IO_URING, (__u32)endura_sc_arg(regs, compat, 0), NULL, false,
				     ENDURA_TIER_TRACEPOINT, false);
		break;
	}
	return 0;
}

#define ENDURA_SELF_TP
#include "endura_self.bpf.h"
