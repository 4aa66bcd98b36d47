/*
 * An application of /dev/daxR.N, for the data-path tests (run inside `fakesys run`).
 *
 *   daxmap info  PATH [rdonly|cloexec]  print what lstat/fstat/fcntl show (JSON)
 *   daxmap write PATH SEED             open O_RDWR, mmap(MAP_SHARED), write a pattern
 *   daxmap check PATH SEED             the same, verify the pattern (exit 1 if wrong)
 *
 * The pattern: one 8-byte word per 4 KiB page (offset ^ seed) and the first
 * and last MiB filled byte by byte, so a wrong offset or a short file shows.
 * A failed open prints "errno N" and exits 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define PAGE 4096UL
#define MIB (1UL << 20)

static int open_dev(const char *path, int flags)
{
	int fd = open(path, flags);

	if (fd < 0) {
		printf("errno %d\n", errno);
		exit(2);
	}
	return fd;
}

static unsigned char byte_at(uint64_t off, uint64_t seed)
{
	return (unsigned char)(off + seed);
}

int main(int argc, char **argv)
{
	struct stat lst, st;
	uint64_t seed, off, start;
	unsigned char *m;
	int fd, ok = 1, write_it;

	if (argc < 3)
		return 64;
	if (strcmp(argv[1], "info") == 0) {
		int flags = O_RDWR;

		if (argc > 3 && strcmp(argv[3], "rdonly") == 0)
			flags = O_RDONLY;
		if (argc > 3 && strcmp(argv[3], "cloexec") == 0)
			flags |= O_CLOEXEC;
		if (lstat(argv[2], &lst))
			return 3;
		fd = open_dev(argv[2], flags);
		if (fstat(fd, &st))
			return 3;
		printf("{\"lstat_chr\": %s, \"rdev\": [%u, %u], \"fstat_reg\": %s, \"size\": %lld, "
		       "\"cloexec\": %s, \"accmode\": %d}\n",
		       S_ISCHR(lst.st_mode) ? "true" : "false", major(lst.st_rdev), minor(lst.st_rdev),
		       S_ISREG(st.st_mode) ? "true" : "false", (long long)st.st_size,
		       (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? "true" : "false",
		       fcntl(fd, F_GETFL) & O_ACCMODE);
		return 0;
	}
	if (argc < 4)
		return 64;
	write_it = strcmp(argv[1], "write") == 0;
	seed = strtoull(argv[3], NULL, 0);
	fd = open_dev(argv[2], O_RDWR);
	if (fstat(fd, &st) || st.st_size < (off_t)(2 * MIB))
		return 3;
	m = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		printf("mmap errno %d\n", errno);
		return 2;
	}
	for (off = MIB; off < (uint64_t)st.st_size - MIB; off += PAGE) {
		uint64_t word = off ^ seed;

		if (write_it)
			memcpy(m + off, &word, 8);
		else if (memcmp(m + off, &word, 8))
			ok = 0;
	}
	for (start = 0; start < (uint64_t)st.st_size; start += st.st_size - MIB) {
		for (off = start; off < start + MIB; off++) {
			if (write_it)
				m[off] = byte_at(off, seed);
			else if (m[off] != byte_at(off, seed))
				ok = 0;
		}
	}
	if (write_it && msync(m, st.st_size, MS_SYNC))
		return 3;
	printf("%s\n", ok ? "ok" : "mismatch");
	return ok ? 0 : 1;
}
