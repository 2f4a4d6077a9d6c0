// SPDX-License-Identifier: GPL-2.0
/*
 * Throughput of device-memory migration and HMM mirroring, measured through
 * the test_hmm dummy driver (lib/test_hmm.c).
 *
 * Every measurement prints one machine-readable line,
 *
 *   BENCH op=OP mem=MEM backing=BACKING size_mib=N mbps=X thp_pct=P seq_pct=Q
 *
 * and everything else is a comment line starting with '#'. mbps counts
 * 1 MB as 1e6 bytes; thp_pct is how much of the buffer really was backed
 * by transparent huge pages (from /proc/self/smaps) before the measured
 * operation, and seq_pct how many of its pages sit at the physical page
 * after their predecessor's (from /proc/self/pagemap, 0 when it shows no
 * pfns): a walk of the page tables may go faster over such runs, so both
 * say what memory a figure was measured on. Each is the lowest value over
 * the repetitions.
 *
 * The workbench runs this inside a single-vCPU TCG guest under
 * "-icount shift=0", where guest time counts executed instructions: the
 * numbers compare kernels with each other, not with real hardware.
 *
 * Any ioctl failure, page-count mismatch or data mismatch ends the program
 * with a non-zero exit code: a benchmark of a broken kernel must not look
 * like a slow one.
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

#include <lib/test_hmm_uapi.h>

#define MIB			(1024UL * 1024)
#define THP_SIZE		(2UL << 20)
#define MAX_SIZES		16
#define MAX_REPS		99
#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))
/*
 * Each test_hmm coherent device owns one 256 MiB chunk of special purpose
 * memory and cannot add another; using at most half of it keeps a run from
 * failing for want of device pages.
 */
#define COHERENT_MAX_MIB	128

enum bench_op {
	OP_TO_DEV,
	OP_TO_SYS,
	OP_CPU_FAULT,
	OP_FAULT_READ,
	OP_SNAPSHOT,
	OP_MEMCPY,
	NR_OPS
};

static const char * const op_names[NR_OPS] = {
	[OP_TO_DEV]	= "to-dev",
	[OP_TO_SYS]	= "to-sys",
	[OP_CPU_FAULT]	= "cpu-fault",
	[OP_FAULT_READ]	= "fault-read",
	[OP_SNAPSHOT]	= "snapshot",
	[OP_MEMCPY]	= "memcpy",
};

/* Ops that move pages to or from device memory, run per memory type. */
static bool op_uses_device_memory(enum bench_op op)
{
	return op == OP_TO_DEV || op == OP_TO_SYS || op == OP_CPU_FAULT;
}

enum mem_kind {
	MEM_PRIVATE,
	MEM_COHERENT,
	NR_MEMS
};

struct mem_type {
	const char *name;
	const char *path;
	unsigned long max_mib;		/* 0: no limit */
	int fd;
};

static struct mem_type mem_types[NR_MEMS] = {
	[MEM_PRIVATE]	= { "private", "/dev/hmm_dmirror0", 0, -1 },
	[MEM_COHERENT]	= { "coherent", "/dev/hmm_dmirror2", COHERENT_MAX_MIB, -1 },
};

enum backing_kind {
	BACKING_4K,
	BACKING_THP,
	NR_BACKINGS
};

static const char * const backing_names[NR_BACKINGS] = {
	[BACKING_4K]	= "4k",
	[BACKING_THP]	= "thp",
};

struct options {
	unsigned long sizes_mib[MAX_SIZES];
	int nr_sizes;
	int reps;
	bool ops[NR_OPS];
	bool mems[NR_MEMS];
	bool backings[NR_BACKINGS];
};

/*
 * A buffer is an exact VMA: a PROT_NONE reservation surrounds it so that it
 * never merges with a neighbour, which keeps its smaps entry its own.
 */
struct buffer {
	char *map;
	size_t map_len;
	char *ptr;
	size_t len;
};

/* One measurement: elapsed time and the memory it ran on. */
struct sample {
	__u64 ns;
	unsigned int thp_pct;
	unsigned int seq_pct;
};

static long page_size;

