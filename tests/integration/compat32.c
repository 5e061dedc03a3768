/*
 * 32-bit (i386) syscalls for the tracepoint tier's tests: no libc, every syscall through int 0x80 with
 * the i386 numbers (arch/x86/entry/syscalls/syscall_32.tbl). Built twice by the test:
 *   clang -m32: a 32-bit process (compat syscalls from 32-bit code);
 *   clang -m64 -no-pie: a 64-bit process using int 0x80 (compat syscalls from 64-bit code: the
 *   kernel decides per syscall, the tier must too). Its buffers are static, below 4 GiB.
 *
 *   compat32 ordinary N          syscalls whose i386 numbers are denied x86_64 numbers, N times each
 *   compat32 open PATH           open(PATH, O_WRONLY)              (also: openat, creat)
 *   compat32 connect IP PORT     socket + connect (also: socketcall-connect, sendto, socketcall-sendto)
 *   compat32 bpf | init_module | finit_module | io_uring_setup
 *   compat32 junk-open PATH      a 64-bit openat with junk in orig_ax's upper half (64-bit build only)
 * Exit status: 0 the calls ran (whatever they returned), 2 usage, 3 a call failed that must not.
 */
typedef unsigned long ulong;

#define NR_EXIT_GROUP 252
#define NR_OPEN 5
#define NR_CREAT 8
#define NR_CLOSE 6
#define NR_GETPID 20
#define NR_SOCKETCALL 102
#define NR_INIT_MODULE 128
#define NR_RT_SIGPROCMASK 175 /* x86_64: init_module */
#define NR_OPENAT 295
#define NR_SPLICE 313	      /* x86_64: finit_module */
#define NR_SIGNALFD 321	      /* x86_64: bpf */
#define NR_FINIT_MODULE 350
#define NR_BPF 357
#define NR_SOCKET 359
#define NR_CONNECT 362
#define NR_SENDTO 369
#define NR_IO_URING_SETUP 425
#define AT_FDCWD -100
#define O_WRONLY 1

long compat32_arg6; /* the 6th argument goes in ebp: loaded from memory around the int 0x80 */

