// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for the device memory migration API of mm/migrate_device.c:
 * migrate_vma_setup(), migrate_vma_pages(), migrate_vma_finalize(),
 * migrate_device_range(), migrate_device_pages() and
 * migrate_device_finalize().
 *
 * Each case builds a small user address space with kunit_vm_mmap() and acts
 * as a device driver on it: it collects pages, hands out destination pages,
 * copies data, and then checks what the CPU page table maps. The suite
 * creates its own devices: two device-private pgmaps with different owners,
 * each device page backed by a system page that holds its data, and, when
 * the coherent_addr parameter names reserved CPU-addressable memory, two
 * device-coherent pgmaps with the same two owners and a generic one, whose
 * pages cannot hold anonymous memory.
 *
 * Every VMA is smaller than a PMD, so no THP can back it in any
 * transparent_hugepage mode and each address is mapped by one PTE.
 */
#include <kunit/resource.h>
#include <kunit/test.h>
#include <linux/bitmap.h>
#include <linux/highmem.h>
#include <linux/hugetlb.h>
#include <linux/ioport.h>
#include <linux/kthread.h>
#include <linux/memremap.h>
#include <linux/migrate.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/pgtable.h>
#include <linux/rmap.h>
#include <linux/sched/mm.h>
#include <linux/shmem_fs.h>
#include <linux/sizes.h>
#include <linux/swapops.h>
#include <linux/uaccess.h>
#include <asm/pgalloc.h>

static unsigned long coherent_addr;
module_param(coherent_addr, ulong, 0444);
MODULE_PARM_DESC(coherent_addr,
		 "Physical address of 256 MiB of reserved CPU-addressable memory (e.g. memmap=256M$addr) for the device-coherent cases; they are skipped without it");

#define MDK_DEVICE_SIZE			SZ_2M
/* Keeps the coherent and generic pgmaps in different memory sections. */
#define MDK_GENERIC_OFFSET		SZ_64M
#define MDK_COHERENT_OTHER_OFFSET	SZ_128M
/*
 * Fills src and dst before each call so that untouched entries show. It has
 * MIGRATE_PFN_VALID clear, so a stray use can never reach a struct page.
 */
#define MDK_POISON			0x5a5a5a5a5a5a5a5aUL
#define MDK_SELECT_ALL			(MIGRATE_VMA_SELECT_SYSTEM | \
					 MIGRATE_VMA_SELECT_DEVICE_PRIVATE | \
					 MIGRATE_VMA_SELECT_DEVICE_COHERENT)
#define MDK_MAX_PAGES			16

/* ------------------------------------------------------------------------
 * Fake devices: a pgmap and a page allocator that hands out lowest pfn first.
 */

enum mdk_device_id {
	MDK_PRIVATE,
	MDK_PRIVATE_OTHER,
	MDK_COHERENT,
	MDK_COHERENT_OTHER,
	MDK_GENERIC,
	MDK_NR_DEVICES,
};

struct mdk_device {
	const char *name;
	struct dev_pagemap pgmap;
	struct resource *res;		/* the range a device-private pgmap took */
	bool ready;
	spinlock_t lock;		/* protects used and nr_free */
	unsigned long *used;
	/*
	 * The system pages that hold a device-private device's data, by page
	 * index: zone_device_data is no place for them, as the tail pages of
	 * a large folio lend that field to the folio.
	 */
	struct page **backing;
	unsigned long nr_pages;
	unsigned long nr_free;
	atomic_t nr_faults;		/* migrate_to_ram() calls */
};

/* pgmap owners: the driver under test and a foreign one. */
static int mdk_owner, mdk_other_owner;
static struct mdk_device mdk_devices[MDK_NR_DEVICES];

static struct mdk_device *mdk_page_device(struct page *page)
{
	return container_of(page_pgmap(page), struct mdk_device, pgmap);
}

static unsigned long mdk_first_pfn(struct mdk_device *dev)
{
	return PHYS_PFN(dev->pgmap.range.start);
}

/* The system page holding a device-private page's data, else the page. */
static struct page *mdk_data_page(struct page *page)
{
	struct mdk_device *dev;

	if (!is_device_private_page(page))
		return page;
	dev = mdk_page_device(page);
	return dev->backing[page_to_pfn(page) - mdk_first_pfn(dev)];
}

/* Gives pages @idx onwards of a device-private device their backing. */
static bool mdk_alloc_backing(struct mdk_device *dev, unsigned long idx,
			      unsigned long nr)
{
	unsigned long i;

	if (dev->pgmap.type != MEMORY_DEVICE_PRIVATE)
		return true;
	for (i = 0; i < nr; i++) {
		dev->backing[idx + i] = alloc_page(GFP_HIGHUSER);
		if (!dev->backing[idx + i])
			return false;
	}
	return true;
}

static void mdk_free_backing(struct mdk_device *dev, unsigned long idx,
			     unsigned long nr)
{
	unsigned long i;

	for (i = 0; i < nr; i++) {
		if (dev->backing[idx + i])
			__free_page(dev->backing[idx + i]);
		dev->backing[idx + i] = NULL;
	}
}

static bool mdk_device_page_used(struct mdk_device *dev, unsigned long pfn)
{
	return test_bit(pfn - mdk_first_pfn(dev), dev->used);
}

/* Takes @dev's free page of lowest pfn: NULL if it has none left. */
static struct page *mdk_take_free_page(struct mdk_device *dev)
{
	unsigned long idx;

	spin_lock(&dev->lock);
	idx = find_first_zero_bit(dev->used, dev->nr_pages);
	if (idx < dev->nr_pages) {
		__set_bit(idx, dev->used);
		dev->nr_free--;
	}
	spin_unlock(&dev->lock);
	if (idx >= dev->nr_pages)
		return NULL;
	return pfn_to_page(mdk_first_pfn(dev) + idx);
}

/* Returns a locked page with one reference, as drivers put in dst. */
static struct page *mdk_device_alloc(struct mdk_device *dev)
{
	struct page *page = mdk_take_free_page(dev);
	unsigned long idx;

	if (!page)
		return NULL;
	idx = page_to_pfn(page) - mdk_first_pfn(dev);
	zone_device_page_init(page);
	if (!mdk_alloc_backing(dev, idx, 1)) {
		unlock_page(page);
		put_page(page);
		return NULL;
	}
	return page;
}

/*
 * Returns a locked large folio with one reference, the whole of it free
 * memory naturally aligned, or NULL when the device has no such range.
 */
static struct folio *mdk_device_alloc_folio(struct mdk_device *dev,
					    unsigned int order)
{
	unsigned long nr = 1UL << order, idx;
	struct folio *folio;

	spin_lock(&dev->lock);
	idx = bitmap_find_next_zero_area(dev->used, dev->nr_pages, 0, nr,
					 nr - 1);
	if (idx < dev->nr_pages) {
		bitmap_set(dev->used, idx, nr);
		dev->nr_free -= nr;
	}
	spin_unlock(&dev->lock);
	if (idx >= dev->nr_pages)
		return NULL;

	/* Not page_folio(): the page may be a stale tail of an old folio. */
	folio = (struct folio *)pfn_to_page(mdk_first_pfn(dev) + idx);
	zone_device_folio_init(folio, &dev->pgmap, order);
	if (!mdk_alloc_backing(dev, idx, nr)) {
		folio_unlock(folio);
		folio_put(folio);
		return NULL;
	}
	return folio;
}

/*
 * Returns a locked page of a generic pgmap. Such a page keeps one reference
 * while it is free (put back whenever it is freed), which the caller now
 * holds.
 */
static struct page *mdk_generic_alloc(struct mdk_device *dev)
{
	struct page *page = mdk_take_free_page(dev);

	if (page)
		lock_page(page);
	return page;
}

/*
 * Called under the page table lock when the last mapping goes away. A large
 * folio comes back whole, through its first page.
 */
static void mdk_device_page_free(struct page *page)
{
	struct mdk_device *dev = mdk_page_device(page);
	unsigned long nr = folio_nr_pages(page_folio(page));
	unsigned long idx = page_to_pfn(page) - mdk_first_pfn(dev);

	if (dev->backing)
		mdk_free_backing(dev, idx, nr);

	spin_lock(&dev->lock);
	bitmap_clear(dev->used, idx, nr);
	dev->nr_free += nr;
	spin_unlock(&dev->lock);
}

/* A CPU fault on a device-private page: migrate it back, as drivers do. */
static vm_fault_t mdk_migrate_to_ram(struct vm_fault *vmf)
{
	struct mdk_device *dev = mdk_page_device(vmf->page);
	unsigned long src = 0, dst = 0;
	struct migrate_vma args = {
		.vma		= vmf->vma,
		.start		= vmf->address,
		.end		= vmf->address + PAGE_SIZE,
		.src		= &src,
		.dst		= &dst,
		.pgmap_owner	= dev->pgmap.owner,
		.flags		= MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
		.fault_page	= vmf->page,
	};
	struct page *spage, *dpage;
	vm_fault_t ret = 0;

	atomic_inc(&dev->nr_faults);
	if (migrate_vma_setup(&args))
		return VM_FAULT_SIGBUS;

	spage = migrate_pfn_to_page(src);
	if (spage && (src & MIGRATE_PFN_MIGRATE)) {
		dpage = alloc_page_vma(GFP_HIGHUSER_MOVABLE, vmf->vma,
				       vmf->address);
		if (dpage) {
			lock_page(dpage);
			copy_highpage(dpage, mdk_data_page(spage));
			dst = migrate_pfn(page_to_pfn(dpage));
		} else {
			ret = VM_FAULT_OOM;
		}
	} else {
		/*
		 * A driver would retry, but nothing else migrates during these
		 * tests: a page setup refuses now is refused forever, and the
		 * CPU would refault endlessly. Fail the access instead.
		 */
		ret = VM_FAULT_SIGBUS;
	}

	migrate_vma_pages(&args);
	migrate_vma_finalize(&args);
	return ret;
}

static const struct dev_pagemap_ops mdk_pgmap_ops = {
	.page_free	= mdk_device_page_free,
	.migrate_to_ram	= mdk_migrate_to_ram,
};

static int mdk_device_create(struct mdk_device *dev, phys_addr_t start)
{
	void *ret;

	if (dev->pgmap.type == MEMORY_DEVICE_PRIVATE) {
		dev->res = request_free_mem_region(&iomem_resource,
						   MDK_DEVICE_SIZE, dev->name);
		if (IS_ERR_OR_NULL(dev->res))
			return dev->res ? PTR_ERR(dev->res) : -ENOMEM;
		start = dev->res->start;
	} else if (region_intersects(start, MDK_DEVICE_SIZE,
				     IORESOURCE_SYSTEM_RAM,
				     IORES_DESC_NONE) != REGION_DISJOINT) {
		pr_err("%s: %pa is System RAM, reserve it with memmap=\n",
		       dev->name, &start);
		return -EINVAL;
	}

	dev->nr_pages = MDK_DEVICE_SIZE >> PAGE_SHIFT;
	dev->nr_free = dev->nr_pages;
	dev->used = bitmap_zalloc(dev->nr_pages, GFP_KERNEL);
	if (dev->pgmap.type == MEMORY_DEVICE_PRIVATE)
		dev->backing = kvcalloc(dev->nr_pages, sizeof(*dev->backing),
					GFP_KERNEL);
	if (!dev->used ||
	    (dev->pgmap.type == MEMORY_DEVICE_PRIVATE && !dev->backing))
		goto release;

	dev->pgmap.range.start = start;
	dev->pgmap.range.end = start + MDK_DEVICE_SIZE - 1;
	dev->pgmap.nr_range = 1;
	dev->pgmap.ops = &mdk_pgmap_ops;
	ret = memremap_pages(&dev->pgmap, numa_node_id());
	if (IS_ERR(ret))
		goto release;
	dev->ready = true;
	return 0;

release:
	bitmap_free(dev->used);
	kvfree(dev->backing);
	dev->backing = NULL;
	if (dev->res)
		release_mem_region(dev->res->start, resource_size(dev->res));
	dev->res = NULL;
	return -ENOMEM;
}

static void mdk_device_destroy(struct mdk_device *dev)
{
	if (!dev->ready)
		return;
	/* memunmap_pages() would wait forever for the missing pages. */
	if (dev->nr_free != dev->nr_pages) {
		pr_err("%s: %lu pages never freed, leaving the pgmap in place\n",
		       dev->name, dev->nr_pages - dev->nr_free);
		return;
	}
	memunmap_pages(&dev->pgmap);
	if (dev->res)
		release_mem_region(dev->res->start, resource_size(dev->res));
	bitmap_free(dev->used);
	kvfree(dev->backing);
	dev->backing = NULL;
	dev->res = NULL;
	dev->ready = false;
}

static void mdk_device_describe(enum mdk_device_id id, const char *name,
				enum memory_type type, void *owner)
{
	struct mdk_device *dev = &mdk_devices[id];

	memset(dev, 0, sizeof(*dev));
	dev->name = name;
	dev->pgmap.type = type;
	dev->pgmap.owner = owner;
	spin_lock_init(&dev->lock);
}

static int mdk_suite_init(struct kunit_suite *suite)
{
	int ret;

	mdk_device_describe(MDK_PRIVATE, "mdk_private",
			    MEMORY_DEVICE_PRIVATE, &mdk_owner);
	mdk_device_describe(MDK_PRIVATE_OTHER, "mdk_private_other",
			    MEMORY_DEVICE_PRIVATE, &mdk_other_owner);
	mdk_device_describe(MDK_COHERENT, "mdk_coherent",
			    MEMORY_DEVICE_COHERENT, &mdk_owner);
	mdk_device_describe(MDK_COHERENT_OTHER, "mdk_coherent_other",
			    MEMORY_DEVICE_COHERENT, &mdk_other_owner);
	mdk_device_describe(MDK_GENERIC, "mdk_generic",
			    MEMORY_DEVICE_GENERIC, NULL);

	ret = mdk_device_create(&mdk_devices[MDK_PRIVATE], 0);
	if (!ret)
		ret = mdk_device_create(&mdk_devices[MDK_PRIVATE_OTHER], 0);
	if (ret) {
		mdk_device_destroy(&mdk_devices[MDK_PRIVATE]);
		return ret;
	}

	/* The coherent cases report a failure here when they run. */
	if (coherent_addr && IS_ALIGNED(coherent_addr, SZ_2M) &&
	    !mdk_device_create(&mdk_devices[MDK_COHERENT], coherent_addr)) {
		mdk_device_create(&mdk_devices[MDK_COHERENT_OTHER],
				  coherent_addr + MDK_COHERENT_OTHER_OFFSET);
		mdk_device_create(&mdk_devices[MDK_GENERIC],
				  coherent_addr + MDK_GENERIC_OFFSET);
	}
	return 0;
}

static void mdk_suite_exit(struct kunit_suite *suite)
{
	int i;

	for (i = 0; i < MDK_NR_DEVICES; i++)
		mdk_device_destroy(&mdk_devices[i]);
}

/* ------------------------------------------------------------------------
 * Per-case state and the user address space.
 */

struct mdk_case {
	/* A reference of our own, so cleanup can finalize before teardown. */
	struct mm_struct *mm;
	u64 *buf;
	unsigned long free_at_start[MDK_NR_DEVICES];
	int faults_at_start[MDK_NR_DEVICES];
};

static int mdk_case_init(struct kunit *test)
{
	struct mdk_case *c;
	int i;

	c = kunit_kzalloc(test, sizeof(*c), GFP_KERNEL);
	if (!c)
		return -ENOMEM;
	c->buf = kunit_kmalloc(test, PAGE_SIZE, GFP_KERNEL);
	if (!c->buf)
		return -ENOMEM;
	for (i = 0; i < MDK_NR_DEVICES; i++) {
		c->free_at_start[i] = READ_ONCE(mdk_devices[i].nr_free);
		c->faults_at_start[i] = atomic_read(&mdk_devices[i].nr_faults);
	}
	test->priv = c;
	return 0;
}

static struct mdk_device *mdk_device(struct kunit *test, enum mdk_device_id id)
{
	struct mdk_device *dev = &mdk_devices[id];

	if (!dev->ready && dev->pgmap.type != MEMORY_DEVICE_PRIVATE &&
	    !coherent_addr)
		kunit_skip(test,
			   "device-coherent and generic cases need migrate_device_kunit.coherent_addr=");
	KUNIT_ASSERT_TRUE_MSG(test, dev->ready, "%s could not be created",
			      dev->name);
	return dev;
}

static int mdk_faults(struct kunit *test, struct mdk_device *dev)
{
	struct mdk_case *c = test->priv;

	return atomic_read(&dev->nr_faults) - c->faults_at_start[dev - mdk_devices];
}

KUNIT_DEFINE_ACTION_WRAPPER(mdk_mmput, mmput, struct mm_struct *);

/*
 * kunit_vm_mmap() of @size bytes. The first mapping of a case also holds
 * on to the case's mm, which mdk_expect_device_pages_freed() releases.
 */
static unsigned long mdk_vm_mmap(struct kunit *test, unsigned long size,
				 unsigned long prot, unsigned long flags)
{
	struct mdk_case *c = test->priv;
	unsigned long addr;

	addr = kunit_vm_mmap(test, NULL, 0, size, prot, flags, 0);
	KUNIT_ASSERT_TRUE_MSG(test, addr && !IS_ERR_VALUE(addr),
			      "kunit_vm_mmap: %ld", (long)addr);
	if (!c->mm) {
		c->mm = current->mm;
		mmget(c->mm);
		KUNIT_ASSERT_EQ(test, 0, kunit_add_action_or_reset(test, mdk_mmput, c->mm));
	}
	return addr;
}

static unsigned long mdk_mmap_prot(struct kunit *test, unsigned long npages,
				   unsigned long prot, unsigned long flags)
{
	KUNIT_ASSERT_LT(test, npages * PAGE_SIZE, PMD_SIZE);
	return mdk_vm_mmap(test, npages * PAGE_SIZE, prot, flags);
}

static unsigned long mdk_mmap(struct kunit *test, unsigned long npages)
{
	return mdk_mmap_prot(test, npages, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS);
}

static unsigned long mdk_page_addr(unsigned long addr, unsigned long i)
{
	return addr + i * PAGE_SIZE;
}

/* Page contents: a pattern derived from the page's user address. */
static u64 mdk_seed(unsigned long addr)
{
	return addr >> PAGE_SHIFT;
}

/* What the "device" writes into memory it populates. */
static u64 mdk_device_seed(unsigned long addr)
{
	return ~mdk_seed(addr);
}

static void mdk_fill(u64 *words, u64 seed)
{
	unsigned long i;

	for (i = 0; i < PAGE_SIZE / sizeof(u64); i++)
		words[i] = seed * 0x9e3779b97f4a7c15ULL + i;
}

