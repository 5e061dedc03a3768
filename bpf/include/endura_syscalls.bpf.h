/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The tracepoint tier's view of raw syscalls: which syscall (native or 32-bit compat) does what,
 * and where its arguments are. Only sensor_tp.bpf.c includes this.
 *
 * Numbers were checked against the kernel's tables: arch/x86/entry/syscalls/syscall_64.tbl and
 * syscall_32.tbl, include/uapi/asm-generic/unistd.h (arm64), arch/arm/tools/syscall.tbl (arm64 compat:
 * the EABI numbers; OABI, and with it socketcall 102, does not exist for compat tasks).
 *
 * A compat syscall reaches the same raw sys_enter/sys_exit tracepoints with its own numbers, so each
 * number means something only together with the task's ABI for that one syscall:
 *  - x86_64: thread_info.status & TS_COMPAT, set on every 32-bit entry (int 0x80, sysenter, 32-bit
 *    syscall) and kept "until we return to user mode" (arch/x86/include/asm/syscall.h, which uses it
 *    the same way in syscall_get_arguments() and syscall_get_arch()). A 64-bit task using int 0x80 is
 *    a compat syscall too; a 32-bit task can in turn make 64-bit syscalls (far jump to a 64-bit code
 *    segment): the test is per syscall, never per task. Arguments are in bx, cx, dx, si, di, bp and
 *    only their low 32 bits count (the ia32 wrappers truncate: upper halves are attacker-chosen for
 *    int 0x80 from 64-bit code). Only the low 32 bits of orig_ax count, for 64-bit syscalls too
 *    (do_syscall_64() takes an int): a number with junk in the upper half still runs the syscall.
 *    x32 (nr | 0x40000000, CONFIG_X86_X32_ABI) uses the 64-bit numbers, registers and calling
 *    convention, but 32-bit struct layouts (msghdr: x32 sendmsg 518, sendmmsg 538).
 *  - arm64: a compat (AArch32) task runs with PSR_MODE32_BIT in pstate (compat_user_mode()); its
 *    syscall number is in syscallno as for native ones, the arguments in regs[0..5] (orig_x0 for the
 *    first: regs[0] holds the return value at sys_exit).
 */
#ifndef ENDURA_SYSCALLS_BPF_H
#define ENDURA_SYSCALLS_BPF_H

/* what a syscall does, as far as the tracepoint tier is concerned */
enum endura_sc {
	ENDURA_SC_NONE = 0,
	/* sys_exit: the result decides */
	ENDURA_SC_OPEN,		 /* (path, flags): fd */
	ENDURA_SC_OPENAT,	 /* (dirfd, path, flags): fd */
	ENDURA_SC_OPENAT2,	 /* (dirfd, path, struct open_how *): fd */
	ENDURA_SC_CREAT,	 /* (path, mode): fd, O_WRONLY */
	ENDURA_SC_OPEN_BY_HANDLE, /* (mount_fd, handle, flags): fd */
	ENDURA_SC_FTRUNCATE,	 /* (fd, length) */
	ENDURA_SC_TRUNCATE,	 /* (path, length) */
	ENDURA_SC_RENAME,	 /* (old, new) */
	ENDURA_SC_RENAMEAT,	 /* (olddirfd, old, newdirfd, new[, flags]): renameat and renameat2 */
	ENDURA_SC_LINK,		 /* (old, new) */
	ENDURA_SC_LINKAT,	 /* (olddirfd, old, newdirfd, new, flags) */
	ENDURA_SC_UNLINK,	 /* (path) */
	ENDURA_SC_UNLINKAT,	 /* (dirfd, path, flags) */
	ENDURA_SC_EXIT_LAST = ENDURA_SC_UNLINKAT,
	/* sys_enter: the arguments decide */
	ENDURA_SC_CONNECT,	  /* (fd, sockaddr *, len) */
	ENDURA_SC_SENDTO,	  /* (fd, buf, len, flags, sockaddr *, addrlen) */
	ENDURA_SC_SENDMSG,	  /* (fd, msghdr *, flags) */
	ENDURA_SC_SENDMMSG,	  /* (fd, mmsghdr *, vlen, flags) */
	ENDURA_SC_SOCKETCALL,	  /* i386: (call, u32 args[]) */
	ENDURA_SC_INIT_MODULE,	  /* (image, len, params) */
	ENDURA_SC_FINIT_MODULE,	  /* (fd, params, flags) */
	ENDURA_SC_BPF,		  /* (cmd, attr, size) */
	ENDURA_SC_IO_URING_SETUP, /* (entries, params) */
};

#if defined(__TARGET_ARCH_x86)
#define ENDURA_TS_COMPAT 0x0002	   /* arch/x86/include/asm/thread_info.h */
#define ENDURA_X32_BIT 0x40000000 /* __X32_SYSCALL_BIT */

#define ENDURA_SC_TABLE 448 /* entries of each table: every number used is below */

/*
 * Number -> enum endura_sc, as read-only arrays: one load per syscall, and a value the verifier does
 * not know (a switch gave it one constant per syscall, and it explored everything after once per
 * constant: 36,000 instructions for sys_exit instead of ~20,000).
 */
