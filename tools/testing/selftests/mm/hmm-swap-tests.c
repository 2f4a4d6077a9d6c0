// SPDX-License-Identifier: GPL-2.0
/*
 * Swap-cache source pages, migrated to device memory through the test_hmm
 * dummy driver.
 *
 * Device memory holds anonymous memory only, so a source page that is still
 * in the swap cache has to leave it before it can move: migrate_vma_pages()
 * drops the swap cache copy, and leaves the page where it is, mapped and
 * intact, when it cannot because a swap pte elsewhere still refers to that
 * copy. The fixture builds such pages: it pages a buffer out to the swap
 * device the harness's /init turns on, forks a child that keeps swap ptes
 * of it, and reads the buffer back in the parent, which brings each page
 * into the swap cache: a RAM disk is synchronous, and do_swap_page() reads
 * around the swap cache only for a swap entry with one user. Each test then
 * migrates the parent's buffer with or without the child's swap ptes
 * alive, and checks both sides' data.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "hmm-dmirror.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT	21
#endif

#define NPAGES		16
#define PROT_TYPE_MASK	0xf0
#ifndef BIT_ULL
#define BIT_ULL(nr)	(1ULL << (nr))
#endif
#define PM_PRESENT	BIT_ULL(63)
#define PM_SWAP		BIT_ULL(62)
#define PM_PFN_MASK	(BIT_ULL(55) - 1)
#define KPF_SWAPCACHE	14

static unsigned long page_size;

static unsigned long word(unsigned long i)
{
	return 0x9e3779b97f4a7c15UL * (i + 1) ^ 0x5eed;
}

/* Index of the first word of @buf that lost its data, -1 if none did. */
static long first_bad(const unsigned long *buf)
{
	unsigned long i, n = NPAGES * page_size / sizeof(*buf);

	for (i = 0; i < n; i++)
		if (buf[i] != word(i))
			return i;
	return -1;
}

