// SPDX-License-Identifier: GPL-2.0
/*
 * Race tests for device memory migration (mm/migrate_device.c, mm/hmm.c),
 * driven through the test_hmm dummy driver.
 *
 * hmm-tests.c checks one operation at a time. These tests run a migration
 * while something else uses the same pages: many CPU threads faulting one
 * device page, another device reading or writing, munmap, mprotect, fork.
 * The munmap, mprotect and fork races also run on a THP, which the driver
 * migrates whole, so that they split or copy PMDs mid-migration. A race
 * that loses data, leaves a stale device mapping behind or never settles
 * shows up as a data mismatch, an unexpected ioctl result or a round that
 * misses its time bound; every round is bounded, so a livelock fails the
 * test instead of hanging the run.
 *
 * Each variant opens two mirrors of the same type: the first migrates, the
 * second is another device using the same memory (or a child's own device).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "hmm-dmirror.h"

/* A round still running this long after its threads started is hung. */
#define ROUND_BOUND_S		20
/* Backstop of the harness itself, for a test that cannot even fail. */
#define TEST_BOUND_S		120

/* The snapshot byte keeps the page type in its high nibble. */
#define PROT_TYPE_MASK		0xf0
#define THP_SIZE		(2UL << 20)

#define SAME_PAGE_THREADS	32
#define SAME_PAGE_PAGES		4
#define SAME_PAGE_ROUNDS	8

#define THP_THREADS		16
#define THP_ROUNDS		3

#define PULL_THREADS		16
#define PULL_PAGES		8
#define PULL_MIGRATIONS		40

#define MUNMAP_PAGES		64
#define MUNMAP_ROUNDS		6

#define MPROTECT_PAGES		32
#define MPROTECT_TOGGLES	48

#define FORK_PAGES		64
#define FORK_ROUNDS		2
#define FORK_CHILDREN		4

static unsigned long page_size;
static unsigned long words_per_page;

/* ---- data ------------------------------------------------------------- */

/*
 * Every word of a buffer gets a value that depends on its index and on a
 * per-buffer seed, so a page that lands at the wrong address, an old copy of
 * a page and a page of another buffer all read back wrong.
 */
static unsigned long pattern(unsigned long seed, unsigned long word)
{
	return ((seed + 1) * 0x9e3779b97f4a7c15UL) ^ ((word + 1) * 0xbf58476d1ce4e5b9UL);
}

/*
 * Relaxed atomics keep every access to the shared buffers a single load or
 * store that the compiler can neither drop nor merge.
 */
