/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Effect hooks of the LSM and fentry (fmod_ret) tiers: every other way to change a protected file or
 * directory than opening it for write (rename over or out of it, a hard link, unlink, rmdir, truncate,
 * a new name in a protected directory, a write through an fd opened before), executable mappings of
 * an exec-denied file (ld.so, dlopen), and datagrams sent to a denied address without connect().
 * Hooked where the effect happens, below every syscall (io_uring's too). BPF side only.
 */
#ifndef ENDURA_FILEOPS_BPF_H
#define ENDURA_FILEOPS_BPF_H

#include "endura_policy.bpf.h"

#define ENDURA_MAY_WRITE 2   /* include/linux/fs.h */
#define ENDURA_PROT_EXEC 4   /* PROT_EXEC */
#define ENDURA_PROT_WRITE 2  /* PROT_WRITE */
#define ENDURA_MAP_SHARED 1  /* MAP_SHARED (MAP_SHARED_VALIDATE = 3 has the bit too) */
#define ENDURA_VM_EXEC 4     /* vma->vm_flags VM_EXEC */
#define ENDURA_S_IFMT 0170000
#define ENDURA_S_IFDIR 0040000
#define ENDURA_RENAME_EXCHANGE 2 /* renameat2(2) flag: both names move */

#define ENDURA_WANT_WRITE (1 << ENDURA_SLOT_WRITE)
/*
 * Moving or linking an object elsewhere: any protection counts, read too. A `dir` rule's `below`
 * verdicts follow the path, so a read-protected file moved or linked out of its directory would
 * otherwise be readable at its new name.
 */
#define ENDURA_WANT_ANY ((1 << ENDURA_SLOT_READ) | (1 << ENDURA_SLOT_WRITE))

/*
 * rename and link look up two objects: inlined, the verifier walked the ancestor loop twice (31,800
 * instructions processed on 6.1, against 7,800 for a hook with one lookup). Their lookups go through a
 * global (non-static, __noinline) function instead, which the verifier checks once, on its own, without
 * the callers' constants (~17,000 then, for any number of calls). Arguments are scalars (kernel pointers
 * are read with BPF_CORE_READ, i.e. bpf_probe_read_kernel, anyway) and a pointer to the caller's stack.
 */
#define ENDURA_FOUND_SUBTREE 1   /* walk the ancestors' `below` verdicts */
#define ENDURA_FOUND_SKIP_SELF 2 /* a name being created in the directory `dentry` */

/*
 * endura_lookup_dentry(&endura_files, ...) into *out (merged into out->best; out->key: the object's, zero
 * with SKIP_SELF). Map keys must live on this function's stack (6.1: no map lookup with a key in `mem`).
 */
__noinline int endura_found_file(__u64 mnt, __u64 dentry, __u32 flags, __u32 wanted, struct endura_found *out)
{
	struct endura_file_key key = {};
	struct endura_verdict best;

	if (!out)
		return 0;
	best = out->best;
	endura_lookup_dentry(&endura_files, &endura_file_names, (struct vfsmount *)mnt, (struct dentry *)dentry,
			     flags & ENDURA_FOUND_SUBTREE, flags & ENDURA_FOUND_SKIP_SELF, wanted, &key, &best);
	out->key = key;
	out->best = best;
	return 0;
}

/*
 * endura_lookup_dentry() on endura_files into *found: inlined (the verifier knows the constant flags: ~7,800
 * instructions processed on 6.1 for a hook with one lookup) or, with `global`, through endura_found_file()
 * (verified once for all its calls, without the constants: ~17,000; rename and link look up two objects).
 */
static __always_inline void endura_files_lookup(bool global, struct vfsmount *mnt, struct dentry *d, bool subtree,
						bool skip_self, __u32 wanted, struct endura_found *found)
{
	if (global)
		endura_found_file((__u64)mnt, endura_scalar(d),
				  (subtree ? ENDURA_FOUND_SUBTREE : 0) | (skip_self ? ENDURA_FOUND_SKIP_SELF : 0), wanted,
				  found);
	else
		endura_lookup_dentry(&endura_files, &endura_file_names, mnt, d, subtree, skip_self, wanted, &found->key,
				     &found->best);
}

/* Report a refused (or audited) change of a protected object; returns -EPERM when refused (can_block). */
static __always_inline int endura_file_op_report(__u32 op, const struct endura_found *found, struct dentry *name,
						 __u32 tier, bool can_block)
{
	struct endura_event *e;
	__u32 action;
	int kill_result, ret;

	ret = endura_decide(found->best.action, can_block, true, &action, &kill_result);
	e = endura_event_begin(ENDURA_EVENT_FILE_OP_DENIED, tier, found->best.rule_id, action, kill_result);
	if (e) {
		e->dev = found->key.dev;
		e->ino = found->key.ino;
		e->detail = op;
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(name, d_name.name));
		bpf_ringbuf_submit(e, 0);
	}
	return ret;
}

