#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Build and run every libFuzzer harness tests/fuzz/fuzz-*.c (make fuzz).
#
# Linking: by default every harness is linked with all of hm's library code
# (lib pipeline sched engine oci runtime, compiled once into
# $FUZZ_BUILD/libhm-fuzz.a with -fsanitize=fuzzer-no-link,address,undefined)
# and every library hm uses.  A harness may instead name exactly what it
# needs in comments within its first 15 lines (smaller, faster to build):
#   /* fuzz-sources: pipeline/plan.c lib/util.c lib/error.c lib/strbuf.c */
#   /* fuzz-pkgs: yajl */
# fuzz-sources are repo-relative .c files (globs allowed, e.g. lib/*.c);
# fuzz-pkgs are pkg-config names.  Both may repeat; fuzz-sources without
# fuzz-pkgs means no package.  The harness defines LLVMFuzzerTestOneInput.
#
# Build: clang -fsanitize=fuzzer,address,undefined into $FUZZ_BUILD
# (build-fuzz).  Run: FUZZ_SECONDS (30) each, seeded from
# tests/fuzz/corpus/<name>/ or tests/fuzz/corpus/<name without fuzz->/
# (new inputs go to a temp dir, the repo corpus is not modified), with
# tests/fuzz/<name>.dict when present.  Any crash, leak, sanitizer report or
# timeout fails; the reproducer is kept in $FUZZ_BUILD/artifacts/.
#   FUZZ_ONLY="fuzz-plan ..." restricts the set; FUZZ_BUILD_ONLY=1 only builds.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
CC_FUZZ=${CC_FUZZ:-clang}
artifacts=$FUZZ_BUILD/artifacts
mkdir -p "$FUZZ_BUILD" "$artifacts"

passed=0 failed=0
fail() {
        echo "not ok - $1"
        failed=$((failed + 1))
}

# meta FILE KEY: the words of every "KEY: ..." comment in the first 15 lines.
meta() {
        head -n 15 "$1" | sed -n "s|.*$2:[[:space:]]*\\(.*\\)|\\1|p" | sed 's|\*/.*||' | tr '\n' ' '
}

ALL_PKGS="libcurl yajl libarchive libseccomp libcap"
LIB_DIRS="lib pipeline sched engine oci runtime"
FUZZ_FLAGS=(-std=gnu11 -D_GNU_SOURCE -I. -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all)

