// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Tier 2, fentry (BPF LSM inactive): on entry to the LSM's security_*() checks, SIGKILL the task
 * doing a denied operation (exec, open of a protected file, connect, module loading, bpf()).
 */
#include "endura_policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("fentry/security_bprm_check")
int BPF_PROG(endura_fentry_bprm_check, struct linux_binprm *bprm)
{
	endura_exec_policy(bprm, ENDURA_TIER_FENTRY, false);
	return 0;
}

SEC("fentry/security_file_open")
int BPF_PROG(endura_fentry_file_open, struct file *file)
{
	endura_file_policy(file, ENDURA_TIER_FENTRY, false);
	return 0;
}

SEC("fentry/security_socket_connect")
int BPF_PROG(endura_fentry_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen)
{
	__u8 sa[32] = {};

	if (addrlen >= 4 && bpf_probe_read_kernel(sa, 28, address) == 0)
		endura_connect_policy(sa, ENDURA_TIER_FENTRY, false);
	return 0;
}

SEC("fentry/security_kernel_read_file")
int BPF_PROG(endura_fentry_kernel_read_file, struct file *file, enum kernel_read_file_id id)
{
	if (id == bpf_core_enum_value(enum kernel_read_file_id, READING_MODULE))
		endura_tamper_policy(ENDURA_TAMPER_MODULE_LOAD, ENDURA_MODULE_FINIT,
				     (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name), false,
				     ENDURA_TIER_FENTRY, false);
	return 0;
}

SEC("fentry/security_kernel_load_data")
int BPF_PROG(endura_fentry_kernel_load_data, enum kernel_load_data_id id)
{
	if (id == bpf_core_enum_value(enum kernel_load_data_id, LOADING_MODULE))
		endura_tamper_policy(ENDURA_TAMPER_MODULE_LOAD, ENDURA_MODULE_INIT, NULL, false, ENDURA_TIER_FENTRY, false);
	return 0;
}

SEC("fentry/security_bpf")
int BPF_PROG(endura_fentry_bpf, int cmd)
{
	endura_tamper_policy(ENDURA_TAMPER_BPF, (__u32)cmd, NULL, false, ENDURA_TIER_FENTRY, false);
	return 0;
}

#define ENDURA_SELF_FENTRY
#include "endura_self.bpf.h"
