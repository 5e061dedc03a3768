/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The sensor's service cgroup without a joinable exemption (BPF side; included by endura_policy.bpf.h).
 *
 * The service cgroup (endura-sensor.service) is exempt from the sensor's own bpf() and self-protection
 * rules, so that a restarted sensor can take over before the old programs go. Being in the cgroup is not
 * enough: anyone who writes a pid into its cgroup.procs would be exempt too. A process is exempt only when
 * it is recorded as a member: placed in the cgroup by the service manager (init, PID 1: systemd starting
 * the unit, or clone3(CLONE_INTO_CGROUP) from it), or born in it from a member or the sensor. A process
 * that joins by itself, or is moved in by anyone else, gains nothing (joining cannot be refused on every
 * tier, and systemd < 255 lets the forked child attach itself before PID 1 does it too).
 *
 * endura_members: key tgid -> start time of its leader (a reused pid is not a member); removed when the
 * leader exits. Key 0: the overflow flag (set when a member could not be recorded: the map is full; the
 * sensor reports it). Key ENDURA_MANAGER_KEY: the tgid of a service manager that is not init (0: none;
 * the sensor's $ENDURA_SERVICE_MANAGER_PID: a supervisor, the integration tests), trusted like init.
 * The sensor writes keys 0 and ENDURA_MANAGER_KEY, then freezes the map for bpf(): only programs change
 * it. It is shared by the copies of a policy and pinned for the successor, which reuses it.
 */
#ifndef ENDURA_MEMBERS_BPF_H
#define ENDURA_MEMBERS_BPF_H

#define ENDURA_MAX_MEMBERS 4096
#define ENDURA_MANAGER_KEY 0xffffffffu

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDURA_MAX_MEMBERS);
	__type(key, __u32);
	__type(value, __u64);
} endura_members SEC(".maps");

/* Whether cgrp is the sensor's service cgroup: the very one (by id), or one of the same name below the
 * same parent (systemd creates a new one, with a new id, for each start of the unit). */
static __always_inline bool endura_cgroup_is_sensor(const struct endura_config *cfg, struct cgroup *cgrp)
{
	char name[ENDURA_CGROUP_NAME_LEN];
	int i;

	if (!cfg->sensor_cgroup_id || !cgrp)
		return false;
	if (BPF_CORE_READ(cgrp, kn, id) == cfg->sensor_cgroup_id)
		return true;
	if (!cfg->sensor_cgroup_parent_id || !cfg->sensor_cgroup_name[0])
		return false;
	if (BPF_CORE_READ(cgrp, self.parent, cgroup, kn, id) != cfg->sensor_cgroup_parent_id)
		return false;
	if (bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(cgrp, kn, name)) < 0)
		return false;
	for (i = 0; i < ENDURA_CGROUP_NAME_LEN; i++) {
		if (name[i] != cfg->sensor_cgroup_name[i])
			return false;
		if (!name[i])
			break;
	}
	return true;
}

static __always_inline bool endura_task_in_sensor_cgroup(const struct endura_config *cfg, struct task_struct *task)
{
	return endura_cgroup_is_sensor(cfg, BPF_CORE_READ(task, cgroups, dfl_cgrp));
}

/* init (PID 1), or the service manager named when the record was created: it starts and stops the service */
static __always_inline bool endura_is_service_manager(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, key = ENDURA_MANAGER_KEY;
	__u64 *manager;

	if (tgid == 1)
		return true;
	manager = bpf_map_lookup_elem(&endura_members, &key);
	return manager && *manager && *manager == tgid;
}

static __always_inline bool endura_is_member(struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	__u64 *start;

	if (!tgid || tgid == ENDURA_MANAGER_KEY)
		return false;
	start = bpf_map_lookup_elem(&endura_members, &tgid);
	return start && *start == BPF_CORE_READ(task, group_leader, start_time);
}

static __always_inline void endura_add_member(struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid), zero = 0;
	__u64 start = BPF_CORE_READ(task, group_leader, start_time), *overflow;

	if (bpf_map_update_elem(&endura_members, &tgid, &start, BPF_ANY) == 0)
		return;
	overflow = bpf_map_lookup_elem(&endura_members, &zero);
	if (overflow)
		*overflow = 1;
}

#endif /* ENDURA_MEMBERS_BPF_H */
