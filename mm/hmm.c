// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * hmm_range_fault(): tell a device driver what the CPU page tables map over
 * a range of a process's address space, faulting pages in on request.
 *
 * The work is split in two steps that alternate until the range is done:
 *
 *  - a page-table walk that only reads. It stores the result of every page
 *    it can answer for, and when it meets the first page that must be
 *    faulted it records the run of pages that need the same kind of fault
 *    and stops there;
 *  - the fault of that run, taken after the page walk has returned, so
 *    that no page-table walk state (mapped PTE tables, hugetlb VMA locks,
 *    RCU) is held across handle_mm_fault(). The walk then resumes at the
 *    first page of the run and checks the result again.
 *
 * The walk covers at most HMM_WALK_SPAN bytes at a time; between spans the
 * caller's notifier sequence is checked, fatal signals are honoured and the
 * CPU is offered to others, so that ranges of many gigabytes, mostly holes,
 * neither stall nor ignore a kill.
 */
#include <linux/hmm.h>
#include <linux/hugetlb.h>
#include <linux/memremap.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/pagewalk.h>
#include <linux/sched/signal.h>
#include <linux/sizes.h>
#include <linux/swapops.h>

#include "internal.h"

/*
 * Walking this much costs at most some hundreds of microseconds even when it
 * is all holes, which is what a pause between spans has to bound.
 */
#define HMM_WALK_SPAN	SZ_1G

/* A walk callback returns this when it stopped in front of a fault. */
#define HMM_WALK_STOPPED_FOR_FAULT	1

/* What a page needs before it can satisfy its request. */
enum {
	HMM_NEED_FAULT = 1 << 0,
	HMM_NEED_WRITE = 1 << 1,
};

/**
 * struct hmm_vma_walk - state of one hmm_range_fault() call
 * @range: the caller's range
 * @last: first address whose entry still holds the caller's input; every
 *	entry below it holds its output
 * @per_page: whether pfn_flags_mask lets per-page request bits through, so
 *	that requests must be read from the pfn array
 * @request: the request of every page when !@per_page
 * @fault_start: first address of the run of pages to fault
 * @fault_end: end of that run
 * @fault_need: HMM_NEED_* flags shared by all pages of the run
 */
struct hmm_vma_walk {
	struct hmm_range *range;
	unsigned long last;
	bool per_page;
	unsigned long request;
	unsigned long fault_start;
	unsigned long fault_end;
	unsigned int fault_need;
};

static unsigned long hmm_index(const struct hmm_range *range,
			       unsigned long addr)
{
	return (addr - range->start) >> PAGE_SHIFT;
}

static unsigned long hmm_order_flags(unsigned int order)
{
	return (unsigned long)order << HMM_PFN_ORDER_SHIFT;
}

/* The request bits hmm_range_fault() acts on; the rest is ignored. */
#define HMM_PFN_REQ_BITS	(HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE)

/*
 * The request for one page: the caller's per-page flags, as far as
 * pfn_flags_mask lets them through, plus the range's default flags.
 */
static unsigned long hmm_page_request(const struct hmm_vma_walk *hvw,
				      unsigned long input)
{
	const struct hmm_range *range = hvw->range;

	if (!hvw->per_page)
		return hvw->request;
	return ((input & range->pfn_flags_mask) | range->default_flags) &
	       HMM_PFN_REQ_BITS;
}

static void hmm_init_requests(struct hmm_vma_walk *hvw)
{
	const struct hmm_range *range = hvw->range;

	hvw->per_page = range->pfn_flags_mask & HMM_PFN_REQ_BITS;
	hvw->request = range->default_flags & HMM_PFN_REQ_BITS;
	/* The default already asks for everything a page could ask for. */
	if (hvw->request == HMM_PFN_REQ_BITS)
		hvw->per_page = false;
}

/*
 * The fault that would turn what the CPU grants (@cpu_flags) into what the
 * page asks for (@request). REQ_WRITE only means something with REQ_FAULT.
 */
