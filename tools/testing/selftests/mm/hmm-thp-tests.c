// SPDX-License-Identifier: GPL-2.0
/*
 * Device-private THP through the test_hmm dummy driver: whole 2 MiB folios
 * migrated to device memory and back, and every mm path that meets a
 * device-private PMD afterwards (CPU fault, munmap of part, mremap, fork,
 * mprotect, MADV_FREE, eviction of the device's memory), with the data
 * checked at each step. A forked child that shares the buffer checks what
 * it sees of a migration the parent started. Large folios that ptes map (a
 * THP that mremap() moved off a 2 MiB boundary, 64 KiB mTHPs) migrate too,
 * split page by page.
 *
 * The driver migrates with MIGRATE_VMA_SELECT_COMPOUND; the snapshot tells
 * whether a PMD was mapped whole (HMM_DMIRROR_PROT_PMD). Where the kernel
 * cannot give a THP (THP disabled, no 2 MiB of free memory) the migration
 * still has to move every page: only the PMD checks depend on having one,
 * and those tests say so in their log.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "hmm-dmirror.h"

#define THP_SIZE	(2UL << 20)
#define PROT_TYPE_MASK	0xf0

static unsigned long page_size;
static unsigned long npages;	/* pages in a THP */

/* ---- buffers ---------------------------------------------------------- */

