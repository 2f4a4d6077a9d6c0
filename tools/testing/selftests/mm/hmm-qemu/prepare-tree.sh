#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Lay the project over a Linux 6.12 tree:
#
#   pristine  the Debian linux-source-6.12 tree, extracted once (or the tree
#             named by LINUX_SRC, which is only ever read);
#   patched   a copy of it with patches/series applied and every file the
#             project owns copied over it.
#
# Usage: prepare-tree.sh REPO BUILD
#
# Only what changed since the last call is touched, so make rebuilds only the
# objects that depend on it: owned files are copied when their content
# differs, and the patch series is re-applied (after restoring the files the
# old series touched) only when a patch or the series file changed.

set -euo pipefail

repo=$1
build=$2
tarball=/usr/src/linux-source-6.12.tar.xz
patched=$build/src/patched
owned_dirs="mm include lib tools Documentation"

die() { echo "prepare-tree: $*" >&2; exit 1; }

mkdir -p "$build/src"

if [ -n "${LINUX_SRC:-}" ]; then
	pristine=$(cd "$LINUX_SRC" && pwd)
else
	pristine=$build/src/pristine
	if [ ! -e "$pristine/.extracted" ]; then
		[ -r "$tarball" ] || die "$tarball missing (apt-get install linux-source-6.12)"
		rm -rf "$pristine" "$pristine.tmp"
		mkdir -p "$pristine.tmp"
		tar -xJf "$tarball" -C "$pristine.tmp" --strip-components=1
		touch "$pristine.tmp/.extracted"
		mv "$pristine.tmp" "$pristine"
	fi
fi

version=$(make -s -C "$pristine" kernelversion 2>/dev/null) || die "$pristine is not a kernel tree"
case "$version" in
6.12.*) ;;
*) die "$pristine is Linux $version, the project patches 6.12" ;;
esac
echo "$pristine" > "$build/src/pristine-path"

if [ ! -e "$patched/.copied" ]; then
	rm -rf "$patched"
	cp -a "$pristine" "$patched.tmp"
	rm -f "$patched.tmp/.extracted"
	touch "$patched.tmp/.copied"
	mv "$patched.tmp" "$patched"
fi

# Put back the pristine version of FILE in the patched tree, or remove it if
# the pristine tree has none. The copy gets a fresh mtime so make notices.
restore() {
	if [ -e "$pristine/$1" ]; then
		cp "$pristine/$1" "$patched/$1"
	else
		rm -f "$patched/$1"
	fi
}

# Patch series.
series=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$repo/patches/series")
series_hash=$(cd "$repo/patches" && cat series $series | sha1sum | cut -d' ' -f1)
if [ "$(cat "$patched/.series-hash" 2>/dev/null)" != "$series_hash" ]; then
	if [ -e "$patched/.series-files" ]; then
		while read -r f; do restore "$f"; done < "$patched/.series-files"
	fi
	: > "$patched/.series-files"
	rm -f "$patched/.series-hash"
	for p in $series; do
		sed -n 's,^+++ b/\([^[:space:]]*\).*,\1,p' "$repo/patches/$p" >> "$patched/.series-files"
		patch -d "$patched" -p1 -s --forward --no-backup-if-mismatch \
			< "$repo/patches/$p" || die "patches/$p does not apply"
	done
	echo "$series_hash" > "$patched/.series-hash"
fi

# Owned files: tracked ones and new ones git does not ignore.
owned=$(mktemp)
trap 'rm -f "$owned"' EXIT
# shellcheck disable=SC2086
git -C "$repo" ls-files --cached --others --exclude-standard -- $owned_dirs | sort -u > "$owned"
while read -r f; do
	[ -f "$repo/$f" ] || continue
	if ! cmp -s "$repo/$f" "$patched/$f"; then
		mkdir -p "$(dirname "$patched/$f")"
		cp "$repo/$f" "$patched/$f"
	fi
done < "$owned"
if [ -e "$patched/.owned-files" ]; then
	comm -23 "$patched/.owned-files" "$owned" | while read -r f; do restore "$f"; done
fi
cp "$owned" "$patched/.owned-files"