static bool mdk_has_pattern(const u64 *words, u64 seed)
{
	unsigned long i;

	for (i = 0; i < PAGE_SIZE / sizeof(u64); i++)
		if (words[i] != seed * 0x9e3779b97f4a7c15ULL + i)
			return false;
	return true;
}

static void mdk_fill_page(struct page *page, u64 seed)
{
	u64 *words = kmap_local_page(mdk_data_page(page));

	mdk_fill(words, seed);
	kunmap_local(words);
}

static bool mdk_page_has_pattern(struct page *page, u64 seed)
{
	u64 *words = kmap_local_page(mdk_data_page(page));
	bool ret = mdk_has_pattern(words, seed);

	kunmap_local(words);
	return ret;
}

static void mdk_write_user(struct kunit *test, unsigned long addr)
{
	struct mdk_case *c = test->priv;

	mdk_fill(c->buf, mdk_seed(addr));
	KUNIT_ASSERT_EQ(test, 0,
			copy_to_user((void __user *)addr, c->buf, PAGE_SIZE));
}

/* Maps the zero page by reading an unpopulated address. */
static void mdk_read_fault_user(struct kunit *test, unsigned long addr)
{
	struct mdk_case *c = test->priv;

	KUNIT_ASSERT_EQ(test, 0,
			copy_from_user(c->buf, (void __user *)addr, PAGE_SIZE));
}

/* Reads through the CPU mapping: device-private pages fault back. */
static void mdk_expect_user_data(struct kunit *test, unsigned long addr,
				 u64 seed)
{
	struct mdk_case *c = test->priv;

	KUNIT_ASSERT_EQ(test, 0,
			copy_from_user(c->buf, (void __user *)addr, PAGE_SIZE));
	KUNIT_EXPECT_TRUE_MSG(test, mdk_has_pattern(c->buf, seed),
			      "wrong data at %lx", addr);
}

static void mdk_expect_page_data(struct kunit *test, struct page *page,
				 u64 seed)
{
	KUNIT_EXPECT_TRUE_MSG(test, mdk_page_has_pattern(page, seed),
			      "wrong data in pfn %lx", page_to_pfn(page));
}

/* ------------------------------------------------------------------------
 * Reading the CPU page table without faulting anything in.
 */

enum mdk_pte_kind {
	MDK_PTE_NONE,
	MDK_PTE_PRESENT,
	MDK_PTE_DEVICE_PRIVATE,
	MDK_PTE_MIGRATION,
	MDK_PTE_OTHER,
};

struct mdk_pte {
	enum mdk_pte_kind kind;
	unsigned long pfn;
	bool writable;
};

static int mdk_decode_pte(pte_t *ptep, unsigned long addr, void *data)
{
	struct mdk_pte *out = data;
	pte_t pte = ptep_get(ptep);
	swp_entry_t entry;

	if (pte_present(pte)) {
		out->kind = MDK_PTE_PRESENT;
		out->pfn = pte_pfn(pte);
		out->writable = pte_write(pte);
		return 0;
	}

	entry = pte_to_swp_entry(pte);
	if (is_device_private_entry(entry)) {
		out->kind = MDK_PTE_DEVICE_PRIVATE;
		out->pfn = swp_offset_pfn(entry);
		out->writable = is_writable_device_private_entry(entry);
	} else if (is_migration_entry(entry)) {
		out->kind = MDK_PTE_MIGRATION;
		out->pfn = swp_offset_pfn(entry);
	} else {
		out->kind = MDK_PTE_OTHER;
	}
	return 0;
}

static struct mdk_pte mdk_pte_at(struct kunit *test, unsigned long addr)
{
	struct mm_struct *mm = current->mm;
	struct mdk_pte pte = { .kind = MDK_PTE_NONE };
	int ret;

	mmap_read_lock(mm);
	ret = apply_to_existing_page_range(mm, addr, PAGE_SIZE,
					   mdk_decode_pte, &pte);
	mmap_read_unlock(mm);
	KUNIT_EXPECT_EQ(test, ret, 0);
	return pte;
}

/* The page mapped at @addr, asserted to be a normal or device page. */
static struct page *mdk_page_at(struct kunit *test, unsigned long addr)
{
	struct mdk_pte pte = mdk_pte_at(test, addr);

	KUNIT_ASSERT_TRUE_MSG(test, pte.kind == MDK_PTE_PRESENT ||
			      pte.kind == MDK_PTE_DEVICE_PRIVATE,
			      "nothing mapped at %lx (kind %d)", addr, pte.kind);
	KUNIT_ASSERT_FALSE(test, is_zero_pfn(pte.pfn));
	return pfn_to_page(pte.pfn);
}

static void mdk_expect_pte_kind(struct kunit *test, unsigned long addr,
				enum mdk_pte_kind kind)
{
	struct mdk_pte pte = mdk_pte_at(test, addr);

	KUNIT_EXPECT_EQ_MSG(test, pte.kind, kind, "at %lx", addr);
}

static void mdk_expect_zero_page(struct kunit *test, unsigned long addr)
{
	struct mdk_pte pte = mdk_pte_at(test, addr);

	KUNIT_EXPECT_EQ_MSG(test, pte.kind, MDK_PTE_PRESENT, "at %lx", addr);
	KUNIT_EXPECT_TRUE_MSG(test, is_zero_pfn(pte.pfn),
			      "no zero page at %lx", addr);
}

/*
 * @page is what @addr maps, through a present PTE or a device-private entry
 * as its type requires, and nothing else maps it. @writable: 1 or 0 checks
 * the mapping's write permission, -1 does not.
 */
static void mdk_expect_maps(struct kunit *test, unsigned long addr,
			    struct page *page, int writable)
{
	struct mdk_pte pte = mdk_pte_at(test, addr);

	KUNIT_EXPECT_EQ_MSG(test, pte.kind,
			    is_device_private_page(page) ?
			    MDK_PTE_DEVICE_PRIVATE : MDK_PTE_PRESENT,
			    "at %lx", addr);
	KUNIT_EXPECT_EQ_MSG(test, pte.pfn, page_to_pfn(page), "at %lx", addr);
	KUNIT_EXPECT_EQ_MSG(test, folio_mapcount(page_folio(page)), 1,
			    "pfn %lx", page_to_pfn(page));
	if (writable >= 0)
		KUNIT_EXPECT_EQ_MSG(test, pte.writable, !!writable,
				    "at %lx", addr);
}

/*
 * As mdk_expect_maps(), and the mapping holds the only reference. A system
 * page may have one more, from the per-CPU LRU batch it was just added to
 * (not yet PageLRU); a test cannot drain other CPUs' batches.
 */
static void mdk_expect_mapped_once(struct kunit *test, unsigned long addr,
				   struct page *page, int writable)
{
	struct folio *folio = page_folio(page);
	int refs = folio_ref_count(folio);

	mdk_expect_maps(test, addr, page, writable);
	if (folio_is_zone_device(folio) || folio_test_lru(folio))
		KUNIT_EXPECT_EQ_MSG(test, refs, 1, "pfn %lx", page_to_pfn(page));
	else
		KUNIT_EXPECT_TRUE_MSG(test, refs == 1 || refs == 2,
				      "pfn %lx has %d references",
				      page_to_pfn(page), refs);
}

/*
 * Tears the address space down and checks that every device page the case
 * took went back to its device.
 */
static void mdk_expect_device_pages_freed(struct kunit *test)
{
	struct mdk_case *c = test->priv;
	struct mm_struct *mm = c->mm;
	int i;

	if (mm) {
		kthread_unuse_mm(mm);
		mmput(mm);	/* the one kunit_vm_mmap() attached */
		kunit_release_action(test, mdk_mmput, mm);
		c->mm = NULL;
	}
	for (i = 0; i < MDK_NR_DEVICES; i++) {
		struct mdk_device *dev = &mdk_devices[i];

		if (dev->ready)
			KUNIT_EXPECT_EQ_MSG(test, READ_ONCE(dev->nr_free),
					    c->free_at_start[i],
					    "%s pages leaked", dev->name);
	}
}

/* ------------------------------------------------------------------------
 * Migrations, closed by a cleanup action if a case stops halfway.
 */

struct mdk_migration {
	struct migrate_vma args;
	struct mm_struct *mm;
	bool pages_done;
};

static unsigned long *mdk_poisoned_array(struct kunit *test,
					 unsigned long npages)
{
	unsigned long *a, i;

	a = kunit_kmalloc_array(test, npages, sizeof(*a), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, a);
	for (i = 0; i < npages; i++)
		a[i] = MDK_POISON;
	return a;
}

/* Unlocks and puts the destination pages migrate_*_pages() never saw. */
static void mdk_drop_dst(unsigned long *dst, unsigned long npages)
{
	unsigned long i;

	for (i = 0; i < npages; i++) {
		struct page *page = migrate_pfn_to_page(dst[i]);

		if (page) {
			unlock_page(page);
			put_page(page);
		}
		dst[i] = 0;
	}
}

static void mdk_migration_close(void *data)
{
	struct mdk_migration *m = data;

	if (!m->pages_done)
		mdk_drop_dst(m->args.dst, m->args.npages);
	mmap_read_lock(m->mm);
	migrate_vma_finalize(&m->args);
	mmap_read_unlock(m->mm);
}

static struct mdk_migration *mdk_new_migration(struct kunit *test,
					       unsigned long addr,
					       unsigned long npages,
					       unsigned long flags,
					       void *owner)
{
	struct mdk_migration *m;

	m = kunit_kzalloc(test, sizeof(*m), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, m);
	m->mm = current->mm;
	m->args.start = addr;
	m->args.end = mdk_page_addr(addr, npages);
	m->args.src = mdk_poisoned_array(test, npages);
	m->args.dst = mdk_poisoned_array(test, npages);
	m->args.pgmap_owner = owner;
	m->args.flags = flags;
	return m;
}

/* migrate_vma_setup() under the mmap lock; a success must be finalized. */
static int mdk_try_setup(struct kunit *test, struct mdk_migration *m)
{
	int ret;

	mmap_read_lock(m->mm);
	m->args.vma = find_vma(m->mm, m->args.start);
	ret = migrate_vma_setup(&m->args);
	mmap_read_unlock(m->mm);
	if (!ret)
		KUNIT_ASSERT_EQ(test, 0,
				kunit_add_action_or_reset(test,
							  mdk_migration_close,
							  m));
	return ret;
}

static struct mdk_migration *mdk_setup(struct kunit *test, unsigned long addr,
				       unsigned long npages,
				       unsigned long flags, void *owner)
{
	struct mdk_migration *m;

	m = mdk_new_migration(test, addr, npages, flags, owner);
	KUNIT_ASSERT_EQ(test, mdk_try_setup(test, m), 0);
	KUNIT_ASSERT_EQ(test, m->args.npages, npages);
	return m;
}

static void mdk_pages(struct kunit *test, struct mdk_migration *m)
{
	mmap_read_lock(m->mm);
	migrate_vma_pages(&m->args);
	mmap_read_unlock(m->mm);
	m->pages_done = true;
}

static void mdk_finalize(struct kunit *test, struct mdk_migration *m)
{
	kunit_release_action(test, mdk_migration_close, m);
}

static unsigned long mdk_count_migrating(const unsigned long *src,
					 unsigned long npages)
{
	unsigned long i, n = 0;

	for (i = 0; i < npages; i++)
		n += !!(src[i] & MIGRATE_PFN_MIGRATE);
	return n;
}

static struct page *mdk_system_alloc(void)
{
	struct page *page = alloc_page(GFP_HIGHUSER_MOVABLE);

	if (page)
		lock_page(page);
	return page;
}

/*
 * The driver's part for entry @i: a destination from @dev (system memory if
 * NULL) holding the source data, or, for an address without a page, what
 * the device writes there. Entries not marked for migration get nothing.
 */
static struct page *mdk_give_dst(struct kunit *test, unsigned long *src,
				 unsigned long *dst, unsigned long i,
				 unsigned long addr, struct mdk_device *dev)
{
	struct page *spage = migrate_pfn_to_page(src[i]);
	struct page *dpage;

	if (!(src[i] & MIGRATE_PFN_MIGRATE))
		return NULL;
	dpage = dev ? mdk_device_alloc(dev) : mdk_system_alloc();
	KUNIT_ASSERT_NOT_NULL(test, dpage);
	if (spage)
		copy_highpage(mdk_data_page(dpage), mdk_data_page(spage));
	else
		mdk_fill_page(dpage, mdk_device_seed(addr));
	dst[i] = migrate_pfn(page_to_pfn(dpage));
	return dpage;
}

static struct page *mdk_give_vma_dst(struct kunit *test,
				     struct mdk_migration *m, unsigned long i,
				     struct mdk_device *dev)
{
	return mdk_give_dst(test, m->args.src, m->args.dst, i,
			    mdk_page_addr(m->args.start, i), dev);
}

/* Moves every page of [addr, +npages) to @dev, asserting it all went. */
static void mdk_move_to_device(struct kunit *test, unsigned long addr,
			       unsigned long npages, struct mdk_device *dev)
{
	struct mdk_migration *m;
	unsigned long i;

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      dev->pgmap.owner);
	KUNIT_ASSERT_EQ(test, m->args.cpages, npages);
	for (i = 0; i < npages; i++)
		mdk_give_vma_dst(test, m, i, dev);
	mdk_pages(test, m);
	KUNIT_ASSERT_EQ(test, mdk_count_migrating(m->args.src, npages), npages);
	mdk_finalize(test, m);
}

/*
 * Maps @npages pages of user data at a new address and moves them to @dev.
 * @dpages gets the device page behind each. Returns the address.
 */
static unsigned long mdk_mmap_on_device(struct kunit *test,
					unsigned long npages,
					struct mdk_device *dev,
					struct page **dpages)
{
	unsigned long addr = mdk_mmap(test, npages), i;

	for (i = 0; i < npages; i++)
		mdk_write_user(test, mdk_page_addr(addr, i));
	mdk_move_to_device(test, addr, npages, dev);
	for (i = 0; i < npages; i++)
		dpages[i] = mdk_page_at(test, mdk_page_addr(addr, i));
	return addr;
}

/*
 * Every page of [@addr, +@npages) is still the device page in @dpages,
 * mapped once, with its data; the device never faulted; and everything goes
 * back to the devices at teardown.
 */
static void mdk_expect_left_on_device(struct kunit *test, unsigned long addr,
				      unsigned long npages,
				      struct mdk_device *dev,
				      struct page **dpages)
{
	unsigned long i;

	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);

		mdk_expect_mapped_once(test, a, dpages[i], 1);
		mdk_expect_page_data(test, dpages[i], mdk_seed(a));
	}
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), 0);
	mdk_expect_device_pages_freed(test);
}

/* Moves [addr, +npages) back from the selected device memory. */
static void mdk_move_to_system(struct kunit *test, unsigned long addr,
			       unsigned long npages, unsigned long flags)
{
	struct mdk_migration *m;
	unsigned long i;

	m = mdk_setup(test, addr, npages, flags, &mdk_owner);
	KUNIT_ASSERT_EQ(test, m->args.cpages, npages);
	for (i = 0; i < npages; i++)
		mdk_give_vma_dst(test, m, i, NULL);
	mdk_pages(test, m);
	KUNIT_ASSERT_EQ(test, mdk_count_migrating(m->args.src, npages), npages);
	mdk_finalize(test, m);
}

/* ------------------------------------------------------------------------
 * What a page of the user address space can be.
 */

enum mdk_kind {
	MDK_SYSTEM,
	MDK_HOLE,
	MDK_ZERO,
	MDK_OWN_PRIVATE,
	MDK_OTHER_PRIVATE,
	MDK_OWN_COHERENT,
	MDK_OTHER_COHERENT,
};

static const char * const mdk_kind_names[] = {
	[MDK_SYSTEM]		= "system page",
	[MDK_HOLE]		= "hole",
	[MDK_ZERO]		= "zero page",
	[MDK_OWN_PRIVATE]	= "own device-private page",
	[MDK_OTHER_PRIVATE]	= "other owner's device-private page",
	[MDK_OWN_COHERENT]	= "own device-coherent page",
	[MDK_OTHER_COHERENT]	= "other owner's device-coherent page",
};

static const enum mdk_device_id mdk_kind_device[] = {
	[MDK_OWN_PRIVATE]	= MDK_PRIVATE,
	[MDK_OTHER_PRIVATE]	= MDK_PRIVATE_OTHER,
	[MDK_OWN_COHERENT]	= MDK_COHERENT,
	[MDK_OTHER_COHERENT]	= MDK_COHERENT_OTHER,
};

/*
 * Makes @addr a page of @kind holding its pattern and returns the page now
 * mapped there (NULL for a hole or the zero page).
 */
static struct page *mdk_populate(struct kunit *test, unsigned long addr,
				 enum mdk_kind kind)
{
	switch (kind) {
	case MDK_HOLE:
		return NULL;
	case MDK_ZERO:
		mdk_read_fault_user(test, addr);
		mdk_expect_zero_page(test, addr);
		return NULL;
	case MDK_SYSTEM:
		mdk_write_user(test, addr);
		break;
	default:
		mdk_write_user(test, addr);
		mdk_move_to_device(test, addr, 1,
				   mdk_device(test, mdk_kind_device[kind]));
		break;
	}
	return mdk_page_at(test, addr);
}

/*
 * Maps @npages pages of user data in system memory at a new address;
 * @pages gets the page behind each. Returns the address.
 */
static unsigned long mdk_mmap_populated(struct kunit *test,
					unsigned long npages,
					struct page **pages)
{
	unsigned long addr = mdk_mmap(test, npages), i;

	for (i = 0; i < npages; i++)
		pages[i] = mdk_populate(test, mdk_page_addr(addr, i), MDK_SYSTEM);
	return addr;
}

/* The src entry setup gives a writable page it collects. */
static unsigned long mdk_collected(struct page *page)
{
	return migrate_pfn(page_to_pfn(page)) | MIGRATE_PFN_MIGRATE |
	       MIGRATE_PFN_WRITE;
}

/* ------------------------------------------------------------------------
 * migrate_vma_setup(): argument checking.
 */

struct mdk_bad_args {
	const char *desc;
	void (*spoil)(struct migrate_vma *args, struct vm_area_struct *vma,
		      struct page *page);
	unsigned long vm_flags;		/* added to the VMA first */
};

static void mdk_spoil_empty(struct migrate_vma *args,
			    struct vm_area_struct *vma, struct page *page)
{
	args->end = args->start;
}

static void mdk_spoil_reversed(struct migrate_vma *args,
			       struct vm_area_struct *vma, struct page *page)
{
	swap(args->start, args->end);
}

static void mdk_spoil_sub_page(struct migrate_vma *args,
			       struct vm_area_struct *vma, struct page *page)
{
	args->end = args->start + PAGE_SIZE / 2;
}