static unsigned int hmm_fault_needed(unsigned long request,
				     unsigned long cpu_flags)
{
	if (!(request & HMM_PFN_REQ_FAULT))
		return 0;
	if ((request & HMM_PFN_REQ_WRITE) && !(cpu_flags & HMM_PFN_WRITE))
		return HMM_NEED_FAULT | HMM_NEED_WRITE;
	if (!(cpu_flags & HMM_PFN_VALID))
		return HMM_NEED_FAULT;
	return 0;
}

static unsigned int hmm_page_fault_needed(const struct hmm_vma_walk *hvw,
					  unsigned long addr,
					  unsigned long cpu_flags)
{
	const struct hmm_range *range = hvw->range;
	unsigned long input = 0;

	if (hvw->per_page)
		input = range->hmm_pfns[hmm_index(range, addr)];
	return hmm_fault_needed(hmm_page_request(hvw, input), cpu_flags);
}

/*
 * Return the first address of [@start, @end) whose request is not met by
 * @cpu_flags, or @end if there is none.
 */
static unsigned long hmm_find_fault(const struct hmm_vma_walk *hvw,
				    unsigned long start, unsigned long end,
				    unsigned long cpu_flags)
{
	unsigned long addr;

	/* Pages that all ask for the same thing need the same fault. */
	if (!hvw->per_page)
		return hmm_fault_needed(hvw->request, cpu_flags) ? start : end;
	for (addr = start; addr < end; addr += PAGE_SIZE)
		if (hmm_page_fault_needed(hvw, addr, cpu_flags))
			break;
	return addr;
}

/*
 * Stop the walk at @addr, which needs the fault @need, and make the run to
 * fault every following page of [@addr, @end) that needs the same fault.
 */
static int hmm_stop_for_fault(struct hmm_vma_walk *hvw, unsigned long addr,
			      unsigned long end, unsigned long cpu_flags,
			      unsigned int need)
{
	hvw->last = addr;
	hvw->fault_start = addr;
	hvw->fault_need = need;
	addr += PAGE_SIZE;
	while (hvw->per_page && addr < end &&
	       hmm_page_fault_needed(hvw, addr, cpu_flags) == need)
		addr += PAGE_SIZE;
	hvw->fault_end = hvw->per_page ? addr : end;
	return HMM_WALK_STOPPED_FOR_FAULT;
}

/*
 * Store the output of [@start, @end), all mapped alike: @cpu_flags for each
 * page, with consecutive pfns from @pfn when the pages are valid.
 */
static void hmm_store_span(struct hmm_range *range, unsigned long start,
			   unsigned long end, unsigned long pfn,
			   unsigned long cpu_flags)
{
	unsigned long i = hmm_index(range, start);
	unsigned long n = (end - start) >> PAGE_SHIFT;
	unsigned long *out = &range->hmm_pfns[i];

	if (!(cpu_flags & HMM_PFN_VALID)) {
		for (i = 0; i < n; i++)
			out[i] = cpu_flags;
		return;
	}
	for (i = 0; i < n; i++)
		out[i] = (pfn + i) | cpu_flags;
}

/*
 * Handle [@start, @end) where the CPU grants @cpu_flags to every page (a
 * hole, a huge mapping): store what needs no fault, stop at what does.
 */
static int hmm_walk_uniform(struct hmm_vma_walk *hvw, unsigned long start,
			    unsigned long end, unsigned long pfn,
			    unsigned long cpu_flags)
{
	unsigned long stop = hmm_find_fault(hvw, start, end, cpu_flags);

	hmm_store_span(hvw->range, start, stop, pfn, cpu_flags);
	if (stop == end)
		return 0;
	return hmm_stop_for_fault(hvw, stop, end, cpu_flags,
				  hmm_page_fault_needed(hvw, stop, cpu_flags));
}

