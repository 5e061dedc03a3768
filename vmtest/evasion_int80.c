/* The evasion suite's 32-bit probe (vmtest/evasion.py): an i386 program without libc that makes one kind
 * of system call through int 0x80, so the kernel sees a compat task with i386 syscall numbers.
 *
 *   int80 open PATH      open(PATH, O_WRONLY) and write "TAMPERED" (i386 5, 4)
 *   int80 connect PORT   socket + connect to 127.0.0.1:PORT (i386 359, 362)
 *   int80 bpf            bpf(BPF_PROG_GET_NEXT_ID) (i386 357; x86_64 321 is bpf too)
 *   int80 init_module    init_module(zeroes, 256, "") (i386 128; not an ELF image: nothing can load)
 *   int80 sigprocmask    rt_sigprocmask (i386 175 = x86_64 init_module)
 *   int80 splice         splice(-1, ...) (i386 313 = x86_64 finit_module)
 *   int80 signalfd       signalfd (i386 321 = x86_64 bpf)
 *   int80 ordinary       getpid, open/read/close of /proc/self/stat, write to /dev/null, clock_gettime
 *
 * Exit status: 0 when the call ran (any result but EPERM/EACCES), 100 + errno when it was refused with
 * EPERM or EACCES (or open/connect failed), 2 on bad usage. Built with
 * `clang -m32 -nostdlib -static -ffreestanding -fno-pic -O1` (no i386 libc needed).
 */
#define EPERM 1
#define EACCES 13
#define ENOENT 2

static long sc(long n, long a, long b, long c, long d, long e)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(n), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e) : "memory");
	return r;
}

static void leave(long code)
{
	for (;;)
		sc(1, code, 0, 0, 0, 0);
}

static int eq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static long num(const char *s)
{
	long v = 0;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (*s++ - '0');
	return v;
}

static long judge(long r)
{
	return (r == -EPERM || r == -EACCES) ? 100 - r : 0;
}

int cmain(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	static unsigned char buf[256];
	if (argc < 2)
		leave(2);
	if (eq(argv[1], "open") && argc > 2) {
		long fd = sc(5, (long)argv[2], 1 /* O_WRONLY */, 0, 0, 0);
		if (fd < 0)
			leave(100 - fd);
		sc(4, fd, (long)"TAMPERED", 8, 0, 0);
		leave(0);
	}
	if (eq(argv[1], "connect") && argc > 2) {
		long port = num(argv[2]);
		long fd = sc(359, 2 /* AF_INET */, 1 /* SOCK_STREAM */, 0, 0, 0);
		unsigned char *sin = buf;
		if (fd < 0)
			leave(100 - fd);
		sin[0] = 2, sin[1] = 0, sin[2] = port >> 8, sin[3] = port & 255;
		sin[4] = 127, sin[5] = 0, sin[6] = 0, sin[7] = 1;
		long r = sc(362, fd, (long)sin, 16, 0, 0);
		leave(r < 0 ? 100 - r : 0);
	}
	if (eq(argv[1], "bpf")) {
		long r = sc(357, 11 /* BPF_PROG_GET_NEXT_ID */, (long)buf, 8, 0, 0);
		leave(r == -ENOENT ? 0 : judge(r));
	}
	if (eq(argv[1], "init_module")) /* long enough to pass the size check that precedes the LSM hook */
		leave(judge(sc(128, (long)buf, sizeof(buf), (long)"", 0, 0)));
	if (eq(argv[1], "sigprocmask"))
		leave(judge(sc(175, 0 /* SIG_BLOCK */, 0, (long)buf, 8, 0)));
	if (eq(argv[1], "splice"))
		leave(judge(sc(313, -1, 0, -1, 0, 0)));
	if (eq(argv[1], "signalfd")) {
		long r = sc(321, -1, (long)buf, 8, 0, 0);
		leave(r < 0 ? 100 - r : 0);
	}
	if (eq(argv[1], "ordinary")) {
		long fd;
		sc(20, 0, 0, 0, 0, 0); /* getpid */
		fd = sc(5, (long)"/proc/self/stat", 0, 0, 0, 0);
		if (fd < 0)
			leave(100 - fd);
		sc(3, fd, (long)buf, sizeof(buf), 0, 0);
		sc(6, fd, 0, 0, 0, 0);
		fd = sc(5, (long)"/dev/null", 1, 0, 0, 0);
		if (fd < 0)
			leave(100 - fd);
		sc(4, fd, (long)"x", 1, 0, 0);
		sc(6, fd, 0, 0, 0, 0);
		sc(265, 1 /* CLOCK_MONOTONIC */, (long)buf, 0, 0, 0);
		leave(0);
	}
	leave(2);
	return 0;
}

__asm__(".globl _start\n_start:\n\txor %ebp, %ebp\n\tmov %esp, %eax\n\tand $-16, %esp\n\tsub $12, %esp\n"
	"\tpush %eax\n\tcall cmain\n\thlt\n");
