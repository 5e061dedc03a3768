/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The policy shared by the three tiers: look the object up in the rule maps, decide, report.
 * BPF side only. Each tier's program calls these from its own hook; `can_block` says whether the
 * hook's return value is honoured (LSM) or only a SIGKILL is possible (fentry, tracepoint).
 */
#ifndef ENDURA_POLICY_BPF_H
#define ENDURA_POLICY_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "endura_events.h"

#define ENDURA_EPERM 1
#define ENDURA_SIGKILL 9
#define ENDURA_AF_INET 2
#define ENDURA_AF_INET6 10
#define ENDURA_FMODE_READ 1
#define ENDURA_FMODE_WRITE 2
#define ENDURA_O_ACCMODE 3
#define ENDURA_O_RDONLY 0

/* syscall numbers and arguments: endura_syscalls.bpf.h (the tracepoint tier only) */

/*
 * Keep struct endura_event in the object's BTF (the layout test compares it with the Python
 * decoder): a local type-id relocation, resolved by libbpf without the kernel's BTF.
 */
static __always_inline void endura_anchor_event_type(void)
{
	volatile __u32 event_type_id = bpf_core_type_id_local(struct endura_event);
	(void)event_type_id;
}

static __always_inline struct endura_config *endura_cfg(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&endura_config, &zero);
}

static __always_inline int endura_key_of_dentry(struct dentry *dentry, struct endura_file_key *key)
{
	struct inode *inode;

	if (!dentry)
		return -1;
	inode = BPF_CORE_READ(dentry, d_inode);
	if (!inode)
		return -1;
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->ino = BPF_CORE_READ(inode, i_ino);
	return 0;
}

/*
 * The entry of `map` for the inode of dentry (key filled in), or NULL: also NULL when the entry was made
 * for an earlier inode with this number (its generation differs: freed and reused by another file).
 */
static __always_inline struct endura_file_rule *endura_rule_of(void *map, struct dentry *dentry,
								 struct endura_file_key *key)
{
	struct endura_file_rule *rule;

	if (endura_key_of_dentry(dentry, key) != 0)
		return NULL;
	rule = bpf_map_lookup_elem(map, key);
	if (rule && rule->generation && rule->generation != BPF_CORE_READ(dentry, d_inode, i_generation))
		return NULL;
	return rule;
}

/* The names map's entry for the name of dentry in its directory, or NULL (a root has no name). */
static __always_inline struct endura_file_rule *endura_rule_of_name(void *names, struct dentry *dentry)
{
	struct endura_name_key key = {};
	struct endura_file_key dir;
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

	if (!parent || parent == dentry || endura_key_of_dentry(parent, &dir) != 0)
		return NULL;
	key.dev = dir.dev;
	key.ino = dir.ino;
	if (bpf_probe_read_kernel_str(key.name, sizeof(key.name), BPF_CORE_READ(dentry, d_name.name)) < 0)
		return NULL;
	return bpf_map_lookup_elem(names, &key);
}

_Static_assert(ENDURA_SLOTS == 2, "endura_stricter() merges slots 0 and 1");

/*
 * Keep the stricter verdict per slot (enum endura_slot); the first of equals stays. Both slots are
 * merged in every step of the ancestor walk and `wanted` is applied once at the end (endura_pick): a
 * test of `wanted` in every step multiplied the verifier's states (90,000 instructions processed for
 * the open program instead of 17,000: seconds of start-up under emulation). Measured with the
 * verifier's statistics (log level 4); a branch-free maximum was far worse (the verifier tracks its
 * ranges per step and prunes nothing).
 */
static __always_inline void endura_stricter(const struct endura_verdict *v, struct endura_verdict *slots)
{
	if (v[0].action > slots[0].action)
		slots[0] = v[0];
	if (v[1].action > slots[1].action)
		slots[1] = v[1];
}

/* Merge the `wanted` slots into *best (the stricter stays; on equals, *best and then slot 0). */
static __always_inline void endura_pick(const struct endura_verdict *slots, __u32 wanted, struct endura_verdict *best)
{
	if ((wanted & (1 << 0)) && slots[0].action > best->action)
		*best = slots[0];
	if ((wanted & (1 << 1)) && slots[1].action > best->action)
		*best = slots[1];
}

