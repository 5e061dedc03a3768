/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Self-protection programs (singleton rule ENDURA_TAMPER_SENSOR, "the sensor itself"), included at the end
 * of each tier's object after defining one of ENDURA_SELF_LSM, ENDURA_SELF_FENTRY, ENDURA_SELF_TP:
 *
 * | what                                   | lsm, fentry (fmod_ret)   | tracepoint                      |
 * |----------------------------------------|--------------------------|---------------------------------|
 * | a signal that stops or ends the sensor | refused (task_kill)      | sender killed; the signal       |
 * |                                        |                          | arrives                         |
 * | ptrace attach, process_vm_*, /proc/pid/| refused                  | not seen                        |
 * | mem, pidfd_getfd of the sensor         | (ptrace_access_check)    |                                 |
 * | unlink/rename of its pins (endura_* in | refused (inode_unlink,   | not seen: re-pinned by the      |
 * | a BPF filesystem)                      | inode_rename)            | sensor, reported                |
 * | entering its cgroup from outside       | not a member: not exempt (endura_members.bpf.h; tp_btf           |
 * |                                        | cgroup_attach_task, task_newtask, sched_process_exit)            |
 *
 * Exempt: the sensor itself, init (PID 1: systemd stops, reloads and kills the service; or the service
 * manager named in endura_members, see endura_members.bpf.h), and members of
 * its service cgroup placed there by the service manager (endura_members.bpf.h): the successor of a
 * restart, `endura-sensor release` in ExecStopPost=. Allowed to anyone: SIGHUP (reload), SIGUSR1
 * (verify), SIGCONT, and signals that do not end or stop a process (SIGCHLD, SIGURG, SIGWINCH, 0).
 */
#ifndef ENDURA_SELF_BPF_H
#define ENDURA_SELF_BPF_H

#define ENDURA_BPF_FS_MAGIC 0xcafe4a11
#define ENDURA_CLONE_THREAD 0x00010000
#define ENDURA_PTRACE_MODE_ATTACH 0x02
/* signals anyone may send to the sensor: 0 (exists?), HUP, USR1, CHLD, CONT, URG, WINCH */
#define ENDURA_HARMLESS_SIGNALS ((1u << 0) | (1u << 1) | (1u << 10) | (1u << 17) | (1u << 18) | (1u << 23) | (1u << 28))

/* BPF_PROG pastes its name argument: expand ENDURA_SELF(...) first */
#define ENDURA_SELF_PROG(name, args...) BPF_PROG(name, ##args)

#if defined(ENDURA_SELF_LSM)
#define ENDURA_SELF_TIER ENDURA_TIER_LSM
#define ENDURA_SELF_BLOCKS true
#define ENDURA_SELF(name) endura_lsm_##name
#elif defined(ENDURA_SELF_FENTRY)
#define ENDURA_SELF_TIER ENDURA_TIER_FENTRY
#define ENDURA_SELF_BLOCKS true
#define ENDURA_SELF(name) endura_fentry_##name
#elif defined(ENDURA_SELF_TP)
#define ENDURA_SELF_TIER ENDURA_TIER_TRACEPOINT
#define ENDURA_SELF_BLOCKS false
#define ENDURA_SELF(name) endura_tp_##name
#else
#error "define ENDURA_SELF_LSM, ENDURA_SELF_FENTRY or ENDURA_SELF_TP before including endura_self.bpf.h"
#endif

/* The current task may act on the sensor: the sensor, init, or a member of its cgroup that did not intrude. */
static __always_inline bool endura_acts_as_sensor(const struct endura_config *cfg)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	return tgid == cfg->sensor_tgid || endura_is_service_manager() || endura_in_sensor_cgroup(cfg);
}

/* The sensor rule and its config, or NULL when no sensor rule is loaded. */
static __always_inline struct endura_rule *endura_sensor_rule(struct endura_config **cfg)
{
	__u32 index = ENDURA_TAMPER_SENSOR;
	struct endura_rule *rule = bpf_map_lookup_elem(&endura_tamper, &index);

	if (!rule || !rule->rule_id)
		return NULL;
	*cfg = endura_cfg();
	return *cfg && (*cfg)->sensor_tgid ? rule : NULL;
}