static unsigned long load_word(const unsigned long *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void store_word(unsigned long *p, unsigned long val)
{
	__atomic_store_n(p, val, __ATOMIC_RELAXED);
}

static void fill(unsigned long *buf, unsigned long nwords, unsigned long seed)
{
	unsigned long i;

	for (i = 0; i < nwords; i++)
		store_word(&buf[i], pattern(seed, i));
}

/*
 * The first @nslots words of each page may be per-thread slots: a thread
 * that owns a slot writes the complement of the pattern there.
 */
enum slots {
	SLOTS_COMPLEMENT,
	SLOTS_IGNORED,
};

/*
 * First word of @data (buffer words @first .. @first + @nwords - 1) that does
 * not hold what a buffer filled for @seed should; -1 if they all do.
 */
static long first_bad(const unsigned long *data, unsigned long first,
		      unsigned long nwords, unsigned long seed,
		      unsigned int nslots, enum slots slots)
{
	unsigned long i, w, want;

	for (i = 0; i < nwords; i++) {
		w = first + i;
		want = pattern(seed, w);
		if (w % words_per_page < nslots) {
			if (slots == SLOTS_IGNORED)
				continue;
			want = ~want;
		}
		if (load_word(&data[i]) != want)
			return w;
	}
	return -1;
}

static void *map_pages(unsigned long npages)
{
	return mmap(NULL, npages * page_size, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

/* An anonymous mapping of @size bytes aligned to @size. */
static void *map_aligned(unsigned long size)
{
	char *p, *start;

	p = mmap(NULL, 2 * size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return p;
	start = (char *)(((unsigned long)p + size - 1) & ~(size - 1));
	if (start > p)
		munmap(p, start - p);
	munmap(start + size, p + size - start);
	return start;
}

/* @npages pages: a THP-aligned, THP-advised mapping if @thp. */
static unsigned long *map_buffer(unsigned long npages, bool thp)
{
	void *buf;

	if (!thp)
		return map_pages(npages);
	buf = map_aligned(npages * page_size);
	if (buf != MAP_FAILED)
		madvise(buf, npages * page_size, MADV_HUGEPAGE);
	return buf;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the device ------------------------------------------------------- */

static void device_path(char *path, size_t len, int unit)
{
	snprintf(path, len, "/dev/hmm_dmirror%d", unit);
}

/*
 * Migrate a buffer filled for @seed to the device behind @fd and check that
 * the device got every page, with the right data, as its own local memory.
 */
static void migrate_to_device_checked(struct __test_metadata *_metadata,
				      int fd, unsigned long *buf,
				      unsigned long npages, unsigned long seed,
				      unsigned char local)
{
	unsigned long nwords = npages * words_per_page;
	unsigned long cpages = 0, i;
	unsigned long *copy;
	unsigned char *prot;
	long bad;
	int ret;

	copy = map_pages(npages);
	ASSERT_NE(MAP_FAILED, copy);
	prot = malloc(npages);
	ASSERT_NE(NULL, prot);

	ret = dmirror_cmd(fd, HMM_DMIRROR_MIGRATE_TO_DEV, buf, copy, npages, &cpages);
	ASSERT_EQ(0, ret);
	ASSERT_EQ(npages, cpages);
	bad = first_bad(copy, 0, nwords, seed, 0, SLOTS_IGNORED);
	ASSERT_EQ(-1, bad)
		TH_LOG("device copy of word %ld is wrong", bad);

	ret = dmirror_cmd(fd, HMM_DMIRROR_SNAPSHOT, buf, prot, npages, NULL);
	ASSERT_EQ(0, ret);
	for (i = 0; i < npages; i++)
		ASSERT_EQ(local, prot[i] & PROT_TYPE_MASK)
			TH_LOG("page %lu is not on the device: 0x%x", i, prot[i]);

	free(prot);
	munmap(copy, npages * page_size);
}

/* Check that no page of the buffer is device memory any more. */
static void expect_system_memory(struct __test_metadata *_metadata, int fd,
				 void *buf, unsigned long npages)
{
	unsigned char *prot;
	unsigned long i;
	int ret;

	prot = malloc(npages);
	ASSERT_NE(NULL, prot);
	ret = dmirror_cmd(fd, HMM_DMIRROR_SNAPSHOT, buf, prot, npages, NULL);
	ASSERT_EQ(0, ret);
	for (i = 0; i < npages; i++)
		ASSERT_EQ(0, prot[i] & PROT_TYPE_MASK)
			TH_LOG("page %lu still device memory after a CPU fault: 0x%x",
			       i, prot[i]);
	free(prot);
}

/*
 * Read the buffer through the device behind @fd and check what it sees.
 */
static void expect_device_sees(struct __test_metadata *_metadata, int fd,
			       unsigned long *buf, unsigned long first_page,
			       unsigned long npages, unsigned long seed,
			       unsigned int nslots)
{
	unsigned long nwords = npages * words_per_page;
	unsigned long *copy;
	long bad;
	int ret;

	copy = map_pages(npages);
	ASSERT_NE(MAP_FAILED, copy);
	ret = dmirror_cmd(fd, HMM_DMIRROR_READ, buf + first_page * words_per_page,
			  copy, npages, NULL);
	ASSERT_EQ(0, ret);
	bad = first_bad(copy, first_page * words_per_page, nwords, seed, nslots,
			SLOTS_COMPLEMENT);
	ASSERT_EQ(-1, bad)
		TH_LOG("device read of word %ld is wrong", bad);
	munmap(copy, npages * page_size);
}

/* ---- threads ---------------------------------------------------------- */

struct crew;

struct worker {
	pthread_t thread;
	struct crew *crew;
	int id;
	int failures;
	char why[192];
};

/*
 * A set of threads that wait on one barrier with the main thread, so that
 * they all start racing at the same moment.
 */
struct crew {
	pthread_barrier_t go;
	struct worker *workers;
	int nthreads;
	int stop;
	void *test;
};

static void worker_fail(struct worker *w, const char *fmt, ...) __printf(2, 3);

/* Record a failure; the first one is kept for the report. */
static void worker_fail(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	if (w->failures++)
		return;
	va_start(ap, fmt);
	vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
}

static void worker_wait_start(struct worker *w)
{
	pthread_barrier_wait(&w->crew->go);
}

static bool crew_stopping(struct crew *crew)
{
	return __atomic_load_n(&crew->stop, __ATOMIC_ACQUIRE);
}

static void crew_stop(struct crew *crew)
{
	__atomic_store_n(&crew->stop, 1, __ATOMIC_RELEASE);
}

static int crew_start(struct crew *crew, int nthreads,
		      void *(*fn)(void *), void *test)
{
	int i, ret;

	memset(crew, 0, sizeof(*crew));
	crew->nthreads = nthreads;
	crew->test = test;
	crew->workers = calloc(nthreads, sizeof(*crew->workers));
	if (!crew->workers)
		return -ENOMEM;
	ret = pthread_barrier_init(&crew->go, NULL, nthreads + 1);
	if (ret)
		return -ret;
	for (i = 0; i < nthreads; i++) {
		crew->workers[i].crew = crew;
		crew->workers[i].id = i;
		ret = pthread_create(&crew->workers[i].thread, NULL, fn,
				     &crew->workers[i]);
		if (ret)
			return -ret;
	}
	return 0;
}

/* Let the crew go; returns the time it started. */
static double crew_release(struct crew *crew)
{
	pthread_barrier_wait(&crew->go);
	return now();
}

/* Join the crew by @deadline; returns how many threads are still running. */
static int crew_join(struct crew *crew, double deadline)
{
	struct timespec abs;
	double left;
	int i, late = 0;

	for (i = 0; i < crew->nthreads; i++) {
		clock_gettime(CLOCK_REALTIME, &abs);
		left = deadline - now();
		if (left < 0)
			left = 0;
		abs.tv_sec += (time_t)left;
		abs.tv_nsec += (long)((left - (time_t)left) * 1e9);
		if (abs.tv_nsec >= 1000000000L) {
			abs.tv_sec++;
			abs.tv_nsec -= 1000000000L;
		}
		if (pthread_timedjoin_np(crew->workers[i].thread, NULL, &abs))
			late++;
	}
	return late;
}

/*
 * Check that every thread of the crew finished by @deadline without a
 * failure. A thread still running is stuck (a livelock, or a fault that never
 * completes): the test fails, and its process exiting kills the thread.
 */
static void crew_finish(struct __test_metadata *_metadata, struct crew *crew,
			double deadline)
{
	int i, late, failures = 0;

	late = crew_join(crew, deadline);
	ASSERT_EQ(0, late)
		TH_LOG("%d of %d threads still running after %d s",
		       late, crew->nthreads, ROUND_BOUND_S);
	for (i = 0; i < crew->nthreads; i++) {
		struct worker *w = &crew->workers[i];

		failures += w->failures;
		EXPECT_EQ(0, w->failures)
			TH_LOG("thread %d: %d failures, first: %s", w->id,
			       w->failures, w->why);
	}
	ASSERT_EQ(0, failures);
	pthread_barrier_destroy(&crew->go);
	free(crew->workers);
}

/* Wait until *@counter reaches @target; false if @deadline passes first. */
static bool wait_for_count(const unsigned long *counter, unsigned long target,
			   double deadline)
{
	while (load_word(counter) < target) {
		if (now() > deadline)
			return false;
		usleep(100);
	}
	return true;
}

static void count_up(unsigned long *counter)
{
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

/* ---- writes that may fault -------------------------------------------- */

struct segv_recovery {
	sigjmp_buf env;
};

static __thread struct segv_recovery *segv_recover;

static void segv_handler(int sig)
{
	if (segv_recover)
		siglongjmp(segv_recover->env, 1);
	/* Not one of ours: die of it on return. */
	signal(sig, SIG_DFL);
}

/*
 * Store @val at @p unless the mapping is read-only; returns whether the
 * store happened.
 */
static bool try_store(unsigned long *p, unsigned long val)
{
	struct segv_recovery r;

	if (sigsetjmp(r.env, 1)) {
		segv_recover = NULL;
		return false;
	}
	segv_recover = &r;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	store_word(p, val);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	segv_recover = NULL;
	return true;
}

/* ---- fixture ---------------------------------------------------------- */

/* The two mirrors a test uses, and what its variant says about them. */
struct devices {
	int fd[2];
	int unit[2];
	unsigned char local;
	bool coherent;
};

FIXTURE(stress)
{
	struct devices dev;
};

FIXTURE_VARIANT(stress)
{
	int unit[2];
	/* The page type a snapshot reports for pages on the first device. */
	unsigned char local;
	/*
	 * CPU access to device-coherent memory does not fault, so only an
	 * explicit migration brings those pages back to system memory.
	 */
	bool coherent;
};

FIXTURE_VARIANT_ADD(stress, device_private)
{
	.unit = { 0, 1 },
	.local = HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
	.coherent = false,
};

FIXTURE_VARIANT_ADD(stress, device_coherent)
{
	.unit = { 2, 3 },
	.local = HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL,
	.coherent = true,
};

FIXTURE_SETUP(stress)
{
	struct sigaction sa = { .sa_handler = segv_handler };
	char path[64];
	int i;

	page_size = sysconf(_SC_PAGE_SIZE);
	words_per_page = page_size / sizeof(unsigned long);
	ASSERT_EQ(0, sigaction(SIGSEGV, &sa, NULL));

	self->dev.local = variant->local;
	self->dev.coherent = variant->coherent;
	/* boot.sh gives test_hmm the SPM ranges the coherent devices need. */
	for (i = 0; i < 2; i++) {
		self->dev.unit[i] = variant->unit[i];
		device_path(path, sizeof(path), variant->unit[i]);
		self->dev.fd[i] = open(path, O_RDWR);
		ASSERT_GE(self->dev.fd[i], 0)
			TH_LOG("cannot open %s: %s", path, strerror(errno));
	}
}

FIXTURE_TEARDOWN(stress)
{
	close(self->dev.fd[0]);
	close(self->dev.fd[1]);
}

/* ---- 1. many threads faulting device pages ---------------------------- */

struct fault_test {
	unsigned long *buf;
	unsigned long npages;
	unsigned long seed;
	/* Pages a thread touches: first, first + stride, ... */
	bool interleave;
	unsigned int nslots;
};

/*
 * Touch the slot of thread @slot in page @page: check a pattern word,
 * write the slot, read it back. Odd threads read first and even threads
 * write first, so read and write faults race for the same page.
 */
static void touch_page(struct worker *w, struct fault_test *t,
		       unsigned long page, unsigned int slot)
{
	unsigned long base = page * words_per_page;
	unsigned long probe = base + t->nslots + slot;
	unsigned long *slotp = &t->buf[base + slot];
	unsigned long want = ~pattern(t->seed, base + slot);
	unsigned long got;

	if (w->id & 1) {
		got = load_word(&t->buf[probe]);
		if (got != pattern(t->seed, probe))
			worker_fail(w, "page %lu word %lu: read 0x%lx", page, probe, got);
		store_word(slotp, want);
	} else {
		store_word(slotp, want);
		got = load_word(&t->buf[probe]);
		if (got != pattern(t->seed, probe))
			worker_fail(w, "page %lu word %lu: read 0x%lx", page, probe, got);
	}
	got = load_word(slotp);
	if (got != want)
		worker_fail(w, "page %lu: own write lost, slot reads 0x%lx", page, got);
}

static void *fault_worker(void *arg)
{
	struct worker *w = arg;
	struct fault_test *t = w->crew->test;
	unsigned long p;

	worker_wait_start(w);
	if (t->interleave) {
		for (p = w->id; p < t->npages; p += w->crew->nthreads)
			touch_page(w, t, p, 0);
	} else {
		for (p = 0; p < t->npages; p++)
			touch_page(w, t, p, w->id);
	}
	return NULL;
}

/*
 * One round: a fresh buffer on the device, then @nthreads threads released
 * at once onto its pages. Returns how long the threads took.
 */
static double fault_round(struct __test_metadata *_metadata,
			  struct devices *dev, struct fault_test *t, int nthreads)
{
	unsigned long nwords = t->npages * words_per_page;
	struct crew crew;
	double start;
	long bad;

	fill(t->buf, nwords, t->seed);
	migrate_to_device_checked(_metadata, dev->fd[0], t->buf, t->npages,
				  t->seed, dev->local);

	ASSERT_EQ(0, crew_start(&crew, nthreads, fault_worker, t));
	start = crew_release(&crew);
	crew_finish(_metadata, &crew, start + ROUND_BOUND_S);

	bad = first_bad(t->buf, 0, nwords, t->seed, t->nslots, SLOTS_COMPLEMENT);
	ASSERT_EQ(-1, bad)
		TH_LOG("word %ld: 0x%lx", bad, t->buf[bad]);
	if (!dev->coherent)
		expect_system_memory(_metadata, dev->fd[0], t->buf, t->npages);
	expect_device_sees(_metadata, dev->fd[1], t->buf, 0, t->npages,
			   t->seed, t->nslots);
	return now() - start;
}

/*
 * All threads hit page 0 of a small device buffer at the same moment, then
 * page 1, and so on; each writes its own word of every page.
 */
TEST_F_TIMEOUT(stress, fault_same_page, TEST_BOUND_S)
{
	struct fault_test t = {
		.npages = SAME_PAGE_PAGES,
		.nslots = SAME_PAGE_THREADS,
	};
	double took, slowest = 0, total = 0;
	int round;

	for (round = 0; round < SAME_PAGE_ROUNDS; round++) {
		t.buf = map_pages(t.npages);
		ASSERT_NE(MAP_FAILED, t.buf);
		t.seed = round;
		took = fault_round(_metadata, &self->dev, &t, SAME_PAGE_THREADS);
		munmap(t.buf, t.npages * page_size);
		total += took;
		if (took > slowest)
			slowest = took;
	}
	TH_LOG("%d rounds of %d threads on %d pages: slowest %.3f s, total %.3f s",
	       SAME_PAGE_ROUNDS, SAME_PAGE_THREADS, SAME_PAGE_PAGES, slowest, total);
}

/*
 * Threads fault different pages of one THP-sized device region at once:
 * thread i takes pages i, i + n, ..., so neighbouring pages (same page
 * table, same former huge page) fault concurrently.
 */
TEST_F_TIMEOUT(stress, fault_thp_region, TEST_BOUND_S)
{
	unsigned long npages;
	struct fault_test t = {
		.interleave = true,
		.nslots = 1,
	};
	double took, slowest = 0, total = 0;
	unsigned char prot;
	int round, huge = 0;

	npages = THP_SIZE / page_size;
	t.npages = npages;
	for (round = 0; round < THP_ROUNDS; round++) {
		t.buf = map_aligned(THP_SIZE);
		ASSERT_NE(MAP_FAILED, t.buf);
		ASSERT_EQ(0, madvise(t.buf, THP_SIZE, MADV_HUGEPAGE));
		t.seed = 100 + round;
		/* Fill first so that the snapshot sees how it was mapped. */
		fill(t.buf, npages * words_per_page, t.seed);
		ASSERT_EQ(0, dmirror_cmd(self->dev.fd[1], HMM_DMIRROR_SNAPSHOT,
					 t.buf, &prot, 1, NULL));
		if (prot & HMM_DMIRROR_PROT_PMD)
			huge++;
		took = fault_round(_metadata, &self->dev, &t, THP_THREADS);
		munmap(t.buf, THP_SIZE);
		total += took;
		if (took > slowest)
			slowest = took;
	}
	TH_LOG("%d rounds (%d started as a huge page) of %d threads: slowest %.3f s, total %.3f s",
	       THP_ROUNDS, huge, THP_THREADS, slowest, total);
}

/* ---- 1c. faulting while the device pulls the pages back --------------- */

enum {
	PULL_MIGRATOR,
	PULL_DEVICE_READER,
	PULL_FIRST_FAULTER,
};

struct pull_test {
	unsigned long *buf;
	unsigned long *bounce[2];
	unsigned long seed;
	int fd[2];
	bool coherent;
	/* What each faulting thread last wrote to its slot of each page. */
	unsigned long last[PULL_THREADS][PULL_PAGES];
	unsigned long migrations;
	unsigned long device_reads;
};

static void pull_migrate(struct worker *w, struct pull_test *t)
{
	int i, ret;

	for (i = 0; i < PULL_MIGRATIONS; i++) {
		/* A page that is being faulted at that moment may stay behind. */
		ret = dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_DEV, t->buf,
				  t->bounce[0], PULL_PAGES, NULL);
		if (ret && ret != -ENOENT)
			worker_fail(w, "migrate to device: %d", ret);
		if (t->coherent && (i & 1)) {
			ret = dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_SYS,
					  t->buf, NULL, PULL_PAGES, NULL);
			if (ret)
				worker_fail(w, "migrate to system: %d", ret);
		}
		count_up(&t->migrations);
	}
	crew_stop(w->crew);
}

/*
 * The second device reads the buffer while it moves; on a private device
 * this faults the first device's pages back to system memory.
 */
static void pull_device_read(struct worker *w, struct pull_test *t)
{
	long bad;
	int ret;

	do {
		ret = dmirror_cmd(t->fd[1], HMM_DMIRROR_READ, t->buf,
				  t->bounce[1], PULL_PAGES, NULL);
		if (!ret) {
			bad = first_bad(t->bounce[1], 0, PULL_PAGES * words_per_page,
					t->seed, PULL_THREADS, SLOTS_IGNORED);
			if (bad >= 0)
				worker_fail(w, "device read word %ld wrong", bad);
		} else if (ret != -EBUSY) {
			worker_fail(w, "device read: %d", ret);
		}
		count_up(&t->device_reads);
	} while (!crew_stopping(w->crew));
}

/*
 * Check a pattern word and the thread's own slot of every page, then write
 * a new value to the slot; a slot that does not read back what the thread
 * wrote last lost a write in a migration.
 */
static void pull_fault(struct worker *w, struct pull_test *t, unsigned int slot)
{
	unsigned long pass = 0, i, page, base, probe, got;
	unsigned long *slotp;

	do {
		for (i = 0; i < PULL_PAGES; i++) {
			/* Groups of four threads hit the same page at once. */
			page = (i + slot / 4) % PULL_PAGES;
			base = page * words_per_page;
			probe = base + PULL_THREADS + slot;
			got = load_word(&t->buf[probe]);
			if (got != pattern(t->seed, probe))
				worker_fail(w, "page %lu word %lu: read 0x%lx",
					    page, probe, got);
			slotp = &t->buf[base + slot];
			got = load_word(slotp);
			if (got != t->last[slot][page])
				worker_fail(w, "page %lu: slot 0x%lx, wrote 0x%lx",
					    page, got, t->last[slot][page]);
			t->last[slot][page] = ~pattern(t->seed, base + slot) - pass;
			store_word(slotp, t->last[slot][page]);
		}
		pass++;
	} while (!crew_stopping(w->crew));
}

static void *pull_worker(void *arg)
{
	struct worker *w = arg;
	struct pull_test *t = w->crew->test;

	worker_wait_start(w);
	switch (w->id) {
	case PULL_MIGRATOR:
		pull_migrate(w, t);
		break;
	case PULL_DEVICE_READER:
		pull_device_read(w, t);
		break;
	default:
		pull_fault(w, t, w->id - PULL_FIRST_FAULTER);
		break;
	}
	return NULL;
}

/*
 * Threads keep faulting the pages of a small buffer while the first device
 * keeps migrating them back (and, for coherent memory, out again) and the
 * second device keeps reading them.
 */
TEST_F_TIMEOUT(stress, fault_while_migrating_to_device, TEST_BOUND_S)
{
	unsigned long nwords = PULL_PAGES * words_per_page;
	struct pull_test *t;
	unsigned long page;
	struct crew crew;
	double start;
	unsigned int slot;
	long bad;
	int i;

	t = calloc(1, sizeof(*t));
	ASSERT_NE(NULL, t);
	t->buf = map_pages(PULL_PAGES);
	ASSERT_NE(MAP_FAILED, t->buf);
	for (i = 0; i < 2; i++) {
		t->bounce[i] = map_pages(PULL_PAGES);
		ASSERT_NE(MAP_FAILED, t->bounce[i]);
		t->fd[i] = self->dev.fd[i];
	}
	t->coherent = variant->coherent;
	t->seed = 200;
	fill(t->buf, nwords, t->seed);
	for (slot = 0; slot < PULL_THREADS; slot++)
		for (page = 0; page < PULL_PAGES; page++)
			t->last[slot][page] = pattern(t->seed, page * words_per_page + slot);
	migrate_to_device_checked(_metadata, self->dev.fd[0], t->buf, PULL_PAGES,
				  t->seed, variant->local);

	ASSERT_EQ(0, crew_start(&crew, PULL_FIRST_FAULTER + PULL_THREADS,
				pull_worker, t));
	start = crew_release(&crew);
	crew_finish(_metadata, &crew, start + ROUND_BOUND_S);
	TH_LOG("%lu migrations, %lu device reads, %d faulting threads: %.3f s",
	       t->migrations, t->device_reads, PULL_THREADS, now() - start);

	bad = first_bad(t->buf, 0, nwords, t->seed, PULL_THREADS, SLOTS_IGNORED);
	ASSERT_EQ(-1, bad)
		TH_LOG("word %ld: 0x%lx", bad, t->buf[bad]);
	for (slot = 0; slot < PULL_THREADS; slot++)
		for (page = 0; page < PULL_PAGES; page++)
			ASSERT_EQ(t->last[slot][page],
				  t->buf[page * words_per_page + slot])
				TH_LOG("page %lu slot %u lost a write", page, slot);
	ASSERT_EQ(0, dmirror_cmd(self->dev.fd[1], HMM_DMIRROR_READ, t->buf,
				 t->bounce[1], PULL_PAGES, NULL));
	ASSERT_EQ(0, memcmp(t->bounce[1], t->buf, PULL_PAGES * page_size));
}

/* ---- 2. migration racing munmap --------------------------------------- */

enum {
	MUNMAP_MIGRATOR,
	MUNMAP_DEVICE_READER,
	MUNMAP_CPU_READER,
};

struct page_range {
	unsigned long first;
	unsigned long npages;
};

struct munmap_test {
	unsigned long *buf;
	unsigned long npages;
	unsigned long *bounce[2];
	unsigned long seed;
	int fd[2];
	struct page_range hole;
	/* What stays mapped: up to two pieces around the hole. */
	struct page_range keep[2];
	int nkeep;
	/* Set once munmap() returned: from then on the hole must be gone. */
	int unmapped;
	unsigned long migrations;
	unsigned long device_reads;
};

static bool hole_is_gone(struct munmap_test *t)
{
	return __atomic_load_n(&t->unmapped, __ATOMIC_ACQUIRE);
}

static unsigned long *page_addr(struct munmap_test *t, unsigned long page)
{
	return t->buf + page * words_per_page;
}

/*
 * A command on the whole buffer fails once part of it is unmapped:
 * migration finds no VMA (-EINVAL), a device read cannot fault the hole in
 * (-EFAULT). Before that, migration to the device may leave pages behind
 * (-ENOENT) and the device read may time out retrying (-EBUSY).
 */
static void check_whole_buffer_cmd(struct worker *w, const char *what, int ret,
				   bool gone, int gone_err, int busy_err)
{
	if (gone) {
		if (ret != gone_err)
			worker_fail(w, "%s after munmap: %d, want %d", what, ret,
				    gone_err);
		return;
	}
	if (ret && ret != gone_err && ret != busy_err)
		worker_fail(w, "%s: %d", what, ret);
}

static void munmap_migrate(struct worker *w, struct munmap_test *t)
{
	struct page_range *k;
	bool gone;
	int i, ret;

	do {
		gone = hole_is_gone(t);
		ret = dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_DEV, t->buf,
				  t->bounce[0], t->npages, NULL);
		check_whole_buffer_cmd(w, "migrate to device", ret, gone,
				       -EINVAL, -ENOENT);
		ret = dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_SYS, t->buf,
				  NULL, t->npages, NULL);
		check_whole_buffer_cmd(w, "migrate to system", ret, gone,
				       -EINVAL, -EINVAL);

		/* The pieces that stay mapped must keep migrating. */
		for (i = 0; i < t->nkeep; i++) {
			k = &t->keep[i];
			ret = dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_DEV,
					  page_addr(t, k->first), t->bounce[0],
					  k->npages, NULL);
			if (ret && ret != -ENOENT)
				worker_fail(w, "migrate pages %lu+%lu to device: %d",
					    k->first, k->npages, ret);
			ret = dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_SYS,
					  page_addr(t, k->first), NULL,
					  k->npages, NULL);
			if (ret)
				worker_fail(w, "migrate pages %lu+%lu to system: %d",
					    k->first, k->npages, ret);
		}
		count_up(&t->migrations);
	} while (!crew_stopping(w->crew));
}

