// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Tier 3, BTF tracepoints (no trampolines: older kernels, arm64 < 6.0, locked-down hosts): SIGKILL.
 *  - exec: sched_process_exec fires once the new image is installed and before its first instruction;
 *    the queued SIGKILL is delivered on the way back to userspace.
 *  - open of a protected file: raw sys_exit of open/openat/openat2/creat looks the new fd up; the
 *    opener dies before open() returns, so it never writes (an O_TRUNC has already truncated).
 *  - connect, init_module/finit_module, bpf(): raw sys_enter; the process dies when the call returns
 *    (a TCP SYN may leave; no data follows).
 * 32-bit compat syscalls (x86 int 0x80) use other numbers and are not covered by this tier.
 */
#include "endura_policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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

SEC("tp_btf/sys_exit")
int BPF_PROG(endura_tp_sys_exit, struct pt_regs *regs, long ret)
{
	struct endura_config *cfg;
	long nr = ENDURA_SYSCALL_NR(regs);
	__u64 flags = 0;

	/* runs at the exit of every syscall: the cheapest tests first */
	if (nr != ENDURA_NR_OPENAT && nr != ENDURA_NR_OPEN && nr != ENDURA_NR_OPENAT2 && nr != ENDURA_NR_CREAT)
		return 0;
	if (ret < 0)
		return 0;
	cfg = endura_cfg();
	if (!cfg || !cfg->file_rules)
		return 0;
	if (!cfg->file_read_rules) { /* only write rules: a read-only open cannot match (the common case) */
		if (nr == ENDURA_NR_OPENAT)
			flags = ENDURA_SYSCALL_ARG2(regs);
		else if (nr == ENDURA_NR_OPEN)
			flags = ENDURA_SYSCALL_ARG1(regs);
		else if (nr == ENDURA_NR_OPENAT2) /* struct open_how { __u64 flags; ... } */
			bpf_probe_read_user(&flags, sizeof(flags), (void *)ENDURA_SYSCALL_ARG2(regs));
		else
			flags = 1; /* creat: O_WRONLY */
		if ((flags & ENDURA_O_ACCMODE) == ENDURA_O_RDONLY)
			return 0; /* (O_RDONLY|O_TRUNC is undefined; Linux truncates only with write access) */
	}
	endura_file_policy(endura_fd_file(ret), ENDURA_TIER_TRACEPOINT, false);
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
	long nr = ENDURA_SYSCALL_NR(regs);

	if (nr != ENDURA_NR_OPENAT && nr != ENDURA_NR_OPEN && nr != ENDURA_NR_OPENAT2)
		return 0;
	if (ret < 0)
		return 0;
	cfg = endura_cfg();
	if (!cfg || !cfg->exec_interpreters)
		return 0;
	endura_interpreted_policy(endura_fd_file(ret), ENDURA_TIER_TRACEPOINT, false);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(endura_tp_sys_enter, struct pt_regs *regs, long id)
{
	__u8 sa[32] = {};
	long len;

	if (id == ENDURA_NR_CONNECT) {
		len = PT_REGS_PARM3_CORE_SYSCALL(regs);
		if (len < 4)
			return 0;
		if (len > 28)
			len = 28;
		if (bpf_probe_read_user(sa, len & 0x1f, (void *)PT_REGS_PARM2_CORE_SYSCALL(regs)) < 0)
			return 0;
		endura_connect_policy(sa, ENDURA_TIER_TRACEPOINT, false);
	} else if (id == ENDURA_NR_FINIT_MODULE) {
		struct file *file = endura_fd_file(PT_REGS_PARM1_CORE_SYSCALL(regs));
		endura_tamper_policy(ENDURA_TAMPER_MODULE_LOAD, ENDURA_MODULE_FINIT,
				     file ? (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name) : NULL, false,
				     ENDURA_TIER_TRACEPOINT, false);
	} else if (id == ENDURA_NR_INIT_MODULE) {
		endura_tamper_policy(ENDURA_TAMPER_MODULE_LOAD, ENDURA_MODULE_INIT, NULL, false, ENDURA_TIER_TRACEPOINT,
				     false);
	} else if (id == ENDURA_NR_BPF) {
		endura_tamper_policy(ENDURA_TAMPER_BPF, (__u32)PT_REGS_PARM1_CORE_SYSCALL(regs), NULL, false,
				     ENDURA_TIER_TRACEPOINT, false);
	}
	return 0;
}

#define ENDURA_SELF_TP
#include "endura_self.bpf.h"
