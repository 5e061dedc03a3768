// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Tier 3, BTF tracepoint (no trampolines: older kernels, arm64 < 6.0, locked-down hosts):
 * sched_process_exec fires once the new image is installed and before its first instruction;
 * the queued SIGKILL is delivered on the way back to userspace.
 */
#include "endura_policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sched_process_exec")
int BPF_PROG(endura_tp_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	endura_exec_policy(bprm, ENDURA_TIER_TRACEPOINT, false);
	return 0;
}
