#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Pipelines (v0 IR) and peer inputs for tests/bench/run.sh.

  gen.py chain N IMAGE [CMD]        N steps, each builds_in the previous one
  gen.py dag N SEED                 random DAG of N `true` steps (image busybox:bench)
  gen.py ninja N SEED               build.ninja with the same DAG as `dag N SEED`
  gen.py fanout N IMAGE CMD         N independent steps
  gen.py cached N IMAGE SALT        N independent cacheable steps (policy forever)
  gen.py log IMAGE BYTES            one step writing BYTES bytes of lines
"""
import hashlib
import json
import random
import sys


def node(key, cmd, image=None, cache=None):
    step = {"cmd": cmd, "key": key, "label": key}
    if image:
        step["image"] = image
    if cache:
        step["cache"] = cache
    return {"env": {}, "step": step}


def ir(nodes, edges):
    return {"version": "0",
            "graph": {"edge_property": "directed", "edges": edges,
                      "node_holes": [], "nodes": nodes}}


def dump(doc):
    json.dump(doc, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


def dag_edges(n, seed):
    """Each step i > 0 depends on 1-3 random earlier steps (no duplicates),
    biased towards recent ones so the DAG is deep as well as wide."""
    rng = random.Random(seed)
    deps = [[] for _ in range(n)]
    for i in range(1, n):
        k = min(i, rng.randint(1, 3))
        chosen = set()
        while len(chosen) < k:
            lo = max(0, i - 200) if rng.random() < 0.8 else 0
            chosen.add(rng.randrange(lo, i))
        deps[i] = sorted(chosen)
    return deps


def main(argv):
    what = argv[1]
    if what == "chain":
        n, image = int(argv[2]), argv[3]
        cmd = argv[4] if len(argv) > 4 else "true"
        nodes = [node("s%d" % i, cmd, image if i == 0 else None) for i in range(n)]
        edges = [[i - 1, i, "builds_in"] for i in range(1, n)]
        dump(ir(nodes, edges))
    elif what == "dag":
        n, seed = int(argv[2]), int(argv[3])
        deps = dag_edges(n, seed)
        nodes = [node("s%d" % i, "true", "busybox:bench") for i in range(n)]
        edges = [[d, i, "depends_on"] for i in range(n) for d in deps[i]]
        dump(ir(nodes, edges))
    elif what == "ninja":
        n, seed = int(argv[2]), int(argv[3])
        deps = dag_edges(n, seed)
        out = sys.stdout
        # A real command and non-existent outputs, so `ninja -n` has to
        # consider and "run" every edge in dependency order.
        out.write("rule step\n  command = true\n\n")
        for i in range(n):
            ins = " ".join("out/s%d" % d for d in deps[i])
            out.write("build out/s%d: step%s\n" % (i, (" | " + ins) if ins else ""))
        out.write("\ndefault %s\n" % " ".join("out/s%d" % i for i in range(n)))
    elif what == "fanout":
        n, image, cmd = int(argv[2]), argv[3], argv[4]
        dump(ir([node("s%d" % i, cmd, image) for i in range(n)], []))
    elif what == "cached":
        n, image, salt = int(argv[2]), argv[3], argv[4]
        nodes = []
        for i in range(n):
            key = hashlib.sha256(("%s:%d" % (salt, i)).encode()).hexdigest()
            cache = {"env_keys": [], "key": key, "policy": "forever"}
            nodes.append(node("s%d" % i, "echo %d > /stamp" % i, image, cache))
        dump(ir(nodes, []))
    elif what == "log":
        image, nbytes = argv[2], int(argv[3])
        cmd = "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c %d" % nbytes
        dump(ir([node("log", cmd, image)], []))
    else:
        sys.exit("gen.py: unknown kind '%s'" % what)


if __name__ == "__main__":
    main(sys.argv)