static long sc(long nr, long a, long b, long c, long d, long e, long f)
{
	long ret;

	compat32_arg6 = f;
#if defined(__x86_64__)
	__asm__ volatile("push %%rbp\n\tmov compat32_arg6(%%rip), %%rbp\n\tint $0x80\n\tpop %%rbp"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory");
	ret = (int)ret; /* a compat syscall returns a 32-bit value */
#else
	__asm__ volatile("push %%ebp\n\tmov compat32_arg6, %%ebp\n\tint $0x80\n\tpop %%ebp"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory");
#endif
	return ret;
}

#if defined(__x86_64__)
/* a native 64-bit syscall whose rax has junk in its upper half: the kernel runs the low 32 bits */
static long sc64_junk(long nr, long a, long b, long c)
{
	long ret;
	register long r10 __asm__("r10") = 0;

	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr | (1L << 32)), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}
#endif

static void quit(int code)
{
	sc(NR_EXIT_GROUP, code, 0, 0, 0, 0, 0);
	for (;;)
		;
}

static int eq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static long num(const char *s)
{
	long n = 0;

	while (*s >= '0' && *s <= '9')
		n = n * 10 + (*s++ - '0');
	return n;
}

/* static copies: the 64-bit build's stack is above 4 GiB, out of a compat syscall's reach */
static char path[4096];
static unsigned char sockaddr[16]; /* struct sockaddr_in */
static unsigned int sargs[6];	   /* socketcall's argument array */
static char payload[4] = "ping";
static unsigned long sigmask[2];

static void copy(char *dst, const char *src, int size)
{
	int i;

	for (i = 0; i < size - 1 && src[i]; i++)
		dst[i] = src[i];
	dst[i] = 0;
}

static void set_addr(const char *ip, const char *port)
{
	long p = num(port);
	int i = 4;

	sockaddr[0] = 2; /* AF_INET, little-endian */
	sockaddr[1] = 0;
	sockaddr[2] = p >> 8;
	sockaddr[3] = p & 0xff;
	while (*ip && i < 8) {
		sockaddr[i++] = num(ip);
		while (*ip && *ip != '.')
			ip++;
		if (*ip == '.')
			ip++;
	}
}

static void ordinary(long n)
{
	long i, fd;

	for (i = 0; i < n; i++) {
		/* rt_sigprocmask(SIG_BLOCK, NULL, &old, 8): reads the mask */
		if (sc(NR_RT_SIGPROCMASK, 0, 0, (long)sigmask, 8, 0, 0) != 0)
			quit(3);
		/* splice on bad fds: EBADF, but the syscall ran */
		sc(NR_SPLICE, -1, 0, -1, 0, 1, 0);
		/* signalfd(-1, &mask, 8): a new fd */
		fd = sc(NR_SIGNALFD, -1, (long)sigmask, 8, 0, 0, 0);
		if (fd < 0)
			quit(3);
		sc(NR_CLOSE, fd, 0, 0, 0, 0, 0);
		sc(NR_GETPID, 0, 0, 0, 0, 0, 0);
	}
}

void cmain(long *sp)
{
	long argc = sp[0], fd;
	char **argv = (char **)(sp + 1);
	const char *cmd;

	if (argc < 2)
		quit(2);
	cmd = argv[1];
	if (eq(cmd, "ordinary") && argc > 2) {
		ordinary(num(argv[2]));
	} else if ((eq(cmd, "open") || eq(cmd, "openat") || eq(cmd, "creat") || eq(cmd, "junk-open")) && argc > 2) {
		copy(path, argv[2], sizeof(path));
		if (eq(cmd, "open"))
			fd = sc(NR_OPEN, (long)path, O_WRONLY, 0, 0, 0, 0);
		else if (eq(cmd, "openat"))
			fd = sc(NR_OPENAT, AT_FDCWD, (long)path, O_WRONLY, 0, 0, 0);
		else if (eq(cmd, "creat"))
			fd = sc(NR_CREAT, (long)path, 0644, 0, 0, 0, 0);
		else
#if defined(__x86_64__)
			fd = sc64_junk(257, AT_FDCWD, (long)path, O_WRONLY);
#else
			quit(2);
#endif
		if (fd < 0)
			quit(3);
	} else if ((eq(cmd, "connect") || eq(cmd, "socketcall-connect") || eq(cmd, "sendto") ||
		    eq(cmd, "socketcall-sendto")) && argc > 3) {
		int udp = eq(cmd, "sendto") || eq(cmd, "socketcall-sendto");

		set_addr(argv[2], argv[3]);
		fd = sc(NR_SOCKET, 2, udp ? 2 : 1, 0, 0, 0, 0); /* AF_INET, SOCK_DGRAM / SOCK_STREAM */
		if (fd < 0)
			quit(3);
		if (eq(cmd, "connect")) {
			sc(NR_CONNECT, fd, (long)sockaddr, 16, 0, 0, 0);
		} else if (eq(cmd, "sendto")) {
			sc(NR_SENDTO, fd, (long)payload, 4, 0, (long)sockaddr, 16);
		} else if (eq(cmd, "socketcall-connect")) {
			sargs[0] = fd, sargs[1] = (unsigned int)(ulong)sockaddr, sargs[2] = 16;
			sc(NR_SOCKETCALL, 3, (long)sargs, 0, 0, 0, 0); /* SYS_CONNECT */
		} else {
			sargs[0] = fd, sargs[1] = (unsigned int)(ulong)payload, sargs[2] = 4, sargs[3] = 0;
			sargs[4] = (unsigned int)(ulong)sockaddr, sargs[5] = 16;
			sc(NR_SOCKETCALL, 11, (long)sargs, 0, 0, 0, 0); /* SYS_SENDTO */
		}
	} else if (eq(cmd, "bpf")) {
		sc(NR_BPF, 11, 0, 0, 0, 0, 0); /* BPF_PROG_GET_NEXT_ID with a NULL attr */
	} else if (eq(cmd, "init_module")) {
		sc(NR_INIT_MODULE, 0, 0, 0, 0, 0, 0);
	} else if (eq(cmd, "finit_module")) {
		sc(NR_FINIT_MODULE, -1, 0, 0, 0, 0, 0);
	} else if (eq(cmd, "io_uring_setup")) {
		sc(NR_IO_URING_SETUP, 1, 0, 0, 0, 0, 0); /* NULL params: EFAULT, after the tier saw it */
	} else {
		quit(2);
	}
	quit(0);
}

__asm__(".globl _start\n_start:\n"
#if defined(__x86_64__)
	"\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall cmain\n\thlt\n"
#else
	"\tmov %esp, %eax\n\tand $-16, %esp\n\tsub $12, %esp\n\tpush %eax\n\tcall cmain\n\thlt\n"
#endif
);
