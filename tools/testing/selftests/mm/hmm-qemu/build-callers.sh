#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Compile the objects of in-tree drivers that call the rewritten APIs, to
# prove they build unchanged against the patched tree.
#
# Usage: build-callers.sh SRC OBJ FRAGMENT...

set -euo pipefail

src=$1
obj=$2
shift 2
hq=$(cd "$(dirname "$0")" && pwd)

# amdkfd is built as part of amdgpu, whose Makefile gives it the include
# paths it needs: name its objects the way that Makefile does.
objects=(
	lib/test_hmm.o
	drivers/gpu/drm/nouveau/nouveau_dmem.o
	drivers/gpu/drm/nouveau/nouveau_svm.o
	drivers/gpu/drm/amd/amdgpu/../amdkfd/kfd_migrate.o
	drivers/gpu/drm/amd/amdgpu/../amdkfd/kfd_svm.o
	drivers/gpu/drm/amd/amdgpu/amdgpu_hmm.o
	drivers/infiniband/core/umem_odp.o
)

# Configure like the test kernel, plus the drivers; build nothing but
# the headers the objects need.
cc=gcc
command -v ccache >/dev/null && cc="ccache gcc"
frags=("$@" "$hq/config.callers")
"$hq/build-kernel.sh" --config-only "$src" "$obj" "${frags[@]}"
make -C "$src" O="$obj" CC="$cc" HOSTCC="$cc" -j"$(nproc)" prepare
for o in "${objects[@]}"; do
	rm -f "$obj/$o"
	make -C "$src" O="$obj" CC="$cc" HOSTCC="$cc" "$o"
	[ -s "$obj/$o" ] || { echo "build-callers: $o was not built" >&2; exit 1; }
	echo "built $o"
done
