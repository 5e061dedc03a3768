/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Endura Runtime Sensor: the ABI shared between the BPF programs and the sensor (userspace).
 *
 * Every value is explicit and every field fixed-size; there is no implicit padding. The Python
 * decoder (sensor/endura_sensor/events.py) mirrors this file and tests/integration/test_bpf_build.py
 * compares both with the BTF of the compiled objects. Change them together and bump
 * ENDURA_ABI_VERSION.
 *
 * Without __bpf__ (i.e. from userspace C) only the types and constants are visible.
 */
#ifndef ENDURA_EVENTS_H
#define ENDURA_EVENTS_H

#define ENDURA_ABI_VERSION 1

#define ENDURA_COMM_LEN 16
#define ENDURA_PATH_LEN 256
#define ENDURA_MAX_DENY_RULES 16384
#define ENDURA_RINGBUF_BYTES (256 * 1024)

/* struct endura_event.type */
enum endura_event_type {
	ENDURA_EVENT_EXEC_DENIED = 1, /* exec of a denied executable (device, inode) */
};

/* struct endura_event.action: what the kernel did (bit flags; AUDITED alone = nothing enforced) */
enum endura_action {
	ENDURA_ACTION_AUDITED = 1, /* reported only (audit mode, or no way to enforce) */
	ENDURA_ACTION_BLOCKED = 2, /* the LSM hook returned -EPERM */
	ENDURA_ACTION_KILLED = 4,  /* SIGKILL was queued with bpf_send_signal() */
};

/* struct endura_event.tier: which program produced the event */
enum endura_tier {
	ENDURA_TIER_LSM = 1,        /* lsm/bprm_check_security: blocks before exec */
	ENDURA_TIER_FENTRY = 2,     /* fentry/security_bprm_check: SIGKILL */
	ENDURA_TIER_TRACEPOINT = 3, /* tp_btf/sched_process_exec: SIGKILL before the first instruction */
};

/* struct endura_config.enforcement */
enum endura_enforcement {
	ENDURA_ENFORCEMENT_AUDIT = 0, /* default (zeroed map): never blocks nor kills */
	ENDURA_ENFORCEMENT_ENFORCE = 1,
};

/* key of the deny map: the kernel's view of the file (dev is the kernel encoding: major << 20 | minor) */
struct endura_file_key {
	__u64 dev;
	__u64 ino;
};

struct endura_deny_rule {
	__u32 rule_id; /* reported back in events */
	__u32 flags;   /* reserved, 0 */
};

/* the single entry (key 0) of the config map */
struct endura_config {
	__u32 enforcement;       /* enum endura_enforcement */
	__u32 terminate_process; /* 1: SIGKILL the offender (all tiers; fentry/tracepoint can do nothing else) */
	__u32 reserved[2];
};

/* one ring-buffer record; 344 bytes */
struct endura_event {
	__u32 type;   /* enum endura_event_type */
	__u32 action; /* enum endura_action flags */
	__u32 tier;   /* enum endura_tier */
	__u32 rule_id;
	__u64 timestamp_ns; /* bpf_ktime_get_boot_ns(): CLOCK_BOOTTIME */
	__u64 cgroup_id;
	__u32 pid;  /* tgid */
	__u32 tid;
	__u32 ppid; /* tgid of the real parent */
	__u32 uid;
	__u32 gid;
	__s32 kill_result; /* bpf_send_signal() return value when KILLED was attempted, else 0 */
	__u64 dev;
	__u64 ino;
	char comm[ENDURA_COMM_LEN];     /* task comm at the hook (the old image's name for fentry/LSM) */
	char filename[ENDURA_PATH_LEN]; /* bprm->filename as passed to execve, truncated */
};

#if defined(__bpf__)
/* ---- maps shared by every program object (same names in every tier) ---- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDURA_MAX_DENY_RULES);
	__type(key, struct endura_file_key);
	__type(value, struct endura_deny_rule);
} endura_deny SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct endura_config);
} endura_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, ENDURA_RINGBUF_BYTES);
} endura_events SEC(".maps");

/* events lost because the ring buffer was full: userspace sums the per-CPU values */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} endura_drops SEC(".maps");
#endif /* __bpf__ */

#endif /* ENDURA_EVENTS_H */
