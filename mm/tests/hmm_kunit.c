// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * KUnit tests for hmm_range_fault().
 *
 * Each test case runs in a kernel thread that KUnit gives a user address
 * space of its own (kunit_vm_mmap()). The test maps and populates pages of
 * the kinds a device mirror meets, mirrors them with an interval notifier
 * of its own, and checks every entry hmm_range_fault() returns against an
 * independent oracle: the data the test wrote into the page, the zero
 * page, or the device page it created.
 *
 * Device-private pages come from a small MEMORY_DEVICE_PRIVATE pgmap the
 * suite registers itself; its "device memory" is a system page kept in
 * zone_device_data, which migrate_to_ram() copies back.
 */
#include <kunit/test.h>
#include <linux/anon_inodes.h>
#include <linux/highmem.h>
#include <linux/hmm.h>
#include <linux/hugetlb.h>
#include <linux/ioport.h>
#include <linux/memremap.h>
#include <linux/migrate.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/mmu_notifier.h>
#include <linux/pfn_t.h>
#include <linux/random.h>
#include <linux/rmap.h>
#include <linux/sched/signal.h>
#include <linux/shmem_fs.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "../internal.h"

#define HMM_KUNIT_DEV_SIZE	SZ_2M
#define HMM_KUNIT_DEV_PAGES	(HMM_KUNIT_DEV_SIZE >> PAGE_SHIFT)
#define HMM_KUNIT_MAX_PAGES	16
#define HMM_KUNIT_PMD_ORDER	(PMD_SHIFT - PAGE_SHIFT)
#define HMM_KUNIT_SPARSE_SIZE	(32UL * SZ_1G)

#define V	HMM_PFN_VALID
#define W	HMM_PFN_WRITE
#define E	HMM_PFN_ERROR
#define O(order)	((unsigned long)(order) << HMM_PFN_ORDER_SHIFT)

/* pgmap owners: ours, and one standing for another driver's. */
static int hmm_kunit_owner;
static int hmm_kunit_other_owner;

/**
 * struct hmm_kunit_device - the suite's fake device
 * @pgmap: its device-private memory
 * @res: the physical range @pgmap sits in
 * @special_page: what the PFNMAP and MIXEDMAP mappings point at
 * @lock: protects @used
 * @used: which device pages are allocated
 * @mapped: whether @pgmap is registered
 */
static struct hmm_kunit_device {
	struct dev_pagemap pgmap;
	struct resource *res;
	struct page *special_page;
	spinlock_t lock;	/* protects @used */
	DECLARE_BITMAP(used, HMM_KUNIT_DEV_PAGES);
	bool mapped;
} hmm_kunit_dev;

/**
 * struct hmm_kunit_ctx - state of one test case
 * @test: the test
 * @mm: the address space KUnit made for the test thread
 * @notifier: the interval notifier mirroring the whole of @mm
 * @invalidations: how many invalidations @notifier saw
 * @pattern: base of the values written in the pages, random per case
 * @origin: address whose page holds @pattern; page n after it holds
 *	@pattern + n
 * @dev_pfn: device pfn created for page n after @origin, or 0
 */
struct hmm_kunit_ctx {
	struct kunit *test;
	struct mm_struct *mm;
	struct mmu_interval_notifier notifier;
	atomic_t invalidations;
	unsigned long pattern;
	unsigned long origin;
	unsigned long dev_pfn[HMM_KUNIT_MAX_PAGES];
};

/* ---- the fake device ---------------------------------------------------- */

static unsigned long hmm_kunit_dev_first_pfn(void)
{
	return PHYS_PFN(hmm_kunit_dev.pgmap.range.start);
}

static bool hmm_kunit_is_dev_pfn(unsigned long pfn)
{
	return hmm_kunit_dev.mapped && pfn >= hmm_kunit_dev_first_pfn() &&
	       pfn < hmm_kunit_dev_first_pfn() + HMM_KUNIT_DEV_PAGES;
}

static struct page *hmm_kunit_backing(struct page *dpage)
{
	return dpage->zone_device_data;
}

/* Allocate a device page, locked and referenced, with zeroed memory. */
static struct page *hmm_kunit_dev_alloc(void)
{
	struct hmm_kunit_device *dev = &hmm_kunit_dev;
	struct page *backing, *dpage;
	unsigned long n;

	backing = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!backing)
		return NULL;
	spin_lock(&dev->lock);
	n = find_first_zero_bit(dev->used, HMM_KUNIT_DEV_PAGES);
	if (n < HMM_KUNIT_DEV_PAGES)
		__set_bit(n, dev->used);
	spin_unlock(&dev->lock);
	if (n >= HMM_KUNIT_DEV_PAGES) {
		__free_page(backing);
		return NULL;
	}
	dpage = pfn_to_page(hmm_kunit_dev_first_pfn() + n);
	dpage->zone_device_data = backing;
	zone_device_page_init(dpage);
	return dpage;
}

static void hmm_kunit_page_free(struct page *dpage)
{
	struct hmm_kunit_device *dev = &hmm_kunit_dev;

	__free_page(hmm_kunit_backing(dpage));
	dpage->zone_device_data = NULL;
	spin_lock(&dev->lock);
	__clear_bit(page_to_pfn(dpage) - hmm_kunit_dev_first_pfn(), dev->used);
	spin_unlock(&dev->lock);
}

/* A CPU fault on one of our pages: copy it back into a system page. */
static vm_fault_t hmm_kunit_migrate_to_ram(struct vm_fault *vmf)
{
	unsigned long src = 0, dst = 0;
	struct migrate_vma args = {
		.vma		= vmf->vma,
		.start		= vmf->address,
		.end		= vmf->address + PAGE_SIZE,
		.src		= &src,
		.dst		= &dst,
		.pgmap_owner	= vmf->page->pgmap->owner,
		.flags		= MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
		.fault_page	= vmf->page,
	};
	struct page *spage, *page = NULL;

	if (migrate_vma_setup(&args))
		return VM_FAULT_SIGBUS;
	spage = migrate_pfn_to_page(src);
	if (spage && (src & MIGRATE_PFN_MIGRATE)) {
		page = alloc_page_vma(GFP_HIGHUSER_MOVABLE, vmf->vma,
				      vmf->address);
		if (page) {
			lock_page(page);
			copy_highpage(page, hmm_kunit_backing(spage));
			dst = migrate_pfn(page_to_pfn(page));
		}
	}
	migrate_vma_pages(&args);
	migrate_vma_finalize(&args);
	return (page || !(src & MIGRATE_PFN_MIGRATE)) ? 0 : VM_FAULT_OOM;
}

static const struct dev_pagemap_ops hmm_kunit_pgmap_ops = {
	.page_free	= hmm_kunit_page_free,
	.migrate_to_ram	= hmm_kunit_migrate_to_ram,
};

static int hmm_kunit_suite_init(struct kunit_suite *suite)
{
	struct hmm_kunit_device *dev = &hmm_kunit_dev;
	void *addr;

	spin_lock_init(&dev->lock);
	dev->special_page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!dev->special_page)
		return -ENOMEM;
	dev->res = request_free_mem_region(&iomem_resource, HMM_KUNIT_DEV_SIZE,
					   "hmm_kunit");
	if (IS_ERR(dev->res)) {
		int ret = PTR_ERR(dev->res);

		dev->res = NULL;
		return ret;
	}
	dev->pgmap.type = MEMORY_DEVICE_PRIVATE;
	dev->pgmap.range.start = dev->res->start;
	dev->pgmap.range.end = dev->res->start + HMM_KUNIT_DEV_SIZE - 1;
	dev->pgmap.nr_range = 1;
	dev->pgmap.ops = &hmm_kunit_pgmap_ops;
	dev->pgmap.owner = &hmm_kunit_owner;
	addr = memremap_pages(&dev->pgmap, NUMA_NO_NODE);
	if (IS_ERR(addr))
		return PTR_ERR(addr);
	dev->mapped = true;
	return 0;
}

