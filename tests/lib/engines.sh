#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Private Docker and Podman engines for tests (see shared/docs/engine-api.md §0).
#
#   tests/lib/engines.sh start DIR      start dockerd + podman service under DIR (root),
#                                       import the busybox base image, print
#                                       DOCKER_SOCK=... and PODMAN_SOCK=...
#   tests/lib/engines.sh stop DIR       stop both, unmount what is left, remove DIR
#   tests/lib/engines.sh leftovers SOCK print the number of containers + images
#                                       labelled hm.run on that engine
#   tests/lib/engines.sh reap SOCK      remove every container and image labelled hm.run
#
# ENGINES_DEBUG=1 (opt-in, for chasing flakes) starts dockerd with -D (log:
# DIR/dockerd.log, containerd's included); ENGINES_DEBUG=2 also starts the
# Podman service with --log-level=debug (DIR/podman.log).  Podman passes its
# log level on to each container's cleanup command, and at debug level every
# container exit then waited for conmon's 20 s timeout here (64 `true` steps:
# 338 s instead of 21 s), so level 2 is for single reproductions only.
#
# Sourcing it defines engines_start, engines_stop, engines_leftovers, engines_reap and
# engines_api (curl over a unix socket).
#
# Needs (Debian): docker.io podman runc busybox-static curl tini (with docker.io)
#
# Base images: /bin/busybox rootfs imported as localhost/busybox:test and
# tagged alpine:3.20 and ubuntu:24.04 (the fixtures' images).  Docker keeps
# short names as given; Podman resolves a short-name lookup against
# localhost/ first, so there the tags are written as localhost/<name>.  The
# engine runner looks user images up exactly as the pipeline names them, so
# "alpine:3.20" finds the image on both.

ENGINES_IMAGES=${ENGINES_IMAGES:-"alpine:3.20 ubuntu:24.04 busybox:test"}
ENGINES_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# engines_api SOCK METHOD PATH [curl args...]: body on stdout, "HTTP <code>" check by caller.
engines_api() {
        local sock=$1 method=$2 path=$3
        shift 3
        curl -sS --unix-socket "$sock" -X "$method" "$@" "http://d/v1.41$path"
}

_engines_ping() {
        curl -sf --max-time 2 --unix-socket "$1" http://d/_ping >/dev/null 2>&1
}

_engines_wait_ping() {
        local sock=$1 what=$2 log=$3 i
        for ((i = 0; i < 300; i++)); do
                _engines_ping "$sock" && return 0
                sleep 0.1
        done
        echo "engines: $what did not answer /_ping on $sock within 30 s; last log lines:" >&2
        tail -n 20 "$log" >&2 2>/dev/null || true
        return 1
}

_engines_alive() {
        local pidfile=$1 pid
        [ -s "$pidfile" ] || return 1
        pid=$(cat "$pidfile")
        kill -0 "$pid" 2>/dev/null
}

_engines_start_docker() {
        local d=$1
        if _engines_alive "$d/dockerd.pid" && _engines_ping "$d/docker.sock"; then
                return 0
        fi
        rm -f "$d/docker.sock" "$d/dockerd.pid"
        local dbg=()
        [ "${ENGINES_DEBUG:-0}" -ge 1 ] && dbg=(-D)
        # cwd and TMPDIR: DIR, so whatever an engine writes relative to it or to its temp dir stays
        # there (conmon writes an "oom" file into its working directory when a container is
        # OOM-killed; containerd dumps its stacks to containerd.PID.stacks.log in the temp dir)
        mkdir -p "$d/tmp"
        (cd "$d" && TMPDIR=$d/tmp exec setsid dockerd "${dbg[@]}" --host "unix://$d/docker.sock" --iptables=false \
                --ip6tables=false --bridge=none --data-root "$d/docker-data" --exec-root "$d/docker-exec" \
                --pidfile "$d/dockerd.pid" </dev/null >"$d/dockerd.log" 2>&1) &
        _engines_wait_ping "$d/docker.sock" dockerd "$d/dockerd.log"
}

