/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
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

#define ENDURA_ABI_VERSION 4

#define ENDURA_COMM_LEN 16
#define ENDURA_PATH_LEN 256
#define ENDURA_MAX_RULES 16384 /* entries per rule map (exec, files, net) */
#define ENDURA_MAX_DEPTH 32    /* ancestor directories walked for `dir` rules (mounts are crossed) */
#define ENDURA_RINGBUF_BYTES (256 * 1024)
#define ENDURA_CGROUP_NAME_LEN 64
#define ENDURA_NAME_LEN 64 /* a protected name (last path component) incl. its NUL: longer ones only by inode */
#define ENDURA_MAX_INTERPRETERS 256 /* the sensor service cgroup's own name (e.g. endura-sensor.service), NUL-terminated */

/* struct endura_event.type */
enum endura_event_type {
	ENDURA_EVENT_EXEC_DENIED = 1,        /* exec of a denied executable (device, inode) */
	ENDURA_EVENT_FILE_OPEN_DENIED = 2,   /* open of a protected file; detail = f_mode (1 read, 2 write) */
	ENDURA_EVENT_CONNECT_DENIED = 3,     /* connect() to a denied address/port */
	ENDURA_EVENT_MODULE_LOAD_DENIED = 4, /* init_module/finit_module/request_module; detail = how */
	ENDURA_EVENT_BPF_DENIED = 5,         /* bpf() by a process other than the sensor; detail = cmd */
	ENDURA_EVENT_FILE_OP_DENIED = 6,     /* another change to a protected file or directory; detail = enum endura_file_op */
	ENDURA_EVENT_SENSOR_TAMPER_DENIED = 7, /* an attempt on the sensor itself; detail = enum endura_sensor_op */
	ENDURA_EVENT_IO_URING_DENIED = 8,    /* io_uring_setup(2) under an io_uring rule; detail = the entries asked for */
};

/* struct endura_event.detail for ENDURA_EVENT_EXEC_DENIED: how the file was to be run */
enum endura_exec_how {
	ENDURA_EXEC_EXECVE = 0,      /* execve/execveat of the file (or a `#!` script's step) */
	ENDURA_EXEC_INTERPRETED = 1, /* opened for reading by an interpreter (sh x.sh, python x.py, ld.so x) */
	ENDURA_EXEC_MMAP = 2,        /* mapped executable (mmap/mprotect PROT_EXEC: ld.so, dlopen) */
	ENDURA_EXEC_FILELESS = 3,    /* a file without a name (memfd_create, O_TMPFILE, deleted): fileless_exec rule */
};

/* struct endura_event.detail for ENDURA_EVENT_FILE_OP_DENIED */
enum endura_file_op {
	ENDURA_FILE_OP_RENAME_FROM = 1, /* rename of the protected file (or out of a protected directory) */
	ENDURA_FILE_OP_RENAME_TO = 2,   /* rename over the protected file, or into a protected directory */
	ENDURA_FILE_OP_LINK_FROM = 3,   /* a new hard link to the protected file */
	ENDURA_FILE_OP_LINK_TO = 4,     /* a hard link created at a protected name or in a protected directory */
	ENDURA_FILE_OP_UNLINK = 5,      /* unlink of the protected file */
	ENDURA_FILE_OP_TRUNCATE = 6,    /* truncate(2)/ftruncate(2) */
	ENDURA_FILE_OP_CREATE = 7,      /* create (file, directory, node, symlink) at a protected name or in a protected directory */
	ENDURA_FILE_OP_WRITE = 8,       /* write through an fd opened before (or shared with another process) */
	ENDURA_FILE_OP_RMDIR = 9,       /* rmdir of a protected directory */
};

/* struct endura_event.detail for ENDURA_EVENT_CONNECT_DENIED */
enum endura_net_how {
	ENDURA_NET_CONNECT = 0, /* connect(2) (also io_uring's) */
	ENDURA_NET_SENDMSG = 1, /* sendto/sendmsg/sendmmsg with a destination address (UDP, TCP Fast Open) */
};

/* struct endura_event.detail for ENDURA_EVENT_SENSOR_TAMPER_DENIED */
enum endura_sensor_op {
	ENDURA_SENSOR_OP_SIGNAL = 1, /* a signal that stops or ends the sensor, from a process other than init */
	ENDURA_SENSOR_OP_PTRACE = 2, /* ptrace (or process_vm_writev, /proc/<pid>/mem) of the sensor */
	ENDURA_SENSOR_OP_CGROUP = 3, /* moving a process into the sensor's service cgroup */
	ENDURA_SENSOR_OP_PIN = 4,    /* removing or renaming the sensor's pins in the BPF filesystem */
};

/* struct endura_event.action: what the kernel did (bit flags; AUDITED alone = nothing enforced) */
enum endura_action {
	ENDURA_ACTION_AUDITED = 1, /* reported only (audit mode, or no way to enforce) */
	ENDURA_ACTION_BLOCKED = 2, /* the LSM hook returned -EPERM */
	ENDURA_ACTION_KILLED = 4,  /* SIGKILL was queued with bpf_send_signal() */
};