/*
 * Handle [@start, @end) where no page can ever be made valid: a fault
 * request anywhere in it fails the call, otherwise every page is an error.
 */
static int hmm_walk_unusable(struct hmm_vma_walk *hvw, unsigned long start,
			     unsigned long end)
{
	if (hmm_find_fault(hvw, start, end, 0) != end)
		return -EFAULT;
	hmm_store_span(hvw->range, start, end, 0, HMM_PFN_ERROR);
	return 0;
}

/* A hole inside a VMA: the walk is always given one, see hmm_walk_vma(). */
static int hmm_walk_hole(unsigned long start, unsigned long end,
			 __always_unused int depth, struct mm_walk *walk)
{
	return hmm_walk_uniform(walk->private, start, end, 0, 0);
}

/* What a present leaf entry grants, before its size is accounted for. */
static unsigned long hmm_leaf_cpu_flags(bool protnone, bool writable)
{
	if (protnone)
		return 0;
	return writable ? HMM_PFN_VALID | HMM_PFN_WRITE : HMM_PFN_VALID;
}

/*
 * Whether a present PTE maps something the device cannot be given: a pfn
 * without a struct page, or one the VMA's owner keeps to itself. The zero
 * page and devmap pages do have a struct page and are fine.
 */
static bool hmm_pte_is_unusable(struct vm_area_struct *vma,
				unsigned long addr, pte_t pte)
{
	/* Only special PTEs can lack a normal page where pte_special exists. */
	if (IS_ENABLED(CONFIG_ARCH_HAS_PTE_SPECIAL) && !pte_special(pte))
		return false;
	if (is_zero_pfn(pte_pfn(pte)) || pte_devmap(pte))
		return false;
	return !vm_normal_page(vma, addr, pte);
}

static bool hmm_owns_device_entry(const struct hmm_range *range,
				  swp_entry_t entry)
{
	return is_device_private_entry(entry) &&
	       page_pgmap(pfn_swap_entry_to_page(entry))->owner ==
	       range->dev_private_owner;
}

/*
 * Result for a non-present, non-none PTE, see hmm_pte_result(). Device
 * private pages of the caller are reported as they are, whatever the
 * request: faulting them would move them off the very device asking.
 */
static int hmm_swap_pte_result(const struct hmm_range *range, pte_t pte,
			       unsigned long request, unsigned long *out)
{
	swp_entry_t entry = pte_to_swp_entry(pte);
	unsigned int need;

	if (hmm_owns_device_entry(range, entry)) {
		*out = swp_offset_pfn(entry) | HMM_PFN_VALID;
		if (is_writable_device_private_entry(entry))
			*out |= HMM_PFN_WRITE;
		return 0;
	}

	need = hmm_fault_needed(request, 0);
	if (!need) {
		*out = 0;
		return 0;
	}
	/* Entries a CPU fault resolves, by waiting or by bringing data in. */
	if (!non_swap_entry(entry) || is_device_private_entry(entry) ||
	    is_device_exclusive_entry(entry) || is_migration_entry(entry))
		return need;
	return -EFAULT;
}

/*
 * Work out the output for @pte, which maps @addr and was requested with
 * @input. Return 0 with the output in *@out, the HMM_NEED_* flags of the
 * fault it needs, or -EFAULT if the request can never be met.
 */
static int hmm_pte_result(const struct hmm_vma_walk *hvw,
			  struct vm_area_struct *vma, unsigned long addr,
			  pte_t pte, unsigned long input, unsigned long *out)
{
	unsigned long request = hmm_page_request(hvw, input);
	unsigned long cpu_flags;
	unsigned int need;

	if (unlikely(!pte_present(pte))) {
		if (pte_none_mostly(pte)) {
			*out = 0;
			return hmm_fault_needed(request, 0);
		}
		return hmm_swap_pte_result(hvw->range, pte, request, out);
	}

	cpu_flags = hmm_leaf_cpu_flags(pte_protnone(pte), pte_write(pte));
	need = hmm_fault_needed(request, cpu_flags);
	if (need)
		return need;
	if (!cpu_flags) {
		*out = 0;
		return 0;
	}
	if (unlikely(hmm_pte_is_unusable(vma, addr, pte))) {
		if (request & HMM_PFN_REQ_FAULT)
			return -EFAULT;
		*out = HMM_PFN_ERROR;
		return 0;
	}
	*out = pte_pfn(pte) | cpu_flags;
	return 0;
}

