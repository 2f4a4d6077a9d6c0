#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Compare hmm-bench results of a stock and a patched kernel.

Usage: bench-report.py --out DIR --stock FILE... --patched FILE...

Each FILE is the output.log of one bench boot: hmm-bench's BENCH lines,
its '#' comments, and the "### end hmm-bench rc=N" line /init adds. Several
files per side are rounds; a row shows the median over rounds, and the
spread (max/min - 1) over rounds so that the noise is visible next to the
ratio it qualifies.

Writes DIR/bench.txt (the table, also printed) and DIR/bench.png (patched/
stock ratio per row, with the range the rounds allow). Exits non-zero when a
file has no BENCH line, when hmm-bench failed or did not finish in one, or
when a row was measured on one side only.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys

BENCH_RE = re.compile(r'^BENCH((?:\s+\w[\w-]*=\S+)+)\s*$')
END_RE = re.compile(r'^### end hmm-bench rc=(\d+)$')
OP_ORDER = ['to-dev', 'to-sys', 'cpu-fault', 'fault-read', 'snapshot', 'memcpy']
MEM_ORDER = ['private', 'coherent', 'sys']
BACKING_ORDER = ['4k', 'thp']


class ReportError(Exception):
    pass


def parse_file(path):
    """Return {(op, mem, backing, size_mib): (mbps, thp_pct, seq_pct)}."""
    results = {}
    rc = None
    failures = []
    with open(path, errors='replace') as f:
        for line in f:
            line = line.rstrip('\n')
            m = END_RE.match(line)
            if m:
                rc = int(m.group(1))
                continue
            if 'FAIL' in line and not line.startswith('#'):
                failures.append(line)
                continue
            m = BENCH_RE.match(line)
            if not m:
                continue
            fields = dict(kv.split('=', 1) for kv in m.group(1).split())
            try:
                key = (fields['op'], fields['mem'], fields['backing'],
                       int(fields['size_mib']))
                results[key] = (float(fields['mbps']), int(fields['thp_pct']),
                                int(fields['seq_pct']))
            except (KeyError, ValueError) as e:
                raise ReportError(f'{path}: malformed BENCH line ({e}): {line}')
    if failures:
        raise ReportError(f'{path}: hmm-bench reported an error:\n  ' +
                          '\n  '.join(failures))
    if rc is None:
        raise ReportError(f'{path}: no "### end hmm-bench rc=" line, '
                          'the benchmark did not finish')
    if rc != 0:
        raise ReportError(f'{path}: hmm-bench exited with rc={rc}')
    if not results:
        raise ReportError(f'{path}: no BENCH lines')
    return results


def collect(paths):
    """Merge rounds: {key: ([mbps per round], min thp_pct, min seq_pct)}."""
    merged = {}
    for path in paths:
        for key, (mbps, thp, seq) in parse_file(path).items():
            values, low_thp, low_seq = merged.get(key, ([], 100, 100))
            values.append(mbps)
            merged[key] = (values, min(low_thp, thp), min(low_seq, seq))
    return merged


def spread_pct(values):
    if len(values) < 2 or min(values) <= 0:
        return None
    return (max(values) / min(values) - 1) * 100


def sort_key(key):
    op, mem, backing, size = key

    def rank(order, v):
        return order.index(v) if v in order else len(order)
    return (rank(MEM_ORDER, mem), rank(OP_ORDER, op), op,
            rank(BACKING_ORDER, backing), size)


def fmt(v, spec, width):
    return format(v, spec).rjust(width) if v is not None else '-'.rjust(width)


def build_rows(stock, patched):
    memcpy = {}
    for (op, mem, backing, size), (values, _, _) in patched.items():
        if op == 'memcpy':
            memcpy[(backing, size)] = statistics.median(values)
    rows = []
    for key in sorted(set(stock) | set(patched), key=sort_key):
        s_vals, s_thp, s_seq = stock.get(key, ([], 100, None))
        p_vals, p_thp, p_seq = patched.get(key, ([], 100, None))
        s_med = statistics.median(s_vals) if s_vals else None
        p_med = statistics.median(p_vals) if p_vals else None
        base = memcpy.get((key[2], key[3]))
        rows.append({
            'key': key,
            'stock': s_med,
            'patched': p_med,
            'ratio': p_med / s_med if s_med and p_med is not None else None,
            'ratio_lo': min(p_vals) / max(s_vals) if s_vals and p_vals else None,
            'ratio_hi': max(p_vals) / min(s_vals) if s_vals and p_vals else None,
            'vs_memcpy': p_med / base if base and p_med is not None else None,
            's_spread': spread_pct(s_vals),
            'p_spread': spread_pct(p_vals),
            'thp': min(s_thp, p_thp),
            's_seq': s_seq,
            'p_seq': p_seq,
            'rounds': (len(s_vals), len(p_vals)),
        })
    return rows