/*
 * The strictest verdict for the object at (mnt, d) in `map` over the `wanted` slots, merged into *best:
 * its own entry (its `self` verdicts), the entry for its name in its directory in `names` (when the
 * policy has names: cfg->name_rules), then with `subtree` the `below` verdicts of every ancestor
 * directory up to ENDURA_MAX_DEPTH. Every rule that matches counts, not the first found; on equal
 * strictness the one found first stays (own entry, its name, then the nearest ancestor).
 * Paths, symlinks and relative names do not matter: the kernel's dentry tree is walked, the
 * filesystem's own tree first (so that a bind mount of a subdirectory of a protected directory is
 * still below it), then from the filesystem's root across the mount it was reached through.
 * A dentry without an inode (a name being created) has no own entry: only its name and its ancestors.
 * *key gets the object's own (device, inode); with `skip_self` only the ancestors count, d being the
 * first of them.
 */
static __always_inline void endura_lookup_dentry(void *map, void *names, struct vfsmount *vmnt, struct dentry *d,
						 bool subtree, bool skip_self, __u32 wanted,
						 struct endura_file_key *key, struct endura_verdict *best)
{
	struct endura_config *cfg = endura_cfg();
	struct endura_verdict slots[ENDURA_SLOTS] = {};
	struct endura_file_rule *rule;
	struct endura_file_key up_key;
	struct dentry *parent;
	struct mount *mnt, *up;
	int i;

	if (!d)
		return;
	if (skip_self) {
		rule = endura_rule_of(map, d, &up_key);
		if (rule)
			endura_stricter(rule->below, slots);
	} else {
		rule = endura_rule_of(map, d, key);
		if (rule)
			endura_stricter(rule->self, slots);
		if (names && cfg && cfg->name_rules) {
			rule = endura_rule_of_name(names, d);
			if (rule)
				endura_stricter(rule->self, slots);
		}
	}
	if (subtree && vmnt) {
		mnt = (struct mount *)((void *)vmnt - bpf_core_field_offset(struct mount, mnt));
		for (i = 0; i < ENDURA_MAX_DEPTH; i++) {
			parent = BPF_CORE_READ(d, d_parent);
			if (parent && parent != d) {
				d = parent;
			} else { /* the filesystem's root: on to where its mount (or bind mount) is attached */
				up = BPF_CORE_READ(mnt, mnt_parent);
				if (!up || up == mnt)
					break;
				d = BPF_CORE_READ(mnt, mnt_mountpoint);
				mnt = up;
			}
			/* no generation test here: it doubled the verifier's cost of the walk (a directory with a
			   `dir` rule is rarely removed, and the lsm/fentry tiers refuse it) */
			if (endura_key_of_dentry(d, &up_key) != 0)
				break;
			rule = bpf_map_lookup_elem(map, &up_key);
			if (rule)
				endura_stricter(rule->below, slots);
		}
	}
	endura_pick(slots, wanted, best);
}

/* endura_lookup_dentry() for an open file */
static __always_inline void endura_lookup_file(void *map, void *names, struct file *file, bool subtree, __u32 wanted,
					       struct endura_file_key *key, struct endura_verdict *best)
{
	if (!file)
		return;
	endura_lookup_dentry(map, names, BPF_CORE_READ(file, f_path.mnt), BPF_CORE_READ(file, f_path.dentry), subtree,
			     false, wanted, key, best);
}

/*
 * Decide for the winning rule action (enum endura_rule_action): returns -EPERM when the operation
 * must be refused (can_block only), else 0; *action gets the enum endura_action flags, *kill_result
 * bpf_send_signal()'s result.
 */
static __always_inline int endura_decide(__u32 rule_action, bool can_block, bool may_kill, __u32 *action,
					 int *kill_result)
{
	struct endura_config *cfg = endura_cfg();
	int ret = 0;

	*action = 0;
	*kill_result = 0;
	if (cfg && cfg->enforcement == ENDURA_ENFORCEMENT_ENFORCE && rule_action >= ENDURA_RULE_BLOCK) {
		if (can_block) {
			*action |= ENDURA_ACTION_BLOCKED;
			ret = -ENDURA_EPERM;
		}
		if (may_kill && (rule_action == ENDURA_RULE_KILL || cfg->terminate_process)) {
			*kill_result = bpf_send_signal(ENDURA_SIGKILL);
			if (*kill_result == 0)
				*action |= ENDURA_ACTION_KILLED;
		}
	}
	if (!*action)
		*action = ENDURA_ACTION_AUDITED;
	return ret;
}

