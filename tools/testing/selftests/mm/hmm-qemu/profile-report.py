#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Where make profile's kernel instructions went, per page and per symbol.

Usage: profile-report.py OUT (KERNEL OP TBFILE SYSTEM_MAP BENCH_OUTPUT)...

Each TBFILE is what the tbprof plugin wrote for one boot: the kernel
instructions executed inside hmm-bench's timed windows, per translation
block. Blocks are attributed to the kernel symbol they start in (a block
ends at every call, so it lies within one function, and inlined code
counts for its caller). Counts are divided by the pages the windows
moved: windows times the buffer size from the BENCH line. The groups are
by symbol name and only approximate who asked for the work: the page
allocator, for instance, serves test_hmm's allocations and the frees of
pages the migration released, and "copies" holds the copy to user space
of test_hmm's bounce buffer as well as its page copies.
"""
import bisect
import collections
import re
import sys

TOP = 30

GROUPS = [
    ("test_hmm", re.compile(r"^dmirror_")),
    ("copies", re.compile(r"^(copy_page|memcpy|__memcpy|copy_mc_|"
                          r"rep_movs_alternative)")),
    ("xarray", re.compile(r"^(__)?xa[s]?_")),
    ("page allocator", re.compile(
        r"^(get_page_from_freelist|__alloc_pages|__folio_alloc|alloc_pages|"
        r"__rmqueue|rmqueue|free_unref_|__free_pages|free_pcppages_bulk|"
        r"check_new_pages|prep_new_page|post_alloc_hook|zone_watermark|"
        r"__zone_watermark|expand$|__del_page_from_free_list|"
        r"__add_to_free_list|account_freepages|get_pfnblock_flags|"
        r"bad_range|free_page_is_bad|is_check_pages_enabled|"
        r"set_page_refcounted|__mod_zone_freepage_state|gfp_zone)")),
]
REST = "mm and everything else"


def symbols(path):
    syms = []
    with open(path) as f:
        for line in f:
            addr, kind, name = line.split()[:3]
            if kind in "tTwW":
                syms.append((int(addr, 16), name))
    syms.sort()
    return [a for a, _ in syms], [n for _, n in syms]


def profile(tbfile, smap):
    addrs, names = symbols(smap)
    per_sym = collections.Counter()
    windows = 0
    with open(tbfile) as f:
        for line in f:
            if line.startswith("# windows"):
                windows = int(line.split()[2])
                continue
            vaddr, _, executed = line.split()
            i = bisect.bisect_right(addrs, int(vaddr, 16)) - 1
            per_sym[names[i] if i >= 0 else "?"] += int(executed)
    return per_sym, windows


def pages_per_window(bench_out):
    """Pages per window; every window of a run must move the same amount."""
    with open(bench_out) as f:
        sizes = set(re.findall(r"^BENCH .*size_mib=(\d+)", f.read(), re.M))
    if len(sizes) != 1:
        sys.exit(f"profile-report: {bench_out} has BENCH lines for sizes "
                 f"{sorted(sizes)}; give PROFILE_ARGS exactly one -s size")
    return int(sizes.pop()) * 256


def group(name):
    for label, pattern in GROUPS:
        if pattern.search(name):
            return label
    return REST


def main():
    out, args = sys.argv[1], sys.argv[2:]
    runs = collections.defaultdict(dict)
    for i in range(0, len(args), 5):
        kernel, op, tbfile, smap, bench_out = args[i:i + 5]
        per_sym, windows = profile(tbfile, smap)
        if not windows:
            sys.exit(f"profile-report: no window in {tbfile}")
        pages = windows * pages_per_window(bench_out)
        runs[op][kernel] = {k: v / pages for k, v in per_sym.items()}

    lines = ["make profile: guest kernel instructions per page moved, inside "
             "hmm-bench's timed windows", ""]
    for op, kernels in runs.items():
        stock, test = kernels.get("stock", {}), kernels.get("test", {})
        ts, tt = sum(stock.values()), sum(test.values())
        lines.append(f"== {op}: stock {ts:.0f}, patched {tt:.0f} "
                     f"instructions/page, ratio {ts / tt:.3f}")
        lines.append(f"  {'group':34s} {'stock':>9s} {'patched':>9s}")
        for label in [g for g, _ in GROUPS] + [REST]:
            gs = sum(v for k, v in stock.items() if group(k) == label)
            gt = sum(v for k, v in test.items() if group(k) == label)
            lines.append(f"  {label:34s} {gs:9.1f} {gt:9.1f}")
        lines.append("")
        lines.append(f"  {'symbol':40s} {'stock':>9s} {'patched':>9s}  group")
        names = set(stock) | set(test)
        for name in sorted(names, key=lambda n: -max(stock.get(n, 0),
                                                     test.get(n, 0)))[:TOP]:
            lines.append(f"  {name:40.40s} {stock.get(name, 0):9.1f} "
                         f"{test.get(name, 0):9.1f}  {group(name)}")
        lines.append("")
    with open(out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines[:2] + [ln for ln in lines if ln.startswith("==")]))
    print(f"table: {out}")


if __name__ == "__main__":
    main()