_engines_podman_conf() {
        local d=$1 init=
        # Init: true needs a static init binary; Debian's podman suggests
        # catatonit, docker.io brings tini-static, which works the same way.
        for f in /usr/libexec/podman/catatonit /usr/bin/catatonit /usr/bin/tini-static; do
                if [ -x "$f" ]; then
                        init=$f
                        break
                fi
        done
        {
                echo '[containers]'
                echo 'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]'
                [ -n "$init" ] && echo "init_path = \"$init\""
                echo '[engine]'
                echo 'runtime = "runc"'
                echo 'cgroup_manager = "cgroupfs"'
                echo 'events_logger = "file"'
                echo "tmp_dir = \"$d/podman-tmp\""
        } >"$d/containers.conf"
}

_engines_start_podman() {
        local d=$1
        if _engines_alive "$d/podman.pid" && _engines_ping "$d/podman.sock"; then
                return 0
        fi
        rm -f "$d/podman.sock" "$d/podman.pid"
        mkdir -p "$d/podman-tmp"
        _engines_podman_conf "$d"
        local dbg=()
        [ "${ENGINES_DEBUG:-0}" -ge 2 ] && dbg=(--log-level=debug)
        (cd "$d" && CONTAINERS_CONF="$d/containers.conf" exec setsid podman "${dbg[@]}" --root "$d/podman-root" \
                --runroot "$d/podman-run" system service --time=0 "unix://$d/podman.sock" \
                </dev/null >"$d/podman.log" 2>&1) &
        echo $! >"$d/podman.pid"
        _engines_wait_ping "$d/podman.sock" "podman service" "$d/podman.log"
}

# _engines_check CODEFILE WHAT: fail unless the status written by curl -w is 2xx.
_engines_expect_2xx() {
        local code=$1 what=$2 body=$3
        case $code in
        2??) return 0 ;;
        esac
        echo "engines: $what: HTTP $code: $body" >&2
        return 1
}