/* syscall_64.tbl (x32-only numbers: endura_sc_classify()) */
static const __u8 endura_sc_native_table[ENDURA_SC_TABLE] = {
	[2] = ENDURA_SC_OPEN,
	[85] = ENDURA_SC_CREAT,
	[257] = ENDURA_SC_OPENAT,
	[437] = ENDURA_SC_OPENAT2,
	[304] = ENDURA_SC_OPEN_BY_HANDLE,
	[77] = ENDURA_SC_FTRUNCATE,
	[76] = ENDURA_SC_TRUNCATE,
	[82] = ENDURA_SC_RENAME,
	[264] = ENDURA_SC_RENAMEAT, /* renameat */
	[316] = ENDURA_SC_RENAMEAT, /* renameat2 */
	[86] = ENDURA_SC_LINK,
	[265] = ENDURA_SC_LINKAT,
	[87] = ENDURA_SC_UNLINK,
	[263] = ENDURA_SC_UNLINKAT,
	[42] = ENDURA_SC_CONNECT,
	[44] = ENDURA_SC_SENDTO,
	[46] = ENDURA_SC_SENDMSG,
	[307] = ENDURA_SC_SENDMMSG,
	[175] = ENDURA_SC_INIT_MODULE,
	[313] = ENDURA_SC_FINIT_MODULE,
	[321] = ENDURA_SC_BPF,
	[425] = ENDURA_SC_IO_URING_SETUP,
};
#define ENDURA_NR_X32_SENDMSG 518
#define ENDURA_NR_X32_SENDMMSG 538

/* syscall_32.tbl */
static const __u8 endura_sc_compat_table[ENDURA_SC_TABLE] = {
	[5] = ENDURA_SC_OPEN,
	[8] = ENDURA_SC_CREAT,
	[295] = ENDURA_SC_OPENAT,
	[437] = ENDURA_SC_OPENAT2,
	[342] = ENDURA_SC_OPEN_BY_HANDLE,
	[93] = ENDURA_SC_FTRUNCATE,  /* ftruncate */
	[194] = ENDURA_SC_FTRUNCATE, /* ftruncate64 */
	[92] = ENDURA_SC_TRUNCATE,   /* truncate */
	[193] = ENDURA_SC_TRUNCATE,  /* truncate64 */
	[38] = ENDURA_SC_RENAME,
	[302] = ENDURA_SC_RENAMEAT, /* renameat */
	[353] = ENDURA_SC_RENAMEAT, /* renameat2 */
	[9] = ENDURA_SC_LINK,
	[303] = ENDURA_SC_LINKAT,
	[10] = ENDURA_SC_UNLINK,
	[301] = ENDURA_SC_UNLINKAT,
	[362] = ENDURA_SC_CONNECT,
	[369] = ENDURA_SC_SENDTO,
	[370] = ENDURA_SC_SENDMSG,
	[345] = ENDURA_SC_SENDMMSG,
	[102] = ENDURA_SC_SOCKETCALL,
	[128] = ENDURA_SC_INIT_MODULE,
	[350] = ENDURA_SC_FINIT_MODULE,
	[357] = ENDURA_SC_BPF,
	[425] = ENDURA_SC_IO_URING_SETUP,
};

static __always_inline bool endura_in_compat_syscall(struct pt_regs *regs)
{
	return bpf_get_current_task_btf()->thread_info.status & ENDURA_TS_COMPAT;
}

/* argument i (0-based) of the current syscall; intact at sys_exit too (only ax holds the result) */
static __always_inline unsigned long endura_sc_arg(struct pt_regs *regs, bool compat, int i)
{
	if (compat) {
		switch (i) {
		case 0: return (__u32)regs->bx;
		case 1: return (__u32)regs->cx;
		case 2: return (__u32)regs->dx;
		case 3: return (__u32)regs->si;
		case 4: return (__u32)regs->di;
		default: return (__u32)regs->bp;
		}
	}
	switch (i) {
	case 0: return regs->di;
	case 1: return regs->si;
	case 2: return regs->dx;
	case 3: return regs->r10;
	case 4: return regs->r8;
	default: return regs->r9;
	}
}

/* the syscall number as the kernel dispatches it (low 32 bits of orig_ax) */
#define ENDURA_SC_NR(regs) ((int)(regs)->orig_ax)

#elif defined(__TARGET_ARCH_arm64)
#define ENDURA_PSR_MODE32_BIT 0x10 /* arch/arm64/include/uapi/asm/ptrace.h */
#define ENDURA_X32_BIT 0	   /* no such ABI */

#define ENDURA_SC_TABLE 448
#define ENDURA_NR_X32_SENDMSG -1
#define ENDURA_NR_X32_SENDMMSG -1

