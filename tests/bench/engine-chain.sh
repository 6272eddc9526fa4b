#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# engine-chain.sh docker|podman SOCKET IMAGE N PREFIX
#
# The peer of an N-step builds_in chain on hm's engine runner, done with the
# engine's own CLI: each step runs `true` in a container made from the
# previous step's commit, commits it and removes the container; at the end
# the N committed images are removed (hm reaps its snapshots too, inside its
# wall time).  No network, like hm's runs in bench.py (ENGINE_NET).  Prints one $EPOCHREALTIME line per finished step, then "end".
set -euo pipefail

kind=${1:?usage: engine-chain.sh docker|podman SOCKET IMAGE N PREFIX}
sock=${2:?}
image=${3:?}
n=${4:?}
prefix=${5:?}

case $kind in
docker) cli=(docker -H "unix://$sock") ;;
podman) cli=(podman --url "unix://$sock") ;;
*)
        echo "engine-chain: unknown engine '$kind'" >&2
        exit 2
        ;;
esac

made=()
cleanup() {
        "${cli[@]}" rm -f "$prefix-c" >/dev/null 2>&1 || true
        if [ ${#made[@]} -gt 0 ]; then
                "${cli[@]}" rmi -f "${made[@]}" >/dev/null 2>&1 || true
        fi
}
trap cleanup EXIT

from=$image
for ((i = 1; i <= n; i++)); do
        "${cli[@]}" run --name "$prefix-c" --network none "$from" true >/dev/null
        "${cli[@]}" commit "$prefix-c" "$prefix-img:$i" >/dev/null
        made+=("$prefix-img:$i")
        "${cli[@]}" rm "$prefix-c" >/dev/null
        from=$prefix-img:$i
        echo "$EPOCHREALTIME"
done
"${cli[@]}" rmi "${made[@]}" >/dev/null
made=()
echo end