/*
 * The verdict for an existing object d (its own rules, its ancestors' `below` rules) and, when d is a
 * directory, its own `below` rules too: moving or removing a protected directory would take what it
 * protects along (mv /etc/cron.d away, mkdir a new one).
 */
static __always_inline void endura_lookup_object(bool global, struct vfsmount *mnt, struct dentry *d, bool subtree,
						 __u32 wanted, struct endura_found *found)
{
	struct endura_file_rule *rule;
	struct endura_verdict own = {};
	struct endura_verdict *best = &found->best;

	endura_files_lookup(global, mnt, d, subtree, false, wanted, found);
	if (!subtree || !found->key.ino)
		return; /* no `below` verdicts at all, or no object */
	if ((BPF_CORE_READ(d, d_inode, i_mode) & ENDURA_S_IFMT) != ENDURA_S_IFDIR)
		return;
	rule = bpf_map_lookup_elem(&endura_files, &found->key);
	if (!rule)
		return;
	if ((wanted & (1 << 0)) && rule->below[0].action > own.action)
		own = rule->below[0];
	if ((wanted & (1 << 1)) && rule->below[1].action > own.action)
		own = rule->below[1];
	if (own.action > best->action)
		*best = own;
}

/*
 * The verdict for the name d in the directory dir (mnt): an existing object as above (`wanted`: write when
 * it is replaced, any when it moves too: RENAME_EXCHANGE); a name that does not exist yet (a negative
 * dentry): a `path` rule on that very name (the names map) and the `below` write verdicts of dir and its
 * ancestors, *key = the directory.
 */
static __always_inline void endura_lookup_name(struct vfsmount *mnt, struct dentry *dir, struct dentry *d, bool subtree,
					       bool names, __u32 wanted, struct endura_found *found)
{
	if (BPF_CORE_READ(d, d_inode)) {
		endura_lookup_object(true, mnt, d, subtree, wanted, found);
		return;
	}
	if (!subtree && !names)
		return; /* neither `dir` rules nor protected names: nothing protects a name that does not exist */
	endura_files_lookup(true, mnt, d, subtree, false, ENDURA_WANT_WRITE, found);
	if (found->best.action != ENDURA_RULE_NONE)
		endura_key_of_dentry(dir, &found->key);
}

/* the config when file rules are loaded, else NULL (every hook here returns early then) */
static __always_inline struct endura_config *endura_file_cfg(void)
{
	struct endura_config *cfg = endura_cfg();

	return cfg && cfg->file_rules ? cfg : NULL;
}

/* ---------------------------------------------------------------- rename, link */

static __always_inline int endura_rename_policy(const struct path *old_dir, struct dentry *old_dentry,
						const struct path *new_dir, struct dentry *new_dentry, unsigned int flags,
						__u32 tier, bool can_block)
{
	struct endura_config *cfg = endura_file_cfg();
	struct endura_found found = {};
	bool subtree;

	if (!cfg)
		return 0;
	subtree = cfg->file_subtree_rules != 0;
	/* the object moved (RENAME_EXCHANGE: the other one is checked below, as the existing target) */
	endura_lookup_object(true, BPF_CORE_READ(old_dir, mnt), old_dentry, subtree, ENDURA_WANT_ANY, &found);
	if (found.best.action != ENDURA_RULE_NONE)
		return endura_file_op_report(ENDURA_FILE_OP_RENAME_FROM, &found, old_dentry, tier, can_block);
	/* the target: a protected object replaced, or a new name in a protected directory */
	endura_lookup_name(BPF_CORE_READ(new_dir, mnt), BPF_CORE_READ(new_dir, dentry), new_dentry, subtree,
			   cfg->name_rules != 0, flags & ENDURA_RENAME_EXCHANGE ? ENDURA_WANT_ANY : ENDURA_WANT_WRITE, &found);
	if (found.best.action != ENDURA_RULE_NONE)
		return endura_file_op_report(ENDURA_FILE_OP_RENAME_TO, &found, new_dentry, tier, can_block);
	return 0;
}

