// SPDX-License-Identifier: GPL-2.0
/*
 * Moving anonymous memory between system RAM and device memory.
 *
 * A driver moves a set of pages in five steps:
 *
 *  collect   find the source pages, take a reference on each and lock it:
 *            migrate_vma_setup() walks the CPU page table of a VMA range,
 *            migrate_device_range() and migrate_device_pfns() start from
 *            device page frames;
 *  unmap     (same call) replace every CPU mapping of each source page by a
 *            migration entry and check that nobody else holds it; pages that
 *            cannot be moved are mapped back and dropped from the set;
 *  copy      the driver allocates destination pages and copies the data;
 *  pages     migrate_vma_pages() or migrate_device_pages() hand the struct
 *            page state of each source over to its destination;
 *  finalize  migrate_vma_finalize() or migrate_device_finalize() replace the
 *            migration entries by the destination where the hand-over
 *            succeeded and by the source everywhere else, then unlock and
 *            release both.
 *
 * Both families of entry points drive one engine working on a struct
 * migrate_vma. The pfn-based ones use a struct without a VMA: their source
 * pages may be mapped anywhere, so they always find the mappings through the
 * rmap. The VMA-based ones install the migration entries while walking the
 * range, and when every source page was mapped only there, finalize puts the
 * mappings back with one more walk of the range instead of an rmap walk per
 * page.
 */
#include <linux/export.h>
#include <linux/memcontrol.h>
#include <linux/memremap.h>
#include <linux/migrate.h>
#include <linux/mm.h>
#include <linux/mm_inline.h>
#include <linux/mmu_notifier.h>
#include <linux/oom.h>
#include <linux/pagewalk.h>
#include <linux/rmap.h>
#include <linux/swap.h>
#include <linux/swapops.h>
#include <linux/userfaultfd_k.h>
#include <asm/pgalloc.h>
#include <asm/tlbflush.h>
#include "internal.h"

#define MIGRATE_VMA_SELECT_ANY	(MIGRATE_VMA_SELECT_SYSTEM | \
				 MIGRATE_VMA_SELECT_DEVICE_PRIVATE | \
				 MIGRATE_VMA_SELECT_DEVICE_COHERENT)

/*
 * Kept in migrate_vma->flags from setup to finalize, out of the range of the
 * caller's MIGRATE_VMA_SELECT_* bits: some source page was also mapped
 * outside the walked range, so its migration entries can only be found
 * through the rmap (see migrate_anon_vmas). Always set for the pfn-based
 * calls, which have no range.
 */
#define MIGRATE_VMA_RMAP	(1UL << (BITS_PER_LONG - 1))

/*
 * pte_offset_map_lock() is an inline function: sparse cannot see that it
 * returns with the page table lock held when it maps the ptes. Tell it.
 */
#define migrate_ptl_acquired(ptl)	__acquire(ptl)

static unsigned long migrate_index(const struct migrate_vma *migrate,
				   unsigned long addr)
{
	return (addr - migrate->start) >> PAGE_SHIFT;
}

/* Pages an entry stands for: a compound one covers a whole PMD. */
static unsigned long migrate_entry_pages(unsigned long mpfn)
{
	return mpfn & MIGRATE_PFN_COMPOUND ? HPAGE_PMD_NR : 1;
}

/*
 * May [@start, @end) be collected as one compound entry? Only if the caller
 * takes them, the range covers a whole PMD and the VMA may hold a THP there
 * (MADV_NOHUGEPAGE and prctl(PR_SET_THP_DISABLE) are honoured; the sysfs
 * setting is not, the driver asked for compound entries). Asked as a fault
 * would ask: the range is checked here, and a VMA nothing faulted in yet
 * has no anon_vma, which only a fault may create.
 */
static bool migrate_takes_compound(const struct migrate_vma *migrate,
				   unsigned long start, unsigned long end)
{
	struct vm_area_struct *vma = migrate->vma;

	return IS_ENABLED(CONFIG_ARCH_ENABLE_THP_MIGRATION) &&
	       (migrate->flags & MIGRATE_VMA_SELECT_COMPOUND) &&
	       IS_ALIGNED(start, HPAGE_PMD_SIZE) &&
	       end - start >= HPAGE_PMD_SIZE && vma_is_anonymous(vma) &&
	       thp_vma_allowable_order(vma, vma->vm_flags, TVA_IN_PF,
				       HPAGE_PMD_ORDER);
}

/*
 * do_swap_page() locks the device page a CPU fault is migrating before it
 * calls ->migrate_to_ram(), so that concurrent faults on that page sleep on
 * the lock instead of taking references that would make every migration
 * attempt fail. That lock belongs to the fault handler: the engine neither
 * takes nor releases it. Inlined: the test runs for every page of every
 * migration, and it is only a compare when there is no fault page.
 */
static __always_inline bool
migrate_is_fault_folio(const struct migrate_vma *migrate, struct folio *folio)
{
	return migrate->fault_page && page_folio(migrate->fault_page) == folio;
}

static bool migrate_trylock_folio(const struct migrate_vma *migrate,
				  struct folio *folio)
{
	return migrate_is_fault_folio(migrate, folio) || folio_trylock(folio);
}

static void migrate_unlock_folio(const struct migrate_vma *migrate,
				 struct folio *folio)
{
	if (!migrate_is_fault_folio(migrate, folio))
		folio_unlock(folio);
}

/*
 * Nobody but the migration may hold @folio: one reference from collect,
 * one more for the fault page (do_swap_page() holds it), and those the
 * page cache or swap cache own.
 */
static bool migrate_folio_unshared(const struct migrate_vma *migrate,
				   struct folio *folio)
{
	int expected = folio_expected_ref_count(folio) + 1;

	if (migrate_is_fault_folio(migrate, folio))
		expected++;
	return folio_ref_count(folio) == expected;
}

/* Unlock a source page and drop the reference collect took on it. */
static void migrate_release_src(const struct migrate_vma *migrate,
				struct folio *folio)
{
	migrate_unlock_folio(migrate, folio);
	folio_put(folio);
}

/*
 * Source pages unmapped through the rmap, by page frame number. Once such a
 * page has no mapping left, nothing keeps its anon_vma alive: the process
 * that mapped it can exit and free it before finalize walks it to put the
 * mappings back. Each entry holds a reference on the page's anon_vma, or is
 * xa_mk_value(0) for a page that is not anonymous. The source page stays
 * locked from collect to finalize, so only its migration touches its entry.
 */
static DEFINE_XARRAY(migrate_anon_vmas);

/* Record that @folio is about to be unmapped through the rmap. */
static bool migrate_hold_anon_vma(struct folio *folio)
{
	void *entry = xa_mk_value(0);

	if (folio_test_anon(folio)) {
		entry = folio_get_anon_vma(folio);
		/* No longer mapped: it has no anon_vma worth walking. */
		if (!entry)
			return false;
	}
	if (!xa_is_err(xa_store(&migrate_anon_vmas, folio_pfn(folio), entry,
				GFP_KERNEL)))
		return true;
	if (!xa_is_value(entry))
		put_anon_vma(entry);
	return false;
}

/*
 * Was the source page at @pfn unmapped through the rmap, and not only in
 * the range?
 */
static bool migrate_unmapped_elsewhere(unsigned long pfn)
{
	return xa_load(&migrate_anon_vmas, pfn);
}

/*
 * Put back the mappings of @src that were unmapped through the rmap, as
 * mappings of @page, and let go of its anon_vma.
 */
static void migrate_remap_held(struct page *src, struct page *page)
{
	unsigned long pfn = page_to_pfn(src);
	void *entry;

	/*
	 * Most pages have no entry. Looking first keeps them off the xarray's
	 * lock, which every migration in the system shares; the locked source
	 * page means no one else can store at this index meanwhile.
	 */
	if (!migrate_unmapped_elsewhere(pfn))
		return;
	entry = xa_erase(&migrate_anon_vmas, pfn);
	remove_migration_ptes(page_folio(src), page_folio(page), 0);
	if (!xa_is_value(entry))
		put_anon_vma(entry);
}

/* ------------------------------------------------------------------------
 * Collect: walk the range, turning each selected mapping into a migration
 * entry.
 */

/* What collect found out about the pages it took, for setup. */
struct migrate_collect {
	struct migrate_vma *migrate;
	/* Some source page still needs migrate_unmap(). */
	bool unmap;
	/* Some source page was refused after its pte was replaced. */
	bool refused;
	/* A large folio met on a pte, to split first. */
	struct folio *split;
	/* The last folio that could not be split: its pages stay. */
	struct folio *unsplit;
};

static int migrate_collect_hole(unsigned long start, unsigned long end,
				__always_unused int depth, struct mm_walk *walk)
{
	struct migrate_collect *collect = walk->private;
	struct migrate_vma *migrate = collect->migrate;
	unsigned long i = migrate_index(migrate, start);
	unsigned long last = migrate_index(migrate, end);

	/* The driver may only populate anonymous memory. */
	if (!vma_is_anonymous(walk->vma))
		return 0;

	migrate->cpages += last - i;
	while (i < last) {
		if (migrate_takes_compound(migrate, start, end)) {
			/* The other entries of the PMD stay 0. */
			migrate->src[i] = MIGRATE_PFN_MIGRATE |
					  MIGRATE_PFN_COMPOUND;
			i += HPAGE_PMD_NR;
			start += HPAGE_PMD_SIZE;
		} else {
			migrate->src[i++] = MIGRATE_PFN_MIGRATE;
			start += PAGE_SIZE;
		}
	}
	return 0;
}

/* The page mapped by a present pte, if the caller asked for its kind. */
static struct page *migrate_present_page(const struct migrate_vma *migrate,
					 unsigned long addr, pte_t pte)
{
	struct page *page = vm_normal_page(migrate->vma, addr, pte);

	if (!page)
		return NULL;
	if (!is_zone_device_page(page))
		return migrate->flags & MIGRATE_VMA_SELECT_SYSTEM ? page : NULL;
	if (is_device_coherent_page(page) &&
	    (migrate->flags & MIGRATE_VMA_SELECT_DEVICE_COHERENT) &&
	    page_pgmap(page)->owner == migrate->pgmap_owner)
		return page;
	return NULL;
}

/*
 * The page behind the swap @entry of a non-present pte, if it is a device
 * private page of the caller's. Swap, migration and every other special
 * entry stay as they are.
 */
static struct page *migrate_private_page(const struct migrate_vma *migrate,
					 swp_entry_t entry)
{
	struct page *page;

	if (!is_device_private_entry(entry) ||
	    !(migrate->flags & MIGRATE_VMA_SELECT_DEVICE_PRIVATE))
		return NULL;
	page = pfn_swap_entry_to_page(entry);
	return page_pgmap(page)->owner == migrate->pgmap_owner ? page : NULL;
}