/*
 * Record the run of PTEs from @addr (which needs @need) to the first one
 * that needs something else, and stop the walk there.
 */
static int hmm_stop_at_pte(struct hmm_vma_walk *hvw,
			   struct vm_area_struct *vma, unsigned long addr,
			   unsigned long end, pte_t *ptep, unsigned int need)
{
	struct hmm_range *range = hvw->range;
	unsigned long next, out;

	hvw->last = addr;
	hvw->fault_start = addr;
	hvw->fault_need = need;
	for (next = addr + PAGE_SIZE; next < end; next += PAGE_SIZE) {
		ptep++;
		if (hmm_pte_result(hvw, vma, next, ptep_get(ptep),
				   range->hmm_pfns[hmm_index(range, next)],
				   &out) != need)
			break;
	}
	hvw->fault_end = next;
	return HMM_WALK_STOPPED_FOR_FAULT;
}

/*
 * The CPU flags of @pte, requested with @input, when it maps a normal page
 * present for reading and needs no fault: the bulk of populated memory, kept
 * to a few tests. 0 for anything else, left to hmm_pte_result(). Without
 * pte_special() a present PTE alone does not tell a normal page.
 */
static __always_inline unsigned long
hmm_plain_pte_flags(const struct hmm_vma_walk *hvw, pte_t pte,
		    unsigned long input)
{
	if (!IS_ENABLED(CONFIG_ARCH_HAS_PTE_SPECIAL) || !pte_present(pte) ||
	    pte_special(pte) || pte_protnone(pte))
		return 0;
	if (pte_write(pte))
		return HMM_PFN_VALID | HMM_PFN_WRITE;
	if (hmm_fault_needed(hmm_page_request(hvw, input), HMM_PFN_VALID))
		return 0;
	return HMM_PFN_VALID;
}

/*
 * Walk the PTEs of [@start, @end) under @pmdp. Populated memory is mostly
 * PTEs that differ from each other in their pfn only: once one such PTE is
 * known plain (@like, with @like_flags), any PTE whose other bits are the
 * same has the same flags, and costs a compare and a store whatever order
 * the pages were allocated in. A read-only @like only stands for the others
 * when every page asks for the same thing, since a page of its own may ask
 * for write.
 */
static int hmm_walk_ptes(struct hmm_vma_walk *hvw, struct mm_walk *walk,
			 pmd_t *pmdp, unsigned long start, unsigned long end)
{
	struct hmm_range *range = hvw->range;
	unsigned long i = hmm_index(range, start);
	unsigned long n = hmm_index(range, end);
	unsigned long pfn, flags, like_pfn = 0, like_flags = 0;
	pte_t *first, *ptep, pte, like = __pte(0);
	unsigned long addr, out;
	int ret = 0;

	first = pte_offset_map(pmdp, start);
	if (!first) {
		/* The table went away under us: look at the PMD again. */
		walk->action = ACTION_AGAIN;
		return 0;
	}
	/* A mapped table is an RCU read-side section sparse cannot see. */
	__acquire(RCU);
	for (ptep = first; i < n; i++, ptep++) {
		pte = ptep_get(ptep);
		pfn = pte_pfn(pte);
		if (like_flags &&
		    pte_same(pte, pte_advance_pfn(like, pfn - like_pfn))) {
			range->hmm_pfns[i] = pfn | like_flags;
			continue;
		}
		flags = hmm_plain_pte_flags(hvw, pte, range->hmm_pfns[i]);
		if (flags) {
			range->hmm_pfns[i] = pfn | flags;
			if (!hvw->per_page || (flags & HMM_PFN_WRITE)) {
				like = pte;
				like_pfn = pfn;
				like_flags = flags;
			}
			continue;
		}
		addr = start + ((ptep - first) << PAGE_SHIFT);
		ret = hmm_pte_result(hvw, walk->vma, addr, pte,
				     range->hmm_pfns[i], &out);
		if (ret > 0)
			ret = hmm_stop_at_pte(hvw, walk->vma, addr, end, ptep,
					      ret);
		if (ret)
			break;
		range->hmm_pfns[i] = out;
	}
	pte_unmap(first);
	return ret;
}

