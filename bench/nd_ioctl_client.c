/* Issue ND_CMD_GET_CONFIG_SIZE on a DIMM node and time each call.
 *
 *   nd_ioctl_client NODE COUNT [MODE]
 *
 * MODE "nd" (default): the intercepted ioctl; "tty": TCGETS on the same fd
 * (not intercepted: the filter only traps type 'N'); "cont": an 'N' ioctl on
 * /dev/null (trapped, answered CONTINUE).  Prints one line per call (ns) on
 * stdout unless COUNT is negative: then it loops forever, one call per
 * 10 ms, and exits reporting the first failure (errno) on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

struct nd_cmd_get_config_size { uint32_t status, config_size, max_xfer; } __attribute__((packed));
#define ND_IOCTL_GET_CONFIG_SIZE _IOWR('N', 4, struct nd_cmd_get_config_size)

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s NODE COUNT [nd|tty|cont]\n", argv[0]);
		return 2;
	}
	const char *mode = argc > 3 ? argv[3] : "nd";
	long count = atol(argv[2]);
	int fd = open(strcmp(mode, "cont") ? argv[1] : "/dev/null", O_RDWR);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	struct nd_cmd_get_config_size cmd;
	struct termios tio;
	for (long i = 0; count < 0 || i < count; i++) {
		memset(&cmd, 0, sizeof(cmd));
		long long t0 = now_ns();
		int rc = strcmp(mode, "tty") ? ioctl(fd, ND_IOCTL_GET_CONFIG_SIZE, &cmd)
					     : ioctl(fd, TCGETS, &tio);
		long long t1 = now_ns();
		if (count < 0) {
			if (rc < 0) {
				fprintf(stderr, "ioctl failed after %ld calls: %s (errno %d)\n", i, strerror(errno), errno);
				return 3;
			}
			usleep(10000);
			continue;
		}
		if (rc < 0 && strcmp(mode, "cont")) {
			perror("ioctl");
			return 1;
		}
		if (i == 0 && !strcmp(mode, "nd"))
			fprintf(stderr, "config_size %u max_xfer %u status %u\n", cmd.config_size, cmd.max_xfer, cmd.status);
		printf("%lld\n", t1 - t0);
	}
	return 0;
}