/*
 * The migration entry for page frame @pfn, which keeps write permission,
 * exclusivity of an anonymous page, young and dirty for the mapping that
 * is put back at the end.
 */
static swp_entry_t migrate_make_entry(unsigned long pfn, bool writable,
				      bool anon_exclusive, bool young,
				      bool dirty)
{
	swp_entry_t entry;

	if (writable)
		entry = make_writable_migration_entry(pfn);
	else if (anon_exclusive)
		entry = make_readable_exclusive_migration_entry(pfn);
	else
		entry = make_readable_migration_entry(pfn);
	if (young)
		entry = make_migration_entry_young(entry);
	if (dirty)
		entry = make_migration_entry_dirty(entry);
	return entry;
}

/* The device-private entry that maps @page, writable or not. */
static swp_entry_t migrate_private_entry(struct page *page, bool writable)
{
	if (writable)
		return make_writable_device_private_entry(page_to_pfn(page));
	return make_readable_device_private_entry(page_to_pfn(page));
}

/*
 * The migration entry that stands in for @pte while its page moves. It
 * remembers everything the restored pte will need: write permission,
 * exclusivity of an anonymous page, young, dirty, soft-dirty and uffd-wp.
 */
static pte_t migrate_entry_pte(struct page *page, pte_t pte, bool writable,
			       bool anon_exclusive)
{
	bool present = pte_present(pte);
	pte_t swp_pte;

	swp_pte = swp_entry_to_pte(migrate_make_entry(page_to_pfn(page),
						      writable, anon_exclusive,
						      present && pte_young(pte),
						      present && pte_dirty(pte)));
	if (present ? pte_soft_dirty(pte) : pte_swp_soft_dirty(pte))
		swp_pte = pte_swp_mksoft_dirty(swp_pte);
	if (present ? pte_uffd_wp(pte) : pte_swp_uffd_wp(pte))
		swp_pte = pte_swp_mkuffd_wp(swp_pte);
	return swp_pte;
}

/*
 * Take a reference on a mapped source folio and lock it, without sleeping:
 * two migrations could otherwise each hold a page the other waits for.
 * Migration is best effort, a busy page is simply left out. Large folios
 * that collect could not split (see migrate_wants_split()), and pages
 * without a mapping, stay too.
 */
static bool migrate_grab_folio(const struct migrate_vma *migrate,
			       struct folio *folio)
{
	if (folio_test_large(folio) || !folio->mapping)
		return false;
	folio_get(folio);
	if (migrate_trylock_folio(migrate, folio))
		return true;
	folio_put(folio);
	return false;
}

/*
 * Lock @page and replace @pte, which maps it at @addr and which the CPU
 * could write if @writable, by a migration entry. Returns the source entry
 * for it, or 0 if the page stays where it is. Sets *@flush when a present
 * pte was cleared: the caller flushes the TLB for the whole batch before it
 * drops the page table lock @ptl.
 */
static unsigned long migrate_unmap_pte(struct migrate_vma *migrate,
				       unsigned long addr, pte_t *ptep,
				       spinlock_t *ptl, pte_t pte,
				       struct page *page, bool writable,
				       bool *flush)
{
	struct vm_area_struct *vma = migrate->vma;
	struct mm_struct *mm = vma->vm_mm;
	struct folio *folio = page_folio(page);
	bool anon_exclusive;
	unsigned long mpfn;

	lockdep_assert_held(ptl);
	if (!migrate_grab_folio(migrate, folio))
		return 0;

	if (pte_present(pte))
		flush_cache_page(vma, addr, pte_pfn(pte));
	/* Hardware may have set young or dirty since @pte was read. */
	pte = ptep_get_and_clear(mm, addr, ptep);

	/*
	 * An exclusive anonymous page must be marked possibly shared before a
	 * migration entry can stand for it. That fails only if the page is
	 * pinned, which keeps it out of the migration anyway. The TLB flush
	 * can wait for the end of the batch: like try_to_migrate() with a
	 * deferred flush, only the cleared pte matters to GUP-fast here.
	 */
	anon_exclusive = folio_test_anon(folio) && PageAnonExclusive(page);
	if (anon_exclusive && folio_try_share_anon_rmap_pte(folio, page)) {
		set_pte_at(mm, addr, ptep, pte);
		migrate_release_src(migrate, folio);
		return 0;
	}

	if (pte_present(pte)) {
		if (pte_dirty(pte))
			folio_mark_dirty(folio);
		*flush = true;
	}
	set_pte_at(mm, addr, ptep,
		   migrate_entry_pte(page, pte, writable, anon_exclusive));

	/* Drop the mapping and its reference; collect's keeps the page. */
	folio_remove_rmap_pte(folio, page, vma);
	folio_put(folio);

	mpfn = migrate_pfn(page_to_pfn(page)) | MIGRATE_PFN_MIGRATE;
	return writable ? mpfn | MIGRATE_PFN_WRITE : mpfn;
}

/*
 * A device private page that collect unmapped is done with if that was its
 * only mapping: it is on no LRU, and GUP cannot take references through the
 * migration entry that now stands for it, so its reference count can be
 * checked here instead of in migrate_unmap(). Not in a VM_LOCKED VMA,
 * though: the unmap munlocked the page, which left a reference in this
 * CPU's mlock batch until migrate_unmap() drains it, outside the page table
 * lock. Returns @mpfn, without MIGRATE_PFN_MIGRATE if somebody else holds
 * the page.
 */
static unsigned long migrate_check_private(struct migrate_collect *collect,
					   unsigned long mpfn,
					   struct folio *folio)
{
	if (!mpfn)
		return 0;
	if (folio_mapped(folio) ||
	    (collect->migrate->vma->vm_flags & VM_LOCKED)) {
		collect->unmap = true;
	} else if (!migrate_folio_unshared(collect->migrate, folio)) {
		collect->refused = true;
		mpfn &= ~MIGRATE_PFN_MIGRATE;
	}
	return mpfn;
}

/*
 * The engine moves base pages, or whole PMD-mapped folios: a large folio
 * that ptes map (a large device-private folio, an mTHP, a THP after a
 * partial munmap(), mprotect() or mremap()) must be split first. Record it
 * for migrate_collect_pmd(), which splits it outside the page table lock,
 * unless it already failed to split once: then it stays where it is. Page
 * cache folios are not split, as they cannot go to device memory anyway.
 */
static bool migrate_wants_split(struct migrate_collect *collect,
				struct folio *folio)
{
	if (likely(!folio_test_large(folio)) || !folio_test_anon(folio) ||
	    folio == collect->unsplit)
		return false;
	collect->split = folio;
	folio_get(folio);
	return true;
}

/* Decide what to do with the page mapped at @addr and return its entry. */
static unsigned long migrate_collect_pte(struct migrate_collect *collect,
					 unsigned long addr, pte_t *ptep,
					 spinlock_t *ptl, bool *flush)
{
	struct migrate_vma *migrate = collect->migrate;
	pte_t pte = ptep_get(ptep);
	struct page *page;
	swp_entry_t entry;
	unsigned long mpfn;

	if (pte_none(pte)) {
		if (!vma_is_anonymous(migrate->vma))
			return 0;
		return MIGRATE_PFN_MIGRATE;
	}

	if (pte_present(pte)) {
		if (is_zero_pfn(pte_pfn(pte))) {
			/* The driver may populate it like a hole. */
			if (!vma_is_anonymous(migrate->vma) ||
			    !(migrate->flags & MIGRATE_VMA_SELECT_SYSTEM))
				return 0;
			return MIGRATE_PFN_MIGRATE;
		}
		page = migrate_present_page(migrate, addr, pte);
		if (!page)
			return 0;
		if (migrate_wants_split(collect, page_folio(page)))
			return 0;
		/* Still to isolate from the LRU, or a coherent page to check. */
		collect->unmap = true;
		return migrate_unmap_pte(migrate, addr, ptep, ptl, pte, page,
					 pte_write(pte), flush);
	}

	entry = pte_to_swp_entry(pte);
	page = migrate_private_page(migrate, entry);
	if (!page)
		return 0;
	if (migrate_wants_split(collect, page_folio(page)))
		return 0;
	mpfn = migrate_unmap_pte(migrate, addr, ptep, ptl, pte, page,
				 is_writable_device_private_entry(entry), flush);
	return migrate_check_private(collect, mpfn, page_folio(page));
}

/*
 * Split @folio, on which the caller holds a reference that this drops, into
 * base pages. The folio of the page a CPU fault is migrating is locked and
 * referenced by the fault path already: split around that page, which keeps
 * its lock and the fault's reference as a page of its own. Returns false if
 * the folio could not be locked or split.
 */
static bool migrate_split_folio(const struct migrate_vma *migrate,
				struct folio *folio)
{
	int ret;

	if (migrate_is_fault_folio(migrate, folio)) {
		folio_put(folio);
		return !split_huge_page(migrate->fault_page);
	}
	if (!folio_trylock(folio)) {
		folio_put(folio);
		return false;
	}
	ret = split_folio(folio);
	folio_unlock(folio);
	folio_put(folio);
	return !ret;
}

/*
 * The engine moves base pages only for now: a PMD-mapped THP, or a
 * device-private folio mapped by a PMD that the caller selects, is split
 * here so that its pages are collected one by one. Returns false if the
 * range must be left alone: a PMD of another kind, or a folio that could
 * not be locked or split.
 */
static bool migrate_split_huge_pmd(const struct migrate_vma *migrate,
				   pmd_t *pmdp, unsigned long addr)
{
	struct vm_area_struct *vma = migrate->vma;
	struct folio *folio;
	struct page *page;
	spinlock_t *ptl;	/* page table lock */
	pmd_t pmd;

	ptl = pmd_lock(vma->vm_mm, pmdp);
	pmd = *pmdp;
	if (is_pmd_device_private_entry(pmd)) {
		page = migrate_private_page(migrate, pmd_to_swp_entry(pmd));
		if (!page) {
			spin_unlock(ptl);
			return false;
		}
		folio = page_folio(page);
	} else if (pmd_trans_huge(pmd)) {
		folio = pmd_folio(pmd);
		if (is_huge_zero_folio(folio)) {
			spin_unlock(ptl);
			split_huge_pmd(vma, pmdp, addr);
			return true;
		}
	} else {
		spin_unlock(ptl);
		return true;
	}

	folio_get(folio);
	spin_unlock(ptl);
	return migrate_split_folio(migrate, folio);
}

