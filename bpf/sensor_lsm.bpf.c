// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Tier 1, BPF LSM: refuse the exec of a denied file with -EPERM (and SIGKILL when configured). */
#include "endura_policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("lsm/bprm_check_security")
int BPF_PROG(endura_lsm_bprm_check, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret; /* an earlier LSM already refused */
	return endura_exec_policy(bprm, ENDURA_TIER_LSM, true);
}