/* include/uapi/asm-generic/unistd.h (no open, creat, rename, link, unlink: only their *at forms) */
static const __u8 endura_sc_native_table[ENDURA_SC_TABLE] = {
	[56] = ENDURA_SC_OPENAT,
	[437] = ENDURA_SC_OPENAT2,
	[265] = ENDURA_SC_OPEN_BY_HANDLE,
	[46] = ENDURA_SC_FTRUNCATE,
	[45] = ENDURA_SC_TRUNCATE,
	[38] = ENDURA_SC_RENAMEAT,  /* renameat */
	[276] = ENDURA_SC_RENAMEAT, /* renameat2 */
	[37] = ENDURA_SC_LINKAT,
	[35] = ENDURA_SC_UNLINKAT,
	[203] = ENDURA_SC_CONNECT,
	[206] = ENDURA_SC_SENDTO,
	[211] = ENDURA_SC_SENDMSG,
	[269] = ENDURA_SC_SENDMMSG,
	[105] = ENDURA_SC_INIT_MODULE,
	[273] = ENDURA_SC_FINIT_MODULE,
	[280] = ENDURA_SC_BPF,
	[425] = ENDURA_SC_IO_URING_SETUP,
};

/* arch/arm/tools/syscall.tbl, EABI (what arm64 runs for AArch32 tasks) */
static const __u8 endura_sc_compat_table[ENDURA_SC_TABLE] = {
	[5] = ENDURA_SC_OPEN,
	[8] = ENDURA_SC_CREAT,
	[322] = ENDURA_SC_OPENAT,
	[437] = ENDURA_SC_OPENAT2,
	[371] = ENDURA_SC_OPEN_BY_HANDLE,
	[93] = ENDURA_SC_FTRUNCATE,  /* ftruncate */
	[194] = ENDURA_SC_FTRUNCATE, /* ftruncate64 */
	[92] = ENDURA_SC_TRUNCATE,   /* truncate */
	[193] = ENDURA_SC_TRUNCATE,  /* truncate64 */
	[38] = ENDURA_SC_RENAME,
	[329] = ENDURA_SC_RENAMEAT, /* renameat */
	[382] = ENDURA_SC_RENAMEAT, /* renameat2 */
	[9] = ENDURA_SC_LINK,
	[330] = ENDURA_SC_LINKAT,
	[10] = ENDURA_SC_UNLINK,
	[328] = ENDURA_SC_UNLINKAT,
	[283] = ENDURA_SC_CONNECT,
	[290] = ENDURA_SC_SENDTO,
	[296] = ENDURA_SC_SENDMSG,
	[374] = ENDURA_SC_SENDMMSG,
	[128] = ENDURA_SC_INIT_MODULE,
	[379] = ENDURA_SC_FINIT_MODULE,
	[386] = ENDURA_SC_BPF,
	[425] = ENDURA_SC_IO_URING_SETUP,
};

static __always_inline bool endura_in_compat_syscall(struct pt_regs *regs)
{
	return regs->pstate & ENDURA_PSR_MODE32_BIT;
}

static __always_inline unsigned long endura_sc_arg(struct pt_regs *regs, bool compat, int i)
{
	unsigned long v = i == 0 ? regs->orig_x0 : regs->regs[i & 7];

	return compat ? (__u32)v : v;
}

#define ENDURA_SC_NR(regs) ((int)(regs)->syscallno)

#else
#error "unsupported __TARGET_ARCH"
#endif

/*
 * What syscall `nr` does for the current task: *compat gets whether it is a compat syscall (32-bit
 * arguments), *layout32 whether user structs (msghdr) have the 32-bit layout (compat or x32). The
 * task's ABI is read only when the number means something to this tracepoint (at_exit: sys_exit's
 * kinds, else sys_enter's) in one of the tables: the common case (read, write, futex, ...) costs two loads.
 */
static __always_inline int endura_sc_classify(struct pt_regs *regs, int nr, bool at_exit, bool *compat, bool *layout32)
{
	bool x32 = ENDURA_X32_BIT && (nr & ENDURA_X32_BIT);
	__u64 i;
	int native = ENDURA_SC_NONE, other = ENDURA_SC_NONE;

	if (x32)
		nr &= ~ENDURA_X32_BIT;
	i = (__u32)nr;
	barrier_var(i); /* keep the bounds test on the register that indexes (clang tests a 32-bit copy) */
	if (i < ENDURA_SC_TABLE) {
		native = endura_sc_native_table[i];
		other = endura_sc_compat_table[i];
	} else if (x32 && nr == ENDURA_NR_X32_SENDMSG) {
		native = ENDURA_SC_SENDMSG;
	} else if (x32 && nr == ENDURA_NR_X32_SENDMMSG) {
		native = ENDURA_SC_SENDMMSG;
	}
	*compat = false;
	*layout32 = x32;
	/* only what this tracepoint handles (sys_exit: the results, sys_enter: the arguments) */
	if ((native > ENDURA_SC_EXIT_LAST) == at_exit)
		native = ENDURA_SC_NONE;
	if ((other > ENDURA_SC_EXIT_LAST) == at_exit)
		other = ENDURA_SC_NONE;
	if (native == ENDURA_SC_NONE && other == ENDURA_SC_NONE)
		return ENDURA_SC_NONE;
	if (!x32 && endura_in_compat_syscall(regs)) {
		*compat = *layout32 = true;
		return other;
	}
	return native;
}

#endif /* ENDURA_SYSCALLS_BPF_H */
