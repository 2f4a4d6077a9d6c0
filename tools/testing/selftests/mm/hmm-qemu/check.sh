#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Static checks on the files the project owns: checkpatch --strict on every
# C file and header and on every patch of the series, kernel-doc -Wall on
# every owned kernel source file, and a W=1 build with sparse (C=2) of
# every owned kernel object the test kernel builds. Any report fails. Patches go through stdin: given a path inside a git
# checkout, checkpatch reads a patch file as a source file.
#
# Usage: check.sh REPO SRC OBJ

set -euo pipefail

repo=$1
src=$2
obj=$3
fail=0

# Print what a checker found, if anything, and remember that it did.
findings() {
	[ -n "$1" ] || return 0
	echo "$1"
	fail=1
}

checkpatch() {
	perl "$src/scripts/checkpatch.pl" --no-tree --strict --terse --show-types "$@" |
		grep -E ': (ERROR|WARNING|CHECK):' || true
}

cd "$repo"
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.c' '*.h')
for f in "${files[@]}"; do
	findings "$(checkpatch -f "$f")"
done
echo "checkpatch --strict: ${#files[@]} files"

mapfile -t series < <(grep -v '^#' patches/series | grep .)
for p in "${series[@]}"; do
	findings "$(checkpatch - < "patches/$p" | sed "s|^-:|patches/$p:|")"
done
echo "checkpatch --strict: ${#series[@]} patches"

# kernel-doc: every comment that claims to be kernel-doc parses, names
# every parameter and has a Return: section where the function returns.
kdoc=()
for f in "${files[@]}"; do
	case "$f" in
	mm/*.c | lib/*.c) kdoc+=("$f") ;;
	esac
done
findings "$(perl "$src/scripts/kernel-doc" -Wall -none "${kdoc[@]}" 2>&1)"
echo "kernel-doc -Wall: ${#kdoc[@]} files"

cc=gcc
command -v ccache >/dev/null && cc="ccache gcc"
for f in "${files[@]}"; do
	case "$f" in
	mm/*.c | lib/*.c) ;;
	*) continue ;;
	esac
	o=${f%.c}.o
	# Objects the test config does not build have no .cmd file to go by.
	[ -e "$obj/$(dirname "$o")/.$(basename "$o").cmd" ] || continue
	findings "$(make -C "$src" O="$obj" CC="$cc" W=1 C=2 "$o" 2>&1 |
		    grep -E "(warning|error):" || true)"
	echo "W=1 + sparse: $o"
done
exit $fail
