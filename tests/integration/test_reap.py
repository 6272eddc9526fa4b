#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Crash safety: `hm reap` removes what a SIGKILLed `hm run` left, and nothing of a live run.

kill test, per runner (ns with $HM_STORE, docker with $HM_TEST_DOCKER_SOCK, podman with
$HM_TEST_PODMAN_SOCK): $HM_REAP_RUNS (default 20) runs of a 3-step builds_in chain of short
sleeps (the first step cacheable), each SIGKILLed at a random moment (0.1-3 s) and followed by
`hm reap`.  Then nothing may be left: engine containers and non-cache images labelled hm.run,
ns store tmp/ entries and live ephemeral layers, mounts under the store, stray processes
(hm-init, anything naming the store, orphans of hm), empty step cgroups hm/hm-*; and
`hm cache ls` still loads the cache index.

quick reap test, per runner: a run is SIGKILLed while its second step sleeps and another run is
live; a plain second `hm run` (no `hm reap`) passes, says in one notice "reap" what it removed,
and afterwards nothing of the killed run is left while every object of the live run is still
there (control: the killed run's objects are seen before).  HM_REAP_ONLY=kill|live|quick runs
one part.

live-owner test, per runner: while a run's second step sleeps, `hm reap --dry-run` and
`hm reap` remove nothing of it (its container / tmp dir, its first step's ephemeral snapshot,
its cgroups), and the run then passes.

Needs root for the ns runner's cgroups; a busybox alpine:3.20 in $HM_STORE and on the engines
(tests/run-all.sh and tests/lib/engines.sh provide them)."""
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import (Engine, Tap, mountpoints, per_runner, pick_runners, reap_zombies, run_hm, set_child_subreaper,  # noqa: E402
                 stray_processes, wait_until)

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
STORE = os.environ.get("HM_STORE", "")
RUNS = int(os.environ.get("HM_REAP_RUNS", "20"))
CGROUP_REAP_AGE = 2  # cmd/reap.c: empty step cgroups younger than this are kept
tap = Tap()


def chain_ir(cmds, cache_key=None):
    nodes = []
    for i, (key, cmd) in enumerate(cmds):
        step = {"key": key, "label": key, "cmd": cmd}
        if i == 0:
            step["image"] = "alpine:3.20"
            if cache_key:
                step["cache"] = {"env_keys": [], "key": cache_key, "policy": "forever"}
        nodes.append({"env": {}, "step": step})
    edges = [[i, i + 1, "builds_in"] for i in range(len(cmds) - 1)]
    return {"version": "0", "graph": {"nodes": nodes, "node_holes": [], "edge_property": "directed",
                                      "edges": edges}}


class Runner:
    def __init__(self, name, sock=None):
        self.name = name
        self.sock = sock
        self.engine = Engine(name, sock) if sock else None

    def run_args(self):
        if self.engine:
            return ["--runner", self.name, "--socket", self.sock, "--network", "none"]
        return ["--runner", "ns"]

    def reap_args(self):
        if self.engine:
            return ["--runner", self.name, "--socket", self.sock]
        return ["--runner", "ns"]


def hm_env(cache_home):
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = cache_home
    return env


def reap(runner, env, dry_run=False):
    argv = [HM, "reap"] + runner.reap_args() + (["--dry-run"] if dry_run else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


# ---------------------------------------------------------------------------------------------
# What can be left


def store_tmp():
    d = os.path.join(STORE, "tmp")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def store_metas():
    """{layer id: {key: value}} of the ns store's layers."""
    d = os.path.join(STORE, "layers")
    out = {}
    for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if n.endswith(".meta"):
            with open(os.path.join(d, n)) as f:
                out[n[:-5]] = dict((l.split(" ", 1) + [""])[:2] for l in f.read().splitlines() if l)
    return out


def live_ephemeral_layers():
    return sorted(i for i, m in store_metas().items()
                  if m.get("ephemeral", "0").strip() not in ("0", "") and m.get("dropped", "0").strip() in ("0", ""))


def store_mounts():
    return sorted(m for m in mountpoints() if STORE and m.startswith(STORE.rstrip("/") + "/"))


def step_cgroups():
    """hm/hm-* cgroup dirs below the root or our own cgroup of every hierarchy."""
    found = []
    for hier in sorted(os.listdir("/sys/fs/cgroup")) if os.path.isdir("/sys/fs/cgroup") else []:
        base = os.path.join("/sys/fs/cgroup", hier)
        if os.path.islink(base) or not os.path.isdir(base):
            continue
        hm_dirs = {os.path.join(base, "hm")}
        try:
            with open("/proc/self/cgroup") as f:
                for line in f:
                    _, ctrls, path = line.rstrip("\n").split(":", 2)
                    if hier in ctrls.split(","):
                        hm_dirs.add(os.path.join(base, path.lstrip("/"), "hm"))
        except OSError:
            pass
        for d in sorted(hm_dirs):
            if os.path.isdir(d):
                found += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.startswith("hm-")
                          and os.path.isdir(os.path.join(d, n))]
    if os.path.isdir("/sys/fs/cgroup/hm"):  # pure v2 hosts
        found += ["/sys/fs/cgroup/hm/" + n for n in sorted(os.listdir("/sys/fs/cgroup/hm")) if n.startswith("hm-")]
    return sorted(set(found))


