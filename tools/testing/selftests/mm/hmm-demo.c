// SPDX-License-Identifier: GPL-2.0
/*
 * A guided tour of device memory for newcomers, run by "make run".
 *
 * It moves one 16 MiB buffer to a test_hmm device (lib/test_hmm.c) and back,
 * and at each step asks the driver's mirror of the process page tables
 * (HMM_DMIRROR_SNAPSHOT, built on hmm_range_fault()) where the pages are:
 *
 *   device-private  /dev/hmm_dmirror0  memory the CPU cannot address; a CPU
 *                                      access faults and migrate_to_ram()
 *                                      brings the page back;
 *   device-coherent /dev/hmm_dmirror2  memory the CPU can address directly;
 *                                      present when test_hmm got SPM ranges.
 *
 * Every step checks its result; any surprise exits non-zero.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <lib/test_hmm_uapi.h>

#define BUFFER_SIZE	(16UL * 1024 * 1024)

#define die(fmt, ...) errx(1, "FAIL: " fmt, ##__VA_ARGS__)

struct demo {
	const char *title;
	const char *path;
	bool coherent;
	int fd;
	char *buf;
	unsigned char *mirror;	/* what the device read or snapshot returns */
	size_t npages;
};

/* How many pages of a snapshot fall in each place. */
struct where {
	size_t sys;
	size_t zero;
	size_t dev_private_local;
	size_t dev_private_remote;
	size_t dev_coherent_local;
	size_t dev_coherent_remote;
	size_t unmapped;
	size_t error;
};

static long page_size;

static double now_sec(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts))
		die("clock_gettime: %s", strerror(errno));
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long minor_faults(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		die("getrusage: %s", strerror(errno));
	return ru.ru_minflt;
}

static unsigned char pattern_byte(size_t i)
{
	return (i * 7 + i / page_size) & 0xff;
}

static void fill(char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = pattern_byte(i);
}

static void check(const char *p, size_t len, const char *what)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if ((unsigned char)p[i] != pattern_byte(i))
			die("%s: byte %zu is %#x, expected %#x", what, i,
			    (unsigned char)p[i], pattern_byte(i));
	}
}

static struct hmm_dmirror_cmd dmirror(struct demo *d, unsigned long request,
				      const char *name)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)d->buf,
		.ptr = (uintptr_t)d->mirror,
		.npages = d->npages,
	};

	if (ioctl(d->fd, request, &cmd))
		die("%s: %s", name, strerror(errno));
	return cmd;
}

static struct where snapshot(struct demo *d)
{
	struct hmm_dmirror_cmd cmd;
	struct where w = { 0 };
	size_t i;

	cmd = dmirror(d, HMM_DMIRROR_SNAPSHOT, "HMM_DMIRROR_SNAPSHOT");
	if (cmd.cpages != d->npages)
		die("HMM_DMIRROR_SNAPSHOT covered %llu of %zu pages",
		    (unsigned long long)cmd.cpages, d->npages);
	for (i = 0; i < d->npages; i++) {
		unsigned char perm = d->mirror[i];

		if (perm == HMM_DMIRROR_PROT_ERROR)
			w.error++;
		else if (!(perm & (HMM_DMIRROR_PROT_READ | HMM_DMIRROR_PROT_WRITE)))
			w.unmapped++;
		else if ((perm & 0xf0) == HMM_DMIRROR_PROT_NONE)
			w.sys++;
		else if ((perm & 0xf0) == HMM_DMIRROR_PROT_ZERO)
			w.zero++;
		else if ((perm & 0xf0) == HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL)
			w.dev_private_local++;
		else if ((perm & 0xf0) == HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE)
			w.dev_private_remote++;
		else if ((perm & 0xf0) == HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL)
			w.dev_coherent_local++;
		else if ((perm & 0xf0) == HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE)
			w.dev_coherent_remote++;
		else
			die("HMM_DMIRROR_SNAPSHOT: page %zu has unknown protection %#x",
			    i, perm);
	}
	return w;
}

static void print_where(const struct where *w)
{
	printf("     system memory %zu, zero page %zu, unmapped %zu, error %zu\n",
	       w->sys, w->zero, w->unmapped, w->error);
	printf("     device-private: this device %zu, other device %zu\n",
	       w->dev_private_local, w->dev_private_remote);
	printf("     device-coherent: this device %zu, other device %zu\n",
	       w->dev_coherent_local, w->dev_coherent_remote);
}

static void expect_all(const struct demo *d, size_t count, const char *place)
{
	if (count != d->npages)
		die("expected all %zu pages in %s, found %zu", d->npages,
		    place, count);
}