/* stdout is line buffered, so this lands after the lines already printed. */
#define die(fmt, ...) errx(1, "FAIL: " fmt, ##__VA_ARGS__)

static __u64 now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts))
		die("clock_gettime: %s", strerror(errno));
	return (__u64)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/*
 * Work the kernel deferred from the steps before a measurement (RCU
 * callbacks, the freeing of the last buffer's vmalloc areas and page
 * tables, per-cpu list drains) runs in whatever comes next; on one vCPU
 * whose clock counts instructions it would be counted in the timed window,
 * and by chance. An idle moment first lets it run outside.
 */
#define SETTLE_US	50000

static __u64 settled_now_ns(void)
{
	usleep(SETTLE_US);
	return now_ns();
}

/*
 * Each timed window is marked by a call to hmm_bench_window_open() at its
 * start and to hmm_bench_window_close() at its end, so that an instruction
 * profiler outside the guest (hmm-qemu's tbprof plugin, behind make
 * profile) finds the windows by the functions' addresses in the static
 * binary. window_mark() hides from the compiler which one it calls, so
 * both stay functions of their own.
 */
int hmm_bench_window_is_open;

void hmm_bench_window_open(void)
{
	hmm_bench_window_is_open = 1;
}

void hmm_bench_window_close(void)
{
	hmm_bench_window_is_open = 0;
}

static void window_mark(void (*mark)(void))
{
	asm volatile("" : "+r" (mark));
	mark();
}

/* Start a timed window; returns its start time for window_ns(). */
static __u64 window_start(void)
{
	__u64 t0 = settled_now_ns();

	window_mark(hmm_bench_window_open);
	return t0;
}

/* End the window started at @t0; returns its length. */
static __u64 window_ns(__u64 t0)
{
	__u64 t = now_ns();

	window_mark(hmm_bench_window_close);
	return t - t0;
}

/* ---- buffers ------------------------------------------------------------ */

