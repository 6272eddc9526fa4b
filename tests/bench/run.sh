#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# tests/bench/run.sh: what `make bench` runs.  Installs the peer tools that are
# missing (apt, idempotent), makes a busybox rootfs and bundle, imports the
# rootfs into a private hm image store, starts private Docker and Podman
# engines, runs tests/bench/bench.py and stops everything on every exit path.
# Writes tests/bench/results.md and results.json (BENCH_OUT to put them
# elsewhere).  Reports only: exits non-zero only when a benchmark could not run.
#
# Knobs: HM=path/to/hm (default build/hm), BENCH_FULL=1 (the issue's sizes
# everywhere: 200 engine throughput steps instead of 64, 3 log runs; > 15 min
# here), BENCH_ONLY=1,3,7 (a subset), BENCH_KEEP_ENGINES=DIR (use engines
# already started with tests/lib/engines.sh start DIR; not stopped).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
start=$(date +%s)

say() { printf '[bench] %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
        say "must run as root (it starts private dockerd/podman engines and runs runc)"
        exit 1
fi

# command -> Debian package
need_pkgs() {
        local -A pkg=([bwrap]=bubblewrap [runc]=runc [ninja]=ninja-build [dockerd]=docker.io
                [podman]=podman [busybox]=busybox-static [python3]=python3 [curl]=curl [file]=file
                [strace]=strace)
        local c missing=()
        for c in "${!pkg[@]}"; do
                command -v "$c" >/dev/null 2>&1 || missing+=("${pkg[$c]}")
        done
        [ -x /usr/bin/time ] || missing+=(time)
        # A dynamically linked busybox would not run inside the rootfs.
        if command -v busybox >/dev/null 2>&1 && file -L "$(command -v busybox)" | grep -q 'dynamically linked'; then
                missing+=(busybox-static)
        fi
        echo "${missing[@]}"
}
missing=$(need_pkgs)
if [ -n "$missing" ]; then
        say "installing: $missing"
        apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
# perf is optional (profiles of missed targets): linux-perf when apt has it.
if ! command -v perf >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null 2>&1 || true
fi

export HM=${HM:-$top/${BUILD:-build}/hm}
case $HM in /*) ;; *) HM=$top/$HM ;; esac
if [ ! -x "$HM" ]; then
        say "no hm binary at $HM (run make first)"
        exit 1
fi

work=$(mktemp -d /tmp/hm-bench.XXXXXX)
engines_dir=${BENCH_KEEP_ENGINES:-$work/engines}
cleanup() {
        local rc=$?
        trap - EXIT INT TERM
        set +e
        if [ -z "${BENCH_KEEP_ENGINES:-}" ]; then
                "$top/tests/lib/engines.sh" stop "$engines_dir" >/dev/null 2>&1 ||
                        say "warning: could not stop the engines under $engines_dir"
        fi
        if [ -d "$work/runc-state" ]; then
                for id in $(runc --root "$work/runc-state" list -q 2>/dev/null); do
                        runc --root "$work/runc-state" delete -f "$id" >/dev/null 2>&1
                done
        fi
        # hm unmounts its own layers; this only catches a crash
        findmnt -rn -o TARGET | grep -F -- "$work/" | sort -r | while read -r m; do
                umount -l "$m" 2>/dev/null
        done
        rm -rf --one-file-system "$work"
        say "total $(($(date +%s) - start)) s"
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "work directory $work, hm $HM"
"$top/tests/lib/mkbusybox.sh" "$work/rootfs"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
export HM_STORE=$work/store XDG_CACHE_HOME=$work/cache XDG_DATA_HOME=$work/data
mkdir -p "$XDG_CACHE_HOME"
"$HM" image import "$work/busybox.tar" busybox:bench >&2

# runc peer: its own `runc spec`, with the bundle's rootfs and `true`
HM=$HM sh "$top/bundles/make-busybox-bundle.sh" "$work/bundle" true >/dev/null
(cd "$work/bundle" && rm -f config.json && runc spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
with open(path) as f:
    spec = json.load(f)
spec["process"]["args"] = ["true"]
spec["process"]["terminal"] = False
spec["root"] = {"path": "rootfs", "readonly": True}
with open(path, "w") as f:
    json.dump(spec, f, indent=2)
PY

say "starting private engines under $engines_dir"
socks=$("$top/tests/lib/engines.sh" start "$engines_dir")
DOCKER_SOCK=$(sed -n 's/^DOCKER_SOCK=//p' <<<"$socks")
PODMAN_SOCK=$(sed -n 's/^PODMAN_SOCK=//p' <<<"$socks")
export DOCKER_SOCK PODMAN_SOCK
# The runners must not find any other engine.
unset DOCKER_HOST CONTAINER_HOST

export BENCH_WORK=$work BENCH_ROOTFS=$work/rootfs BENCH_BUNDLE=$work/bundle
export BENCH_OUT=${BENCH_OUT:-$here}
python3 "$here/bench.py"
