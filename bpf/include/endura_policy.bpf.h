/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* The exec policy shared by the three tiers: look the file up, decide, report. BPF side only. */
#ifndef ENDURA_POLICY_BPF_H
#define ENDURA_POLICY_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "endura_events.h"

#define ENDURA_EPERM 1
#define ENDURA_SIGKILL 9

/*
 * Keep struct endura_event in the object's BTF (the layout test compares it with the Python
 * decoder): a local type-id relocation, resolved by libbpf without the kernel's BTF.
 */
static __always_inline void endura_anchor_event_type(void)
{
	volatile __u32 event_type_id = bpf_core_type_id_local(struct endura_event);
	(void)event_type_id;
}

static __always_inline int endura_file_key_of(struct file *file, struct endura_file_key *key)
{
	struct inode *inode;

	if (!file)
		return -1;
	inode = BPF_CORE_READ(file, f_inode);
	if (!inode)
		return -1;
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->ino = BPF_CORE_READ(inode, i_ino);
	return 0;
}

/*
 * The rule matching the file being exec'd. LSM and fentry run security_bprm_check() once per binfmt
 * step, so they see a `#!` script and then its interpreter; at tp_btf/sched_process_exec only the
 * final file (the interpreter) is left, plus bprm->executable for binfmt_misc 'O' (execfd) handlers.
 */
static __always_inline struct endura_deny_rule *endura_match(struct linux_binprm *bprm, struct endura_file_key *key)
{
	struct endura_deny_rule *rule = NULL;
	struct file *file;

	if (endura_file_key_of(BPF_CORE_READ(bprm, file), key) == 0)
		rule = bpf_map_lookup_elem(&endura_deny, key);
	if (!rule && bpf_core_field_exists(bprm->executable)) {
		file = BPF_CORE_READ(bprm, executable);
		if (file && endura_file_key_of(file, key) == 0)
			rule = bpf_map_lookup_elem(&endura_deny, key);
	}
	return rule;
}

static __always_inline void endura_report(struct linux_binprm *bprm, const struct endura_file_key *key,
					  const struct endura_deny_rule *rule, __u32 tier, __u32 action,
					  int kill_result)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct endura_event *e;
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ugid = bpf_get_current_uid_gid();
	__u32 zero = 0;

	e = bpf_ringbuf_reserve(&endura_events, sizeof(*e), 0);
	if (!e) {
		__u64 *drops = bpf_map_lookup_elem(&endura_drops, &zero);
		if (drops)
			__sync_fetch_and_add(drops, 1);
		return;
	}
	e->type = ENDURA_EVENT_EXEC_DENIED;
	e->action = action;
	e->tier = tier;
	e->rule_id = rule->rule_id;
	e->timestamp_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)ugid;
	e->gid = ugid >> 32;
	e->kill_result = kill_result;
	e->dev = key->dev;
	e->ino = key->ino;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename)) < 0)
		e->filename[0] = '\0';
	bpf_ringbuf_submit(e, 0);
}

/*
 * Decide for one exec. can_block: the hook's return value is honoured (LSM).
 * Returns -EPERM when the exec must be refused, else 0.
 */
static __always_inline int endura_exec_policy(struct linux_binprm *bprm, __u32 tier, bool can_block)
{
	struct endura_file_key key = {};
	struct endura_deny_rule *rule;
	struct endura_config *cfg;
	__u32 zero = 0, action = 0;
	int kill_result = 0, ret = 0;

	endura_anchor_event_type();
	rule = endura_match(bprm, &key);
	if (!rule)
		return 0;
	cfg = bpf_map_lookup_elem(&endura_config, &zero);
	if (cfg && cfg->enforcement == ENDURA_ENFORCEMENT_ENFORCE) {
		if (can_block) {
			action |= ENDURA_ACTION_BLOCKED;
			ret = -ENDURA_EPERM;
		}
		if (cfg->terminate_process) {
			kill_result = bpf_send_signal(ENDURA_SIGKILL);
			if (kill_result == 0)
				action |= ENDURA_ACTION_KILLED;
		}
	}
	if (!action)
		action = ENDURA_ACTION_AUDITED;
	endura_report(bprm, &key, rule, tier, action, kill_result);
	return ret;
}

#endif /* ENDURA_POLICY_BPF_H */
