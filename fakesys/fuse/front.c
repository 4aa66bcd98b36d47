/*
 * A reader thread in front of libfuse: it answers the requests that need no
 * Python and queues the others for pyfuse3.
 *
 * Why: every request pyfuse3 reads costs a trip through its worker
 * coroutines, ~20 µs, and the tool waits for each.  Most requests of a tool
 * reading attributes are an OPEN and a RELEASE around a READ the kernel
 * answers from its page cache, or (for an attribute that has changed) a
 * READ of the content the server rendered last; their answers depend only
 * on what the server publishes per inode (see front.py).  This thread reads
 * /dev/fuse (blocking: no Python is woken), answers those from the table
 * and hands everything else to libfuse through a custom I/O read
 * (fuse_session_custom_io(), libfuse >= 3.14): pyfuse3's loop, handlers and
 * replies stay as they are; it only waits on an eventfd instead of the
 * device.  Loaded with ctypes; no Python API is used here.
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <linux/fuse.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* What the server publishes per inode (front.py has the same values). */
#define INODE_OPEN    1u   /* a read-only OPEN gets a stateless, cached handle */
#define INODE_RELEASE 2u   /* no handle of it holds state: RELEASE does nothing */
#define INODE_DIR     4u   /* a directory: OPENDIR gets its inode as handle */
#define INODE_DIRECT  8u   /* a read-only OPEN gets a stateless, direct_io handle */
#define EVENT_SHIFT   16   /* bits 16..30: the attribute's notify count */

/* A stateless handle (server.py): this bit, the notify count at open (15
 * bits), an open count (16 bits; this thread's have the top one set), inode. */
#define STATELESS (1ULL << 63)

/* Larger than any request: the kernel refuses a read buffer smaller than
 * max_write plus headers (libfuse asks for 1 MiB writes). */
#define READ_SIZE ((1u << 24) + 65536)

struct request {
	struct request *next;
	size_t size;
	char mem[];
};

/* An attribute's content as the server rendered it last, or its show's errno. */
struct content {
	int error;
	size_t size;
	char data[];
};

struct front {
	int fd;                    /* /dev/fuse */
	int wake;                  /* readable while requests wait or the reader ended */
	int stop;                  /* tells the reader to return */
	const _Atomic uint32_t *table;
	uint64_t inodes;           /* entries in table and contents */
	struct content **contents; /* under content_lock */
	uint64_t contents_top;     /* above the highest inode given content */
	pthread_mutex_t content_lock;
	pthread_t thread;
	pthread_mutex_t lock;
	struct request *head, **tail;
	int error;                 /* errno that ended the reader; 0 while it reads */
	uint32_t opens;
	long spin_ns;              /* busy-poll this long before sleeping */
	unsigned long answered, queued;
};

/* The session's front: libfuse's custom I/O has no argument of its own. */
static struct front *_Atomic active;

static void signal_wake(struct front *f)
{
	uint64_t one = 1;
	(void)!write(f->wake, &one, sizeof(one));
}

static void drain_wake(struct front *f)
{
	uint64_t count;
	(void)!read(f->wake, &count, sizeof(count));
}

