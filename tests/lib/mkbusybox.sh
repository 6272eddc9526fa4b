#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# mkbusybox.sh ROOTFS_DIR: a minimal root filesystem made of the static
# busybox (Debian package busybox-static) plus one symlink per applet, a
# passwd/group with root and nobody, /tmp (1777) and /root.  Tests import it
# into the engines as their base image, since no registry is reachable here.
set -euo pipefail

rootfs=${1:?usage: mkbusybox.sh ROOTFS_DIR}
bb=${BUSYBOX:-/bin/busybox}

if ! "$bb" --list >/dev/null 2>&1; then
        echo "mkbusybox: '$bb' is not a busybox binary (apt-get install busybox-static)" >&2
        exit 1
fi
# A dynamically linked busybox would not run inside the image.
if LC_ALL=C file -L "$bb" 2>/dev/null | grep -q 'dynamically linked'; then
        echo "mkbusybox: '$bb' is dynamically linked; install busybox-static" >&2
        exit 1
fi

mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,var/tmp}
install -m 0755 "$bb" "$rootfs/bin/busybox"
for applet in $("$bb" --list); do
        [ "$applet" = busybox ] && continue
        ln -sf busybox "$rootfs/bin/$applet"
done
# Scripts with "#!/usr/bin/env sh" are common.
ln -sf ../../bin/busybox "$rootfs/usr/bin/env"

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
chmod 0700 "$rootfs/root"