/*
 * The PMD migration entry that stands for @pmd, which maps @folio (as a THP
 * or a device-private folio) and which the CPU could write if @writable:
 * the PMD counterpart of migrate_entry_pte().
 */
static pmd_t migrate_entry_pmd(struct folio *folio, pmd_t pmd, bool writable,
			       bool anon_exclusive)
{
	bool present = pmd_present(pmd);
	pmd_t swp_pmd;

	swp_pmd = swp_entry_to_pmd(migrate_make_entry(folio_pfn(folio),
						      writable, anon_exclusive,
						      present && pmd_young(pmd),
						      present && pmd_dirty(pmd)));
	if (present ? pmd_soft_dirty(pmd) : pmd_swp_soft_dirty(pmd))
		swp_pmd = pmd_swp_mksoft_dirty(swp_pmd);
	if (present ? pmd_uffd_wp(pmd) : pmd_swp_uffd_wp(pmd))
		swp_pmd = pmd_swp_mkuffd_wp(swp_pmd);
	return swp_pmd;
}

/*
 * Replace the PMD at @addr, which maps the anonymous @folio and which the
 * CPU could write if @writable, by a PMD migration entry: the PMD
 * counterpart of migrate_unmap_pte(). Returns the compound source entry, or
 * 0 if the folio stays where it is.
 */
static unsigned long migrate_unmap_pmd(struct migrate_vma *migrate,
				       pmd_t *pmdp, unsigned long addr,
				       spinlock_t *ptl, struct folio *folio,
				       bool writable)
{
	struct vm_area_struct *vma = migrate->vma;
	struct mm_struct *mm = vma->vm_mm;
	struct page *head = &folio->page;
	bool anon_exclusive;
	unsigned long mpfn;
	pmd_t pmd;

	lockdep_assert_held(ptl);
	folio_get(folio);
	if (!migrate_trylock_folio(migrate, folio)) {
		folio_put(folio);
		return 0;
	}

	if (pmd_present(*pmdp)) {
		flush_cache_range(vma, addr, addr + HPAGE_PMD_SIZE);
		/* Also flushes the TLB: GUP-fast must not see the PMD. */
		pmd = pmdp_invalidate(vma, addr, pmdp);
	} else {
		pmd = pmdp_huge_get_and_clear(mm, addr, pmdp);
	}

	/* See migrate_unmap_pte(). */
	anon_exclusive = PageAnonExclusive(head);
	if (anon_exclusive && folio_try_share_anon_rmap_pmd(folio, head)) {
		set_pmd_at(mm, addr, pmdp, pmd);
		migrate_release_src(migrate, folio);
		return 0;
	}

	if (pmd_present(pmd) && pmd_dirty(pmd))
		folio_mark_dirty(folio);
	set_pmd_at(mm, addr, pmdp,
		   migrate_entry_pmd(folio, pmd, writable, anon_exclusive));
	folio_remove_rmap_pmd(folio, head, vma);
	folio_put(folio);

	mpfn = migrate_pfn(folio_pfn(folio)) | MIGRATE_PFN_MIGRATE |
	       MIGRATE_PFN_COMPOUND;
	return writable ? mpfn | MIGRATE_PFN_WRITE : mpfn;
}

/*
 * Collect the PMD at @start as one compound entry if it maps something the
 * caller selected: a THP, the huge zero page (offered like a hole), or a
 * device-private folio of the caller's. Returns false if the PMD holds
 * something else, which the caller then handles as without
 * MIGRATE_VMA_SELECT_COMPOUND.
 */
static bool migrate_collect_huge(struct migrate_collect *collect,
				 pmd_t *pmdp, unsigned long start)
{
	struct migrate_vma *migrate = collect->migrate;
	unsigned long i = migrate_index(migrate, start);
	struct folio *folio = NULL;
	spinlock_t *ptl;	/* page table lock */
	unsigned long mpfn;
	swp_entry_t entry;
	pmd_t pmd;

	ptl = pmd_lock(migrate->vma->vm_mm, pmdp);
	pmd = *pmdp;
	if (pmd_trans_huge(pmd) && !pmd_devmap(pmd) &&
	    (migrate->flags & MIGRATE_VMA_SELECT_SYSTEM)) {
		folio = pmd_folio(pmd);
		if (is_huge_zero_folio(folio)) {
			spin_unlock(ptl);
			migrate->src[i] = MIGRATE_PFN_MIGRATE |
					  MIGRATE_PFN_COMPOUND;
			migrate->cpages += HPAGE_PMD_NR;
			return true;
		}
		if (!folio_test_anon(folio))
			folio = NULL;
	} else if (is_pmd_device_private_entry(pmd)) {
		struct page *page;

		entry = pmd_to_swp_entry(pmd);
		page = migrate_private_page(migrate, entry);
		if (page)
			folio = page_folio(page);
	}
	if (!folio) {
		spin_unlock(ptl);
		return false;
	}

	if (pmd_present(pmd)) {
		mpfn = migrate_unmap_pmd(migrate, pmdp, start, ptl, folio,
					 pmd_write(pmd));
		/* Still to isolate from the LRU. */
		collect->unmap = true;
	} else {
		mpfn = migrate_unmap_pmd(migrate, pmdp, start, ptl, folio,
					 is_writable_device_private_entry(entry));
		mpfn = migrate_check_private(collect, mpfn, folio);
	}
	spin_unlock(ptl);
	migrate->src[i] = mpfn;
	if (mpfn & MIGRATE_PFN_MIGRATE)
		migrate->cpages += HPAGE_PMD_NR;
	return true;
}

static int migrate_collect_pmd(pmd_t *pmdp, unsigned long start,
			       unsigned long end, struct mm_walk *walk)
{
	struct migrate_collect *collect = walk->private;
	struct migrate_vma *migrate = collect->migrate;
	struct vm_area_struct *vma = walk->vma;
	unsigned long addr = start, i = migrate_index(migrate, start);
	bool flush = false;
	spinlock_t *ptl;	/* page table lock */
	pte_t *ptep, *mapped;
	pmd_t pmd;

	pmd = pmdp_get_lockless(pmdp);
	if (pmd_trans_huge(pmd) || is_pmd_device_private_entry(pmd)) {
		/* Taken whole, or left alone: done with this PMD either way. */
		if (migrate_takes_compound(migrate, start, end) &&
		    migrate_collect_huge(collect, pmdp, start))
			return 0;
		if (!migrate_split_huge_pmd(migrate, pmdp, start))
			return 0;
	}

again:
	ptep = pte_offset_map_lock(vma->vm_mm, pmdp, addr, &ptl);
	if (!ptep) {
		/*
		 * The pmd changed under us. Look again if it became empty or
		 * huge; anything else (a THP under migration) is left alone.
		 * Not once some entries are collected: a second look would
		 * take their migration entries for pages to leave alone.
		 */
		pmd = pmdp_get_lockless(pmdp);
		if (addr == start && (pmd_none(pmd) || pmd_trans_huge(pmd)))
			walk->action = ACTION_AGAIN;
		return 0;
	}
	migrate_ptl_acquired(ptl);
	mapped = ptep;

	arch_enter_lazy_mmu_mode();
	for (; addr < end; addr += PAGE_SIZE, ptep++, i++) {
		migrate->src[i] = migrate_collect_pte(collect, addr, ptep,
						      ptl, &flush);
		if (unlikely(collect->split))
			break;
		if (migrate->src[i] & MIGRATE_PFN_MIGRATE)
			migrate->cpages++;
	}
	/* One flush for the batch, and only if a present pte was cleared. */
	if (flush)
		flush_tlb_range(vma, start, addr);
	arch_leave_lazy_mmu_mode();
	pte_unmap_unlock(mapped, ptl);

	/*
	 * A pte mapped a page of a large folio: split the folio, then go on
	 * from that pte, whose page is now a base page, or a page of a folio
	 * left alone.
	 */
	if (collect->split) {
		if (!migrate_split_folio(migrate, collect->split))
			collect->unsplit = collect->split;
		collect->split = NULL;
		goto again;
	}
	return 0;
}

static const struct mm_walk_ops migrate_collect_ops = {
	.pmd_entry	= migrate_collect_pmd,
	.pte_hole	= migrate_collect_hole,
	.walk_lock	= PGWALK_RDLOCK,
};

static void migrate_vma_collect(struct migrate_collect *collect)
{
	struct migrate_vma *migrate = collect->migrate;
	struct mmu_notifier_range range;

	/*
	 * The owner tag lets the device driver that owns the pages being
	 * migrated skip invalidating its own mappings of device pages.
	 */
	mmu_notifier_range_init_owner(&range, MMU_NOTIFY_MIGRATE, 0,
				      migrate->vma->vm_mm, migrate->start,
				      migrate->end, migrate->pgmap_owner);
	mmu_notifier_invalidate_range_start(&range);
	walk_page_range_vma(migrate->vma, migrate->start, migrate->end,
			    &migrate_collect_ops, collect);
	mmu_notifier_invalidate_range_end(&range);
}

/*
 * Do entries @i to @i + HPAGE_PMD_NR - 1 of @src_pfns, out of @npages, list
 * the page frames of the PMD-sized folio at @pfn, in order? Then they can
 * become one compound entry.
 */
static bool migrate_pfns_list_folio(const unsigned long *src_pfns,
				    unsigned long i, unsigned long npages,
				    unsigned long pfn)
{
	unsigned long k;

	if (npages - i < HPAGE_PMD_NR)
		return false;
	for (k = 1; k < HPAGE_PMD_NR; k++)
		if (src_pfns[i + k] != pfn + k)
			return false;
	return true;
}

/*
 * Lock the device page frame of entry @i of @src_pfns, out of @npages, for
 * migrate_device_range()/_pfns(), and replace the page frame number by its
 * source entry. Returns how many entries that filled: HPAGE_PMD_NR for a
 * PMD-sized folio taken whole, as one compound entry, else 1.
 */