/* An anonymous THP-aligned mapping of @size bytes, MADV_HUGEPAGE. */
static unsigned long *map_thp(unsigned long size)
{
	char *p, *start;

	p = mmap(NULL, size + THP_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return MAP_FAILED;
	start = (char *)(((unsigned long)p + THP_SIZE - 1) & ~(THP_SIZE - 1));
	if (start > p)
		munmap(p, start - p);
	munmap(start + size, p + THP_SIZE - start);
	if (madvise(start, size, MADV_HUGEPAGE)) {
		munmap(start, size);
		return MAP_FAILED;
	}
	return (unsigned long *)start;
}

static unsigned long word(unsigned long seed, unsigned long i)
{
	return seed * 0x9e3779b97f4a7c15UL + i;
}

static void fill(unsigned long *buf, unsigned long nwords, unsigned long seed)
{
	unsigned long i;

	for (i = 0; i < nwords; i++)
		buf[i] = word(seed, i);
}

/* Index of the first word of @buf that does not hold its pattern, or -1. */
static long first_bad(const unsigned long *buf, unsigned long first,
		      unsigned long nwords, unsigned long seed)
{
	unsigned long i;

	for (i = 0; i < nwords; i++)
		if (buf[i] != word(seed, first + i))
			return first + i;
	return -1;
}

/* ---- what /proc says ------------------------------------------------- */

/* The value in kB of @field in the smaps entry of the VMA at @start. */
static long smaps_kb(void *start, const char *field)
{
	size_t len = strlen(field);
	unsigned long from, to;
	bool in_vma = false;
	long value = -1;
	char line[256];
	FILE *f;

	f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		/* A VMA's first line: "from-to perms offset dev inode path" */
		if (sscanf(line, "%lx-%lx ", &from, &to) == 2) {
			in_vma = from == (unsigned long)start;
			continue;
		}
		if (in_vma && !strncmp(line, field, len) && line[len] == ':') {
			value = strtol(line + len + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return value;
}

/* The pagemap entry of the page at @addr. */
static uint64_t pagemap_entry(int fd, const void *addr)
{
	uint64_t pme = 0;
	off_t off = (unsigned long)addr / page_size * sizeof(pme);

	if (pread(fd, &pme, sizeof(pme), off) != sizeof(pme))
		return 0;
	return pme;
}

#ifndef BIT_ULL
#define BIT_ULL(nr)	(1ULL << (nr))
#endif
#define PM_PRESENT	BIT_ULL(63)
#define PM_SWAP		BIT_ULL(62)
#define PM_SWAP_OFFSET(pme)	(((pme) >> 5) & (BIT_ULL(50) - 1))

#define MTHP_SIZE	(64UL << 10)
#define MTHP_DIR	"/sys/kernel/mm/transparent_hugepage/hugepages-64kB/"

static int open_mthp_knob(const char *name, int flags)
{
	char path[128];

	snprintf(path, sizeof(path), MTHP_DIR "%s", name);
	return open(path, flags);
}

/* Read the 64 KiB mTHP file @name into @buf; false if there is none. */
static bool read_mthp_knob(const char *name, char *buf, size_t size)
{
	int fd = open_mthp_knob(name, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = 0;
	return true;
}

static bool write_mthp_knob(const char *name, const char *value)
{
	int fd = open_mthp_knob(name, O_WRONLY);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, value, strlen(value)) == (ssize_t)strlen(value);
	close(fd);
	return ok;
}

/*
 * The selected word of the 64 KiB mTHP "enabled" setting, such as
 * "never" out of "always inherit madvise [never]", into @word.
 */
static bool mthp_enabled(char *word, size_t size)
{
	char line[128], *left, *right;

	if (!read_mthp_knob("enabled", line, sizeof(line)))
		return false;
	left = strchr(line, '[');
	right = left ? strchr(left, ']') : NULL;
	if (!right || (size_t)(right - left) > size)
		return false;
	*right = 0;
	snprintf(word, size, "%s", left + 1);
	return true;
}

/* How many 64 KiB mTHPs page faults have allocated so far. */
static long mthp_fault_allocs(void)
{
	char line[32];

	if (!read_mthp_knob("stats/anon_fault_alloc", line, sizeof(line)))
		return -1;
	return strtol(line, NULL, 10);
}

/* ---- the device ------------------------------------------------------- */

FIXTURE(thp)
{
	int fd;
	unsigned long *buf;
	unsigned long *copy;
	unsigned char *prot;
	char mthp_enabled[16];	/* the 64 KiB mTHP setting to restore */
};

FIXTURE_SETUP(thp)
{
	page_size = sysconf(_SC_PAGE_SIZE);
	npages = THP_SIZE / page_size;
	self->fd = open("/dev/hmm_dmirror0", O_RDWR);
	ASSERT_GE(self->fd, 0);
	self->buf = map_thp(THP_SIZE);
	ASSERT_NE(MAP_FAILED, self->buf);
	self->copy = malloc(THP_SIZE);
	ASSERT_NE(NULL, self->copy);
	self->prot = malloc(npages);
	ASSERT_NE(NULL, self->prot);
}

FIXTURE_TEARDOWN(thp)
{
	if (self->mthp_enabled[0])
		write_mthp_knob("enabled", self->mthp_enabled);
	munmap(self->buf, THP_SIZE);
	free(self->copy);
	free(self->prot);
	close(self->fd);
}

/*
 * Snapshot the buffer: the number of pages whose type is @type, and
 * whether every one of them was reported as part of a whole PMD.
 */
static unsigned long count_type(struct __test_metadata *_metadata,
				struct _test_data_thp *self, unsigned char type,
				bool *pmd)
{
	unsigned long i, n = 0;

	ASSERT_EQ(0, dmirror_cmd(self->fd, HMM_DMIRROR_SNAPSHOT, self->buf,
				 self->prot, npages, NULL));
	*pmd = true;
	for (i = 0; i < npages; i++) {
		if ((self->prot[i] & PROT_TYPE_MASK) == type)
			n++;
		if (!(self->prot[i] & HMM_DMIRROR_PROT_PMD))
			*pmd = false;
	}
	return n;
}

/* Is the buffer backed by a THP before it migrates? */
static bool starts_huge(struct __test_metadata *_metadata,
			struct _test_data_thp *self)
{
	bool pmd;

	count_type(_metadata, self, 0, &pmd);
	if (!pmd)
		TH_LOG("no THP to start from: PMD checks skipped");
	return pmd;
}

/* Migrate the whole buffer to the device; all pages must go, data intact. */
static void to_device(struct __test_metadata *_metadata,
		      struct _test_data_thp *self, unsigned long seed)
{
	unsigned long cpages = 0;

	ASSERT_EQ(0, dmirror_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV, self->buf,
				 self->copy, npages, &cpages));
	ASSERT_EQ(npages, cpages);
	ASSERT_EQ(-1, first_bad(self->copy, 0, THP_SIZE / sizeof(long), seed));
}

static void to_system(struct __test_metadata *_metadata,
		      struct _test_data_thp *self)
{
	unsigned long cpages = 0;

	ASSERT_EQ(0, dmirror_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_SYS, self->buf,
				 NULL, npages, &cpages));
	ASSERT_EQ(npages, cpages);
}

static void fail_next_alloc(struct __test_metadata *_metadata,
			    struct _test_data_thp *self)
{
	ASSERT_EQ(0, dmirror_cmd(self->fd, HMM_DMIRROR_FLAGS, self->buf, NULL,
				 HMM_DMIRROR_FLAG_FAIL_ALLOC, NULL));
}

/*
 * Evict all of the device's memory (HMM_DMIRROR_RELEASE), through
 * migrate_device_range(), the way a driver empties its memory on unbind.
 */
static void release(struct __test_metadata *_metadata,
		    struct _test_data_thp *self)
{
	ASSERT_EQ(0, dmirror_cmd(self->fd, HMM_DMIRROR_RELEASE, self->buf,
				 NULL, npages, NULL));
}

/* Every page is on the device; as one PMD if @huge. */
static void expect_on_device(struct __test_metadata *_metadata,
			     struct _test_data_thp *self, bool huge)
{
	bool pmd;

	ASSERT_EQ(npages, count_type(_metadata, self,
				     HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, &pmd));
	ASSERT_EQ(huge, pmd);
}

/* Every page is in system memory; as one THP if @huge. */
static void expect_in_system(struct __test_metadata *_metadata,
			     struct _test_data_thp *self, bool huge)
{
	bool pmd;

	ASSERT_EQ(npages, count_type(_metadata, self, 0, &pmd));
	if (huge)
		ASSERT_TRUE(pmd);
}

/* Every page is in system memory, as base pages: the folio was split. */
static void expect_split_in_system(struct __test_metadata *_metadata,
				   struct _test_data_thp *self)
{
	bool pmd;

	ASSERT_EQ(npages, count_type(_metadata, self, 0, &pmd));
	ASSERT_FALSE(pmd);
}

/* ---- a forked child that maps the buffer too ------------------------- */

/* What a child is to find in its own mapping of the buffer. */
struct sharer {
	pid_t pid;
	int go;			/* the child waits for a byte on this pipe */
	unsigned char type;	/* HMM_DMIRROR_PROT_* type of the pages */
	unsigned long count;	/* how many pages are of that type */
	bool pmd;		/* whether every page is mapped by a PMD */
	unsigned long seed;	/* the pattern the buffer holds */
};

/*
 * In the child, once the parent says so: snapshot the buffer through a
 * mirror of its own (test_hmm mirrors the mm that opened the device), then
 * read it through the CPU. The exit status names the check that failed.
 */
static int sharer_check(unsigned long *buf, int go, const struct sharer *want)
{
	unsigned char *prot = malloc(npages);
	unsigned long i, n = 0;
	bool pmd = true;
	char c;
	int fd;

	if (read(go, &c, 1) != 1)
		return 10;
	fd = open("/dev/hmm_dmirror0", O_RDWR);
	if (fd < 0 || !prot)
		return 11;
	if (dmirror_cmd(fd, HMM_DMIRROR_SNAPSHOT, buf, prot, npages, NULL))
		return 12;
	for (i = 0; i < npages; i++) {
		if ((prot[i] & PROT_TYPE_MASK) == want->type)
			n++;
		if (!(prot[i] & HMM_DMIRROR_PROT_PMD))
			pmd = false;
	}
	if (n != want->count)
		return 13;
	if (pmd != want->pmd)
		return 14;
	if (first_bad(buf, 0, THP_SIZE / sizeof(long), want->seed) != -1)
		return 15;
	return 0;
}

/*
 * Fork a child that shares the buffer (a THP or a device THP is then
 * mapped in both) and checks it against @want when sharer_done() is
 * called.
 */
static void fork_sharer(struct __test_metadata *_metadata,
			struct _test_data_thp *self, struct sharer *want)
{
	int fds[2];

	ASSERT_EQ(0, pipe(fds));
	want->pid = fork();
	ASSERT_GE(want->pid, 0);
	if (!want->pid) {
		close(fds[1]);
		_exit(sharer_check(self->buf, fds[0], want));
	}
	close(fds[0]);
	want->go = fds[1];
}

static void sharer_done(struct __test_metadata *_metadata,
			struct sharer *want)
{
	int status;

	ASSERT_EQ(1, write(want->go, "", 1));
	close(want->go);
	ASSERT_EQ(want->pid, waitpid(want->pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
}

/* A THP goes to the device as one device folio and comes back as one THP. */
TEST_F(thp, migrate_to_device_and_back_whole)
{
	bool huge;

	fill(self->buf, THP_SIZE / sizeof(long), 1);
	huge = starts_huge(_metadata, self);
	to_device(_metadata, self, 1);
	expect_on_device(_metadata, self, huge);
	to_system(_metadata, self);
	expect_in_system(_metadata, self, huge);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 1));
}

/* An empty aligned range becomes one device folio, zero-filled. */
TEST_F(thp, empty_range_becomes_device_thp)
{
	unsigned long cpages = 0, i;

	ASSERT_EQ(0, dmirror_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV, self->buf,
				 self->copy, npages, &cpages));
	ASSERT_EQ(npages, cpages);
	expect_on_device(_metadata, self, true);
	for (i = 0; i < THP_SIZE / sizeof(long); i++)
		ASSERT_EQ(0, self->buf[i]);
}

