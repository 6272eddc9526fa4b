#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite, run by `make check` after building build/ and
# build-asan/:
#   1. unit tests, plain and under ASan/UBSan (leak detection on);
#   2. private Docker + Podman engines (tests/lib/engines.sh) and a busybox
#      image imported into a temporary ns store;
#   3. the unit tests that need engines, the IR cases on ns, docker and
#      podman, and the ns runner as an unprivileged user (hmtest);
#   4. engines stopped on every exit path; anything left behind is a failure.
# Ends with one line "N passed, M failed[, K skipped]" summing everything.
# Root, no terminal needed.
#
#   BUILD (build), ASAN_BUILD (build-asan), HM_SHARED_DIR (../shared),
#   HM_CHECK_DIR (work dir; default a new temp dir), HM_TEST_RUNNERS
#   (ns,docker,podman), HM_CHECK_SKIP (space-separated phases to leave out:
#   units asan live-units ir other-integration asan-ir unpriv)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
root=$(pwd)
BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
HM_SHARED_DIR=${HM_SHARED_DIR:-$(cd "$root/.." && pwd)/shared}
export HM_SHARED_DIR
RUNNERS=${HM_TEST_RUNNERS:-ns,docker,podman}
SKIP=" ${HM_CHECK_SKIP:-} "

if [ -n "${HM_CHECK_DIR:-}" ]; then
        work=$HM_CHECK_DIR
        mkdir -p "$work"
else
        work=$(mktemp -d /tmp/hm-check.XXXXXX)
fi
chmod 0755 "$work"
engines_dir=$work/engines
store=$work/store
logs=$work/logs
mkdir -p "$logs"

passed=0 failed=0 skipped=0
failures=()
DOCKER_SOCK="" PODMAN_SOCK=""

say() { printf '== %s\n' "$*"; }

# tally NAME RC LOG: add the last "N passed, M failed[, K skipped]" of LOG;
# a non-zero RC with no failure counted is one failure (crash, timeout).
tally() {
        local name=$1 rc=$2 log=$3 line p f s
        line=$(grep -Eo '[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?' "$log" | tail -n 1)
        p=0 f=0 s=0
        if [ -n "$line" ]; then
                p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
                f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
                if [[ $line == *skipped ]]; then
                        s=$(sed -E 's/.* ([0-9]+) skipped$/\1/' <<<"$line")
                fi
        fi
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
                f=1
        fi
        passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
        if [ "$f" -gt 0 ]; then
                failures+=("$name (rc $rc, $f failed)")
        fi
        say "$name: $p passed, $f failed, $s skipped (rc $rc)"
}

# one NAME CONDITION-RC MESSAGE: a single pass/fail of the harness itself.
one() {
        local name=$1 rc=$2
        if [ "$rc" -eq 0 ]; then
                passed=$((passed + 1))
        else
                failed=$((failed + 1))
                failures+=("$name")
                say "FAILED: $name"
        fi
}

skipping() { [[ $SKIP == *" $1 "* ]]; }

leftover_check() {
        local sock n what
        for what in docker podman; do
                sock=DOCKER_SOCK
                [ $what = podman ] && sock=PODMAN_SOCK
                sock=${!sock}
                [ -n "$sock" ] && [ -S "$sock" ] || continue
                # Containers and images labelled hm.run, cache images included: the
                # cached case cleans its cache with hm cache clean.
                if python3 tests/integration/engine_leftovers.py "$sock" >"$logs/leftovers-$what.log" 2>&1; then
                        one "no leftovers on $what" 0
                else
                        say "leftovers on $what:"
                        sed 's/^/   /' "$logs/leftovers-$what.log"
                        one "no leftovers on $what" 1
                fi
        done
        if [ -d "$store/tmp" ] && [ -n "$(ls -A "$store/tmp" 2>/dev/null)" ]; then
                say "leftover run dirs in $store/tmp: $(ls -A "$store/tmp" | head -5 | tr '\n' ' ')"
                one "no run dirs left in the ns store" 1
        fi
        n=$(findmnt -rn -o TARGET | grep -F -- "$work/" | grep -vF -- "$engines_dir/" | wc -l)
        if [ "$n" != 0 ]; then
                say "mounts left under $work: $(findmnt -rn -o TARGET | grep -F -- "$work/" | grep -vF -- "$engines_dir/" | head -5 | tr '\n' ' ')"
                one "no mounts left by hm" 1
        fi
}