/* Runs even after a failed init. Waits until every device page is free. */
static void hmm_kunit_suite_exit(struct kunit_suite *suite)
{
	struct hmm_kunit_device *dev = &hmm_kunit_dev;

	if (dev->mapped)
		memunmap_pages(&dev->pgmap);
	if (dev->res)
		release_mem_region(dev->res->start, resource_size(dev->res));
	if (dev->special_page)
		__free_page(dev->special_page);
	memset(dev, 0, sizeof(*dev));
}

/* ---- the test's address space and mirror -------------------------------- */

static bool hmm_kunit_invalidate(struct mmu_interval_notifier *mni,
				 const struct mmu_notifier_range *range,
				 unsigned long cur_seq)
{
	struct hmm_kunit_ctx *ctx = container_of(mni, struct hmm_kunit_ctx,
						 notifier);

	mmu_interval_set_seq(mni, cur_seq);
	atomic_inc(&ctx->invalidations);
	return true;
}

static const struct mmu_interval_notifier_ops hmm_kunit_notifier_ops = {
	.invalidate = hmm_kunit_invalidate,
};

/*
 * The test thread's mm is torn down when the thread exits, before or while
 * KUnit runs this; removal waits for any invalidation still running.
 */
static void hmm_kunit_remove_notifier(void *data)
{
	struct hmm_kunit_ctx *ctx = data;

	mmu_interval_notifier_remove(&ctx->notifier);
}

static struct hmm_kunit_ctx *hmm_kunit_ctx_create(struct kunit *test)
{
	struct hmm_kunit_ctx *ctx;

	ctx = kunit_kzalloc(test, sizeof(*ctx), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, ctx);
	ctx->test = test;
	ctx->pattern = get_random_long();
	return ctx;
}

/* Start mirroring once KUnit has given the thread an mm. */
static void hmm_kunit_mirror_mm(struct hmm_kunit_ctx *ctx)
{
	struct kunit *test = ctx->test;
	int ret;

	if (ctx->mm)
		return;
	KUNIT_ASSERT_NOT_NULL(test, current->mm);
	ctx->mm = current->mm;
	ret = mmu_interval_notifier_insert(&ctx->notifier, ctx->mm, 0,
					   ctx->mm->task_size,
					   &hmm_kunit_notifier_ops);
	KUNIT_ASSERT_EQ(test, ret, 0);
	ret = kunit_add_action_or_reset(test, hmm_kunit_remove_notifier, ctx);
	KUNIT_ASSERT_EQ(test, ret, 0);
}

static unsigned long hmm_kunit_mmap(struct hmm_kunit_ctx *ctx,
				    struct file *file, unsigned long len,
				    unsigned long prot, unsigned long flags)
{
	unsigned long addr;

	addr = kunit_vm_mmap(ctx->test, file, 0, len, prot, flags, 0);
	KUNIT_ASSERT_TRUE_MSG(ctx->test, addr && !IS_ERR_VALUE(addr),
			      "mmap of %lu bytes: %ld", len, (long)addr);
	hmm_kunit_mirror_mm(ctx);
	return addr;
}