static unsigned long migrate_collect_pfn(unsigned long *src_pfns,
					 unsigned long i, unsigned long npages)
{
	unsigned long pfn = src_pfns[i], k;
	struct folio *folio = folio_get_nontail_page(pfn_to_page(pfn));

	/* A free page, or a tail page of a large folio, has no data to move. */
	src_pfns[i] = 0;
	if (!folio)
		return 1;
	if (!folio_trylock(folio)) {
		folio_put(folio);
		return 1;
	}
	if (IS_ENABLED(CONFIG_ARCH_ENABLE_THP_MIGRATION) &&
	    folio_order(folio) == HPAGE_PMD_ORDER &&
	    migrate_pfns_list_folio(src_pfns, i, npages, pfn)) {
		for (k = 1; k < HPAGE_PMD_NR; k++)
			src_pfns[i + k] = 0;
		src_pfns[i] = migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE |
			      MIGRATE_PFN_COMPOUND;
		return HPAGE_PMD_NR;
	}
	/*
	 * Any other large folio is split, through its rmap, as are the PMDs
	 * that map it: its other pages become folios of their own, which a
	 * range meets next.
	 */
	if (folio_test_large(folio) && split_folio(folio)) {
		folio_unlock(folio);
		folio_put(folio);
		return 1;
	}
	src_pfns[i] = migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE;
	return 1;
}

/* ------------------------------------------------------------------------
 * Putting mappings back: the migration entries of each source page are
 * replaced by a pte mapping either the source or its destination.
 */

/*
 * The pte that maps @page again where the migration entry @old, whose swap
 * entry is @entry, was.
 */
static pte_t migrate_mapping_pte(struct vm_area_struct *vma, struct page *page,
				 pte_t old, swp_entry_t entry)
{
	bool writable = is_writable_migration_entry(entry);
	pte_t pte;

	if (is_zone_device_page(page) && is_device_private_page(page)) {
		pte = swp_entry_to_pte(migrate_private_entry(page, writable));
		if (pte_swp_soft_dirty(old))
			pte = pte_swp_mksoft_dirty(pte);
		if (pte_swp_uffd_wp(old))
			pte = pte_swp_mkuffd_wp(pte);
		return pte;
	}

	pte = mk_pte(page, READ_ONCE(vma->vm_page_prot));
	if (!is_migration_entry_young(entry))
		pte = pte_mkold(pte);
	if (folio_test_dirty(page_folio(page)) &&
	    is_migration_entry_dirty(entry))
		pte = pte_mkdirty(pte);
	if (pte_swp_soft_dirty(old))
		pte = pte_mksoft_dirty(pte);
	else
		pte = pte_clear_soft_dirty(pte);
	if (writable)
		pte = pte_mkwrite(pte, vma);
	else if (pte_swp_uffd_wp(old))
		pte = pte_mkuffd_wp(pte);
	return pte;
}

/*
 * Map @page at @addr in place of the migration entry @old (swap entry
 * @entry), under @ptl.
 */
static void migrate_remap_pte(struct vm_area_struct *vma, unsigned long addr,
			      pte_t *ptep, spinlock_t *ptl, pte_t old,
			      swp_entry_t entry, struct page *page)
{
	struct folio *folio = page_folio(page);
	rmap_t flags = RMAP_NONE;
	pte_t pte = migrate_mapping_pte(vma, page, old, entry);

	lockdep_assert_held(ptl);

	folio_get(folio);
	if (folio_test_anon(folio)) {
		if (!is_readable_migration_entry(entry))
			flags = RMAP_EXCLUSIVE;
		folio_add_anon_rmap_pte(folio, page, vma, addr, flags);
	} else {
		folio_add_file_rmap_pte(folio, page, vma);
	}
	set_pte_at(vma->vm_mm, addr, ptep, pte);
	/* The pte was not present: nothing to invalidate. */
	update_mmu_cache(vma, addr, ptep);
}

/*
 * The page that source entry @mpfn, with destination entry @dpfn, ends up
 * as: the destination where migrate_vma_pages() moved the page, else the
 * source.
 */
static struct page *migrate_final_page(unsigned long mpfn, unsigned long dpfn)
{
	if ((mpfn & MIGRATE_PFN_MIGRATE) && (dpfn & MIGRATE_PFN_VALID))
		return migrate_pfn_to_page(dpfn);
	return migrate_pfn_to_page(mpfn);
}

/*
 * Is source entry @mpfn one to map again? While setup backs out
 * (@failed_only), only the entries it dropped are; finalize maps every
 * source page, or its destination.
 */
static bool migrate_needs_remap(unsigned long mpfn, bool failed_only)
{
	if (!(mpfn & MIGRATE_PFN_VALID))
		return false;
	return !failed_only || !(mpfn & MIGRATE_PFN_MIGRATE);
}

/*
 * The swap entry of @pte if it is the migration entry collect put in place
 * of the source page of @mpfn, else a zero entry.
 */
static swp_entry_t migrate_pte_entry_for(pte_t pte, unsigned long mpfn)
{
	swp_entry_t entry;

	if (is_swap_pte(pte)) {
		entry = pte_to_swp_entry(pte);
		if (is_migration_entry(entry) &&
		    swp_offset_pfn(entry) == mpfn >> MIGRATE_PFN_SHIFT)
			return entry;
	}
	return (swp_entry_t) { 0 };
}

/*
 * The swap entry of @pmd if it is the PMD migration entry collect put in
 * place of the compound source of @mpfn, else a zero entry: the PMD
 * counterpart of migrate_pte_entry_for().
 */
static swp_entry_t migrate_pmd_entry_for(pmd_t pmd, unsigned long mpfn)
{
	swp_entry_t entry;

	if (is_pmd_migration_entry(pmd)) {
		entry = pmd_to_swp_entry(pmd);
		if (swp_offset_pfn(entry) == mpfn >> MIGRATE_PFN_SHIFT)
			return entry;
	}
	return (swp_entry_t) { 0 };
}

/*
 * The pmd of @addr in @mm, or NULL if no page table level leads to one.
 * Finalize only goes back to tables collect walked, under the same
 * mmap_lock, so it never needs to allocate one; a huge pud (DAX, never
 * collected) is not a table either.
 */
static pmd_t *migrate_find_pmd(struct mm_struct *mm, unsigned long addr)
{
	pgd_t *pgdp = pgd_offset(mm, addr);
	p4d_t *p4dp;
	pud_t *pudp;

	if (pgd_none(*pgdp) || pgd_bad(*pgdp))
		return NULL;
	p4dp = p4d_offset(pgdp, addr);
	if (p4d_none(*p4dp) || p4d_bad(*p4dp))
		return NULL;
	pudp = pud_offset(p4dp, addr);
	if (pud_none(*pudp) || pud_leaf(*pudp) || pud_bad(*pudp))
		return NULL;
	return pmd_offset(pudp, addr);
}

/*
 * Put back the migration entries under @pmdp, from @start to @end. When
 * @start is that of a compound entry, its PMD migration entry was split
 * into pte migration entries meanwhile (MADV_DONTNEED or uffd-wp on part of
 * it, under the mmap_lock in read mode as we are): each maps its page of
 * the final folio again.
 */
static void migrate_remap_ptes(struct migrate_vma *migrate, pmd_t *pmdp,
			       unsigned long start, unsigned long end,
			       bool failed_only)
{
	struct vm_area_struct *vma = migrate->vma;
	unsigned long addr, k, i = migrate_index(migrate, start);
	unsigned long first = migrate->src[i];
	bool compound = first & MIGRATE_PFN_COMPOUND;
	struct folio *final = NULL;
	spinlock_t *ptl;	/* page table lock */
	pte_t *ptep;

	if (compound && (first & MIGRATE_PFN_VALID))
		final = page_folio(migrate_final_page(first, migrate->dst[i]));

	/* No pte table: whatever was collected here has been zapped. */
	ptep = pte_offset_map_lock(vma->vm_mm, pmdp, start, &ptl);
	if (!ptep)
		return;
	migrate_ptl_acquired(ptl);

	arch_enter_lazy_mmu_mode();
	for (k = 0, addr = start; addr < end; addr += PAGE_SIZE, ptep++, k++) {
		unsigned long mpfn = migrate->src[i + k];
		struct page *page;
		swp_entry_t entry;
		pte_t pte;

		/* Page k of the compound entry: the source's pfn plus k. */
		if (compound)
			mpfn = first + (k << MIGRATE_PFN_SHIFT);
		if (!migrate_needs_remap(mpfn, failed_only))
			continue;
		pte = ptep_get(ptep);
		entry = migrate_pte_entry_for(pte, mpfn);
		if (!entry.val)
			continue;
		if (compound)
			page = folio_page(final, k);
		else
			page = migrate_final_page(mpfn, migrate->dst[i + k]);
		migrate_remap_pte(vma, addr, ptep, ptl, pte, entry, page);
	}
	arch_leave_lazy_mmu_mode();
	pte_unmap_unlock(ptep - 1, ptl);

	/* Mapping into a VM_LOCKED vma queued the pages for mlock. */
	if (vma->vm_flags & VM_LOCKED)
		mlock_drain_local();
}

/*
 * The PMD that maps the PMD-sized folio of @page again where the PMD
 * migration entry @old, whose swap entry is @entry, was: the PMD
 * counterpart of migrate_mapping_pte().
 */
static pmd_t migrate_mapping_pmd(struct vm_area_struct *vma, struct page *page,
				 pmd_t old, swp_entry_t entry)
{
	bool writable = is_writable_migration_entry(entry);
	pmd_t pmd;

	if (is_device_private_page(page)) {
		pmd = swp_entry_to_pmd(migrate_private_entry(page, writable));
		if (pmd_swp_soft_dirty(old))
			pmd = pmd_swp_mksoft_dirty(pmd);
		if (pmd_swp_uffd_wp(old))
			pmd = pmd_swp_mkuffd_wp(pmd);
		return pmd;
	}

	pmd = mk_huge_pmd(page, READ_ONCE(vma->vm_page_prot));
	if (!is_migration_entry_young(entry))
		pmd = pmd_mkold(pmd);
	if (folio_test_dirty(page_folio(page)) &&
	    is_migration_entry_dirty(entry))
		pmd = pmd_mkdirty(pmd);
	if (pmd_swp_soft_dirty(old))
		pmd = pmd_mksoft_dirty(pmd);
	else
		pmd = pmd_clear_soft_dirty(pmd);
	if (writable)
		pmd = pmd_mkwrite(pmd, vma);
	else if (pmd_swp_uffd_wp(old))
		pmd = pmd_mkuffd_wp(pmd);
	return pmd;
}

/*
 * Put back the PMD migration entry of the compound source entry at @addr,
 * as a PMD mapping its final folio.
 */