static void mdk_spoil_start_below_vma(struct migrate_vma *args,
				      struct vm_area_struct *vma,
				      struct page *page)
{
	args->start = vma->vm_start - PAGE_SIZE;
	args->end = vma->vm_start + PAGE_SIZE;
}

static void mdk_spoil_end_past_vma(struct migrate_vma *args,
				   struct vm_area_struct *vma,
				   struct page *page)
{
	args->start = vma->vm_start;
	args->end = vma->vm_end + PAGE_SIZE;
}

static void mdk_spoil_start_at_vma_end(struct migrate_vma *args,
				       struct vm_area_struct *vma,
				       struct page *page)
{
	args->start = vma->vm_end;
	args->end = vma->vm_end + PAGE_SIZE;
}

static void mdk_spoil_no_vma(struct migrate_vma *args,
			     struct vm_area_struct *vma, struct page *page)
{
	args->vma = NULL;
}

static void mdk_spoil_no_src(struct migrate_vma *args,
			     struct vm_area_struct *vma, struct page *page)
{
	args->src = NULL;
}

static void mdk_spoil_no_dst(struct migrate_vma *args,
			     struct vm_area_struct *vma, struct page *page)
{
	args->dst = NULL;
}

static void mdk_spoil_system_fault_page(struct migrate_vma *args,
					struct vm_area_struct *vma,
					struct page *page)
{
	args->fault_page = page;
}

static void mdk_spoil_nothing(struct migrate_vma *args,
			      struct vm_area_struct *vma, struct page *page)
{
}

static void mdk_spoil_no_select_flags(struct migrate_vma *args,
				      struct vm_area_struct *vma,
				      struct page *page)
{
	args->flags = 0;
}

static void mdk_spoil_unknown_flag(struct migrate_vma *args,
				   struct vm_area_struct *vma,
				   struct page *page)
{
	args->flags |= BIT(20);
}

static void mdk_spoil_unaligned_start(struct migrate_vma *args,
				      struct vm_area_struct *vma,
				      struct page *page)
{
	args->start += 64;
}

static void mdk_spoil_unaligned_end(struct migrate_vma *args,
				    struct vm_area_struct *vma,
				    struct page *page)
{
	args->end -= 64;
}

static const struct mdk_bad_args mdk_bad_args_cases[] = {
	{ "empty range", mdk_spoil_empty },
	{ "end before start", mdk_spoil_reversed },
	{ "range shorter than a page", mdk_spoil_sub_page },
	{ "start below the VMA", mdk_spoil_start_below_vma },
	{ "end past the VMA", mdk_spoil_end_past_vma },
	{ "start at the VMA end", mdk_spoil_start_at_vma_end },
	{ "no VMA", mdk_spoil_no_vma },
	{ "no src array", mdk_spoil_no_src },
	{ "no dst array", mdk_spoil_no_dst },
	{ "fault_page not device-private", mdk_spoil_system_fault_page },
	{ "VM_SPECIAL VMA", mdk_spoil_nothing, VM_DONTEXPAND },
	{ "no selection flag", mdk_spoil_no_select_flags },
	{ "unknown flag", mdk_spoil_unknown_flag },
	{ "unaligned start", mdk_spoil_unaligned_start },
	{ "unaligned end", mdk_spoil_unaligned_end },
};

KUNIT_ARRAY_PARAM_DESC(mdk_bad_args, mdk_bad_args_cases, desc);

static void mdk_add_vm_flags(struct mm_struct *mm, unsigned long addr,
			     unsigned long vm_flags)
{
	struct vm_area_struct *vma;

	mmap_write_lock(mm);
	vma = find_vma(mm, addr);
	vm_flags_set(vma, vm_flags);
	mmap_write_unlock(mm);
}

/* -EINVAL, and nothing touched: arrays, mappings, data. */
static void migrate_vma_setup_rejects_bad_arguments(struct kunit *test)
{
	const struct mdk_bad_args *p = test->param_value;
	/* Room for a walk that wrongly runs past the four pages. */
	const unsigned long nslots = 8, npages = 4;
	struct page *pages[4];
	unsigned long addr, i, *src, *dst;
	struct migrate_vma args = {};
	struct mm_struct *mm;
	int ret;

	addr = mdk_mmap_populated(test, npages, pages);
	mm = current->mm;
	if (p->vm_flags)
		mdk_add_vm_flags(mm, addr, p->vm_flags);

	src = mdk_poisoned_array(test, nslots);
	dst = mdk_poisoned_array(test, nslots);
	args.start = addr;
	args.end = mdk_page_addr(addr, npages);
	args.src = src;
	args.dst = dst;
	args.pgmap_owner = &mdk_owner;
	args.flags = MIGRATE_VMA_SELECT_SYSTEM;

	mmap_read_lock(mm);
	args.vma = find_vma(mm, addr);
	p->spoil(&args, args.vma, pages[0]);
	ret = migrate_vma_setup(&args);
	/* Accepted after all: put the collected pages back right away. */
	if (!ret && args.src && args.dst)
		migrate_vma_finalize(&args);
	mmap_read_unlock(mm);

	KUNIT_EXPECT_EQ(test, ret, -EINVAL);
	for (i = 0; i < nslots; i++) {
		KUNIT_EXPECT_EQ_MSG(test, src[i], MDK_POISON, "src[%lu]", i);
		KUNIT_EXPECT_EQ_MSG(test, dst[i], MDK_POISON, "dst[%lu]", i);
	}
	for (i = 0; i < npages; i++) {
		mdk_expect_mapped_once(test, mdk_page_addr(addr, i), pages[i], 1);
		mdk_expect_user_data(test, mdk_page_addr(addr, i),
				     mdk_seed(mdk_page_addr(addr, i)));
	}
	mdk_expect_device_pages_freed(test);
}

/*
 * Runs migrate_vma_setup() over [@addr, +@npages) with poisoned arrays,
 * finalizing at once if it accepts, and checks that it refused: -EINVAL and
 * both arrays untouched.
 */
static void mdk_expect_setup_refused(struct kunit *test, unsigned long addr,
				     unsigned long npages, unsigned long flags,
				     struct page *fault_page)
{
	struct mm_struct *mm = current->mm;
	struct migrate_vma args = {};
	unsigned long i;
	int ret;

	args.start = addr;
	args.end = mdk_page_addr(addr, npages);
	args.src = mdk_poisoned_array(test, npages);
	args.dst = mdk_poisoned_array(test, npages);
	args.pgmap_owner = &mdk_owner;
	args.flags = flags;
	args.fault_page = fault_page;

	mmap_read_lock(mm);
	args.vma = find_vma(mm, addr);
	ret = migrate_vma_setup(&args);
	if (!ret)
		migrate_vma_finalize(&args);
	mmap_read_unlock(mm);

	KUNIT_EXPECT_EQ(test, ret, -EINVAL);
	for (i = 0; i < npages; i++) {
		KUNIT_EXPECT_EQ_MSG(test, args.src[i], MDK_POISON, "src[%lu]", i);
		KUNIT_EXPECT_EQ_MSG(test, args.dst[i], MDK_POISON, "dst[%lu]", i);
	}
}

/*
 * ->migrate_to_ram() passes the faulting page locked, as do_swap_page()
 * does in this tree: an unlocked one is refused before anything is touched.
 */
static void migrate_vma_setup_rejects_unlocked_fault_page(struct kunit *test)
{
	const unsigned long npages = 2;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *dpages[2];
	unsigned long addr;

	addr = mdk_mmap_on_device(test, npages, dev, dpages);

	mdk_expect_setup_refused(test, addr, npages,
				 MIGRATE_VMA_SELECT_DEVICE_PRIVATE, dpages[0]);

	mdk_expect_left_on_device(test, addr, npages, dev, dpages);
}

/* hugetlb memory is not for device migration: -EINVAL, data untouched. */
static void migrate_vma_setup_rejects_hugetlb_vma(struct kunit *test)
{
	const unsigned long npages = 4;
	struct file *file;
	unsigned long addr, i;

	/* The case's address space, for the teardown checks. */
	mdk_mmap(test, 1);
	file = hugetlb_file_setup(HUGETLB_ANON_FILE, PMD_SIZE, VM_NORESERVE,
				  HUGETLB_ANONHUGE_INODE, PMD_SHIFT);
	KUNIT_ASSERT_FALSE_MSG(test, IS_ERR(file), "hugetlb file: %ld",
			       PTR_ERR(file));
	addr = kunit_vm_mmap(test, file, 0, PMD_SIZE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE, 0);
	fput(file);
	KUNIT_ASSERT_TRUE(test, addr && !IS_ERR_VALUE(addr));
	for (i = 0; i < npages; i++)
		mdk_write_user(test, mdk_page_addr(addr, i));

	mdk_expect_setup_refused(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
				 NULL);

	for (i = 0; i < npages; i++)
		mdk_expect_user_data(test, mdk_page_addr(addr, i),
				     mdk_seed(mdk_page_addr(addr, i)));
	mdk_expect_device_pages_freed(test);
}

/* ------------------------------------------------------------------------
 * migrate_vma_setup(): what it selects.
 */

struct mdk_select {
	enum mdk_kind kind;
	unsigned long flags;
	bool selected;
};

#define MDK_SEL_SYS	MIGRATE_VMA_SELECT_SYSTEM
#define MDK_SEL_PRIV	MIGRATE_VMA_SELECT_DEVICE_PRIVATE
#define MDK_SEL_COH	MIGRATE_VMA_SELECT_DEVICE_COHERENT

static const struct mdk_select mdk_select_cases[] = {
	{ MDK_SYSTEM,		MDK_SEL_SYS,	true },
	{ MDK_SYSTEM,		MDK_SEL_PRIV,	false },
	{ MDK_SYSTEM,		MDK_SEL_COH,	false },
	{ MDK_SYSTEM,		MDK_SELECT_ALL,	true },
	{ MDK_OWN_PRIVATE,	MDK_SEL_SYS,	false },
	{ MDK_OWN_PRIVATE,	MDK_SEL_PRIV,	true },
	{ MDK_OWN_PRIVATE,	MDK_SEL_COH,	false },
	{ MDK_OWN_PRIVATE,	MDK_SELECT_ALL,	true },
	{ MDK_OTHER_PRIVATE,	MDK_SEL_SYS,	false },
	{ MDK_OTHER_PRIVATE,	MDK_SEL_PRIV,	false },
	{ MDK_OTHER_PRIVATE,	MDK_SEL_COH,	false },
	{ MDK_OTHER_PRIVATE,	MDK_SELECT_ALL,	false },
	{ MDK_OWN_COHERENT,	MDK_SEL_SYS,	false },
	{ MDK_OWN_COHERENT,	MDK_SEL_PRIV,	false },
	{ MDK_OWN_COHERENT,	MDK_SEL_COH,	true },
	{ MDK_OWN_COHERENT,	MDK_SELECT_ALL,	true },
	{ MDK_OTHER_COHERENT,	MDK_SEL_SYS,	false },
	{ MDK_OTHER_COHERENT,	MDK_SEL_PRIV,	false },
	{ MDK_OTHER_COHERENT,	MDK_SEL_COH,	false },
	{ MDK_OTHER_COHERENT,	MDK_SELECT_ALL,	false },
};

static const char *mdk_flags_name(unsigned long flags)
{
	switch (flags) {
	case MDK_SEL_SYS:
		return "SELECT_SYSTEM";
	case MDK_SEL_PRIV:
		return "SELECT_DEVICE_PRIVATE";
	case MDK_SEL_COH:
		return "SELECT_DEVICE_COHERENT";
	case MDK_SELECT_ALL:
		return "all SELECT flags";
	}
	return "?";
}

static void mdk_select_desc(const struct mdk_select *p, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "%s with %s",
		 mdk_kind_names[p->kind], mdk_flags_name(p->flags));
}

KUNIT_ARRAY_PARAM(mdk_select, mdk_select_cases, mdk_select_desc);

/*
 * A page is collected only when its type's flag is given and, for device
 * pages, its pgmap owner is the caller's; anything else reads 0 and stays.
 */
static void migrate_vma_setup_selects_by_type_flag_and_owner(struct kunit *test)
{
	const struct mdk_select *p = test->param_value;
	struct mdk_migration *m;
	struct page *page;
	unsigned long addr;

	addr = mdk_mmap(test, 1);
	page = mdk_populate(test, addr, p->kind);

	m = mdk_setup(test, addr, 1, p->flags, &mdk_owner);
	KUNIT_EXPECT_EQ(test, m->args.src[0],
			p->selected ? mdk_collected(page) : 0);
	KUNIT_EXPECT_EQ(test, m->args.dst[0], 0);
	KUNIT_EXPECT_EQ(test, m->args.cpages, p->selected ? 1 : 0);
	if (!p->selected)
		mdk_expect_mapped_once(test, addr, page, 1);

	mdk_pages(test, m);
	mdk_finalize(test, m);
	mdk_expect_mapped_once(test, addr, page, 1);
	mdk_expect_page_data(test, page, mdk_seed(addr));
	mdk_expect_device_pages_freed(test);
}

/* Each entry of a range mixing every kind is encoded on its own. */
static void migrate_vma_setup_encodes_each_entry_of_mixed_range(struct kunit *test)
{
	static const enum mdk_kind kinds[] = {
		MDK_SYSTEM, MDK_HOLE, MDK_ZERO, MDK_OWN_PRIVATE,
		MDK_OTHER_PRIVATE, MDK_SYSTEM, MDK_OWN_PRIVATE, MDK_HOLE,
	};
	const unsigned long npages = ARRAY_SIZE(kinds);
	struct page *pages[ARRAY_SIZE(kinds)];
	unsigned long addr, i, expect, cpages = 0;
	struct mdk_migration *m;

	addr = mdk_mmap(test, npages);
	for (i = 0; i < npages; i++)
		pages[i] = mdk_populate(test, mdk_page_addr(addr, i), kinds[i]);

	m = mdk_setup(test, addr, npages, MDK_SELECT_ALL, &mdk_owner);
	for (i = 0; i < npages; i++) {
		switch (kinds[i]) {
		case MDK_HOLE:
		case MDK_ZERO:
			expect = MIGRATE_PFN_MIGRATE;
			break;
		case MDK_OTHER_PRIVATE:
			expect = 0;
			break;
		default:
			expect = mdk_collected(pages[i]);
			break;
		}
		cpages += !!expect;
		KUNIT_EXPECT_EQ_MSG(test, m->args.src[i], expect, "src[%lu]", i);
		KUNIT_EXPECT_EQ_MSG(test, m->args.dst[i], 0, "dst[%lu]", i);
	}
	KUNIT_EXPECT_EQ(test, m->args.cpages, cpages);
	KUNIT_EXPECT_EQ(test, m->args.end, mdk_page_addr(addr, npages));

	mdk_pages(test, m);
	mdk_finalize(test, m);
	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);

		if (kinds[i] == MDK_HOLE)
			mdk_expect_pte_kind(test, a, MDK_PTE_NONE);
		else if (kinds[i] == MDK_ZERO)
			mdk_expect_zero_page(test, a);
		else
			mdk_expect_mapped_once(test, a, pages[i], 1);
		if (pages[i])
			mdk_expect_page_data(test, pages[i], mdk_seed(a));
	}
	mdk_expect_device_pages_freed(test);
}

/* ------------------------------------------------------------------------
 * Holes and the zero page.
 */

/* Holes and the zero page are offered as MIGRATE without a page. */
static void migrate_vma_setup_offers_holes_and_zero_page(struct kunit *test)
{
	static const enum mdk_kind kinds[] = {
		MDK_SYSTEM, MDK_HOLE, MDK_ZERO, MDK_HOLE,
	};
	const unsigned long npages = ARRAY_SIZE(kinds);
	struct page *page;
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap(test, npages);
	for (i = 0; i < npages; i++)
		mdk_populate(test, mdk_page_addr(addr, i), kinds[i]);
	page = mdk_page_at(test, addr);

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	KUNIT_EXPECT_EQ(test, m->args.src[0], mdk_collected(page));
	for (i = 1; i < npages; i++)
		KUNIT_EXPECT_EQ_MSG(test, m->args.src[i], MIGRATE_PFN_MIGRATE,
				    "src[%lu]", i);
	KUNIT_EXPECT_EQ(test, m->args.cpages, npages);

	/* No destinations: everything is left as it was. */
	mdk_pages(test, m);
	mdk_finalize(test, m);
	mdk_expect_mapped_once(test, addr, page, 1);
	mdk_expect_pte_kind(test, mdk_page_addr(addr, 1), MDK_PTE_NONE);
	mdk_expect_zero_page(test, mdk_page_addr(addr, 2));
	mdk_expect_pte_kind(test, mdk_page_addr(addr, 3), MDK_PTE_NONE);
	mdk_expect_device_pages_freed(test);
}

/* A range with no page table at all is offered page by page. */
static void migrate_vma_setup_offers_unpopulated_range(struct kunit *test)
{
	const unsigned long npages = 4;
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap(test, npages);
	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	for (i = 0; i < npages; i++) {
		KUNIT_EXPECT_EQ_MSG(test, m->args.src[i], MIGRATE_PFN_MIGRATE,
				    "src[%lu]", i);
		KUNIT_EXPECT_EQ_MSG(test, m->args.dst[i], 0, "dst[%lu]", i);
	}
	KUNIT_EXPECT_EQ(test, m->args.cpages, npages);
	mdk_pages(test, m);
	mdk_finalize(test, m);
	for (i = 0; i < npages; i++)
		mdk_expect_pte_kind(test, mdk_page_addr(addr, i), MDK_PTE_NONE);
	mdk_expect_device_pages_freed(test);
}

/* The zero page is system memory: it needs SELECT_SYSTEM. */
static void migrate_vma_setup_skips_zero_page_without_select_system(struct kunit *test)
{
	struct mdk_migration *m;
	struct page *page;
	unsigned long addr;

	addr = mdk_mmap(test, 2);
	mdk_populate(test, addr, MDK_ZERO);
	page = mdk_populate(test, mdk_page_addr(addr, 1), MDK_OWN_PRIVATE);

	m = mdk_setup(test, addr, 2, MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
		      &mdk_owner);
	KUNIT_EXPECT_EQ(test, m->args.src[0], 0);
	KUNIT_EXPECT_EQ(test, m->args.src[1], mdk_collected(page));
	KUNIT_EXPECT_EQ(test, m->args.cpages, 1);
	mdk_pages(test, m);
	mdk_finalize(test, m);
	mdk_expect_zero_page(test, addr);
	mdk_expect_mapped_once(test, mdk_page_addr(addr, 1), page, 1);
	mdk_expect_device_pages_freed(test);
}