static unsigned long hmm_kunit_map_anon(struct hmm_kunit_ctx *ctx,
					unsigned long len, unsigned long prot)
{
	return hmm_kunit_mmap(ctx, NULL, len, prot,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
}

static void hmm_kunit_madvise(struct hmm_kunit_ctx *ctx, unsigned long addr,
			      unsigned long len, int advice)
{
	KUNIT_ASSERT_EQ(ctx->test, do_madvise(ctx->mm, addr, len, advice), 0);
}

static unsigned long hmm_kunit_pattern(const struct hmm_kunit_ctx *ctx,
				       unsigned long addr)
{
	return ctx->pattern + ((addr - ctx->origin) >> PAGE_SHIFT);
}

/* Write its pattern into each page of [start, end) through @alias. */
static void hmm_kunit_fill_at(struct hmm_kunit_ctx *ctx, unsigned long start,
			      unsigned long end, unsigned long alias)
{
	unsigned long addr;

	for (addr = start; addr < end; addr += PAGE_SIZE)
		KUNIT_ASSERT_EQ(ctx->test,
				put_user(hmm_kunit_pattern(ctx, addr),
					 (unsigned long __user *)(alias + addr - start)),
				0);
}

static void hmm_kunit_fill(struct hmm_kunit_ctx *ctx, unsigned long start,
			   unsigned long end)
{
	hmm_kunit_fill_at(ctx, start, end, start);
}

static void hmm_kunit_touch(struct hmm_kunit_ctx *ctx, unsigned long start,
			    unsigned long end)
{
	unsigned long addr, val __maybe_unused;

	for (addr = start; addr < end; addr += PAGE_SIZE)
		KUNIT_ASSERT_EQ(ctx->test,
				get_user(val, (unsigned long __user *)addr), 0);
}

/*
 * Call hmm_range_fault() the way drivers do: with a fresh notifier sequence
 * and the mmap lock held, starting over from @input after -EBUSY when
 * @retry.
 */
static int hmm_kunit_range_fault(struct hmm_kunit_ctx *ctx,
				 struct hmm_range *range,
				 const unsigned long *input, bool retry)
{
	unsigned long npages = (range->end - range->start) >> PAGE_SHIFT;
	int tries = 0;
	int ret;

	range->notifier = &ctx->notifier;
	do {
		memcpy(range->hmm_pfns, input, npages * sizeof(*input));
		range->notifier_seq = mmu_interval_read_begin(&ctx->notifier);
		mmap_read_lock(ctx->mm);
		ret = hmm_range_fault(range);
		mmap_read_unlock(ctx->mm);
	} while (retry && ret == -EBUSY && ++tries < 64);
	return ret;
}

static unsigned long hmm_kunit_read_word(unsigned long pfn)
{
	unsigned long *p = kmap_local_page(pfn_to_page(pfn));
	unsigned long val = *p;

	kunmap_local(p);
	return val;
}

/* ---- the flag matrix ----------------------------------------------------- */

enum hmm_kunit_class { HMM_SNAPSHOT, HMM_READ, HMM_WRITE, HMM_NR_CLASSES };

/* How the pfn of an entry is checked. */
enum hmm_kunit_pfn {
	PFN_NONE,	/* no pfn: the entry is exactly its flags */
	PFN_ZERO,	/* the zero page */
	PFN_DATA,	/* a system page holding the page's pattern */
	PFN_FRESH,	/* a system page holding zeroes, not the zero page */
	PFN_DEVICE,	/* the device page the test made, with the pattern */
};

/**
 * struct hmm_kunit_expect - expected result for one request class
 * @ret: return value of hmm_range_fault()
 * @flags: top byte of every entry (valid, write, error, order), ...
 * @may: ... except these bits, which may or may not be set
 * @pfn: how to check the pfn
 */
struct hmm_kunit_expect {
	int ret;
	unsigned long flags;
	unsigned long may;
	enum hmm_kunit_pfn pfn;
};

/* The dev_private_owner a matrix range is walked with. */
enum hmm_kunit_range_owner {
	HMM_KUNIT_OWN,		/* the owner of the suite's device pages */
	HMM_KUNIT_OTHER,	/* another driver's */
	HMM_KUNIT_NO_OWNER,	/* NULL, as drivers without device memory */
};

struct hmm_kunit_kind {
	const char *name;
	/* Map and populate, set ctx->origin, return the range's npages. */
	unsigned long (*setup)(struct hmm_kunit_ctx *ctx);
	enum hmm_kunit_range_owner owner;
	struct hmm_kunit_expect expect[HMM_NR_CLASSES];
};

struct hmm_kunit_mode {
	const char *name;
	enum hmm_kunit_class class;
	unsigned long default_flags;
	unsigned long pfn_flags_mask;
	unsigned long input;
};

static const struct hmm_kunit_mode hmm_kunit_modes[] = {
	/* Input that would ask for a write fault, masked away. */
	{ "snapshot", HMM_SNAPSHOT, 0, 0, ~0UL },
	/* REQ_WRITE without REQ_FAULT asks for nothing. */
	{ "write-without-fault", HMM_SNAPSHOT, HMM_PFN_REQ_WRITE, 0, 0 },
	{ "read-default", HMM_READ, HMM_PFN_REQ_FAULT, 0, ~0UL },
	{ "read-per-page", HMM_READ, 0, ~0UL, HMM_PFN_REQ_FAULT },
	{ "read-mask-drops-write", HMM_READ, 0, HMM_PFN_REQ_FAULT,
	  HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE },
	{ "write-default", HMM_WRITE, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE,
	  0, 0 },
	{ "write-per-page", HMM_WRITE, 0, ~0UL,
	  HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE },
	/* Read by default, write per page, as RDMA ODP does. */
	{ "write-mask-adds-write", HMM_WRITE, HMM_PFN_REQ_FAULT,
	  HMM_PFN_REQ_WRITE, HMM_PFN_REQ_WRITE },
};

static unsigned long hmm_kunit_setup_none(struct hmm_kunit_ctx *ctx)
{
	ctx->origin = hmm_kunit_map_anon(ctx, 2 * PAGE_SIZE,
					 PROT_READ | PROT_WRITE);
	return 2;
}

static unsigned long hmm_kunit_setup_zero(struct hmm_kunit_ctx *ctx)
{
	ctx->origin = hmm_kunit_map_anon(ctx, 2 * PAGE_SIZE,
					 PROT_READ | PROT_WRITE);
	hmm_kunit_touch(ctx, ctx->origin, ctx->origin + 2 * PAGE_SIZE);
	return 2;
}

static unsigned long hmm_kunit_setup_rw(struct hmm_kunit_ctx *ctx)
{
	ctx->origin = hmm_kunit_map_anon(ctx, 2 * PAGE_SIZE,
					 PROT_READ | PROT_WRITE);
	hmm_kunit_fill(ctx, ctx->origin, ctx->origin + 2 * PAGE_SIZE);
	return 2;
}

/* A shmem page written through one mapping, read through a read-only one. */
static unsigned long hmm_kunit_setup_ro_shared(struct hmm_kunit_ctx *ctx)
{
	unsigned long len = 2 * PAGE_SIZE, rw;
	struct file *file;

	file = shmem_file_setup("hmm_kunit", len, VM_NORESERVE);
	KUNIT_ASSERT_FALSE(ctx->test, IS_ERR(file));
	rw = kunit_vm_mmap(ctx->test, file, 0, len, PROT_READ | PROT_WRITE,
			   MAP_SHARED, 0);
	ctx->origin = kunit_vm_mmap(ctx->test, file, 0, len, PROT_READ,
				    MAP_SHARED, 0);
	fput(file);
	KUNIT_ASSERT_TRUE(ctx->test, rw && !IS_ERR_VALUE(rw));
	KUNIT_ASSERT_TRUE(ctx->test, ctx->origin && !IS_ERR_VALUE(ctx->origin));
	hmm_kunit_mirror_mm(ctx);
	hmm_kunit_fill_at(ctx, ctx->origin, ctx->origin + len, rw);
	hmm_kunit_touch(ctx, ctx->origin, ctx->origin + len);
	return 2;
}

static unsigned long hmm_kunit_setup_ro_none(struct hmm_kunit_ctx *ctx)
{
	ctx->origin = hmm_kunit_map_anon(ctx, 2 * PAGE_SIZE, PROT_READ);
	return 2;
}

/* A PMD-aligned, MADV_HUGEPAGE block; the range is inside it, unaligned. */
static unsigned long hmm_kunit_thp_block(struct hmm_kunit_ctx *ctx)
{
	unsigned long addr;

	if (!IS_ENABLED(CONFIG_TRANSPARENT_HUGEPAGE))
		kunit_skip(ctx->test, "needs CONFIG_TRANSPARENT_HUGEPAGE");
	addr = hmm_kunit_map_anon(ctx, 2 * PMD_SIZE, PROT_READ | PROT_WRITE);
	addr = ALIGN(addr, PMD_SIZE);
	hmm_kunit_madvise(ctx, addr, PMD_SIZE, MADV_HUGEPAGE);
	ctx->origin = addr + 3 * PAGE_SIZE;
	return addr;
}

static unsigned long hmm_kunit_setup_thp(struct hmm_kunit_ctx *ctx)
{
	unsigned long block = hmm_kunit_thp_block(ctx);

	hmm_kunit_fill(ctx, block, block + PMD_SIZE);
	return 8;
}

static unsigned long hmm_kunit_setup_thp_none(struct hmm_kunit_ctx *ctx)
{
	hmm_kunit_thp_block(ctx);
	return 8;
}

/* A MAP_PRIVATE hugetlb page of PMD size; the range is inside it. */
static unsigned long hmm_kunit_hugetlb_page(struct hmm_kunit_ctx *ctx)
{
	struct file *file;
	unsigned long addr;

	if (!IS_ENABLED(CONFIG_HUGETLBFS))
		kunit_skip(ctx->test, "needs CONFIG_HUGETLBFS");
	file = hugetlb_file_setup(HUGETLB_ANON_FILE, PMD_SIZE, VM_NORESERVE,
				  HUGETLB_ANONHUGE_INODE, PMD_SHIFT);
	KUNIT_ASSERT_FALSE_MSG(ctx->test, IS_ERR(file), "hugetlb file: %ld",
			       PTR_ERR(file));
	addr = kunit_vm_mmap(ctx->test, file, 0, PMD_SIZE,
			     PROT_READ | PROT_WRITE, MAP_PRIVATE, 0);
	fput(file);
	KUNIT_ASSERT_TRUE(ctx->test, addr && !IS_ERR_VALUE(addr));
	hmm_kunit_mirror_mm(ctx);
	ctx->origin = addr + 5 * PAGE_SIZE;
	return addr;
}

static unsigned long hmm_kunit_setup_hugetlb(struct hmm_kunit_ctx *ctx)
{
	unsigned long page = hmm_kunit_hugetlb_page(ctx);

	hmm_kunit_fill(ctx, page, page + PMD_SIZE);
	return 8;
}

static unsigned long hmm_kunit_setup_hugetlb_none(struct hmm_kunit_ctx *ctx)
{
	hmm_kunit_hugetlb_page(ctx);
	return 8;
}

/*
 * Migrate the unpopulated page at @addr to a new device page holding the
 * page's pattern. The device-private entry is writable when the VMA is.
 */
static void hmm_kunit_to_device(struct hmm_kunit_ctx *ctx, unsigned long addr)
{
	unsigned long src = 0, dst = 0, *p;
	struct migrate_vma args = {
		.start		= addr,
		.end		= addr + PAGE_SIZE,
		.src		= &src,
		.dst		= &dst,
		.pgmap_owner	= &hmm_kunit_owner,
		.flags		= MIGRATE_VMA_SELECT_SYSTEM,
	};
	struct page *dpage = NULL;
	int ret;

	mmap_read_lock(ctx->mm);
	args.vma = vma_lookup(ctx->mm, addr);
	ret = args.vma ? migrate_vma_setup(&args) : -EFAULT;
	if (!ret) {
		if (src & MIGRATE_PFN_MIGRATE)
			dpage = hmm_kunit_dev_alloc();
		if (dpage) {
			p = kmap_local_page(hmm_kunit_backing(dpage));
			*p = hmm_kunit_pattern(ctx, addr);
			kunmap_local(p);
			dst = migrate_pfn(page_to_pfn(dpage));
		}
		migrate_vma_pages(&args);
		migrate_vma_finalize(&args);
	}
	mmap_read_unlock(ctx->mm);
	KUNIT_ASSERT_EQ(ctx->test, ret, 0);
	KUNIT_ASSERT_NOT_NULL(ctx->test, dpage);
	KUNIT_ASSERT_TRUE(ctx->test, src & MIGRATE_PFN_MIGRATE);
	ctx->dev_pfn[(addr - ctx->origin) >> PAGE_SHIFT] = page_to_pfn(dpage);
}

static unsigned long hmm_kunit_setup_device(struct hmm_kunit_ctx *ctx,
					    unsigned long prot)
{
	ctx->origin = hmm_kunit_map_anon(ctx, 2 * PAGE_SIZE, prot);
	hmm_kunit_to_device(ctx, ctx->origin);
	hmm_kunit_to_device(ctx, ctx->origin + PAGE_SIZE);
	return 2;
}

static unsigned long hmm_kunit_setup_dev_rw(struct hmm_kunit_ctx *ctx)
{
	return hmm_kunit_setup_device(ctx, PROT_READ | PROT_WRITE);
}

static unsigned long hmm_kunit_setup_dev_ro(struct hmm_kunit_ctx *ctx)
{
	return hmm_kunit_setup_device(ctx, PROT_READ);
}

static unsigned long hmm_kunit_setup_exclusive(struct hmm_kunit_ctx *ctx)
{
	struct page *pages[2] = {};
	int i, ret;

	ctx->origin = hmm_kunit_map_anon(ctx, 2 * PAGE_SIZE,
					 PROT_READ | PROT_WRITE);
	hmm_kunit_fill(ctx, ctx->origin, ctx->origin + 2 * PAGE_SIZE);
	mmap_read_lock(ctx->mm);
	ret = make_device_exclusive_range(ctx->mm, ctx->origin,
					  ctx->origin + 2 * PAGE_SIZE, pages,
					  &hmm_kunit_owner);
	mmap_read_unlock(ctx->mm);
	for (i = 0; i < ret && i < 2; i++) {
		if (pages[i]) {
			unlock_page(pages[i]);
			put_page(pages[i]);
		}
	}
	KUNIT_ASSERT_EQ(ctx->test, ret, 2);
	KUNIT_ASSERT_NOT_NULL(ctx->test, pages[0]);
	KUNIT_ASSERT_NOT_NULL(ctx->test, pages[1]);
	return 2;
}

static int hmm_kunit_pfnmap_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long pfn = page_to_pfn(hmm_kunit_dev.special_page);
	unsigned long addr;
	int ret;

	for (addr = vma->vm_start; addr < vma->vm_end; addr += PAGE_SIZE) {
		ret = remap_pfn_range(vma, addr, pfn, PAGE_SIZE,
				      vma->vm_page_prot);
		if (ret)
			return ret;
	}
	return 0;
}