static void step_fill(struct demo *d)
{
	d->buf = mmap(NULL, BUFFER_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->buf == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	fill(d->buf, BUFFER_SIZE);
	printf("  1. filled a %lu MiB buffer (%zu pages) with a pattern\n",
	       BUFFER_SIZE >> 20, d->npages);
}

static void step_to_device(struct demo *d)
{
	struct hmm_dmirror_cmd cmd;
	double t;

	t = now_sec();
	cmd = dmirror(d, HMM_DMIRROR_MIGRATE_TO_DEV, "HMM_DMIRROR_MIGRATE_TO_DEV");
	t = now_sec() - t;
	if (cmd.cpages != d->npages)
		die("HMM_DMIRROR_MIGRATE_TO_DEV moved %llu of %zu pages",
		    (unsigned long long)cmd.cpages, d->npages);
	/* The driver hands back what it copied into device memory. */
	check((char *)d->mirror, BUFFER_SIZE, "device copy after migration");
	printf("  2. HMM_DMIRROR_MIGRATE_TO_DEV: %llu pages migrated",
	       (unsigned long long)cmd.cpages);
	printf(" in %.1f ms (%.0f MB/s), data OK\n", t * 1e3, BUFFER_SIZE / t / 1e6);
}

static void step_snapshot_on_device(struct demo *d)
{
	struct where w = snapshot(d);

	printf("  3. HMM_DMIRROR_SNAPSHOT: where the pages are now\n");
	print_where(&w);
	if (d->coherent)
		expect_all(d, w.dev_coherent_local, "this coherent device");
	else
		expect_all(d, w.dev_private_local, "this private device");
}

static void step_device_read(struct demo *d)
{
	struct hmm_dmirror_cmd cmd;

	memset(d->mirror, 0, BUFFER_SIZE);
	cmd = dmirror(d, HMM_DMIRROR_READ, "HMM_DMIRROR_READ");
	if (cmd.cpages != d->npages)
		die("HMM_DMIRROR_READ read %llu of %zu pages",
		    (unsigned long long)cmd.cpages, d->npages);
	check((char *)d->mirror, BUFFER_SIZE, "HMM_DMIRROR_READ");
	printf("  4. HMM_DMIRROR_READ through the device mirror: %llu pages,",
	       (unsigned long long)cmd.cpages);
	printf(" %llu device faults, data OK\n", (unsigned long long)cmd.faults);
}

static void step_cpu_touch(struct demo *d)
{
	long faults = minor_faults();

	check(d->buf, BUFFER_SIZE, "CPU read of the buffer");
	faults = minor_faults() - faults;
	printf("  5. the CPU read the whole buffer: %ld page faults, data OK\n",
	       faults);
	if (d->coherent) {
		printf("     (coherent memory is mapped for the CPU, so no fault moved a page)\n");
	} else {
		printf("     (each fault on a device-private page ran migrate_to_ram)\n");
		if (faults < (long)d->npages)
			die("%zu device-private pages came back with only %ld faults",
			    d->npages, faults);
	}
}

/* Coherent pages stay on the device after a CPU touch; ask for them back. */
static void step_to_system(struct demo *d)
{
	struct hmm_dmirror_cmd cmd;

	cmd = dmirror(d, HMM_DMIRROR_MIGRATE_TO_SYS, "HMM_DMIRROR_MIGRATE_TO_SYS");
	if (cmd.cpages != d->npages)
		die("HMM_DMIRROR_MIGRATE_TO_SYS moved %llu of %zu pages",
		    (unsigned long long)cmd.cpages, d->npages);
	printf("  6. HMM_DMIRROR_MIGRATE_TO_SYS: %llu pages migrated back\n",
	       (unsigned long long)cmd.cpages);
}

static void step_snapshot_in_system(struct demo *d, int step)
{
	struct where w = snapshot(d);

	printf("  %d. HMM_DMIRROR_SNAPSHOT again\n", step);
	print_where(&w);
	expect_all(d, w.sys, "system memory");
	check(d->buf, BUFFER_SIZE, "data back in system memory");
	printf("     all %zu pages are back in system memory, data OK\n",
	       d->npages);
}

static void tour(struct demo *d)
{
	printf("\n%s (%s)\n", d->title, d->path);
	step_fill(d);
	step_to_device(d);
	step_snapshot_on_device(d);
	step_device_read(d);
	step_cpu_touch(d);
	if (d->coherent) {
		step_to_system(d);
		step_snapshot_in_system(d, 7);
	} else {
		step_snapshot_in_system(d, 6);
	}
	if (munmap(d->buf, BUFFER_SIZE))
		die("munmap: %s", strerror(errno));
}

static bool open_device(struct demo *d, bool required)
{
	d->fd = open(d->path, O_RDWR);
	if (d->fd >= 0)
		return true;
	if (required || errno != ENOENT)
		die("%s: %s", d->path, strerror(errno));
	return false;
}

int main(void)
{
	struct demo demos[] = {
		{ "device-private memory", "/dev/hmm_dmirror0", false },
		{ "device-coherent memory", "/dev/hmm_dmirror2", true },
	};
	unsigned char *mirror;
	int i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGESIZE);
	mirror = malloc(BUFFER_SIZE);
	if (!mirror)
		die("malloc: %s", strerror(errno));

	printf("hmm-demo: a %lu MiB buffer travels to test_hmm device memory and back\n",
	       BUFFER_SIZE >> 20);
	for (i = 0; i < 2; i++) {
		demos[i].mirror = mirror;
		demos[i].npages = BUFFER_SIZE / page_size;
		if (!open_device(&demos[i], i == 0)) {
			printf("\n%s: %s absent (test_hmm needs spm_addr_dev0/1), skipped\n",
			       demos[i].title, demos[i].path);
			continue;
		}
		tour(&demos[i]);
		close(demos[i].fd);
	}
	printf("\nhmm-demo: all steps passed\n");
	return 0;
}
