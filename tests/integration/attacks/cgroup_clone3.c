// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Attack on the sensor's service cgroup (issue #14, self-protection attack 2), reusable by the evasion
 * suite: start a child directly inside CGROUP with clone3(CLONE_INTO_CGROUP) (no write to cgroup.procs),
 * and have it call bpf(BPF_PROG_GET_NEXT_ID) as a process of that cgroup would.
 *
 *   cgroup_clone3 CGROUP_DIR
 *
 * Prints {"clone3": 0 | -errno, "child": "exited 0" | "exited N" | "killed by N", "child_cgroup": "..."}.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

int main(int argc, char **argv)
{
	struct clone_args args;
	char cgroup[256] = "";
	int fd, status;
	long pid;

	if (argc < 2)
		return 2;
	fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 2;
	memset(&args, 0, sizeof(args));
	args.flags = CLONE_INTO_CGROUP;
	args.exit_signal = SIGCHLD;
	args.cgroup = (uint64_t)fd;
	pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0) {
		long r = syscall(SYS_bpf, 11 /* BPF_PROG_GET_NEXT_ID */, NULL, 0);
		(void)r;
		_exit(0);
	}
	if (pid < 0) {
		printf("{\"clone3\": %d}\n", -errno);
		return 1;
	}
	{
		char path[64];
		FILE *f;
		snprintf(path, sizeof(path), "/proc/%ld/cgroup", pid);
		f = fopen(path, "r");
		if (f) {
			while (fgets(cgroup, sizeof(cgroup), f) && strncmp(cgroup, "0::", 3))
				;
			fclose(f);
			cgroup[strcspn(cgroup, "\n")] = 0;
		}
	}
	waitpid(pid, &status, 0);
	if (WIFSIGNALED(status))
		printf("{\"clone3\": 0, \"child\": \"killed by %d\", \"child_cgroup\": \"%s\"}\n", WTERMSIG(status), cgroup + 3);
	else
		printf("{\"clone3\": 0, \"child\": \"exited %d\", \"child_cgroup\": \"%s\"}\n", WEXITSTATUS(status), cgroup + 3);
	return 0;
}