/*
 * A tier that can only kill may want to know what it killed for (the tracepoint tier marks the killed
 * process's fd table: endura_tainted); it defines ENDURA_NOTE_KILL(type, rule_id) before including this.
 */
#ifndef ENDURA_NOTE_KILL
#define ENDURA_NOTE_KILL(type, rule_id) ((void)0)
#endif

/* Reserve and fill the common part of an event; NULL (and a counted drop) when the ring is full. */
static __always_inline struct endura_event *endura_event_begin(__u32 type, __u32 tier, __u32 rule_id, __u32 action,
								int kill_result)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct endura_event *e;
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ugid = bpf_get_current_uid_gid();
	__u32 zero = 0;

	endura_anchor_event_type();
	if (action & ENDURA_ACTION_KILLED)
		ENDURA_NOTE_KILL(type, rule_id);
	e = bpf_ringbuf_reserve(&endura_events, sizeof(*e), 0);
	if (!e) {
		__u64 *drops = bpf_map_lookup_elem(&endura_drops, &zero);
		if (drops)
			__sync_fetch_and_add(drops, 1);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = type;
	e->action = action;
	e->tier = tier;
	e->rule_id = rule_id;
	e->timestamp_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)ugid;
	e->gid = ugid >> 32;
	e->kill_result = kill_result;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

struct endura_found {
	struct endura_file_key key;
	struct endura_verdict best;
};

/*
 * A hook argument (a trusted BTF pointer) as the plain number a global function takes: the verifier
 * refuses to pass a pointer as a scalar ("R2 is not a scalar"), a copy read back through the stack is one.
 */
static __always_inline __u64 endura_scalar(const void *ptr)
{
	__u64 value = 0;

	bpf_probe_read_kernel(&value, sizeof(value), &ptr);
	return value;
}

#ifdef ENDURA_GLOBAL_LOOKUPS
/*
 * The exec lookup as a global function (lsm and fentry objects): verified once, on its own, for both of
 * bprm_check's lookups (bprm->file, bprm->executable); inlined twice they cost 52,500 instructions
 * processed on 6.1, near its limits for start-up under emulation. The tracepoint object keeps it inlined
 * (its older target kernels may lack global functions with pointer arguments).
 */
__noinline int endura_found_exec(__u64 mnt, __u64 dentry, __u32 subtree, struct endura_found *out)
{
	struct endura_file_key key = {};
	struct endura_verdict best;

	if (!out)
		return 0;
	best = out->best;
	endura_lookup_dentry(&endura_exec, &endura_exec_names, (struct vfsmount *)mnt, (struct dentry *)dentry, subtree != 0,
			     false, 1 << ENDURA_SLOT_EXEC, &key, &best);
	out->key = key;
	out->best = best;
	return 0;
}
#endif

/* endura_lookup_file() on the exec maps, through endura_found_exec() where global lookups are used */
static __always_inline void endura_exec_lookup(struct file *file, bool subtree, struct endura_file_key *key,
					       struct endura_verdict *best)
{
#ifdef ENDURA_GLOBAL_LOOKUPS
	struct endura_found found = {};

	if (!file)
		return;
	found.best = *best;
	endura_found_exec((__u64)BPF_CORE_READ(file, f_path.mnt), (__u64)BPF_CORE_READ(file, f_path.dentry), subtree,
			  &found);
	*key = found.key;
	*best = found.best;
#else
	endura_lookup_file(&endura_exec, &endura_exec_names, file, subtree, 1 << ENDURA_SLOT_EXEC, key, best);
#endif
}

/* ---------------------------------------------------------------- exec */

/* The strictest exec verdict for bprm into *best (action NONE: no rule); *key: the file it is for. */
static __always_inline void endura_match_exec(struct linux_binprm *bprm, struct endura_file_key *key,
					      struct endura_verdict *best)
{
	struct endura_config *cfg = endura_cfg();
	bool subtree = cfg && cfg->exec_subtree_rules;
	struct endura_file_key other_key = {};
	struct endura_verdict other;
	struct file *file;