static void munmap_device_read(struct worker *w, struct munmap_test *t)
{
	struct page_range *k;
	bool gone;
	long bad;
	int i, ret;

	do {
		gone = hole_is_gone(t);
		ret = dmirror_cmd(t->fd[1], HMM_DMIRROR_READ, t->buf,
				  t->bounce[1], t->npages, NULL);
		check_whole_buffer_cmd(w, "device read", ret, gone, -EFAULT, -EBUSY);
		if (!ret) {
			bad = first_bad(t->bounce[1], 0, t->npages * words_per_page,
					t->seed, 0, SLOTS_IGNORED);
			if (bad >= 0)
				worker_fail(w, "device read word %ld wrong", bad);
		}
		for (i = 0; i < t->nkeep; i++) {
			k = &t->keep[i];
			ret = dmirror_cmd(t->fd[1], HMM_DMIRROR_READ,
					  page_addr(t, k->first), t->bounce[1],
					  k->npages, NULL);
			if (ret == -EBUSY)
				continue;
			if (ret) {
				worker_fail(w, "device read of pages %lu+%lu: %d",
					    k->first, k->npages, ret);
				continue;
			}
			bad = first_bad(t->bounce[1], k->first * words_per_page,
					k->npages * words_per_page, t->seed, 0,
					SLOTS_IGNORED);
			if (bad >= 0)
				worker_fail(w, "device read word %ld wrong", bad);
		}
		count_up(&t->device_reads);
	} while (!crew_stopping(w->crew));
}