#ifdef CONFIG_TRANSPARENT_HUGEPAGE
static int hmm_walk_huge_pmd(struct hmm_vma_walk *hvw, unsigned long start,
			     unsigned long end, pmd_t pmd)
{
	unsigned long cpu_flags;

	cpu_flags = hmm_leaf_cpu_flags(pmd_protnone(pmd), pmd_write(pmd));
	if (cpu_flags)
		cpu_flags |= hmm_order_flags(PMD_SHIFT - PAGE_SHIFT);
	return hmm_walk_uniform(hvw, start, end,
				pmd_pfn(pmd) + ((start & ~PMD_MASK) >> PAGE_SHIFT),
				cpu_flags);
}
#else
static int hmm_walk_huge_pmd(struct hmm_vma_walk *hvw, unsigned long start,
			     unsigned long end, pmd_t pmd)
{
	/* pmd_trans_huge() and pmd_devmap() are constant false here. */
	return hmm_walk_unusable(hvw, start, end);
}
#endif

/*
 * A device-private PMD. The caller's own device THP is reported with its
 * order and needs no fault, as its device-private ptes do; anybody else's
 * reads as absent, and a fault on it brings the data back to system memory.
 */
static int hmm_walk_device_pmd(struct hmm_vma_walk *hvw, unsigned long start,
			       unsigned long end, pmd_t pmd)
{
	swp_entry_t entry = pmd_to_swp_entry(pmd);
	unsigned long cpu_flags;

	if (!hmm_owns_device_entry(hvw->range, entry))
		return hmm_walk_uniform(hvw, start, end, 0, 0);
	cpu_flags = HMM_PFN_VALID | hmm_order_flags(PMD_SHIFT - PAGE_SHIFT);
	if (is_writable_device_private_entry(entry))
		cpu_flags |= HMM_PFN_WRITE;
	hmm_store_span(hvw->range, start, end,
		       swp_offset_pfn(entry) + ((start & ~PMD_MASK) >> PAGE_SHIFT),
		       cpu_flags);
	return 0;
}

/*
 * The PMD is read without its lock: if it changes under the walk, the
 * change goes through the caller's interval notifier, which makes the
 * caller retry.
 */
static int hmm_walk_pmd(pmd_t *pmdp, unsigned long start, unsigned long end,
			struct mm_walk *walk)
{
	struct hmm_vma_walk *hvw = walk->private;
	pmd_t pmd = pmdp_get_lockless(pmdp);

	/* A migration entry: a fault waits for the migration to end. */
	if (pmd_none(pmd) || is_pmd_migration_entry(pmd))
		return hmm_walk_uniform(hvw, start, end, 0, 0);
	if (!pmd_present(pmd)) {
		if (is_pmd_device_private_entry(pmd))
			return hmm_walk_device_pmd(hvw, start, end, pmd);
		return hmm_walk_unusable(hvw, start, end);
	}
	if (pmd_trans_huge(pmd) || pmd_devmap(pmd))
		return hmm_walk_huge_pmd(hvw, start, end, pmd);
	if (pmd_bad(pmd))
		return hmm_walk_unusable(hvw, start, end);
	return hmm_walk_ptes(hvw, walk, pmdp, start, end);
}

