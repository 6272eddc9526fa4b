#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The ns runner's step commit while another process holds the store lock (docs/faults.md).

Another hm (a pull's commit, a collection) may hold `<store>/lock` for a while.  A step's commit
tries the lock and retries from a loop timer; before, it waited in a blocking flock() inside the
poll loop, so the whole run stood still: no output, no timers, no signals.

The test holds the lock with flock() from here while step `a` of an `a -> b` builds_in chain
ends (its commit then finds the lock held):
  - SIGINT: hm notices it (the "signal" notice event) while the test still holds the lock (the
    hang guard is 20 s; an hm blocked in flock() reads no signal before the release); after the
    release it ends with 130, `b` never started, and nothing is left: no new store tmp/ entry,
    no live ephemeral layer of the run.
  - the drop at the end: the lock is taken while the last step runs; its commit waits, a SIGINT
    cancels it, and the run's drop of `a`'s snapshot then waits for the lock; a second SIGINT
    gives the clean-up up: hm ends with 130 while the lock is still held, says "giving up the
    clean-up" and names what it left in one cleanup notice; after the release `hm reap` leaves
    no ephemeral layer of the run.
  - control, no signal: the lock is released after 1 s; the run then passes and `b` reads the
    file `a` wrote (the retry commits).
Needs alpine:3.20 in $HM_STORE (tests/run-all.sh imports it); runs as root or as the store's owner.
"""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Tap, logs_and_ends, wait_until  # noqa: E402
import test_reap as R  # noqa: E402  (store_metas, live_ephemeral_layers: the store of $HM_STORE)

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
STORE = os.environ.get("HM_STORE", "")
tap = Tap()

IR = {"version": "0", "graph": {
    "nodes": [{"env": {}, "step": {"key": "a", "label": "a", "image": "alpine:3.20",
                                   "cmd": "echo from-a > /a.txt; echo ready; sleep 1"}},
              {"env": {}, "step": {"key": "b", "label": "b", "cmd": "cat /a.txt"}}],
    "node_holes": [], "edge_property": "directed", "edges": [[0, 1, "builds_in"]]}}


events = R.events_of  # {"kind": ...} per line of an NDJSON file, unparsable lines skipped


def said_ready(path):
    return any(e.get("kind") == "step_log" and e.get("key") == "a" and e.get("line") == "ready" for e in events(path))


def noticed_signal(path):
    return any(e.get("kind") == "notice" and e.get("notice") == "signal" for e in events(path))


def run_layers(run_hex):
    """Live ephemeral layers of the run (its workspace and snapshots)."""
    live = set(R.live_ephemeral_layers())
    return sorted(i for i, m in R.store_metas().items()
                  if i in live and m.get("run", "").strip().replace("-", "") == run_hex)


def store_tmp():
    d = os.path.join(STORE, "tmp")
    return set(os.listdir(d)) if os.path.isdir(d) else set()


class StoreLock:
    """<store>/lock held with flock() from this process; released (and closed) on every path."""

    def __enter__(self):
        self.f = open(os.path.join(STORE, "lock"), "a+")
        self.held = False
        return self

    def take(self):  # may wait for hm's own short holds
        fcntl.flock(self.f, fcntl.LOCK_EX)
        self.held = True

    def release(self):
        if self.held:
            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.held = False

    def __exit__(self, *exc):
        self.release()
        self.f.close()


def start_run(work, name, ir_obj):
    """hm run --runner ns of ir_obj, events to out-NAME.json, stderr beside it; (proc, out path, env)."""
    src = os.path.join(work, "src-" + name)
    os.makedirs(src)
    ir = os.path.join(work, "ir-%s.json" % name)
    with open(ir, "w") as f:
        json.dump(ir_obj, f)
    out = os.path.join(work, "out-%s.json" % name)
    env = dict(os.environ, XDG_CACHE_HOME=os.path.join(work, "cache-" + name))
    with open(out, "wb") as o, open(out + ".err", "wb") as e:
        p = subprocess.Popen([HM, "run", "--runner", "ns", "--format", "json", "-d", src, "-f", ir], stdout=o,
                             stderr=e, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    return p, out, env


def stop_run(p):
    if p.poll() is None:
        p.kill()
        p.wait()


def describe(rc, out):
    return "rc %s\n%s\nstderr: %s" % (rc, open(out, errors="replace").read()[-2500:],
                                       open(out + ".err", errors="replace").read()[-800:])


def run_case(work, interrupt):
    name = "SIGINT" if interrupt else "control"
    tmp_before = store_tmp()
    noticed = None
    p, out, env = start_run(work, name, IR)
    try:
        with StoreLock() as lock:
            ready = wait_until(lambda: said_ready(out) or p.poll() is not None, 60) and p.poll() is None
            if ready:
                lock.take()  # a's "sleep 1" still runs
            if interrupt:
                time.sleep(1.5)  # a's "sleep 1" is over: its commit is waiting (or blocked) on the lock
                p.send_signal(signal.SIGINT)
                noticed = wait_until(lambda: noticed_signal(out), 20)  # the lock is still held here
            else:
                time.sleep(1.0)
        rc = p.wait(timeout=120)
    finally:
        stop_run(p)
    text = open(out, errors="replace").read()
    logs, ends = logs_and_ends(text)
    desc = lambda: describe(rc, out)  # noqa: E731
    tap.check(ready, "%s: step a ran, then the test took the store lock" % name, desc)
    run_hex = next((e.get("run_id", "").replace("-", "") for e in events(out) if e.get("kind") == "build_start"), "")
    if interrupt:
        tap.check(noticed, "%s: hm reads the SIGINT while its commit waits for the store lock held here" % name,
                  desc)
        tap.check(rc == 130 and "b" not in ends and "b" not in logs,
                  "%s: after the release hm ends with 130 and b never started" % name, desc)
        left = sorted(store_tmp() - tmp_before)
        layers = run_layers(run_hex) if run_hex else ["(no run id)"]
        tap.check(not left and not layers, "%s: nothing of the run is left in the store (tmp/, ephemeral layers)"
                  % name, lambda: "tmp %s layers %s\n%s" % (left, layers, desc()))
    else:
        tap.check(rc == 0 and ends.get("a") == 0 and ends.get("b") == 0 and logs.get("b") == ["from-a"],
                  "%s: with the lock released after 1 s the commit goes on: the run passes and b reads a's file"
                  % name, desc)


IR_DROP = {"version": "0", "graph": {
    "nodes": [{"env": {}, "step": {"key": "a", "label": "a", "image": "alpine:3.20", "cmd": "echo from-a > /a.txt"}},
              {"env": {}, "step": {"key": "b", "label": "b", "cmd": "cat /a.txt; echo ready; sleep 1"}}],
    "node_holes": [], "edge_property": "directed", "edges": [[0, 1, "builds_in"]]}}


def drop_case(work):
    name = "drop"
    gone = dropping = False
    p, out, env = start_run(work, name, IR_DROP)
    try:
        with StoreLock() as lock:
            ready = wait_until(lambda: any(ev.get("kind") == "step_log" and ev.get("key") == "b" and
                                           ev.get("line") == "ready" for ev in events(out)) or p.poll() is not None, 60)
            ready = ready and p.poll() is None
            if ready:
                lock.take()
                # b's command ends; its commit waits for the lock.  The first SIGINT cancels that commit,
                # and the run's end then drops a's snapshot, which waits for the lock too.
                time.sleep(1.5)
                p.send_signal(signal.SIGINT)
                dropping = wait_until(lambda: any(ev.get("kind") == "step_end" and ev.get("key") == "b"
                                                  for ev in events(out)), 20)
                time.sleep(0.5)
                p.send_signal(signal.SIGINT)
                gone = wait_until(lambda: p.poll() is not None, 20)  # the lock is still held here
        rc = p.wait(timeout=120)
    finally:
        stop_run(p)
    evs = events(out)
    desc = lambda: describe(rc, out)  # noqa: E731
    notes = [ev.get("message", "") for ev in evs if ev.get("kind") == "notice"]
    left = [m for m in notes if "locked by another process" in m and "left for hm reap" in m]
    tap.check(ready and dropping and gone and rc == 130 and any("giving up the clean-up" in m for m in notes)
              and len(left) == 1,
              "%s: a SIGINT ends the run while the store lock is held here, its drop waits for the lock, a second "
              "SIGINT gives it up: hm ends with 130 and names what it left in one notice" % name, desc)
    run_hex = next((ev.get("run_id", "").replace("-", "") for ev in evs if ev.get("kind") == "build_start"), "")
    before = run_layers(run_hex) if run_hex else []
    rp = subprocess.run([HM, "reap", "--runner", "ns"], capture_output=True, text=True, timeout=120, env=env)
    after = run_layers(run_hex) if run_hex else ["(no run id)"]
    tap.check(before and rp.returncode == 0 and not after,
              "%s: the layers it left (%d) are gone after hm reap" % (name, len(before)),
              lambda: "before %s after %s\n%s%s" % (before, after, rp.stdout, rp.stderr))


def main():
    if not STORE or not os.path.isdir(os.path.join(STORE, "tags")):
        tap.skip("store lock", "$HM_STORE with alpine:3.20 not set")
        return tap.summary()
    work = tempfile.mkdtemp(prefix="hm-storelock-")
    try:
        run_case(work, interrupt=True)
        run_case(work, interrupt=False)
        drop_case(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tap.summary()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