/* Is any swap area on? */
static bool swap_is_on(void)
{
	char line[256];
	int lines = 0;
	FILE *f = fopen("/proc/swaps", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		lines++;
	fclose(f);
	return lines > 1;	/* the first line is the header */
}

/* The pagemap entries of the pages of @buf; false if they cannot be read. */
static bool read_pagemap(const void *buf, uint64_t pme[NPAGES])
{
	off_t off = (unsigned long)buf / page_size * sizeof(pme[0]);
	int fd = open("/proc/self/pagemap", O_RDONLY);
	bool ok;

	if (fd < 0)
		return false;
	ok = pread(fd, pme, NPAGES * sizeof(pme[0]), off) ==
	     NPAGES * sizeof(pme[0]);
	close(fd);
	return ok;
}

/* Number of pages of @buf that pagemap shows as swapped out, or -1. */
static int swapped_out(const void *buf)
{
	uint64_t pme[NPAGES];
	int i, n = 0;

	if (!read_pagemap(buf, pme))
		return -1;
	for (i = 0; i < NPAGES; i++)
		if (pme[i] & PM_SWAP)
			n++;
	return n;
}

/* Number of pages of @buf mapped from the swap cache (kpageflags), or -1. */
static int in_swap_cache(const void *buf)
{
	uint64_t pme[NPAGES], flags;
	int fd, i, n = 0;

	if (!read_pagemap(buf, pme))
		return -1;
	fd = open("/proc/kpageflags", O_RDONLY);
	if (fd < 0)
		return -1;
	for (i = 0; i < NPAGES && n >= 0; i++) {
		if (!(pme[i] & PM_PRESENT))
			continue;
		if (pread(fd, &flags, sizeof(flags),
			  (pme[i] & PM_PFN_MASK) * sizeof(flags)) != sizeof(flags))
			n = -1;
		else if (flags & BIT_ULL(KPF_SWAPCACHE))
			n++;
	}
	close(fd);
	return n;
}

FIXTURE(swap_cache)
{
	int fd;
	unsigned long *buf;
	unsigned long *copy;
	unsigned char prot[NPAGES];
	pid_t child;
	int release;	/* write end of the pipe the child waits on */
};

/*
 * The child keeps its swap ptes until released, then checks that its copy
 * of the buffer, which it reads through them, is intact.
 */
static void child_wait_and_check(const unsigned long *buf, int release)
{
	char c;

	if (read(release, &c, 1) != 1)
		_exit(2);
	_exit(first_bad(buf) == -1 ? 0 : 1);
}

FIXTURE_SETUP(swap_cache)
{
	unsigned long i, n;
	int fds[2];

	page_size = sysconf(_SC_PAGE_SIZE);
	ASSERT_TRUE(swap_is_on()) TH_LOG("no swap area: /init turns one on");
	self->fd = open("/dev/hmm_dmirror0", O_RDWR);
	ASSERT_GE(self->fd, 0);
	self->copy = malloc(NPAGES * page_size);
	ASSERT_NE(NULL, self->copy);

	self->buf = mmap(NULL, NPAGES * page_size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->buf);
	ASSERT_EQ(0, madvise(self->buf, NPAGES * page_size, MADV_NOHUGEPAGE));
	n = NPAGES * page_size / sizeof(*self->buf);
	for (i = 0; i < n; i++)
		self->buf[i] = word(i);

	ASSERT_EQ(0, madvise(self->buf, NPAGES * page_size, MADV_PAGEOUT));
	ASSERT_EQ(NPAGES, swapped_out(self->buf));

	ASSERT_EQ(0, pipe(fds));
	self->child = fork();
	ASSERT_GE(self->child, 0);
	if (!self->child) {
		close(fds[1]);
		child_wait_and_check(self->buf, fds[0]);
	}
	close(fds[0]);
	self->release = fds[1];

	/* Read back in the parent: each page now sits in the swap cache. */
	ASSERT_EQ(-1, first_bad(self->buf));
	ASSERT_EQ(0, swapped_out(self->buf));
	ASSERT_EQ(NPAGES, in_swap_cache(self->buf));
}

/* Release the child if a test did not, and collect its verdict. */
static int release_child(struct _test_data_swap_cache *self)
{
	int status;

	if (self->release < 0)
		return -1;
	if (write(self->release, "", 1) != 1)
		return -1;
	close(self->release);
	self->release = -1;
	if (waitpid(self->child, &status, 0) != self->child ||
	    !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

FIXTURE_TEARDOWN(swap_cache)
{
	release_child(self);
	munmap(self->buf, NPAGES * page_size);
	free(self->copy);
	close(self->fd);
}

/* Pages of the buffer that the snapshot reports as being of @type. */
static int count_type(struct __test_metadata *_metadata,
		      struct _test_data_swap_cache *self, unsigned char type)
{
	int i, n = 0;

	EXPECT_EQ(0, dmirror_cmd(self->fd, HMM_DMIRROR_SNAPSHOT, self->buf,
				 self->prot, NPAGES, NULL));
	for (i = 0; i < NPAGES; i++)
		if ((self->prot[i] & PROT_TYPE_MASK) == type)
			n++;
	return n;
}

/*
 * While another process's swap pte refers to the swap cache copy, the copy
 * cannot be dropped, so no page moves: each stays mapped in system memory
 * with its data, and the child still reads its own copy through the swap
 * entry. (test_hmm's MIGRATE_TO_DEV reads the range back through its
 * device page table afterwards, and fails with -ENOENT at the first page
 * that is not there.)
 */
TEST_F(swap_cache, page_with_a_swap_pte_elsewhere_stays)
{
	unsigned long cpages = 0;

	ASSERT_EQ(-ENOENT, dmirror_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV,
				       self->buf, self->copy, NPAGES, &cpages));
	ASSERT_EQ(0, cpages);
	ASSERT_EQ(NPAGES, count_type(_metadata, self, 0));
	ASSERT_EQ(NPAGES, in_swap_cache(self->buf));
	ASSERT_EQ(-1, first_bad(self->buf));
	ASSERT_EQ(0, release_child(self));
}

/*
 * Once the child is gone, only the swap cache holds each swap entry: the
 * migration drops the swap cache copies, and the pages move to the device
 * and come back with their data.
 */
TEST_F(swap_cache, page_leaves_the_swap_cache_and_moves)
{
	unsigned long cpages = 0;

	ASSERT_EQ(0, release_child(self));
	ASSERT_EQ(NPAGES, in_swap_cache(self->buf));

	ASSERT_EQ(0, dmirror_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV, self->buf,
				 self->copy, NPAGES, &cpages));
	ASSERT_EQ(NPAGES, cpages);
	ASSERT_EQ(-1, first_bad(self->copy));
	ASSERT_EQ(NPAGES,
		  count_type(_metadata, self, HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL));

	/* CPU faults bring every page back. */
	ASSERT_EQ(-1, first_bad(self->buf));
	ASSERT_EQ(NPAGES, count_type(_metadata, self, 0));
}

TEST_HARNESS_MAIN
