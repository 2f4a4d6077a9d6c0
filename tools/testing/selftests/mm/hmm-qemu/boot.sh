#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot a test kernel under qemu-system-x86_64 (TCG, no KVM) and wait for its
# /init to reboot (QEMU runs with -no-reboot, so that ends it).
#
# Usage: boot.sh BZIMAGE INITRAMFS OUTDIR MODE THP [bench args]
#
# OUTDIR gets console.log (ttyS0: kernel messages, KUnit KTAP) and output.log
# (ttyS1: what the programs printed). MODE is test, run or bench; THP is the
# transparent_hugepage= boot value. A bench boot runs one vCPU under
# -icount shift=0, so guest time counts instructions and repeats run to run.
#
# The guest has 3 GiB, all below 3 GiB on -M pc; memmap= takes 768 MiB of it
# at 2 GiB away from the page allocator for device-coherent memory: 256 MiB
# each for test_hmm's two SPM devices and 256 MiB for the migrate_device
# KUnit suite's two coherent pgmaps.

set -euo pipefail

kernel=$1
initrd=$2
out=$3
mode=$4
thp=$5
bench=${6:-}

mkdir -p "$out"
rm -f "$out/console.log" "$out/output.log"

# An oops ends the boot (panic, then -no-reboot stops QEMU) instead of
# leaving a test blocked until the timeout; the report counts the tests
# that did not report as failed.
append="console=ttyS0 oops=panic panic=-1 transparent_hugepage=$thp hugepages=16"
append+=' memmap=768M$0x80000000'
append+=" test_hmm.spm_addr_dev0=0x80000000 test_hmm.spm_addr_dev1=0x90000000"
append+=" migrate_device_kunit.coherent_addr=0xa0000000"
append+=" hmmq.mode=$mode"
# The project's KUnit suites run at boot in the patched kernels. Only test
# mode wants them: in a bench boot they would also leave the stock and the
# patched guest with differently used memory before the first measurement.
[ "$mode" = test ] || append+=" kunit.enable=0"

accel=(-accel tcg -smp 2)
if [ "$mode" = bench ]; then
	accel=(-accel tcg -smp 1 -icount shift=0)
	# One kernel parameter: /init turns the commas back into spaces.
	append+=" hmmq.bench=${bench// /,}"
fi

# HMMQ_QEMU_ARGS: more QEMU options, split at spaces (make profile's plugin).
# shellcheck disable=SC2206
extra=(${HMMQ_QEMU_ARGS:-})

rc=0
timeout "${HMMQ_TIMEOUT:-1800}" qemu-system-x86_64 -M pc "${accel[@]}" "${extra[@]}" -m 3G \
	-nodefaults -display none -vga none -no-reboot \
	-kernel "$kernel" -initrd "$initrd" -append "$append" \
	-serial "file:$out/console.log" -serial "file:$out/output.log" || rc=$?

tr -d '\r' < "$out/output.log" > "$out/output.tmp" && mv "$out/output.tmp" "$out/output.log"
if ! grep -qx '### done' "$out/output.log"; then
	if [ $rc = 124 ]; then
		echo "boot: the guest did not finish within ${HMMQ_TIMEOUT:-1800}s" >&2
	else
		echo "boot: the guest stopped before its tests finished (qemu rc=$rc)" >&2
	fi
	tail -n 20 "$out/console.log" >&2
	exit 1
fi