/* Queue a request for libfuse, or (mem NULL) record why the reader ended. */
static int queue(struct front *f, const char *mem, size_t size, int error)
{
	struct request *r = NULL;
	if (mem) {
		r = malloc(sizeof(*r) + size);
		if (!r)
			return -ENOMEM;
		r->next = NULL;
		r->size = size;
		memcpy(r->mem, mem, size);
	}
	pthread_mutex_lock(&f->lock);
	int idle = !f->head && !f->error;
	if (r) {
		*f->tail = r;
		f->tail = &r->next;
		f->queued++;
	} else {
		f->error = error;
	}
	if (idle)
		signal_wake(f);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

/* Answer request ``unique`` with ``size`` bytes, or with an errno. */
static void reply(struct front *f, uint64_t unique, int error, const void *arg, size_t size)
{
	struct fuse_out_header out = { sizeof(out) + size, -error, unique };
	struct iovec iov[2] = { { &out, sizeof(out) }, { (void *)arg, size } };
	/* a failure (ENOENT: the request was interrupted) has no one to tell */
	(void)!writev(f->fd, iov, size ? 2 : 1);
	f->answered++;
}

static void reply_open(struct front *f, uint64_t unique, uint64_t fh, uint32_t flags)
{
	struct fuse_open_out arg;
	memset(&arg, 0, sizeof(arg));
	arg.fh = fh;
	arg.open_flags = flags;
	reply(f, unique, 0, &arg, sizeof(arg));
}

/* A READ through a handle without state, from the published content. */
static int answer_read(struct front *f, const struct fuse_in_header *in,
		       const struct fuse_read_in *read)
{
	char data[4096];
	size_t n = 0;
	int error = 0, known = 0;
	pthread_mutex_lock(&f->content_lock);
	const struct content *c = in->nodeid < f->inodes ? f->contents[in->nodeid] : NULL;
	if (c) {
		error = c->error;
		if (!error && read->offset < c->size) {
			n = c->size - read->offset;
			if (n > read->size)
				n = read->size;
		}
		known = n <= sizeof(data);
		if (known && n)
			memcpy(data, c->data + read->offset, n);
	}
	pthread_mutex_unlock(&f->content_lock);
	if (!known)
		return 0;
	reply(f, in->unique, error, data, n);
	return 1;
}

/* Answer a request if the table says how; 0 leaves it to libfuse. */
static int answer(struct front *f, const char *mem, size_t size)
{
	const struct fuse_in_header *in = (const void *)mem;
	const void *arg = in + 1;
	uint32_t entry = 0;
	if (in->nodeid < f->inodes)
		entry = atomic_load_explicit(&f->table[in->nodeid], memory_order_acquire);

	switch (in->opcode) {
	case FUSE_OPEN: {
		const struct fuse_open_in *open = arg;
		if (size < sizeof(*in) + sizeof(*open) || !(entry & (INODE_OPEN | INODE_DIRECT)) ||
		    (open->flags & O_ACCMODE) != O_RDONLY)
			return 0;
		uint64_t event = (entry >> EVENT_SHIFT) & 0x7FFF;
		uint64_t count = 0x8000 | (f->opens++ & 0x7FFF);
		reply_open(f, in->unique, STATELESS | event << 48 | count << 32 | in->nodeid,
			   entry & INODE_OPEN ? FOPEN_KEEP_CACHE : FOPEN_DIRECT_IO);
		return 1;
	}
	case FUSE_READ: {
		const struct fuse_read_in *read = arg;
		/* a handle with state (a poll's) is the server's: a read re-arms it */
		if (size < sizeof(*in) + sizeof(*read) || !(entry & INODE_RELEASE) ||
		    !(read->fh & STATELESS))
			return 0;
		return answer_read(f, in, read);
	}
	case FUSE_RELEASE: {
		const struct fuse_release_in *release = arg;
		if (size < sizeof(*in) + sizeof(*release) || !(entry & INODE_RELEASE) ||
		    !(release->fh & STATELESS))
			return 0;
		reply(f, in->unique, 0, NULL, 0);
		return 1;
	}
	case FUSE_OPENDIR:
		if (!(entry & INODE_DIR))
			return 0;
		/* keep_cache too: newer kernels drop the listing at an opendir without */
		reply_open(f, in->unique, in->nodeid, FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR);
		return 1;
	case FUSE_RELEASEDIR:  /* a directory handle holds nothing */
		reply(f, in->unique, 0, NULL, 0);
		return 1;
	case FUSE_FORGET:      /* no reply; the server keeps no lookup counts */
	case FUSE_BATCH_FORGET:
		return 1;
	}
	return 0;
}

static long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Wait for a request (or stop).  A tool's next request follows within
 * microseconds; catching it spinning saves waking this thread's idle CPU,
 * which in a VM costs more than answering. */
static int wait_request(struct front *f, struct pollfd *fds)
{
	if (f->spin_ns) {
		long deadline = now_ns() + f->spin_ns;
		do {
			int n = poll(fds, 2, 0);
			if (n != 0)
				return n;
		} while (now_ns() < deadline);
	}
	return poll(fds, 2, -1);
}

static void *reader(void *data)
{
	struct front *f = data;
	char *buf = malloc(READ_SIZE);
	struct pollfd fds[2] = { { f->fd, POLLIN, 0 }, { f->stop, POLLIN, 0 } };
	int error = buf ? 0 : ENOMEM;
	while (!error) {
		if (wait_request(f, fds) < 0) {
			if (errno != EINTR)
				error = errno;
			continue;
		}
		if (fds[1].revents)
			break;
		ssize_t n = read(f->fd, buf, READ_SIZE);
		if (n < 0) {
			/* ENOENT: the request was interrupted; ENODEV: unmounted */
			if (errno != EINTR && errno != EAGAIN && errno != ENOENT)
				error = errno;
			continue;
		}
		if ((size_t)n < sizeof(struct fuse_in_header))
			error = EIO;
		else if (!answer(f, buf, n))
			error = -queue(f, buf, n, 0);
	}
	queue(f, NULL, 0, error ? error : ENODEV);
	free(buf);
	return NULL;
}

/* libfuse's custom I/O: the next queued request, as read() from the device. */
static ssize_t front_read(int fd, void *buf, size_t size, void *userdata)
{
	(void)fd;
	(void)userdata;
	struct front *f = atomic_load(&active);
	if (!f) {
		errno = ENODEV;
		return -1;
	}
	pthread_mutex_lock(&f->lock);
	struct request *r = f->head;
	int error = f->error;
	if (r) {
		f->head = r->next;
		if (!f->head) {
			f->tail = &f->head;
			if (!error)
				drain_wake(f);
		}
	}
	pthread_mutex_unlock(&f->lock);
	if (!r) {
		/* EINTR: pyfuse3 waits again (it raises on EAGAIN) */
		errno = error ? error : EINTR;
		return -1;
	}
	ssize_t n = r->size;
	if (r->size > size) {
		errno = EIO;
		n = -1;
	} else {
		memcpy(buf, r->mem, r->size);
	}
	free(r);
	return n;
}

static ssize_t front_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	return writev(fd, iov, count);
}