static void migrate_remap_pmd(struct migrate_vma *migrate, pmd_t *pmdp,
			      unsigned long addr, bool failed_only)
{
	struct vm_area_struct *vma = migrate->vma;
	unsigned long i = migrate_index(migrate, addr);
	unsigned long mpfn = migrate->src[i];
	spinlock_t *ptl;	/* page table lock */
	struct folio *folio;
	struct page *page;
	swp_entry_t entry;
	rmap_t flags;
	pmd_t pmd;

	if (!migrate_needs_remap(mpfn, failed_only))
		return;

	ptl = pmd_lock(vma->vm_mm, pmdp);
	pmd = *pmdp;
	if (!is_pmd_migration_entry(pmd)) {
		spin_unlock(ptl);
		migrate_remap_ptes(migrate, pmdp, addr, addr + HPAGE_PMD_SIZE,
				   failed_only);
		return;
	}
	entry = migrate_pmd_entry_for(pmd, mpfn);
	if (!entry.val)
		goto unlock;

	page = migrate_final_page(mpfn, migrate->dst[i]);
	folio = page_folio(page);
	flags = is_readable_migration_entry(entry) ? RMAP_NONE : RMAP_EXCLUSIVE;
	folio_get(folio);
	folio_add_anon_rmap_pmd(folio, page, vma, addr, flags);
	set_pmd_at(vma->vm_mm, addr, pmdp,
		   migrate_mapping_pmd(vma, page, pmd, entry));
	/* The PMD was not present: nothing to invalidate. */
	if (!folio_is_zone_device(folio))
		update_mmu_cache_pmd(vma, addr, pmdp);
unlock:
	spin_unlock(ptl);
}

/*
 * Revisit the page tables of the range. The generic page walker would do,
 * but its fixed cost is most of a one-page migration (a CPU fault on a
 * device page): make profile counted it at about 320 instructions.
 */
static void migrate_remap_range(struct migrate_vma *migrate, bool failed_only)
{
	struct mm_struct *mm = migrate->vma->vm_mm;
	unsigned long addr, next;

	for (addr = migrate->start; addr < migrate->end; addr = next) {
		pmd_t *pmdp = migrate_find_pmd(mm, addr);

		next = pmd_addr_end(addr, migrate->end);
		if (!pmdp)
			continue;
		if (migrate->src[migrate_index(migrate, addr)] &
		    MIGRATE_PFN_COMPOUND)
			migrate_remap_pmd(migrate, pmdp, addr, failed_only);
		else
			migrate_remap_ptes(migrate, pmdp, addr, next,
					   failed_only);
	}
}

/*
 * Replace the migration entries of the source pages by mappings of their
 * final pages (see migrate_final_page()). One more walk of the range finds
 * those collect installed; the rmap of each page that was also mapped
 * elsewhere finds the rest.
 */
static void migrate_remap(struct migrate_vma *migrate, bool failed_only)
{
	unsigned long i;

	if (migrate->vma)
		migrate_remap_range(migrate, failed_only);
	if (!(migrate->flags & MIGRATE_VMA_RMAP))
		return;

	for (i = 0; i < migrate->npages; i++) {
		unsigned long mpfn = migrate->src[i];
		/* migrate_device_range() backs out before there is any @dst. */
		unsigned long dpfn = migrate->dst ? migrate->dst[i] : 0;

		if (migrate_needs_remap(mpfn, failed_only))
			migrate_remap_held(migrate_pfn_to_page(mpfn),
					   migrate_final_page(mpfn, dpfn));
	}
}

/* ------------------------------------------------------------------------
 * Unmap: make sure each collected page can really move.
 */

/*
 * Per-CPU LRU caches hold references and keep folios off the LRU for a
 * while. Drain them only when a folio turns out to be affected: first this
 * CPU's, then, once per call, everybody's. Returns false once both were
 * tried.
 */
static bool migrate_drain_lru(int *drained)
{
	if (*drained == 0)
		lru_add_drain();
	else if (*drained == 1)
		lru_add_drain_all();
	else
		return false;
	(*drained)++;
	return true;
}

/*
 * Take a system folio off the LRU. Migrating its flags (active,
 * unevictable) and memcg to the destination is only safe while no LRU list
 * or walker can reach it, and isolation also keeps reclaim and compaction
 * from taking transient references that would fail the refcount checks.
 * Device folios are never on an LRU.
 */
static bool migrate_isolate_folio(struct folio *folio, int *drained)
{
	while (!folio_isolate_lru(folio))
		if (!migrate_drain_lru(drained))
			return false;
	/* Isolation took a reference; the one from collect is enough. */
	folio_put(folio);
	return true;
}

static bool migrate_folio_movable(struct migrate_vma *migrate,
				  struct folio *folio, int *drained)
{
	if (folio_mapped(folio)) {
		migrate->flags |= MIGRATE_VMA_RMAP;
		if (!migrate_hold_anon_vma(folio))
			return false;
		try_to_migrate(folio, 0);
		if (folio_mapped(folio))
			return false;
	}
	if (migrate_folio_unshared(migrate, folio))
		return true;
	/*
	 * A per-CPU batch may still hold a reference: the LRU add batch, or
	 * for any page unmapped from a VM_LOCKED VMA, device pages included,
	 * the mlock batch, which lru_add_drain() drains too.
	 */
	return *drained == 0 && migrate_drain_lru(drained) &&
	       migrate_folio_unshared(migrate, folio);
}

/*
 * Prepare one locked, referenced source folio. Returns false if it cannot
 * move: it is then back on the LRU, still locked and possibly still
 * replaced by migration entries.
 */
static bool migrate_prepare_folio(struct migrate_vma *migrate,
				  struct folio *folio, unsigned long mpfn,
				  int *drained)
{
	bool lru = !folio_is_zone_device(folio);

	/*
	 * Large folios are split at collect time, left out, or taken whole
	 * as a compound entry.
	 */
	if (folio_test_large(folio) != !!(mpfn & MIGRATE_PFN_COMPOUND))
		return false;
	if (lru && !migrate_isolate_folio(folio, drained))
		return false;
	if (migrate_folio_movable(migrate, folio, drained))
		return true;
	if (lru)
		folio_add_lru(folio);
	return false;
}

/* Map the dropped entries back, unlock and release them, zero them. */
static void migrate_back_out(struct migrate_vma *migrate)
{
	unsigned long i;

	migrate_remap(migrate, true);
	for (i = 0; i < migrate->npages; i++) {
		struct page *page = migrate_pfn_to_page(migrate->src[i]);

		if (!page || (migrate->src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		migrate_release_src(migrate, page_folio(page));
		migrate->src[i] = 0;
	}
}

/*
 * Unmap every collected page that is still mapped somewhere and check that
 * nobody else holds it. Pages that cannot move, and those collect already
 * refused (a page without MIGRATE_PFN_MIGRATE), are put back as they were
 * and their entries zeroed. Sets migrate->cpages to the entries left to
 * migrate, holes included.
 */
static void migrate_unmap(struct migrate_vma *migrate)
{
	unsigned long i, failed = 0, cpages = 0;
	int drained = 0;

	for (i = 0; i < migrate->npages; i++) {
		unsigned long mpfn = migrate->src[i];
		struct page *page = migrate_pfn_to_page(mpfn);

		if (page && (!(mpfn & MIGRATE_PFN_MIGRATE) ||
			     !migrate_prepare_folio(migrate, page_folio(page),
						    mpfn, &drained))) {
			migrate->src[i] &= ~MIGRATE_PFN_MIGRATE;
			failed++;
		}
		if (migrate->src[i] & MIGRATE_PFN_MIGRATE)
			cpages += migrate_entry_pages(mpfn);
	}
	if (failed)
		migrate_back_out(migrate);
	migrate->cpages = cpages;
}

/* ------------------------------------------------------------------------
 * Pages: hand each source's struct page state over to its destination.
 */

static pmd_t *migrate_alloc_pmd(struct mm_struct *mm, unsigned long addr)
{
	pgd_t *pgdp = pgd_offset(mm, addr);
	p4d_t *p4dp;
	pud_t *pudp;

	p4dp = p4d_alloc(mm, pgdp, addr);
	if (!p4dp)
		return NULL;
	pudp = pud_alloc(mm, p4dp, addr);
	if (!pudp)
		return NULL;
	return pmd_alloc(mm, pudp, addr);
}

/* The pte that maps a new anonymous @page into @vma. */
static pte_t migrate_new_pte(struct vm_area_struct *vma, struct page *page)
{
	bool writable = vma->vm_flags & VM_WRITE;
	pte_t pte;

	if (is_device_private_page(page))
		return swp_entry_to_pte(migrate_private_entry(page, writable));
	pte = mk_pte(page, vma->vm_page_prot);
	return writable ? pte_mkwrite(pte_mkdirty(pte), vma) : pte;
}

/*
 * A hole or zero page may be filled only while nothing else was mapped
 * there meanwhile and no userfaultfd handler wants to hear about it.
 */
static bool migrate_can_fill(struct vm_area_struct *vma, pte_t pte)
{
	if (check_stable_address_space(vma->vm_mm) || userfaultfd_missing(vma))
		return false;
	if (pte_present(pte))
		return is_zero_pfn(pte_pfn(pte));
	return pte_none(pte);
}

/*
 * A destination is system memory or a device page whose kind can be
 * mapped: device-private or device-coherent. Other ZONE_DEVICE pages
 * (fsdax, p2pdma) are not migration targets.
 */
static bool migrate_dst_supported(struct folio *folio)
{
	return !folio_is_zone_device(folio) ||
	       folio_is_device_private(folio) ||
	       folio_is_device_coherent(folio);
}

/*
 * Map the driver's @page at the hole (or zero page) @addr, the way an
 * anonymous fault would. Returns false if the hole cannot be filled.
 */
static bool migrate_fill_hole(struct migrate_vma *migrate, unsigned long addr,
			      struct page *page)
{
	struct vm_area_struct *vma = migrate->vma;
	struct mm_struct *mm = vma->vm_mm;
	struct folio *folio = page_folio(page);
	spinlock_t *ptl;	/* page table lock */
	pte_t *ptep, pte, old;
	pmd_t *pmdp;

	if (!vma_is_anonymous(vma))
		return false;
	if (!migrate_dst_supported(folio))
		return false;

	pmdp = migrate_alloc_pmd(mm, addr);
	if (!pmdp || pmd_trans_huge(*pmdp) || pmd_devmap(*pmdp) ||
	    pte_alloc(mm, pmdp))
		return false;
	if (anon_vma_prepare(vma) || mem_cgroup_charge(folio, mm, GFP_KERNEL))
		return false;

	/* Order the driver's copy before the pte that exposes it. */
	__folio_mark_uptodate(folio);
	pte = migrate_new_pte(vma, page);

	ptep = pte_offset_map_lock(mm, pmdp, addr, &ptl);
	if (!ptep)
		return false;
	migrate_ptl_acquired(ptl);
	old = ptep_get(ptep);
	if (!migrate_can_fill(vma, old)) {
		pte_unmap_unlock(ptep, ptl);
		return false;
	}

	inc_mm_counter(mm, MM_ANONPAGES);
	folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE);
	if (!folio_is_zone_device(folio))
		folio_add_lru_vma(folio, vma);
	folio_get(folio);
	if (pte_present(old)) {
		flush_cache_page(vma, addr, pte_pfn(old));
		ptep_clear_flush(vma, addr, ptep);
	}
	set_pte_at(mm, addr, ptep, pte);
	update_mmu_cache(vma, addr, ptep);
	pte_unmap_unlock(ptep, ptl);
	return true;
}

/*
 * The destination folio of a compound entry whose destination entry is
 * @dpfn: a PMD-sized system or device-private folio that the driver flagged
 * MIGRATE_PFN_COMPOUND, else NULL. A present PMD cannot map device-coherent
 * memory in 6.12, so that kind only takes base pages.
 */
static struct folio *migrate_compound_dst(unsigned long dpfn)
{
	struct page *page = migrate_pfn_to_page(dpfn);
	struct folio *folio;

	if (!page || !(dpfn & MIGRATE_PFN_COMPOUND))
		return NULL;
	folio = page_folio(page);
	if (&folio->page != page || folio_order(folio) != HPAGE_PMD_ORDER)
		return NULL;
	if (folio_is_zone_device(folio) && !folio_is_device_private(folio))
		return NULL;
	return folio;
}

/* The PMD that maps a new PMD-sized anonymous @folio into @vma. */
static pmd_t migrate_new_pmd(struct vm_area_struct *vma, struct folio *folio)
{
	bool writable = vma->vm_flags & VM_WRITE;
	pmd_t pmd;

	if (folio_is_device_private(folio))
		return swp_entry_to_pmd(migrate_private_entry(&folio->page,
							      writable));
	pmd = mk_huge_pmd(&folio->page, vma->vm_page_prot);
	return writable ? pmd_mkwrite(pmd_mkdirty(pmd), vma) : pmd;
}

/*
 * Map the driver's PMD-sized @folio at the PMD-sized hole (or huge zero
 * page) @addr, the way a THP fault would. Returns false if the hole cannot
 * be filled.
 */
static bool migrate_fill_pmd(struct migrate_vma *migrate, unsigned long addr,
			     struct folio *folio)
{
	struct vm_area_struct *vma = migrate->vma;
	struct mm_struct *mm = vma->vm_mm;
	spinlock_t *ptl;	/* page table lock */
	pgtable_t pgtable;
	pmd_t *pmdp, old;

	pmdp = migrate_alloc_pmd(mm, addr);
	if (!pmdp)
		return false;
	if (anon_vma_prepare(vma) || mem_cgroup_charge(folio, mm, GFP_KERNEL))
		return false;
	/* Any PMD mapping an anonymous folio keeps a pte table in reserve. */
	pgtable = pte_alloc_one(mm);
	if (!pgtable)
		return false;

	/* Order the driver's copy before the PMD that exposes it. */
	__folio_mark_uptodate(folio);

	ptl = pmd_lock(mm, pmdp);
	old = *pmdp;
	if (check_stable_address_space(mm) || userfaultfd_missing(vma) ||
	    !(pmd_none(old) || is_huge_zero_pmd(old))) {
		spin_unlock(ptl);
		pte_free(mm, pgtable);
		return false;
	}

	add_mm_counter(mm, MM_ANONPAGES, HPAGE_PMD_NR);
	folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE);
	if (!folio_is_zone_device(folio))
		folio_add_lru_vma(folio, vma);
	folio_get(folio);
	if (pmd_none(old)) {
		pgtable_trans_huge_deposit(mm, pmdp, pgtable);
		mm_inc_nr_ptes(mm);
		pgtable = NULL;
	} else {
		/* The huge zero PMD has its table deposited already. */
		flush_cache_range(vma, addr, addr + HPAGE_PMD_SIZE);
		pmdp_huge_clear_flush(vma, addr, pmdp);
	}
	set_pmd_at(mm, addr, pmdp, migrate_new_pmd(vma, folio));
	if (!folio_is_zone_device(folio))
		update_mmu_cache_pmd(vma, addr, pmdp);
	spin_unlock(ptl);
	if (pgtable)
		pte_free(mm, pgtable);
	return true;
}