	/*
	 * LSM and fentry run security_bprm_check() once per binfmt step, so they see a `#!` script and
	 * then its interpreter; at tp_btf/sched_process_exec only the final file (the interpreter) is
	 * left, plus bprm->executable for binfmt_misc 'O' (execfd) handlers.
	 */
	endura_exec_lookup(BPF_CORE_READ(bprm, file), subtree, key, best);
	if (best->action != ENDURA_RULE_KILL && bpf_core_field_exists(bprm->executable)) {
		file = BPF_CORE_READ(bprm, executable);
		if (file) {
			other = *best;
			endura_exec_lookup(file, subtree, &other_key, &other);
			if (other.action > best->action) {
				*best = other;
				*key = other_key;
			}
		}
	}
}

/*
 * The fileless_exec rule into *best when `file` has no name left (i_nlink 0: memfd_create, O_TMPFILE,
 * unlinked after open) and the rule is stricter; returns whether it won.
 */
static __always_inline bool endura_match_fileless(struct file *file, struct endura_verdict *best)
{
	__u32 index = ENDURA_TAMPER_FILELESS_EXEC;
	struct endura_rule *rule = bpf_map_lookup_elem(&endura_tamper, &index);

	if (!rule || !rule->rule_id || rule->action <= best->action || !file)
		return false;
	if (BPF_CORE_READ(file, f_path.dentry, d_inode, __i_nlink) != 0)
		return false;
	best->rule_id = rule->rule_id;
	best->action = rule->action;
	return true;
}

/*
 * Decide and report an exec verdict (`how`: enum endura_exec_how; name: a kernel string, the event's
 * filename); returns -EPERM when refused (can_block), else 0.
 */
static __always_inline int endura_exec_report(const struct endura_verdict *v, const struct endura_file_key *key,
					      __u32 how, const char *name, __u32 tier, bool can_block)
{
	struct endura_event *e;
	__u32 action;
	int kill_result, ret;

	ret = endura_decide(v->action, can_block, true, &action, &kill_result);
	e = endura_event_begin(ENDURA_EVENT_EXEC_DENIED, tier, v->rule_id, action, kill_result);
	if (e) {
		e->dev = key->dev;
		e->ino = key->ino;
		e->detail = how;
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), name); /* on failure: zeros (begin) */
		bpf_ringbuf_submit(e, 0);
	}
	return ret;
}

static __always_inline int endura_exec_policy(struct linux_binprm *bprm, __u32 tier, bool can_block)
{
	struct endura_file_key key = {};
	struct endura_verdict best = {};
	__u32 how = ENDURA_EXEC_EXECVE;

	endura_match_exec(bprm, &key, &best);
	if (endura_match_fileless(BPF_CORE_READ(bprm, file), &best)) {
		how = ENDURA_EXEC_FILELESS;
		endura_key_of_dentry(BPF_CORE_READ(bprm, file, f_path.dentry), &key);
	}
	if (best.action == ENDURA_RULE_NONE)
		return 0;
	return endura_exec_report(&best, &key, how, BPF_CORE_READ(bprm, filename), tier, can_block);
}

/* ---------------------------------------------------------------- file open */

/* Whether the current task runs an interpreter (its executable is in endura_interpreters), the sensor not. */
static __always_inline bool endura_current_is_interpreter(struct endura_config *cfg)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct endura_file_key exe = {};
	struct mm_struct *mm;
	struct inode *inode;
	struct file *file;

	/* direct (BTF) loads, no helper calls: this runs for every read-only open on the tracepoint tier */
	if (cfg->sensor_tgid == (__u32)task->tgid)
		return false; /* the sensor hashing binaries for sha256 rules (its python may be an interpreter rule) */
	mm = task->mm;
	if (!mm)
		return false;
	file = mm->exe_file;
	if (!file)
		return false;
	inode = file->f_inode;
	if (!inode)
		return false;
	exe.dev = inode->i_sb->s_dev;
	exe.ino = inode->i_ino;
	return bpf_map_lookup_elem(&endura_interpreters, &exe) != NULL;
}