/* The huge zero page is offered like a hole: one zero-filled device folio. */
TEST_F(thp, huge_zero_page_becomes_device_thp)
{
	unsigned long i, cpages = 0;

	/* Read faults map the huge zero page (or zero pages). */
	for (i = 0; i < THP_SIZE / sizeof(long); i += 512)
		ASSERT_EQ(0, self->buf[i]);
	ASSERT_EQ(0, dmirror_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV, self->buf,
				 self->copy, npages, &cpages));
	ASSERT_EQ(npages, cpages);
	expect_on_device(_metadata, self, true);
	for (i = 0; i < THP_SIZE / sizeof(long); i++)
		ASSERT_EQ(0, self->copy[i]);
}

/* A CPU fault on one page brings the whole folio back as a THP. */
TEST_F(thp, cpu_fault_brings_back_whole_thp)
{
	bool huge;

	fill(self->buf, THP_SIZE / sizeof(long), 2);
	huge = starts_huge(_metadata, self);
	to_device(_metadata, self, 2);
	ASSERT_EQ(word(2, 7 * 512), self->buf[7 * 512]);
	expect_in_system(_metadata, self, huge);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 2));
}

/* munmap of half a device THP, then CPU access to the rest. */
TEST_F(thp, partial_munmap_then_fault_rest)
{
	unsigned long half = THP_SIZE / 2;

	fill(self->buf, THP_SIZE / sizeof(long), 3);
	to_device(_metadata, self, 3);
	ASSERT_EQ(0, munmap(self->buf, half));
	ASSERT_EQ(-1, first_bad(self->buf + half / sizeof(long),
				half / sizeof(long), half / sizeof(long), 3));
	/* Teardown unmaps the whole range again, which is harmless. */
}