static const struct file_operations hmm_kunit_pfnmap_fops = {
	.mmap = hmm_kunit_pfnmap_mmap,
};

/* Special PTEs in a VM_MIXEDMAP VMA: a pfn with no page the VMA shares. */
static vm_fault_t hmm_kunit_mixed_fault(struct vm_fault *vmf)
{
	return vmf_insert_mixed(vmf->vma, vmf->address,
				page_to_pfn_t(hmm_kunit_dev.special_page));
}

static const struct vm_operations_struct hmm_kunit_mixed_vm_ops = {
	.fault = hmm_kunit_mixed_fault,
};

static int hmm_kunit_mixed_mmap(struct file *file, struct vm_area_struct *vma)
{
	vm_flags_set(vma, VM_MIXEDMAP);
	vma->vm_ops = &hmm_kunit_mixed_vm_ops;
	return 0;
}

static const struct file_operations hmm_kunit_mixed_fops = {
	.mmap = hmm_kunit_mixed_mmap,
};

/*
 * Normal pages, not special PTEs, in a VM_IO VMA: only the VMA's flags say
 * the device must not use them.
 */
static int hmm_kunit_io_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long addr;
	int ret;

	vm_flags_set(vma, VM_IO | VM_MIXEDMAP);
	for (addr = vma->vm_start; addr < vma->vm_end; addr += PAGE_SIZE) {
		ret = vm_insert_page(vma, addr, hmm_kunit_dev.special_page);
		if (ret)
			return ret;
	}
	return 0;
}

static const struct file_operations hmm_kunit_io_fops = {
	.mmap = hmm_kunit_io_mmap,
};

static unsigned long hmm_kunit_map_special(struct hmm_kunit_ctx *ctx,
					   const struct file_operations *fops)
{
	struct file *file;

	file = anon_inode_getfile("hmm_kunit", fops, NULL, O_RDWR);
	KUNIT_ASSERT_FALSE(ctx->test, IS_ERR(file));
	ctx->origin = hmm_kunit_mmap(ctx, file, 2 * PAGE_SIZE,
				     PROT_READ | PROT_WRITE, MAP_SHARED);
	fput(file);
	hmm_kunit_touch(ctx, ctx->origin, ctx->origin + 2 * PAGE_SIZE);
	return 2;
}

static unsigned long hmm_kunit_setup_pfnmap(struct hmm_kunit_ctx *ctx)
{
	return hmm_kunit_map_special(ctx, &hmm_kunit_pfnmap_fops);
}

static unsigned long hmm_kunit_setup_mixedmap(struct hmm_kunit_ctx *ctx)
{
	return hmm_kunit_map_special(ctx, &hmm_kunit_mixed_fops);
}

static unsigned long hmm_kunit_setup_io(struct hmm_kunit_ctx *ctx)
{
	return hmm_kunit_map_special(ctx, &hmm_kunit_io_fops);
}

static unsigned long hmm_kunit_setup_prot_none(struct hmm_kunit_ctx *ctx)
{
	ctx->origin = hmm_kunit_map_anon(ctx, 2 * PAGE_SIZE, PROT_NONE);
	return 2;
}

/* Two pages where a mapping was removed, between two that stay. */
static unsigned long hmm_kunit_setup_no_vma(struct hmm_kunit_ctx *ctx)
{
	unsigned long addr;

	addr = hmm_kunit_map_anon(ctx, 4 * PAGE_SIZE, PROT_READ | PROT_WRITE);
	ctx->origin = addr + PAGE_SIZE;
	KUNIT_ASSERT_EQ(ctx->test, vm_munmap(ctx->origin, 2 * PAGE_SIZE), 0);
	return 2;
}