/* Publish what a READ of ``ino`` gives from now on: ``size`` bytes, or an
 * errno (``error`` > 0), or nothing (NULL, 0: the server answers). */
int front_set_content(struct front *f, uint64_t ino, const char *data, size_t size, int error)
{
	if (ino >= f->inodes)
		return 0;
	int res = 0;
	struct content *c = NULL;
	if (data || error) {
		c = malloc(sizeof(*c) + (error ? 0 : size));
		if (c) {
			c->error = error;
			c->size = error ? 0 : size;
			if (!error)
				memcpy(c->data, data, size);
		} else {
			res = -ENOMEM;  /* the old content goes all the same: the server answers */
		}
	}
	pthread_mutex_lock(&f->content_lock);
	struct content *old = f->contents[ino];
	f->contents[ino] = c;
	if (c && ino >= f->contents_top)
		f->contents_top = ino + 1;
	pthread_mutex_unlock(&f->content_lock);
	free(old);
	return res;
}

/* Start answering in front of ``se``; NULL (and errno) if it cannot. */
struct front *front_start(struct fuse_session *se, const uint32_t *table, uint64_t inodes,
			  long spin_ns)
{
	static const struct fuse_custom_io io = { .writev = front_writev, .read = front_read };
	struct front *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->fd = fuse_session_fd(se);
	f->table = (const _Atomic uint32_t *)table;
	f->inodes = inodes;
	f->spin_ns = spin_ns;
	f->tail = &f->head;
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->content_lock, NULL);
	f->contents = calloc(inodes, sizeof(*f->contents));
	f->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	f->stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int error = 0;
	if (!f->contents) {
		error = ENOMEM;
	} else if (f->wake < 0 || f->stop < 0) {
		error = errno;
	} else if (atomic_load(&active)) {
		error = EBUSY;
	} else {
		int res = fuse_session_custom_io(se, &io, f->fd);
		if (res < 0)
			error = -res;
	}
	if (!error) {
		atomic_store(&active, f);
		error = pthread_create(&f->thread, NULL, reader, f);
		if (error) {
			/* libfuse reads the device itself again */
			atomic_store(&active, NULL);
		}
	}
	if (error) {
		if (f->wake >= 0)
			close(f->wake);
		if (f->stop >= 0)
			close(f->stop);
		free(f->contents);
		free(f);
		errno = error;
		return NULL;
	}
	return f;
}

/* The fd to wait on for queued requests. */
int front_wake_fd(const struct front *f)
{
	return f->wake;
}

/* Whether the reader has ended (the session is ending). */
int front_ended(struct front *f)
{
	pthread_mutex_lock(&f->lock);
	int error = f->error;
	pthread_mutex_unlock(&f->lock);
	return error != 0;
}

/* Requests answered here and queued for libfuse so far. */
void front_counts(struct front *f, unsigned long *answered, unsigned long *queued)
{
	pthread_mutex_lock(&f->lock);
	*queued = f->queued;
	pthread_mutex_unlock(&f->lock);
	*answered = f->answered;  /* the reader's own; a count may lag */
}

/* Stop the reader and free everything; queued requests are dropped (the
 * session is ending).  libfuse's reads then fail with ENODEV. */
void front_stop(struct front *f)
{
	uint64_t one = 1;
	(void)!write(f->stop, &one, sizeof(one));
	pthread_join(f->thread, NULL);
	atomic_store(&active, NULL);
	for (struct request *r = f->head, *next; r; r = next) {
		next = r->next;
		free(r);
	}
	close(f->wake);
	close(f->stop);
	for (uint64_t ino = 0; ino < f->contents_top; ino++)
		free(f->contents[ino]);
	free(f->contents);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->content_lock);
	free(f);
}
