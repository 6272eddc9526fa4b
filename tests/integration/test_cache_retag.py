#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A cache tag that moves leaves no orphan image behind (docker and podman).

Two runs of one cacheable step with different cache indexes (XDG_CACHE_HOME): the second
run's index has no entry, so the step runs again and its commit moves the engine's cache tag
from the first run's image to a new one.  The first image is then untagged but still labelled
hm.run; hm must remove it.  Control: the tag really moved (two different image ids), so an
orphan would have existed; and the new cache image is kept.

In use (the leftover test_nested saw, made by test_concurrent): the first run is still using its
cache image (a second step runs on it) when the second run moves the tag, so the second run's
delete of the old image is refused (409).  The first run is then SIGKILLed: nobody is left to
remove the untagged image but `hm reap`.  Checked: before the reap the untagged image of the
killed run is there (the control: the orphan exists); after `hm reap` nothing of the killed run is
left, and the second run's cache image is kept.

Reads HM_BIN, HM_TEST_DOCKER_SOCK, HM_TEST_PODMAN_SOCK (busybox tagged alpine:3.20 there)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Engine, Tap, wait_until  # noqa: E402

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
tap = Tap()


def ir(key, hold=False):
    step = {"key": "deps", "label": "deps", "image": "alpine:3.20",
            "cmd": "date +%s%N > /stamp",
            "cache": {"env_keys": [], "key": key, "policy": "forever"}}
    nodes, edges = [{"env": {}, "step": step}], []
    if hold:  # a second step on deps' snapshot, running until killed
        nodes.append({"env": {}, "step": {"key": "hold", "label": "hold", "cmd": "echo holding; sleep 120"}})
        edges.append([0, 1, "builds_in"])
    return {"version": "0", "graph": {"nodes": nodes, "node_holes": [], "edge_property": "directed",
                                      "edges": edges}}


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


def untagged(imgs):
    return [i for i in imgs if not i.get("RepoTags") or i["RepoTags"] == ["<none>:<none>"]]


def case_in_use(runner, sock):
    """The old image is in use by its own (then killed) run when the tag moves."""
    eng = Engine(runner, sock)
    tmp = tempfile.mkdtemp(prefix="hm-retag-use.")
    a = None
    try:
        work = os.path.join(tmp, "ws")
        os.mkdir(work)
        key = uuid.uuid4().hex * 2
        ir_a, ir_b = os.path.join(tmp, "a.json"), os.path.join(tmp, "b.json")
        with open(ir_a, "w") as f:
            json.dump(ir(key, hold=True), f)
        with open(ir_b, "w") as f:
            json.dump(ir(key), f)
        out_a = os.path.join(tmp, "a.out")
        with open(out_a, "wb") as out:
            a = subprocess.Popen([HM, "run", "--runner", runner, "--socket", sock, "-f", ir_a, "-d", work,
                                  "--format", "json"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache-a")),
                                 start_new_session=True)

        def a_run():
            ids = run_ids(open(out_a, errors="replace").read())
            return next(iter(ids)) if ids else None

        def holding():
            rid = a_run()
            return rid and any((c.get("Labels") or {}).get("hm.step") == "hold" and c.get("State") == "running"
                               for c in eng.containers() if (c.get("Labels") or {}).get("hm.run") == rid)
        there = wait_until(lambda: holding() or a.poll() is not None, 120) and a.poll() is None
        rid_a = a_run()
        b = run(runner, sock, os.path.join(tmp, "cache-b"), work, ir_b)
        a.send_signal(signal.SIGKILL)
        a.wait()
        ids_b = run_ids(b.stdout)
        tap.check(there and b.returncode == 0 and rid_a and len(ids_b) == 1,
                  "%s: a second run commits the tag while the first run's next step uses the old image" % runner,
                  lambda: "there %s rc %s\nA: %s\nB: %s" % (there, b.returncode, open(out_a, errors="replace").read()[-800:],
                                                          b.stderr[-800:]))
        if not rid_a:
            return
        orphan = untagged(images_with_label(eng, {rid_a}))
        tap.check(orphan, "%s (control): the killed run's cache image is left untagged (the mover's delete "
                  "was refused while it was in use)" % runner, lambda: json.dumps(images_with_label(eng, {rid_a}))[:600])
        env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache-a"))
        rp = subprocess.run([HM, "reap", "--runner", runner, "--socket", sock], capture_output=True, text=True,
                            timeout=120, env=env)
        left = images_with_label(eng, {rid_a}) + [c for c in eng.containers()
                                                  if (c.get("Labels") or {}).get("hm.run") == rid_a]
        tap.check(rp.returncode == 0 and not left, "%s: hm reap leaves nothing of the killed run" % runner,
                  lambda: "rc %d\n%s%s\nleft: %s" % (rp.returncode, rp.stdout, rp.stderr, json.dumps(left)[:600]))
        kept = [i for i in images_with_label(eng, ids_b) if i not in untagged([i])]
        tap.check(len(kept) == 1, "%s: hm reap keeps the second run's cache image" % runner,
                  lambda: json.dumps(images_with_label(eng, ids_b))[:600])
        for img in images_with_label(eng, ids_b | {rid_a}):  # leave the engine as found
            eng.request("DELETE", "/images/%s?force=1" % img["Id"])
    finally:
        if a and a.poll() is None:
            a.kill()
            a.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    socks = [("docker", os.environ.get("HM_TEST_DOCKER_SOCK")), ("podman", os.environ.get("HM_TEST_PODMAN_SOCK"))]
    for runner, sock in socks:
        if not sock:
            tap.skip("%s: cache tag moved" % runner, "HM_TEST_%s_SOCK not set" % runner.upper())
            continue
        case(runner, sock)
        case_in_use(runner, sock)
    sys.exit(0 if tap.summary() else 1)


if __name__ == "__main__":
    main()