def table(rows, n_stock, n_patched):
    head = (f'{"op":<11}{"mem":<9}{"backing":<8}{"MiB":>5}'
            f'{"stock MB/s":>12}{"patched MB/s":>14}{"ratio":>7}'
            f'{"vs memcpy":>10}{"spread s%":>10}{"spread p%":>10}{"thp%":>6}'
            f'{"seq s%":>8}{"seq p%":>8}')
    lines = [
        'hmm-bench: stock vs patched kernel, MB/s (1 MB = 1e6 bytes) under '
        'TCG -icount shift=0, one vCPU',
        f'medians over {n_stock} stock and {n_patched} patched rounds; '
        'ratio = patched/stock; vs memcpy = patched / memcpy of the same '
        'backing and size;',
        'spread = max/min - 1 over rounds (each round already the median '
        'of hmm-bench -r reps); thp% = least THP share seen;',
        'seq s%, seq p% = least share of pages physically next to the page '
        'before them, stock and patched',
        '',
        head,
        '-' * len(head),
    ]
    for r in rows:
        op, mem, backing, size = r['key']
        lines.append(f'{op:<11}{mem:<9}{backing:<8}{size:>5}'
                     f'{fmt(r["stock"], ".1f", 12)}{fmt(r["patched"], ".1f", 14)}'
                     f'{fmt(r["ratio"], ".3f", 7)}{fmt(r["vs_memcpy"], ".3f", 10)}'
                     f'{fmt(r["s_spread"], ".1f", 10)}{fmt(r["p_spread"], ".1f", 10)}'
                     f'{r["thp"]:>6}{fmt(r["s_seq"], "d", 8)}'
                     f'{fmt(r["p_seq"], "d", 8)}')
    ratios = [r['ratio'] for r in rows if r['ratio']]
    spreads = [s for r in rows for s in (r['s_spread'], r['p_spread'])
               if s is not None]
    lines.append('')
    if ratios:
        geo = statistics.geometric_mean(ratios)
        lines.append(f'ratio: geometric mean {geo:.3f}, '
                     f'min {min(ratios):.3f}, max {max(ratios):.3f} '
                     f'over {len(ratios)} rows')
    if spreads:
        lines.append(f'spread between rounds: median {statistics.median(spreads):.1f}%, '
                     f'max {max(spreads):.1f}%')
    return '\n'.join(lines) + '\n'


def gnuplot_terminal():
    """pngcairo when this gnuplot has it, the libgd png terminal otherwise."""
    for term in ('pngcairo size 1600,700 font ",9"', 'png size 1600,700'):
        try:
            p = subprocess.run(['gnuplot', '-e', f'set terminal {term}'],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if p.returncode == 0 and not p.stderr.strip():
            return term
    return None


def plot(rows, out):
    if not shutil.which('gnuplot'):
        raise ReportError('gnuplot not found (install gnuplot-nox)')
    term = gnuplot_terminal()
    if not term:
        raise ReportError('gnuplot has neither the pngcairo nor the png terminal')
    data = os.path.join(out, 'bench.dat')
    script = os.path.join(out, 'bench.gp')
    png = os.path.join(out, 'bench.png')
    with open(data, 'w') as f:
        f.write('# index ratio ratio_lo ratio_hi label\n')
        for i, r in enumerate(rows):
            if r['ratio'] is None:
                continue
            op, mem, backing, size = r['key']
            f.write(f'{i} {r["ratio"]:.4f} {r["ratio_lo"]:.4f} '
                    f'{r["ratio_hi"]:.4f} "{op} {mem} {backing} {size}M"\n')
    with open(script, 'w') as f:
        f.write(f'''set terminal {term}
set output "{png}"
set title "hmm-bench: patched / stock throughput per row (bar: range over rounds)"
set ylabel "patched MB/s / stock MB/s"
set grid ytics
set xtics rotate by 90 right
set bmargin 15
set xrange [-1:{len(rows)}]
set key top left
plot 1 with lines lc rgb "gray" dt 2 title "1.0 = no change", \\
     "{data}" using 1:2:3:4:xtic(5) with yerrorbars pt 7 ps 0.8 lc rgb "#1f77b4" title "ratio (median over rounds)"
''')
    p = subprocess.run(['gnuplot', script], capture_output=True, text=True)
    if p.returncode != 0 or not os.path.exists(png):
        raise ReportError(f'gnuplot failed:\n{p.stderr}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--stock', nargs='+', required=True)
    ap.add_argument('--patched', nargs='+', required=True)
    args = ap.parse_args()

    try:
        stock = collect(args.stock)
        patched = collect(args.patched)
        rows = build_rows(stock, patched)
        os.makedirs(args.out, exist_ok=True)
        text = table(rows, len(args.stock), len(args.patched))
        with open(os.path.join(args.out, 'bench.txt'), 'w') as f:
            f.write(text)
        sys.stdout.write(text)
        plot(rows, args.out)
        one_sided = [r['key'] for r in rows
                     if r['stock'] is None or r['patched'] is None]
        if one_sided:
            raise ReportError('measured on one side only: ' +
                              ', '.join(' '.join(map(str, k)) for k in one_sided))
        uneven = [r['key'] for r in rows
                  if r['rounds'] != (len(args.stock), len(args.patched))]
        if uneven:
            raise ReportError('missing from some rounds: ' +
                              ', '.join(' '.join(map(str, k)) for k in uneven))
    except (ReportError, OSError) as e:
        print(f'bench-report: {e}', file=sys.stderr)
        return 1
    print(f'wrote {os.path.join(args.out, "bench.txt")} and '
          f'{os.path.join(args.out, "bench.png")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
