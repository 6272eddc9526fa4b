#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# mkimage-ci.sh [-b HM] [-t NAME:TAG] [-g] OUT.tar
#
# Make a minimal container image for running hm inside a CI job: hm (and an
# hm-oci link), the shared libraries it loads (from ldd), the static busybox
# (Debian busybox-static) as /bin/sh and coreutils, and the host's CA bundle.
# The result is a docker-archive ("docker save" format: manifest.json, the
# config, one layer) that both `docker load -i OUT.tar` and
# `podman load -i OUT.tar` accept.  No network access is needed: everything
# comes from this machine.
#
#   -b HM        the hm binary (default: build/hm next to this script)
#   -t NAME:TAG  the image name (default: localhost/hm-ci:latest, which Docker
#                and Podman both keep as written)
#   -g           add the host's git (and its libraries): hm lists the workspace
#                with `git ls-files` when git is there, so .gitignore is
#                honoured; without it the whole tree is sent
#
# In the image: /usr/local/bin/hm, /usr/local/bin/hm-oci -> hm, /bin/busybox
# with one link per applet, /etc/ssl/certs/ca-certificates.crt, /etc/passwd
# with root and nobody, /tmp, /var/lib/hm.  Cmd is /bin/sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
hm=$repo/build/hm
name=localhost/hm-ci:latest
with_git=

usage() {
        echo "usage: mkimage-ci.sh [-b HM] [-t NAME:TAG] [-g] OUT.tar" >&2
        exit 2
}

while getopts b:t:gh o; do
        case $o in
        b) hm=$OPTARG ;;
        t) name=$OPTARG ;;
        g) with_git=1 ;;
        *) usage ;;
        esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
out=$1
case $name in
*:*) ;;
*) name=$name:latest ;;
esac

if ! [ -x "$hm" ]; then
        echo "mkimage-ci: hm binary '$hm' not found or not executable (run make, or pass -b)" >&2
        exit 1
fi
ca=
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
        if [ -r "$f" ]; then
                ca=$f
                break
        fi
done
if [ -z "$ca" ]; then
        echo "mkimage-ci: no CA bundle found (apt-get install ca-certificates)" >&2
        exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mkimage-ci.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

# busybox, /etc/passwd, /tmp, ... (refuses a dynamically linked busybox)
"$repo/tests/lib/mkbusybox.sh" "$rootfs" >/dev/null

install -D -m 0755 "$hm" "$rootfs/usr/local/bin/hm"
ln -s hm "$rootfs/usr/local/bin/hm-oci"
install -D -m 0644 "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$rootfs/var/lib/hm" "$rootfs/run"

# Shared libraries: every path ldd resolves, copied at the same path (the
# loader finds them there through its default directories), plus the loader.
# "not found" is fatal: the binary would not start in the image.
copy_libs() {
        local bin=$1 lib
        if ldd "$bin" 2>&1 | grep -q 'not found'; then
                echo "mkimage-ci: ldd $bin: libraries not found:" >&2
                ldd "$bin" | grep 'not found' >&2
                exit 1
        fi
        while read -r lib; do
                [ -n "$lib" ] || continue
                [ -e "$rootfs$lib" ] && continue
                install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
                nlibs=$((nlibs + 1))
        done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
}
nlibs=0
copy_libs "$hm"
if [ "$nlibs" -eq 0 ] && ! LC_ALL=C file -L "$hm" | grep -q 'statically linked'; then
        echo "mkimage-ci: ldd found no libraries for $hm" >&2
        exit 1
fi
if [ -n "$with_git" ]; then
        git=$(command -v git || true)
        if [ -z "$git" ]; then
                echo "mkimage-ci: -g: git is not installed here (apt-get install git)" >&2
                exit 1
        fi
        install -D -m 0755 "$(readlink -f "$git")" "$rootfs/usr/bin/git"
        copy_libs "$git"
fi
# /lib64 -> lib symlinks are not needed: every file sits at the exact path ldd printed.

# One layer, reproducible: sorted names, fixed times and owners.
mkdir -p "$work/img"
tar -C "$rootfs" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        -cf "$work/layer.tar" .
layer_sha=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
mkdir -p "$work/img/$layer_sha"
mv "$work/layer.tar" "$work/img/$layer_sha/layer.tar"

hm_version=$("$hm" version 2>/dev/null | head -n 1 | tr -d '"\\' || true)
cat >"$work/config.json" <<EOF
{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z",
 "config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
           "Cmd":["/bin/sh"],"WorkingDir":"/",
           "Labels":{"org.opencontainers.image.title":"hm-ci","hm.version":"$hm_version"}},
 "rootfs":{"type":"layers","diff_ids":["sha256:$layer_sha"]},
 "history":[{"created":"1970-01-01T00:00:00Z","created_by":"contrib/mkimage-ci.sh"}]}
EOF
config_sha=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$work/img/$config_sha.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' \
        "$config_sha" "$name" "$layer_sha" >"$work/img/manifest.json"
repo_name=${name%:*}
printf '{"%s":{"%s":"%s"}}\n' "$repo_name" "${name##*:}" "$layer_sha" >"$work/img/repositories"

tar -C "$work/img" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "mkimage-ci: $out: $name, $nlibs shared libraries, $(du -k "$out" | cut -f1) KiB"
