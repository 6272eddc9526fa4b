#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Two runs commit the same cache tag inside each other's commit window: no orphan (ns, docker, podman).

Both runs share one $XDG_CACHE_HOME and run one cacheable step with a fresh key, so both miss
and both commit the tag.  Run A is started with the test-only hook HM_TEST_COMMIT_PAUSE_MS
(pipeline/cache.h), which holds A inside its commit window; run B is started once A is there:
  - ns: A has committed its layer (the store's tag names it) and waits before its index write;
    without the commit lock B commits and writes the index meanwhile, A's later write points the
    index at A's layer, and B's layer keeps the tag without an index entry: it is never evicted
    nor cleaned (an orphan).
  - docker/podman: A has looked the tag up (not there) and waits before its commit; without the
    lock B looks up (not there either), commits and writes the index, then A's commit moves the
    tag and B's image is left untagged with the label hm.run: nobody ever removes it.
With the commit lock (the default) B waits for A's index write, then sees A's snapshot under the
tag and replaces it properly.  Checked per runner: both runs pass; ns: the index entry names the
layer the store's tag names, and every snapshot layer of the two runs is that one or ephemeral
(collectable); engines: no image of the two runs is untagged, the index entry's image exists.
Control: the same with HM_TEST_NO_COMMIT_LOCK=1 (test-only) shows the orphan, so the checks can
see it and the interleaving was really forced.

Waiting for the lock must not stop a run's loop: B, whose step has ended and who waits for the
lock A holds (A held longer this time), is sent SIGINT.  B must end (exit 130, its step not
committed) while A still holds the lock, and A then passes with the one index entry.  An hm
that waited in flock() inside its loop (as the ns runner did) only ends B after A's index write.

Reads HM_BIN, HM_STORE (ns, root, alpine:3.20 imported), HM_TEST_DOCKER_SOCK,
HM_TEST_PODMAN_SOCK (busybox tagged alpine:3.20 there)."""
import json
import os
import random
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Tap, per_runner, pick_runners, wait_until  # noqa: E402
import test_reap as R  # noqa: E402  (Runner, store_metas)

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
STORE = os.environ.get("HM_STORE", "")
tap = Tap()
R.tap = tap
PAUSE_MS = {"ns": 3000, "docker": 6000, "podman": 8000}
HOLD_MS = {"ns": 8000, "docker": 10000, "podman": 12000}  # interrupt(): A's hold, well past B's SIGINT


def ir(key, cmd="date +%s%N > /stamp"):
    step = {"key": "deps", "label": "deps", "image": "alpine:3.20", "cmd": cmd,
            "cache": {"env_keys": [], "key": key, "policy": "forever"}}
    return {"version": "0", "graph": {"nodes": [{"env": {}, "step": step}], "node_holes": [],
                                      "edge_property": "directed", "edges": []}}


events = R.events_of


def run_id(path):
    return R.run_id_of(path) or None


def index_entries(env, tag):
    p = subprocess.run([HM, "cache", "ls"], capture_output=True, text=True, timeout=60, env=env)
    return [r.split() for r in p.stdout.splitlines()[1:] if len(r.split()) >= 4 and r.split()[1] == tag]


def store_tag(tag):
    esc = "".join(c if c.isalnum() or c in "-_." else "%%%02X" % ord(c) for c in tag)
    try:
        with open(os.path.join(STORE, "tags", esc)) as f:
            return f.read().strip()
    except OSError:
        return None


def untagged(img):
    tags = img.get("RepoTags") or []
    return not [t for t in tags if t and t != "<none>:<none>"]


def a_in_window(runner, a_out, tag, a_run):
    """A is inside its commit window: ns, the tag exists (A committed); engines, A's container
    exited (its lookup follows at once; the pause is long enough for B's step to catch up)."""
    if not runner.engine:
        return store_tag(tag) is not None
    rid = a_run()
    if not rid:
        return False
    for c in runner.engine.containers():
        if (c.get("Labels") or {}).get("hm.run") == rid and c.get("State") == "exited":
            return True
    return False


class Pair:
    """Runs A and B of one pipeline with one cacheable step (fresh key), sharing a cache dir."""

    def __init__(self, runner, work, name, cmd="date +%s%N > /stamp", locked=True):
        self.runner = runner
        key = "%064x" % random.getrandbits(256)
        self.tag = "harmont-cache/deps:" + key[:16]
        cache_home = os.path.join(work, "cache-" + name)
        os.makedirs(cache_home)
        irf = os.path.join(work, "race-%s.json" % name)
        with open(irf, "w") as f:
            json.dump(ir(key, cmd), f)
        self.env = dict(os.environ, XDG_CACHE_HOME=cache_home)
        for k in ("HM_TEST_COMMIT_PAUSE_MS", "HM_TEST_NO_COMMIT_LOCK"):
            self.env.pop(k, None)
        if not locked:
            self.env["HM_TEST_NO_COMMIT_LOCK"] = "1"
        self.argv = [HM, "run", "--format", "json", "-d", os.path.join(work, "src"), "-f", irf] + runner.run_args()
        self.outs = {k: os.path.join(work, "%s-%s.json" % (name, k)) for k in "ab"}
        self.files = {k: open(self.outs[k], "w") for k in "ab"}
        self.procs = {}

    def start(self, k, pause_ms=0):
        env = dict(self.env, HM_TEST_COMMIT_PAUSE_MS=str(pause_ms)) if pause_ms else self.env
        self.procs[k] = subprocess.Popen(self.argv, stdout=self.files[k], stderr=subprocess.PIPE, text=True, env=env)

    def a_held(self):
        """A started with a pause is inside its commit window (and still running)."""
        a = self.procs["a"]
        there = wait_until(lambda: a_in_window(self.runner, self.outs["a"], self.tag, lambda: run_id(self.outs["a"])) or
                           a.poll() is not None, 120)
        return bool(there) and a.poll() is None

    def stderr(self):
        return {k: p.stderr.read() for k, p in self.procs.items()}

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in self.files.values():
            f.close()

    def runs(self):
        return {run_id(self.outs[k]) for k in "ab"} - {None}

    def forget(self):
        """Remove what the two runs made: the cache entry and its snapshot (and, in the control, the orphan)."""
        runs = self.runs()
        subprocess.run([HM, "cache", "clean"], capture_output=True, text=True, timeout=120, env=self.env)
        if self.runner.engine:
            for i in self.runner.engine.images():
                if (i.get("Labels") or {}).get("hm.run") in runs:
                    self.runner.engine.request("DELETE", "/images/%s?force=1" % i["Id"])
        else:
            subprocess.run([HM, "reap", "--runner", "ns"], capture_output=True, text=True, timeout=120, env=self.env)


def race(runner, work, locked):
    name = "%s-%s" % (runner.name, "lock" if locked else "nolock")
    pair = Pair(runner, work, name, locked=locked)
    tag, env = pair.tag, pair.env
    try:
        pair.start("a", PAUSE_MS[runner.name])
        there = pair.a_held()
        pair.start("b")
        rc = {k: pair.procs[k].wait(timeout=300) for k in "ab"}
        err = pair.stderr()
    finally:
        pair.close()
    runs = pair.runs()
    ok_runs = rc == {"a": 0, "b": 0} and len(runs) == 2
    tap.check(there and ok_runs, "%s: A held in its commit window while B ran, both passed" % name,
              lambda: "in window: %s rc: %s\nA: %s\nB: %s" % (there, rc, err["a"][-600:], err["b"][-600:]))
    entries = index_entries(env, tag)
    problems = []
    if len(entries) != 1:
        problems.append("index entries for %s: %s" % (tag, entries))
    if runner.engine:
        mine = [i for i in runner.engine.images() if (i.get("Labels") or {}).get("hm.run") in runs]
        orphans = [(i.get("Id", "")[:19], i.get("RepoTags")) for i in mine if untagged(i)]
        if orphans:
            problems.append("untagged images of the two runs: %s" % orphans)
        st, _ = runner.engine.request("GET", "/images/%s/json" % ("localhost/" + tag))
        if st != 200:
            problems.append("the tag's image is missing (HTTP %d)" % st)
    else:
        target = store_tag(tag)
        if entries and entries[0][3] != target:
            problems.append("index names %s, the store's tag names %s" % (entries[0][3], target))
        metas = R.store_metas()
        for i, m in metas.items():
            if m.get("kind", "").strip() != "snapshot" or m.get("run", "").strip().replace("-", "") not in runs:
                continue
            live = m.get("dropped", "0").strip() in ("0", "") and m.get("ephemeral", "0").strip() in ("0", "")
            if live and i != target:
                problems.append("layer %s of a run is neither the tag's nor ephemeral" % i)
            if live and entries and i != entries[0][3]:
                problems.append("layer %s is kept but not in the index" % i)
    pair.forget()
    return ok_runs and there, problems


def interrupt(runner, work):
    pair = Pair(runner, work, "%s-int" % runner.name, cmd="date +%s%N > /stamp; echo cmd-done")
    procs, rc, a_running_at_b_exit = pair.procs, {}, None
    b_done = lambda: any(ev.get("kind") == "step_log" and "cmd-done" in (ev.get("line") or "")  # noqa: E731
                         for ev in events(pair.outs["b"]))
    try:
        pair.start("a", HOLD_MS[runner.name])
        there = pair.a_held()
        pair.start("b")
        waiting = wait_until(lambda: b_done() or procs["b"].poll() is not None, 120) and procs["b"].poll() is None
        time.sleep(1.0)  # B's runner has seen the step end and found the lock taken
        procs["b"].send_signal(2)
        rc["b"] = procs["b"].wait(timeout=300)
        a_running_at_b_exit = procs["a"].poll() is None
        rc["a"] = procs["a"].wait(timeout=300)
        err = pair.stderr()
    finally:
        pair.close()
    b_end = [ev for ev in events(pair.outs["b"]) if ev.get("kind") == "step_end"]
    tap.check(there and waiting and rc.get("b") == 130 and a_running_at_b_exit and
              len(b_end) == 1 and b_end[0].get("exit_code") != 0 and not b_end[0].get("snapshot"),
              "%s: B, waiting for the commit lock A holds, ends on SIGINT (130, nothing committed) while A still "
              "holds it" % runner.name,
              lambda: "A in window %s, B's step ended %s, rc %s, A running when B ended %s, B step_end %s\nB: %s"
              % (there, waiting, rc, a_running_at_b_exit, b_end, err["b"][-600:]))
    entries = index_entries(pair.env, pair.tag)
    leftover = []
    if runner.engine:
        b_run = run_id(pair.outs["b"])
        leftover = [i.get("Id", "")[:19] for i in runner.engine.images() if (i.get("Labels") or {}).get("hm.run") == b_run]
    tap.check(rc.get("a") == 0 and len(entries) == 1 and (runner.engine or entries[0][3] == store_tag(pair.tag)) and
              not leftover,
              "%s: then A passes; the index holds its one entry; nothing of B is left" % runner.name,
              lambda: "rc %s entries %s store tag %s images of B %s\nA: %s" % (rc, entries, store_tag(pair.tag), leftover,
                                                                             err["a"][-600:]))
    pair.forget()


def test(runner, work):
    ran, problems = race(runner, work, locked=True)
    tap.check(ran and not problems, "%s: with the commit lock, no orphan and the index names the tag's snapshot"
              % runner.name, lambda: "\n".join(problems))
    ran, problems = race(runner, work, locked=False)
    tap.check(ran and problems, "%s (control): without the lock the same interleaving leaves an orphan "
              "the checks see" % runner.name, lambda: "no problem found: the window was not forced")
    if problems:
        tap.diag("%s control: %s" % (runner.name, "; ".join(problems)))
    interrupt(runner, work)


def main():
    if not os.access(HM, os.X_OK):
        tap.check(False, "hm binary at %s" % HM)
        return tap.summary()
    runners = pick_runners(tap, lambda n, s=None: R.Runner(n, s), STORE)
    return per_runner(tap, runners, "hm-cache-race-", test)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