#if defined(CONFIG_ARCH_HAS_PTE_DEVMAP) && \
	defined(CONFIG_HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD)
/*
 * Only PUD-sized devmap leaves are reported here; anything else below a PUD
 * is left to the PMD level.
 */
static int hmm_walk_pud(pud_t *pudp, unsigned long start, unsigned long end,
			struct mm_walk *walk)
{
	struct hmm_vma_walk *hvw = walk->private;
	unsigned long cpu_flags;
	spinlock_t *ptl;	/* page-table lock of the entry read */
	pud_t pud;
	int ret;

	/* Most PUDs point to a PMD table: don't lock for them. */
	pud = pudp_get(pudp);
	if (!pud_leaf(pud) || !pud_devmap(pud))
		return 0;
	ptl = pud_trans_huge_lock(pudp, walk->vma);
	if (!ptl)
		return 0;
	/* Taken only when it returns non-NULL, which sparse cannot see. */
	__acquire(ptl);
	pud = pudp_get(pudp);
	if (!pud_leaf(pud) || !pud_devmap(pud)) {
		spin_unlock(ptl);
		return 0;
	}
	/* Do not let the generic walk split what is reported whole. */
	walk->action = ACTION_CONTINUE;
	cpu_flags = HMM_PFN_VALID | hmm_order_flags(PUD_SHIFT - PAGE_SHIFT);
	if (pud_write(pud))
		cpu_flags |= HMM_PFN_WRITE;
	ret = hmm_walk_uniform(hvw, start, end,
			       pud_pfn(pud) + ((start & ~PUD_MASK) >> PAGE_SHIFT),
			       cpu_flags);
	spin_unlock(ptl);
	return ret;
}
#else
#define hmm_walk_pud	NULL
#endif

#ifdef CONFIG_HUGETLB_PAGE
static int hmm_walk_hugetlb(pte_t *ptep, unsigned long hmask,
			    unsigned long start, unsigned long end,
			    struct mm_walk *walk)
{
	struct hmm_vma_walk *hvw = walk->private;
	struct hstate *h = hstate_vma(walk->vma);
	unsigned long cpu_flags = 0;
	spinlock_t *ptl;	/* page-table lock of the entry read */
	pte_t entry;
	int ret;

	ptl = huge_pte_lock(h, walk->mm, ptep);
	entry = huge_ptep_get(walk->mm, start, ptep);
	if (pte_present(entry))
		cpu_flags = hmm_leaf_cpu_flags(pte_protnone(entry),
					       pte_write(entry));
	if (cpu_flags)
		cpu_flags |= hmm_order_flags(huge_page_order(h));
	ret = hmm_walk_uniform(hvw, start, end,
			       pte_pfn(entry) + ((start & ~hmask) >> PAGE_SHIFT),
			       cpu_flags);
	spin_unlock(ptl);
	return ret;
}
#else
#define hmm_walk_hugetlb	NULL
#endif

/*
 * VMAs without struct pages behind them, mapping I/O, or not readable (HMM
 * assumes no architecture allows write without read) cannot be mirrored.
 */
static bool hmm_vma_is_mirrorable(struct vm_area_struct *vma)
{
	return !(vma->vm_flags & (VM_IO | VM_PFNMAP)) &&
	       (vma->vm_flags & VM_READ);
}

static const struct mm_walk_ops hmm_walk_ops = {
	.pud_entry	= hmm_walk_pud,
	.pmd_entry	= hmm_walk_pmd,
	.pte_hole	= hmm_walk_hole,
	.hugetlb_entry	= hmm_walk_hugetlb,
	.walk_lock	= PGWALK_RDLOCK,
};

/*
 * Walk [hvw->last, @end), which @vma covers. The range is walked VMA by VMA
 * rather than with walk_page_range(), which looks up the VMA after each one
 * it walks: that lookup costs as much as walking a small range.
 */