/* Decide and report an attempt on the sensor (op: enum endura_sensor_op; name: a kernel string or NULL). */
static __always_inline int endura_sensor_tampered(struct endura_rule *rule, __u32 op, const char *name)
{
	struct endura_event *e;
	__u32 action;
	int kill_result, ret;

	ret = endura_decide(rule->action, ENDURA_SELF_BLOCKS, true, &action, &kill_result);
	e = endura_event_begin(ENDURA_EVENT_SENSOR_TAMPER_DENIED, ENDURA_SELF_TIER, rule->rule_id, action, kill_result);
	if (e) {
		e->detail = op;
		if (name)
			bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), name);
		bpf_ringbuf_submit(e, 0);
	}
	return ret;
}

/* a signal from userspace (kill, tgkill, pidfd_send_signal, ...) to the sensor */
static __always_inline int endura_self_signal(struct task_struct *target, int sig)
{
	struct endura_config *cfg;
	struct endura_rule *rule = endura_sensor_rule(&cfg);

	if (!rule || sig < 0 || (sig < 32 && (ENDURA_HARMLESS_SIGNALS & (1u << sig))))
		return 0;
	if (BPF_CORE_READ(target, tgid) != cfg->sensor_tgid || endura_acts_as_sensor(cfg))
		return 0;
	return endura_sensor_tampered(rule, ENDURA_SENSOR_OP_SIGNAL, (const char *)BPF_CORE_READ(target, comm));
}

/* ptrace attach (also process_vm_writev, /proc/<pid>/mem, pidfd_getfd: PTRACE_MODE_ATTACH) of the sensor */
static __always_inline int endura_self_ptrace(struct task_struct *child, unsigned int mode)
{
	struct endura_config *cfg;
	struct endura_rule *rule;

	if (!(mode & ENDURA_PTRACE_MODE_ATTACH))
		return 0; /* reading /proc/<pid>/stat and the like */
	rule = endura_sensor_rule(&cfg);
	if (!rule || BPF_CORE_READ(child, tgid) != cfg->sensor_tgid || endura_acts_as_sensor(cfg))
		return 0;
	return endura_sensor_tampered(rule, ENDURA_SENSOR_OP_PTRACE, (const char *)BPF_CORE_READ(child, comm));
}

/* unlink or rename (from or over) of an endura_* pin in a BPF filesystem */
static __always_inline int endura_self_pin(struct dentry *dentry)
{
	struct endura_config *cfg;
	struct endura_rule *rule;
	const unsigned char *name;
	char prefix[8] = {};

	if (!dentry || BPF_CORE_READ(dentry, d_sb, s_magic) != ENDURA_BPF_FS_MAGIC)
		return 0;
	name = BPF_CORE_READ(dentry, d_name.name);
	/* byte by byte: __builtin_memcmp becomes a call to memcmp, which BPF has not */
	if (bpf_probe_read_kernel(prefix, 7, name) < 0 || prefix[0] != 'e' || prefix[1] != 'n' || prefix[2] != 'd' ||
	    prefix[3] != 'u' || prefix[4] != 'r' || prefix[5] != 'a' || prefix[6] != '_')
		return 0;
	rule = endura_sensor_rule(&cfg);
	if (!rule || endura_acts_as_sensor(cfg))
		return 0;
	return endura_sensor_tampered(rule, ENDURA_SENSOR_OP_PIN, (const char *)name);
}

/* ---------------------------------------------------------------- every tier: who is a member of the cgroup */

SEC("tp_btf/cgroup_attach_task")
int ENDURA_SELF_PROG(ENDURA_SELF(cgroup_attach), struct cgroup *dst_cgrp, const char *path, struct task_struct *task,
		     bool threadgroup)
{
	struct endura_config *cfg = endura_cfg();
	struct task_struct *current;
	struct endura_rule *rule;
	struct endura_event *e;
	__u32 index = ENDURA_TAMPER_SENSOR;

	if (!cfg || !cfg->sensor_cgroup_id || !endura_cgroup_is_sensor(cfg, dst_cgrp))
		return 0;
	if (endura_is_service_manager()) {
		endura_add_member(task); /* the service itself (systemd attaches its child from both sides) */
		return 0;
	}
	if (endura_is_member(task))
		return 0; /* a no-op move of a member (systemd < 255's forked child after init placed it) */
	current = (struct task_struct *)bpf_get_current_task();
	/* systemd < 255's forked child attaching itself first, as a direct child of init: not reported (init
	 * places it next); anything else is an attempt to join. Either way the task is not a member. */
	if (task == current && BPF_CORE_READ(current, real_parent, tgid) == 1)
		return 0;
	rule = bpf_map_lookup_elem(&endura_tamper, &index);
	if (!rule || !rule->rule_id)
		return 0;
	e = endura_event_begin(ENDURA_EVENT_SENSOR_TAMPER_DENIED, ENDURA_SELF_TIER, rule->rule_id, ENDURA_ACTION_AUDITED, 0);
	if (e) {
		e->detail = ENDURA_SENSOR_OP_CGROUP;
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(dst_cgrp, kn, name));
		bpf_ringbuf_submit(e, 0);
	}
	return 0;
}