/* CPU reads of the pieces that stay mapped fault their pages back. */
static void munmap_cpu_read(struct worker *w, struct munmap_test *t)
{
	struct page_range *k;
	long bad;
	int i;

	do {
		for (i = 0; i < t->nkeep; i++) {
			k = &t->keep[i];
			bad = first_bad(page_addr(t, k->first), k->first * words_per_page,
					k->npages * words_per_page, t->seed, 0,
					SLOTS_IGNORED);
			if (bad >= 0)
				worker_fail(w, "CPU read word %ld wrong", bad);
		}
	} while (!crew_stopping(w->crew));
}

static void *munmap_worker(void *arg)
{
	struct worker *w = arg;
	struct munmap_test *t = w->crew->test;

	worker_wait_start(w);
	switch (w->id) {
	case MUNMAP_MIGRATOR:
		munmap_migrate(w, t);
		break;
	case MUNMAP_DEVICE_READER:
		munmap_device_read(w, t);
		break;
	case MUNMAP_CPU_READER:
		munmap_cpu_read(w, t);
		break;
	}
	return NULL;
}

/* Round @round unmaps the middle, the first or the second half. */
static void munmap_pick_hole(struct munmap_test *t, int round, bool whole)
{
	const unsigned long n = t->npages;

	t->nkeep = 0;
	if (whole) {
		t->hole = (struct page_range){ 0, n };
		return;
	}
	switch (round % 3) {
	case 0:
		t->hole = (struct page_range){ n / 4, n / 2 };
		t->keep[t->nkeep++] = (struct page_range){ 0, n / 4 };
		t->keep[t->nkeep++] = (struct page_range){ 3 * n / 4, n / 4 };
		break;
	case 1:
		t->hole = (struct page_range){ 0, n / 2 };
		t->keep[t->nkeep++] = (struct page_range){ n / 2, n / 2 };
		break;
	default:
		t->hole = (struct page_range){ n / 2, n / 2 };
		t->keep[t->nkeep++] = (struct page_range){ 0, n / 2 };
		break;
	}
}