/* Device memory fills holes and replaces the zero page, writable. */
static void migrate_vma_pages_fills_holes_and_zero_page_with_device_pages(struct kunit *test)
{
	static const enum mdk_kind kinds[] = {
		MDK_HOLE, MDK_ZERO, MDK_SYSTEM, MDK_HOLE,
	};
	const unsigned long npages = ARRAY_SIZE(kinds);
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *dpages[ARRAY_SIZE(kinds)];
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap(test, npages);
	for (i = 0; i < npages; i++)
		mdk_populate(test, mdk_page_addr(addr, i), kinds[i]);

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	KUNIT_ASSERT_EQ(test, m->args.cpages, npages);
	for (i = 0; i < npages; i++)
		dpages[i] = mdk_give_vma_dst(test, m, i, dev);
	mdk_pages(test, m);
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(m->args.src, npages), npages);
	mdk_finalize(test, m);

	for (i = 0; i < npages; i++)
		mdk_expect_mapped_once(test, mdk_page_addr(addr, i), dpages[i], 1);
	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);

		mdk_expect_user_data(test, a, kinds[i] == MDK_SYSTEM ?
				     mdk_seed(a) : mdk_device_seed(a));
	}
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), npages);
	mdk_expect_device_pages_freed(test);
}

/* The same where no page table exists yet: migrate_vma_pages() makes one. */
static void migrate_vma_pages_fills_unpopulated_range_with_device_pages(struct kunit *test)
{
	const unsigned long npages = 4;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *dpages[4];
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap(test, npages);
	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	KUNIT_ASSERT_EQ(test, m->args.cpages, npages);
	for (i = 0; i < npages; i++)
		dpages[i] = mdk_give_vma_dst(test, m, i, dev);
	mdk_pages(test, m);
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(m->args.src, npages), npages);
	mdk_finalize(test, m);

	for (i = 0; i < npages; i++)
		mdk_expect_mapped_once(test, mdk_page_addr(addr, i), dpages[i], 1);
	for (i = 0; i < npages; i++)
		mdk_expect_user_data(test, mdk_page_addr(addr, i),
				     mdk_device_seed(mdk_page_addr(addr, i)));
	mdk_expect_device_pages_freed(test);
}

/* ------------------------------------------------------------------------
 * Pages that must stay where they are.
 */

enum mdk_busy {
	MDK_PINNED,
	MDK_REFERENCED,
	MDK_LOCKED,
};

static const struct {
	enum mdk_busy how;
	const char *desc;
} mdk_busy_cases[] = {
	{ MDK_PINNED, "pinned with pin_user_pages()" },
	{ MDK_REFERENCED, "one extra reference" },
	{ MDK_LOCKED, "locked" },
};

KUNIT_ARRAY_PARAM_DESC(mdk_busy, mdk_busy_cases, desc);

KUNIT_DEFINE_ACTION_WRAPPER(mdk_unpin_page, unpin_user_page, struct page *);
KUNIT_DEFINE_ACTION_WRAPPER(mdk_put_page, put_page, struct page *);
KUNIT_DEFINE_ACTION_WRAPPER(mdk_unlock_page, unlock_page, struct page *);

static void mdk_make_busy(struct kunit *test, unsigned long addr,
			  enum mdk_busy how)
{
	struct mm_struct *mm = current->mm;
	struct page *page;
	long n;

	mmap_read_lock(mm);
	if (how == MDK_PINNED)
		n = pin_user_pages(addr, 1, FOLL_WRITE, &page);
	else
		n = get_user_pages(addr, 1, 0, &page);
	mmap_read_unlock(mm);
	KUNIT_ASSERT_EQ(test, n, 1);

	switch (how) {
	case MDK_PINNED:
		KUNIT_ASSERT_EQ(test, 0, kunit_add_action_or_reset(test, mdk_unpin_page, page));
		break;
	case MDK_REFERENCED:
		KUNIT_ASSERT_EQ(test, 0, kunit_add_action_or_reset(test, mdk_put_page, page));
		break;
	case MDK_LOCKED:
		/* The mapping keeps the page alive without our reference. */
		lock_page(page);
		put_page(page);
		KUNIT_ASSERT_EQ(test, 0, kunit_add_action_or_reset(test, mdk_unlock_page, page));
		break;
	}
}

/*
 * A page setup cannot have to itself reads 0 and stays mapped, while the
 * rest of the range migrates.
 */
static void migrate_vma_setup_leaves_busy_page_mapped(struct kunit *test)
{
	const typeof(mdk_busy_cases[0]) *p = test->param_value;
	const unsigned long npages = 4, busy = 1;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *pages[4], *dpages[4];
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap_populated(test, npages, pages);
	mdk_make_busy(test, mdk_page_addr(addr, busy), p->how);

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	for (i = 0; i < npages; i++)
		KUNIT_EXPECT_EQ_MSG(test, m->args.src[i],
				    i == busy ? 0 : mdk_collected(pages[i]),
				    "src[%lu]", i);
	KUNIT_EXPECT_EQ(test, m->args.cpages, npages - 1);
	mdk_expect_maps(test, mdk_page_addr(addr, busy), pages[busy], 1);

	for (i = 0; i < npages; i++)
		dpages[i] = mdk_give_vma_dst(test, m, i, dev);
	mdk_pages(test, m);
	mdk_finalize(test, m);

	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);

		if (i == busy) {
			mdk_expect_maps(test, a, pages[i], 1);
			mdk_expect_page_data(test, pages[i], mdk_seed(a));
		} else {
			mdk_expect_mapped_once(test, a, dpages[i], 1);
			mdk_expect_page_data(test, dpages[i], mdk_seed(a));
		}
	}
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), 0);
	if (p->how == MDK_LOCKED)
		kunit_release_action(test, mdk_unlock_page, pages[busy]);
	for (i = 0; i < npages; i++)
		mdk_expect_user_data(test, mdk_page_addr(addr, i),
				     mdk_seed(mdk_page_addr(addr, i)));
	mdk_expect_device_pages_freed(test);
}

static const struct {
	enum mdk_busy how;
	const char *desc;
} mdk_busy_device_cases[] = {
	{ MDK_REFERENCED, "one extra reference" },
	{ MDK_LOCKED, "locked" },
};

KUNIT_ARRAY_PARAM_DESC(mdk_busy_device, mdk_busy_device_cases, desc);

/* Hold the device page @page, by its lock or a reference, as @how says. */
static void mdk_hold_device_page(struct kunit *test, struct page *page,
				 enum mdk_busy how)
{
	if (how == MDK_LOCKED) {
		lock_page(page);
		KUNIT_ASSERT_EQ(test, 0, kunit_add_action_or_reset(test, mdk_unlock_page,
								   page));
	} else {
		get_page(page);
		KUNIT_ASSERT_EQ(test, 0, kunit_add_action_or_reset(test, mdk_put_page,
								   page));
	}
}

static void mdk_release_device_page(struct kunit *test, struct page *page,
				    enum mdk_busy how)
{
	kunit_release_action(test, how == MDK_LOCKED ? mdk_unlock_page :
			     mdk_put_page, page);
}

/*
 * A device private page somebody else holds (a reference, or its lock)
 * stays on the device, mapped as before, while the rest of the range comes
 * back to system memory. Collect checks such a page itself once its only
 * pte is a migration entry, so this pins that check down.
 */
static void migrate_vma_setup_leaves_busy_device_page_on_device(struct kunit *test)
{
	const typeof(mdk_busy_device_cases[0]) *p = test->param_value;
	const unsigned long npages = 4, busy = 2;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *dpages[4], *spages[4] = {};
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap_on_device(test, npages, dev, dpages);
	mdk_hold_device_page(test, dpages[busy], p->how);

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
		      &mdk_owner);
	for (i = 0; i < npages; i++)
		KUNIT_EXPECT_EQ_MSG(test, m->args.src[i],
				    i == busy ? 0 : mdk_collected(dpages[i]),
				    "src[%lu]", i);
	KUNIT_EXPECT_EQ(test, m->args.cpages, npages - 1);
	mdk_expect_maps(test, mdk_page_addr(addr, busy), dpages[busy], 1);

	for (i = 0; i < npages; i++)
		if (i != busy)
			spages[i] = mdk_give_vma_dst(test, m, i, NULL);
	mdk_pages(test, m);
	mdk_finalize(test, m);
	mdk_release_device_page(test, dpages[busy], p->how);

	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);
		struct page *now = i == busy ? dpages[i] : spages[i];

		mdk_expect_mapped_once(test, a, now, 1);
		mdk_expect_page_data(test, now, mdk_seed(a));
	}
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), 0);
	mdk_expect_device_pages_freed(test);
}

/*
 * A reference taken after setup (O_DIRECT, a GUP user) makes the page
 * impossible to move: migrate_vma_pages() drops its entry, finalize maps
 * it again and releases the destination the driver gave for it.
 */
static void migrate_vma_pages_drops_page_referenced_after_setup(struct kunit *test)
{
	const unsigned long npages = 2, held = 0;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *pages[2], *dpages[2];
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap_populated(test, npages, pages);

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	KUNIT_ASSERT_EQ(test, m->args.cpages, npages);
	get_page(pages[held]);
	KUNIT_ASSERT_EQ(test, 0, kunit_add_action_or_reset(test, mdk_put_page,
							   pages[held]));
	for (i = 0; i < npages; i++)
		dpages[i] = mdk_give_vma_dst(test, m, i, dev);
	mdk_pages(test, m);
	for (i = 0; i < npages; i++)
		KUNIT_EXPECT_EQ_MSG(test,
				    !!(m->args.src[i] & MIGRATE_PFN_MIGRATE),
				    i != held, "src[%lu]", i);
	mdk_finalize(test, m);
	kunit_release_action(test, mdk_put_page, pages[held]);

	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);
		struct page *now = i == held ? pages[i] : dpages[i];

		mdk_expect_mapped_once(test, a, now, 1);
		mdk_expect_page_data(test, now, mdk_seed(a));
	}
	mdk_expect_device_pages_freed(test);
}

/*
 * A destination page of a ZONE_DEVICE type that cannot hold anonymous
 * memory (MEMORY_DEVICE_GENERIC here, as fsdax or P2PDMA) is refused for a
 * page and for a hole alike: both stay as they were, and finalize hands the
 * refused pages back to their device.
 */
static void migrate_vma_pages_refuses_dst_of_other_zone_device_type(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_GENERIC);
	unsigned long addr = mdk_mmap(test, 2), i;
	struct page *page, *dpages[2];
	struct mdk_migration *m;

	page = mdk_populate(test, addr, MDK_SYSTEM);
	m = mdk_setup(test, addr, 2, MIGRATE_VMA_SELECT_SYSTEM, &mdk_owner);
	KUNIT_ASSERT_EQ(test, m->args.cpages, 2);
	for (i = 0; i < 2; i++) {
		dpages[i] = mdk_generic_alloc(dev);
		KUNIT_ASSERT_NOT_NULL(test, dpages[i]);
		m->args.dst[i] = migrate_pfn(page_to_pfn(dpages[i]));
	}
	mdk_pages(test, m);
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(m->args.src, 2), 0);
	mdk_finalize(test, m);

	mdk_expect_mapped_once(test, addr, page, 1);
	mdk_expect_page_data(test, page, mdk_seed(addr));
	mdk_expect_pte_kind(test, mdk_page_addr(addr, 1), MDK_PTE_NONE);
	for (i = 0; i < 2; i++)
		KUNIT_EXPECT_EQ(test, page_count(dpages[i]), 1);
	KUNIT_EXPECT_EQ(test, READ_ONCE(dev->nr_free), dev->nr_pages);
}

/*
 * The CPU may fill a hole or write over the zero page while the driver
 * copies: the page it faulted in wins, and the driver's page for that
 * address is released rather than mapped over it.
 */
static void migrate_vma_pages_keeps_page_cpu_faulted_after_setup(struct kunit *test)
{
	static const enum mdk_kind kinds[] = { MDK_HOLE, MDK_ZERO, MDK_HOLE };
	const unsigned long npages = ARRAY_SIZE(kinds), untouched = 2;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *dpages[ARRAY_SIZE(kinds)];
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap(test, npages);
	for (i = 0; i < npages; i++)
		mdk_populate(test, mdk_page_addr(addr, i), kinds[i]);

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	KUNIT_ASSERT_EQ(test, m->args.cpages, npages);
	for (i = 0; i < npages; i++) {
		if (i != untouched)
			mdk_write_user(test, mdk_page_addr(addr, i));
		dpages[i] = mdk_give_vma_dst(test, m, i, dev);
	}
	mdk_pages(test, m);
	for (i = 0; i < npages; i++)
		KUNIT_EXPECT_EQ_MSG(test,
				    !!(m->args.src[i] & MIGRATE_PFN_MIGRATE),
				    i == untouched, "src[%lu]", i);
	mdk_finalize(test, m);

	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);

		if (i == untouched) {
			mdk_expect_mapped_once(test, a, dpages[i], 1);
			mdk_expect_page_data(test, dpages[i],
					     mdk_device_seed(a));
		} else {
			KUNIT_EXPECT_PTR_NE(test, mdk_page_at(test, a),
					    dpages[i]);
			mdk_expect_pte_kind(test, a, MDK_PTE_PRESENT);
			mdk_expect_user_data(test, a, mdk_seed(a));
		}
	}
	mdk_expect_device_pages_freed(test);
}

/*
 * A destination given for an entry setup did not collect (src 0) is never
 * used: finalize unlocks and releases it, and the page stays where it was.
 */
static void migrate_vma_finalize_releases_dst_of_uncollected_entry(struct kunit *test)
{
	const unsigned long npages = 2, busy = 0;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *pages[2], *dpages[2];
	struct mdk_migration *m;
	unsigned long addr;

	addr = mdk_mmap_populated(test, npages, pages);
	mdk_make_busy(test, mdk_page_addr(addr, busy), MDK_LOCKED);

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	KUNIT_ASSERT_EQ(test, m->args.src[busy], 0);
	dpages[busy] = mdk_device_alloc(dev);
	KUNIT_ASSERT_NOT_NULL(test, dpages[busy]);
	m->args.dst[busy] = migrate_pfn(page_to_pfn(dpages[busy]));
	dpages[!busy] = mdk_give_vma_dst(test, m, !busy, dev);
	mdk_pages(test, m);
	mdk_finalize(test, m);
	kunit_release_action(test, mdk_unlock_page, pages[busy]);

	mdk_expect_maps(test, mdk_page_addr(addr, busy), pages[busy], 1);
	mdk_expect_mapped_once(test, mdk_page_addr(addr, !busy), dpages[!busy],
			       1);
	/* The unused destination went back to the device, unlocked. */
	KUNIT_EXPECT_FALSE(test, PageLocked(dpages[busy]));
	KUNIT_EXPECT_FALSE(test,
			   mdk_device_page_used(dev, page_to_pfn(dpages[busy])));
	mdk_expect_device_pages_freed(test);
}

KUNIT_DEFINE_ACTION_WRAPPER(mdk_fput, fput, struct file *);

/*
 * Drivers loop over a large range with one struct migrate_vma, changing
 * only start and end (nouveau does). Internal state the engine leaves in
 * @flags after a page mapped in two places, which it restores through the
 * rmap, must not make the next setup fail, and both mappings come back.
 */
static void migrate_vma_struct_reused_after_rmap_restore(struct kunit *test)
{
	const unsigned long npages = 2;
	unsigned long a, b, i;
	struct mdk_migration *m;
	struct page *page;
	struct file *file;

	file = shmem_file_setup("mdk", npages * PAGE_SIZE, 0);
	KUNIT_ASSERT_FALSE(test, IS_ERR(file));
	KUNIT_ASSERT_EQ(test, 0, kunit_add_action_or_reset(test, mdk_fput,
							   file));
	a = kunit_vm_mmap(test, file, 0, npages * PAGE_SIZE,
			  PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	b = kunit_vm_mmap(test, file, 0, npages * PAGE_SIZE,
			  PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	KUNIT_ASSERT_TRUE(test, a && !IS_ERR_VALUE(a) && b && !IS_ERR_VALUE(b));
	for (i = 0; i < npages; i++) {
		mdk_write_user(test, mdk_page_addr(a, i));
		mdk_read_fault_user(test, mdk_page_addr(b, i));
	}

	m = mdk_setup(test, a, 1, MIGRATE_VMA_SELECT_SYSTEM, &mdk_owner);
	KUNIT_ASSERT_EQ(test, m->args.cpages, 1);
	mdk_finalize(test, m);

	m->args.start = mdk_page_addr(a, 1);
	m->args.end = mdk_page_addr(a, 2);
	KUNIT_ASSERT_EQ(test, mdk_try_setup(test, m), 0);
	KUNIT_EXPECT_EQ(test, m->args.cpages, 1);
	mdk_finalize(test, m);

	for (i = 0; i < npages; i++) {
		page = mdk_page_at(test, mdk_page_addr(a, i));
		KUNIT_EXPECT_PTR_EQ(test, mdk_page_at(test, mdk_page_addr(b, i)),
				    page);
		KUNIT_EXPECT_EQ(test, folio_mapcount(page_folio(page)), 2);
		mdk_expect_user_data(test, mdk_page_addr(a, i),
				     mdk_seed(mdk_page_addr(a, i)));
		mdk_expect_user_data(test, mdk_page_addr(b, i),
				     mdk_seed(mdk_page_addr(a, i)));
	}
}

/* A shared (non-anonymous) mapping: no holes offered, pages stay put. */
static void migrate_vma_keeps_shared_mapping_in_system_memory(struct kunit *test)
{
	const unsigned long npages = 4;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *pages[4] = {};
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap_prot(test, npages, PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS);
	pages[0] = mdk_populate(test, addr, MDK_SYSTEM);
	pages[3] = mdk_populate(test, mdk_page_addr(addr, 3), MDK_SYSTEM);

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	KUNIT_EXPECT_EQ(test, m->args.src[1], 0);
	KUNIT_EXPECT_EQ(test, m->args.src[2], 0);
	KUNIT_EXPECT_EQ(test, m->args.cpages,
			mdk_count_migrating(m->args.src, npages));

	for (i = 0; i < npages; i++)
		mdk_give_vma_dst(test, m, i, dev);
	mdk_pages(test, m);
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(m->args.src, npages), 0);
	mdk_finalize(test, m);

	for (i = 0; i < npages; i += 3) {
		mdk_expect_maps(test, mdk_page_addr(addr, i), pages[i], 1);
		mdk_expect_user_data(test, mdk_page_addr(addr, i),
				     mdk_seed(mdk_page_addr(addr, i)));
	}
	mdk_expect_pte_kind(test, mdk_page_addr(addr, 1), MDK_PTE_NONE);
	mdk_expect_pte_kind(test, mdk_page_addr(addr, 2), MDK_PTE_NONE);
	KUNIT_EXPECT_EQ(test, dev->nr_free,
			((struct mdk_case *)test->priv)->free_at_start[MDK_PRIVATE]);
	mdk_expect_device_pages_freed(test);
}

/* ------------------------------------------------------------------------
 * Drivers that migrate only part of a range.
 */

/* Entries without dst stay; after finalize each page is mapped once. */
static void migrate_vma_partial_migration_maps_each_page_once(struct kunit *test)
{
	const unsigned long npages = 8;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *pages[8], *dpages[8] = {};
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap_populated(test, npages, pages);

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	KUNIT_ASSERT_EQ(test, m->args.cpages, npages);
	for (i = 0; i < npages; i += 2)
		dpages[i] = mdk_give_vma_dst(test, m, i, dev);
	mdk_pages(test, m);
	for (i = 0; i < npages; i++)
		KUNIT_EXPECT_EQ_MSG(test,
				    !!(m->args.src[i] & MIGRATE_PFN_MIGRATE),
				    i % 2 == 0, "src[%lu]", i);
	mdk_finalize(test, m);

	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);
		struct page *now = i % 2 ? pages[i] : dpages[i];

		mdk_expect_mapped_once(test, a, now, 1);
		mdk_expect_page_data(test, now, mdk_seed(a));
	}
	for (i = 0; i < npages; i++)
		mdk_expect_user_data(test, mdk_page_addr(addr, i),
				     mdk_seed(mdk_page_addr(addr, i)));
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), npages / 2);
	mdk_expect_device_pages_freed(test);
}