#define HMM_ALL(...)	{ { __VA_ARGS__ }, { __VA_ARGS__ }, { __VA_ARGS__ } }
#define HMM_UNUSABLE	{ { 0, E, 0, PFN_NONE }, { -EFAULT }, { -EFAULT } }

static const struct hmm_kunit_kind hmm_kunit_kinds[] = {
	{ "none", hmm_kunit_setup_none, HMM_KUNIT_OWN,
	  { { 0, 0, 0, PFN_NONE }, { 0, V, 0, PFN_ZERO },
	    { 0, V | W, 0, PFN_FRESH } } },
	{ "zero", hmm_kunit_setup_zero, HMM_KUNIT_OWN,
	  { { 0, V, 0, PFN_ZERO }, { 0, V, 0, PFN_ZERO },
	    { 0, V | W, 0, PFN_FRESH } } },
	{ "read-write", hmm_kunit_setup_rw, HMM_KUNIT_OWN,
	  HMM_ALL(0, V | W, 0, PFN_DATA) },
	{ "read-only-shared", hmm_kunit_setup_ro_shared, HMM_KUNIT_OWN,
	  { { 0, V, 0, PFN_DATA }, { 0, V, 0, PFN_DATA }, { -EPERM } } },
	{ "read-only-none", hmm_kunit_setup_ro_none, HMM_KUNIT_OWN,
	  { { 0, 0, 0, PFN_NONE }, { 0, V, 0, PFN_ZERO }, { -EPERM } } },
	{ "thp", hmm_kunit_setup_thp, HMM_KUNIT_OWN,
	  HMM_ALL(0, V | W | O(HMM_KUNIT_PMD_ORDER), 0, PFN_DATA) },
	/* A read fault maps the huge zero page, or a THP without it. */
	{ "thp-none", hmm_kunit_setup_thp_none, HMM_KUNIT_OWN,
	  { { 0, 0, 0, PFN_NONE },
	    { 0, V | O(HMM_KUNIT_PMD_ORDER), W, PFN_FRESH },
	    { 0, V | W | O(HMM_KUNIT_PMD_ORDER), 0, PFN_FRESH } } },
	{ "hugetlb", hmm_kunit_setup_hugetlb, HMM_KUNIT_OWN,
	  HMM_ALL(0, V | W | O(HMM_KUNIT_PMD_ORDER), 0, PFN_DATA) },
	/* A read fault of a private hugetlb mapping maps it read-only. */
	{ "hugetlb-none", hmm_kunit_setup_hugetlb_none, HMM_KUNIT_OWN,
	  { { 0, 0, 0, PFN_NONE },
	    { 0, V | O(HMM_KUNIT_PMD_ORDER), 0, PFN_FRESH },
	    { 0, V | W | O(HMM_KUNIT_PMD_ORDER), 0, PFN_FRESH } } },
	/* Our own device pages are reported as they are, never faulted. */
	{ "device-own", hmm_kunit_setup_dev_rw, HMM_KUNIT_OWN,
	  HMM_ALL(0, V | W, 0, PFN_DEVICE) },
	{ "device-own-read-only", hmm_kunit_setup_dev_ro, HMM_KUNIT_OWN,
	  HMM_ALL(0, V, 0, PFN_DEVICE) },
	/* Another owner's pages come back to system memory on request. */
	{ "device-other", hmm_kunit_setup_dev_rw, HMM_KUNIT_OTHER,
	  { { 0, 0, 0, PFN_NONE }, { 0, V, W, PFN_DATA },
	    { 0, V | W, 0, PFN_DATA } } },
	/* A range without an owner owns no device page. */
	{ "device-no-owner", hmm_kunit_setup_dev_rw, HMM_KUNIT_NO_OWNER,
	  { { 0, 0, 0, PFN_NONE }, { 0, V, W, PFN_DATA },
	    { 0, V | W, 0, PFN_DATA } } },
	{ "device-exclusive", hmm_kunit_setup_exclusive, HMM_KUNIT_OWN,
	  { { 0, 0, 0, PFN_NONE }, { 0, V, W, PFN_DATA },
	    { 0, V | W, 0, PFN_DATA } } },
	{ "pfnmap", hmm_kunit_setup_pfnmap, HMM_KUNIT_OWN, HMM_UNUSABLE },
	{ "mixedmap-special", hmm_kunit_setup_mixedmap, HMM_KUNIT_OWN, HMM_UNUSABLE },
	{ "io-pages", hmm_kunit_setup_io, HMM_KUNIT_OWN, HMM_UNUSABLE },
	{ "prot-none", hmm_kunit_setup_prot_none, HMM_KUNIT_OWN, HMM_UNUSABLE },
	{ "no-vma", hmm_kunit_setup_no_vma, HMM_KUNIT_OWN, HMM_UNUSABLE },
};

struct hmm_kunit_matrix_case {
	const struct hmm_kunit_kind *kind;
	const struct hmm_kunit_mode *mode;
};

static struct hmm_kunit_matrix_case
hmm_kunit_matrix[ARRAY_SIZE(hmm_kunit_kinds) * ARRAY_SIZE(hmm_kunit_modes)];

static const void *hmm_kunit_matrix_gen(const void *prev, char *desc)
{
	const struct hmm_kunit_matrix_case *c = prev;
	size_t i;

	if (!c) {
		for (i = 0; i < ARRAY_SIZE(hmm_kunit_matrix); i++) {
			hmm_kunit_matrix[i].kind = &hmm_kunit_kinds[i /
				ARRAY_SIZE(hmm_kunit_modes)];
			hmm_kunit_matrix[i].mode = &hmm_kunit_modes[i %
				ARRAY_SIZE(hmm_kunit_modes)];
		}
		c = hmm_kunit_matrix;
	} else if (++c == hmm_kunit_matrix + ARRAY_SIZE(hmm_kunit_matrix)) {
		return NULL;
	}
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "%s %s", c->kind->name,
		 c->mode->name);
	return c;
}

static void hmm_kunit_check_pfn(struct hmm_kunit_ctx *ctx, unsigned long addr,
				unsigned long pfn, enum hmm_kunit_pfn check)
{
	struct kunit *test = ctx->test;
	unsigned long i = (addr - ctx->origin) >> PAGE_SHIFT;

	if (check == PFN_NONE) {
		KUNIT_EXPECT_EQ_MSG(test, pfn, 0, "at %#lx", addr);
		return;
	}
	if (check == PFN_ZERO) {
		KUNIT_EXPECT_TRUE_MSG(test, is_zero_pfn(pfn),
				      "at %#lx: pfn %#lx", addr, pfn);
		return;
	}
	if (check == PFN_DEVICE) {
		KUNIT_EXPECT_EQ_MSG(test, pfn, ctx->dev_pfn[i], "at %#lx", addr);
		if (hmm_kunit_is_dev_pfn(pfn)) {
			struct page *backing;

			backing = hmm_kunit_backing(pfn_to_page(pfn));
			KUNIT_EXPECT_EQ(test,
					hmm_kunit_read_word(page_to_pfn(backing)),
					hmm_kunit_pattern(ctx, addr));
		}
		return;
	}
	/* A system page. */
	KUNIT_EXPECT_FALSE_MSG(test, is_zero_pfn(pfn), "at %#lx", addr);
	KUNIT_EXPECT_FALSE_MSG(test, hmm_kunit_is_dev_pfn(pfn), "at %#lx",
			       addr);
	if (!pfn_valid(pfn) || is_zero_pfn(pfn) || hmm_kunit_is_dev_pfn(pfn)) {
		KUNIT_FAIL(test, "at %#lx: pfn %#lx is no system page", addr,
			   pfn);
		return;
	}
	KUNIT_EXPECT_EQ_MSG(test, hmm_kunit_read_word(pfn),
			    check == PFN_DATA ? hmm_kunit_pattern(ctx, addr) : 0,
			    "at %#lx: pfn %#lx", addr, pfn);
}