static int hmm_walk_vma(struct hmm_vma_walk *hvw, struct vm_area_struct *vma,
			unsigned long end)
{
	if (!hmm_vma_is_mirrorable(vma))
		return hmm_walk_unusable(hvw, hvw->last, end);
	return walk_page_range_vma(vma, hvw->last, end, &hmm_walk_ops, hvw);
}

/*
 * Walk from hvw->last to the end of its span or of the range, whichever
 * comes first. Return 0 when that part is done, HMM_WALK_STOPPED_FOR_FAULT
 * with the run to fault recorded, or an error.
 */
static int hmm_walk_span(struct hmm_vma_walk *hvw, struct mm_struct *mm)
{
	unsigned long end = (hvw->last | (HMM_WALK_SPAN - 1)) + 1;
	struct vm_area_struct *vma;
	unsigned long next;
	int ret;

	/* The span end wraps to 0 at the top of the address space. */
	if (!end || end > hvw->range->end)
		end = hvw->range->end;
	while (hvw->last < end) {
		vma = find_vma(mm, hvw->last);
		if (!vma || vma->vm_start >= end) {
			next = end;
			ret = hmm_walk_unusable(hvw, hvw->last, next);
		} else if (vma->vm_start > hvw->last) {
			next = vma->vm_start;
			ret = hmm_walk_unusable(hvw, hvw->last, next);
		} else {
			next = min(end, vma->vm_end);
			ret = hmm_walk_vma(hvw, vma, next);
		}
		if (ret)
			return ret;
		hvw->last = next;
	}
	return 0;
}

/*
 * After a fault at @addr in an anonymous VMA, whether a huge PMD now maps
 * it, in which case the rest of that PMD needs no fault of its own.
 */
static bool hmm_fault_mapped_huge_pmd(struct vm_area_struct *vma,
				      unsigned long addr)
{
	pmd_t *pmdp;

	/* Anonymous VMAs never have PUD leaves, which mm_find_pmd() skips. */
	if (!vma_is_anonymous(vma))
		return false;
	pmdp = mm_find_pmd(vma->vm_mm, addr);
	return pmdp && pmd_trans_huge(pmdp_get_lockless(pmdp));
}

/*
 * Where to fault next after faulting @addr in the run [@run_start,
 * @run_end): one fault fills a whole hugetlb page, and the first fault of a
 * PMD may have mapped it whole with a THP.
 */
static unsigned long hmm_next_fault_addr(struct vm_area_struct *vma,
					 unsigned long addr,
					 unsigned long run_start,
					 unsigned long run_end)
{
	unsigned long next = addr + PAGE_SIZE;

	if (is_vm_hugetlb_page(vma))
		next = (addr | ~huge_page_mask(hstate_vma(vma))) + 1;
	else if ((addr == run_start || !(addr & ~PMD_MASK)) &&
		 hmm_fault_mapped_huge_pmd(vma, addr))
		next = (addr | ~PMD_MASK) + 1;
	/* Wrapping past the top of the address space ends the run too. */
	if (next <= addr || next > run_end)
		return run_end;
	return next;
}

/*
 * Fault in the run the walk stopped at. The mmap lock is held throughout:
 * handle_mm_fault() without FAULT_FLAG_ALLOW_RETRY never drops it.
 */
static int hmm_fault_run(struct hmm_vma_walk *hvw, struct mm_struct *mm)
{
	unsigned int fault_flags = FAULT_FLAG_REMOTE;
	struct vm_area_struct *vma;
	unsigned long addr;

	vma = vma_lookup(mm, hvw->fault_start);
	if (!vma)
		return -EFAULT;
	if (hvw->fault_need & HMM_NEED_WRITE) {
		if (!(vma->vm_flags & VM_WRITE))
			return -EPERM;
		fault_flags |= FAULT_FLAG_WRITE;
	}

	for (addr = hvw->fault_start; addr < hvw->fault_end;
	     addr = hmm_next_fault_addr(vma, addr, hvw->fault_start,
					hvw->fault_end)) {
		if (fatal_signal_pending(current))
			return -EINTR;
		if (handle_mm_fault(vma, addr, fault_flags, NULL) &
		    VM_FAULT_ERROR)
			return -EFAULT;
		cond_resched();
	}
	return 0;
}