def cgroup_procs(d):
    try:
        with open(os.path.join(d, "cgroup.procs")) as f:
            return f.read().split()
    except OSError:
        return []


def strays():
    """Orphans of the killed hm (re-parented to us, a subreaper: its hm-init, step processes),
    anything running the hm binary, anything naming the store."""
    return stray_processes([STORE] if STORE else [], exes=(HM,))


def leftovers(runner):
    """{what: [items]} that must all be empty after reaping."""
    reap_zombies()
    left = {}
    if runner.engine:
        cs, ims = runner.engine.leftovers()
        left["engine containers labelled hm.run"] = cs
        left["engine non-cache images labelled hm.run"] = ims
    else:
        left["ns store tmp/ entries"] = store_tmp()
        left["ns live ephemeral layers"] = live_ephemeral_layers()
        left["mounts under the store"] = store_mounts()
        # with no process: a cgroup with processes belongs to a live run (maybe not ours)
        left["empty step cgroups hm/hm-*"] = [d for d in step_cgroups() if not cgroup_procs(d)]
    left["processes (orphans of hm such as hm-init, hm itself, the store)"] = strays()
    return left


# ---------------------------------------------------------------------------------------------
# kill test


def kill_test(runner, work):
    cache_home = os.path.join(work, "cache-" + runner.name)
    os.makedirs(cache_home)
    env = hm_env(cache_home)
    src = os.path.join(work, "src")
    ir_path = os.path.join(work, "chain-%s.json" % runner.name)
    key = "%064x" % random.getrandbits(256)
    with open(ir_path, "w") as f:
        json.dump(chain_ir([("a", "sleep 0.3; echo a > /workspace/a.txt"),
                            ("b", "sleep 0.3; cat /workspace/a.txt; echo b > /b.txt"),
                            ("c", "sleep 0.3; cat /b.txt")], key), f)
    # two whole runs first: the first's cache miss makes the cache entry, the second (a hit, like
    # the killed ones) bounds the kill moments, so that most runs die mid-way
    for _ in range(2):
        t0 = time.monotonic()
        full = subprocess.run([HM, "run", "--format", "json", "-d", src, "-f", ir_path] + runner.run_args(),
                              capture_output=True, text=True, timeout=120, env=env)
        whole = time.monotonic() - t0
        if full.returncode != 0:
            break
    tap.check(full.returncode == 0, "%s: the chain passes when not killed (%.1f s)" % (runner.name, whole),
              full.stderr[-1000:])
    reap_failures, reaped, finished, kill_times = [], 0, 0, []
    for i in range(RUNS):
        delay = random.uniform(0.1, max(0.2, min(3.0, whole * 0.9)))
        proc = subprocess.Popen([HM, "run", "--format", "json", "-d", src, "-f", ir_path] + runner.run_args(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True, close_fds=True)
        try:
            proc.wait(timeout=delay)
            finished += 1  # it ended before the kill: nothing to kill, still reap
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)  # hm only: what it started must die or be reaped
            proc.wait()
            kill_times.append(delay)
        # the step's init dies with hm (PDEATHSIG), asynchronously
        wait_until(lambda: not strays(), 5)
        p = reap(runner, env)
        if p.returncode != 0:
            reap_failures.append("run %d: rc %d: %s" % (i, p.returncode, p.stderr.strip()[-300:]))
        reaped += sum(1 for l in p.stdout.splitlines() if l.startswith("removed ") and " object(s)" not in l)
    tap.diag("%s: %d runs, %d killed (at %.1f-%.1f s), %d finished first, %d objects reaped"
             % (runner.name, RUNS, len(kill_times), min(kill_times or [0]), max(kill_times or [0]),
                finished, reaped))
    tap.check(not reap_failures, "%s: hm reap exits 0 after each of %d killed runs" % (runner.name, RUNS),
              lambda: "\n".join(reap_failures[:10]))
    tap.check(reaped > 0 or not kill_times, "%s: the kills left something that hm reap removed" % runner.name,
              "reaped %d objects after %d kills" % (reaped, len(kill_times)))
    # empty step cgroups younger than CGROUP_REAP_AGE are kept on purpose (a live run may be
    # between mkdir and entering them): let the last kill's age, then reap once more
    time.sleep(CGROUP_REAP_AGE + 0.5)
    p = reap(runner, env)
    tap.check(p.returncode == 0, "%s: a final hm reap exits 0" % runner.name, p.stderr)
    wait_until(lambda: not any(leftovers(runner).values()), 10)
    left = leftovers(runner)
    for what, items in left.items():
        tap.check(not items, "%s: no %s left (%d)" % (runner.name, what, len(items)),
                  lambda items=items: "\n".join(items[:20]))
    ls = subprocess.run([HM, "cache", "ls"], capture_output=True, text=True, timeout=60, env=env)
    rows = ls.stdout.splitlines()
    tap.check(ls.returncode == 0 and rows and rows[0].split()[:2] == ["BACKEND", "TAG"]
              and all(len(r.split()) >= 4 for r in rows[1:]),
              "%s: hm cache ls loads the cache index after the kills (%d entries)" % (runner.name, len(rows) - 1),
              "rc %d\n%s\n%s" % (ls.returncode, ls.stdout[-500:], ls.stderr[-500:]))
    clean = subprocess.run([HM, "cache", "clean"], capture_output=True, text=True, timeout=120, env=env)
    tap.check(clean.returncode == 0, "%s: hm cache clean removes the test's cache entries" % runner.name,
              clean.stderr[-500:])
    drop_cache_images(runner, key)