/* A driver that could allocate nothing leaves the range as it was. */
static void migrate_vma_without_destinations_restores_every_page(struct kunit *test)
{
	static const enum mdk_kind kinds[] = {
		MDK_SYSTEM, MDK_SYSTEM, MDK_HOLE, MDK_ZERO,
		MDK_OWN_PRIVATE, MDK_SYSTEM,
	};
	const unsigned long npages = ARRAY_SIZE(kinds);
	struct page *pages[ARRAY_SIZE(kinds)];
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap(test, npages);
	for (i = 0; i < npages; i++)
		pages[i] = mdk_populate(test, mdk_page_addr(addr, i), kinds[i]);

	m = mdk_setup(test, addr, npages, MDK_SELECT_ALL, &mdk_owner);
	KUNIT_ASSERT_EQ(test, m->args.cpages, npages);
	mdk_pages(test, m);
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(m->args.src, npages), 0);
	mdk_finalize(test, m);

	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);

		if (kinds[i] == MDK_HOLE) {
			mdk_expect_pte_kind(test, a, MDK_PTE_NONE);
		} else if (kinds[i] == MDK_ZERO) {
			mdk_expect_zero_page(test, a);
		} else {
			mdk_expect_mapped_once(test, a, pages[i], 1);
			mdk_expect_page_data(test, pages[i], mdk_seed(a));
		}
	}
	mdk_expect_device_pages_freed(test);
}

/* Back to system memory for some entries; the others stay on the device. */
static void migrate_vma_partial_migration_to_system_keeps_rest_on_device(struct kunit *test)
{
	const unsigned long npages = 4;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *dpages[4], *spages[4] = {};
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap_on_device(test, npages, dev, dpages);

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
		      &mdk_owner);
	KUNIT_ASSERT_EQ(test, m->args.cpages, npages);
	for (i = 0; i < npages; i += 2)
		spages[i] = mdk_give_vma_dst(test, m, i, NULL);
	mdk_pages(test, m);
	mdk_finalize(test, m);

	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);
		struct page *now = i % 2 ? dpages[i] : spages[i];

		mdk_expect_mapped_once(test, a, now, 1);
		mdk_expect_page_data(test, now, mdk_seed(a));
		KUNIT_EXPECT_EQ_MSG(test,
				    mdk_device_page_used(dev, page_to_pfn(dpages[i])),
				    i % 2 == 1, "device page of entry %lu", i);
	}
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), 0);
	mdk_expect_device_pages_freed(test);
}

/* ------------------------------------------------------------------------
 * Whole round trips.
 */

/*
 * Unmapping a page from a VM_LOCKED VMA munlocks it, which parks a
 * reference in this CPU's mlock batch. The device private pages of a locked
 * buffer must still come back, moved by the driver or faulted by the CPU,
 * and the buffer still go to the device and back.
 */
static void migrate_vma_moves_pages_of_locked_vma(struct kunit *test)
{
	const unsigned long npages = 4;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *dpages[4];
	unsigned long addr, i;

	addr = mdk_mmap_on_device(test, npages, dev, dpages);
	mdk_add_vm_flags(current->mm, addr, VM_LOCKED);

	mdk_move_to_system(test, addr, npages,
			   MIGRATE_VMA_SELECT_DEVICE_PRIVATE);
	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);

		KUNIT_EXPECT_FALSE(test, is_zone_device_page(mdk_page_at(test, a)));
		mdk_expect_user_data(test, a, mdk_seed(a));
	}

	mdk_move_to_device(test, addr, npages, dev);
	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);

		/* A CPU fault brings each page back through migrate_to_ram. */
		mdk_expect_user_data(test, a, mdk_seed(a));
		KUNIT_EXPECT_FALSE(test, is_zone_device_page(mdk_page_at(test, a)));
	}
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), npages);
	mdk_expect_device_pages_freed(test);
}

/*
 * Pins @addr for the long term, as a driver or RDMA would, returning what
 * pin_user_pages() returned and the pinned page in *@pinned.
 */
static long mdk_longterm_pin(unsigned long addr, struct page **pinned)
{
	struct mm_struct *mm = current->mm;
	long n;

	mmap_read_lock(mm);
	n = pin_user_pages(addr, 1, FOLL_WRITE | FOLL_LONGTERM, pinned);
	mmap_read_unlock(mm);
	return n;
}

/*
 * GUP moves a device coherent page to system memory before a long-term
 * pin, through migrate_device_coherent_folio(). While somebody else holds
 * the page it cannot move: the pin fails with -EBUSY, the page stays
 * mapped with its data and the reference GUP handed over is dropped. Once
 * the page is free, the pin moves it and gets a system page.
 */
static void longterm_pin_moves_coherent_page_unless_held(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_COHERENT);
	struct page *cpage, *pinned;
	unsigned long addr;
	int refs;
	long n;

	addr = mdk_mmap(test, 1);
	mdk_write_user(test, addr);
	mdk_move_to_device(test, addr, 1, dev);
	cpage = mdk_page_at(test, addr);
	KUNIT_ASSERT_TRUE(test, is_device_coherent_page(cpage));

	get_page(cpage);
	refs = page_ref_count(cpage);
	n = mdk_longterm_pin(addr, &pinned);
	if (n == 1)
		unpin_user_page(pinned);
	KUNIT_EXPECT_EQ(test, n, -EBUSY);
	KUNIT_EXPECT_EQ(test, page_ref_count(cpage), refs);
	mdk_expect_maps(test, addr, cpage, 1);
	mdk_expect_user_data(test, addr, mdk_seed(addr));
	put_page(cpage);

	n = mdk_longterm_pin(addr, &pinned);
	KUNIT_ASSERT_EQ(test, n, 1);
	KUNIT_EXPECT_FALSE(test, is_zone_device_page(pinned));
	KUNIT_EXPECT_PTR_EQ(test, mdk_page_at(test, addr), pinned);
	mdk_expect_page_data(test, pinned, mdk_seed(addr));
	unpin_user_page(pinned);
	mdk_expect_mapped_once(test, addr, pinned, 1);
	mdk_expect_device_pages_freed(test);
}

/* System -> device -> system with migrate_vma_*(): all pages, all data. */
static void migrate_vma_round_trip_keeps_data(struct kunit *test)
{
	const unsigned long npages = MDK_MAX_PAGES;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct mdk_case *c = test->priv;
	unsigned long addr, i;

	addr = mdk_mmap(test, npages);
	for (i = 0; i < npages; i++)
		mdk_write_user(test, mdk_page_addr(addr, i));

	mdk_move_to_device(test, addr, npages, dev);
	KUNIT_EXPECT_EQ(test, dev->nr_free, c->free_at_start[MDK_PRIVATE] - npages);
	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);
		struct page *page = mdk_page_at(test, a);

		KUNIT_EXPECT_PTR_EQ(test, page->pgmap, &dev->pgmap);
		mdk_expect_mapped_once(test, a, page, 1);
		mdk_expect_page_data(test, page, mdk_seed(a));
	}

	mdk_move_to_system(test, addr, npages,
			   MIGRATE_VMA_SELECT_DEVICE_PRIVATE);
	KUNIT_EXPECT_EQ(test, dev->nr_free, c->free_at_start[MDK_PRIVATE]);
	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);
		struct page *page = mdk_page_at(test, a);

		KUNIT_EXPECT_FALSE(test, is_zone_device_page(page));
		mdk_expect_mapped_once(test, a, page, 1);
		mdk_expect_user_data(test, a, mdk_seed(a));
	}
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), 0);
	mdk_expect_device_pages_freed(test);
}

/* CPU faults on device-private pages bring them back through migrate_to_ram. */
static void migrate_to_ram_round_trip_keeps_data(struct kunit *test)
{
	const unsigned long npages = 8;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct mdk_case *c = test->priv;
	unsigned long addr, i;

	addr = mdk_mmap(test, npages);
	for (i = 0; i < npages; i++)
		mdk_write_user(test, mdk_page_addr(addr, i));
	mdk_move_to_device(test, addr, npages, dev);

	/* Half read, half written: both fault the page back. */
	for (i = 0; i < npages; i += 2)
		mdk_expect_user_data(test, mdk_page_addr(addr, i),
				     mdk_seed(mdk_page_addr(addr, i)));
	for (i = 1; i < npages; i += 2)
		mdk_write_user(test, mdk_page_addr(addr, i));
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), npages);
	KUNIT_EXPECT_EQ(test, dev->nr_free, c->free_at_start[MDK_PRIVATE]);

	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);
		struct page *page = mdk_page_at(test, a);

		KUNIT_EXPECT_FALSE(test, is_zone_device_page(page));
		mdk_expect_mapped_once(test, a, page, 1);
		mdk_expect_page_data(test, page, mdk_seed(a));
	}
	mdk_expect_device_pages_freed(test);
}

/* Coherent memory is mapped like system memory and read without faults. */
static void migrate_vma_coherent_round_trip_keeps_data(struct kunit *test)
{
	const unsigned long npages = 8;
	struct mdk_device *dev = mdk_device(test, MDK_COHERENT);
	unsigned long addr, i;

	addr = mdk_mmap(test, npages);
	for (i = 0; i < npages; i++)
		mdk_write_user(test, mdk_page_addr(addr, i));

	mdk_move_to_device(test, addr, npages, dev);
	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);
		struct page *page = mdk_page_at(test, a);

		KUNIT_EXPECT_TRUE(test, is_device_coherent_page(page));
		KUNIT_EXPECT_PTR_EQ(test, page->pgmap, &dev->pgmap);
		mdk_expect_mapped_once(test, a, page, 1);
		mdk_expect_user_data(test, a, mdk_seed(a));
		mdk_expect_maps(test, a, page, 1);
	}

	mdk_move_to_system(test, addr, npages,
			   MIGRATE_VMA_SELECT_DEVICE_COHERENT);
	for (i = 0; i < npages; i++) {
		unsigned long a = mdk_page_addr(addr, i);
		struct page *page = mdk_page_at(test, a);

		KUNIT_EXPECT_FALSE(test, is_zone_device_page(page));
		mdk_expect_mapped_once(test, a, page, 1);
		mdk_expect_user_data(test, a, mdk_seed(a));
	}
	mdk_expect_device_pages_freed(test);
}

/* Write permission follows the mapping, not dst's MIGRATE_PFN_WRITE. */
static void migrate_vma_keeps_read_only_mapping_read_only(struct kunit *test)
{
	const unsigned long npages = 2;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *page, *dpages[2];
	struct mdk_migration *m;
	unsigned long addr, i;
	long n;

	addr = mdk_mmap_prot(test, npages, PROT_READ,
			     MAP_PRIVATE | MAP_ANONYMOUS);
	/* Give the read-only mapping data the way ptrace would. */
	mmap_read_lock(current->mm);
	n = get_user_pages(addr, 1, FOLL_WRITE | FOLL_FORCE, &page);
	mmap_read_unlock(current->mm);
	KUNIT_ASSERT_EQ(test, n, 1);
	mdk_fill_page(page, mdk_seed(addr));
	put_page(page);
	KUNIT_ASSERT_EQ(test, mdk_pte_at(test, addr).writable, false);

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	KUNIT_EXPECT_EQ(test, m->args.src[0],
			migrate_pfn(page_to_pfn(page)) | MIGRATE_PFN_MIGRATE);
	KUNIT_EXPECT_EQ(test, m->args.src[1], MIGRATE_PFN_MIGRATE);
	for (i = 0; i < npages; i++) {
		dpages[i] = mdk_give_vma_dst(test, m, i, dev);
		m->args.dst[i] |= MIGRATE_PFN_WRITE;
	}
	mdk_pages(test, m);
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(m->args.src, npages), npages);
	mdk_finalize(test, m);

	for (i = 0; i < npages; i++)
		mdk_expect_mapped_once(test, mdk_page_addr(addr, i), dpages[i], 0);
	mdk_expect_user_data(test, addr, mdk_seed(addr));
	mdk_expect_user_data(test, mdk_page_addr(addr, 1),
			     mdk_device_seed(mdk_page_addr(addr, 1)));
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), npages);
	for (i = 0; i < npages; i++)
		mdk_expect_mapped_once(test, mdk_page_addr(addr, i),
				       mdk_page_at(test, mdk_page_addr(addr, i)), 0);
	mdk_expect_device_pages_freed(test);
}

#ifdef CONFIG_MMU_NOTIFIER
struct mdk_notifier {
	struct mmu_interval_notifier sub;
	unsigned int nr_migrate;
	unsigned int nr_wrong_owner;
	unsigned long start, end;
};

static bool mdk_notifier_invalidate(struct mmu_interval_notifier *sub,
				    const struct mmu_notifier_range *range,
				    unsigned long cur_seq)
{
	struct mdk_notifier *n = container_of(sub, struct mdk_notifier, sub);

	mmu_interval_set_seq(sub, cur_seq);
	if (range->event != MMU_NOTIFY_MIGRATE)
		return true;
	n->nr_migrate++;
	if (range->owner != &mdk_owner)
		n->nr_wrong_owner++;
	n->start = min(n->start, range->start);
	n->end = max(n->end, range->end);
	return true;
}

static const struct mmu_interval_notifier_ops mdk_notifier_ops = {
	.invalidate = mdk_notifier_invalidate,
};

KUNIT_DEFINE_ACTION_WRAPPER(mdk_notifier_remove, mmu_interval_notifier_remove,
			    struct mmu_interval_notifier *);

/*
 * The invalidations a migration sends, at setup and when holes are filled,
 * are MMU_NOTIFY_MIGRATE tagged with pgmap_owner, so the owning driver can
 * skip its own device mappings.
 */
static void migrate_vma_notifies_migrate_event_with_owner(struct kunit *test)
{
	static const enum mdk_kind kinds[] = {
		MDK_SYSTEM, MDK_HOLE, MDK_SYSTEM, MDK_SYSTEM,
	};
	const unsigned long npages = ARRAY_SIZE(kinds), hole = 1;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	unsigned int setup_events;
	struct mdk_notifier *n;
	struct mdk_migration *m;
	unsigned long addr, i;

	addr = mdk_mmap(test, npages);
	for (i = 0; i < npages; i++)
		mdk_populate(test, mdk_page_addr(addr, i), kinds[i]);

	n = kunit_kzalloc(test, sizeof(*n), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, n);
	n->start = ULONG_MAX;
	KUNIT_ASSERT_EQ(test, 0,
			mmu_interval_notifier_insert(&n->sub, current->mm, addr,
						     npages * PAGE_SIZE,
						     &mdk_notifier_ops));
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, mdk_notifier_remove,
						  &n->sub));

	m = mdk_setup(test, addr, npages, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	KUNIT_EXPECT_GE(test, n->nr_migrate, 1);
	KUNIT_EXPECT_LE(test, n->start, addr);
	KUNIT_EXPECT_GE(test, n->end, mdk_page_addr(addr, npages));
	for (i = 0; i < npages; i++)
		mdk_give_vma_dst(test, m, i, dev);

	/* Filling the hole maps a page where mirrors saw none: say so too. */
	setup_events = n->nr_migrate;
	n->start = ULONG_MAX;
	n->end = 0;
	mdk_pages(test, m);
	KUNIT_EXPECT_GT(test, n->nr_migrate, setup_events);
	KUNIT_EXPECT_LE(test, n->start, mdk_page_addr(addr, hole));
	KUNIT_EXPECT_GE(test, n->end, mdk_page_addr(addr, hole + 1));
	mdk_finalize(test, m);
	KUNIT_EXPECT_EQ(test, n->nr_wrong_owner, 0);

	kunit_release_action(test, mdk_notifier_remove, &n->sub);
	mdk_expect_device_pages_freed(test);
}
#else
static void migrate_vma_notifies_migrate_event_with_owner(struct kunit *test)
{
	kunit_skip(test, "needs CONFIG_MMU_NOTIFIER");
}
#endif

/* ------------------------------------------------------------------------
 * Large device folios: the memory a compound (PMD) migration hands out.
 */

#define MDK_LARGE_ORDER		ilog2(MDK_DEVICE_SIZE >> PAGE_SHIFT)

/* Counts the pages of @folio whose folio or pagemap reads wrong. */
static unsigned long mdk_count_misplaced_pages(struct folio *folio,
					       struct dev_pagemap *pgmap)
{
	unsigned long i, bad = 0;

	for (i = 0; i < folio_nr_pages(folio); i++) {
		struct page *page = folio_page(folio, i);

		if (page_folio(page) != folio || page_pgmap(page) != pgmap ||
		    !is_device_private_page(page))
			bad++;
	}
	return bad;
}

/*
 * zone_device_folio_init() builds one locked folio of the order asked for,
 * every page of which, tail pages included, reads the device's pagemap;
 * the last reference gives all of it back to the driver in one call.
 */
static void zone_device_folio_init_builds_large_folio(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct folio *folio;

	folio = mdk_device_alloc_folio(dev, MDK_LARGE_ORDER);
	KUNIT_ASSERT_NOT_NULL(test, folio);
	KUNIT_EXPECT_EQ(test, folio_order(folio), MDK_LARGE_ORDER);
	KUNIT_EXPECT_EQ(test, folio_ref_count(folio), 1);
	KUNIT_EXPECT_TRUE(test, folio_test_locked(folio));
	KUNIT_EXPECT_TRUE(test, folio_test_large_rmappable(folio));
	KUNIT_EXPECT_EQ(test, mdk_count_misplaced_pages(folio, &dev->pgmap), 0);
	KUNIT_EXPECT_EQ(test, READ_ONCE(dev->nr_free), 0);

	folio_unlock(folio);
	folio_put(folio);
	mdk_expect_device_pages_freed(test);
}