_engines_import() {
        local sock=$1 rootfs=$2 out code prefix name repo tag
        out=$(tar -C "$rootfs" -cf - . | curl -sS --unix-socket "$sock" -X POST \
                -H 'Content-Type: application/x-tar' --data-binary @- -w '\n%{http_code}' \
                'http://d/v1.41/images/create?fromSrc=-&repo=localhost/busybox:test&changes=ENV%20PATH%3D%2Fusr%2Flocal%2Fsbin%3A%2Fusr%2Flocal%2Fbin%3A%2Fusr%2Fsbin%3A%2Fusr%2Fbin%3A%2Fsbin%3A%2Fbin') || return 1
        code=${out##*$'\n'}
        _engines_expect_2xx "$code" "import busybox on $sock" "$out" || return 1
        if grep -q '"error"' <<<"$out"; then
                echo "engines: import busybox on $sock: $out" >&2
                return 1
        fi
        prefix=
        if curl -sfI --unix-socket "$sock" http://d/_ping 2>/dev/null | grep -qi '^libpod-api-version'; then
                prefix=localhost/
        fi
        for name in $ENGINES_IMAGES; do
                repo=${name%:*}
                tag=${name##*:}
                for r in "$prefix$repo" "localhost/$repo"; do
                        out=$(curl -sS --unix-socket "$sock" -X POST -w '\n%{http_code}' \
                                "http://d/v1.41/images/localhost/busybox:test/tag?repo=$r&tag=$tag") || return 1
                        _engines_expect_2xx "${out##*$'\n'}" "tag $r:$tag on $sock" "$out" || return 1
                done
        done
}

engines_start() {
        local d=${1:?usage: engines.sh start DIR}
        if [ "$(id -u)" != 0 ]; then
                echo "engines: must run as root" >&2
                return 1
        fi
        mkdir -p "$d"
        d=$(cd "$d" && pwd)
        _engines_start_docker "$d" || return 1
        _engines_start_podman "$d" || return 1
        if [ ! -x "$d/rootfs/bin/busybox" ]; then
                rm -rf "$d/rootfs"
                "$ENGINES_LIB_DIR/mkbusybox.sh" "$d/rootfs" || return 1
        fi
        _engines_import "$d/docker.sock" "$d/rootfs" || return 1
        _engines_import "$d/podman.sock" "$d/rootfs" || return 1
        echo "DOCKER_SOCK=$d/docker.sock"
        echo "PODMAN_SOCK=$d/podman.sock"
}

_engines_kill_pidfile() {
        local pidfile=$1 pid i
        [ -s "$pidfile" ] || return 0
        pid=$(cat "$pidfile")
        kill -TERM "$pid" 2>/dev/null || return 0
        for ((i = 0; i < 150; i++)); do
                kill -0 "$pid" 2>/dev/null || return 0
                sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
}

# Processes the engines started under DIR (containerd, shims, conmon) that
# outlived their daemon: only those whose command line names DIR.
_engines_kill_strays() {
        local d=$1 p pid
        for p in /proc/[0-9]*; do
                pid=${p#/proc/}
                [ "$pid" = $$ ] && continue
                if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$d/"; then
                        kill -KILL "$pid" 2>/dev/null || true
                fi
        done
}

engines_stop() {
        local d=${1:?usage: engines.sh stop DIR} m
        [ -d "$d" ] || return 0
        d=$(cd "$d" && pwd)
        _engines_kill_pidfile "$d/podman.pid"
        _engines_kill_pidfile "$d/dockerd.pid"
        _engines_kill_strays "$d"
        # deepest first
        while read -r m; do
                umount -l "$m" 2>/dev/null || true
        done < <(findmnt -rn -o TARGET | grep -F -- "$d/" | sort -r)
        rm -rf --one-file-system "$d"
        [ ! -e "$d" ]
}

engines_leftovers() {
        local sock=${1:?usage: engines.sh leftovers SOCK} filt c i
        filt='%7B%22label%22%3A%5B%22hm.run%22%5D%7D' # {"label":["hm.run"]}
        c=$(engines_api "$sock" GET "/containers/json?all=1&filters=$filt" | { grep -o '"Id"' || true; } | wc -l) || return 1
        i=$(engines_api "$sock" GET "/images/json?filters=$filt" | { grep -o '"Id"' || true; } | wc -l) || return 1
        echo "containers=$c images=$i" >&2
        echo $((c + i))
}

# Remove every container and image labelled hm.run (after a test that crashed).
engines_reap() {
        local sock=${1:?usage: engines.sh reap SOCK} filt id pass
        filt='%7B%22label%22%3A%5B%22hm.run%22%5D%7D'
        for id in $(engines_api "$sock" GET "/containers/json?all=1&filters=$filt" |
                grep -o '"Id":"[0-9a-f]*"' | cut -d'"' -f4); do
                engines_api "$sock" DELETE "/containers/$id?force=1&v=1" >/dev/null
        done
        # Docker refuses to delete parents before children: a few passes
        for pass in 1 2 3; do
                for id in $(engines_api "$sock" GET "/images/json?filters=$filt" |
                        grep -o '"Id":"[^"]*"' | cut -d'"' -f4); do
                        engines_api "$sock" DELETE "/images/$id?force=1" >/dev/null
                done
        done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
        set -uo pipefail
        case ${1:-} in
        start) engines_start "${2:-}" ;;
        stop) engines_stop "${2:-}" ;;
        leftovers) engines_leftovers "${2:-}" ;;
        reap) engines_reap "${2:-}" ;;
        *)
                echo "usage: $0 start DIR | stop DIR | leftovers SOCK | reap SOCK" >&2
                exit 2
                ;;
        esac
fi