static void hmm_kunit_check_entry(struct hmm_kunit_ctx *ctx,
				  unsigned long addr, unsigned long entry,
				  const struct hmm_kunit_expect *expect)
{
	unsigned long flags = entry & HMM_PFN_FLAGS;

	KUNIT_EXPECT_EQ_MSG(ctx->test, flags & ~expect->may, expect->flags,
			    "at %#lx: entry %#lx", addr, entry);
	hmm_kunit_check_pfn(ctx, addr, entry & ~HMM_PFN_FLAGS, expect->pfn);
}

static void *hmm_kunit_owner_of(enum hmm_kunit_range_owner owner)
{
	switch (owner) {
	case HMM_KUNIT_OWN:
		return &hmm_kunit_owner;
	case HMM_KUNIT_OTHER:
		return &hmm_kunit_other_owner;
	default:
		return NULL;
	}
}

static void hmm_range_fault_matrix(struct kunit *test)
{
	const struct hmm_kunit_matrix_case *c = test->param_value;
	const struct hmm_kunit_expect *expect = &c->kind->expect[c->mode->class];
	unsigned long input[HMM_KUNIT_MAX_PAGES], pfns[HMM_KUNIT_MAX_PAGES];
	struct hmm_kunit_ctx *ctx = hmm_kunit_ctx_create(test);
	struct hmm_range range = {
		.default_flags = c->mode->default_flags,
		.pfn_flags_mask = c->mode->pfn_flags_mask,
		.hmm_pfns = pfns,
		.dev_private_owner = hmm_kunit_owner_of(c->kind->owner),
	};
	unsigned long npages, i;
	int ret;

	npages = c->kind->setup(ctx);
	KUNIT_ASSERT_LE(test, npages, HMM_KUNIT_MAX_PAGES);
	range.start = ctx->origin;
	range.end = ctx->origin + npages * PAGE_SIZE;
	for (i = 0; i < npages; i++)
		input[i] = c->mode->input;

	ret = hmm_kunit_range_fault(ctx, &range, input, true);
	KUNIT_ASSERT_EQ(test, ret, expect->ret);
	if (ret)
		return;
	for (i = 0; i < npages; i++)
		hmm_kunit_check_entry(ctx, range.start + i * PAGE_SIZE,
				      pfns[i], expect);
}

/* ---- focused cases -------------------------------------------------------- */

static void hmm_kunit_check_flags(struct kunit *test, const unsigned long *pfns,
				  const unsigned long *want, unsigned long n)
{
	unsigned long i;

	for (i = 0; i < n; i++)
		KUNIT_EXPECT_EQ_MSG(test, pfns[i] & HMM_PFN_FLAGS, want[i],
				    "page %lu: entry %#lx", i, pfns[i]);
}

/* Only pages that ask for a fault are faulted, not their neighbours. */
static void hmm_range_fault_faults_only_requested(struct kunit *test)
{
	const unsigned long r = HMM_PFN_REQ_FAULT, w = HMM_PFN_REQ_WRITE;
	const unsigned long input[6] = { 0, r, 0, r | w, 0, 0 };
	const unsigned long none[6] = {};
	const unsigned long want[6] = { 0, V, 0, V | W, 0, 0 };
	struct hmm_kunit_ctx *ctx = hmm_kunit_ctx_create(test);
	unsigned long pfns[6];
	struct hmm_range range = {
		.pfn_flags_mask = ~0UL,
		.hmm_pfns = pfns,
		.dev_private_owner = &hmm_kunit_owner,
	};

	range.start = hmm_kunit_map_anon(ctx, 6 * PAGE_SIZE,
					 PROT_READ | PROT_WRITE);
	range.end = range.start + 6 * PAGE_SIZE;
	KUNIT_ASSERT_EQ(test, hmm_kunit_range_fault(ctx, &range, input, true),
			0);
	hmm_kunit_check_flags(test, pfns, want, 6);
	KUNIT_EXPECT_TRUE(test, is_zero_pfn(pfns[1] & ~HMM_PFN_FLAGS));

	/* A snapshot sees the same: nothing else was mapped. */
	KUNIT_ASSERT_EQ(test, hmm_kunit_range_fault(ctx, &range, none, false),
			0);
	hmm_kunit_check_flags(test, pfns, want, 6);
}

/*
 * A write fault the call itself takes (a COW of the zero page) invalidates
 * the range: -EBUSY, with the entries before that page holding their
 * output and the rest still holding their input.
 */
static void hmm_range_fault_busy_after_own_fault(struct kunit *test)
{
	const unsigned long r = HMM_PFN_REQ_FAULT, w = HMM_PFN_REQ_WRITE;
	const unsigned long marker = 0x1234;
	const unsigned long input[4] = { r, r, r | w, marker };
	struct hmm_kunit_ctx *ctx = hmm_kunit_ctx_create(test);
	unsigned long pfns[4];
	struct hmm_range range = {
		.pfn_flags_mask = ~0UL,
		.hmm_pfns = pfns,
		.dev_private_owner = &hmm_kunit_owner,
	};
	int before, i;

	ctx->origin = hmm_kunit_map_anon(ctx, 4 * PAGE_SIZE,
					 PROT_READ | PROT_WRITE);
	hmm_kunit_fill(ctx, ctx->origin, ctx->origin + 2 * PAGE_SIZE);
	hmm_kunit_touch(ctx, ctx->origin + 2 * PAGE_SIZE,
			ctx->origin + 3 * PAGE_SIZE);
	range.start = ctx->origin;
	range.end = ctx->origin + 4 * PAGE_SIZE;

	before = atomic_read(&ctx->invalidations);
	KUNIT_ASSERT_EQ(test, hmm_kunit_range_fault(ctx, &range, input, false),
			-EBUSY);
	KUNIT_EXPECT_GT(test, atomic_read(&ctx->invalidations), before);
	for (i = 0; i < 2; i++)
		hmm_kunit_check_entry(ctx, range.start + i * PAGE_SIZE, pfns[i],
				      &(struct hmm_kunit_expect)
				      { 0, V | W, 0, PFN_DATA });
	KUNIT_EXPECT_EQ(test, pfns[2], r | w);
	KUNIT_EXPECT_EQ(test, pfns[3], marker);

	/* Retried with a new sequence, the call completes. */
	KUNIT_ASSERT_EQ(test, hmm_kunit_range_fault(ctx, &range, input, true),
			0);
	KUNIT_EXPECT_EQ(test, pfns[2] & HMM_PFN_FLAGS, V | W);
	KUNIT_EXPECT_FALSE(test, is_zero_pfn(pfns[2] & ~HMM_PFN_FLAGS));
	KUNIT_EXPECT_EQ(test, pfns[3], 0);
}