/* mremap moves a device THP; its data follows. */
TEST_F(thp, mremap_moves_device_thp)
{
	unsigned long *target = map_thp(THP_SIZE), *moved;

	ASSERT_NE(MAP_FAILED, target);
	fill(self->buf, THP_SIZE / sizeof(long), 4);
	to_device(_metadata, self, 4);
	moved = mremap(self->buf, THP_SIZE, THP_SIZE,
		       MREMAP_MAYMOVE | MREMAP_FIXED, target);
	ASSERT_EQ(target, moved);
	self->buf = moved;
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 4));
}

/* A THP that mremap moved goes to the device and back whole. */
TEST_F(thp, mremap_then_migrate_whole)
{
	unsigned long *target = map_thp(THP_SIZE), *moved;
	bool huge;

	ASSERT_NE(MAP_FAILED, target);
	fill(self->buf, THP_SIZE / sizeof(long), 23);
	moved = mremap(self->buf, THP_SIZE, THP_SIZE,
		       MREMAP_MAYMOVE | MREMAP_FIXED, target);
	ASSERT_EQ(target, moved);
	self->buf = moved;
	huge = starts_huge(_metadata, self);
	to_device(_metadata, self, 23);
	expect_on_device(_metadata, self, huge);
	to_system(_metadata, self);
	expect_in_system(_metadata, self, huge);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 23));
}

