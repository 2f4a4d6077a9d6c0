#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The project's workbench, behind the top-level Makefile.
#
# Usage: harness.sh test|debug-test|run|bench|profile|callers|check
#
# bench takes BENCH_ROUNDS (stock/patched boot pairs, default 2) and
# BENCH_ARGS (hmm-bench options; separate list items with ':', as commas
# stand for spaces on the kernel command line). By default hmm-bench runs
# its full matrix, 2 to 256 MiB: about 2.5 minutes per boot here, so about
# 10 minutes for two rounds once both kernels are built. BENCH_ARGS="-s 64"
# measures one size in a fraction of that.
#
# profile boots the stock and the patched kernel once per op of PROFILE_OPS
# (default "to-dev to-sys") with hmm-bench's PROFILE_ARGS (default "-s 64
# -b 4k -m private") and QEMU's tbprof plugin, which counts the kernel
# instructions executed inside hmm-bench's timed windows; the table of
# where they went, per page and per kernel symbol, is build/profile/profile.txt.
# Every window counts as one buffer of the -s size, so PROFILE_ARGS names
# one size, one backing (-b) and one memory type (-m).
#
# Each stage prints one line with its duration; its full output goes to
# build/logs/STAGE.log, and the tail of that log is shown when it fails.

set -euo pipefail

hq=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$hq/../../../../.." && pwd)
build=${BUILD:-$repo/build}
logs=$build/logs
src=$build/src/patched
# Fragments of the patched kernels; the stock kernel gets only config.
ours=("$hq/config" "$hq/config.kunit")

mkdir -p "$logs"

stage() {
	local name=$1 t0=$SECONDS rc=0
	shift
	printf '%-34s' "$name"
	"$@" > "$logs/$name.log" 2>&1 || rc=$?
	if [ $rc = 0 ]; then
		echo "ok ($((SECONDS - t0))s)"
	else
		echo "FAILED ($((SECONDS - t0))s), full log: $logs/$name.log"
		tail -n 40 "$logs/$name.log" | sed 's/^/  | /'
		exit $rc
	fi
}

pristine() { cat "$build/src/pristine-path"; }

# --- stages -----------------------------------------------------------------

deps() { "$hq/install-deps.sh"; }

tree() { "$hq/prepare-tree.sh" "$repo" "$build"; }

kernel() {	# kernel NAME SRC FRAGMENT...
	local name=$1 ksrc=$2
	shift 2
	"$hq/build-kernel.sh" "$ksrc" "$build/kernel-$name" "$@"
}

# Static test programs: the tree's hmm-tests.c exactly as Debian ships it,
# and the project's own programs from tools/testing/selftests/mm/hmm-*.c.
selftests() {
	local out=$build/selftests f name
	local cflags=(-static -O2 -g -Wall -pthread -I"$src" -I"$src/tools/testing/selftests")

	cmp "$src/tools/testing/selftests/mm/hmm-tests.c" \
		"$(pristine)/tools/testing/selftests/mm/hmm-tests.c"
	mkdir -p "$out/tests" "$out/bin"
	gcc "${cflags[@]}" -o "$out/tests/hmm-tests" \
		"$src/tools/testing/selftests/mm/hmm-tests.c" -lrt -lm
	for f in "$repo"/tools/testing/selftests/mm/hmm-*.c; do
		[ -e "$f" ] || continue
		name=$(basename "$f" .c)
		case "$name" in
		*-tests) gcc "${cflags[@]}" -Werror -o "$out/tests/$name" "$f" -lrt -lm ;;
		*) gcc "${cflags[@]}" -Werror -o "$out/bin/$name" "$f" -lrt -lm ;;
		esac
	done
}