/*
 * Did the driver answer compound entry @i with base pages: at least one in
 * its HPAGE_PMD_NR entries, and no large folio?
 */
static bool migrate_given_base_pages(const struct migrate_vma *migrate,
				     unsigned long i)
{
	unsigned long k, given = 0;

	for (k = 0; k < HPAGE_PMD_NR; k++) {
		struct page *page = migrate_pfn_to_page(migrate->dst[i + k]);

		if (page && folio_test_large(page_folio(page)))
			return false;
		given += !!page;
	}
	return given;
}

/*
 * The driver gives base pages for the compound hole of entry @i: offer
 * each of its pages as a hole of its own instead. The huge zero page is
 * split so that ptes can replace it one by one. Returns false if the
 * driver gave nothing, or something else than base pages.
 */
static bool migrate_split_hole(struct migrate_vma *migrate, unsigned long i)
{
	unsigned long addr = migrate->start + (i << PAGE_SHIFT);
	unsigned long k;
	pmd_t *pmdp;

	if (!migrate_given_base_pages(migrate, i))
		return false;
	pmdp = migrate_find_pmd(migrate->vma->vm_mm, addr);
	if (pmdp && is_huge_zero_pmd(pmdp_get_lockless(pmdp)))
		split_huge_pmd(migrate->vma, pmdp, addr);
	for (k = 0; k < HPAGE_PMD_NR; k++)
		migrate->src[i + k] = MIGRATE_PFN_MIGRATE;
	return true;
}

/*
 * rmap_walk() callback: split the PMD migration entry of @folio in @vma,
 * if it has one there, into one pte migration entry per page. Entries that
 * are ptes already stay as they are.
 */
static bool migrate_split_entry_pmd(struct folio *folio,
				    struct vm_area_struct *vma,
				    unsigned long addr, void *arg)
{
	DEFINE_FOLIO_VMA_WALK(pvmw, folio, vma, addr, PVMW_MIGRATION);

	while (page_vma_mapped_walk(&pvmw))
		if (!pvmw.pte)
			split_huge_pmd_locked(vma, pvmw.address, pvmw.pmd,
					      false, NULL);
	return true;
}

/* Drop the reservations migrate_reserve_split() made below @pfn + @end. */
static void migrate_unreserve_split(unsigned long pfn, unsigned long end)
{
	unsigned long k;

	for (k = 1; k < end; k++)
		xa_release(&migrate_anon_vmas, pfn + k);
}

/*
 * Before @folio, unmapped through the rmap, is split: reserve an entry in
 * migrate_anon_vmas for each of its pages after the first, so that once
 * they are folios of their own, finalize finds their migration entries
 * too. Reserved first, because once the folio is split, storing them must
 * not fail.
 */
static bool migrate_reserve_split(struct folio *folio)
{
	unsigned long pfn = folio_pfn(folio), k;

	for (k = 1; k < folio_nr_pages(folio); k++) {
		if (xa_reserve(&migrate_anon_vmas, pfn + k, GFP_KERNEL))
			break;
	}
	if (k == folio_nr_pages(folio))
		return true;
	migrate_unreserve_split(pfn, k);
	return false;
}

/*
 * The split of the folio at @pfn, which had @nr pages, is over: each new
 * folio takes over the reserved entry of its first page, holding the
 * anon_vma like the first does, or the reservation goes if the split
 * failed.
 */
static void migrate_end_split(unsigned long pfn, unsigned long nr, bool split)
{
	void *entry = xa_load(&migrate_anon_vmas, pfn);
	unsigned long k;

	if (!split) {
		migrate_unreserve_split(pfn, nr);
		return;
	}
	for (k = 1; k < nr; k++) {
		if (!xa_is_value(entry))
			get_anon_vma(entry);
		xa_store(&migrate_anon_vmas, pfn + k, entry, GFP_NOWAIT);
	}
}

/*
 * Split the unmapped compound source @folio of the PMD at @addr, and each
 * PMD migration entry of it into one pte migration entry per page, unless
 * MADV_DONTNEED zapped or split that meanwhile. The folio goes first, under
 * the PMD lock: if it cannot be split (a transient reference is enough),
 * every PMD stays whole for finalize to map it back as it was. The PMDs of
 * other processes are found through the rmap of the folio's first page: a
 * PMD migration entry refers to that page, and a process that meets one
 * meanwhile waits for the page's lock, which the migration holds.
 */
static int migrate_split_unmapped(struct vm_area_struct *vma,
				  unsigned long addr, struct folio *folio,
				  int refs)
{
	unsigned long pfn = folio_pfn(folio), nr = folio_nr_pages(folio);
	bool elsewhere = migrate_unmapped_elsewhere(pfn);
	struct rmap_walk_control rwc = {
		.rmap_one = migrate_split_entry_pmd,
	};
	spinlock_t *ptl;	/* page table lock */
	pmd_t *pmdp = NULL;
	int ret;

	if (elsewhere && !migrate_reserve_split(folio))
		return -ENOMEM;
	if (vma)
		pmdp = migrate_find_pmd(vma->vm_mm, addr);
	if (pmdp) {
		ptl = pmd_lock(vma->vm_mm, pmdp);
		ret = split_unmapped_folio(folio, refs);
		if (!ret && migrate_pmd_entry_for(*pmdp, migrate_pfn(pfn)).val)
			split_huge_pmd_locked(vma, addr, pmdp, false, NULL);
		spin_unlock(ptl);
	} else {
		ret = split_unmapped_folio(folio, refs);
	}
	if (!elsewhere)
		return ret;
	/* @folio is now the folio of the first page alone. */
	if (!ret)
		rmap_walk(folio, &rwc);
	migrate_end_split(pfn, nr, !ret);
	return ret;
}

/*
 * The driver gives base pages for the compound source of entry @i (it
 * copied each page of the source folio into its own): split the folio into
 * base pages that migrate one by one, as if collect had met them so. It
 * stays unmapped throughout, so the CPU cannot write to it after the copy.
 * Each new folio is locked and holds the reference of its entry, the fault
 * page's one more for the fault path. Returns false if the driver gave
 * nothing, or something else than base pages, or if the folio could not be
 * split: finalize then maps the entry back whole.
 */