/* struct endura_event.tier: which program produced the event */
enum endura_tier {
	ENDURA_TIER_LSM = 1,        /* lsm/...: blocks before the operation */
	ENDURA_TIER_FENTRY = 2,     /* fentry/security_...: SIGKILL */
	ENDURA_TIER_TRACEPOINT = 3, /* tp_btf/...: SIGKILL (exec: before the first instruction) */
};

/* struct endura_config.enforcement */
enum endura_enforcement {
	ENDURA_ENFORCEMENT_AUDIT = 0, /* default (zeroed map): never blocks nor kills */
	ENDURA_ENFORCEMENT_ENFORCE = 1,
};

/*
 * struct endura_verdict.action and struct endura_rule.action: the policy file's per-rule action,
 * numbered by strictness (audit < block < kill), so the stricter of two is the larger.
 */
enum endura_rule_action {
	ENDURA_RULE_NONE = 0,  /* no rule (an empty slot of struct endura_file_rule) */
	ENDURA_RULE_AUDIT = 1, /* report only */
	ENDURA_RULE_BLOCK = 2, /* what the tier can do: -EPERM (LSM), + SIGKILL when terminate_process */
	ENDURA_RULE_KILL = 3,  /* always SIGKILL (and -EPERM on the LSM tier) */
};

/* index into struct endura_file_rule.self and .below: the access */
enum endura_slot {
	ENDURA_SLOT_EXEC = 0,  /* endura_exec: executing the file */
	ENDURA_SLOT_READ = 0,  /* endura_files: opening it for reading */
	ENDURA_SLOT_WRITE = 1, /* endura_files: opening it for writing */
	ENDURA_SLOTS = 2,
};

/* index into the endura_tamper array */
enum endura_tamper_index {
	ENDURA_TAMPER_MODULE_LOAD = 0,
	ENDURA_TAMPER_BPF = 1,
	ENDURA_TAMPER_FILELESS_EXEC = 2, /* exec of a file without a name: memfd, O_TMPFILE, deleted */
	ENDURA_TAMPER_IO_URING = 3,      /* io_uring_setup(2) (the tracepoint tier cannot see io_uring's operations) */
	ENDURA_TAMPER_SENSOR = 4,        /* the sensor itself: signals, ptrace, its cgroup, its pins */
	ENDURA_TAMPER_COUNT = 5,
};

/* struct endura_event.detail for ENDURA_EVENT_MODULE_LOAD_DENIED */
enum endura_module_how {
	ENDURA_MODULE_INIT = 1,    /* init_module(2) / kernel_load_data */
	ENDURA_MODULE_FINIT = 2,   /* finit_module(2) / kernel_read_file */
	ENDURA_MODULE_REQUEST = 3, /* request_module() (autoload on behalf of the process) */
};

/* key of the exec and files maps: the kernel's view of the file (dev is the kernel encoding: major << 20 | minor) */
struct endura_file_key {
	__u64 dev;
	__u64 ino;
};

/*
 * key of the names maps: a name in a directory (the directory's dev and inode, the name NUL-padded), so
 * that a rule on a path holds for whatever file appears there: one that does not exist yet, or one
 * that replaces the protected file (`sed -i`, `mv x /etc/sudoers`) before userspace resolves it again
 */
struct endura_name_key {
	__u64 dev;
	__u64 ino;
	char name[ENDURA_NAME_LEN];
};

/* what applies to one access: the strictest of the rules that match it (merged by userspace) */
struct endura_verdict {
	__u32 rule_id; /* the rule reported in events (the first of equally strict ones); 0 = no rule */
	__u32 action;  /* enum endura_rule_action; ENDURA_RULE_NONE = no rule */
};

/*
 * value of the exec and files maps: the verdicts for the inode itself (path and sha256 rules) and,
 * separately, for everything below it when it is a directory (dir rules). The kernel takes the
 * strictest of the file's own `self` verdict and every ancestor directory's `below` verdict.
 */
struct endura_file_rule {
	struct endura_verdict self[ENDURA_SLOTS];  /* indexed by enum endura_slot */
	struct endura_verdict below[ENDURA_SLOTS];
	__u32 generation; /* != 0: the inode's i_generation when it was resolved; another value means the inode
			     number was freed and reused by another file, which the entry must not match */
	__u32 reserved;
};

/* value of the net map and of the tamper array (rule_id 0 = no rule) */
struct endura_rule {
	__u32 rule_id; /* reported back in events */
	__u32 action;  /* enum endura_rule_action */
	__u32 reserved[2];
};

