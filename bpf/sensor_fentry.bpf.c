// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Tier 2, trampolines (BPF LSM inactive): fmod_ret programs on the LSM's security_*() checks. The
 * verifier lets BPF_MODIFY_RETURN attach to every function named security_* (check_attach_modify_return),
 * also when bpf is not in the LSM list: a non-zero return skips the function and becomes its result,
 * so this tier refuses with -EPERM like the LSM tier (and SIGKILLs for `kill` rules / terminate_process).
 */
#define ENDURA_GLOBAL_LOOKUPS 1 /* rename, link and exec look up through global functions */
#include "endura_fileops.bpf.h"

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

/* an interpreter reading an exec-denied file: a program of its own (both walks in one: 57,000 instructions
   processed on 6.1); fmod_ret programs on one function run in turn, each sees the previous one's ret */
SEC("fmod_ret/security_file_open")
int BPF_PROG(endura_fentry_file_open_interp, struct file *file, int ret)
{
	if (ret)
		return ret;
	return endura_interpreted_policy(file, ENDURA_TIER_FENTRY, true);
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

/* ---------------------------------------------------------------- effect hooks (endura_fileops.bpf.h) */

SEC("fmod_ret/security_path_rename")
int BPF_PROG(endura_fentry_path_rename, const struct path *old_dir, struct dentry *old_dentry,
	     const struct path *new_dir, struct dentry *new_dentry, unsigned int flags, int ret)
{
	if (ret)
		return ret;
	return endura_rename_policy(old_dir, old_dentry, new_dir, new_dentry, flags, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_path_link")
int BPF_PROG(endura_fentry_path_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry,
	     int ret)
{
	if (ret)
		return ret;
	return endura_link_policy(old_dentry, new_dir, new_dentry, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_path_unlink")
int BPF_PROG(endura_fentry_path_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return endura_remove_policy(ENDURA_FILE_OP_UNLINK, dir, dentry, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_path_rmdir")
int BPF_PROG(endura_fentry_path_rmdir, const struct path *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return endura_remove_policy(ENDURA_FILE_OP_RMDIR, dir, dentry, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_path_truncate")
int BPF_PROG(endura_fentry_path_truncate, const struct path *path, int ret)
{
	if (ret)
		return ret;
	return endura_truncate_policy(BPF_CORE_READ(path, mnt), BPF_CORE_READ(path, dentry), ENDURA_TIER_FENTRY, true);
}

/* 6.2+: ftruncate(2) and O_TRUNC (before, both went through security_path_truncate) */
SEC("fmod_ret/security_file_truncate")
int BPF_PROG(endura_fentry_file_truncate, struct file *file, int ret)
{
	if (ret)
		return ret;
	return endura_file_truncate_policy(file, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_path_mknod")
int BPF_PROG(endura_fentry_path_mknod, const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev,
	     int ret)
{
	if (ret)
		return ret;
	return endura_create_policy(dir, dentry, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_path_mkdir")
int BPF_PROG(endura_fentry_path_mkdir, const struct path *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (ret)
		return ret;
	return endura_create_policy(dir, dentry, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_path_symlink")
int BPF_PROG(endura_fentry_path_symlink, const struct path *dir, struct dentry *dentry, const char *old_name, int ret)
{
	if (ret)
		return ret;
	return endura_create_policy(dir, dentry, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_file_permission")
int BPF_PROG(endura_fentry_file_permission, struct file *file, int mask, int ret)
{
	if (ret)
		return ret;
	return endura_write_policy(file, mask, ENDURA_TIER_FENTRY, true);
}

/* security_mmap_file() takes the requested prot (the hook gets it with READ_IMPLIES_EXEC applied) */
SEC("fmod_ret/security_mmap_file")
int BPF_PROG(endura_fentry_mmap_file, struct file *file, unsigned long prot, unsigned long flags, int ret)
{
	if (ret)
		return ret;
	return endura_mmap_policy(file, prot, flags, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_file_mprotect")
int BPF_PROG(endura_fentry_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot,
	     int ret)
{
	if (ret)
		return ret;
	return endura_mprotect_policy(vma, prot, ENDURA_TIER_FENTRY, true);
}

SEC("fmod_ret/security_socket_sendmsg")
int BPF_PROG(endura_fentry_socket_sendmsg, struct socket *sock, struct msghdr *msg, int size, int ret)
{
	if (ret)
		return ret;
	return endura_sendmsg_policy(msg, ENDURA_TIER_FENTRY, true);
}

#define ENDURA_SELF_FENTRY
#include "endura_self.bpf.h"
