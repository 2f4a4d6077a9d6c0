#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Configure and build an x86_64 test kernel out of tree.
#
# Usage: build-kernel.sh [--config-only] SRC OBJ FRAGMENT...
#
# The configuration is tinyconfig plus the fragments, redone only when a
# fragment changes. Every CONFIG_ line of the fragments must hold in the final
# .config: an option dropped by an unmet dependency fails here, not later as
# a puzzling test result.

set -euo pipefail

config_only=
if [ "$1" = --config-only ]; then
	config_only=1
	shift
fi
src=$1
obj=$2
shift 2

die() { echo "build-kernel: $*" >&2; exit 1; }

mkdir -p "$obj"
cc=gcc
command -v ccache >/dev/null && cc="ccache gcc"
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$(dirname "$obj")")}
export CCACHE_NOHASHDIR=1
kmake() { make -C "$src" O="$obj" CC="$cc" HOSTCC="$cc" "$@"; }

frag_hash=$(cat "$@" | sha1sum | cut -d' ' -f1)
if [ ! -e "$obj/.config" ] || [ "$(cat "$obj/.fragment-hash" 2>/dev/null)" != "$frag_hash" ]; then
	rm -f "$obj/.fragment-hash"
	kmake -s tinyconfig
	"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$@" > /dev/null
	kmake -s olddefconfig
	bad=0
	for frag in "$@"; do
		while read -r line; do
			case "$line" in
			CONFIG_*=*)
				grep -qx -- "$line" "$obj/.config" || {
					echo "build-kernel: $frag wants $line, .config has: $(grep "^${line%%=*}=" "$obj/.config" || echo "not set")" >&2
					bad=1
				} ;;
			"# CONFIG_"*" is not set")
				opt=${line#\# }
				opt=${opt%% *}
				! grep -q "^$opt=" "$obj/.config" || {
					echo "build-kernel: $frag wants $opt off, .config has it on" >&2
					bad=1
				} ;;
			esac
		done < "$frag"
	done
	[ $bad = 0 ] || die "config fragment not satisfied"
	echo "$frag_hash" > "$obj/.fragment-hash"
fi

[ -n "$config_only" ] || kmake -j"$(nproc)" bzImage