/* An invalidation between mmu_interval_read_begin() and the call. */
static void hmm_range_fault_busy_when_invalidated(struct kunit *test)
{
	struct hmm_kunit_ctx *ctx = hmm_kunit_ctx_create(test);
	unsigned long pfns[2] = { 0x55, 0x66 };
	struct hmm_range range = {
		.default_flags = HMM_PFN_REQ_FAULT,
		.hmm_pfns = pfns,
		.dev_private_owner = &hmm_kunit_owner,
	};
	int ret;

	range.start = hmm_kunit_map_anon(ctx, 2 * PAGE_SIZE,
					 PROT_READ | PROT_WRITE);
	range.end = range.start + 2 * PAGE_SIZE;
	ctx->origin = range.start;
	hmm_kunit_fill(ctx, range.start, range.end);
	range.notifier = &ctx->notifier;
	range.notifier_seq = mmu_interval_read_begin(&ctx->notifier);
	hmm_kunit_madvise(ctx, range.start, PAGE_SIZE, MADV_DONTNEED);

	mmap_read_lock(ctx->mm);
	ret = hmm_range_fault(&range);
	mmap_read_unlock(ctx->mm);
	KUNIT_EXPECT_EQ(test, ret, -EBUSY);
	KUNIT_EXPECT_EQ(test, pfns[0], 0x55);
	KUNIT_EXPECT_EQ(test, pfns[1], 0x66);
}

/* Where there is no VMA, only a fault request fails the call. */
static void hmm_range_fault_no_vma_request(struct kunit *test)
{
	const unsigned long r = HMM_PFN_REQ_FAULT;
	const unsigned long around[3] = { r, 0, r };
	const unsigned long inside[3] = { 0, r, 0 };
	const unsigned long want[3] = { V, E, V };
	struct hmm_kunit_ctx *ctx = hmm_kunit_ctx_create(test);
	unsigned long pfns[3];
	struct hmm_range range = {
		.pfn_flags_mask = ~0UL,
		.hmm_pfns = pfns,
		.dev_private_owner = &hmm_kunit_owner,
	};

	range.start = hmm_kunit_map_anon(ctx, 3 * PAGE_SIZE,
					 PROT_READ | PROT_WRITE);
	range.end = range.start + 3 * PAGE_SIZE;
	KUNIT_ASSERT_EQ(test, vm_munmap(range.start + PAGE_SIZE, PAGE_SIZE), 0);

	KUNIT_ASSERT_EQ(test, hmm_kunit_range_fault(ctx, &range, around, true),
			0);
	hmm_kunit_check_flags(test, pfns, want, 3);
	KUNIT_EXPECT_EQ(test, hmm_kunit_range_fault(ctx, &range, inside, true),
			-EFAULT);
}

static void hmm_range_fault_bad_range(struct kunit *test)
{
	struct hmm_kunit_ctx *ctx = hmm_kunit_ctx_create(test);
	unsigned long input[2] = {}, pfns[2];
	struct hmm_range range = { .hmm_pfns = pfns };
	unsigned long addr;

	addr = hmm_kunit_map_anon(ctx, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE);
	range.start = addr;
	range.end = addr;
	KUNIT_EXPECT_EQ(test, hmm_kunit_range_fault(ctx, &range, input, false),
			-EINVAL);
	range.start = addr + 8;
	range.end = addr + PAGE_SIZE + 8;
	KUNIT_EXPECT_EQ(test, hmm_kunit_range_fault(ctx, &range, input, false),
			-EINVAL);
}

/* A fatal signal ends the call before it walks or faults anything. */
static void hmm_range_fault_fatal_signal(struct kunit *test)
{
	const unsigned long input[4] = { HMM_PFN_REQ_FAULT, 1, 2, 3 };
	struct hmm_kunit_ctx *ctx = hmm_kunit_ctx_create(test);
	unsigned long pfns[4];
	struct hmm_range range = {
		.pfn_flags_mask = ~0UL,
		.hmm_pfns = pfns,
		.dev_private_owner = &hmm_kunit_owner,
	};
	bool pending;
	int ret;

	range.start = hmm_kunit_map_anon(ctx, 4 * PAGE_SIZE,
					 PROT_READ | PROT_WRITE);
	range.end = range.start + 4 * PAGE_SIZE;

	/* Kernel threads ignore signals unless they allow them. */
	allow_signal(SIGKILL);
	send_sig(SIGKILL, current, 1);
	pending = fatal_signal_pending(current);
	ret = hmm_kunit_range_fault(ctx, &range, input, false);
	flush_signals(current);
	disallow_signal(SIGKILL);

	KUNIT_ASSERT_TRUE(test, pending);
	KUNIT_EXPECT_EQ(test, ret, -EINTR);
	KUNIT_EXPECT_EQ(test, pfns[0], HMM_PFN_REQ_FAULT);

	/* Without the signal, the same call faults the page in. */
	KUNIT_ASSERT_EQ(test, hmm_kunit_range_fault(ctx, &range, input, true),
			0);
	KUNIT_EXPECT_EQ(test, pfns[0] & HMM_PFN_FLAGS, V);
	KUNIT_EXPECT_EQ(test, pfns[1], 0);
}

/* Write-protect the PTE at @addr if it is present, and say if it was. */
static bool hmm_kunit_wrprotect_at(struct mm_struct *mm, pmd_t *pmdp,
				   unsigned long addr)
{
	spinlock_t *ptl;	/* page-table lock of the PTE */
	bool present;
	pte_t *ptep;

	ptep = pte_offset_map_lock(mm, pmdp, addr, &ptl);
	if (!ptep)
		return false;
	/* The mapped table is an RCU section sparse cannot see. */
	__acquire(RCU);
	present = pte_present(ptep_get(ptep));
	if (present)
		ptep_set_wrprotect(mm, addr, ptep);
	pte_unmap_unlock(ptep, ptl);
	return present;
}

/* Write-protect the present PTE at @addr, as fork() does to its parent's. */
static void hmm_kunit_wrprotect_pte(struct hmm_kunit_ctx *ctx,
				    unsigned long addr)
{
	struct vm_area_struct *vma;
	bool present = false;
	pmd_t *pmdp;

	mmap_write_lock(ctx->mm);
	vma = vma_lookup(ctx->mm, addr);
	pmdp = vma ? mm_find_pmd(ctx->mm, addr) : NULL;
	if (pmdp)
		present = hmm_kunit_wrprotect_at(ctx->mm, pmdp, addr);
	if (present)
		flush_tlb_range(vma, addr, addr + PAGE_SIZE);
	mmap_write_unlock(ctx->mm);
	KUNIT_ASSERT_TRUE(ctx->test, present);
}

/*
 * PTEs that map consecutive pfns, as a THP whose PMD was split leaves them,
 * are reported page by page, down to a single PTE with other bits or none
 * among them.
 */
static void hmm_range_fault_pte_runs(struct kunit *test)
{
	const unsigned long npages = HMM_KUNIT_MAX_PAGES;
	const unsigned long hole = 5, read_only = 9;
	struct hmm_kunit_ctx *ctx = hmm_kunit_ctx_create(test);
	unsigned long none[HMM_KUNIT_MAX_PAGES] = {};
	unsigned long pfns[HMM_KUNIT_MAX_PAGES];
	struct hmm_range range = {
		.hmm_pfns = pfns,
		.dev_private_owner = &hmm_kunit_owner,
	};
	unsigned long i, first_pfn, want;

	range.start = hmm_kunit_thp_block(ctx);
	range.end = range.start + npages * PAGE_SIZE;
	ctx->origin = range.start;
	hmm_kunit_fill(ctx, range.start, range.start + PMD_SIZE);
	KUNIT_ASSERT_EQ(test, hmm_kunit_range_fault(ctx, &range, none, true),
			0);
	if (hmm_pfn_to_map_order(pfns[0]) != HMM_KUNIT_PMD_ORDER)
		kunit_skip(test, "no THP to split: entry %#lx", pfns[0]);
	first_pfn = pfns[0] & ~HMM_PFN_FLAGS;

	/* Zapping one page maps the rest of the THP with PTEs. */
	hmm_kunit_madvise(ctx, range.start + hole * PAGE_SIZE, PAGE_SIZE,
			  MADV_DONTNEED);
	hmm_kunit_wrprotect_pte(ctx, range.start + read_only * PAGE_SIZE);
	KUNIT_ASSERT_EQ(test, hmm_kunit_range_fault(ctx, &range, none, true),
			0);
	for (i = 0; i < npages; i++) {
		want = first_pfn + i;
		if (i == hole)
			want = 0;
		else if (i == read_only)
			want |= V;
		else
			want |= V | W;
		KUNIT_EXPECT_EQ_MSG(test, pfns[i], want, "page %lu", i);
	}
	hmm_kunit_check_entry(ctx, range.start + (npages - 1) * PAGE_SIZE,
			      pfns[npages - 1],
			      &(struct hmm_kunit_expect){ 0, V | W, 0, PFN_DATA });
}

