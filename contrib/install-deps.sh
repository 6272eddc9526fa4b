#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Install every Debian package hm needs to build and to run its whole test
# suite (make check, make fuzz, make lint).  Idempotent and quiet: apt runs
# only when something is missing; its output is shown only on failure.
# Needs root (or sudo).  Debian 12 (bookworm).
set -eu

PKGS="
build-essential make pkg-config git python3 clang
libcurl4-openssl-dev libyajl-dev libarchive-dev libseccomp-dev libcap-dev
libclang-rt-14-dev
docker.io podman runc catatonit tini uidmap busybox-static bubblewrap docker-registry
curl ca-certificates iproute2 util-linux mount procps passwd file tar gzip xz-utils
skopeo openssl apache2-utils zstd
passt slirp4netns
"

SUDO=
if [ "$(id -u)" != 0 ]; then
        SUDO=sudo
fi

missing=
for p in $PKGS; do
        if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
                missing="$missing $p"
        fi
done

if [ -z "$missing" ]; then
        echo "install-deps: all packages present"
        exit 0
fi

echo "install-deps: installing:$missing"
log=$(mktemp /tmp/install-deps.XXXXXX)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # word splitting of the package list is intended
if ! { $SUDO apt-get update -qq &&
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing; } \
        </dev/null >"$log" 2>&1; then
        echo "install-deps: apt-get failed:" >&2
        tail -n 40 "$log" >&2
        exit 1
fi
echo "install-deps: done"
