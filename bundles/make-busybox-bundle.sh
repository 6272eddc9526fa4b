#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make-busybox-bundle.sh DIR [ARGS...]: an OCI bundle (DIR/rootfs + DIR/config.json)
# from the host's static busybox.  ARGS become process.args (default: sh -c 'echo
# hello from busybox; id; hostname').  HM=path/to/hm selects the hm binary.
set -eu

usage() { echo "usage: $0 DIR [ARGS...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
dir=$1; shift
hm=${HM:-hm}
busybox=${BUSYBOX:-/bin/busybox}

[ -x "$busybox" ] || { echo "$0: '$busybox' not found (apt-get install busybox-static)" >&2; exit 1; }
if file -L "$busybox" 2>/dev/null | grep -q 'dynamically linked'; then
        echo "$0: '$busybox' is dynamically linked; install busybox-static" >&2
        exit 1
fi
command -v "$hm" >/dev/null 2>&1 || [ -x "$hm" ] || { echo "$0: hm not found (set HM=)" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "$0: python3 is needed to edit config.json" >&2; exit 1; }

rootfs=$dir/rootfs
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root" \
         "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
printf 'hm-bundle\n' >"$rootfs/etc/hostname"

if [ $# -eq 0 ]; then
        set -- sh -c 'echo hello from busybox; id; hostname'
fi
"$hm" oci spec >"$dir/config.json.default"
python3 - "$dir/config.json.default" "$dir/config.json" "$@" <<'PY'
import json, sys
src, dst, args = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(src) as f:
    spec = json.load(f)
spec["process"]["args"] = args
spec["root"] = {"path": "rootfs", "readonly": False}
spec["hostname"] = "hm-bundle"
with open(dst, "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
PY
rm -f "$dir/config.json.default"
echo "bundle ready: $dir (run: hm oci run --bundle $dir NAME)"