/* After the race: the hole is gone for both devices, the rest is intact. */
static void munmap_check_after(struct __test_metadata *_metadata,
			       struct munmap_test *t)
{
	unsigned char vec;
	struct page_range *k;
	long bad;
	int i, ret;

	for (i = 0; i < t->nkeep; i++) {
		k = &t->keep[i];
		bad = first_bad(page_addr(t, k->first), k->first * words_per_page,
				k->npages * words_per_page, t->seed, 0, SLOTS_IGNORED);
		ASSERT_EQ(-1, bad)
			TH_LOG("word %ld of a page that stayed mapped is wrong", bad);
		expect_device_sees(_metadata, t->fd[1], t->buf, k->first,
				   k->npages, t->seed, 0);
	}
	for (i = 0; i < 2; i++) {
		ret = dmirror_cmd(t->fd[i], HMM_DMIRROR_READ,
				  page_addr(t, t->hole.first), t->bounce[1],
				  t->hole.npages, NULL);
		ASSERT_EQ(-EFAULT, ret)
			TH_LOG("device %d still reads unmapped memory", i);
	}
	ret = dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_DEV,
			  page_addr(t, t->hole.first), t->bounce[0],
			  t->hole.npages, NULL);
	ASSERT_EQ(-EINVAL, ret);
	ASSERT_EQ(-1, mincore(page_addr(t, t->hole.first), page_size, &vec));
	ASSERT_EQ(ENOMEM, errno);
}

/*
 * munmap() of part or all of a device buffer of @npages pages (a THP if
 * @thp) while one device migrates it back and forth and the other reads it.
 * The round's munmap lands after 0, 1 or 2 migration cycles, so it hits
 * different phases of the migration. Returns in how many rounds the buffer
 * was mapped by a PMD once on the device.
 */
static int munmap_race(struct __test_metadata *_metadata, struct devices *dev,
		       unsigned long npages, bool thp, bool whole)
{
	unsigned long nwords = npages * words_per_page;
	double start, took, slowest = 0;
	unsigned long migrations, reads;
	struct munmap_test *t;
	unsigned char prot;
	struct crew crew;
	int round, i, huge = 0;

	t = calloc(1, sizeof(*t));
	ASSERT_NE(NULL, t);
	t->npages = npages;
	for (i = 0; i < 2; i++) {
		t->bounce[i] = map_pages(npages);
		ASSERT_NE(MAP_FAILED, t->bounce[i]);
		t->fd[i] = dev->fd[i];
	}

	for (round = 0; round < MUNMAP_ROUNDS; round++) {
		t->buf = map_buffer(npages, thp);
		ASSERT_NE(MAP_FAILED, t->buf);
		t->seed = 400 + round;
		t->unmapped = 0;
		t->migrations = 0;
		t->device_reads = 0;
		munmap_pick_hole(t, round, whole);
		fill(t->buf, nwords, t->seed);
		migrate_to_device_checked(_metadata, dev->fd[0], t->buf,
					  npages, t->seed, dev->local);
		ASSERT_EQ(0, dmirror_cmd(dev->fd[0], HMM_DMIRROR_SNAPSHOT,
					 t->buf, &prot, 1, NULL));
		if (prot & HMM_DMIRROR_PROT_PMD)
			huge++;

		ASSERT_EQ(0, crew_start(&crew, whole ? 2 : 3, munmap_worker, t));
		start = crew_release(&crew);
		ASSERT_TRUE(wait_for_count(&t->migrations, round % 3,
					   start + ROUND_BOUND_S));
		ASSERT_EQ(0, munmap(page_addr(t, t->hole.first),
				    t->hole.npages * page_size));
		__atomic_store_n(&t->unmapped, 1, __ATOMIC_RELEASE);
		/* Let both devices run into the hole a few times. */
		migrations = load_word(&t->migrations);
		reads = load_word(&t->device_reads);
		ASSERT_TRUE(wait_for_count(&t->migrations, migrations + 2,
					   start + ROUND_BOUND_S));
		ASSERT_TRUE(wait_for_count(&t->device_reads, reads + 2,
					   start + ROUND_BOUND_S));
		crew_stop(&crew);
		crew_finish(_metadata, &crew, start + ROUND_BOUND_S);
		took = now() - start;
		if (took > slowest)
			slowest = took;

		munmap_check_after(_metadata, t);
		for (i = 0; i < t->nkeep; i++)
			munmap(page_addr(t, t->keep[i].first),
			       t->keep[i].npages * page_size);
	}
	TH_LOG("%d rounds (%d with a device PMD): slowest %.3f s",
	       MUNMAP_ROUNDS, huge, slowest);
	return huge;
}

TEST_F_TIMEOUT(stress, migrate_vs_munmap_part, TEST_BOUND_S)
{
	munmap_race(_metadata, &self->dev, MUNMAP_PAGES, false, false);
}

TEST_F_TIMEOUT(stress, migrate_vs_munmap_all, TEST_BOUND_S)
{
	munmap_race(_metadata, &self->dev, MUNMAP_PAGES, false, true);
}

/*
 * The same with a THP that the driver migrates whole: a munmap() of half
 * of it splits its PMD (a device-private PMD, a PMD migration entry or a
 * THP, depending on the moment) while the migration walks, unmaps or maps
 * it back. Device-private memory must have been mapped by a PMD, or the
 * test would not test that; device-coherent memory migrates page by page.
 */
TEST_F_TIMEOUT(stress, migrate_vs_munmap_part_thp, TEST_BOUND_S)
{
	int huge = munmap_race(_metadata, &self->dev, THP_SIZE / page_size,
			       true, false);

	if (!self->dev.coherent)
		ASSERT_EQ(MUNMAP_ROUNDS, huge);
}

TEST_F_TIMEOUT(stress, migrate_vs_munmap_all_thp, TEST_BOUND_S)
{
	int huge = munmap_race(_metadata, &self->dev, THP_SIZE / page_size,
			       true, true);

	if (!self->dev.coherent)
		ASSERT_EQ(MUNMAP_ROUNDS, huge);
}

/* ---- 3. migration racing mprotect ------------------------------------- */

enum {
	MPROT_MIGRATOR,
	MPROT_TOGGLER,
	MPROT_CPU_WRITER,
	MPROT_DEVICE_WRITER,
	MPROT_THREADS,
};

/*
 * Even pages belong to the CPU writer, which writes word 0; odd pages to the
 * device writer, which rewrites the whole page with a new pattern seed.
 */
struct mprotect_test {
	unsigned long *buf;
	unsigned long npages;
	unsigned long *bounce[2];
	unsigned long seed;
	int fd[2];
	bool coherent;
	/* Even page: value of word 0. Odd page: seed of its pattern. */
	unsigned long *last;
	/* For snapshots of the buffer. */
	unsigned char *prot;
	unsigned long migrations;
	unsigned long cpu_writes, cpu_refused;
	unsigned long device_writes, device_refused;
};

static unsigned long *mprot_page(struct mprotect_test *t, unsigned long page)
{
	return t->buf + page * words_per_page;
}

/*
 * First word of @data (a copy of the whole buffer, or the buffer) that does
 * not hold what the writers last wrote; -1 if all do.
 */
static long mprotect_first_bad(struct mprotect_test *t, const unsigned long *data)
{
	unsigned long page, w0;
	long bad;

	for (page = 0; page < t->npages; page++) {
		const unsigned long *p = data + page * words_per_page;

		w0 = page * words_per_page;
		if (page & 1) {
			bad = first_bad(p, w0, words_per_page, t->last[page], 0,
					SLOTS_IGNORED);
		} else {
			if (load_word(p) != t->last[page])
				return w0;
			bad = first_bad(p + 1, w0 + 1, words_per_page - 1,
					t->seed, 0, SLOTS_IGNORED);
		}
		if (bad >= 0)
			return bad;
	}
	return -1;
}

