#!/bin/sh
# Run every C unit test binary in BUILD/tests and summarise as TAP.
build=${1:-build}
pass=0 fail=0 skip=0
for t in "$build"/tests/test-*; do
        [ -x "$t" ] || continue
        out=$("$t" 2>&1); rc=$?
        printf '%s\n' "$out" | sed "s|^|  $(basename "$t"): |" | grep -E 'not ok|^  [^:]*: #' || true
        if [ $rc -eq 77 ]; then skip=$((skip+1)); echo "skip $(basename "$t")";
        elif [ $rc -eq 0 ]; then pass=$((pass+1)); echo "ok   $(basename "$t") ($(printf '%s\n' "$out" | grep -c '^ok'))";
        else fail=$((fail+1)); echo "FAIL $(basename "$t") (rc $rc)"; fi
done
echo "unit ($build): $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
