#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# mkimage.sh OUT_DIR: test images of busybox (busybox-static), no registry needed.
#   OUT/rootfs.tar   plain rootfs tarball (mkbusybox.sh tree + /opt/old/file, /etc/gone)
#   OUT/oci/         OCI image layout: layer 1 = rootfs.tar gzipped, layer 2 = a small
#                    uncompressed tar with /etc/hm-image, a whiteout of /etc/gone and an
#                    opaque /opt/old holding only "new"; config Env PATH + HM_IMAGE=busybox
#   OUT/oci.tar      the same layout, tarred
#   OUT/docker.tar   a `docker save` archive of the same two layers (uncompressed),
#                    RepoTags localhost/hm-test:docker; same diff ids as the OCI image
#   OUT/digests      "diff1 <hex>", "diff2 <hex>", "config <hex>" lines
set -euo pipefail

out=${1:?usage: mkimage.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tarit() { # DIR FILE: reproducible tar of DIR's contents
        tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$1" -cf "$2" .
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

"$here/mkbusybox.sh" "$work/rootfs"
mkdir -p "$work/rootfs/opt/old"
echo old >"$work/rootfs/opt/old/file"
echo gone >"$work/rootfs/etc/gone"
tarit "$work/rootfs" "$out/rootfs.tar"

mkdir -p "$work/l2/etc" "$work/l2/opt/old"
echo busybox >"$work/l2/etc/hm-image"
: >"$work/l2/etc/.wh.gone"
: >"$work/l2/opt/old/.wh..wh..opq"
echo new >"$work/l2/opt/old/new"
tarit "$work/l2" "$work/layer2.tar"
gzip -n -c "$out/rootfs.tar" >"$work/layer1.tar.gz"

diff1=$(sha "$out/rootfs.tar")
diff2=$(sha "$work/layer2.tar")
gz1=$(sha "$work/layer1.tar.gz")
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","HM_IMAGE=busybox"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s","sha256:%s"]}}' \
        "$diff1" "$diff2" >"$work/config.json"
cfg=$(sha "$work/config.json")

# OCI layout
rm -rf "$out/oci"
mkdir -p "$out/oci/blobs/sha256"
cp "$work/layer1.tar.gz" "$out/oci/blobs/sha256/$gz1"
cp "$work/layer2.tar" "$out/oci/blobs/sha256/$diff2"
cp "$work/config.json" "$out/oci/blobs/sha256/$cfg"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
        "$cfg" "$(stat -c %s "$work/config.json")" "$gz1" "$(stat -c %s "$work/layer1.tar.gz")" \
        "$diff2" "$(stat -c %s "$work/layer2.tar")" >"$work/manifest.json"
man=$(sha "$work/manifest.json")
cp "$work/manifest.json" "$out/oci/blobs/sha256/$man"
printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"test"},"platform":{"architecture":"amd64","os":"linux"}}]}' \
        "$man" "$(stat -c %s "$work/manifest.json")" >"$out/oci/index.json"
tarit "$out/oci" "$out/oci.tar"

# docker save (legacy layout: <id>/layer.tar, <config hex>.json, manifest.json)
mkdir -p "$work/docker/$diff1" "$work/docker/$diff2"
cp "$out/rootfs.tar" "$work/docker/$diff1/layer.tar"
cp "$work/layer2.tar" "$work/docker/$diff2/layer.tar"
cp "$work/config.json" "$work/docker/$cfg.json"
printf '[{"Config":"%s.json","RepoTags":["localhost/hm-test:docker"],"Layers":["%s/layer.tar","%s/layer.tar"]}]' \
        "$cfg" "$diff1" "$diff2" >"$work/docker/manifest.json"
tarit "$work/docker" "$out/docker.tar"

printf 'diff1 %s\ndiff2 %s\nconfig %s\n' "$diff1" "$diff2" "$cfg" >"$out/digests"