/* key of the net LPM trie: port (big-endian, 0 = any port) then the IPv6 address (IPv4 as ::ffff:a.b.c.d) */
struct endura_net_key {
	__u32 prefixlen; /* 16 (port) + address prefix bits (IPv4 /n = 96 + n) */
	__u8 port[2];
	__u8 addr[16];
	__u8 reserved[2];
};

/* the single entry (key 0) of the config map */
struct endura_config {
	__u32 enforcement;        /* enum endura_enforcement */
	__u32 terminate_process;  /* 1: SIGKILL on `block` rules too (fentry/tracepoint can do nothing else) */
	__u32 sensor_tgid;        /* the sensor itself: exempt from bpf() rules */
	__u32 exec_subtree_rules; /* > 0: walk ancestors of exec'd files (entries with a `below` verdict) */
	__u32 file_rules;         /* > 0: check opens */
	__u32 file_subtree_rules; /* > 0: walk ancestors of opened files */
	__u32 net_rules;          /* > 0: check connects */
	__u32 file_read_rules;    /* > 0: some entry has a read verdict (else read-only opens are skipped early) */
	__u64 sensor_cgroup_id;   /* != 0: the sensor's own cgroup (v2 id; e.g. endura-sensor.service) is exempt
				     from bpf() rules too, so a restarted sensor can replace pinned programs */
	__u64 sensor_cgroup_parent_id; /* != 0: a cgroup named sensor_cgroup_name directly below this one (v2 id) is
					  the service's too: systemd re-creates the service's cgroup (a new id, the
					  same name and parent) on every restart, and the successor must be exempt */
	char sensor_cgroup_name[ENDURA_CGROUP_NAME_LEN];
	__u32 exec_interpreters;  /* > 0: interpreters (endura_interpreters) reading an exec-denied file are refused */
	__u32 name_rules;         /* > 0: endura_names has entries (protected names, existing or not) */
	__u32 tainted_files;      /* unused, 0: the map is frozen; the tracepoint tier keeps its own endura_tainted_any */
	__u32 reserved[5];        /* zero */
};

/* one ring-buffer record; 368 bytes */
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
	__u64 dev;         /* exec/file: the file itself (also when a directory's rule matched) */
	__u64 ino;
	char comm[ENDURA_COMM_LEN];     /* task comm at the hook (the old image's name for fentry/LSM) */
	char filename[ENDURA_PATH_LEN]; /* exec: bprm->filename; file: the dentry name; module: the name */
	__u8 addr[16];  /* connect: IPv6 or IPv4-mapped address */
	__u16 port;     /* connect: host byte order */
	__u16 family;   /* connect: AF_INET 2 / AF_INET6 10 */
	__u32 detail;   /* file: f_mode; module: enum endura_module_how; bpf: cmd */
};

#if defined(__bpf__)
/* ---- maps shared by every program object (same names in every tier) ---- */

/*
 * The rule maps (exec, files, net, tamper, config) are read-only for every BPF program
 * (BPF_F_RDONLY_PROG: the verifier refuses a program that writes or deletes, an attacker's included)
 * and frozen by the sensor once filled (BPF_MAP_FREEZE: bpf() refuses every later change, from any
 * process). A new policy is a new copy of the object, attached before the old one goes.
 */
#define ENDURA_RULE_MAP_FLAGS BPF_F_RDONLY_PROG

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDURA_MAX_RULES);
	__uint(map_flags, ENDURA_RULE_MAP_FLAGS);
	__type(key, struct endura_file_key);
	__type(value, struct endura_file_rule);
} endura_exec SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDURA_MAX_RULES);
	__uint(map_flags, ENDURA_RULE_MAP_FLAGS);
	__type(key, struct endura_file_key);
	__type(value, struct endura_file_rule);
} endura_files SEC(".maps");

/* names maps: (directory, name) -> the verdicts (`self` slots) for the object at that name */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDURA_MAX_RULES);
	__uint(map_flags, ENDURA_RULE_MAP_FLAGS);
	__type(key, struct endura_name_key);
	__type(value, struct endura_file_rule);
} endura_exec_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDURA_MAX_RULES);
	__uint(map_flags, ENDURA_RULE_MAP_FLAGS);
	__type(key, struct endura_name_key);
	__type(value, struct endura_file_rule);
} endura_file_names SEC(".maps");

/* executables that run a file they read (shells, ld.so): such a read of an exec-denied file is an exec */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDURA_MAX_INTERPRETERS);
	__uint(map_flags, ENDURA_RULE_MAP_FLAGS);
	__type(key, struct endura_file_key);
	__type(value, __u32);
} endura_interpreters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, ENDURA_MAX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC | ENDURA_RULE_MAP_FLAGS);
	__type(key, struct endura_net_key);
	__type(value, struct endura_rule);
} endura_net SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENDURA_TAMPER_COUNT);
	__uint(map_flags, ENDURA_RULE_MAP_FLAGS);
	__type(key, __u32);
	__type(value, struct endura_rule);
} endura_tamper SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, ENDURA_RULE_MAP_FLAGS);
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