finished=
tun_mode=
finish() {
        local rc=$?
        [ -n "$finished" ] && return
        finished=1
        trap - EXIT INT TERM
        if [ -d "$engines_dir" ]; then
                leftover_check
                say "stopping engines"
                tests/lib/engines.sh stop "$engines_dir" >"$logs/engines-stop.log" 2>&1
                one "engines stopped" $?
        fi
        # After the engines: nothing of this run may still be mounted or running.
        local left_m left_p
        left_m=$(findmnt -rn -o TARGET 2>/dev/null | grep -cF -- "$work/")
        left_p=$(for p in /proc/[0-9]*; do
                [ "${p#/proc/}" = $$ ] && continue
                { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$work/" && echo "${p#/proc/}"
        done | wc -l)
        if [ "$left_m" != 0 ] || [ "$left_p" != 0 ]; then
                say "left after stopping the engines: $left_m mounts, $left_p processes under $work"
                one "nothing mounted or running under $work at the end" 1
        fi
        # Nothing written into the checkout (e.g. conmon's "oom" file in the engine's cwd).
        local stray
        stray=$(comm -13 <(echo "$untracked_before") <(git ls-files --others --exclude-standard 2>/dev/null | sort))
        if [ -n "$stray" ]; then
                say "left in the checkout: $(head -5 <<<"$stray" | tr '\n' ' ')"
                one "no new file left in the checkout" 1
        fi
        # Whatever hm left mounted in the work dir must not make rm -rf descend.
        findmnt -rn -o TARGET 2>/dev/null | grep -F -- "$work/" | sort -r |
                while read -r m; do umount -l "$m" 2>/dev/null || true; done
        if [ "$rc" -ge 128 ]; then
                failures+=("interrupted (rc $rc)")
                failed=$((failed + 1))
        fi
        if [ ${#failures[@]} -gt 0 ]; then
                say "failures:"
                printf '   %s\n' "${failures[@]}"
                say "logs were in $logs (removed); rerun a phase by hand to inspect"
        fi
        rm -rf --one-file-system "$work" 2>/dev/null || true
        [ -n "$tun_mode" ] && chmod "$tun_mode" /dev/net/tun 2>/dev/null
        summary="$passed passed, $failed failed"
        [ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
        echo "$summary"
        [ "$failed" -eq 0 ] && exit 0
        exit 1
}
# Untracked files in the checkout now: at the end, any new one was left by a test or an engine.
untracked_before=$(git ls-files --others --exclude-standard 2>/dev/null | sort)
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$(id -u)" != 0 ]; then
        echo "run-all: needs root (it starts dockerd and podman and tests as another user)" >&2
        exit 1
fi
if [ ! -x "$BUILD/hm" ]; then
        echo "run-all: $BUILD/hm is missing: run make first" >&2
        one "hm built" 1
        exit 1
fi

# Rootless user-mode networking (pasta, slirp4netns, and so rootless Podman's
# default network) opens /dev/net/tun as the user.  Debian's udev makes it
# 0666; a host without udev (a CI container) may have 0600.  Open it for the
# tests and put the old mode back at the end.
if [ -c /dev/net/tun ]; then
        m=$(stat -c %a /dev/net/tun)
        if [ "$m" != 666 ] && chmod 0666 /dev/net/tun; then
                tun_mode=$m
                say "/dev/net/tun was mode $m: 0666 for the tests (restored at the end)"
        fi
fi

# 1. Unit tests ------------------------------------------------------------------------------
unit_skips=()
if ! skipping units; then
        say "unit tests ($BUILD)"
        env -u HM_TEST_DOCKER_SOCK -u HM_TEST_PODMAN_SOCK timeout 600 tests/run-units.sh "$BUILD" \
                2>&1 | tee "$logs/units.log"
        tally "unit tests ($BUILD)" "${PIPESTATUS[0]}" "$logs/units.log"
        mapfile -t unit_skips < <(sed -n 's/^skip \(test-[A-Za-z0-9_.-]*\)$/\1/p' "$logs/units.log")
fi
if ! skipping asan; then
        if [ -d "$ASAN_BUILD/tests" ]; then
                say "unit tests ($ASAN_BUILD, ASan/UBSan)"
                ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
                        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                        env -u HM_TEST_DOCKER_SOCK -u HM_TEST_PODMAN_SOCK timeout 900 \
                        tests/run-units.sh "$ASAN_BUILD" 2>&1 | tee "$logs/units-asan.log"
                tally "unit tests ($ASAN_BUILD)" "${PIPESTATUS[0]}" "$logs/units-asan.log"
        else
                say "no $ASAN_BUILD/tests: run make asan"
                one "ASan unit tests built" 1
        fi
fi

# 2. Engines and the ns store ------------------------------------------------------------------
say "starting engines in $engines_dir"
if timeout 300 tests/lib/engines.sh start "$engines_dir" >"$logs/engines.out" 2>"$logs/engines.err"; then
        DOCKER_SOCK=$(sed -n 's/^DOCKER_SOCK=//p' "$logs/engines.out")
        PODMAN_SOCK=$(sed -n 's/^PODMAN_SOCK=//p' "$logs/engines.out")
        one "engines started" 0
else
        cat "$logs/engines.err"
        one "engines started" 1
fi
say "DOCKER_SOCK=$DOCKER_SOCK PODMAN_SOCK=$PODMAN_SOCK"

say "importing busybox as alpine:3.20 into the ns store $store"
rootfs_tar=$work/rootfs.tar
if tests/lib/mkbusybox.sh "$work/rootfs" >/dev/null && tar -C "$work/rootfs" -cf "$rootfs_tar" . &&
        HM_STORE=$store timeout 120 "$BUILD/hm" image import "$rootfs_tar" alpine:3.20 >"$logs/import.log" 2>&1; then
        one "ns store: image import" 0
else
        cat "$logs/import.log" 2>/dev/null
        one "ns store: image import" 1
fi

# The README's demo, as contrib/setup.sh runs it: examples/demo on the default
# (daemonless) runner with a busybox image made by a script.
if ! skipping demo; then
        say "demo: build/hm run -d examples/demo (default runner)"
        if HM_STORE=$store timeout 60 "$BUILD/hm" image import "$rootfs_tar" busybox:demo >"$logs/demo.log" 2>&1 &&
                env -u HM_RUNNER HM_STORE=$store XDG_CACHE_HOME=$work/demo-cache timeout 120 "$BUILD/hm" run --logs \
                        -d examples/demo >>"$logs/demo.log" 2>&1 &&
                grep -q '^\[test\] tests passed$' "$logs/demo.log" && grep -q '^\[lint\] lint clean$' "$logs/demo.log" &&
                grep -q 'runner built-in namespace runtime' "$logs/demo.log"; then
                one "demo pipeline on the default runner" 0
        else
                cat "$logs/demo.log"
                one "demo pipeline on the default runner" 1
        fi
fi

# 3. Live unit tests, IR cases, unprivileged ns -----------------------------------------------
# Those that skipped without engines, and those that check more with them.
mapfile -t live_units < <({
        printf '%s\n' "${unit_skips[@]}"
        grep -l 'HM_TEST_DOCKER_SOCK\|HM_TEST_PODMAN_SOCK' tests/unit/test-*.c 2>/dev/null | xargs -r -n1 basename | sed 's/\.c$//'
} | grep . | sort -u)
if ! skipping live-units && [ ${#live_units[@]} -gt 0 ]; then
        say "unit tests with engines: ${live_units[*]}"
        : >"$logs/live.log"
        lp=0 lf=0 ls=0
        for t in "${live_units[@]}"; do
                [ -x "$BUILD/tests/$t" ] || continue
                HM_TEST_DOCKER_SOCK=$DOCKER_SOCK HM_TEST_PODMAN_SOCK=$PODMAN_SOCK HM_STORE=$store \
                        timeout 300 "$BUILD/tests/$t" >"$logs/live-$t.log" 2>&1
                rc=$?
                grep -E '^not ok|^# ' "$logs/live-$t.log" | sed "s|^|  $t: |"
                case $rc in
                0) lp=$((lp + 1)); echo "ok   $t" ;;
                77) ls=$((ls + 1)); echo "skip $t" ;;
                *) lf=$((lf + 1)); echo "FAIL $t (rc $rc)"; tail -n 20 "$logs/live-$t.log" ;;
                esac
        done
        echo "$lp passed, $lf failed, $ls skipped" >>"$logs/live.log"
        tally "live unit tests" 0 "$logs/live.log"
fi

if ! skipping ir; then
        say "integration: IR cases and more on $RUNNERS"
        HM_TEST_DOCKER_SOCK=$DOCKER_SOCK HM_TEST_PODMAN_SOCK=$PODMAN_SOCK HM_STORE=$store \
                timeout 900 python3 tests/integration/test_ir_cases.py --runners "$RUNNERS" --hm "$BUILD/hm" \
                2>&1 | tee "$logs/ir.log"
        tally "integration ($RUNNERS)" "${PIPESTATUS[0]}" "$logs/ir.log"
fi

# Every other integration test (tests/integration/test_*.py): each reads HM_BIN,
# HM_STORE and HM_TEST_{DOCKER,PODMAN}_SOCK, prints TAP and "N passed, M failed".
if ! skipping other-integration; then
        for t in tests/integration/test_*.py; do
                [ "$t" = tests/integration/test_ir_cases.py ] && continue
                [ -f "$t" ] || continue
                name=$(basename "$t" .py)
                say "integration: $name"
                HM_BIN=$BUILD/hm HM_STORE=$store HM_TEST_DOCKER_SOCK=$DOCKER_SOCK HM_TEST_PODMAN_SOCK=$PODMAN_SOCK \
                        HM_SHARED_DIR=$HM_SHARED_DIR timeout 600 python3 "$t" 2>&1 | sed "s/^/[$name] /" | tee "$logs/$name.log"
                tally "integration ($name)" "${PIPESTATUS[0]}" "$logs/$name.log"
        done
fi

# The escape suite (tests/security): every attack inside a real step on each
# runner; a case passes when the ns column is BLOCKED (engines are reported).
if ! skipping security; then
        say "security: escape suite on $RUNNERS"
        HM_BIN=$BUILD/hm HM_STORE=$store DOCKER_HOST=${DOCKER_SOCK:+unix://$DOCKER_SOCK} \
                CONTAINER_HOST=${PODMAN_SOCK:+unix://$PODMAN_SOCK} XDG_CACHE_HOME=$work/sec-cache \
                timeout 600 python3 tests/security/run.py --runners "$RUNNERS" 2>&1 | sed 's/^/[security] /' |
                tee "$logs/security.log"
        tally "security" "${PIPESTATUS[0]}" "$logs/security.log"
fi

# The fuzz harnesses (IR parser, runtime spec, layer tar reader, stream
# demuxer) under ASan/UBSan, for a bounded time each.
if ! skipping fuzz && command -v clang >/dev/null; then
        say "fuzz: ${FUZZ_SECONDS:-20} s per harness"
        FUZZ_SECONDS=${FUZZ_SECONDS:-20} timeout 900 tests/fuzz/run.sh 2>&1 | sed 's/^/[fuzz] /' | tee "$logs/fuzz.log"
        tally "fuzz" "${PIPESTATUS[0]}" "$logs/fuzz.log"
fi

# hm itself under ASan/UBSan (leaks included): the parser on every fixture and
# bad input, and a few cases through the Docker engine runner (no clone
# tricks there, so sanitizer reports are about hm's own code).
if ! skipping asan-ir && [ -x "$ASAN_BUILD/hm" ]; then
        say "integration: $ASAN_BUILD/hm (ASan/UBSan) on dry-run, bad IR and docker cases"
        ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                HM_TEST_DOCKER_SOCK=$DOCKER_SOCK timeout 600 python3 tests/integration/test_ir_cases.py \
                --runners docker --hm "$ASAN_BUILD/hm" --only dry-run,bad-ir,cow-chain,exit-code,logs,fork-keep-going \
                2>&1 | sed 's/^/[asan] /' | tee "$logs/asan-ir.log"
        tally "integration (ASan hm)" "${PIPESTATUS[0]}" "$logs/asan-ir.log"
fi

# The ns runner as an ordinary user: its own store and cache, everything it
# needs copied to a world-readable place (the checkout may be under /root).
if ! skipping unpriv && [[ ,$RUNNERS, == *,ns,* ]]; then
        say "integration: ns runner as unprivileged user hmtest"
        if ! id hmtest >/dev/null 2>&1; then
                useradd -m -s /bin/sh hmtest >"$logs/useradd.log" 2>&1 || cat "$logs/useradd.log"
        fi
        u=$work/unpriv
        mkdir -p "$u/build" "$u/tests" "$u/shared" "$u/home"
        cp "$BUILD/hm" "$u/build/hm"
        [ -x "$BUILD/hm-test-init" ] && cp "$BUILD/hm-test-init" "$u/build/"
        cp -r tests/integration tests/lib "$u/tests/"
        cp -r "$HM_SHARED_DIR/ir" "$u/shared/ir"
        find "$u/tests" -name __pycache__ -prune -exec rm -rf {} +
        chmod -R a+rX "$u"
        chown hmtest: "$u/home"
        uid=$(id -u hmtest 2>/dev/null)
        rundir=/run/user/$uid
        made_rundir=
        if [ ! -d "$rundir" ]; then
                mkdir -p "$rundir" && chown hmtest: "$rundir" && chmod 0700 "$rundir" && made_rundir=1
        fi
        setpriv --reuid=hmtest --regid=hmtest --init-groups --reset-env \
                env HOME="$u/home" USER=hmtest LOGNAME=hmtest PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
                XDG_RUNTIME_DIR="$rundir" XDG_CACHE_HOME="$u/home/.cache" TMPDIR="$u/home" \
                timeout 600 python3 "$u/tests/integration/test_ir_cases.py" --runners ns --cases-only \
                --hm "$u/build/hm" --shared "$u/shared" 2>&1 | sed 's/^/[hmtest] /' | tee "$logs/unpriv.log"
        tally "integration (ns, unprivileged)" "${PIPESTATUS[0]}" "$logs/unpriv.log"
        [ -n "$made_rundir" ] && rm -rf "$rundir"
fi

exit 0