def drop_cache_images(runner, key):
    """A kill between a cache commit and its index entry leaves a tagged cache image the index does
    not know: not a leak of hm reap's (cache images are never reaped), but the suite must end clean."""
    if not runner.engine:
        return
    for im in runner.engine.cache_images():
        for t in im.get("RepoTags") or []:
            if t.endswith(":" + key[:16]):
                runner.engine.request("DELETE", "/images/%s?force=1" % t)


# ---------------------------------------------------------------------------------------------
# live-owner test


def engine_objects_of(runner, pid):
    cs = [c for c in runner.engine.containers() if (c.get("Labels") or {}).get("hm.owner", "").startswith("%d:" % pid)]
    ims = [i for i in runner.engine.images("hm.ephemeral=1")
           if (i.get("Labels") or {}).get("hm.owner", "").startswith("%d:" % pid)]
    return cs, ims


def live_test(runner, work):
    cache_home = os.path.join(work, "cache-live-" + runner.name)
    os.makedirs(cache_home, exist_ok=True)
    env = hm_env(cache_home)
    src = os.path.join(work, "src")
    ir_path = os.path.join(work, "live-%s.json" % runner.name)
    with open(ir_path, "w") as f:
        json.dump(chain_ir([("first", "echo one > /one.txt"), ("sleeper", "sleep 10; cat /one.txt")]), f)
    seen = {}
    seen_run = [""]

    def on_event(proc, run, t, ev):
        if ev and ev.get("kind") == "build_start":
            seen_run[0] = ev.get("run_id") or ""
        if seen or not ev or ev.get("kind") != "step_start" or ev.get("key") != "sleeper":
            return
        time.sleep(1.0 if runner.engine else 0.3)  # the container / tmp dir is made right after step_start
        seen["before"] = snapshot(runner, proc.pid, seen_run[0])
        seen["dry"] = reap(runner, env, dry_run=True)
        seen["reap"] = reap(runner, env)
        seen["after"] = snapshot(runner, proc.pid, seen_run[0])

    run = run_hm([HM, "run", "--format", "json", "-d", src, "-f", ir_path] + runner.run_args(), env=env,
                 timeout=120, on_event=on_event)
    tap.check(bool(seen), "%s live: hm reap ran while the step slept" % runner.name, run.describe)
    if not seen:
        return
    before, after = seen["before"], seen["after"]
    tap.diag("%s live: owned while reaping: %s" % (runner.name, ", ".join(before["objects"])))
    for what in ("dry", "reap"):
        p = seen[what]
        lines = [l for l in p.stdout.splitlines() if " object(s)" not in l]
        mine = [l for l in lines if any(tok in l for tok in before["tokens"])]
        tap.check(p.returncode == 0 and not mine, "%s live: hm reap%s removes nothing of the live run"
                  % (runner.name, " --dry-run" if what == "dry" else ""),
                  "rc %d\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.stdout, p.stderr))
    tap.check(before["objects"] and before["objects"] == after["objects"],
              "%s live: its %s are all still there" % (runner.name, before["what"]),
              "before %s\nafter  %s" % (before["objects"], after["objects"]))
    tap.check(run.rc == 0 and run.ev().logs("sleeper") == ["one"],
              "%s live: the run then passes (exit 0, sleeper saw its parent's file)" % runner.name, run.describe)


def snapshot(runner, pid, run_id):
    """What a live run (hm pid) owns right now, and tokens that would name it in reap output."""
    if runner.engine:
        cs, ims = engine_objects_of(runner, pid)
        objs = sorted(["container " + c["Id"][:12] for c in cs] + ["image %s" % (i.get("RepoTags"),) for i in ims])
        tokens = [c["Id"][:12] for c in cs] + [t for i in ims for t in (i.get("RepoTags") or [])]
        return {"objects": objs, "tokens": tokens, "what": "container and ephemeral image"}
    tmp = [t for t in store_tmp() if "-%d-" % pid in t]
    layers = [i for i, m in store_metas().items() if m.get("owner", "").split(" ")[0].split(":")[0] == str(pid)]
    cgs = [d for d in step_cgroups() if run_id and os.path.basename(d).startswith("hm-%s-" % run_id[:8])]
    objs = sorted(["tmp/" + t for t in tmp] + ["layers/" + l for l in layers if l in live_ephemeral_layers()] + cgs)
    return {"objects": objs, "tokens": ["tmp/" + t for t in tmp] + ["layers/" + l for l in layers] + cgs,
            "what": "tmp dir, ephemeral layer and cgroups"}


# ---------------------------------------------------------------------------------------------
# quick reap: hm run itself reaps at start


def start_json_run(argv, env, out_path):
    """hm run with its NDJSON events going to a file (read with events_of) while we do other things."""
    with open(out_path, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)


def events_of(path):
    evs = []
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    evs.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return evs


def started(path, key):
    return any(e.get("kind") == "step_start" and e.get("key") == key for e in events_of(path))


def run_id_of(path):
    return next((e.get("run_id", "").replace("-", "") for e in events_of(path) if e.get("kind") == "build_start"), "")


def quick_test(runner, work):
    """A run SIGKILLed mid-step, then a plain second hm run (no hm reap): nothing of the first is left,
    and a run that is live meanwhile keeps all its objects.  Control: the killed run's objects are
    seen before the second run."""
    cache_home = os.path.join(work, "cache-quick-" + runner.name)
    os.makedirs(cache_home, exist_ok=True)
    env = hm_env(cache_home)
    src = os.path.join(work, "src")
    ir_path = os.path.join(work, "quick-%s.json" % runner.name)
    with open(ir_path, "w") as f:
        json.dump(chain_ir([("first", "echo one > /one.txt"), ("sleeper", "sleep 120; cat /one.txt")]), f)
    one_path = os.path.join(work, "quick-one-%s.json" % runner.name)
    with open(one_path, "w") as f:
        json.dump(chain_ir([("only", "echo plain")]), f)
    argv = [HM, "run", "--format", "json", "-d", src, "--grace", "1"] + runner.run_args()
    settle = 1.0 if runner.engine else 0.3  # the container / tmp dir is made right after step_start
    live_out, dead_out = os.path.join(work, "quick-live.out"), os.path.join(work, "quick-dead.out")
    live = start_json_run(argv + ["-f", ir_path], env, live_out)
    dead = None
    try:
        if not tap.check(wait_until(lambda: started(live_out, "sleeper"), 60),
                         "%s quick: the live run reached its sleeping step" % runner.name,
                         lambda: open(live_out, errors="replace").read()[-2000:]):
            return
        dead = start_json_run(argv + ["-f", ir_path], env, dead_out)
        ok = wait_until(lambda: started(dead_out, "sleeper"), 60)
        time.sleep(settle)
        dead_objs = snapshot(runner, dead.pid, run_id_of(dead_out))
        live_objs = snapshot(runner, live.pid, run_id_of(live_out))
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait()
        wait_until(lambda: not stray_processes([], exclude_pids=(live.pid,)), 5)
        # control: the check sees what the killed run left
        tap.check(ok and dead_objs["objects"], "%s quick: the killed run left objects (%s)"
                  % (runner.name, ", ".join(dead_objs["objects"])),
                  lambda: open(dead_out, errors="replace").read()[-2000:])
        if not runner.engine:
            time.sleep(CGROUP_REAP_AGE + 0.5)  # cmd/reap.c keeps younger empty step cgroups
        plain = run_hm([HM, "run", "--format", "json", "-d", src, "-f", one_path] + runner.run_args(),
                       env=env, timeout=120)
        notices = [e.get("message", "") for e in plain.ev().kind("notice") if e.get("notice") == "reap"]
        tap.check(plain.rc == 0 and len(notices) == 1 and notices[0].startswith("removed ")
                  and " object(s) of dead runs " in notices[0],
                  "%s quick: a plain hm run passes and says in one notice what it reaped" % runner.name,
                  plain.describe)
        tap.diag("%s quick: %s" % (runner.name, notices[0] if notices else "(no notice)"))
        left = snapshot(runner, dead.pid, run_id_of(dead_out))["objects"]
        tap.check(not left, "%s quick: nothing of the killed run is left (%d)" % (runner.name, len(left)),
                  lambda: "\n".join(left))
        now = snapshot(runner, live.pid, run_id_of(live_out))
        tap.check(live_objs["objects"] and now["objects"] == live_objs["objects"],
                  "%s quick: the live run's %s are all still there" % (runner.name, live_objs["what"]),
                  "before %s\nafter  %s" % (live_objs["objects"], now["objects"]))
        tap.check(live.poll() is None and started(live_out, "sleeper")
                  and not [e for e in events_of(live_out) if e.get("kind") == "step_end"
                           and e.get("key") == "sleeper"],
                  "%s quick: the live run's step is still running" % runner.name)
    finally:
        for p in (live, dead):
            if p and p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in (live, dead):
            if p:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    be = [e for e in events_of(live_out) if e.get("kind") == "build_end"]
    tap.check(live.returncode == 130 and be and be[-1].get("exit_code") == 130,
              "%s quick: the live run then stops on SIGINT (exit 130)" % runner.name,
              lambda: "rc %s\n%s" % (live.returncode, open(live_out, errors="replace").read()[-2000:]))


# ---------------------------------------------------------------------------------------------
# what hm reap must never touch on an engine


def untouchable_test(runner, work):
    """A cache image whose owner is dead, an ephemeral image with no owner label made just now, and a
    container labelled hm.run without hm.owner: all kept."""
    eng, q = runner.engine, urllib.parse.quote
    body = json.dumps({"Image": "alpine:3.20", "Cmd": ["true"], "Labels": {"hm.run": "reaptest", "hm.ephemeral": "1"}})
    st, data = eng.request("POST", "/containers/create", body=body, headers={"Content-Type": "application/json"})
    if not tap.check(st == 201, "%s untouchable: made a container without hm.owner" % runner.name, data[:300]):
        return
    cid = json.loads(data)["Id"]
    refs = {"localhost/harmont-cache/reaptest": "LABEL hm.owner=1:1", "localhost/hm-reaptest-unowned": "LABEL hm.x=1"}
    for repo, change in refs.items():
        st, data = eng.request("POST", "/commit?container=%s&repo=%s&tag=t&changes=%s" % (cid, q(repo, safe=""), q(change)),
                               body="{}", headers={"Content-Type": "application/json"})
        tap.check(st == 201, "%s untouchable: committed %s:t" % (runner.name, repo), data[:300])
    p = reap(runner, hm_env(os.path.join(work, "cache-live-" + runner.name)))
    tags = {t for i in eng.images("hm.run=reaptest") for t in (i.get("RepoTags") or [])}
    kept_c = [c for c in eng.containers("hm.run=reaptest") if c["Id"] == cid]
    tap.check(p.returncode == 0 and kept_c and all(r + ":t" in tags for r in refs),
              "%s untouchable: hm reap kept the cache image with a dead owner, the fresh unowned "
              "ephemeral image and the unowned container" % runner.name,
              "tags %s, container kept %s\n%s%s" % (sorted(tags), bool(kept_c), p.stdout, p.stderr))
    eng.request("DELETE", "/containers/%s?force=1&v=1" % cid)
    for repo in refs:
        eng.request("DELETE", "/images/%s?force=1" % q(repo + ":t", safe=""))


# ---------------------------------------------------------------------------------------------


def main():
    if not os.access(HM, os.X_OK):
        tap.check(False, "hm binary at %s" % HM)
        return tap.summary()
    set_child_subreaper()
    runners = pick_runners(tap, Runner, STORE)

    def tests(r, work):
        if os.environ.get("HM_REAP_ONLY") in (None, "", "kill"):
            kill_test(r, work)
        if os.environ.get("HM_REAP_ONLY") in (None, "", "live"):
            live_test(r, work)
        if os.environ.get("HM_REAP_ONLY") in (None, "", "quick"):
            quick_test(r, work)
        if r.engine:
            untouchable_test(r, work)

    return per_runner(tap, runners, "hm-reap-test-", tests)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
