#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the logs of test boots into one verdict.

Each boot directory (written by boot.sh) holds console.log, the kernel
console with KUnit's KTAP, and output.log, what the test programs printed
between "### begin NAME" and "### end NAME rc=N" lines. This script counts
KUnit cases (parsed by the tree's kunit.py), kselftest TAP results and kernel
splats, and ends with the plain line "N passed, N failed[, N skipped]". It exits non-zero on any failure.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

TAP_RESULT = re.compile(r'^(ok|not ok) (\d+) (.*?)(?:\s+#\s*(SKIP|TODO)\b\s*(.*))?$')
TAP_PLAN = re.compile(r'^1\.\.(\d+)$')
PROGRAM_BEGIN = re.compile(r'^### begin (\S+)$')
PROGRAM_END = re.compile(r'^### end (\S+) rc=(\d+)$')
THP_MODE = re.compile(r'thp=.*\[(\w+)\]')

# Console lines that mean the kernel is unhappy, whatever the tests said.
SPLATS = re.compile('|'.join([
    r'\bBUG:', r'kernel BUG at', r'WARNING:', r'\bOops\b', r'KASAN:',
    r'UBSAN:', r'general protection fault', r'Kernel panic',
    r'Bad page (state|map)', r'page dumped because', r'detected stalls?\b',
    r'soft lockup', r'hard LOCKUP', r'blocked for more than',
    r'list_(add|del) corruption', r'Unable to handle kernel',
    r'INFO: possible', r'DEADLOCK',
]))


class Tally:
    """Results of all boots, by outcome."""

    def __init__(self):
        self.passed = []
        self.failed = []
        self.skipped = []

    def add(self, outcome, name, why=''):
        getattr(self, outcome).append((name, why))


def thp_mode(output_lines):
    for line in output_lines:
        m = THP_MODE.search(line)
        if line.startswith('### kernel') and m:
            return m.group(1)
    return 'unknown'


def program_sections(lines):
    """Yield (program, rc, lines) for each program run in a boot."""
    name, body = None, []
    for line in lines:
        m = PROGRAM_BEGIN.match(line)
        if m:
            name, body = m.group(1), []
            continue
        m = PROGRAM_END.match(line)
        if m and name == m.group(1):
            yield name, int(m.group(2)), body
            name = None
            continue
        if name:
            body.append(line)
    if name:
        yield name, None, body


def tap_results(boot, program, rc, body, tally):
    plan, seen, failed = None, 0, 0
    for line in body:
        m = TAP_PLAN.match(line)
        if m:
            plan = int(m.group(1))
            continue
        m = TAP_RESULT.match(line)
        if not m:
            continue
        seen += 1
        ok, name, directive, reason = m.group(1) == 'ok', m.group(3), m.group(4), m.group(5)
        full = f'{boot}: {program}: {name}'
        if directive == 'SKIP':
            tally.add('skipped', full, reason)
        elif ok:
            tally.add('passed', full)
        else:
            failed += 1
            tally.add('failed', full)
    if plan is None and seen == 0:
        tally.add('failed', f'{boot}: {program}', f'printed no TAP (rc={rc})')
    elif plan is not None and seen < plan:
        tally.add('failed', f'{boot}: {program}', f'{plan - seen} of {plan} planned tests did not report')
    elif rc is None:
        tally.add('failed', f'{boot}: {program}', 'did not finish')
    elif rc != 0 and failed == 0:
        tally.add('failed', f'{boot}: {program}', f'exited with status {rc}')


def kunit_results(boot, console, kunit_py, tally):
    with open(console, errors='replace') as f:
        text = f.read()
    if 'KTAP version' not in text and 'TAP version' not in text:
        return 0
    with tempfile.NamedTemporaryFile(suffix='.json') as tmp:
        proc = subprocess.run([sys.executable, kunit_py, 'parse', '--json=' + tmp.name, console],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            with open(tmp.name) as f:
                result = json.load(f)
        except (OSError, ValueError):
            tally.add('failed', f'{boot}: kunit', 'kunit.py parse failed:\n' + proc.stdout[-2000:])
            return 1
    count = 0

    def walk(group, prefix):
        nonlocal count
        for case in group.get('test_cases', []):
            count += 1
            full = f'{boot}: kunit: {prefix}{case["name"]}'
            status = case.get('status')
            if status == 'PASS':
                tally.add('passed', full)
            elif status == 'SKIP':
                tally.add('skipped', full)
            else:
                tally.add('failed', full, status or 'no status')
        for sub in group.get('sub_groups', []):
            walk(sub, f'{prefix}{sub["name"]}.' if sub.get('name') else prefix)

    for suite in result.get('sub_groups', []):
        walk(suite, f'{suite["name"]}.')
    # "1..0" right after the KTAP header: KUnit is built in, no suite is.
    if count == 0 and not re.search(r'KTAP version 1\n(?:\[[^]]*\] )?1\.\.0\n', text):
        tally.add('failed', f'{boot}: kunit', 'KTAP seen but no case parsed')
    return count


def splats(boot, console, tally):
    found = 0
    with open(console, errors='replace') as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if SPLATS.search(line):
            found += 1
            context = '\n'.join(lines[i:i + 6])
            tally.add('failed', f'{boot}: kernel splat', context)
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--kunit', help="the tree's tools/testing/kunit/kunit.py")
    ap.add_argument('--splats-only', action='store_true',
                    help='only check the consoles for splats')
    ap.add_argument('boots', nargs='+', help='boot directories')
    args = ap.parse_args()

    tally = Tally()
    for d in args.boots:
        boot = os.path.basename(d.rstrip('/'))
        console = os.path.join(d, 'console.log')
        nsplats = splats(boot, console, tally)
        if args.splats_only:
            continue
        with open(os.path.join(d, 'output.log'), errors='replace') as f:
            lines = f.read().splitlines()
        mode = thp_mode(lines)
        before = len(tally.passed) + len(tally.failed)
        ncases = kunit_results(boot, console, args.kunit, tally)
        for program, rc, body in program_sections(lines):
            tap_results(boot, program, rc, body, tally)
        total = len(tally.passed) + len(tally.failed) - before
        print(f'{boot}: THP={mode}, {ncases} KUnit cases, '
              f'{total - ncases} selftests, {nsplats} splats')

    for name, why in tally.skipped:
        print(f'SKIP    {name}' + (f' ({why})' if why else ''))
    for name, why in tally.failed:
        print(f'FAIL    {name}')
        for line in why.splitlines():
            print(f'        {line}')
    if args.splats_only:
        print('no kernel splat' if not tally.failed else 'kernel splat seen')
        return 1 if tally.failed else 0
    line = f'{len(tally.passed)} passed, {len(tally.failed)} failed'
    if tally.skipped:
        line += f', {len(tally.skipped)} skipped'
    print(line)
    return 1 if tally.failed else 0


if __name__ == '__main__':
    sys.exit(main())
