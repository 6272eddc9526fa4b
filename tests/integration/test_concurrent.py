#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Two `hm run`s at once on one store and one cache, one of them SIGKILLed mid-run.

Per runner (ns with $HM_STORE, docker with $HM_TEST_DOCKER_SOCK): both runs start together with the
same $XDG_CACHE_HOME and the same 3-step builds_in chain, whose first step is cacheable with a
fresh key (both miss it and commit the same cache tag at about the same moment), whose second
sleeps.  The one called "killed" is SIGKILLed while its second step sleeps.  Then:
  - the other run completes with exit 0, every step passed, and saw its parent's file
  - `hm cache ls` loads, holds exactly one entry for the key, and that entry's snapshot exists
    (ns: a live layer in the store; docker: the image)
  - `hm reap --dry-run` lists only objects of the killed run (its pid, run id or tmp dirs), and
    lists some (control: the killed run did leave something); `hm reap` then leaves nothing of
    it (engines: no image labelled with its run id but the cache entry's own, untagged cache
    images included), and the cache entry's snapshot is still there.  On ns it may also list the other run's
    cache snapshot that lost the tag to the killed run's commit (demoted to ephemeral when the tag
    moved: garbage of a finished run), never the entry's own snapshot
  - ns: afterwards no snapshot layer of the two runs is left that is neither tagged nor ephemeral
    (such a layer would never be collected)
Needs root for the ns runner; busybox alpine:3.20 in $HM_STORE and on the engine.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Tap, per_runner, pick_runners, reap_zombies, set_child_subreaper, wait_until  # noqa: E402
import test_reap as R  # noqa: E402  (chain_ir, Runner, snapshot helpers, event files)

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
STORE = os.environ.get("HM_STORE", "")
tap = Tap()
R.tap = tap


def cache_entries(env, key16):
    p = subprocess.run([HM, "cache", "ls"], capture_output=True, text=True, timeout=60, env=env)
    rows = [r.split() for r in p.stdout.splitlines()[1:]]
    return p, [r for r in rows if len(r) >= 4 and r[1].endswith(":" + key16)]


def snapshot_exists(runner, snap):
    if runner.engine:
        st, _ = runner.engine.request("GET", "/images/%s/json" % snap)
        return st == 200
    meta = os.path.join(STORE, "layers", snap + ".meta")
    if not os.path.exists(meta):
        return False
    with open(meta) as f:
        m = dict((l.split(" ", 1) + [""])[:2] for l in f.read().splitlines() if l)
    return m.get("dropped", "0") in ("0", "")


def layer_run(line):
    """The run id in the metadata of the ns layer a reap line names, or None."""
    word = next((w for w in line.split() if w.startswith("layers/")), None)
    try:
        with open(os.path.join(STORE, word + ".meta")) as f:
            m = dict((l.split(" ", 1) + [""])[:2] for l in f.read().splitlines() if l)
        return m.get("run", "").replace("-", "")
    except (OSError, TypeError):
        return None


