// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Tier 2, trampolines (BPF LSM inactive): fmod_ret programs on the LSM's security_*() checks. The
 * verifier lets BPF_MODIFY_RETURN attach to every function named security_* (check_attach_modify_return),
 * also when bpf is not in the LSM list: a non-zero return skips the function and becomes its result,
 * so this tier refuses with -EPERM like the LSM tier (and SIGKILLs for `kill` rules / terminate_process).
 */
#include "endura_policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("fmod_ret/security_bprm_check")
int BPF_PROG(endura_fentry_bprm_check, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret; /* another fmod_ret program already refused */
	return endura_exec_policy(bprm, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_file_open")
int BPF_PROG(endura_fentry_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	return endura_file_policy(file, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_socket_connect")
int BPF_PROG(endura_fentry_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	__u8 sa[32] = {};

	if (ret)
		return ret;
	if (addrlen < 4 || bpf_probe_read_kernel(sa, 28, address) < 0)
		return 0;
	return endura_connect_policy(sa, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_kernel_read_file")
int BPF_PROG(endura_fentry_kernel_read_file, struct file *file, enum kernel_read_file_id id, bool contents, int ret)
{
	if (ret)
		return ret;
	if (id != bpf_core_enum_value(enum kernel_read_file_id, READING_MODULE))
		return 0;
	return endura_tamper_policy(ENDURA_TAMPER_MODULE_LOAD, ENDURA_MODULE_FINIT,
				    (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name), false,
				    ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_kernel_load_data")
int BPF_PROG(endura_fentry_kernel_load_data, enum kernel_load_data_id id, bool contents, int ret)
{
	if (ret)
		return ret;
	if (id != bpf_core_enum_value(enum kernel_load_data_id, LOADING_MODULE))
		return 0;
	return endura_tamper_policy(ENDURA_TAMPER_MODULE_LOAD, ENDURA_MODULE_INIT, NULL, false, ENDURA_TIER_FENTRY,
				    true);
}

/* security_bpf() gained a 4th argument (bool kernel) in 6.9 (as the hook): only cmd is read, never ret */
SEC("fmod_ret/security_bpf")
int BPF_PROG(endura_fentry_bpf, int cmd)
{
	return endura_tamper_policy(ENDURA_TAMPER_BPF, (__u32)cmd, NULL, false, ENDURA_TIER_FENTRY, true);
}