initramfs() {
	local out=$build/selftests list f
	list=$build/initramfs.list
	gcc -O2 -o "$build/gen_init_cpio" "$src/usr/gen_init_cpio.c"
	{
		echo "dir /dev 0755 0 0"
		echo "nod /dev/console 0600 0 0 c 5 1"
		for d in bin tests proc sys tmp; do echo "dir /$d 0755 0 0"; done
		echo "file /init $hq/init 0755 0 0"
		echo "file /bin/busybox $(command -v busybox) 0755 0 0"
		for f in "$out"/tests/* "$out"/bin/*; do
			[ -e "$f" ] || continue
			echo "file /${f#"$out"/} $f 0755 0 0"
		done
	} > "$list"
	"$build/gen_init_cpio" "$list" | gzip -1 > "$build/initramfs.cpio.gz"
}

boot() {	# boot KERNEL MODE THP [bench args]
	"$hq/boot.sh" "$build/kernel-$1/arch/x86/boot/bzImage" \
		"$build/initramfs.cpio.gz" "$logs/$1-$2-$3" "$2" "$3" "${4:-}"
}

report() {	# report KERNEL...
	local dirs=() k thp
	for k in "$@"; do
		for thp in madvise always; do dirs+=("$logs/$k-test-$thp"); done
	done
	python3 "$hq/report.py" --kunit "$src/tools/testing/kunit/kunit.py" \
		"${dirs[@]}"
}

# Fail on a kernel splat in a boot's console log (report.py's patterns).
splats() {	# splats LOGDIR
	python3 "$hq/report.py" --splats-only "$1"
}

prepare() {
	stage deps deps
	stage tree tree
	stage selftests selftests
	stage initramfs initramfs
}

# --- commands ---------------------------------------------------------------

run_tests() {	# run_tests KERNEL FRAGMENT...
	local k=$1
	shift
	prepare
	stage "kernel-$k" kernel "$k" "$src" "$@"
	stage "boot-$k-thp-madvise" boot "$k" test madvise
	stage "boot-$k-thp-always" boot "$k" test always
	report "$k"
}

case "${1:-}" in
test)
	run_tests test "${ours[@]}"
	;;
debug-test)
	run_tests debug "${ours[@]}" "$hq/config.debug"
	;;
run)
	prepare
	stage kernel-test kernel test "$src" "${ours[@]}"
	stage boot-demo boot test run madvise
	sed -n '/^### end/q;/^###/!p' "$logs/test-run-madvise/output.log"
	splats "$logs/test-run-madvise"
	grep -qx '### end hmm-demo rc=0' "$logs/test-run-madvise/output.log" || {
		echo "hmm-demo failed" >&2
		exit 1
	}
	;;
bench)
	prepare
	stage kernel-test kernel test "$src" "${ours[@]}"
	stage kernel-stock kernel stock "$(pristine)" "$hq/config"
	rounds=${BENCH_ROUNDS:-2}
	rm -f "$logs"/bench-*.out
	for r in $(seq "$rounds"); do
		for k in stock test; do
			stage "bench-$k-round$r" boot "$k" bench madvise "${BENCH_ARGS:-}"
			splats "$logs/$k-bench-madvise"
			cp "$logs/$k-bench-madvise/output.log" "$logs/bench-$k-$r.out"
		done
	done
	python3 "$hq/bench-report.py" --out "$build/bench" \
		--stock "$logs"/bench-stock-*.out --patched "$logs"/bench-test-*.out
	;;
profile)
	prepare
	stage kernel-test kernel test "$src" "${ours[@]}"
	stage kernel-stock kernel stock "$(pristine)" "$hq/config"
	stage plugin gcc -O2 -Wall -Werror -shared -fPIC -o "$build/tbprof.so" "$hq/tbprof.c"
	bin=$build/selftests/bin/hmm-bench
	on=$(nm "$bin" | awk '$3 == "hmm_bench_window_open" { print $1 }')
	off=$(nm "$bin" | awk '$3 == "hmm_bench_window_close" { print $1 }')
	mkdir -p "$build/profile"
	runs=()
	for op in ${PROFILE_OPS:-to-dev to-sys}; do
		for k in stock test; do
			out=$build/profile/$k-$op
			HMMQ_QEMU_ARGS="-plugin $build/tbprof.so,out=$out.tb,on=$on,off=$off" \
				stage "profile-$k-$op" boot "$k" bench madvise \
				"${PROFILE_ARGS:--s 64 -b 4k -m private} -o $op"
			splats "$logs/$k-bench-madvise"
			cp "$logs/$k-bench-madvise/output.log" "$out.out"
			# The kernel may be rebuilt later; keep the map of this one.
			cp "$build/kernel-$k/System.map" "$out.map"
			runs+=("$k" "$op" "$out.tb" "$out.map" "$out.out")
		done
	done
	python3 "$hq/profile-report.py" "$build/profile/profile.txt" "${runs[@]}"
	;;
check)
	stage deps deps
	stage tree tree
	stage kernel-test kernel test "$src" "${ours[@]}"
	stage check "$hq/check.sh" "$repo" "$src" "$build/kernel-test"
	grep -v '^  ' "$logs/check.log"
	;;
callers)
	stage deps deps
	stage tree tree
	stage callers "$hq/build-callers.sh" "$src" "$build/kernel-callers" "${ours[@]}"
	grep "^built" "$logs/callers.log"
	;;
*)
	echo "usage: $0 test|debug-test|run|bench|profile|callers|check" >&2
	exit 2
	;;
esac
