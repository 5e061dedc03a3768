// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Tier 1, BPF LSM: refuse denied operations with -EPERM before they happen (and SIGKILL when the
 * rule or terminate_process says so): exec, open of protected files, connect, module loading, bpf().
 */
#include "endura_policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("lsm/bprm_check_security")
int BPF_PROG(endura_lsm_bprm_check, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret; /* an earlier LSM already refused */
	return endura_exec_policy(bprm, ENDURA_TIER_LSM, true);
}

SEC("lsm/file_open")
int BPF_PROG(endura_lsm_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	return endura_file_policy(file, ENDURA_TIER_LSM, true);
}

SEC("lsm/socket_connect")
int BPF_PROG(endura_lsm_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	__u8 sa[32] = {};

	if (ret)
		return ret;
	if (addrlen < 4 || bpf_probe_read_kernel(sa, 28, address) < 0)
		return 0;
	return endura_connect_policy(sa, ENDURA_TIER_LSM, true);
}

SEC("lsm/kernel_read_file")
int BPF_PROG(endura_lsm_kernel_read_file, struct file *file, enum kernel_read_file_id id, bool contents, int ret)
{
	if (ret)
		return ret;
	if (id != bpf_core_enum_value(enum kernel_read_file_id, READING_MODULE))
		return 0;
	return endura_tamper_policy(ENDURA_TAMPER_MODULE_LOAD, ENDURA_MODULE_FINIT,
				    (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name), false,
				    ENDURA_TIER_LSM, true);
}

SEC("lsm/kernel_load_data")
int BPF_PROG(endura_lsm_kernel_load_data, enum kernel_load_data_id id, bool contents, int ret)
{
	if (ret)
		return ret;
	if (id != bpf_core_enum_value(enum kernel_load_data_id, LOADING_MODULE))
		return 0;
	return endura_tamper_policy(ENDURA_TAMPER_MODULE_LOAD, ENDURA_MODULE_INIT, NULL, false, ENDURA_TIER_LSM, true);
}

SEC("lsm/kernel_module_request")
int BPF_PROG(endura_lsm_kernel_module_request, char *kmod_name, int ret)
{
	if (ret)
		return ret;
	return endura_tamper_policy(ENDURA_TAMPER_MODULE_LOAD, ENDURA_MODULE_REQUEST, kmod_name, false,
				    ENDURA_TIER_LSM, true);
}

/* the hook gained a 4th argument (bool kernel) in 6.9: only cmd is read, never the chained ret */
SEC("lsm/bpf")
int BPF_PROG(endura_lsm_bpf, int cmd)
{
	return endura_tamper_policy(ENDURA_TAMPER_BPF, (__u32)cmd, NULL, false, ENDURA_TIER_LSM, true);
}

#define ENDURA_SELF_LSM
#include "endura_self.bpf.h"
