#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""An engine run leaves no untagged image of its own (docker, podman).

A cache image whose tag another run moved is left untagged (<none>:<none>), and so may be a
snapshot whose tag went while something still used it.  So when a run drops its snapshots it also
deletes, by id and without force, every untagged image labelled with its own hm.run
(engine/runner.c, the sweep).  The test makes such images itself while a run is in
its second step (a container committed without a tag, labelled hm.run=<the run's id>), and one
labelled with another run's id.  Checked: the run passes; its own untagged image is gone; the
other run's is still there (the control: the sweep takes only its own run's).

Reads HM_BIN, HM_TEST_DOCKER_SOCK, HM_TEST_PODMAN_SOCK (busybox tagged alpine:3.20 there)."""
import json
import os
import sys
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Engine, Tap, per_runner, wait_until  # noqa: E402
import test_reap as R  # noqa: E402  (Runner, chain_ir, events_of, run_id_of, started)

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
tap = Tap()
R.tap = tap


def untagged_image(eng, run_id):
    """Commit a fresh container without a tag, labelled hm.run=run_id; its image id."""
    st, data = eng.request("POST", "/containers/create", json.dumps({"Image": "alpine:3.20", "Cmd": ["true"]}),
                           {"Content-Type": "application/json"})
    if st // 100 != 2:
        raise RuntimeError("create: HTTP %d %s" % (st, data[:200]))
    cid = json.loads(data)["Id"]
    try:
        q = urllib.parse.urlencode({"container": cid, "changes": "LABEL hm.run=%s" % run_id})
        st, data = eng.request("POST", "/commit?" + q, b"{}", {"Content-Type": "application/json"})
        if st // 100 != 2:
            raise RuntimeError("commit: HTTP %d %s" % (st, data[:200]))
        return json.loads(data)["Id"]
    finally:
        eng.request("DELETE", "/containers/%s?force=1" % cid)


def exists(eng, image_id):
    st, _ = eng.request("GET", "/images/%s/json" % image_id)
    return st == 200


def test(runner, work):
    eng = runner.engine
    ir_path = os.path.join(work, "sweep-%s.json" % runner.name)
    with open(ir_path, "w") as f:
        json.dump(R.chain_ir([("a", "echo a > /a.txt"), ("b", "sleep 4; cat /a.txt")]), f)
    out = os.path.join(work, "sweep-%s.out" % runner.name)
    env = dict(os.environ, XDG_CACHE_HOME=os.path.join(work, "cache-" + runner.name))
    argv = [HM, "run", "--format", "json", "-d", os.path.join(work, "src"), "-f", ir_path] + runner.run_args()
    proc = R.start_json_run(argv, env, out)
    mine = other = None
    try:
        there = wait_until(lambda: R.started(out, "b") or proc.poll() is not None, 120) and proc.poll() is None
        run_id = (R.run_id_of(out) or "").replace("-", "")
        if there and run_id:
            mine = untagged_image(eng, run_id)
            other = untagged_image(eng, "f" * 32)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ends = {e.get("key"): e.get("exit_code") for e in R.events_of(out) if e.get("kind") == "step_end"}
    tap.check(there and mine and rc == 0 and ends == {"a": 0, "b": 0},
              "%s: a two-step chain passes while the test adds untagged images labelled with its run" % runner.name,
              lambda: "there %s mine %s rc %s ends %s\n%s" % (there, mine, rc, ends, open(out, errors="replace").read()[-1500:]))
    if not mine:
        return
    tap.check(not exists(eng, mine), "%s: the run's own untagged image is gone when the run ends" % runner.name,
              lambda: mine)
    tap.check(exists(eng, other), "%s (control): an untagged image of another run is left alone" % runner.name,
              lambda: other)
    for image in (mine, other):  # what the test made, whatever the outcome
        eng.request("DELETE", "/images/%s?force=1" % image)


def main():
    if not os.access(HM, os.X_OK):
        tap.check(False, "hm binary at %s" % HM)
        return tap.summary()
    runners = []
    for name in ("docker", "podman"):
        sock = os.environ.get("HM_TEST_%s_SOCK" % name.upper(), "")
        if sock and Engine(name, sock).ping():
            runners.append(R.Runner(name, sock))
        else:
            tap.skip("%s sweep" % name, "$HM_TEST_%s_SOCK not set or not answering" % name.upper())
    return per_runner(tap, runners, "hm-sweep-", test)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