static void mprot_migrate(struct worker *w, struct mprotect_test *t)
{
	int ret;

	do {
		ret = dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_DEV, t->buf,
				  t->bounce[0], t->npages, NULL);
		if (ret && ret != -ENOENT)
			worker_fail(w, "migrate to device: %d", ret);
		ret = dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_SYS, t->buf,
				  NULL, t->npages, NULL);
		if (ret)
			worker_fail(w, "migrate to system: %d", ret);
		count_up(&t->migrations);
	} while (!crew_stopping(w->crew));
}

/*
 * Toggle the whole buffer, or one half of it (splitting the VMA), between
 * read-only and read-write, one toggle per migration cycle; end read-write.
 */
static void mprot_toggle(struct worker *w, struct mprotect_test *t)
{
	unsigned long half = t->npages / 2 * page_size;
	char *start;
	size_t len;
	int i;

	for (i = 0; i < MPROTECT_TOGGLES; i++) {
		start = (char *)t->buf;
		len = 2 * half;
		if (!(i & 1) && (i / 2) % 3) {
			len = half;
			if ((i / 2) % 3 == 2)
				start += half;
		}
		if (mprotect(start, len, (i & 1) ? PROT_READ | PROT_WRITE : PROT_READ))
			worker_fail(w, "mprotect: %s", strerror(errno));
		if (!wait_for_count(&t->migrations, i / 2, now() + ROUND_BOUND_S))
			worker_fail(w, "migrations stopped at %lu",
				    load_word(&t->migrations));
	}
	crew_stop(w->crew);
}

/*
 * Write a new value to word 0 of every even page. A write that faults (the
 * page is read-only just now) must leave the old value; one that succeeds
 * must stay. Once the toggler is done the buffer is read-write and a last
 * pass must not fault at all.
 */
static void mprot_cpu_write(struct worker *w, struct mprotect_test *t)
{
	unsigned long page, got, val, gen = 0;
	bool last_pass;

	do {
		last_pass = crew_stopping(w->crew);
		for (page = 0; page < t->npages; page += 2) {
			unsigned long *word = mprot_page(t, page);

			got = load_word(word);
			if (got != t->last[page])
				worker_fail(w, "page %lu reads 0x%lx, last write 0x%lx",
					    page, got, t->last[page]);
			val = ~pattern(t->seed, page * words_per_page) + ++gen;
			if (try_store(word, val)) {
				t->last[page] = val;
				t->cpu_writes++;
			} else {
				t->cpu_refused++;
				if (last_pass)
					worker_fail(w, "page %lu read-only after the last mprotect",
						    page);
			}
			got = load_word(word);
			if (got != t->last[page])
				worker_fail(w, "page %lu reads 0x%lx right after writing 0x%lx",
					    page, got, t->last[page]);
		}
	} while (!last_pass);
}

/*
 * Rewrite every odd page through the second device. The device may be
 * refused (-EPERM on a read-only mapping, -EBUSY when its fault kept being
 * invalidated); a write it reports done must be what the CPU reads.
 */
static void mprot_device_write(struct worker *w, struct mprotect_test *t)
{
	unsigned long page, i, seed, gen = 0;
	bool last_pass;
	long bad;
	int ret;

	do {
		last_pass = crew_stopping(w->crew);
		for (page = 1; page < t->npages; page += 2) {
			seed = t->seed + 1000 + ++gen;
			for (i = 0; i < words_per_page; i++)
				t->bounce[1][i] = pattern(seed, page * words_per_page + i);
			ret = dmirror_cmd(t->fd[1], HMM_DMIRROR_WRITE,
					  mprot_page(t, page), t->bounce[1], 1, NULL);
			if (!ret) {
				t->last[page] = seed;
				t->device_writes++;
			} else if ((ret == -EPERM || ret == -EBUSY) && !last_pass) {
				t->device_refused++;
			} else {
				worker_fail(w, "page %lu: device write %d%s", page, ret,
					    last_pass ? " after mprotect ended" : "");
			}
			bad = first_bad(mprot_page(t, page), page * words_per_page,
					words_per_page, t->last[page], 0, SLOTS_IGNORED);
			if (bad >= 0)
				worker_fail(w, "page %lu: word %ld wrong after device write %d",
					    page, bad, ret);
		}
	} while (!last_pass);
}

static void *mprotect_worker(void *arg)
{
	struct worker *w = arg;
	struct mprotect_test *t = w->crew->test;

	worker_wait_start(w);
	switch (w->id) {
	case MPROT_MIGRATOR:
		mprot_migrate(w, t);
		break;
	case MPROT_TOGGLER:
		mprot_toggle(w, t);
		break;
	case MPROT_CPU_WRITER:
		mprot_cpu_write(w, t);
		break;
	case MPROT_DEVICE_WRITER:
		mprot_device_write(w, t);
		break;
	}
	return NULL;
}

/*
 * The device that holds device-private pages sees their CPU entries, not a
 * fault result: hmm_range_fault() reports such a page without write
 * permission instead of failing a write request, and test_hmm then warns.
 * Ask that device for its view of the entries instead of writing through it.
 */
static void mprotect_expect_read_only_on_device(struct __test_metadata *_metadata,
						struct mprotect_test *t)
{
	unsigned char *prot = t->prot;
	unsigned long page;

	ASSERT_EQ(0, dmirror_cmd(t->fd[0], HMM_DMIRROR_SNAPSHOT, t->buf, prot,
				 t->npages, NULL));
	for (page = 0; page < t->npages; page++) {
		ASSERT_EQ(HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
			  prot[page] & PROT_TYPE_MASK) {
			TH_LOG("page %lu left the device: 0x%x", page, prot[page]);
		}
		ASSERT_FALSE(prot[page] & HMM_DMIRROR_PROT_WRITE) {
			TH_LOG("page %lu writable by its device while read-only",
			       page);
		}
	}
}

/*
 * With nothing racing any more: a read-only buffer must refuse writes from
 * the CPU and from both devices, even though the first device holds the
 * pages (a device mapping left writable by a migration would let it write),
 * and accept them again once read-write.
 */
static void mprotect_check_settled(struct __test_metadata *_metadata,
				   struct mprotect_test *t)
{
	unsigned long bytes = t->npages * page_size;
	unsigned long cpages = 0, i;
	long bad;
	int dev;

	/* Coherent pages the last racing migration left behind come back. */
	ASSERT_EQ(0, dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_SYS, t->buf,
				 NULL, t->npages, NULL));
	ASSERT_EQ(0, dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_DEV, t->buf,
				 t->bounce[0], t->npages, &cpages));
	ASSERT_EQ(t->npages, cpages);
	bad = mprotect_first_bad(t, t->bounce[0]);
	ASSERT_EQ(-1, bad)
		TH_LOG("device copy of word %ld is wrong", bad);

	ASSERT_EQ(0, mprotect(t->buf, bytes, PROT_READ));
	for (i = 0; i < words_per_page; i++)
		t->bounce[1][i] = ~t->bounce[0][words_per_page + i];
	for (dev = 0; dev < 2; dev++) {
		if (dev == 0 && !t->coherent) {
			mprotect_expect_read_only_on_device(_metadata, t);
			continue;
		}
		ASSERT_EQ(-EPERM, dmirror_cmd(t->fd[dev], HMM_DMIRROR_WRITE,
					      mprot_page(t, 1), t->bounce[1], 1, NULL)) {
			TH_LOG("device %d wrote to a read-only page", dev);
		}
	}
	ASSERT_FALSE(try_store(mprot_page(t, 0), 0));
	bad = mprotect_first_bad(t, t->buf);
	ASSERT_EQ(-1, bad)
		TH_LOG("word %ld changed while read-only", bad);

	ASSERT_EQ(0, mprotect(t->buf, bytes, PROT_READ | PROT_WRITE));
	ASSERT_TRUE(try_store(mprot_page(t, 0), 0));
	t->last[0] = 0;
	for (i = 0; i < words_per_page; i++)
		t->bounce[1][i] = pattern(t->seed + 1, words_per_page + i);
	ASSERT_EQ(0, dmirror_cmd(t->fd[0], HMM_DMIRROR_WRITE, mprot_page(t, 1),
				 t->bounce[1], 1, NULL));
	t->last[1] = t->seed + 1;
	bad = mprotect_first_bad(t, t->buf);
	ASSERT_EQ(-1, bad)
		TH_LOG("word %ld wrong after the last writes", bad);
}