/*
 * An interpreter (endura_interpreters: shells, ld.so, ...) reading a regular file that an exec rule
 * denies is running it (`sh /dev/shm/x.sh`, a `#!` script's interpreter opening it, `ld.so ./payload`):
 * the exec verdict into *best, *key the file. Only reads: a shell writing or creating a file is not exec.
 */
static __always_inline void endura_match_interpreted(struct endura_config *cfg, struct file *file,
						     struct endura_file_key *key, struct endura_verdict *best)
{
	__u32 mode;

	if (!endura_current_is_interpreter(cfg))
		return;
	mode = BPF_CORE_READ(file, f_path.dentry, d_inode, i_mode);
	if ((mode & 0170000) != 0100000) /* S_ISREG: not the directories a shell lists */
		return;
	/* through the global exec lookup on lsm/fentry: inlined next to file_open's own walk it cost 69,800
	   instructions processed on 6.1 */
	endura_exec_lookup(file, cfg->exec_subtree_rules != 0, key, best);
}

/* An interpreter reading an exec-denied file (endura_match_interpreted): decide, report; -EPERM or 0. */
static __always_inline int endura_interpreted_policy(struct file *file, __u32 tier, bool can_block)
{
	struct endura_config *cfg = endura_cfg();
	struct endura_file_key key = {};
	struct endura_verdict run = {};

	if (!cfg || !cfg->exec_interpreters || !file)
		return 0;
	if ((BPF_CORE_READ(file, f_mode) & (ENDURA_FMODE_READ | ENDURA_FMODE_WRITE)) != ENDURA_FMODE_READ)
		return 0;
	endura_match_interpreted(cfg, file, &key, &run);
	if (run.action == ENDURA_RULE_NONE)
		return 0;
	return endura_exec_report(&run, &key, ENDURA_EXEC_INTERPRETED, (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name),
				  tier, can_block);
}

static __always_inline int endura_file_policy(struct file *file, __u32 tier, bool can_block)
{
	struct endura_config *cfg = endura_cfg();
	struct endura_file_key key = {};
	struct endura_verdict best = {};
	struct endura_event *e;
	__u32 action, fmode, wanted = 0;
	int kill_result, ret;

	if (!cfg || !file)
		return 0;
	fmode = BPF_CORE_READ(file, f_mode);
	if (!cfg->file_rules)
		return 0;
	if ((fmode & ENDURA_FMODE_READ) && cfg->file_read_rules)
		wanted |= 1 << ENDURA_SLOT_READ;
	if (fmode & ENDURA_FMODE_WRITE)
		wanted |= 1 << ENDURA_SLOT_WRITE;
	if (!wanted)
		return 0; /* e.g. a read-only open while no rule denies reading: no lookup at all */
	endura_lookup_file(&endura_files, &endura_file_names, file, cfg->file_subtree_rules != 0, wanted, &key, &best);
	if (best.action == ENDURA_RULE_NONE)
		return 0;
	ret = endura_decide(best.action, can_block, true, &action, &kill_result);
	e = endura_event_begin(ENDURA_EVENT_FILE_OPEN_DENIED, tier, best.rule_id, action, kill_result);
	if (e) {
		e->dev = key.dev;
		e->ino = key.ino;
		e->detail = fmode & (ENDURA_FMODE_READ | ENDURA_FMODE_WRITE);
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(file, f_path.dentry, d_name.name));
		bpf_ringbuf_submit(e, 0);
	}
	return ret;
}

/* ---------------------------------------------------------------- connect */