static __always_inline int endura_link_policy(struct dentry *old_dentry, const struct path *new_dir,
					      struct dentry *new_dentry, __u32 tier, bool can_block)
{
	struct endura_config *cfg = endura_file_cfg();
	struct endura_found found = {};
	struct vfsmount *mnt;
	bool subtree;

	if (!cfg)
		return 0;
	subtree = cfg->file_subtree_rules != 0;
	mnt = BPF_CORE_READ(new_dir, mnt); /* a hard link never crosses mounts: the source is on this one */
	endura_lookup_object(true, mnt, old_dentry, subtree, ENDURA_WANT_ANY, &found);
	if (found.best.action != ENDURA_RULE_NONE)
		return endura_file_op_report(ENDURA_FILE_OP_LINK_FROM, &found, old_dentry, tier, can_block);
	endura_lookup_name(mnt, BPF_CORE_READ(new_dir, dentry), new_dentry, subtree, cfg->name_rules != 0,
			   ENDURA_WANT_WRITE, &found);
	if (found.best.action != ENDURA_RULE_NONE)
		return endura_file_op_report(ENDURA_FILE_OP_LINK_TO, &found, new_dentry, tier, can_block);
	return 0;
}

/* ---------------------------------------------------------------- unlink, rmdir, truncate, create */

/* op: UNLINK or RMDIR (dir: the parent) */
static __always_inline int endura_remove_policy(__u32 op, const struct path *dir, struct dentry *dentry, __u32 tier,
						bool can_block)
{
	struct endura_config *cfg = endura_file_cfg();
	struct endura_found found = {};

	if (!cfg)
		return 0;
	endura_lookup_object(false, BPF_CORE_READ(dir, mnt), dentry, cfg->file_subtree_rules != 0, ENDURA_WANT_WRITE,
			     &found);
	if (found.best.action == ENDURA_RULE_NONE)
		return 0;
	return endura_file_op_report(op, &found, dentry, tier, can_block);
}

/* truncate(2) by path (and, before 6.2, ftruncate(2) and O_TRUNC) */
static __always_inline int endura_truncate_policy(struct vfsmount *mnt, struct dentry *dentry, __u32 tier,
						  bool can_block)
{
	struct endura_config *cfg = endura_file_cfg();
	struct endura_found found = {};

	if (!cfg)
		return 0;
	endura_files_lookup(false, mnt, dentry, cfg->file_subtree_rules != 0, false, ENDURA_WANT_WRITE, &found);
	if (found.best.action == ENDURA_RULE_NONE)
		return 0;
	return endura_file_op_report(ENDURA_FILE_OP_TRUNCATE, &found, dentry, tier, can_block);
}

/* a new file, directory, node or symlink `dentry` in dir (open(O_CREAT) reaches path_mknod too) */
static __always_inline int endura_create_policy(const struct path *dir, struct dentry *dentry, __u32 tier,
						bool can_block)
{
	struct endura_config *cfg = endura_file_cfg();
	struct endura_found found = {};

	if (!cfg || (!cfg->file_subtree_rules && !cfg->name_rules))
		return 0; /* only `dir` rules and protected names (the names map) cover a name that does not exist */
	/* the new, negative dentry: its name in dir, then dir and its ancestors' `below` verdicts */
	endura_files_lookup(false, BPF_CORE_READ(dir, mnt), dentry, cfg->file_subtree_rules != 0, false,
			    ENDURA_WANT_WRITE, &found);
	if (found.best.action == ENDURA_RULE_NONE)
		return 0;
	endura_key_of_dentry(BPF_CORE_READ(dir, dentry), &found.key);
	return endura_file_op_report(ENDURA_FILE_OP_CREATE, &found, dentry, tier, can_block);
}

/* ---------------------------------------------------------------- writes through open fds */

/*
 * Every read/write reaches file_permission: return early unless it writes and file rules exist. A write
 * to a write-protected file means an fd that file_open never refused: opened before the sensor started
 * (or before the rule), passed over a socket, shared with a CLONE_FILES sibling, or used by io_uring.
 */