/* Hands out every page of @dev singly and counts those that read wrong. */
static unsigned long mdk_count_bad_single_pages(struct kunit *test,
						struct mdk_device *dev)
{
	struct page **pages;
	unsigned long i, bad = 0;

	pages = kunit_kcalloc(test, dev->nr_pages, sizeof(*pages), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, pages);
	for (i = 0; i < dev->nr_pages; i++) {
		pages[i] = mdk_device_alloc(dev);
		KUNIT_ASSERT_NOT_NULL(test, pages[i]);
		if (page_folio(pages[i]) != (struct folio *)pages[i] ||
		    PageHead(pages[i]) || page_pgmap(pages[i]) != &dev->pgmap ||
		    page_ref_count(pages[i]) != 1)
			bad++;
	}
	for (i = 0; i < dev->nr_pages; i++) {
		unlock_page(pages[i]);
		put_page(pages[i]);
	}
	return bad;
}

/*
 * Memory freed as a large folio can be handed out again as single pages
 * through the 6.12 zone_device_page_init(), and then as a large folio again:
 * nothing of the old folio's head and tail state survives.
 */
static void device_memory_alternates_large_folio_and_single_pages(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct folio *folio;

	folio = mdk_device_alloc_folio(dev, MDK_LARGE_ORDER);
	KUNIT_ASSERT_NOT_NULL(test, folio);
	folio_unlock(folio);
	folio_put(folio);

	KUNIT_EXPECT_EQ(test, mdk_count_bad_single_pages(test, dev), 0);

	folio = mdk_device_alloc_folio(dev, MDK_LARGE_ORDER);
	KUNIT_ASSERT_NOT_NULL(test, folio);
	KUNIT_EXPECT_EQ(test, mdk_count_misplaced_pages(folio, &dev->pgmap), 0);
	folio_unlock(folio);
	folio_put(folio);
	mdk_expect_device_pages_freed(test);
}

/*
 * The PMD cases build page tables by hand with mm internals that are not
 * exported, so they need the suite built in.
 */
#if IS_BUILTIN(CONFIG_MIGRATE_DEVICE_KUNIT_TEST) && \
	defined(CONFIG_ARCH_ENABLE_THP_MIGRATION)
/*
 * A PMD-aligned, PMD-sized part of a fresh anonymous mapping, with no page
 * table below the PMD yet.
 */
static unsigned long mdk_mmap_pmd_range(struct kunit *test)
{
	unsigned long addr = mdk_vm_mmap(test, 2 * PMD_SIZE,
					 PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS);

	return ALIGN(addr, PMD_SIZE);
}

/* The PMD covering @addr, or NULL when the tables above it are missing. */
static pmd_t *mdk_find_pmd(struct mm_struct *mm, unsigned long addr)
{
	pgd_t *pgd = pgd_offset(mm, addr);
	p4d_t *p4d;
	pud_t *pud;

	if (pgd_none(*pgd))
		return NULL;
	p4d = p4d_offset(pgd, addr);
	if (p4d_none(*p4d))
		return NULL;
	pud = pud_offset(p4d, addr);
	if (pud_none(*pud) || pud_leaf(*pud))
		return NULL;
	return pmd_offset(pud, addr);
}

static pmd_t mdk_pmd_at(struct kunit *test, unsigned long addr)
{
	struct mm_struct *mm = current->mm;
	pmd_t pmd = __pmd(0), *pmdp;

	mmap_read_lock(mm);
	pmdp = mdk_find_pmd(mm, addr);
	if (pmdp)
		pmd = pmdp_get_lockless(pmdp);
	mmap_read_unlock(mm);
	return pmd;
}

/*
 * Map @folio, a locked large device-private folio, at @addr by one writable
 * device-private PMD, as the migration of a THP to the device leaves it: an
 * exclusive anonymous rmap, a deposited page table for a later split, and
 * the folio counted in the mm's anonymous pages. The folio's reference
 * becomes the mapping's.
 */
static void mdk_map_device_pmd(struct kunit *test, unsigned long addr,
			       struct folio *folio)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	pgtable_t pgtable;
	spinlock_t *ptl;	/* the PMD's page table lock */
	pmd_t *pmdp = NULL;
	bool mapped = false;

	mmap_read_lock(mm);
	vma = vma_lookup(mm, addr);
	if (vma && !anon_vma_prepare(vma)) {
		pgd_t *pgd = pgd_offset(mm, addr);
		p4d_t *p4d = p4d_alloc(mm, pgd, addr);
		pud_t *pud = p4d ? pud_alloc(mm, p4d, addr) : NULL;

		pmdp = pud ? pmd_alloc(mm, pud, addr) : NULL;
	}
	pgtable = pmdp ? pte_alloc_one(mm) : NULL;
	if (pgtable) {
		ptl = pmd_lock(mm, pmdp);
		if (pmd_none(*pmdp)) {
			unsigned long pfn = folio_pfn(folio);
			swp_entry_t entry;

			entry = make_writable_device_private_entry(pfn);
			folio_add_new_anon_rmap(folio, vma, addr,
						RMAP_EXCLUSIVE);
			pgtable_trans_huge_deposit(mm, pmdp, pgtable);
			mm_inc_nr_ptes(mm);
			add_mm_counter(mm, MM_ANONPAGES, HPAGE_PMD_NR);
			set_pmd_at(mm, addr, pmdp, swp_entry_to_pmd(entry));
			mapped = true;
		}
		spin_unlock(ptl);
		if (!mapped)
			pte_free(mm, pgtable);
	}
	mmap_read_unlock(mm);
	folio_unlock(folio);
	if (!mapped)
		folio_put(folio);
	KUNIT_ASSERT_TRUE(test, mapped);
}

/*
 * A large folio filling the whole device, mapped by a PMD at a new range,
 * each page holding the pattern of its address.
 */
static unsigned long mdk_map_new_device_pmd(struct kunit *test,
					    struct mdk_device *dev,
					    struct folio **foliop)
{
	unsigned long addr = mdk_mmap_pmd_range(test), i;
	struct folio *folio;

	KUNIT_ASSERT_EQ(test, MDK_LARGE_ORDER, HPAGE_PMD_ORDER);
	folio = mdk_device_alloc_folio(dev, HPAGE_PMD_ORDER);
	KUNIT_ASSERT_NOT_NULL(test, folio);
	for (i = 0; i < HPAGE_PMD_NR; i++)
		mdk_fill_page(folio_page(folio, i),
			      mdk_seed(mdk_page_addr(addr, i)));
	mdk_map_device_pmd(test, addr, folio);
	*foliop = folio;
	return addr;
}

/*
 * migrate_vma_setup() over a PMD, selecting only system memory: it takes
 * the PMD's pte table when it has one. Returns the pages it collected.
 */
static unsigned long mdk_collect_system_pmd(struct kunit *test,
					    unsigned long addr)
{
	unsigned long *pfns;
	struct migrate_vma args = {
		.start		= addr,
		.end		= addr + PMD_SIZE,
		.pgmap_owner	= &mdk_owner,
		.flags		= MIGRATE_VMA_SELECT_SYSTEM,
	};

	pfns = kunit_kcalloc(test, 2 * HPAGE_PMD_NR, sizeof(*pfns), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, pfns);
	args.src = pfns;
	args.dst = pfns + HPAGE_PMD_NR;
	mmap_read_lock(current->mm);
	args.vma = vma_lookup(current->mm, addr);
	KUNIT_EXPECT_EQ(test, migrate_vma_setup(&args), 0);
	migrate_vma_pages(&args);
	migrate_vma_finalize(&args);
	mmap_read_unlock(current->mm);
	return args.cpages;
}

/*
 * The process's anonymous RSS, exactly: get_mm_counter() leaves out what
 * each CPU has not yet folded into the counter, and the case's kthread may
 * have run on either CPU.
 */
static unsigned long mdk_anon_rss(void)
{
	return get_mm_counter_sum(current->mm, MM_ANONPAGES);
}

/*
 * A device-private PMD is neither a page table nor a bad PMD to the pte
 * walkers (migration that does not select device-private memory passes it
 * by), and munmap() gives its whole folio back to the driver and takes its
 * pages off the mm's count.
 */
static void munmap_frees_folio_of_device_private_pmd(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	unsigned long addr, rss;
	struct folio *folio;

	addr = mdk_map_new_device_pmd(test, dev, &folio);
	rss = mdk_anon_rss();
	KUNIT_EXPECT_GE(test, rss, HPAGE_PMD_NR);
	KUNIT_EXPECT_EQ(test, mdk_collect_system_pmd(test, addr), 0);
	KUNIT_EXPECT_TRUE(test, is_pmd_device_private_entry(mdk_pmd_at(test, addr)));
	KUNIT_EXPECT_EQ(test, folio_mapcount(folio), 1);
	KUNIT_EXPECT_EQ(test, folio_ref_count(folio), 1);

	KUNIT_EXPECT_EQ(test, vm_munmap(addr, PMD_SIZE), 0);
	KUNIT_EXPECT_EQ(test, mdk_anon_rss(),
			rss - HPAGE_PMD_NR);
	KUNIT_EXPECT_TRUE(test, pmd_none(mdk_pmd_at(test, addr)));
	mdk_expect_device_pages_freed(test);
}

/* Counts the ptes from @addr on that do not map @page onwards, writable. */
static unsigned long mdk_count_unmapped_device_ptes(struct kunit *test,
						    unsigned long addr,
						    struct page *page,
						    unsigned long npages)
{
	unsigned long i, bad = 0;

	for (i = 0; i < npages; i++) {
		struct mdk_pte pte = mdk_pte_at(test, mdk_page_addr(addr, i));

		if (pte.kind != MDK_PTE_DEVICE_PRIVATE || !pte.writable ||
		    pte.pfn != page_to_pfn(page + i))
			bad++;
	}
	return bad;
}

/*
 * munmap() of half a device-private PMD splits it into device-private ptes,
 * one per page of the folio, and unmaps half of them. The folio stays whole
 * and off the deferred split queue, mapped by the other half with the
 * references that go with it, until munmap() of the rest frees it.
 */
static void munmap_of_half_device_private_pmd_splits_it(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	unsigned long addr, rest, rss, half = HPAGE_PMD_NR / 2;
	struct folio *folio;

	addr = mdk_map_new_device_pmd(test, dev, &folio);
	rss = mdk_anon_rss();
	rest = mdk_page_addr(addr, half);

	KUNIT_EXPECT_EQ(test, vm_munmap(addr, half * PAGE_SIZE), 0);
	KUNIT_EXPECT_EQ(test,
			mdk_count_unmapped_device_ptes(test, rest,
						       folio_page(folio, half),
						       half), 0);
	KUNIT_EXPECT_EQ(test, mdk_pte_at(test, addr).kind, MDK_PTE_NONE);
	KUNIT_EXPECT_EQ(test, folio_order(folio), HPAGE_PMD_ORDER);
	KUNIT_EXPECT_EQ(test, folio_mapcount(folio), half);
	KUNIT_EXPECT_EQ(test, folio_ref_count(folio), half);
	KUNIT_EXPECT_TRUE(test, list_empty(&folio->_deferred_list));
	KUNIT_EXPECT_EQ(test, READ_ONCE(dev->nr_free), 0);
	KUNIT_EXPECT_EQ(test, mdk_anon_rss(),
			rss - half);

	KUNIT_EXPECT_EQ(test, vm_munmap(rest, half * PAGE_SIZE), 0);
	KUNIT_EXPECT_EQ(test, mdk_anon_rss(),
			rss - HPAGE_PMD_NR);
	mdk_expect_device_pages_freed(test);
}

/* Counts the pages from @addr on whose data reads wrong through the CPU. */
static unsigned long mdk_count_bad_user_data(struct kunit *test,
					     unsigned long addr,
					     unsigned long npages)
{
	struct mdk_case *c = test->priv;
	unsigned long i, bad = 0;

	for (i = 0; i < npages; i++) {
		unsigned long page_addr = mdk_page_addr(addr, i);

		if (copy_from_user(c->buf, (void __user *)page_addr, PAGE_SIZE) ||
		    !mdk_has_pattern(c->buf, mdk_seed(page_addr)))
			bad++;
	}
	return bad;
}

/*
 * All of @dev's memory is free again, the PMD range at @addr reads its
 * data back without a device fault, and teardown frees nothing more.
 */
static void mdk_expect_pmd_back_in_system(struct kunit *test,
					  struct mdk_device *dev,
					  unsigned long addr)
{
	KUNIT_EXPECT_EQ(test, READ_ONCE(dev->nr_free), dev->nr_pages);
	KUNIT_EXPECT_EQ(test, mdk_count_bad_user_data(test, addr, HPAGE_PMD_NR),
			0);
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), 0);
	mdk_expect_device_pages_freed(test);
}

/*
 * Migrating a device-private PMD's range to system memory splits the PMD
 * and its folio, collects every page and brings all of it back, data
 * intact, freeing the device memory.
 */
static void migrate_vma_splits_device_private_pmd_to_move_it(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct folio *folio;
	unsigned long addr;

	addr = mdk_map_new_device_pmd(test, dev, &folio);
	mdk_move_to_system(test, addr, HPAGE_PMD_NR,
			   MIGRATE_VMA_SELECT_DEVICE_PRIVATE);
	mdk_expect_pte_kind(test, addr, MDK_PTE_PRESENT);
	mdk_expect_pmd_back_in_system(test, dev, addr);
}

/*
 * A CPU fault on a device-private PMD splits it and brings back the one
 * page it touched, through the driver's migrate_to_ram(), which finds
 * that page's folio locked by the fault and splits it around the page.
 * The rest stays on the device as single pages until the CPU reads them.
 */
static void cpu_fault_on_device_private_pmd_brings_back_one_page(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	unsigned long addr, hit = 7;
	struct folio *folio;

	addr = mdk_map_new_device_pmd(test, dev, &folio);
	mdk_expect_user_data(test, mdk_page_addr(addr, hit),
			     mdk_seed(mdk_page_addr(addr, hit)));
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), 1);
	mdk_expect_pte_kind(test, mdk_page_addr(addr, hit), MDK_PTE_PRESENT);
	mdk_expect_maps(test, addr, folio_page(folio, 0), 1);
	KUNIT_EXPECT_EQ(test, folio_order(folio), 0);
	KUNIT_EXPECT_EQ(test, READ_ONCE(dev->nr_free), 1);

	KUNIT_EXPECT_EQ(test, mdk_count_bad_user_data(test, addr, HPAGE_PMD_NR),
			0);
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), HPAGE_PMD_NR);
	mdk_expect_device_pages_freed(test);
}

/* A locked PMD-sized system folio with one reference, as drivers give. */
static struct folio *mdk_system_alloc_thp(struct kunit *test)
{
	struct folio *folio = folio_alloc(GFP_TRANSHUGE, HPAGE_PMD_ORDER);

	KUNIT_ASSERT_NOT_NULL(test, folio);
	folio_lock(folio);
	return folio;
}

/*
 * The driver's part for compound entry @i: a PMD-sized folio from @dev
 * (system memory if NULL) holding the source data, or for a compound hole
 * the pattern of each address.
 */
static struct folio *mdk_give_compound_dst(struct kunit *test,
					   struct mdk_migration *m,
					   unsigned long i,
					   struct mdk_device *dev)
{
	struct page *spage = migrate_pfn_to_page(m->args.src[i]);
	struct folio *folio;
	unsigned long k;

	KUNIT_ASSERT_TRUE(test, m->args.src[i] & MIGRATE_PFN_COMPOUND);
	if (dev)
		folio = mdk_device_alloc_folio(dev, HPAGE_PMD_ORDER);
	else
		folio = mdk_system_alloc_thp(test);
	KUNIT_ASSERT_NOT_NULL(test, folio);
	for (k = 0; k < HPAGE_PMD_NR; k++) {
		struct page *dpage = folio_page(folio, k);

		if (spage)
			copy_highpage(mdk_data_page(dpage),
				      mdk_data_page(folio_page(page_folio(spage), k)));
		else
			mdk_fill_page(dpage,
				      mdk_seed(mdk_page_addr(m->args.start, i + k)));
	}
	m->args.dst[i] = migrate_pfn(folio_pfn(folio)) | MIGRATE_PFN_COMPOUND;
	return folio;
}

/* Is the PMD at @addr a THP mapping of @folio? */
static bool mdk_pmd_maps_thp(struct kunit *test, unsigned long addr,
			     struct folio *folio)
{
	pmd_t pmd = mdk_pmd_at(test, addr);

	return pmd_trans_huge(pmd) && pmd_pfn(pmd) == folio_pfn(folio);
}

/* Is the PMD at @addr a writable device-private mapping of @folio? */
static bool mdk_pmd_maps_device_folio(struct kunit *test, unsigned long addr,
				      struct folio *folio)
{
	pmd_t pmd = mdk_pmd_at(test, addr);

	return is_pmd_device_private_entry(pmd) &&
	       is_writable_device_private_entry(pmd_to_swp_entry(pmd)) &&
	       swp_offset_pfn(pmd_to_swp_entry(pmd)) == folio_pfn(folio);
}

/*
 * One compound migration of the PMD at @addr with @flags: checks the
 * source entry collect made of it, gives a PMD-sized destination from @dev
 * (system memory if NULL) and returns it, mapped once it all went.
 */
static struct folio *mdk_move_compound(struct kunit *test, unsigned long addr,
				       unsigned long flags,
				       struct mdk_device *dev,
				       unsigned long expect_src)
{
	struct mdk_migration *m;
	struct folio *folio;

	m = mdk_setup(test, addr, HPAGE_PMD_NR,
		      flags | MIGRATE_VMA_SELECT_COMPOUND, &mdk_owner);
	KUNIT_EXPECT_EQ(test, m->args.src[0], expect_src);
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(m->args.src, HPAGE_PMD_NR),
			1);
	KUNIT_EXPECT_EQ(test, m->args.cpages, HPAGE_PMD_NR);
	folio = mdk_give_compound_dst(test, m, 0, dev);
	mdk_pages(test, m);
	KUNIT_EXPECT_TRUE(test, m->args.src[0] & MIGRATE_PFN_MIGRATE);
	mdk_finalize(test, m);
	return folio;
}