/**
 * hmm_range_fault - report, and fault in on request, the pages of a range
 * @range: the range, its pfn array and its notifier sequence
 *
 * Fill @range->hmm_pfns with one entry per page of [@range->start,
 * @range->end), as include/linux/hmm.h describes: the pfn with
 * %HMM_PFN_VALID, %HMM_PFN_WRITE and the order of the CPU mapping (for PMD
 * and PUD leaves and hugetlb pages), %HMM_PFN_ERROR for pages that can never
 * be valid, or 0. On input each entry may hold %HMM_PFN_REQ_FAULT and
 * %HMM_PFN_REQ_WRITE; the request for a page is its entry masked with
 * @range->pfn_flags_mask, ored with @range->default_flags.
 *
 * A page is faulted only when its request asks for it and the CPU mapping
 * does not already grant it; pages that request nothing are never faulted,
 * even when their neighbours are. Device-private pages whose pgmap owner is
 * @range->dev_private_owner are reported as they are and never faulted;
 * those of other owners are faulted back to system memory when requested,
 * and are 0 otherwise. The zero page is reported valid and read-only.
 *
 * Faults are taken outside of the page-table walk, with the mmap lock held
 * throughout. Between pieces of work the function reschedules, so any range
 * size may be passed.
 *
 * Differences from earlier kernels: only the pages that need a fault are
 * faulted (the rest of their PMD was faulted too before); each page of a
 * hugetlb page is asked for its own request (only the first was before);
 * entries that are not valid are exactly 0 or %HMM_PFN_ERROR; -EINTR and
 * -EINVAL for a misaligned range are new.
 *
 * Context: Process context; may sleep. The caller holds the mmap lock of
 * @range->notifier->mm (read or write) and got @range->notifier_seq from
 * mmu_interval_read_begin().
 * Return: 0 on success, with every entry of the range holding its output;
 * the caller must still check mmu_interval_read_retry() under its own lock
 * before using the result. Otherwise:
 * -EBUSY if @range->notifier was invalidated: entries below the address
 * the call had reached hold their output, the others still hold their
 * input; retry with a new sequence.
 * -EFAULT if a fault was requested where none can help: no VMA, a VM_IO,
 * VM_PFNMAP or unreadable VMA, a page without a struct page, a poisoned
 * page, or a fault that failed.
 * -EPERM if a write was requested in a VMA without write permission.
 * -EINTR if the task got a fatal signal.
 * -EINVAL if the range is empty or not page aligned.
 */
int hmm_range_fault(struct hmm_range *range)
{
	struct mm_struct *mm = range->notifier->mm;
	struct hmm_vma_walk hvw = {
		.range = range,
		.last = range->start,
	};
	int ret;

	mmap_assert_locked(mm);
	hmm_init_requests(&hvw);
	if (range->start >= range->end || !PAGE_ALIGNED(range->start) ||
	    !PAGE_ALIGNED(range->end))
		return -EINVAL;

	while (hvw.last < range->end) {
		if (mmu_interval_check_retry(range->notifier,
					     range->notifier_seq))
			return -EBUSY;
		if (fatal_signal_pending(current))
			return -EINTR;
		ret = hmm_walk_span(&hvw, mm);
		if (ret == HMM_WALK_STOPPED_FOR_FAULT)
			ret = hmm_fault_run(&hvw, mm);
		if (ret)
			return ret;
		cond_resched();
	}
	return 0;
}
EXPORT_SYMBOL(hmm_range_fault);