/* sa: a struct sockaddr copy (at least 28 bytes); how: enum endura_net_how (connect, or a send with an address) */
static __always_inline int endura_net_policy(const __u8 *sa, __u32 how, __u32 tier, bool can_block)
{
	struct endura_config *cfg = endura_cfg();
	struct endura_net_key key = {};
	struct endura_rule *rule;
	struct endura_event *e;
	__u16 family = *(const __u16 *)sa;
	__u32 action;
	int kill_result, ret;

	if (!cfg || !cfg->net_rules)
		return 0;
	key.port[0] = sa[2];
	key.port[1] = sa[3];
	if (family == ENDURA_AF_INET) {
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &sa[4], 4);
	} else if (family == ENDURA_AF_INET6) {
		__builtin_memcpy(key.addr, &sa[8], 16);
	} else {
		return 0;
	}
	key.prefixlen = 16 + 128;
	rule = bpf_map_lookup_elem(&endura_net, &key);
	if (!rule) { /* rules for any port */
		key.port[0] = key.port[1] = 0;
		rule = bpf_map_lookup_elem(&endura_net, &key);
	}
	if (!rule)
		return 0;
	ret = endura_decide(rule->action, can_block, true, &action, &kill_result);
	e = endura_event_begin(ENDURA_EVENT_CONNECT_DENIED, tier, rule->rule_id, action, kill_result);
	if (e) {
		__builtin_memcpy(e->addr, key.addr, 16);
		e->port = ((__u16)sa[2] << 8) | sa[3];
		e->family = family;
		e->detail = how;
		bpf_ringbuf_submit(e, 0);
	}
	return ret;
}

static __always_inline int endura_connect_policy(const __u8 *sa, __u32 tier, bool can_block)
{
	return endura_net_policy(sa, ENDURA_NET_CONNECT, tier, can_block);
}

/* ---------------------------------------------------------------- tamper: modules, bpf() */

#include "endura_members.bpf.h"

/*
 * Whether the current task is a member of the sensor's service cgroup: in it (by id, or by name below the
 * same parent: a restart's successor runs in a new cgroup of the same name and must be exempt from its
 * predecessor's rules, or taking over would need a gap) and placed there by the service manager or born
 * there from a member (endura_members.bpf.h): joining the cgroup does not make a process exempt.
 */
static __always_inline bool endura_in_sensor_cgroup(const struct endura_config *cfg)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	if (!cfg->sensor_cgroup_id)
		return false;
	if (bpf_get_current_cgroup_id() != cfg->sensor_cgroup_id && !endura_task_in_sensor_cgroup(cfg, task))
		return false;
	return endura_is_member(task);
}

/* index: enum endura_tamper_index; detail: module how / bpf cmd / io_uring_setup entries; name may be NULL */
static __always_inline int endura_tamper_policy(__u32 index, __u32 detail, const char *name, bool user_name,
						__u32 tier, bool can_block)
{
	struct endura_rule *rule = bpf_map_lookup_elem(&endura_tamper, &index);
	struct endura_config *cfg;
	struct endura_event *e;
	__u32 action;
	int kill_result, ret;

	if (!rule || !rule->rule_id)
		return 0;
	if (index == ENDURA_TAMPER_BPF) {
		cfg = endura_cfg();
		if (cfg && cfg->sensor_tgid == (__u32)(bpf_get_current_pid_tgid() >> 32))
			return 0; /* the sensor itself */
		if ((__u32)(bpf_get_current_pid_tgid() >> 32) == 1)
			return 0; /* init (systemd): it sandboxes every unit with bpf() (PrivateDevices=, IPAddressDeny=,
				     RestrictFileSystems=); refusing it weakens every other service, ours included */
		if (cfg && endura_in_sensor_cgroup(cfg))
			return 0; /* its service's cgroup: a restarted sensor */
	}
	/*
	 * request_module(): autoload on behalf of a process that did not ask for a module: refuse, never kill.
	 * Only for the module rule: a bpf() cmd of the same number (3, BPF_MAP_DELETE_ELEM) must be killed.
	 */
	ret = endura_decide(rule->action, can_block,
			    !(index == ENDURA_TAMPER_MODULE_LOAD && detail == ENDURA_MODULE_REQUEST), &action, &kill_result);
	e = endura_event_begin(index == ENDURA_TAMPER_BPF        ? ENDURA_EVENT_BPF_DENIED
			       : index == ENDURA_TAMPER_IO_URING ? ENDURA_EVENT_IO_URING_DENIED
								 : ENDURA_EVENT_MODULE_LOAD_DENIED,
			       tier, rule->rule_id, action, kill_result);
	if (e) {
		e->detail = detail;
		if (name) {
			if (user_name)
				bpf_probe_read_user_str(e->filename, sizeof(e->filename), name);
			else
				bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), name);
		}
		bpf_ringbuf_submit(e, 0);
	}
	return ret;
}

#endif /* ENDURA_POLICY_BPF_H */