/* A new PMD range holding a THP with the pattern of each address. */
static unsigned long mdk_map_new_thp(struct kunit *test, struct folio **thp)
{
	unsigned long addr = mdk_mmap_pmd_range(test);

	*thp = mdk_move_compound(test, addr, MIGRATE_VMA_SELECT_SYSTEM, NULL,
				 MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND);
	KUNIT_ASSERT_TRUE(test, mdk_pmd_maps_thp(test, addr, *thp));
	return addr;
}

/*
 * With MIGRATE_VMA_SELECT_COMPOUND an empty PMD is one compound hole, a
 * THP and a device-private PMD one compound source each: a whole THP goes
 * to device memory and back as one folio, mapped by one PMD at each step,
 * the data intact, and the device memory is freed at the end.
 */
static void migrate_vma_compound_moves_thp_to_device_and_back(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	unsigned long flags = MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND |
			      MIGRATE_PFN_WRITE;
	struct folio *thp, *dfolio;
	unsigned long addr;

	addr = mdk_map_new_thp(test, &thp);
	KUNIT_EXPECT_EQ(test, mdk_count_bad_user_data(test, addr, HPAGE_PMD_NR),
			0);

	dfolio = mdk_move_compound(test, addr, MIGRATE_VMA_SELECT_SYSTEM, dev,
				   migrate_pfn(folio_pfn(thp)) | flags);
	KUNIT_EXPECT_TRUE(test, mdk_pmd_maps_device_folio(test, addr, dfolio));
	KUNIT_EXPECT_EQ(test, folio_mapcount(dfolio), 1);
	KUNIT_EXPECT_EQ(test, folio_ref_count(dfolio), 1);

	thp = mdk_move_compound(test, addr, MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
				NULL, migrate_pfn(folio_pfn(dfolio)) | flags);
	KUNIT_EXPECT_TRUE(test, mdk_pmd_maps_thp(test, addr, thp));
	mdk_expect_pmd_back_in_system(test, dev, addr);
}

/*
 * A new THP with the pattern of each address, mapped by ptes as a partial
 * munmap(), mprotect() or mremap() leaves one: its PMD is split, the folio
 * stays whole.
 */
static unsigned long mdk_map_pte_mapped_thp(struct kunit *test,
					    struct folio **thp)
{
	/* The case's first mapping gives the kthread its mm. */
	unsigned long addr = mdk_map_new_thp(test, thp);
	struct mm_struct *mm = current->mm;

	mmap_read_lock(mm);
	split_huge_pmd_address(vma_lookup(mm, addr), addr, false, NULL);
	mmap_read_unlock(mm);
	KUNIT_ASSERT_PTR_EQ(test, mdk_page_at(test, mdk_page_addr(addr, 1)),
			    folio_page(*thp, 1));
	KUNIT_ASSERT_EQ(test, folio_order(*thp), HPAGE_PMD_ORDER);
	return addr;
}

/* How many pages from @addr on are mapped by a pte of @kind. */
static unsigned long mdk_count_pte_kind(struct kunit *test, unsigned long addr,
					unsigned long npages,
					enum mdk_pte_kind kind)
{
	unsigned long i, n = 0;

	for (i = 0; i < npages; i++)
		if (mdk_pte_at(test, mdk_page_addr(addr, i)).kind == kind)
			n++;
	return n;
}

/*
 * A THP that ptes map is split when collected, as upstream does: each of
 * its pages moves to the device and back on its own, data intact. 6.12
 * left every page of it in system memory.
 */
static void migrate_vma_splits_pte_mapped_thp_to_move_it(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct folio *thp;
	unsigned long addr;

	addr = mdk_map_pte_mapped_thp(test, &thp);
	mdk_move_to_device(test, addr, HPAGE_PMD_NR, dev);
	KUNIT_EXPECT_EQ(test, mdk_count_pte_kind(test, addr, HPAGE_PMD_NR,
						 MDK_PTE_DEVICE_PRIVATE),
			HPAGE_PMD_NR);

	mdk_move_to_system(test, addr, HPAGE_PMD_NR,
			   MIGRATE_VMA_SELECT_DEVICE_PRIVATE);
	mdk_expect_pmd_back_in_system(test, dev, addr);
}

/*
 * A THP that ptes map but that cannot be split, because somebody else holds
 * a reference to it, stays where it is: whole, every page mapped by its pte
 * as before, data intact.
 */
static void migrate_vma_leaves_pte_mapped_thp_it_cannot_split(struct kunit *test)
{
	struct mdk_migration *m;
	unsigned long addr, i, moved = 0;
	struct folio *thp;

	addr = mdk_map_pte_mapped_thp(test, &thp);
	get_page(&thp->page);
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, mdk_put_page,
						  &thp->page));
	m = mdk_setup(test, addr, HPAGE_PMD_NR, MIGRATE_VMA_SELECT_SYSTEM,
		      &mdk_owner);
	KUNIT_EXPECT_EQ(test, m->args.cpages, 0);
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(m->args.src, HPAGE_PMD_NR),
			0);
	mdk_pages(test, m);
	mdk_finalize(test, m);

	KUNIT_EXPECT_EQ(test, folio_order(thp), HPAGE_PMD_ORDER);
	for (i = 0; i < HPAGE_PMD_NR; i++)
		if (mdk_page_at(test, mdk_page_addr(addr, i)) !=
		    folio_page(thp, i))
			moved++;
	KUNIT_EXPECT_EQ(test, moved, 0);
	KUNIT_EXPECT_EQ(test, mdk_count_bad_user_data(test, addr, HPAGE_PMD_NR),
			0);
	kunit_release_action(test, mdk_put_page, &thp->page);
}

/*
 * A new THP with the pattern of each address, moved whole to @dev: returns
 * its address and the device folio, mapped there by one PMD.
 */
static unsigned long mdk_map_new_device_thp(struct kunit *test,
					    struct mdk_device *dev,
					    struct folio **dfolio)
{
	struct folio *thp;
	unsigned long addr;

	addr = mdk_map_new_thp(test, &thp);
	*dfolio = mdk_move_compound(test, addr, MIGRATE_VMA_SELECT_SYSTEM, dev,
				    migrate_pfn(folio_pfn(thp)) |
				    MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND |
				    MIGRATE_PFN_WRITE);
	KUNIT_ASSERT_TRUE(test, mdk_pmd_maps_device_folio(test, addr, *dfolio));
	return addr;
}

/*
 * A device THP that the CPU touches comes back page by page: the fault
 * splits the PMD and the folio, every page keeps its data.
 */
static void cpu_fault_on_compound_migrated_thp_keeps_data(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct folio *dfolio;
	unsigned long addr;

	addr = mdk_map_new_device_thp(test, dev, &dfolio);
	KUNIT_EXPECT_EQ(test, mdk_count_bad_user_data(test, addr, HPAGE_PMD_NR),
			0);
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), HPAGE_PMD_NR);
	mdk_expect_device_pages_freed(test);
}

/*
 * The driver's part for the pages [@from, @to) of compound source entry 0:
 * a base page each from @dev (system memory if NULL) holding that page's
 * data, kept in @dpages.
 */
static void mdk_give_base_pages(struct kunit *test, struct mdk_migration *m,
				unsigned long from, unsigned long to,
				struct mdk_device *dev, struct page **dpages)
{
	struct folio *src = page_folio(migrate_pfn_to_page(m->args.src[0]));
	unsigned long k;

	KUNIT_ASSERT_TRUE(test, m->args.src[0] & MIGRATE_PFN_COMPOUND);
	for (k = from; k < to; k++) {
		dpages[k] = dev ? mdk_device_alloc(dev) : mdk_system_alloc();
		KUNIT_ASSERT_NOT_NULL(test, dpages[k]);
		copy_highpage(mdk_data_page(dpages[k]),
			      mdk_data_page(folio_page(src, k)));
		m->args.dst[k] = migrate_pfn(page_to_pfn(dpages[k]));
	}
}

/*
 * A new THP with the pattern of each address, collected as one compound
 * entry whose first @given pages the driver answers with base pages from
 * @dev, kept in a new array at *@dpages.
 */
static struct mdk_migration *mdk_thp_given_base_pages(struct kunit *test,
						      struct folio **thp,
						      unsigned long given,
						      struct mdk_device *dev,
						      struct page ***dpages)
{
	struct mdk_migration *m;
	unsigned long addr;

	*dpages = kunit_kcalloc(test, HPAGE_PMD_NR, sizeof(**dpages),
				GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, *dpages);
	addr = mdk_map_new_thp(test, thp);
	m = mdk_setup(test, addr, HPAGE_PMD_NR,
		      MIGRATE_VMA_SELECT_SYSTEM | MIGRATE_VMA_SELECT_COMPOUND,
		      &mdk_owner);
	mdk_give_base_pages(test, m, 0, given, dev, *dpages);
	return m;
}

/*
 * migrate_vma_pages() splits a compound source that the driver answers
 * with base pages: its entries become base entries of the folio's pages,
 * with the first one's flags, and only those given a page move.
 */
static void mdk_expect_split_entries(struct kunit *test,
				     struct mdk_migration *m,
				     unsigned long head_pfn,
				     unsigned long moved)
{
	unsigned long k, bad = 0;

	for (k = 0; k < HPAGE_PMD_NR; k++) {
		unsigned long want = migrate_pfn(head_pfn + k) |
				     MIGRATE_PFN_WRITE;

		if (k < moved)
			want |= MIGRATE_PFN_MIGRATE;
		bad += m->args.src[k] != want;
	}
	KUNIT_EXPECT_EQ(test, bad, 0);
}

/*
 * A THP for which the driver gives device pages to half of its pages is
 * split, still unmapped: that half moves to the device, and the other half
 * stays, each page a folio of its own mapped by a pte. Data intact.
 */
static void migrate_vma_compound_source_given_base_pages_splits_it(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	unsigned long addr, k, half = HPAGE_PMD_NR / 2;
	struct page **dpages;
	struct mdk_migration *m;
	struct folio *thp;

	m = mdk_thp_given_base_pages(test, &thp, half, dev, &dpages);
	addr = m->args.start;
	mdk_pages(test, m);
	mdk_expect_split_entries(test, m, folio_pfn(thp), half);
	mdk_finalize(test, m);

	for (k = 0; k < HPAGE_PMD_NR; k++) {
		struct page *page = k < half ? dpages[k] : folio_page(thp, k);

		mdk_expect_maps(test, mdk_page_addr(addr, k), page, 1);
		KUNIT_EXPECT_FALSE(test, folio_test_large(page_folio(page)));
	}
	KUNIT_EXPECT_EQ(test, mdk_count_bad_user_data(test, addr, HPAGE_PMD_NR),
			0);
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), half);
	mdk_expect_device_pages_freed(test);
}

/*
 * A device-private folio mapped by a PMD, answered with system base pages,
 * is split and comes back page by page; the device memory is freed.
 */
static void migrate_vma_compound_device_source_given_base_pages_splits_it(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct mdk_migration *m;
	struct page **dpages;
	struct folio *dfolio;
	unsigned long addr, k;

	dpages = kunit_kcalloc(test, HPAGE_PMD_NR, sizeof(*dpages), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, dpages);
	addr = mdk_map_new_device_thp(test, dev, &dfolio);
	m = mdk_setup(test, addr, HPAGE_PMD_NR,
		      MIGRATE_VMA_SELECT_DEVICE_PRIVATE |
		      MIGRATE_VMA_SELECT_COMPOUND, &mdk_owner);
	mdk_give_base_pages(test, m, 0, HPAGE_PMD_NR, NULL, dpages);
	mdk_pages(test, m);
	mdk_expect_split_entries(test, m, folio_pfn(dfolio), HPAGE_PMD_NR);
	mdk_finalize(test, m);

	for (k = 0; k < HPAGE_PMD_NR; k++)
		mdk_expect_maps(test, mdk_page_addr(addr, k), dpages[k], 1);
	mdk_expect_pmd_back_in_system(test, dev, addr);
}

/*
 * A compound source that gained a reference after setup cannot be split:
 * it stays whole, mapped again by its PMD, its data intact, and the
 * driver's base pages are freed.
 */
static void migrate_vma_compound_source_held_stays_whole(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	unsigned long addr;
	struct page **dpages;
	struct mdk_migration *m;
	struct folio *thp;

	m = mdk_thp_given_base_pages(test, &thp, HPAGE_PMD_NR, dev, &dpages);
	addr = m->args.start;
	folio_get(thp);
	mdk_pages(test, m);
	folio_put(thp);
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(m->args.src, HPAGE_PMD_NR),
			0);
	KUNIT_EXPECT_TRUE(test, m->args.src[0] & MIGRATE_PFN_COMPOUND);
	mdk_finalize(test, m);

	KUNIT_EXPECT_EQ(test, folio_order(thp), HPAGE_PMD_ORDER);
	KUNIT_EXPECT_TRUE(test, mdk_pmd_maps_thp(test, addr, thp));
	KUNIT_EXPECT_EQ(test, folio_mapcount(thp), 1);
	KUNIT_EXPECT_EQ(test, READ_ONCE(dev->nr_free), dev->nr_pages);
	KUNIT_EXPECT_EQ(test, mdk_count_bad_user_data(test, addr, HPAGE_PMD_NR),
			0);
}

/*
 * MADV_DONTNEED on half a THP while it migrates (setup and finalize hold
 * the mmap_lock only in read mode) splits its PMD migration entry into pte
 * migration entries and zaps half of them: finalize maps the other half to
 * the destination by ptes, data intact, and the zapped half stays empty.
 */
static void migrate_vma_compound_remaps_pmd_split_during_migration(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	unsigned long addr, rest, half = HPAGE_PMD_NR / 2;
	struct mdk_migration *m;
	struct folio *thp, *dfolio;

	addr = mdk_map_new_thp(test, &thp);
	rest = mdk_page_addr(addr, half);
	m = mdk_setup(test, addr, HPAGE_PMD_NR,
		      MIGRATE_VMA_SELECT_SYSTEM | MIGRATE_VMA_SELECT_COMPOUND,
		      &mdk_owner);
	KUNIT_ASSERT_TRUE(test, m->args.src[0] & MIGRATE_PFN_COMPOUND);
	dfolio = mdk_give_compound_dst(test, m, 0, dev);
	KUNIT_ASSERT_EQ(test, do_madvise(current->mm, addr, half * PAGE_SIZE,
					 MADV_DONTNEED), 0);
	mdk_pages(test, m);
	mdk_finalize(test, m);

	KUNIT_EXPECT_EQ(test, mdk_pte_at(test, addr).kind, MDK_PTE_NONE);
	KUNIT_EXPECT_EQ(test,
			mdk_count_unmapped_device_ptes(test, rest,
						       folio_page(dfolio, half),
						       half), 0);
	KUNIT_EXPECT_EQ(test, folio_mapcount(dfolio), half);
	KUNIT_EXPECT_EQ(test, mdk_count_bad_user_data(test, rest, half), 0);
}

/*
 * A compound hole for which the driver gives base pages is filled by
 * ptes, each mapping its page.
 */
static void migrate_vma_compound_hole_given_base_pages_maps_ptes(struct kunit *test)
{
	unsigned long addr = mdk_mmap_pmd_range(test), i;
	struct mdk_migration *m;

	m = mdk_setup(test, addr, HPAGE_PMD_NR,
		      MIGRATE_VMA_SELECT_SYSTEM | MIGRATE_VMA_SELECT_COMPOUND,
		      &mdk_owner);
	KUNIT_EXPECT_EQ(test, m->args.src[0],
			MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND);
	for (i = 0; i < HPAGE_PMD_NR; i++) {
		struct page *page = mdk_system_alloc();

		KUNIT_ASSERT_NOT_NULL(test, page);
		mdk_fill_page(page, mdk_seed(mdk_page_addr(addr, i)));
		m->args.dst[i] = migrate_pfn(page_to_pfn(page));
	}
	mdk_pages(test, m);
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(m->args.src, HPAGE_PMD_NR),
			HPAGE_PMD_NR);
	mdk_finalize(test, m);

	for (i = 0; i < HPAGE_PMD_NR; i++)
		mdk_expect_pte_kind(test, mdk_page_addr(addr, i),
				    MDK_PTE_PRESENT);
	KUNIT_EXPECT_EQ(test, mdk_count_bad_user_data(test, addr, HPAGE_PMD_NR),
			0);
}

#else
/*
 * Without THP migration there are no device-private PMDs to test, and only
 * the built-in suite may build them by hand: every PMD case is skipped.
 */
static void mdk_skip_pmd_case(struct kunit *test)
{
	kunit_skip(test, "needs the suite built in and THP migration");
}

#define munmap_frees_folio_of_device_private_pmd	mdk_skip_pmd_case
#define munmap_of_half_device_private_pmd_splits_it	mdk_skip_pmd_case
#define migrate_vma_splits_device_private_pmd_to_move_it	mdk_skip_pmd_case
#define cpu_fault_on_device_private_pmd_brings_back_one_page	mdk_skip_pmd_case
#define migrate_vma_compound_moves_thp_to_device_and_back	mdk_skip_pmd_case
#define migrate_vma_splits_pte_mapped_thp_to_move_it	mdk_skip_pmd_case
#define migrate_vma_leaves_pte_mapped_thp_it_cannot_split	mdk_skip_pmd_case
#define cpu_fault_on_compound_migrated_thp_keeps_data	mdk_skip_pmd_case
#define migrate_vma_compound_source_given_base_pages_splits_it	mdk_skip_pmd_case
#define migrate_vma_compound_device_source_given_base_pages_splits_it	mdk_skip_pmd_case
#define migrate_vma_compound_source_held_stays_whole	mdk_skip_pmd_case
#define migrate_vma_compound_hole_given_base_pages_maps_ptes	mdk_skip_pmd_case
#define migrate_vma_compound_remaps_pmd_split_during_migration	mdk_skip_pmd_case
#endif

/* ------------------------------------------------------------------------
 * Device-pfn migrations: evicting device memory without knowing its VMAs.
 */

struct mdk_eviction {
	unsigned long *src, *dst;
	unsigned long npages;
	bool pages_done;
};

static void mdk_eviction_close(void *data)
{
	struct mdk_eviction *e = data;

	if (!e->pages_done)
		mdk_drop_dst(e->dst, e->npages);
	migrate_device_finalize(e->src, e->dst, e->npages);
}

static struct mdk_eviction *mdk_new_eviction(struct kunit *test,
					     unsigned long npages)
{
	struct mdk_eviction *e;

	e = kunit_kzalloc(test, sizeof(*e), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, e);
	e->src = mdk_poisoned_array(test, npages);
	e->dst = mdk_poisoned_array(test, npages);
	e->npages = npages;
	return e;
}

static void mdk_evict_range(struct kunit *test, struct mdk_eviction *e,
			    unsigned long first_pfn)
{
	int ret = migrate_device_range(e->src, first_pfn, e->npages);

	/* Whatever it collected must be finalized. */
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, mdk_eviction_close, e));
	KUNIT_ASSERT_EQ(test, ret, 0);
}