/*
 * Migration to the device and back of a buffer of @npages pages (a THP if
 * @thp) races mprotect() toggling it between read-only and read-write,
 * while the CPU and the second device write to it. Returns whether the
 * buffer was mapped by a PMD once on the device.
 */
static bool mprotect_race(struct __test_metadata *_metadata,
			  struct devices *dev, unsigned long npages, bool thp)
{
	unsigned long nwords = npages * words_per_page;
	struct mprotect_test *t;
	unsigned long page;
	struct crew crew;
	double start;
	bool huge;
	long bad;
	int i;

	t = calloc(1, sizeof(*t));
	ASSERT_NE(NULL, t);
	t->npages = npages;
	t->last = calloc(npages, sizeof(*t->last));
	ASSERT_NE(NULL, t->last);
	t->prot = malloc(npages);
	ASSERT_NE(NULL, t->prot);
	t->buf = map_buffer(npages, thp);
	ASSERT_NE(MAP_FAILED, t->buf);
	for (i = 0; i < 2; i++) {
		t->bounce[i] = map_pages(npages);
		ASSERT_NE(MAP_FAILED, t->bounce[i]);
		t->fd[i] = dev->fd[i];
	}
	t->seed = 500;
	t->coherent = dev->coherent;
	fill(t->buf, nwords, t->seed);
	for (page = 0; page < npages; page++)
		t->last[page] = (page & 1) ? t->seed :
			pattern(t->seed, page * words_per_page);
	migrate_to_device_checked(_metadata, dev->fd[0], t->buf, npages,
				  t->seed, dev->local);
	ASSERT_EQ(0, dmirror_cmd(dev->fd[0], HMM_DMIRROR_SNAPSHOT, t->buf,
				 t->prot, 1, NULL));
	huge = t->prot[0] & HMM_DMIRROR_PROT_PMD;

	ASSERT_EQ(0, crew_start(&crew, MPROT_THREADS, mprotect_worker, t));
	start = crew_release(&crew);
	crew_finish(_metadata, &crew, start + ROUND_BOUND_S);
	TH_LOG("%d toggles, %lu migrations: %.3f s", MPROTECT_TOGGLES,
	       t->migrations, now() - start);
	TH_LOG("CPU writes: %lu done, %lu refused; device writes: %lu done, %lu refused",
	       t->cpu_writes, t->cpu_refused, t->device_writes,
	       t->device_refused);

	bad = mprotect_first_bad(t, t->buf);
	ASSERT_EQ(-1, bad)
		TH_LOG("word %ld: 0x%lx", bad, t->buf[bad]);
	ASSERT_EQ(0, dmirror_cmd(dev->fd[0], HMM_DMIRROR_READ, t->buf,
				 t->bounce[0], npages, NULL));
	bad = mprotect_first_bad(t, t->bounce[0]);
	ASSERT_EQ(-1, bad)
		TH_LOG("device read of word %ld is wrong", bad);
	mprotect_check_settled(_metadata, t);
	for (i = 0; i < 2; i++)
		munmap(t->bounce[i], npages * page_size);
	munmap(t->buf, npages * page_size);
	free(t->prot);
	free(t->last);
	free(t);
	return huge;
}

TEST_F_TIMEOUT(stress, migrate_vs_mprotect, TEST_BOUND_S)
{
	mprotect_race(_metadata, &self->dev, MPROTECT_PAGES, false);
}

/*
 * The same with a THP that the driver migrates whole: an mprotect() of one
 * half splits its PMD (a device-private PMD, a PMD migration entry or a
 * THP) while the migration walks, unmaps or maps it back, and one of the
 * whole buffer changes the protection of a PMD as it is. Device-private
 * memory must have been mapped by a PMD, or the test would not test that.
 */
TEST_F_TIMEOUT(stress, migrate_vs_mprotect_thp, TEST_BOUND_S)
{
	bool huge = mprotect_race(_metadata, &self->dev, THP_SIZE / page_size,
				  true);

	if (!self->dev.coherent)
		ASSERT_TRUE(huge);
}

/* ---- 4. migration racing fork ----------------------------------------- */

enum {
	FORK_MIGRATOR,
	FORK_CPU_READER,
	FORK_DEVICE_READER,
	FORK_THREADS,
};

struct fork_test {
	unsigned long *buf;
	unsigned long npages;
	unsigned long *bounce[2];
	unsigned long seed;
	int fd[2];
	unsigned long migrations;
};

static void fork_migrate(struct worker *w, struct fork_test *t)
{
	int ret;

	do {
		ret = dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_DEV, t->buf,
				  t->bounce[0], t->npages, NULL);
		if (ret && ret != -ENOENT)
			worker_fail(w, "migrate to device: %d", ret);
		ret = dmirror_cmd(t->fd[0], HMM_DMIRROR_MIGRATE_TO_SYS, t->buf,
				  NULL, t->npages, NULL);
		if (ret)
			worker_fail(w, "migrate to system: %d", ret);
		count_up(&t->migrations);
	} while (!crew_stopping(w->crew));
}

static void fork_cpu_read(struct worker *w, struct fork_test *t)
{
	long bad;

	do {
		bad = first_bad(t->buf, 0, t->npages * words_per_page, t->seed, 0,
				SLOTS_IGNORED);
		if (bad >= 0)
			worker_fail(w, "parent reads word %ld wrong", bad);
	} while (!crew_stopping(w->crew));
}

static void fork_device_read(struct worker *w, struct fork_test *t)
{
	long bad;
	int ret;

	do {
		ret = dmirror_cmd(t->fd[1], HMM_DMIRROR_READ, t->buf, t->bounce[1],
				  t->npages, NULL);
		if (ret == -EBUSY)
			continue;
		if (ret) {
			worker_fail(w, "device read: %d", ret);
			continue;
		}
		bad = first_bad(t->bounce[1], 0, t->npages * words_per_page,
				t->seed, 0, SLOTS_IGNORED);
		if (bad >= 0)
			worker_fail(w, "device read word %ld wrong", bad);
	} while (!crew_stopping(w->crew));
}

static void *fork_worker(void *arg)
{
	struct worker *w = arg;
	struct fork_test *t = w->crew->test;

	worker_wait_start(w);
	switch (w->id) {
	case FORK_MIGRATOR:
		fork_migrate(w, t);
		break;
	case FORK_CPU_READER:
		fork_cpu_read(w, t);
		break;
	case FORK_DEVICE_READER:
		fork_device_read(w, t);
		break;
	}
	return NULL;
}

/* How a child ended; its exit status. */
enum child_result {
	CHILD_OK,
	CHILD_SAW_WRONG_DATA,
	CHILD_COW_COPY_WRONG,
	CHILD_OPEN_FAILED,
	CHILD_NO_MEMORY,
	CHILD_MIGRATE_FAILED,
	CHILD_DEVICE_COPY_WRONG,
	CHILD_MIGRATE_BACK_FAILED,
	CHILD_DATA_LOST,
	CHILD_MIGRATE_SHORT,
	CHILD_SIBLINGS_LATE,
};

static const char *const child_result_name[] = {
	[CHILD_OK] = "ok",
	[CHILD_SAW_WRONG_DATA] = "read wrong data from the parent's pages",
	[CHILD_COW_COPY_WRONG] = "its own copy did not hold what it wrote",
	[CHILD_OPEN_FAILED] = "could not open its device",
	[CHILD_NO_MEMORY] = "out of memory",
	[CHILD_MIGRATE_FAILED] = "could not migrate its copy to its device",
	[CHILD_DEVICE_COPY_WRONG] = "its device got wrong data",
	[CHILD_MIGRATE_BACK_FAILED] = "could not migrate its copy back",
	[CHILD_DATA_LOST] = "its copy changed on the device round trip",
	[CHILD_MIGRATE_SHORT] = "its device got only part of its copy",
	[CHILD_SIBLINGS_LATE] = "its siblings did not finish in time",
};