/*
 * A THP that mremap() moved a page past a 2 MiB boundary is mapped by
 * ptes: collect splits it, and every page goes to the device and back on
 * its own, data intact. 6.12 left all of them in system memory.
 */
TEST_F(thp, mremap_unaligned_then_migrate_page_by_page)
{
	unsigned long *moved;
	char *area, *target;

	fill(self->buf, THP_SIZE / sizeof(long), 25);
	if (!starts_huge(_metadata, self))
		SKIP(return, "no THP to move");
	area = mmap(NULL, 2 * THP_SIZE, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, area);
	target = (char *)(((unsigned long)area + THP_SIZE - 1) &
			  ~(THP_SIZE - 1)) + page_size;
	moved = mremap(self->buf, THP_SIZE, THP_SIZE,
		       MREMAP_MAYMOVE | MREMAP_FIXED, target);
	ASSERT_EQ((void *)target, moved);
	self->buf = moved;
	ASSERT_EQ(0, smaps_kb(self->buf, "AnonHugePages"));
	ASSERT_EQ(THP_SIZE >> 10, smaps_kb(self->buf, "Rss"));

	to_device(_metadata, self, 25);
	expect_on_device(_metadata, self, false);
	to_system(_metadata, self);
	expect_split_in_system(_metadata, self);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 25));
}

/*
 * Memory backed by 64 KiB mTHPs, which ptes map, goes to the device and
 * back page by page, data intact: collect splits each folio. 6.12 left
 * all of it in system memory.
 */
TEST_F(thp, mthp_migrates_page_by_page)
{
	long allocs;
	char *p, *start;

	if (!mthp_enabled(self->mthp_enabled, sizeof(self->mthp_enabled)))
		SKIP(return, "no 64 KiB mTHP setting");
	ASSERT_TRUE(write_mthp_knob("enabled", "always"));

	/*
	 * 2 MiB starting 64 KiB past a 2 MiB boundary: no PMD fits in it,
	 * so faults take 64 KiB folios.
	 */
	munmap(self->buf, THP_SIZE);
	p = mmap(NULL, 3 * THP_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	start = (char *)(((unsigned long)p + THP_SIZE - 1) &
			 ~(THP_SIZE - 1)) + MTHP_SIZE;
	munmap(p, start - p);
	munmap(start + THP_SIZE, p + 3 * THP_SIZE - (start + THP_SIZE));
	self->buf = (unsigned long *)start;

	allocs = mthp_fault_allocs();
	ASSERT_GE(allocs, 0);
	fill(self->buf, THP_SIZE / sizeof(long), 26);
	ASSERT_EQ(THP_SIZE / MTHP_SIZE, mthp_fault_allocs() - allocs);

	to_device(_metadata, self, 26);
	expect_on_device(_metadata, self, false);
	to_system(_metadata, self);
	expect_in_system(_metadata, self, false);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 26));
}

/*
 * MADV_DONTNEED drops a device THP whole: nothing is mapped or counted
 * afterwards, and the range reads back as zeroes.
 */