# libhm_fuzz: all library sources, instrumented for coverage but without
# libFuzzer's main, in one archive; objects are rebuilt when their source is
# newer.  Prints the archive's path.
libhm_fuzz() {
        local objdir=$FUZZ_BUILD/obj lib=$FUZZ_BUILD/libhm-fuzz.a src obj todo=() pc
        # shellcheck disable=SC2086
        read -r -a pc <<<"$(pkg-config --cflags $ALL_PKGS)"
        for src in $(for d in $LIB_DIRS; do ls "$d"/*.c 2>/dev/null; done); do
                obj=$objdir/${src%.c}.o
                if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find "$(dirname "$src")" -name '*.h' -newer "$obj" 2>/dev/null | head -n 1)" ]; then
                        todo+=("$src")
                fi
        done
        if [ ${#todo[@]} -gt 0 ]; then
                echo "fuzz: compiling ${#todo[@]} library sources into $lib" >&2
                for src in "${todo[@]}"; do
                        mkdir -p "$objdir/$(dirname "$src")"
                        printf '%s\0' "$src"
                done | xargs -0 -P "$(nproc)" -I{} sh -c '
                        src=$1; shift
                        "$@" -c -o "'"$objdir"'/${src%.c}.o" "$src"' _ {} "$CC_FUZZ" "${FUZZ_FLAGS[@]}" \
                        -fsanitize=fuzzer-no-link,address,undefined "${pc[@]}" >&2 || return 1
                rm -f "$lib"
        fi
        if [ ! -f "$lib" ]; then
                find "$objdir" -name '*.o' -print0 | sort -z | xargs -0 ar rcs "$lib" || return 1
        fi
        echo "$lib"
}

shopt -s nullglob
harnesses=(tests/fuzz/fuzz-*.c)
if [ ${#harnesses[@]} -eq 0 ]; then
        echo "fuzz: no harnesses in tests/fuzz/"
        echo "0 passed, 0 failed"
        exit 0
fi

tmp=$(mktemp -d /tmp/hm-fuzz.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

for h in "${harnesses[@]}"; do
        name=$(basename "$h" .c)
        if [ -n "${FUZZ_ONLY:-}" ] && [[ " $FUZZ_ONLY " != *" $name "* ]]; then
                continue
        fi
        srcs=()
        for s in $(meta "$h" fuzz-sources); do
                # shellcheck disable=SC2206 # globs in fuzz-sources are intended
                expanded=($s)
                srcs+=("${expanded[@]}")
        done
        pkgs=$(meta "$h" fuzz-pkgs)
        if [ ${#srcs[@]} -eq 0 ]; then
                # No annotation: all of hm's library code and libraries.
                if [ -z "${libhm:-}" ]; then
                        libhm=$(libhm_fuzz) || {
                                fail "$name: building $FUZZ_BUILD/libhm-fuzz.a"
                                libhm=
                                continue
                        }
                fi
                srcs=("$libhm")
                pkgs=$ALL_PKGS
        fi
        missing=()
        for s in "${srcs[@]}"; do [ -f "$s" ] || missing+=("$s"); done
        if [ ${#missing[@]} -gt 0 ]; then
                fail "$name: fuzz-sources not found: ${missing[*]}"
                continue
        fi
        cflags=() libs=()
        if [ -n "${pkgs// /}" ]; then
                # shellcheck disable=SC2086
                read -r -a cflags <<<"$(pkg-config --cflags $pkgs)"
                # shellcheck disable=SC2086
                read -r -a libs <<<"$(pkg-config --libs $pkgs)"
        fi
        bin=$FUZZ_BUILD/$name
        cmd=("$CC_FUZZ" "${FUZZ_FLAGS[@]}" -fsanitize=fuzzer,address,undefined
                "${cflags[@]}" -o "$bin" "$h" "${srcs[@]}" "${libs[@]}")
        echo "fuzz: ${cmd[*]}"
        if ! "${cmd[@]}" >"$tmp/$name.build.log" 2>&1; then
                cat "$tmp/$name.build.log"
                fail "$name: build"
                continue
        fi
        if [ -n "${FUZZ_BUILD_ONLY:-}" ]; then
                echo "ok - $name: built"
                passed=$((passed + 1))
                continue
        fi
        seeds=tests/fuzz/corpus/$name
        [ -d "$seeds" ] || seeds=tests/fuzz/corpus/${name#fuzz-}
        work=$tmp/corpus-$name
        mkdir -p "$work"
        args=(-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
                -artifact_prefix="$artifacts/$name-")
        [ -f "tests/fuzz/$name.dict" ] && args+=(-dict="tests/fuzz/$name.dict")
        corpora=("$work")
        [ -d "$seeds" ] && corpora+=("$seeds")
        echo "fuzz: $name for ${FUZZ_SECONDS}s (seeds: $([ -d "$seeds" ] && ls "$seeds" | wc -l || echo none))"
        # TMPDIR: whatever a harness makes (fuzz-layer's unpack dirs) goes with $tmp, even after a crash
        mkdir -p "$tmp/tmp-$name"
        TMPDIR=$tmp/tmp-$name ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
                UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
                "$bin" "${args[@]}" "${corpora[@]}" >"$tmp/$name.run.log" 2>&1
        rc=$?
        if [ $rc -ne 0 ]; then
                grep -E 'ERROR|SUMMARY|runtime error|Test unit written|artifact' "$tmp/$name.run.log" | head -n 20
                tail -n 40 "$tmp/$name.run.log"
                fail "$name: crashed (rc $rc); reproducer in $artifacts/"
                continue
        fi
        grep -E '^stat::number_of_executed_units|^Done ' "$tmp/$name.run.log" | sed "s|^|  $name: |"
        echo "ok - $name"
        passed=$((passed + 1))
done

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