static __always_inline int endura_write_policy(struct file *file, int mask, __u32 tier, bool can_block)
{
	struct endura_config *cfg;
	struct endura_found found = {};

	if (!(mask & ENDURA_MAY_WRITE))
		return 0;
	cfg = endura_file_cfg();
	if (!cfg || !file)
		return 0;
	endura_files_lookup(false, BPF_CORE_READ(file, f_path.mnt), BPF_CORE_READ(file, f_path.dentry),
			    cfg->file_subtree_rules != 0, false, ENDURA_WANT_WRITE, &found);
	if (found.best.action == ENDURA_RULE_NONE)
		return 0;
	if (cfg->sensor_tgid == (__u32)(bpf_get_current_pid_tgid() >> 32))
		return 0; /* the sensor's own event log, opened before it attached, in a protected /var/log */
	return endura_file_op_report(ENDURA_FILE_OP_WRITE, &found, BPF_CORE_READ(file, f_path.dentry), tier, can_block);
}

/* ftruncate(2) and O_TRUNC from 6.2 on (security_file_truncate) */
static __always_inline int endura_file_truncate_policy(struct file *file, __u32 tier, bool can_block)
{
	return endura_truncate_policy(BPF_CORE_READ(file, f_path.mnt), BPF_CORE_READ(file, f_path.dentry), tier,
				      can_block);
}

/* ---------------------------------------------------------------- executable mappings */

/*
 * An executable mapping of an exec-denied file: ld.so /path/denied, dlopen(), mmap/mprotect PROT_EXEC.
 * The task's own executable is skipped: the kernel's ELF loader maps it after bprm_check allowed it.
 */
static __always_inline int endura_mmap_exec_policy(struct file *file, __u32 tier, bool can_block)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct endura_config *cfg = endura_cfg();
	struct endura_found found = {};

	if (!file || !cfg || file == BPF_CORE_READ(task, mm, exe_file))
		return 0;
	endura_lookup_file(&endura_exec, &endura_exec_names, file, cfg->exec_subtree_rules != 0, 1 << ENDURA_SLOT_EXEC,
			   &found.key, &found.best);
	if (found.best.action == ENDURA_RULE_NONE)
		return 0;
	return endura_exec_report(&found.best, &found.key, ENDURA_EXEC_MMAP,
				  (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name), tier, can_block);
}

/* mmap of a file: executable (exec rules), or shared and writable (a write, like file_permission's) */
static __always_inline int endura_mmap_policy(struct file *file, unsigned long prot, unsigned long flags, __u32 tier,
					      bool can_block)
{
	int ret;

	if (!file)
		return 0;
	if (prot & ENDURA_PROT_EXEC) {
		ret = endura_mmap_exec_policy(file, tier, can_block);
		if (ret)
			return ret;
	}
	if ((prot & ENDURA_PROT_WRITE) && (flags & ENDURA_MAP_SHARED))
		return endura_write_policy(file, ENDURA_MAY_WRITE, tier, can_block);
	return 0;
}

/* mprotect(PROT_EXEC) of a file mapping that was not executable */
static __always_inline int endura_mprotect_policy(struct vm_area_struct *vma, unsigned long prot, __u32 tier,
						  bool can_block)
{
	if (!(prot & ENDURA_PROT_EXEC) || (BPF_CORE_READ(vma, vm_flags) & ENDURA_VM_EXEC))
		return 0;
	return endura_mmap_exec_policy(BPF_CORE_READ(vma, vm_file), tier, can_block);
}

/* ---------------------------------------------------------------- datagrams without connect() */

/* sendto/sendmsg/sendmmsg with a destination (UDP, raw, TCP Fast Open): the connect rules apply */
static __always_inline int endura_sendmsg_policy(struct msghdr *msg, __u32 tier, bool can_block)
{
	struct endura_config *cfg = endura_cfg();
	__u8 sa[32] = {};
	void *name;

	if (!cfg || !cfg->net_rules)
		return 0;
	name = BPF_CORE_READ(msg, msg_name);
	if (!name || BPF_CORE_READ(msg, msg_namelen) < 4 || bpf_probe_read_kernel(sa, 28, name) < 0)
		return 0;
	return endura_net_policy(sa, ENDURA_NET_SENDMSG, tier, can_block);
}

#endif /* ENDURA_FILEOPS_BPF_H */