static bool migrate_split_src(struct migrate_vma *migrate, unsigned long i)
{
	unsigned long addr = migrate->start + (i << PAGE_SHIFT);
	unsigned long mpfn = migrate->src[i], k;
	struct folio *folio = page_folio(migrate_pfn_to_page(mpfn));
	bool fault = migrate_is_fault_folio(migrate, folio);

	if (!migrate_given_base_pages(migrate, i))
		return false;
	if (folio_test_swapcache(folio) && !folio_free_swap(folio))
		return false;
	if (migrate_split_unmapped(migrate->vma, addr, folio, fault ? 2 : 1))
		return false;
	if (fault)
		get_page(migrate->fault_page);

	mpfn &= ~MIGRATE_PFN_COMPOUND;
	for (k = 0; k < HPAGE_PMD_NR; k++)
		migrate->src[i + k] = mpfn + (k << MIGRATE_PFN_SHIFT);
	return true;
}

/*
 * Hand the struct page state of @src over to @dst: mapping, index and
 * flags. After this the data lives in @dst as far as mm is concerned.
 */
static bool migrate_move_folio(const struct migrate_vma *migrate,
			       struct folio *src, struct folio *dst)
{
	struct address_space *mapping = folio_mapping(src);

	if (!migrate_dst_supported(dst))
		return false;
	/*
	 * Device memory holds anonymous memory only; a swap cache copy, if
	 * any, must go first.
	 */
	if (folio_is_zone_device(dst) && mapping) {
		if (!folio_test_anon(src) || !folio_free_swap(src))
			return false;
		mapping = folio_mapping(src);
	}

	/* A swap cache folio still under writeback is not ours to move. */
	if (folio_test_writeback(src))
		return false;
	if (folio_migrate_mapping(mapping, dst, src,
				  migrate_is_fault_folio(migrate, src)))
		return false;
	folio_migrate_flags(dst, src);
	return true;
}

/*
 * Filling holes changes the CPU page table: tell the notifiers once, from
 * the first hole to the end of the range, with the owner tag as collect
 * does.
 */
static void migrate_notify_fill(struct migrate_vma *migrate,
				struct mmu_notifier_range *range,
				unsigned long addr)
{
	mmu_notifier_range_init_owner(range, MMU_NOTIFY_MIGRATE, 0,
				      migrate->vma->vm_mm, addr, migrate->end,
				      migrate->pgmap_owner);
	mmu_notifier_invalidate_range_start(range);
}