TEST_F(thp, madv_dontneed_drops_device_thp)
{
	unsigned long i;

	fill(self->buf, THP_SIZE / sizeof(long), 24);
	to_device(_metadata, self, 24);
	ASSERT_EQ(0, madvise(self->buf, THP_SIZE, MADV_DONTNEED));
	ASSERT_EQ(0, smaps_kb(self->buf, "Rss"));
	ASSERT_EQ(0, dmirror_cmd(self->fd, HMM_DMIRROR_SNAPSHOT, self->buf,
				 self->prot, npages, NULL));
	for (i = 0; i < npages; i++)
		ASSERT_EQ(HMM_DMIRROR_PROT_NONE, self->prot[i]);
	for (i = 0; i < THP_SIZE / sizeof(long); i++)
		ASSERT_EQ(0, self->buf[i]);
}

/* After fork both sides read the device THP and write their own copy. */
TEST_F(thp, fork_shares_device_thp_then_both_write)
{
	unsigned long nwords = THP_SIZE / sizeof(long);
	int status;
	pid_t pid;

	fill(self->buf, nwords, 5);
	to_device(_metadata, self, 5);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		if (first_bad(self->buf, 0, nwords, 5) != -1)
			_exit(1);
		fill(self->buf, nwords, 6);
		_exit(first_bad(self->buf, 0, nwords, 6) != -1 ? 2 : 0);
	}
	ASSERT_EQ(-1, first_bad(self->buf, 0, nwords, 5));
	fill(self->buf, nwords, 7);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(-1, first_bad(self->buf, 0, nwords, 7));
}

/*
 * A THP that a forked child maps too moves to the device whole: the rmap
 * replaces the child's PMD as well, which then maps the device folio.
 */
TEST_F(thp, thp_shared_with_child_moves_to_device_whole)
{
	struct sharer child = {
		.type = HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
		.count = npages,
		.seed = 15,
	};
	bool huge;

	fill(self->buf, THP_SIZE / sizeof(long), 15);
	huge = starts_huge(_metadata, self);
	child.pmd = huge;
	fork_sharer(_metadata, self, &child);
	to_device(_metadata, self, 15);
	expect_on_device(_metadata, self, huge);
	sharer_done(_metadata, &child);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 15));
}

/*
 * A CPU fault on a device THP that a forked child maps too brings the
 * folio back whole, as one THP mapped by a PMD in both processes.
 */
TEST_F(thp, cpu_fault_on_shared_device_thp_brings_back_whole_thp)
{
	struct sharer child = { .type = 0, .count = npages, .seed = 16 };
	bool huge;

	fill(self->buf, THP_SIZE / sizeof(long), 16);
	huge = starts_huge(_metadata, self);
	child.pmd = huge;
	to_device(_metadata, self, 16);
	fork_sharer(_metadata, self, &child);
	ASSERT_EQ(word(16, 3 * 512), self->buf[3 * 512]);
	expect_in_system(_metadata, self, huge);
	sharer_done(_metadata, &child);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 16));
}

/*
 * Without a device THP, a THP a forked child maps too is split with the
 * child's migration entries, and every page moves: the child finds each on
 * the device.
 */
TEST_F(thp, fail_alloc_thp_shared_with_child_splits)
{
	struct sharer child = {
		.type = HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
		.count = npages,
		.pmd = false,
		.seed = 17,
	};

	fill(self->buf, THP_SIZE / sizeof(long), 17);
	fork_sharer(_metadata, self, &child);
	fail_next_alloc(_metadata, self);
	to_device(_metadata, self, 17);
	expect_on_device(_metadata, self, false);
	sharer_done(_metadata, &child);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 17));
}

/*
 * Without a THP, a CPU fault on a device THP a forked child maps too
 * brings back the faulting page alone, for both processes; the other pages
 * stay on the device for both.
 */