/* Copies each collected page to a new system page and finishes. */
static void mdk_finish_eviction(struct kunit *test, struct mdk_eviction *e,
				struct page **spages)
{
	unsigned long i;

	for (i = 0; i < e->npages; i++) {
		e->dst[i] = 0;
		spages[i] = mdk_give_dst(test, e->src, e->dst, i, 0, NULL);
	}
	migrate_device_pages(e->src, e->dst, e->npages);
	e->pages_done = true;
	for (i = 0; i < e->npages; i++)
		KUNIT_EXPECT_EQ_MSG(test,
				    !!(e->src[i] & MIGRATE_PFN_MIGRATE),
				    !!spages[i], "src[%lu]", i);
	kunit_release_action(test, mdk_eviction_close, e);
}

/*
 * Four pages on the device, the second migrated back by a CPU fault: the
 * device then holds used, free, used, used, free, free pages.
 */
static unsigned long mdk_fragmented_device(struct kunit *test,
					   struct mdk_device *dev,
					   unsigned long addr,
					   unsigned long *pfns)
{
	unsigned long i;

	for (i = 0; i < 4; i++)
		mdk_write_user(test, mdk_page_addr(addr, i));
	mdk_move_to_device(test, addr, 4, dev);
	for (i = 0; i < 4; i++)
		pfns[i] = page_to_pfn(mdk_page_at(test, mdk_page_addr(addr, i)));
	/* The allocator hands out the lowest free pfn first. */
	for (i = 1; i < 4; i++)
		KUNIT_ASSERT_EQ(test, pfns[i], pfns[0] + i);
	for (i = 4; i < 6; i++)
		KUNIT_ASSERT_FALSE(test, mdk_device_page_used(dev, pfns[0] + i));
	mdk_expect_user_data(test, mdk_page_addr(addr, 1),
			     mdk_seed(mdk_page_addr(addr, 1)));
	KUNIT_ASSERT_FALSE(test, mdk_device_page_used(dev, pfns[1]));
	return pfns[0];
}

/* Only pages in use are collected (and unmapped); free ones read 0. */
static void migrate_device_range_collects_used_pages_only(struct kunit *test)
{
	static const bool used[] = { true, false, true, true, false, false };
	const unsigned long npages = ARRAY_SIZE(used);
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *spages[ARRAY_SIZE(used)];
	unsigned long addr, first, pfns[4], i;
	struct mdk_eviction *e;

	addr = mdk_mmap(test, 4);
	first = mdk_fragmented_device(test, dev, addr, pfns);
	e = mdk_new_eviction(test, npages);
	mdk_evict_range(test, e, first);
	for (i = 0; i < npages; i++)
		KUNIT_EXPECT_EQ_MSG(test, e->src[i] & ~MIGRATE_PFN_WRITE,
				    used[i] ? migrate_pfn(first + i) |
					      MIGRATE_PFN_MIGRATE : 0,
				    "src[%lu]", i);
	for (i = 0; i < 4; i++)
		mdk_expect_pte_kind(test, mdk_page_addr(addr, i),
				    used[i] ? MDK_PTE_MIGRATION : MDK_PTE_PRESENT);

	mdk_finish_eviction(test, e, spages);
	for (i = 0; i < 4; i++) {
		unsigned long a = mdk_page_addr(addr, i);

		if (used[i])
			mdk_expect_mapped_once(test, a, spages[i], 1);
		mdk_expect_user_data(test, a, mdk_seed(a));
	}
	for (i = 0; i < npages; i++)
		KUNIT_EXPECT_FALSE(test, mdk_device_page_used(dev, first + i));
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), 1);
	mdk_expect_device_pages_freed(test);
}

/*
 * A device page somebody else holds is left mapped on the device while the
 * rest of the range migrates: a locked one is skipped at once, one with an
 * extra reference is unmapped, found busy and mapped back, before the
 * driver has given any destination.
 */
static void migrate_device_range_leaves_busy_page_on_device(struct kunit *test)
{
	const typeof(mdk_busy_device_cases[0]) *p = test->param_value;
	const unsigned long npages = 4, busy = 2;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *spages[4], *dpage;
	unsigned long addr, first, pfns[4], i;
	struct mdk_eviction *e;

	addr = mdk_mmap(test, 4);
	first = mdk_fragmented_device(test, dev, addr, pfns);
	dpage = pfn_to_page(pfns[busy]);
	mdk_hold_device_page(test, dpage, p->how);

	e = mdk_new_eviction(test, npages);
	mdk_evict_range(test, e, first);
	KUNIT_EXPECT_EQ(test, e->src[busy], 0);
	KUNIT_EXPECT_EQ(test, e->src[1], 0);
	mdk_expect_maps(test, mdk_page_addr(addr, busy), dpage, 1);
	mdk_finish_eviction(test, e, spages);
	mdk_release_device_page(test, dpage, p->how);

	mdk_expect_mapped_once(test, mdk_page_addr(addr, busy), dpage, 1);
	mdk_expect_page_data(test, dpage, mdk_seed(mdk_page_addr(addr, busy)));
	mdk_expect_mapped_once(test, addr, spages[0], 1);
	mdk_expect_mapped_once(test, mdk_page_addr(addr, 3), spages[3], 1);
	for (i = 0; i < 4; i++)
		mdk_expect_user_data(test, mdk_page_addr(addr, i),
				     mdk_seed(mdk_page_addr(addr, i)));
	/* The fault of mdk_fragmented_device() and the one on the busy page. */
	KUNIT_EXPECT_EQ(test, mdk_faults(test, dev), 2);
	mdk_expect_device_pages_freed(test);
}

/* Without destinations every device page is mapped again where it was. */
static void migrate_device_range_restores_pages_without_destination(struct kunit *test)
{
	const unsigned long npages = 4;
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *dpages[4];
	struct mdk_eviction *e;
	unsigned long addr, i;

	addr = mdk_mmap_on_device(test, npages, dev, dpages);

	e = mdk_new_eviction(test, npages);
	mdk_evict_range(test, e, page_to_pfn(dpages[0]));
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(e->src, npages), npages);
	for (i = 0; i < npages; i++)
		e->dst[i] = 0;
	migrate_device_pages(e->src, e->dst, npages);
	e->pages_done = true;
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(e->src, npages), 0);
	kunit_release_action(test, mdk_eviction_close, e);

	mdk_expect_left_on_device(test, addr, npages, dev, dpages);
}

/*
 * Evicts the device-private folio mapped by the PMD at @addr: checks that
 * migrate_device_range() made it one compound entry, the entries after it
 * 0, and replaced its PMD by a migration entry.
 */
static struct mdk_eviction *mdk_evict_device_pmd(struct kunit *test,
						 unsigned long addr,
						 struct folio *folio)
{
	struct mdk_eviction *e = mdk_new_eviction(test, HPAGE_PMD_NR);
	unsigned long k;

	mdk_evict_range(test, e, folio_pfn(folio));
	memset(e->dst, 0, HPAGE_PMD_NR * sizeof(*e->dst));
	KUNIT_EXPECT_EQ(test, e->src[0] & ~MIGRATE_PFN_WRITE,
			migrate_pfn(folio_pfn(folio)) | MIGRATE_PFN_MIGRATE |
			MIGRATE_PFN_COMPOUND);
	for (k = 1; k < HPAGE_PMD_NR; k++)
		KUNIT_EXPECT_EQ_MSG(test, e->src[k], 0, "src[%lu]", k);
	KUNIT_EXPECT_TRUE(test, is_pmd_migration_entry(mdk_pmd_at(test, addr)));
	return e;
}

/*
 * migrate_device_range() hands a device-private folio the range covers
 * over whole: given a THP, the folio comes back as one, mapped by the PMD
 * that mapped the device folio, data intact, device memory freed.
 */
static void migrate_device_range_moves_device_thp_whole(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct folio *folio, *thp;
	struct mdk_eviction *e;
	unsigned long addr, k;

	addr = mdk_map_new_device_pmd(test, dev, &folio);
	e = mdk_evict_device_pmd(test, addr, folio);
	thp = mdk_system_alloc_thp(test);
	for (k = 0; k < HPAGE_PMD_NR; k++)
		copy_highpage(mdk_data_page(folio_page(thp, k)),
			      mdk_data_page(folio_page(folio, k)));
	e->dst[0] = migrate_pfn(folio_pfn(thp)) | MIGRATE_PFN_COMPOUND;
	migrate_device_pages(e->src, e->dst, HPAGE_PMD_NR);
	e->pages_done = true;
	KUNIT_EXPECT_TRUE(test, e->src[0] & MIGRATE_PFN_MIGRATE);
	kunit_release_action(test, mdk_eviction_close, e);

	KUNIT_EXPECT_TRUE(test, mdk_pmd_maps_thp(test, addr, thp));
	mdk_expect_pmd_back_in_system(test, dev, addr);
}

/*
 * Given base pages for a compound entry of migrate_device_range(), the
 * device folio is split under its migration entries: every page comes
 * back to its own system page, mapped by a pte, data intact.
 */
static void migrate_device_range_splits_device_thp_for_base_pages(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct folio *folio;
	struct mdk_eviction *e;
	unsigned long addr, k;

	addr = mdk_map_new_device_pmd(test, dev, &folio);
	e = mdk_evict_device_pmd(test, addr, folio);
	for (k = 0; k < HPAGE_PMD_NR; k++) {
		struct page *dpage = mdk_system_alloc();

		KUNIT_ASSERT_NOT_NULL(test, dpage);
		copy_highpage(mdk_data_page(dpage),
			      mdk_data_page(folio_page(folio, k)));
		e->dst[k] = migrate_pfn(page_to_pfn(dpage));
	}
	migrate_device_pages(e->src, e->dst, HPAGE_PMD_NR);
	e->pages_done = true;
	KUNIT_EXPECT_EQ(test, mdk_count_migrating(e->src, HPAGE_PMD_NR),
			HPAGE_PMD_NR);
	kunit_release_action(test, mdk_eviction_close, e);

	for (k = 0; k < HPAGE_PMD_NR; k++)
		mdk_expect_mapped_once(test, mdk_page_addr(addr, k),
				       migrate_pfn_to_page(e->dst[k]), 1);
	mdk_expect_pmd_back_in_system(test, dev, addr);
}

/*
 * migrate_device_pfns() takes an array of raw device pfns, in any order, and
 * encodes it in place like migrate_device_range().
 */
static void migrate_device_pfns_collects_used_pages_only(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *spages[4];
	unsigned long addr, first, pfns[4], i;
	struct mdk_eviction *e;

	addr = mdk_mmap(test, 4);
	first = mdk_fragmented_device(test, dev, addr, pfns);
	e = mdk_new_eviction(test, 4);
	e->src[0] = pfns[3];
	e->src[1] = pfns[1];		/* freed by the fault */
	e->src[2] = pfns[0];
	e->src[3] = first + 5;		/* never used */
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, mdk_eviction_close, e));
	KUNIT_ASSERT_EQ(test, migrate_device_pfns(e->src, 4), 0);
	KUNIT_EXPECT_EQ(test, e->src[0] & ~MIGRATE_PFN_WRITE,
			migrate_pfn(pfns[3]) | MIGRATE_PFN_MIGRATE);
	KUNIT_EXPECT_EQ(test, e->src[1], 0);
	KUNIT_EXPECT_EQ(test, e->src[2] & ~MIGRATE_PFN_WRITE,
			migrate_pfn(pfns[0]) | MIGRATE_PFN_MIGRATE);
	KUNIT_EXPECT_EQ(test, e->src[3], 0);
	mdk_expect_pte_kind(test, mdk_page_addr(addr, 2), MDK_PTE_DEVICE_PRIVATE);

	mdk_finish_eviction(test, e, spages);
	mdk_expect_mapped_once(test, mdk_page_addr(addr, 3), spages[0], 1);
	mdk_expect_mapped_once(test, addr, spages[2], 1);
	for (i = 0; i < 4; i++)
		mdk_expect_user_data(test, mdk_page_addr(addr, i),
				     mdk_seed(mdk_page_addr(addr, i)));
	mdk_expect_device_pages_freed(test);
}

static void migrate_device_pfns_skips_locked_page(struct kunit *test)
{
	struct mdk_device *dev = mdk_device(test, MDK_PRIVATE);
	struct page *spages[2], *dpage;
	unsigned long addr, pfns[4];
	struct mdk_eviction *e;

	addr = mdk_mmap(test, 4);
	mdk_fragmented_device(test, dev, addr, pfns);
	dpage = pfn_to_page(pfns[2]);
	lock_page(dpage);
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, mdk_unlock_page, dpage));

	e = mdk_new_eviction(test, 2);
	e->src[0] = pfns[2];
	e->src[1] = pfns[3];
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, mdk_eviction_close, e));
	KUNIT_ASSERT_EQ(test, migrate_device_pfns(e->src, 2), 0);
	KUNIT_EXPECT_EQ(test, e->src[0], 0);
	KUNIT_EXPECT_EQ(test, e->src[1] & ~MIGRATE_PFN_WRITE,
			migrate_pfn(pfns[3]) | MIGRATE_PFN_MIGRATE);
	mdk_finish_eviction(test, e, spages);
	kunit_release_action(test, mdk_unlock_page, dpage);

	mdk_expect_maps(test, mdk_page_addr(addr, 2), dpage, 1);
	mdk_expect_mapped_once(test, mdk_page_addr(addr, 3), spages[1], 1);
	mdk_expect_user_data(test, mdk_page_addr(addr, 2),
			     mdk_seed(mdk_page_addr(addr, 2)));
	mdk_expect_device_pages_freed(test);
}

static struct kunit_case migrate_device_test_cases[] = {
	KUNIT_CASE_PARAM(migrate_vma_setup_rejects_bad_arguments,
			 mdk_bad_args_gen_params),
	KUNIT_CASE(migrate_vma_setup_rejects_unlocked_fault_page),
	KUNIT_CASE(migrate_vma_setup_rejects_hugetlb_vma),
	KUNIT_CASE_PARAM(migrate_vma_setup_selects_by_type_flag_and_owner,
			 mdk_select_gen_params),
	KUNIT_CASE(migrate_vma_setup_encodes_each_entry_of_mixed_range),
	KUNIT_CASE(migrate_vma_setup_offers_holes_and_zero_page),
	KUNIT_CASE(migrate_vma_setup_offers_unpopulated_range),
	KUNIT_CASE(migrate_vma_setup_skips_zero_page_without_select_system),
	KUNIT_CASE(migrate_vma_pages_fills_holes_and_zero_page_with_device_pages),
	KUNIT_CASE(migrate_vma_pages_fills_unpopulated_range_with_device_pages),
	KUNIT_CASE_PARAM(migrate_vma_setup_leaves_busy_page_mapped,
			 mdk_busy_gen_params),
	KUNIT_CASE_PARAM(migrate_vma_setup_leaves_busy_device_page_on_device,
			 mdk_busy_device_gen_params),
	KUNIT_CASE(migrate_vma_pages_drops_page_referenced_after_setup),
	KUNIT_CASE(migrate_vma_pages_refuses_dst_of_other_zone_device_type),
	KUNIT_CASE(migrate_vma_pages_keeps_page_cpu_faulted_after_setup),
	KUNIT_CASE(migrate_vma_finalize_releases_dst_of_uncollected_entry),
	KUNIT_CASE(migrate_vma_keeps_shared_mapping_in_system_memory),
	KUNIT_CASE(migrate_vma_struct_reused_after_rmap_restore),
	KUNIT_CASE(migrate_vma_partial_migration_maps_each_page_once),
	KUNIT_CASE(migrate_vma_without_destinations_restores_every_page),
	KUNIT_CASE(migrate_vma_partial_migration_to_system_keeps_rest_on_device),
	KUNIT_CASE(migrate_vma_round_trip_keeps_data),
	KUNIT_CASE(migrate_to_ram_round_trip_keeps_data),
	KUNIT_CASE(migrate_vma_coherent_round_trip_keeps_data),
	KUNIT_CASE(migrate_vma_moves_pages_of_locked_vma),
	KUNIT_CASE(longterm_pin_moves_coherent_page_unless_held),
	KUNIT_CASE(migrate_vma_keeps_read_only_mapping_read_only),
	KUNIT_CASE(migrate_vma_notifies_migrate_event_with_owner),
	KUNIT_CASE(migrate_device_range_collects_used_pages_only),
	KUNIT_CASE_PARAM(migrate_device_range_leaves_busy_page_on_device,
			 mdk_busy_device_gen_params),
	KUNIT_CASE(migrate_device_range_restores_pages_without_destination),
	KUNIT_CASE(migrate_device_range_moves_device_thp_whole),
	KUNIT_CASE(migrate_device_range_splits_device_thp_for_base_pages),
	KUNIT_CASE(migrate_device_pfns_collects_used_pages_only),
	KUNIT_CASE(migrate_device_pfns_skips_locked_page),
	KUNIT_CASE(zone_device_folio_init_builds_large_folio),
	KUNIT_CASE(device_memory_alternates_large_folio_and_single_pages),
	KUNIT_CASE(munmap_frees_folio_of_device_private_pmd),
	KUNIT_CASE(munmap_of_half_device_private_pmd_splits_it),
	KUNIT_CASE(migrate_vma_splits_device_private_pmd_to_move_it),
	KUNIT_CASE(cpu_fault_on_device_private_pmd_brings_back_one_page),
	KUNIT_CASE(migrate_vma_compound_moves_thp_to_device_and_back),
	KUNIT_CASE(migrate_vma_splits_pte_mapped_thp_to_move_it),
	KUNIT_CASE(migrate_vma_leaves_pte_mapped_thp_it_cannot_split),
	KUNIT_CASE(cpu_fault_on_compound_migrated_thp_keeps_data),
	KUNIT_CASE(migrate_vma_compound_source_given_base_pages_splits_it),
	KUNIT_CASE(migrate_vma_compound_device_source_given_base_pages_splits_it),
	KUNIT_CASE(migrate_vma_compound_source_held_stays_whole),
	KUNIT_CASE(migrate_vma_compound_hole_given_base_pages_maps_ptes),
	KUNIT_CASE(migrate_vma_compound_remaps_pmd_split_during_migration),
	{}
};

static struct kunit_suite migrate_device_test_suite = {
	.name = "migrate_device",
	.suite_init = mdk_suite_init,
	.suite_exit = mdk_suite_exit,
	.init = mdk_case_init,
	.test_cases = migrate_device_test_cases,
};

kunit_test_suite(migrate_device_test_suite);

MODULE_DESCRIPTION("KUnit tests for device memory migration");
MODULE_LICENSE("GPL");
