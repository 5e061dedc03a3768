// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Tier 2, fentry (BPF LSM inactive): SIGKILL the task exec'ing a denied file, before it runs. */
#include "endura_policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("fentry/security_bprm_check")
int BPF_PROG(endura_fentry_bprm_check, struct linux_binprm *bprm)
{
	endura_exec_policy(bprm, ENDURA_TIER_FENTRY, false);
	return 0;
}