TEST_F(thp, fail_alloc_cpu_fault_on_shared_device_thp_brings_back_one_page)
{
	struct sharer child = {
		.type = HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
		.count = npages - 1,
		.pmd = false,
		.seed = 18,
	};
	bool pmd;

	fill(self->buf, THP_SIZE / sizeof(long), 18);
	to_device(_metadata, self, 18);
	fork_sharer(_metadata, self, &child);
	fail_next_alloc(_metadata, self);
	ASSERT_EQ(word(18, 7 * 512), self->buf[7 * 512]);
	ASSERT_EQ(npages - 1,
		  count_type(_metadata, self,
			     HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, &pmd));
	ASSERT_FALSE(pmd);
	sharer_done(_metadata, &child);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 18));
}

/* Eviction hands a device THP over whole: it comes back as one THP. */
TEST_F(thp, release_brings_back_whole_thp)
{
	bool huge;

	fill(self->buf, THP_SIZE / sizeof(long), 19);
	huge = starts_huge(_metadata, self);
	to_device(_metadata, self, 19);
	expect_on_device(_metadata, self, huge);
	release(_metadata, self);
	expect_in_system(_metadata, self, huge);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 19));
}

/* Without a THP, eviction splits the device folio: base pages come back. */
TEST_F(thp, fail_alloc_release_splits)
{
	fill(self->buf, THP_SIZE / sizeof(long), 20);
	to_device(_metadata, self, 20);
	fail_next_alloc(_metadata, self);
	release(_metadata, self);
	expect_split_in_system(_metadata, self);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 20));
}

/* Eviction of a device THP a forked child maps too: a THP for both. */
TEST_F(thp, release_of_shared_device_thp_brings_back_whole_thp)
{
	struct sharer child = { .type = 0, .count = npages, .seed = 21 };
	bool huge;

	fill(self->buf, THP_SIZE / sizeof(long), 21);
	huge = starts_huge(_metadata, self);
	child.pmd = huge;
	to_device(_metadata, self, 21);
	fork_sharer(_metadata, self, &child);
	release(_metadata, self);
	expect_in_system(_metadata, self, huge);
	sharer_done(_metadata, &child);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 21));
}

/*
 * Without a THP, eviction of a device THP a forked child maps too splits
 * it under both processes' migration entries: base pages for both.
 */
TEST_F(thp, fail_alloc_release_of_shared_device_thp_splits)
{
	struct sharer child = {
		.type = 0,
		.count = npages,
		.pmd = false,
		.seed = 22,
	};

	fill(self->buf, THP_SIZE / sizeof(long), 22);
	to_device(_metadata, self, 22);
	fork_sharer(_metadata, self, &child);
	fail_next_alloc(_metadata, self);
	release(_metadata, self);
	expect_split_in_system(_metadata, self);
	sharer_done(_metadata, &child);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 22));
}

/* mprotect of a device THP to read-only: reads work, writes fault. */
TEST_F(thp, mprotect_read_only_device_thp)
{
	unsigned long nwords = THP_SIZE / sizeof(long);

	fill(self->buf, nwords, 8);
	to_device(_metadata, self, 8);
	ASSERT_EQ(0, mprotect(self->buf, THP_SIZE, PROT_READ));
	ASSERT_EQ(-1, first_bad(self->buf, 0, nwords, 8));
	ASSERT_EQ(0, mprotect(self->buf, THP_SIZE, PROT_READ | PROT_WRITE));
	fill(self->buf, nwords, 9);
	ASSERT_EQ(-1, first_bad(self->buf, 0, nwords, 9));
}

/* MADV_FREE leaves a device THP alone: device memory is never lazily freed. */
TEST_F(thp, madv_free_keeps_device_thp)
{
	fill(self->buf, THP_SIZE / sizeof(long), 10);
	to_device(_metadata, self, 10);
	ASSERT_EQ(0, madvise(self->buf, THP_SIZE, MADV_FREE));
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 10));
}

/* Without a device folio the THP is split and moves page by page. */
TEST_F(thp, fail_alloc_to_device_splits)
{
	fill(self->buf, THP_SIZE / sizeof(long), 11);
	fail_next_alloc(_metadata, self);
	to_device(_metadata, self, 11);
	expect_on_device(_metadata, self, false);
	to_system(_metadata, self);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 11));
}