/*
 * A read-only PTE only stands for the next one when every page asks for the
 * same thing: with per-page requests, a write request among read-only pages
 * is faulted for that page alone.
 */
static void hmm_range_fault_per_page_write_among_read_only(struct kunit *test)
{
	const unsigned long r = HMM_PFN_REQ_FAULT, w = HMM_PFN_REQ_WRITE;
	const unsigned long input[6] = { 0, r, r | w, 0, r | w, r };
	const unsigned long want[6] = { V, V, V | W, V, V | W, V };
	struct hmm_kunit_ctx *ctx = hmm_kunit_ctx_create(test);
	unsigned long pfns[6], i;
	struct hmm_range range = {
		.pfn_flags_mask = ~0UL,
		.hmm_pfns = pfns,
		.dev_private_owner = &hmm_kunit_owner,
	};

	range.start = hmm_kunit_map_anon(ctx, 6 * PAGE_SIZE,
					 PROT_READ | PROT_WRITE);
	range.end = range.start + 6 * PAGE_SIZE;
	ctx->origin = range.start;
	hmm_kunit_fill(ctx, range.start, range.end);
	for (i = 0; i < 6; i++)
		hmm_kunit_wrprotect_pte(ctx, range.start + i * PAGE_SIZE);
	KUNIT_ASSERT_EQ(test, hmm_kunit_range_fault(ctx, &range, input, true),
			0);
	hmm_kunit_check_flags(test, pfns, want, 6);
	for (i = 0; i < 6; i++)
		hmm_kunit_check_entry(ctx, range.start + i * PAGE_SIZE, pfns[i],
				      &(struct hmm_kunit_expect){
					0, want[i], 0, PFN_DATA });
}

static void hmm_kunit_kvfree(void *p)
{
	kvfree(p);
}

static unsigned long *hmm_kunit_kvcalloc(struct kunit *test, unsigned long n)
{
	unsigned long *p = kvcalloc(n, sizeof(*p), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, p);
	KUNIT_ASSERT_EQ(test, kunit_add_action_or_reset(test, hmm_kunit_kvfree,
							p), 0);
	return p;
}

/*
 * A range ten times the size of memory, with a few pages populated, is
 * reported whole, and only the pages asked for are faulted.
 */
static void hmm_range_fault_sparse_huge_range(struct kunit *test)
{
	const unsigned long npages = HMM_KUNIT_SPARSE_SIZE >> PAGE_SHIFT;
	const unsigned long filled[] = { 0, npages / 2 + 3, npages - 1 };
	const unsigned long faulted[] = { 1, npages / 3, npages - 2 };
	const unsigned long nfilled = ARRAY_SIZE(filled);
	const unsigned long nfaulted = ARRAY_SIZE(faulted);
	struct hmm_kunit_ctx *ctx = hmm_kunit_ctx_create(test);
	unsigned long *input, *pfns, i, n, valid;
	struct hmm_range range = {
		.pfn_flags_mask = ~0UL,
		.dev_private_owner = &hmm_kunit_owner,
	};

	input = hmm_kunit_kvcalloc(test, npages);
	pfns = hmm_kunit_kvcalloc(test, npages);
	range.hmm_pfns = pfns;
	range.start = hmm_kunit_map_anon(ctx, HMM_KUNIT_SPARSE_SIZE,
					 PROT_READ | PROT_WRITE);
	range.end = range.start + HMM_KUNIT_SPARSE_SIZE;
	ctx->origin = range.start;
	/* Keep faults to one page each, whatever the THP mode. */
	if (IS_ENABLED(CONFIG_TRANSPARENT_HUGEPAGE))
		hmm_kunit_madvise(ctx, range.start, HMM_KUNIT_SPARSE_SIZE,
				  MADV_NOHUGEPAGE);
	for (i = 0; i < ARRAY_SIZE(filled); i++) {
		unsigned long addr = range.start + filled[i] * PAGE_SIZE;

		hmm_kunit_fill(ctx, addr, addr + PAGE_SIZE);
	}

	KUNIT_ASSERT_EQ(test, hmm_kunit_range_fault(ctx, &range, input, true),
			0);
	for (n = 0, valid = 0; n < npages; n++)
		valid += !!pfns[n];
	KUNIT_EXPECT_EQ(test, valid, nfilled);
	for (i = 0; i < ARRAY_SIZE(filled); i++)
		hmm_kunit_check_entry(ctx, range.start + filled[i] * PAGE_SIZE,
				      pfns[filled[i]],
				      &(struct hmm_kunit_expect)
				      { 0, V | W, 0, PFN_DATA });

	for (i = 0; i < ARRAY_SIZE(faulted); i++)
		input[faulted[i]] = HMM_PFN_REQ_FAULT;
	KUNIT_ASSERT_EQ(test, hmm_kunit_range_fault(ctx, &range, input, true),
			0);
	for (n = 0, valid = 0; n < npages; n++)
		valid += !!pfns[n];
	KUNIT_EXPECT_EQ(test, valid, nfilled + nfaulted);
	for (i = 0; i < ARRAY_SIZE(faulted); i++)
		hmm_kunit_check_entry(ctx, range.start + faulted[i] * PAGE_SIZE,
				      pfns[faulted[i]],
				      &(struct hmm_kunit_expect)
				      { 0, V, 0, PFN_ZERO });
}

static struct kunit_case hmm_test_cases[] = {
	KUNIT_CASE_PARAM(hmm_range_fault_matrix, hmm_kunit_matrix_gen),
	KUNIT_CASE(hmm_range_fault_faults_only_requested),
	KUNIT_CASE(hmm_range_fault_busy_after_own_fault),
	KUNIT_CASE(hmm_range_fault_busy_when_invalidated),
	KUNIT_CASE(hmm_range_fault_no_vma_request),
	KUNIT_CASE(hmm_range_fault_bad_range),
	KUNIT_CASE(hmm_range_fault_fatal_signal),
	KUNIT_CASE(hmm_range_fault_pte_runs),
	KUNIT_CASE(hmm_range_fault_per_page_write_among_read_only),
	KUNIT_CASE_SLOW(hmm_range_fault_sparse_huge_range),
	{}
};

static struct kunit_suite hmm_test_suite = {
	.name = "hmm",
	.suite_init = hmm_kunit_suite_init,
	.suite_exit = hmm_kunit_suite_exit,
	.test_cases = hmm_test_cases,
};

kunit_test_suite(hmm_test_suite);

MODULE_DESCRIPTION("KUnit tests for hmm_range_fault()");
MODULE_LICENSE("GPL");