static void buffer_alloc(struct buffer *buf, size_t len, enum backing_kind backing)
{
	uintptr_t start;
	int advice = backing == BACKING_THP ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;

	buf->len = len;
	buf->map_len = len + 2 * THP_SIZE;
	buf->map = mmap(NULL, buf->map_len, PROT_NONE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (buf->map == MAP_FAILED)
		die("reserving %zu bytes: %s", buf->map_len, strerror(errno));

	/* THP-aligned, with at least one guard page on each side. */
	start = ((uintptr_t)buf->map + page_size + THP_SIZE - 1) & ~(THP_SIZE - 1);
	buf->ptr = mmap((void *)start, len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (buf->ptr == MAP_FAILED)
		die("mapping %zu bytes: %s", len, strerror(errno));
	if (madvise(buf->ptr, len, advice))
		die("madvise(%s): %s", backing_names[backing], strerror(errno));
}

static void buffer_free(struct buffer *buf)
{
	if (munmap(buf->map, buf->map_len))
		die("munmap: %s", strerror(errno));
	buf->map = NULL;
}

static size_t buffer_npages(const struct buffer *buf)
{
	return buf->len / page_size;
}

/* Percentage of the buffer that smaps reports as AnonHugePages. */
static unsigned int buffer_thp_pct(const struct buffer *buf)
{
	uintptr_t lo = (uintptr_t)buf->ptr, hi = lo + buf->len;
	unsigned long start, end, kb;
	unsigned long long thp_bytes = 0;
	bool inside = false;
	char line[256];
	FILE *f;

	f = fopen("/proc/self/smaps", "r");
	if (!f)
		die("/proc/self/smaps: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2)
			inside = start < hi && end > lo;
		else if (inside && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
			thp_bytes += kb * 1024ULL;
	}
	fclose(f);
	return thp_bytes * 100 / buf->len;
}

#define PAGEMAP_PRESENT		0x8000000000000000ULL
#define PAGEMAP_PFN_MASK	0x007fffffffffffffULL	/* bits 0-54 */

/*
 * Percentage of the buffer's pages, after the first, that are present at the
 * pfn after their predecessor's. Without CAP_SYS_ADMIN pagemap shows pfn 0
 * for every page, which gives 0.
 */
static unsigned int buffer_seq_pct(const struct buffer *buf)
{
	size_t i, n = buffer_npages(buf), seq = 0;
	__u64 entries[512], pfn, prev = 0;
	size_t chunk = ARRAY_SIZE(entries);
	off_t off;
	int fd;

	fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		die("/proc/self/pagemap: %s", strerror(errno));
	off = (uintptr_t)buf->ptr / page_size * sizeof(entries[0]);
	for (i = 0; i < n; i++) {
		if (i % chunk == 0) {
			size_t want = (n - i < chunk ? n - i : chunk) * sizeof(entries[0]);

			if (pread(fd, entries, want, off) != (ssize_t)want)
				die("reading /proc/self/pagemap: %s", strerror(errno));
			off += want;
		}
		pfn = entries[i % chunk];
		pfn = pfn & PAGEMAP_PRESENT ? pfn & PAGEMAP_PFN_MASK : 0;
		if (i && pfn && pfn == prev + 1)
			seq++;
		prev = pfn;
	}
	close(fd);
	return n > 1 ? seq * 100 / (n - 1) : 0;
}

/* What the buffer is backed by, measured before the timed operation. */
static void sample_memory(struct sample *s, const struct buffer *buf)
{
	s->thp_pct = buffer_thp_pct(buf);
	s->seq_pct = buffer_seq_pct(buf);
}

/*
 * One word per 64-byte line carries a pattern that differs per line and per
 * seed, so stale, zeroed or misplaced pages never pass; filling every word
 * would multiply the guest's work without catching more page-level bugs.
 */
#define PATTERN_STRIDE	(64 / sizeof(__u64))

static inline __u64 pattern_word(size_t i, __u64 seed)
{
	return (i * 0x9e3779b97f4a7c15ULL) ^ seed;
}

static void pattern_fill(void *mem, size_t len, __u64 seed)
{
	__u64 *w = mem;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i += PATTERN_STRIDE)
		w[i] = pattern_word(i, seed);
}

static void pattern_check(const void *mem, size_t len, __u64 seed,
			  const char *what)
{
	const __u64 *w = mem;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i += PATTERN_STRIDE) {
		if (w[i] != pattern_word(i, seed))
			die("%s: data mismatch at byte %zu of %zu: got %#llx, want %#llx",
			    what, i * sizeof(*w), len,
			    (unsigned long long)w[i],
			    (unsigned long long)pattern_word(i, seed));
	}
}

/* ---- driver calls ------------------------------------------------------- */

static void dmirror(int fd, unsigned long request, const char *name,
		    const struct buffer *buf, void *out,
		    struct hmm_dmirror_cmd *cmd)
{
	memset(cmd, 0, sizeof(*cmd));
	cmd->addr = (uintptr_t)buf->ptr;
	cmd->ptr = (uintptr_t)out;
	cmd->npages = buffer_npages(buf);
	if (ioctl(fd, request, cmd))
		die("%s of %zu pages failed: %s", name, buffer_npages(buf),
		    strerror(errno));
}

static void expect_pages(const struct hmm_dmirror_cmd *cmd, const char *name)
{
	if (cmd->cpages != cmd->npages)
		die("%s: driver reports %llu of %llu pages",
		    name, (unsigned long long)cmd->cpages,
		    (unsigned long long)cmd->npages);
}

/*
 * The driver copies what it migrated into cmd.ptr; this output buffer is
 * populated once up front so that its page faults stay out of the timing.
 */
static struct buffer out_buf;

static void *out_area(size_t len)
{
	if (!out_buf.map || out_buf.len < len) {
		if (out_buf.map)
			buffer_free(&out_buf);
		buffer_alloc(&out_buf, len, BACKING_4K);
		memset(out_buf.ptr, 0, len);
	}
	return out_buf.ptr;
}

/* The data is checked when it comes back, at the end of the round trip. */
static void migrate_to_device(int fd, const struct buffer *buf)
{
	struct hmm_dmirror_cmd cmd;
	void *out = out_area(buf->len);

	dmirror(fd, HMM_DMIRROR_MIGRATE_TO_DEV, "MIGRATE_TO_DEV", buf, out, &cmd);
	expect_pages(&cmd, "MIGRATE_TO_DEV");
}

/* ---- the measurements --------------------------------------------------- */

struct run {
	enum bench_op op;
	int fd;
	size_t len;
	enum backing_kind backing;
	__u64 seed;
};

static void populated(const struct run *r, struct buffer *buf)
{
	buffer_alloc(buf, r->len, r->backing);
	pattern_fill(buf->ptr, buf->len, r->seed);
}

static struct sample measure_to_dev(const struct run *r)
{
	struct buffer buf;
	struct hmm_dmirror_cmd cmd;
	struct sample s;
	void *out = out_area(r->len);
	__u64 t0;

	populated(r, &buf);
	sample_memory(&s, &buf);
	t0 = window_start();
	dmirror(r->fd, HMM_DMIRROR_MIGRATE_TO_DEV, "MIGRATE_TO_DEV", &buf, out, &cmd);
	s.ns = window_ns(t0);
	expect_pages(&cmd, "MIGRATE_TO_DEV");
	pattern_check(out, buf.len, r->seed, "to-dev: device copy");
	buffer_free(&buf);
	return s;
}

static struct sample measure_to_sys(const struct run *r)
{
	struct buffer buf;
	struct hmm_dmirror_cmd cmd;
	struct sample s;
	__u64 t0;

	populated(r, &buf);
	sample_memory(&s, &buf);
	migrate_to_device(r->fd, &buf);
	t0 = window_start();
	dmirror(r->fd, HMM_DMIRROR_MIGRATE_TO_SYS, "MIGRATE_TO_SYS", &buf, NULL, &cmd);
	s.ns = window_ns(t0);
	expect_pages(&cmd, "MIGRATE_TO_SYS");
	pattern_check(buf.ptr, buf.len, r->seed, "to-sys: data back in system memory");
	buffer_free(&buf);
	return s;
}

/*
 * Not static: the compiler cannot prove nobody reads it, so it keeps the
 * loads of measure_cpu_fault() that feed it.
 */
unsigned long hmm_bench_touch_sink;

/*
 * One read per page; each of them faults a device-private page back
 * through the driver's migrate_to_ram callback.
 */
static struct sample measure_cpu_fault(const struct run *r)
{
	struct buffer buf;
	struct sample s;
	unsigned long sum = 0;
	__u64 t0;
	size_t off;

	populated(r, &buf);
	sample_memory(&s, &buf);
	migrate_to_device(r->fd, &buf);
	t0 = window_start();
	for (off = 0; off < buf.len; off += page_size)
		sum += buf.ptr[off];
	hmm_bench_touch_sink = sum;
	s.ns = window_ns(t0);
	pattern_check(buf.ptr, buf.len, r->seed, "cpu-fault: data after CPU faults");
	buffer_free(&buf);
	return s;
}

static struct sample measure_fault_read(const struct run *r)
{
	struct buffer buf;
	struct hmm_dmirror_cmd cmd;
	struct sample s;
	void *out = out_area(r->len);
	__u64 t0;

	populated(r, &buf);
	sample_memory(&s, &buf);
	t0 = window_start();
	dmirror(r->fd, HMM_DMIRROR_READ, "READ", &buf, out, &cmd);
	s.ns = window_ns(t0);
	expect_pages(&cmd, "READ");
	pattern_check(out, buf.len, r->seed, "fault-read: data read by the device");
	buffer_free(&buf);
	return s;
}

/* Every page of a populated private anonymous buffer is writable memory. */
static void check_snapshot(const unsigned char *perm, size_t npages)
{
	size_t i;

	for (i = 0; i < npages; i++) {
		if ((perm[i] & ~HMM_DMIRROR_PROT_PMD) != HMM_DMIRROR_PROT_WRITE)
			die("snapshot: page %zu of %zu has protection %#x, want %#x",
			    i, npages, perm[i], HMM_DMIRROR_PROT_WRITE);
	}
}

static struct sample measure_snapshot(const struct run *r)
{
	struct buffer buf;
	struct hmm_dmirror_cmd cmd;
	struct sample s;
	unsigned char *perm = out_area(r->len);
	__u64 t0;

	populated(r, &buf);
	sample_memory(&s, &buf);
	memset(perm, 0xaa, buffer_npages(&buf));
	t0 = window_start();
	dmirror(r->fd, HMM_DMIRROR_SNAPSHOT, "SNAPSHOT", &buf, perm, &cmd);
	s.ns = window_ns(t0);
	expect_pages(&cmd, "SNAPSHOT");
	check_snapshot(perm, buffer_npages(&buf));
	buffer_free(&buf);
	return s;
}

static struct sample measure_memcpy(const struct run *r)
{
	struct buffer src, dst;
	struct sample s;
	unsigned int dst_pct;
	__u64 t0;

	populated(r, &src);
	buffer_alloc(&dst, r->len, r->backing);
	memset(dst.ptr, 0, dst.len);
	sample_memory(&s, &src);
	dst_pct = buffer_thp_pct(&dst);
	if (dst_pct < s.thp_pct)
		s.thp_pct = dst_pct;
	t0 = window_start();
	memcpy(dst.ptr, src.ptr, r->len);
	s.ns = window_ns(t0);
	pattern_check(dst.ptr, dst.len, r->seed, "memcpy: copy");
	buffer_free(&src);
	buffer_free(&dst);
	return s;
}

static struct sample measure(const struct run *r)
{
	switch (r->op) {
	case OP_TO_DEV:
		return measure_to_dev(r);
	case OP_TO_SYS:
		return measure_to_sys(r);
	case OP_CPU_FAULT:
		return measure_cpu_fault(r);
	case OP_FAULT_READ:
		return measure_fault_read(r);
	case OP_SNAPSHOT:
		return measure_snapshot(r);
	case OP_MEMCPY:
		return measure_memcpy(r);
	default:
		die("unknown op %d", r->op);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	__u64 x = *(const __u64 *)a, y = *(const __u64 *)b;

	return x < y ? -1 : x > y;
}

/*
 * Retries of a window the clock got wrong before giving up. Under icount a
 * page costs hundreds of guest instructions, so a window of less than a
 * nanosecond per page was not measured: the clock did not advance (seen
 * once, on a machine loaded by another guest, as a run of 2 MiB windows of
 * 0 ns). Taking such a window would print an absurd rate, and a ratio of
 * about 0 beside it, as if it were a result.
 */
#define MAX_CLOCK_RETRIES	3

static bool window_plausible(const struct run *r, __u64 ns)
{
	return ns >= r->len / page_size;
}

/* Run r->op opts->reps times, each on a fresh buffer, and print the median. */
static void bench_one(struct run *r, const char *mem, const struct options *opts)
{
	__u64 ns[MAX_REPS];
	unsigned int thp_pct = 100, seq_pct = 100;
	__u64 median;
	struct sample s;
	int i, retries = 0;

	for (i = 0; i < opts->reps; i++) {
		r->seed = now_ns() * 0x100000001b3ULL + i;
		s = measure(r);
		if (!window_plausible(r, s.ns)) {
			if (++retries > MAX_CLOCK_RETRIES)
				die("%s %s %zu MiB: %llu ns windows, the clock is not advancing",
				    op_names[r->op], mem, r->len / MIB,
				    (unsigned long long)s.ns);
			printf("# %s %s %zu MiB: a %llu ns window, measured again\n",
			       op_names[r->op], mem, r->len / MIB,
			       (unsigned long long)s.ns);
			i--;
			continue;
		}
		ns[i] = s.ns;
		if (s.thp_pct < thp_pct)
			thp_pct = s.thp_pct;
		if (s.seq_pct < seq_pct)
			seq_pct = s.seq_pct;
	}
	qsort(ns, opts->reps, sizeof(ns[0]), cmp_u64);
	median = opts->reps % 2 ? ns[opts->reps / 2] :
		 (ns[opts->reps / 2 - 1] + ns[opts->reps / 2]) / 2;
	printf("BENCH op=%s mem=%s backing=%s size_mib=%zu mbps=%.1f thp_pct=%u seq_pct=%u\n",
	       op_names[r->op], mem, backing_names[r->backing], r->len / MIB,
	       r->len * 1e3 / median, thp_pct, seq_pct);
}

/* ---- command line ------------------------------------------------------- */

static void print_usage(void)
{
	fprintf(stderr,
		"usage: hmm-bench [-s MIB,...] [-r REPS] [-o OP,...] [-m MEM,...] [-b BACKING,...]\n"
		"  -s  buffer sizes in MiB (default 2,16,64,256)\n"
		"  -r  repetitions per measurement, the median is reported (default 3)\n"
		"  -o  ops: to-dev,to-sys,cpu-fault,fault-read,snapshot,memcpy (default all)\n"
		"  -m  device memory types: private,coherent (default both)\n"
		"  -b  backings: 4k,thp (default both)\n"
		"Lists may be separated by ',' or ':'.\n");
	exit(2);
}

/* Mark in @set each name of the comma or colon separated @list. */
static void parse_names(char *list, const char * const *names, int n,
			bool *set, const char *what)
{
	char *tok, *save;
	int i;

	memset(set, 0, n * sizeof(*set));
	for (tok = strtok_r(list, ",:", &save); tok;
	     tok = strtok_r(NULL, ",:", &save)) {
		for (i = 0; i < n; i++) {
			if (!strcmp(tok, names[i]))
				break;
		}
		if (i == n) {
			fprintf(stderr, "hmm-bench: unknown %s '%s'\n", what, tok);
			print_usage();
		}
		set[i] = true;
	}
}

static void parse_sizes(char *list, struct options *opts)
{
	char *tok, *save, *end;
	unsigned long mib;

	opts->nr_sizes = 0;
	for (tok = strtok_r(list, ",:", &save); tok;
	     tok = strtok_r(NULL, ",:", &save)) {
		mib = strtoul(tok, &end, 10);
		if (*end || !mib || mib > 4096 || opts->nr_sizes == MAX_SIZES) {
			fprintf(stderr, "hmm-bench: bad size '%s'\n", tok);
			print_usage();
		}
		opts->sizes_mib[opts->nr_sizes++] = mib;
	}
}

static void parse_options(int argc, char **argv, struct options *opts)
{
	static const unsigned long default_sizes[] = { 2, 16, 64, 256 };
	const char *mem_names[NR_MEMS];
	char *end;
	int c, i;

	for (i = 0; i < NR_MEMS; i++)
		mem_names[i] = mem_types[i].name;
	memset(opts, 0, sizeof(*opts));
	opts->reps = 3;
	for (i = 0; i < (int)ARRAY_SIZE(default_sizes); i++)
		opts->sizes_mib[opts->nr_sizes++] = default_sizes[i];
	for (i = 0; i < NR_OPS; i++)
		opts->ops[i] = true;
	for (i = 0; i < NR_MEMS; i++)
		opts->mems[i] = true;
	for (i = 0; i < NR_BACKINGS; i++)
		opts->backings[i] = true;

	while ((c = getopt(argc, argv, "s:r:o:m:b:h")) != -1) {
		switch (c) {
		case 's':
			parse_sizes(optarg, opts);
			break;
		case 'r':
			opts->reps = strtol(optarg, &end, 10);
			if (*end || opts->reps < 1 || opts->reps > MAX_REPS)
				print_usage();
			break;
		case 'o':
			parse_names(optarg, op_names, NR_OPS, opts->ops, "op");
			break;
		case 'm':
			parse_names(optarg, mem_names, NR_MEMS, opts->mems, "memory type");
			break;
		case 'b':
			parse_names(optarg, backing_names, NR_BACKINGS,
				    opts->backings, "backing");
			break;
		default:
			print_usage();
		}
	}
	if (optind != argc)
		print_usage();
}

/* ---- main --------------------------------------------------------------- */

static void open_devices(const struct options *opts)
{
	int m;

	for (m = 0; m < NR_MEMS; m++) {
		if (!opts->mems[m])
			continue;
		/*
		 * Kept open for the whole run: closing a test_hmm device file
		 * evicts every page of that device.
		 */
		mem_types[m].fd = open(mem_types[m].path, O_RDWR);
		if (mem_types[m].fd < 0)
			die("%s (%s memory): %s", mem_types[m].path,
			    mem_types[m].name, strerror(errno));
	}
}

/* Device-memory ops: to-dev, to-sys and cpu-fault for each memory type. */
static void bench_device_memory(const struct options *opts)
{
	unsigned long mib, done[MAX_SIZES];
	int m, b, i, j, nr_done;
	struct run r;

	for (m = 0; m < NR_MEMS; m++) {
		if (!opts->mems[m])
			continue;
		for (b = 0; b < NR_BACKINGS; b++) {
			if (!opts->backings[b])
				continue;
			nr_done = 0;
			for (i = 0; i < opts->nr_sizes; i++) {
				mib = opts->sizes_mib[i];
				if (mem_types[m].max_mib && mib > mem_types[m].max_mib)
					mib = mem_types[m].max_mib;
				for (j = 0; j < nr_done && done[j] != mib; j++)
					;
				if (j < nr_done)
					continue;
				done[nr_done++] = mib;
				r.fd = mem_types[m].fd;
				r.len = mib * MIB;
				r.backing = b;
				for (r.op = 0; r.op < NR_OPS; r.op++) {
					if (!opts->ops[r.op] || !op_uses_device_memory(r.op))
						continue;
					if (r.op == OP_CPU_FAULT && m == MEM_COHERENT)
						continue;
					bench_one(&r, mem_types[m].name, opts);
				}
			}
		}
	}
}

/* System-memory ops: fault-read, snapshot and the memcpy baseline. */
static void bench_system_memory(const struct options *opts)
{
	struct run r = { .fd = -1 };
	int m, b, i;

	for (m = 0; m < NR_MEMS && r.fd < 0; m++)
		r.fd = mem_types[m].fd;
	for (b = 0; b < NR_BACKINGS; b++) {
		if (!opts->backings[b])
			continue;
		for (i = 0; i < opts->nr_sizes; i++) {
			r.len = opts->sizes_mib[i] * MIB;
			r.backing = b;
			for (r.op = 0; r.op < NR_OPS; r.op++) {
				if (!opts->ops[r.op] || op_uses_device_memory(r.op))
					continue;
				if (r.fd < 0 && r.op != OP_MEMCPY)
					die("%s needs a device: select a memory type",
					    op_names[r.op]);
				bench_one(&r, "sys", opts);
			}
		}
	}
}

static void print_header(const struct options *opts)
{
	int i;

	printf("# hmm-bench: MB/s (1 MB = 1e6 bytes), median of %d fresh buffer(s) per line\n",
	       opts->reps);
	printf("# sizes MiB:");
	for (i = 0; i < opts->nr_sizes; i++)
		printf(" %lu", opts->sizes_mib[i]);
	printf("\n");
	printf("# to-dev, to-sys: HMM_DMIRROR_MIGRATE_TO_DEV, _TO_SYS\n"
	       "# cpu-fault: one CPU read per page of a buffer on the device\n"
	       "# fault-read, snapshot: HMM_DMIRROR_READ, _SNAPSHOT of a populated\n"
	       "#   system buffer; reported once as mem=sys, the device type does not enter\n"
	       "# memcpy: between two populated buffers, the baseline\n");
	if (opts->mems[MEM_COHERENT]) {
		for (i = 0; i < opts->nr_sizes; i++) {
			if (opts->sizes_mib[i] > COHERENT_MAX_MIB)
				break;
		}
		if (i < opts->nr_sizes)
			printf("# coherent: sizes capped at %d MiB, %s\n",
			       COHERENT_MAX_MIB,
			       "a test_hmm coherent device has 256 MiB");
		if (opts->ops[OP_CPU_FAULT])
			printf("# coherent: no cpu-fault, %s\n",
			       "the CPU maps coherent memory without faulting");
	}
}

int main(int argc, char **argv)
{
	struct options opts;
	__u64 t0 = now_ns();

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGESIZE);
	parse_options(argc, argv, &opts);
	print_header(&opts);
	open_devices(&opts);
	/*
	 * System memory first: the free memory that migrations leave behind
	 * differs between kernels, and the ops that only read system memory
	 * would measure that rather than their own path.
	 */
	bench_system_memory(&opts);
	bench_device_memory(&opts);
	printf("# hmm-bench: done in %.1f s of guest time\n",
	       (now_ns() - t0) / 1e9);
	return 0;
}