/* Without a THP the device folio is split and comes back page by page. */
TEST_F(thp, fail_alloc_to_system_splits)
{
	fill(self->buf, THP_SIZE / sizeof(long), 12);
	to_device(_metadata, self, 12);
	fail_next_alloc(_metadata, self);
	to_system(_metadata, self);
	expect_split_in_system(_metadata, self);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 12));
}

/*
 * Without a THP a CPU fault brings back the faulting page alone, split off
 * its device folio; the other pages stay on the device, which still reads
 * them all right.
 */
TEST_F(thp, fail_alloc_cpu_fault_brings_back_one_page)
{
	unsigned long cpages = 0;
	bool pmd;

	fill(self->buf, THP_SIZE / sizeof(long), 13);
	to_device(_metadata, self, 13);
	fail_next_alloc(_metadata, self);
	ASSERT_EQ(word(13, 7 * 512), self->buf[7 * 512]);
	ASSERT_EQ(npages - 1,
		  count_type(_metadata, self,
			     HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, &pmd));
	ASSERT_FALSE(pmd);

	memset(self->copy, 0, THP_SIZE);
	ASSERT_EQ(0, dmirror_cmd(self->fd, HMM_DMIRROR_READ, self->buf, self->copy,
				 npages, &cpages));
	ASSERT_EQ(npages, cpages);
	ASSERT_EQ(-1, first_bad(self->copy, 0, THP_SIZE / sizeof(long), 13));
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 13));
}

/*
 * smaps counts a device THP as its ptes would be: resident, anonymous and
 * private to the process. pagemap shows each page as a swap entry whose
 * offset is the page's device pfn, one after the other.
 */
TEST_F(thp, smaps_and_pagemap_show_device_thp)
{
	uint64_t first, pme;
	unsigned long i;
	bool huge;
	int fd;

	fill(self->buf, THP_SIZE / sizeof(long), 14);
	huge = starts_huge(_metadata, self);
	to_device(_metadata, self, 14);
	expect_on_device(_metadata, self, huge);

	ASSERT_EQ(THP_SIZE >> 10, smaps_kb(self->buf, "Size"));
	ASSERT_EQ(THP_SIZE >> 10, smaps_kb(self->buf, "Rss"));
	ASSERT_EQ(THP_SIZE >> 10, smaps_kb(self->buf, "Anonymous"));
	ASSERT_EQ(0, smaps_kb(self->buf, "Shared_Clean"));
	ASSERT_EQ(0, smaps_kb(self->buf, "Shared_Dirty"));
	ASSERT_EQ(THP_SIZE >> 10, smaps_kb(self->buf, "Private_Clean") +
				  smaps_kb(self->buf, "Private_Dirty"));
	if (huge)
		ASSERT_EQ(THP_SIZE >> 10,
			  smaps_kb(self->buf, "AnonHugePages"));

	fd = open("/proc/self/pagemap", O_RDONLY);
	ASSERT_GE(fd, 0);
	first = pagemap_entry(fd, self->buf);
	for (i = 0; i < npages; i++) {
		pme = pagemap_entry(fd, (char *)self->buf + i * page_size);
		ASSERT_EQ(PM_SWAP, pme & (PM_SWAP | PM_PRESENT));
		ASSERT_EQ(PM_SWAP_OFFSET(first) + i, PM_SWAP_OFFSET(pme));
	}
	close(fd);
	ASSERT_EQ(-1, first_bad(self->buf, 0, THP_SIZE / sizeof(long), 14));
}

/* Unknown flags are refused. */
TEST_F(thp, flags_rejects_unknown_bits)
{
	ASSERT_EQ(-EINVAL, dmirror_cmd(self->fd, HMM_DMIRROR_FLAGS, self->buf,
				       NULL, 2, NULL));
}

TEST_HARNESS_MAIN
