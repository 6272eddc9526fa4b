#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A cache tag that moves leaves no orphan image behind (docker and podman).

Two runs of one cacheable step with different cache indexes (XDG_CACHE_HOME): the second
run's index has no entry, so the step runs again and its commit moves the engine's cache tag
from the first run's image to a new one.  The first image is then untagged but still labelled
hm.run; hm must remove it.  Control: the tag really moved (two different image ids), so an
orphan would have existed; and the new cache image is kept.

Reads HM_BIN, HM_TEST_DOCKER_SOCK, HM_TEST_PODMAN_SOCK (busybox tagged alpine:3.20 there)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Engine, Tap  # noqa: E402

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
tap = Tap()


def ir(key):
    step = {"key": "deps", "label": "deps", "image": "alpine:3.20",
            "cmd": "date +%s%N > /stamp",
            "cache": {"env_keys": [], "key": key, "policy": "forever"}}
    return {"version": "0", "graph": {"nodes": [{"env": {}, "step": step}], "node_holes": [],
                                      "edge_property": "directed", "edges": []}}


def run(runner, sock, cache_home, work, irfile):
    env = dict(os.environ, XDG_CACHE_HOME=cache_home)
    return subprocess.run([HM, "run", "--runner", runner, "--socket", sock, "-f", irfile, "-d", work,
                           "--format", "json"], env=env, capture_output=True, text=True, timeout=180)


def images_with_label(eng, run_ids):
    out = []
    for img in eng.images():
        labels = img.get("Labels") or {}
        if labels.get("hm.run") in run_ids:
            out.append(img)
    return out


def run_ids(stdout):
    ids = set()
    for line in stdout.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and ev.get("run_id"):
            ids.add(ev["run_id"].replace("-", ""))  # labels carry it without dashes
    return ids


def case(runner, sock):
    eng = Engine(runner, sock)
    tmp = tempfile.mkdtemp(prefix="hm-retag.")
    try:
        work = os.path.join(tmp, "ws")
        os.mkdir(work)
        irfile = os.path.join(tmp, "ir.json")
        with open(irfile, "w") as f:
            json.dump(ir(uuid.uuid4().hex * 2), f)
        a = run(runner, sock, os.path.join(tmp, "cache-a"), work, irfile)
        b = run(runner, sock, os.path.join(tmp, "cache-b"), work, irfile)
        tap.check(a.returncode == 0 and b.returncode == 0, "%s: both runs pass" % runner,
                  lambda: a.stderr[-400:] + b.stderr[-400:])
        ids = run_ids(a.stdout) | run_ids(b.stdout)
        tap.check(len(ids) == 2, "%s: two run ids seen in the events" % runner, lambda: str(ids))
        # Every image either run committed, tagged or not (the orphan would be untagged).
        imgs = images_with_label(eng, ids)
        tagged = [i for i in imgs if i.get("RepoTags") and i["RepoTags"] != ["<none>:<none>"]]
        untagged = [i for i in imgs if i not in tagged]
        tap.check(len(tagged) == 1, "%s: the cache image of the second run is kept" % runner,
                  lambda: json.dumps(imgs)[:600])
        tap.check(not untagged, "%s: no untagged image of the first run is left" % runner,
                  lambda: json.dumps(untagged)[:600])
        if tagged:
            labels = tagged[0].get("Labels") or {}
            tap.check(labels.get("hm.run") in run_ids(b.stdout),
                      "%s: control: the tag moved to the second run's image" % runner,
                      lambda: json.dumps(tagged[0])[:400])
        for img in imgs:  # leave the engine as found
            eng.request("DELETE", "/images/%s?force=1" % img["Id"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    socks = [("docker", os.environ.get("HM_TEST_DOCKER_SOCK")), ("podman", os.environ.get("HM_TEST_PODMAN_SOCK"))]
    for runner, sock in socks:
        if not sock:
            tap.skip("%s: cache tag moved" % runner, "HM_TEST_%s_SOCK not set" % runner.upper())
            continue
        case(runner, sock)
    sys.exit(0 if tap.summary() else 1)


if __name__ == "__main__":
    main()
