#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# One-command set-up on a fresh Debian 12 machine (as root): install what is
# missing, build hm, make a busybox image from the host's busybox-static,
# import it into hm's image store and run the demo pipeline on the default,
# daemonless runner.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

"$top/contrib/install-deps.sh"
make -j"$(nproc)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tests/lib/mkbusybox.sh "$work/rootfs"
tar --numeric-owner -C "$work/rootfs" -cf "$work/busybox.tar" .
build/hm image import "$work/busybox.tar" busybox:demo

echo "+ build/hm run -d examples/demo"
build/hm run -d examples/demo
