#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Install, with apt-get, the Debian packages the workbench needs; packages
# already present are left alone, so a second run costs a dpkg query.

set -euo pipefail

pkgs=(linux-source-6.12 qemu-system-x86 busybox-static ccache gcc make
      libc6-dev bc bison flex libelf-dev libssl-dev cpio xz-utils patch
      python3 perl gnuplot-nox sparse)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} = 0 ]; then
	echo "all present: ${pkgs[*]}"
	exit 0
fi
echo "installing: ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: not root; run: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
