#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Grep-based lint for the C sources (make lint).  Bans strcpy, strcat,
# sprintf/vsprintf (use snprintf or strbuf), system(), atoi/atol/atoll (use
# strtol with checks), and flags open()/openat() without O_CLOEXEC on the same
# line.  Comment lines are ignored.  A line may opt out with "lint: allow"
# in a comment, with the reason next to it.  Prints file:line: rule: text and
# exits 1 when anything is found.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
DIRS=(lib pipeline sched engine oci runtime cmd)

files=()
for d in "${DIRS[@]}"; do
        [ -d "$d" ] || continue
        while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$d" -type f \( -name '*.c' -o -name '*.h' \) -print0 | sort -z)
done
if [ ${#files[@]} -eq 0 ]; then
        echo "lint: no sources found"
        exit 0
fi

# awk does the work: one pass, comments stripped (block comments across lines,
# // comments, and string literals blanked so "system(" in a message is fine).
awk '
function report(rule) {
        printf "%s:%d: %s: %s\n", FILENAME, FNR, rule, orig
        bad++
}
FNR == 1 { incomment = 0 }
{
        orig = $0
        line = $0
        if (line ~ /lint: allow/) next
        out = ""
        i = 1
        n = length(line)
        while (i <= n) {
                c = substr(line, i, 1)
                two = substr(line, i, 2)
                if (incomment) {
                        if (two == "*/") { incomment = 0; i += 2; continue }
                        i++; continue
                }
                if (two == "/*") { incomment = 1; i += 2; continue }
                if (two == "//") break
                if (c == "\"" || c == "\047") {
                        q = c; out = out q; i++
                        while (i <= n) {
                                c = substr(line, i, 1)
                                if (c == "\\") { i += 2; continue }
                                i++
                                if (c == q) break
                        }
                        out = out q
                        continue
                }
                out = out c
                i++
        }
        code = out
        if (code ~ /(^|[^A-Za-z0-9_])strcpy[ \t]*\(/) report("strcpy is banned (use xstrdup, memcpy with a length, or strbuf)")
        if (code ~ /(^|[^A-Za-z0-9_])strcat[ \t]*\(/) report("strcat is banned (use strbuf)")
        if (code ~ /(^|[^A-Za-z0-9_])v?sprintf[ \t]*\(/) report("sprintf is banned (use snprintf or strbuf)")
        if (code ~ /(^|[^A-Za-z0-9_])system[ \t]*\(/) report("system() is banned")
        if (code ~ /(^|[^A-Za-z0-9_])ato(i|l|ll)[ \t]*\(/) report("atoi/atol are banned (use strtol and check errno and the end pointer)")
        if (code ~ /(^|[^A-Za-z0-9_>.])(open|openat)[ \t]*\(/ && orig !~ /O_CLOEXEC/) report("open()/openat() without O_CLOEXEC on the same line")
}
END {
        if (bad) { printf "lint: %d problem(s)\n", bad; exit 1 }
}
' "${files[@]}"
rc=$?
[ $rc -eq 0 ] && echo "lint: ${#files[@]} files clean"
exit $rc