def concurrent_test(runner, work):
    name = runner.name
    cache_home = os.path.join(work, "cache-" + name)
    os.makedirs(cache_home)
    env = R.hm_env(cache_home)
    src = os.path.join(work, "src")
    key = "%064x" % random.getrandbits(256)
    ir_path = os.path.join(work, "conc-%s.json" % name)
    with open(ir_path, "w") as f:
        json.dump(R.chain_ir([("a", "echo a > /a.txt"), ("b", "sleep 3; cat /a.txt; echo b > /b.txt"),
                              ("c", "cat /b.txt")], key), f)
    argv = [HM, "run", "--format", "json", "-d", src, "-f", ir_path] + runner.run_args()
    outs = {n: os.path.join(work, "conc-%s-%s.out" % (name, n)) for n in ("live", "killed")}
    procs = {n: R.start_json_run(argv, env, outs[n]) for n in ("live", "killed")}
    try:
        ok = wait_until(lambda: R.started(outs["killed"], "b"), 60)
        time.sleep(1.0 if runner.engine else 0.3)
        killed_pid = procs["killed"].pid
        killed_run = R.run_id_of(outs["killed"])
        os.kill(killed_pid, signal.SIGKILL)
        procs["killed"].wait()
        tap.check(ok and procs["live"].poll() is None, "%s: one run SIGKILLed mid-step while the other runs" % name,
                  lambda: open(outs["killed"], errors="replace").read()[-2000:])
        procs["live"].wait(timeout=120)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    reap_zombies()
    evs = R.events_of(outs["live"])
    ends = {e.get("key"): e.get("exit_code") for e in evs if e.get("kind") == "step_end"}
    logs = [e.get("line") for e in evs if e.get("kind") == "step_log"]
    tap.check(procs["live"].returncode == 0 and ends == {"a": 0, "b": 0, "c": 0} and logs == ["a", "b"],
              "%s: the other run completes with exit 0, every step passed" % name,
              lambda: "rc %s\n%s" % (procs["live"].returncode, open(outs["live"], errors="replace").read()[-3000:]))
    p, rows = cache_entries(env, key[:16])
    snap = rows[0][3] if len(rows) == 1 and len(rows[0]) >= 4 else None
    tap.check(p.returncode == 0 and len(rows) == 1 and snap and snapshot_exists(runner, snap),
              "%s: the cache index loads, one entry for the key, its snapshot exists (%s)" % (name, snap),
              "rc %d\n%s%s" % (p.returncode, p.stdout, p.stderr))
    # what hm reap finds now is the killed run's, and only that
    time.sleep(0 if runner.engine else R.CGROUP_REAP_AGE + 0.5)
    before = R.snapshot(runner, killed_pid, killed_run)
    dry = R.reap(runner, env, dry_run=True)
    listed = [l for l in dry.stdout.splitlines() if l.startswith("would remove ") and " object(s)" not in l]
    tokens = before["tokens"] + [killed_run[:12], "%d:" % killed_pid, "-%d-" % killed_pid]
    mine = [l for l in listed if any(t in l for t in tokens)]
    # an empty step cgroup's name carries no owner (cmd/reap.c judges it by age): not counted either way;
    # the finished run's cache snapshot that lost the tag to the killed run's commit is garbage of a
    # dead owner too (oci/store.c demotes a snapshot whose tag moved): allowed, unless it is the entry's
    live_run = R.run_id_of(outs["live"])
    lost = [l for l in listed if not runner.engine and layer_run(l) == live_run and snap and not l.endswith(snap)]
    foreign = [l for l in listed if l not in mine and l not in lost and " cgroup " not in l]
    tap.check(dry.returncode == 0 and mine and not foreign,
              "%s: hm reap --dry-run lists %d object(s) of the killed run and nothing else" % (name, len(mine)),
              "rc %d\nnot the killed run's: %s\n%s%s" % (dry.returncode, foreign, dry.stdout, dry.stderr))
    real = R.reap(runner, env)
    left = R.snapshot(runner, killed_pid, killed_run)["objects"]
    if runner.engine:
        # any image of the killed run, cache ones included, but the entry's own: e.g. its cache image
        # of step a, untagged when the other run's commit moved the tag while its step b used it
        kr = killed_run.replace("-", "")
        left += ["image %s %s" % (i.get("Id", "?")[:19], i.get("RepoTags")) for i in runner.engine.images()
                 if (i.get("Labels") or {}).get("hm.run") == kr and not (snap and snap in (i.get("RepoTags") or []))]
    tap.check(real.returncode == 0 and not left and snap and snapshot_exists(runner, snap),
              "%s: hm reap leaves nothing of the killed run and keeps the cache entry's snapshot" % name,
              "left %s\n%s%s" % (left, real.stdout, real.stderr))
    if not runner.engine:
        tagged = set()
        for t in os.listdir(os.path.join(STORE, "tags")):
            with open(os.path.join(STORE, "tags", t)) as f:
                tagged.add(f.read().strip())
        runs = {live_run, killed_run.replace("-", "")}
        orphans = [i for i, m in R.store_metas().items() if m.get("kind", "").strip() == "snapshot"
                   and m.get("ephemeral", "0").strip() in ("0", "") and m.get("dropped", "0").strip() in ("0", "")
                   and i not in tagged and m.get("run", "").strip().replace("-", "") in runs]
        tap.check(not orphans, "ns: no snapshot left that is neither tagged nor ephemeral", lambda: orphans)
    subprocess.run([HM, "cache", "clean"], capture_output=True, timeout=120, env=env)
    R.drop_cache_images(runner, key)


def main():
    if not os.access(HM, os.X_OK):
        tap.check(False, "hm binary at %s" % HM)
        return tap.summary()
    set_child_subreaper()
    runners = pick_runners(tap, R.Runner, STORE, engines=("docker",))
    return per_runner(tap, runners, "hm-concurrent-", concurrent_test)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