/*
 * The child of a parent whose buffer is being migrated: check the parent's
 * data, write its own copy, and move that copy through its own device.
 * Only async-signal-safe calls: the parent was multi-threaded.
 *
 * Closing a test_hmm file evicts every page of that device, including the
 * siblings' pages in the middle of their own migration; so no child exits
 * before all are done with the device.
 */
static int fork_child_work(struct fork_test *t, unsigned long seed,
			   const char *path, bool coherent)
{
	unsigned long nwords = t->npages * words_per_page;
	unsigned long *own, *copy, cpages = 0;
	int fd;

	if (first_bad(t->buf, 0, nwords, t->seed, 0, SLOTS_IGNORED) >= 0)
		return CHILD_SAW_WRONG_DATA;
	fill(t->buf, nwords, seed);
	if (first_bad(t->buf, 0, nwords, seed, 0, SLOTS_IGNORED) >= 0)
		return CHILD_COW_COPY_WRONG;

	/*
	 * Writing need not have copied every page: a page only the child
	 * still maps is reused, and with device-coherent memory that can be
	 * a page of the parent's device, which the child's device does not
	 * take from system memory. Move a fresh copy instead.
	 */
	own = map_pages(t->npages);
	copy = map_pages(t->npages);
	if (own == MAP_FAILED || copy == MAP_FAILED)
		return CHILD_NO_MEMORY;
	memcpy(own, t->buf, t->npages * page_size);

	fd = open(path, O_RDWR);
	if (fd < 0)
		return CHILD_OPEN_FAILED;
	if (dmirror_cmd(fd, HMM_DMIRROR_MIGRATE_TO_DEV, own, copy, t->npages,
			&cpages))
		return CHILD_MIGRATE_FAILED;
	if (cpages != t->npages)
		return CHILD_MIGRATE_SHORT;
	if (first_bad(copy, 0, nwords, seed, 0, SLOTS_IGNORED) >= 0)
		return CHILD_DEVICE_COPY_WRONG;
	if (coherent && (dmirror_cmd(fd, HMM_DMIRROR_MIGRATE_TO_SYS, own, NULL,
				     t->npages, &cpages) || cpages != t->npages))
		return CHILD_MIGRATE_BACK_FAILED;
	if (first_bad(own, 0, nwords, seed, 0, SLOTS_IGNORED) >= 0)
		return CHILD_DATA_LOST;
	return CHILD_OK;
}

/*
 * A child that failed still reports in, so that its siblings stop waiting
 * and the parent sees the real failure instead of a late round.
 */
static int fork_child(struct fork_test *t, unsigned long seed, const char *path,
		      bool coherent, unsigned long *done)
{
	int result = fork_child_work(t, seed, path, coherent);

	count_up(done);
	if (!wait_for_count(done, FORK_CHILDREN, now() + ROUND_BOUND_S) &&
	    result == CHILD_OK)
		return CHILD_SIBLINGS_LATE;
	return result;
}

/* Reap @n children by @deadline; kill the ones still running then. */
static int reap_children(pid_t *pids, int *status, int n, double deadline)
{
	int i, running, late = 0;

	do {
		running = 0;
		for (i = 0; i < n; i++) {
			if (!pids[i])
				continue;
			if (waitpid(pids[i], &status[i], WNOHANG) == pids[i])
				pids[i] = 0;
			else
				running++;
		}
		if (running)
			usleep(1000);
	} while (running && now() < deadline);

	for (i = 0; i < n; i++) {
		if (!pids[i])
			continue;
		kill(pids[i], SIGKILL);
		waitpid(pids[i], &status[i], 0);
		late++;
	}
	return late;
}

/* The buffer a round of fork_race() migrates: @npages pages, a THP if @thp. */
/*
 * fork() while the parent's buffer of @npages pages (a THP if @thp)
 * migrates to the device and back: the children inherit device entries,
 * migration entries or shared pages, as ptes or as PMDs, depending on when
 * they are forked. Both sides must keep their data.
 */
static void fork_race(struct __test_metadata *_metadata, struct devices *dev,
		      unsigned long npages, bool thp)
{
	unsigned long nwords = npages * words_per_page;
	int status[FORK_CHILDREN], round, c, i, late;
	pid_t pids[FORK_CHILDREN];
	unsigned long *done, migrations;
	struct fork_test *t;
	struct crew crew;
	char path[64];
	double start;
	long bad;

	t = calloc(1, sizeof(*t));
	ASSERT_NE(NULL, t);
	t->npages = npages;
	for (i = 0; i < 2; i++) {
		t->bounce[i] = map_pages(npages);
		ASSERT_NE(MAP_FAILED, t->bounce[i]);
		t->fd[i] = dev->fd[i];
	}
	done = mmap(NULL, page_size, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, done);
	device_path(path, sizeof(path), dev->unit[1]);

	for (round = 0; round < FORK_ROUNDS; round++) {
		t->buf = map_buffer(npages, thp);
		ASSERT_NE(MAP_FAILED, t->buf);
		t->seed = 600 + round;
		t->migrations = 0;
		*done = 0;
		fill(t->buf, nwords, t->seed);
		migrate_to_device_checked(_metadata, dev->fd[0], t->buf,
					  npages, t->seed, dev->local);

		ASSERT_EQ(0, crew_start(&crew, FORK_THREADS, fork_worker, t));
		start = crew_release(&crew);
		for (c = 0; c < FORK_CHILDREN; c++) {
			/* Fork at a different point of each migration. */
			migrations = load_word(&t->migrations);
			ASSERT_TRUE(wait_for_count(&t->migrations, migrations + (c & 1),
						   start + ROUND_BOUND_S));
			pids[c] = fork();
			ASSERT_GE(pids[c], 0);
			if (!pids[c])
				_exit(fork_child(t, 700 + round * FORK_CHILDREN + c,
						 path, dev->coherent, done));
		}
		late = reap_children(pids, status, FORK_CHILDREN,
				     start + ROUND_BOUND_S);
		crew_stop(&crew);
		crew_finish(_metadata, &crew, start + ROUND_BOUND_S);
		ASSERT_EQ(0, late)
			TH_LOG("%d children still running after %d s", late,
			       ROUND_BOUND_S);
		for (c = 0; c < FORK_CHILDREN; c++) {
			ASSERT_TRUE(WIFEXITED(status[c]))
				TH_LOG("child %d died of signal %d", c,
				       WTERMSIG(status[c]));
			ASSERT_EQ(CHILD_OK, WEXITSTATUS(status[c]))
				TH_LOG("child %d: %s", c,
				       WEXITSTATUS(status[c]) <= CHILD_SIBLINGS_LATE ?
				       child_result_name[WEXITSTATUS(status[c])] : "?");
		}
		TH_LOG("round %d: %d children, %lu parent migrations: %.3f s",
		       round, FORK_CHILDREN, t->migrations, now() - start);

		bad = first_bad(t->buf, 0, nwords, t->seed, 0, SLOTS_IGNORED);
		ASSERT_EQ(-1, bad)
			TH_LOG("parent word %ld: 0x%lx", bad, t->buf[bad]);
		expect_device_sees(_metadata, dev->fd[0], t->buf, 0, npages,
				   t->seed, 0);
		munmap(t->buf, npages * page_size);
	}
}

TEST_F_TIMEOUT(stress, migrate_vs_fork, TEST_BOUND_S)
{
	fork_race(_metadata, &self->dev, FORK_PAGES, false);
}

/*
 * The same with a THP: the driver migrates it whole, so children fork off
 * device-private PMDs and PMD migration entries, and the parent's later
 * migrations unmap and remap the children's PMDs through the rmap.
 */
TEST_F_TIMEOUT(stress, migrate_vs_fork_thp, TEST_BOUND_S)
{
	fork_race(_metadata, &self->dev, THP_SIZE / page_size, true);
}

TEST_HARNESS_MAIN