SEC("tp_btf/task_newtask")
int ENDURA_SELF_PROG(ENDURA_SELF(task_newtask), struct task_struct *task, __u64 clone_flags)
{
	struct endura_config *cfg;
	struct task_struct *current;

	if (clone_flags & ENDURA_CLONE_THREAD)
		return 0; /* the same thread group */
	cfg = endura_cfg();
	if (!cfg || !cfg->sensor_cgroup_id || !endura_task_in_sensor_cgroup(cfg, task))
		return 0;
	current = (struct task_struct *)bpf_get_current_task();
	/* born in the cgroup from the service manager (clone3(CLONE_INTO_CGROUP): systemd >= 255), the sensor or
	 * a member (in the cgroup: a member moved out and cloning back in is not trusted with it) */
	if (endura_is_service_manager() || BPF_CORE_READ(current, tgid) == cfg->sensor_tgid ||
	    (endura_is_member(current) && endura_task_in_sensor_cgroup(cfg, current)))
		endura_add_member(task);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int ENDURA_SELF_PROG(ENDURA_SELF(member_exit), struct task_struct *p)
{
	struct endura_config *cfg = endura_cfg();
	__u32 tgid;

	if (!cfg || !cfg->sensor_cgroup_id || BPF_CORE_READ(p, pid) != BPF_CORE_READ(p, tgid))
		return 0; /* only the thread group leader's exit ends a membership */
	if (endura_is_member(p)) {
		tgid = BPF_CORE_READ(p, tgid);
		bpf_map_delete_elem(&endura_members, &tgid);
	}
	return 0;
}

/* ---------------------------------------------------------------- per tier: signals, ptrace, pins */

#if defined(ENDURA_SELF_LSM)

SEC("lsm/task_kill")
int BPF_PROG(endura_lsm_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig, const struct cred *cred,
	     int ret)
{
	if (ret)
		return ret;
	return endura_self_signal(p, sig);
}

SEC("lsm/ptrace_access_check")
int BPF_PROG(endura_lsm_ptrace_access_check, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret)
		return ret;
	return endura_self_ptrace(child, mode);
}

SEC("lsm/inode_unlink")
int BPF_PROG(endura_lsm_pin_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return endura_self_pin(dentry);
}

SEC("lsm/inode_rename")
int BPF_PROG(endura_lsm_pin_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
	     struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	ret = endura_self_pin(old_dentry);
	if (ret)
		return ret;
	return endura_self_pin(new_dentry);
}

#elif defined(ENDURA_SELF_FENTRY)

/* fmod_ret on security_*(): refused like the LSM tier, also where bpf is not in the LSM list */
SEC("fmod_ret/security_task_kill")
int BPF_PROG(endura_fentry_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred, int ret)
{
	if (ret)
		return ret;
	return endura_self_signal(p, sig);
}

SEC("fmod_ret/security_ptrace_access_check")
int BPF_PROG(endura_fentry_ptrace_access_check, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret)
		return ret;
	return endura_self_ptrace(child, mode);
}

SEC("fmod_ret/security_inode_unlink")
int BPF_PROG(endura_fentry_pin_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return endura_self_pin(dentry);
}

SEC("fmod_ret/security_inode_rename")
int BPF_PROG(endura_fentry_pin_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
	     struct dentry *new_dentry, unsigned int flags, int ret)
{
	if (ret)
		return ret;
	ret = endura_self_pin(old_dentry);
	if (ret)
		return ret;
	return endura_self_pin(new_dentry);
}

#else /* tracepoint */

/* every signal generated; only those from userspace (si_code <= 0: kill, tgkill, sigqueue, pidfd_send_signal) */
SEC("tp_btf/signal_generate")
int BPF_PROG(endura_tp_signal_generate, int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
	     int result)
{
	if ((unsigned long)info <= 1 || BPF_CORE_READ(info, si_code) > 0)
		return 0; /* the kernel's own (SEND_SIG_PRIV, faults, timers, the OOM killer) */
	endura_self_signal(task, sig);
	return 0;
}

#endif

#endif /* ENDURA_SELF_BPF_H */