static void migrate_move(struct migrate_vma *migrate)
{
	struct mmu_notifier_range range;
	bool notified = false;
	unsigned long i;

	for (i = 0; i < migrate->npages; i++) {
		unsigned long dpfn = migrate->dst[i];
		struct page *newpage = migrate_pfn_to_page(dpfn);
		struct page *page = migrate_pfn_to_page(migrate->src[i]);
		unsigned long addr = migrate->start + (i << PAGE_SHIFT);
		bool compound = migrate->src[i] & MIGRATE_PFN_COMPOUND;
		bool moved = false;

		if (!(migrate->src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		if (compound && !migrate_compound_dst(dpfn)) {
			if (page ? !migrate_split_src(migrate, i) :
				   !migrate_split_hole(migrate, i)) {
				migrate->src[i] &= ~MIGRATE_PFN_MIGRATE;
				continue;
			}
			compound = false;
		}
		/* A large folio only as the destination of a whole PMD. */
		if (newpage && !compound && folio_test_large(page_folio(newpage)))
			newpage = NULL;
		if (newpage && page) {
			moved = migrate_move_folio(migrate, page_folio(page),
						   page_folio(newpage));
		} else if (newpage && !WARN_ON_ONCE(!migrate->vma)) {
			if (!notified)
				migrate_notify_fill(migrate, &range, addr);
			notified = true;
			if (compound)
				moved = migrate_fill_pmd(migrate, addr,
							 page_folio(newpage));
			else
				moved = migrate_fill_hole(migrate, addr,
							  newpage);
		}
		if (!moved)
			migrate->src[i] &= ~MIGRATE_PFN_MIGRATE;
	}

	if (notified)
		mmu_notifier_invalidate_range_end(&range);
}

/* ------------------------------------------------------------------------
 * Finalize: map the final pages and release everything.
 */

/*
 * A system page that ends up mapped goes (back) on the LRU: a restored
 * source was isolated by setup, a destination was never on it.
 */
static void migrate_finalize_lru(struct migrate_vma *migrate, unsigned long i)
{
	unsigned long mpfn = migrate->src[i];

	if (mpfn & MIGRATE_PFN_VALID) {
		struct page *page = migrate_final_page(mpfn, migrate->dst[i]);

		if (!is_zone_device_page(page))
			folio_add_lru(page_folio(page));
	}
}

/*
 * Unlock the source and destination pages of entry @i and drop the
 * references this migration held. A destination that was used now holds
 * the data and its mappings' references; one that was not is freed here,
 * like a source page that moved. Batching the puts through folios_put()
 * was measured slower in make bench, so each page is released on its own.
 */
static void migrate_finalize_release(struct migrate_vma *migrate,
				     unsigned long i)
{
	struct page *newpage = migrate_pfn_to_page(migrate->dst[i]);
	struct page *page = migrate_pfn_to_page(migrate->src[i]);

	if (page)
		migrate_release_src(migrate, page_folio(page));
	if (newpage) {
		folio_unlock(page_folio(newpage));
		folio_put(page_folio(newpage));
	}
}

/*
 * A page mapped again into a VM_LOCKED VMA is mlocked as it is mapped, and
 * __mlock_folio() counts that only for a page already on the LRU. So where
 * a locked VMA may be involved (this one, or any other the rmap reaches),
 * every page goes on the LRU before the remap, as 6.12 did; elsewhere one
 * pass after the remap does both steps of each entry.
 */
static void migrate_finalize(struct migrate_vma *migrate)
{
	bool lru_first = (migrate->flags & MIGRATE_VMA_RMAP) ||
			 (migrate->vma->vm_flags & VM_LOCKED);
	unsigned long i;

	if (lru_first)
		for (i = 0; i < migrate->npages; i++)
			migrate_finalize_lru(migrate, i);
	migrate_remap(migrate, false);
	for (i = 0; i < migrate->npages; i++) {
		if (!lru_first)
			migrate_finalize_lru(migrate, i);
		migrate_finalize_release(migrate, i);
	}
}

/* ------------------------------------------------------------------------
 * Entry points.
 */

static int migrate_vma_check_args(const struct migrate_vma *args)
{
	struct vm_area_struct *vma = args->vma;

	if (!vma || is_vm_hugetlb_page(vma) || (vma->vm_flags & VM_SPECIAL) ||
	    vma_is_dax(vma))
		return -EINVAL;
	if (!PAGE_ALIGNED(args->start) || !PAGE_ALIGNED(args->end) ||
	    args->start >= args->end)
		return -EINVAL;
	if (args->start < vma->vm_start || args->end > vma->vm_end)
		return -EINVAL;
	if (!args->src || !args->dst)
		return -EINVAL;
	/* The internal bit may be left over from an earlier migration. */
	if (!(args->flags & MIGRATE_VMA_SELECT_ANY) ||
	    (args->flags & ~(MIGRATE_VMA_SELECT_ANY |
			     MIGRATE_VMA_SELECT_COMPOUND | MIGRATE_VMA_RMAP)))
		return -EINVAL;
	if (args->fault_page && (!is_device_private_page(args->fault_page) ||
				 !PageLocked(args->fault_page)))
		return -EINVAL;
	return 0;
}

/**
 * migrate_vma_setup() - collect and unmap the pages of a range to migrate
 * @args: the VMA, the page-aligned range [@start, @end) within it, the
 *        @src and @dst arrays of (@end - @start) / PAGE_SIZE entries, the
 *        MIGRATE_VMA_SELECT_* @flags, @pgmap_owner and, from a
 *        ->migrate_to_ram() handler, @fault_page
 *
 * Fills @src for every page of the range and zeroes @dst:
 *
 * - ``migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE`` (plus MIGRATE_PFN_WRITE if
 *   the CPU could write it) for a page selected by @flags, now locked, held
 *   and replaced in the CPU page table by a migration entry. System pages
 *   are selected by MIGRATE_VMA_SELECT_SYSTEM; device private and device
 *   coherent pages by their flag and a matching @pgmap_owner.
 * - MIGRATE_PFN_MIGRATE alone for an unpopulated address or the zero page
 *   (the latter with MIGRATE_VMA_SELECT_SYSTEM) in an anonymous VMA: the
 *   driver may allocate memory for it.
 * - 0 for everything else, including pages that could not be locked, are
 *   pinned or otherwise referenced, or are of a large folio that could not
 *   be split: those stay mapped and untouched.
 *
 * @cpages counts the pages of the entries marked MIGRATE_PFN_MIGRATE and
 * @npages the entries of the range. A large anonymous folio, mapped by a
 * PMD or by ptes (an mTHP, or a THP after a partial munmap(), mprotect() or
 * mremap()), is split first, as upstream does; 6.12 left one mapped by
 * ptes out.
 *
 * With MIGRATE_VMA_SELECT_COMPOUND, a PMD that lies wholly in the range of
 * an anonymous VMA that may hold THPs is collected as one entry flagged
 * MIGRATE_PFN_COMPOUND, followed by HPAGE_PMD_NR - 1 zero entries, if it
 * maps a selected THP or device-private folio (the folio is then locked,
 * held and replaced by a PMD migration entry), the huge zero page, or
 * nothing (both as a compound hole, without MIGRATE_PFN_VALID). It counts
 * HPAGE_PMD_NR in @cpages. For such an entry the driver supplies the head
 * page of a PMD-sized system or device-private folio flagged
 * MIGRATE_PFN_COMPOUND in @dst. It may instead give base pages in any of
 * the HPAGE_PMD_NR entries, each then mapped by a pte: a compound source is
 * split for that, and its pages without a destination stay where they are.
 * A compound source that other processes map too (after fork()) moves
 * whole, and each of their mappings, PMD or ptes, maps the destination;
 * given base pages, it is split with those mappings.
 *
 * The driver then copies the data of each entry it wants to move into a
 * locked destination page, stores ``migrate_pfn(pfn)`` of that page in @dst
 * (MIGRATE_PFN_WRITE there is ignored: CPU access follows the old mapping,
 * or the VMA for holes) and calls migrate_vma_pages() and
 * migrate_vma_finalize(). It may leave entries out, except when moving
 * device private memory back to system memory from a fault, where that can
 * only end in SIGBUS. @src must not be changed until finalize.
 *
 * Changes from earlier kernels: @start and @end must be page aligned (they
 * used to be rounded down), @flags must select something and hold no
 * unknown bit, and @fault_page
 * must be locked, as do_swap_page() now does before ->migrate_to_ram(). The
 * engine keeps internal state in the top bit of @flags until finalize.
 *
 * Context: Process context. The caller holds the mmap_lock of @vma's mm in
 * read (or write) mode and keeps holding it until migrate_vma_finalize()
 * returns. May sleep.
 * Return: 0, even if no page could be collected (@cpages is then 0), or
 * -EINVAL for invalid arguments, in which case nothing was touched.
 */
int migrate_vma_setup(struct migrate_vma *args)
{
	struct migrate_collect collect = { .migrate = args };
	int ret = migrate_vma_check_args(args);

	if (ret)
		return ret;

	args->npages = (args->end - args->start) >> PAGE_SHIFT;
	args->cpages = 0;
	args->flags &= ~MIGRATE_VMA_RMAP;
	memset(args->src, 0, args->npages * sizeof(*args->src));
	memset(args->dst, 0, args->npages * sizeof(*args->dst));

	mmap_assert_locked(args->vma->vm_mm);
	migrate_vma_collect(&collect);
	if (collect.unmap)
		migrate_unmap(args);
	else if (collect.refused)
		migrate_back_out(args);
	return 0;
}
EXPORT_SYMBOL(migrate_vma_setup);

/**
 * migrate_vma_pages() - move the struct page state to the destinations
 * @migrate: the structure migrate_vma_setup() filled, with @dst filled in
 *
 * For each source entry still marked MIGRATE_PFN_MIGRATE that has a
 * destination, hands the page's mapping, index and flags over to the
 * destination page, or for a hole maps the destination page into the VMA.
 * Entries without a destination, and those that cannot move (the page
 * gained a reference, a swap cache page is going to device memory and its
 * swap slot cannot be freed, the page is under writeback, the hole got
 * populated meanwhile, the VMA is not anonymous, the destination is an
 * unsupported kind of device page), lose MIGRATE_PFN_MIGRATE. 6.12 hit a
 * BUG_ON() for a source under writeback; this drops the entry instead.
 * Both pages stay locked, so the driver may update its own page tables
 * after this call.
 *
 * A compound source entry that the driver answered with base pages is
 * split first: from then on its HPAGE_PMD_NR entries of @src are base
 * entries (``migrate_pfn(pfn + k)`` with the flags of the first), each
 * moving or staying on its own. If the folio cannot be split (it gained a
 * reference) the whole entry stays.
 *
 * Context: Process context, mmap_lock held as for migrate_vma_setup(). May
 * sleep.
 * Return: nothing; the entries that migrate are those of @src still marked
 * MIGRATE_PFN_MIGRATE.
 */
void migrate_vma_pages(struct migrate_vma *migrate)
{
	mmap_assert_locked(migrate->vma->vm_mm);
	migrate_move(migrate);
}
EXPORT_SYMBOL(migrate_vma_pages);

/**
 * migrate_vma_finalize() - map the final pages and release the migration
 * @migrate: the structure migrate_vma_pages() was called with
 *
 * Replaces each migration entry by a mapping of the destination page where
 * the move succeeded and of the source page elsewhere, puts system pages on
 * the LRU, and unlocks and releases the source and destination pages. A
 * destination page that was not used is freed here. The driver must have
 * finished copying, and made the copy visible to the CPU, before it calls
 * this.
 *
 * Context: Process context, mmap_lock held as for migrate_vma_setup(). May
 * sleep.
 * Return: nothing; every page of the range is mapped exactly once again.
 */
void migrate_vma_finalize(struct migrate_vma *migrate)
{
	mmap_assert_locked(migrate->vma->vm_mm);
	migrate_finalize(migrate);
}
EXPORT_SYMBOL(migrate_vma_finalize);

/* Unmap the pages collected by the pfn-based calls, wherever they are. */
static void migrate_device_unmap(unsigned long *src_pfns, unsigned long npages)
{
	struct migrate_vma migrate = {
		.src = src_pfns,
		.npages = npages,
		.flags = MIGRATE_VMA_RMAP,
	};

	migrate_unmap(&migrate);
}

/**
 * migrate_device_range() - collect and unmap a range of device pages
 * @src_pfns: array of @npages entries, filled by this function
 * @start: first page frame number of the range
 * @npages: number of page frames
 *
 * Like migrate_vma_setup(), but starts from device page frames instead of
 * virtual addresses, for a driver that must empty its memory (on unbind, for
 * example) without knowing where the pages are mapped. Each page frame that
 * is in use, can be locked at once and is not held by anybody else is
 * locked, unmapped from every process and gets
 * ``migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE`` in @src_pfns; the others get 0
 * (a driver that must empty its memory retries those).
 *
 * A PMD-sized folio whose page frames all lie in the range, in order, is
 * taken whole, as upstream does: its first entry gets MIGRATE_PFN_COMPOUND
 * too and the HPAGE_PMD_NR - 1 after it are 0. The driver answers as for
 * migrate_vma_setup() with MIGRATE_VMA_SELECT_COMPOUND: a PMD-sized folio
 * flagged MIGRATE_PFN_COMPOUND in @dst, which each PMD or pte that mapped
 * the source then maps, or base pages, for which the source is split. Any
 * other large folio is split first, the PMDs that map it too, so its pages
 * come back as base pages; its tail page frames count as in use only after
 * the split, so a range should list them after the folio's first page
 * frame. No 6.12 driver creates large device folios, so none meets a
 * compound entry here. The driver then allocates destinations, copies, and
 * calls migrate_device_pages() and migrate_device_finalize().
 *
 * Context: Process context, no mmap_lock needed. May sleep.
 * Return: 0.
 */
int migrate_device_range(unsigned long *src_pfns, unsigned long start,
			 unsigned long npages)
{
	unsigned long i;

	for (i = 0; i < npages; i++)
		src_pfns[i] = start + i;
	return migrate_device_pfns(src_pfns, npages);
}
EXPORT_SYMBOL(migrate_device_range);

/**
 * migrate_device_pfns() - collect and unmap a list of device pages
 * @src_pfns: on entry, @npages device page frame numbers in any order; on
 *            return, the source entries as migrate_device_range() fills them
 * @npages: number of entries
 *
 * Like migrate_device_range() for page frames that need not be contiguous:
 * a PMD-sized folio becomes a compound entry where the list holds all its
 * page frames in order, one after the other.
 *
 * Context: Process context, no mmap_lock needed. May sleep.
 * Return: 0.
 */
int migrate_device_pfns(unsigned long *src_pfns, unsigned long npages)
{
	unsigned long i;

	for (i = 0; i < npages; )
		i += migrate_collect_pfn(src_pfns, i, npages);
	migrate_device_unmap(src_pfns, npages);
	return 0;
}
EXPORT_SYMBOL(migrate_device_pfns);

/**
 * migrate_device_pages() - move the struct page state to the destinations
 * @src_pfns: source entries from migrate_device_range() or _pfns()
 * @dst_pfns: destination entries filled by the driver, 0 for none
 * @npages: number of entries
 *
 * The counterpart of migrate_vma_pages() for the pfn-based calls: entries
 * that cannot move lose MIGRATE_PFN_MIGRATE in @src_pfns.
 *
 * Context: Process context. May sleep.
 * Return: nothing; the entries that migrate are those of @src_pfns still
 * marked MIGRATE_PFN_MIGRATE.
 */
void migrate_device_pages(unsigned long *src_pfns, unsigned long *dst_pfns,
			  unsigned long npages)
{
	struct migrate_vma migrate = {
		.src = src_pfns,
		.dst = dst_pfns,
		.npages = npages,
		.flags = MIGRATE_VMA_RMAP,
	};

	migrate_move(&migrate);
}
EXPORT_SYMBOL(migrate_device_pages);

/**
 * migrate_device_finalize() - map the final pages and release the migration
 * @src_pfns: source entries from migrate_device_range() or _pfns()
 * @dst_pfns: destination entries given to migrate_device_pages()
 * @npages: number of entries
 *
 * The counterpart of migrate_vma_finalize() for the pfn-based calls; it
 * finds the mappings through each page's rmap. Destination pages given for
 * entries that did not migrate are unlocked and released.
 *
 * Unlike 6.12, where migrate_vma_finalize() was a wrapper around this
 * function, it cannot finish a migration started by migrate_vma_setup():
 * that one must end with migrate_vma_finalize() on the same struct
 * migrate_vma, which knows the range and the fault page. No 6.12 caller
 * mixes the two.
 *
 * Context: Process context. May sleep.
 * Return: nothing; every source page that was mapped is mapped again,
 * through its destination if it migrated.
 */
void migrate_device_finalize(unsigned long *src_pfns, unsigned long *dst_pfns,
			     unsigned long npages)
{
	struct migrate_vma migrate = {
		.src = src_pfns,
		.dst = dst_pfns,
		.npages = npages,
		.flags = MIGRATE_VMA_RMAP,
	};

	migrate_finalize(&migrate);
}
EXPORT_SYMBOL(migrate_device_finalize);

/**
 * migrate_device_coherent_folio() - move a device coherent folio to system RAM
 * @folio: the folio, on which the caller holds a reference
 *
 * Used by GUP before a long-term pin, which device memory must not get. The
 * caller's reference is consumed: on success it has moved to the new folio
 * through the mappings, on failure it is dropped.
 *
 * Context: Process context; takes the folio lock. May sleep.
 * Return: 0 if the folio was migrated, -EBUSY if it could not be.
 */
int migrate_device_coherent_folio(struct folio *folio)
{
	unsigned long src_pfn, dst_pfn = 0;
	struct migrate_vma migrate = {
		.src = &src_pfn,
		.dst = &dst_pfn,
		.npages = 1,
		.flags = MIGRATE_VMA_RMAP,
	};
	struct folio *dfolio;

	WARN_ON_ONCE(folio_test_large(folio));

	/* The caller's reference stands in for the one collect takes. */
	folio_lock(folio);
	src_pfn = migrate_pfn(folio_pfn(folio)) | MIGRATE_PFN_MIGRATE;
	migrate_unmap(&migrate);
	if (!(src_pfn & MIGRATE_PFN_MIGRATE))
		return -EBUSY;

	dfolio = folio_alloc(GFP_USER | __GFP_NOWARN, 0);
	if (dfolio) {
		folio_lock(dfolio);
		dst_pfn = migrate_pfn(folio_pfn(dfolio));
	}
	migrate_move(&migrate);
	if (src_pfn & MIGRATE_PFN_MIGRATE)
		folio_copy(dfolio, folio);
	migrate_finalize(&migrate);

	return src_pfn & MIGRATE_PFN_MIGRATE ? 0 : -EBUSY;
}
