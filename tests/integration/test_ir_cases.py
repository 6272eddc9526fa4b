#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Black-box integration tests: drive build/hm against real engines and the real kernel.

For each runner (--runners ns,docker,podman) every pipeline of shared/ir/cases runs with the
flags of shared/ir/README.md and --format json; the outcome is checked through the NDJSON events
and the exit code, and after every run nothing may be left behind (containers, non-cache images,
mounts, processes, ns run dirs).  Then: dry-run of every upstream fixture, invalid IR, socket
errors, a missing image, a daemon killed mid-step, SIGINT.

Output is TAP-like; the last line is "N passed, M failed[, K skipped]".  Exit 1 on any failure.
A runner that cannot run (no socket, hm missing) is a failure unless excluded (--exclude).

  HM_SHARED_DIR        shared/ (default: <repo>/../shared)
  HM_BIN               hm binary (default: <repo>/build/hm)
  HM_TEST_DOCKER_SOCK  Docker socket for --runners docker
  HM_TEST_PODMAN_SOCK  Podman socket for --runners podman
  HM_STORE             ns store with alpine:3.20 imported (default: a temp store, imported here)
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, HERE)

from lib import (Engine, Tap, check_stream_invariants, mountpoints, step_cgroups, run_hm,  # noqa: E402
                 set_child_subreaper, stray_processes, reap_zombies, wait_until)

ALL_EXTRAS = ("dry-run", "bad-ir", "socket-errors", "socket-flag", "missing-image", "daemon-kill",
              "sigint", "sigint-twice", "cache-clean")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runners", default=os.environ.get("HM_TEST_RUNNERS", "ns,docker,podman"))
    p.add_argument("--hm", default=os.environ.get("HM_BIN", os.path.join(REPO, "build", "hm")))
    p.add_argument("--shared", default=os.environ.get("HM_SHARED_DIR", os.path.join(REPO, "..", "shared")))
    p.add_argument("--docker-sock", default=os.environ.get("HM_TEST_DOCKER_SOCK"))
    p.add_argument("--podman-sock", default=os.environ.get("HM_TEST_PODMAN_SOCK"))
    p.add_argument("--store", default=os.environ.get("HM_STORE"),
                   help="ns store that already holds alpine:3.20 (default: a temp store, imported here)")
    p.add_argument("--start-engines", action="store_true",
                   help="start private engines with tests/lib/engines.sh (and stop them at the end)")
    p.add_argument("--exclude", action="append", default=[],
                   help="test names to leave out (case names or: %s); comma-separated" % ", ".join(ALL_EXTRAS))
    p.add_argument("--only", action="append", default=[], help="run only these test names")
    p.add_argument("--cases-only", action="store_true", help="only the IR cases, dry-run and bad-ir")
    p.add_argument("--timeout", type=float, default=120, help="per hm invocation (seconds)")
    p.add_argument("--no-host-cgroups", action="store_true",
                   help="--hm runs hm in a container: its step cgroups are not the host's to count")
    a = p.parse_args()
    a.runners = [r for r in a.runners.split(",") if r]
    a.exclude = {x for e in a.exclude for x in e.split(",") if x}
    a.only = {x for e in a.only for x in e.split(",") if x}
    a.hm = os.path.abspath(a.hm)
    a.shared = os.path.abspath(a.shared)
    return a


class Ctx:
    """What every test needs: args, tap, temp root, the hm binary, the runners."""

    def __init__(self, args, tap):
        self.args = args
        self.tap = tap
        self.tmp = tempfile.mkdtemp(prefix="hmtest-")
        os.chmod(self.tmp, 0o755)
        self.cases_dir = os.path.join(args.shared, "ir", "cases")
        self.upstream_dir = os.path.join(args.shared, "ir", "upstream")
        self.helper_pids = set()
        self.empty_cwd = self.mktemp("cwd-")
        self._rootfs_tar = None

    def wanted(self, name):
        if name in self.args.exclude:
            return False
        return not self.args.only or name in self.args.only

    def mktemp(self, prefix):
        d = tempfile.mkdtemp(prefix=prefix, dir=self.tmp)
        os.chmod(d, 0o755)
        return d

    def write_ir(self, name, ir):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(ir, f)
        return path

    def rootfs_tar(self):
        """A busybox root filesystem as a tar (tests/lib/mkbusybox.sh), made once."""
        if self._rootfs_tar is None:
            rootfs = os.path.join(self.tmp, "rootfs")
            subprocess.run([os.path.join(REPO, "tests", "lib", "mkbusybox.sh"), rootfs], check=True,
                           stdout=subprocess.DEVNULL)
            tar = os.path.join(self.tmp, "rootfs.tar")
            subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
            self._rootfs_tar = tar
        return self._rootfs_tar

    def base_env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("DOCKER_HOST", "CONTAINER_HOST", "HM_STORE") and not k.startswith("HM_TEST_")}
        env.pop("NOTIFY_SOCKET", None)
        return env


def load_ir(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def step_keys(ir):
    return [n["step"]["key"] for n in ir["graph"]["nodes"]]


def one_step_ir(key, cmd, image="alpine:3.20", timeout=None):
    step = {"key": key, "cmd": cmd, "label": key, "image": image}
    if timeout:
        step["timeout_seconds"] = timeout
    return {"version": "0", "graph": {"nodes": [{"step": step, "env": {"TERM": "dumb"}}],
                                      "node_holes": [], "edge_property": "directed", "edges": []}}


# ---------------------------------------------------------------------------------------------
# Runners


class Runner:
    def __init__(self, ctx, name):
        self.ctx = ctx
        self.name = name
        self.engine = None
        self.store = None
        self.error = None  # why this runner cannot run
        self.cache_home = ctx.mktemp("xdg-cache-%s-" % name)
        self.env = ctx.base_env()
        self.env["XDG_CACHE_HOME"] = self.cache_home
        self.env["TMPDIR"] = ctx.mktemp("tmpdir-%s-" % name)
        self.flags = ["--runner=" + name]
        self.run_ids = set()  # build_start.run_id of every run: scopes the step cgroup check

    def hm_env(self, extra=None):
        env = dict(self.env)
        env.update(extra or {})
        return env

    def run(self, flags, ir_path=None, timeout=None, on_event=None, extra_env=None, stdin_data=None, cwd=None):
        argv = [self.ctx.args.hm, "run"] + self.flags + ["--format", "json"] + list(flags)
        if ir_path is not None:
            argv += ["-f", ir_path]
        # Without -d hm archives its working directory: give it an empty one, not the checkout.
        res = run_hm(argv, env=self.hm_env(extra_env), timeout=timeout or self.ctx.args.timeout,
                     on_event=on_event, stdin_data=stdin_data, cwd=cwd or self.ctx.empty_cwd)
        for _, ev in res.events:
            if ev.get("kind") == "build_start" and isinstance(ev.get("run_id"), str):
                self.run_ids.add(ev["run_id"].replace("-", ""))
        return res

    def hm(self, *args, timeout=60):
        # cwd: a dir the test owns (an --hm wrapper running hm in a container mounts only those)
        return subprocess.run([self.ctx.args.hm] + list(args), env=self.hm_env(), capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.ctx.empty_cwd)

    # -- leftovers ----------------------------------------------------------------------------

    def snapshot(self):
        return {"mounts": mountpoints(), "cgroups": step_cgroups()}

    def check_leftovers(self, prefix, before, extra_needles=()):
        tap = self.ctx.tap
        if self.engine is not None:
            try:
                cs, ims = self.engine.leftovers()
            except Exception as e:
                cs, ims = ["engine query failed: %s" % e], []
            tap.check(not cs, prefix + ": no container labelled hm.run left", lambda: "\n".join(cs))
            if ims:  # a diagnostic only (docs/flake.md): a deletion still in progress, or an image kept?
                time.sleep(2)
                try:
                    again = self.engine.leftovers()[1]
                except Exception as e:  # noqa: BLE001
                    again = ["engine query failed: %s" % e]
                ims = ims + ["2 s later: %s" % ("; ".join(again) if again else "gone")]
            tap.check(not ims, prefix + ": no non-cache image labelled hm.run left", lambda: "\n".join(ims))
            if cs or ims:
                self.purge()
        # Only mounts under the places this run owns count: other test sessions on the same
        # machine mount things too.  hm gets TMPDIR inside ctx.tmp, so its temp dirs are ours.
        roots = self.owned_roots()
        new = sorted(m for m in mountpoints() - before["mounts"]
                     if any(m == r or m.startswith(r + "/") for r in roots)
                     and not self._engine_internal_mount(m))
        tap.check(not new, prefix + ": no mount left", lambda: "\n".join(new))
        needles = [self.store] if self.store else []
        needles += list(extra_needles)
        strays = stray_processes(needles, exes=(os.path.realpath(self.ctx.args.hm),),
                                 exclude_pids=self.ctx.helper_pids)
        tap.check(not strays, prefix + ": no process left", lambda: "\n".join(strays))
        if strays:
            for s in strays:
                try:
                    os.kill(int(s.split()[0]), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            time.sleep(0.2)
            reap_zombies()
        if self.name == "ns":
            tmpdir = os.path.join(self.store, "tmp")
            left = sorted(os.listdir(tmpdir)) if os.path.isdir(tmpdir) else []
            tap.check(not left, prefix + ": no run dir left in the store's tmp/", lambda: left)
            eph = self.ephemeral_layers()
            tap.check(not eph, prefix + ": no ephemeral snapshot layer left in the store", lambda: eph)
            if not self.ctx.args.no_host_cgroups:
                # Step cgroups are named hm-<first 8 of the run id>-<step>: only this
                # runner's runs count (other hm runs on the machine make their own).
                mine = tuple("hm-%s-" % r[:8] for r in self.run_ids)
                cg = sorted(c for c in step_cgroups() - before.get("cgroups", set())
                            if os.path.basename(c).startswith(mine))
                tap.check(not cg, prefix + ": no step cgroup left", lambda: cg)

    def ephemeral_layers(self):
        """Layers whose meta (oci/store.h) says ephemeral and not dropped: snapshots of a run
        that were not handed back at its end."""
        d = os.path.join(self.store, "layers")
        found = []
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if not name.endswith(".meta"):
                continue
            try:
                with open(os.path.join(d, name), encoding="utf-8", errors="replace") as f:
                    meta = dict((l.split(" ", 1) + [""])[:2] for l in f.read().splitlines() if l)
            except OSError:
                continue
            if meta.get("ephemeral", "0").strip() == "1" and meta.get("dropped", "0").strip() != "1":
                found.append("%s kind=%s run=%s" % (name[:-5], meta.get("kind"), meta.get("run")))
        return found

    @staticmethod
    def _engine_internal_mount(m):
        # Podman bind-mounts its storage root onto itself on first use; that is the engine's, not
        # a step's.  Per-container mounts (overlay merged dirs, shm, netns) are not exempt.
        return m.endswith("/podman-root/overlay") or m.endswith("/docker-data/overlay2") or \
            m.endswith("/podman-root/overlay-containers") or m.endswith("/podman-run/netns")

    def owned_roots(self):
        roots = [self.ctx.tmp, "/var/lib/hm", "/run/hm", os.path.expanduser("~/.local/share/hm")]
        if self.store:
            roots.append(os.path.realpath(self.store))
        if self.engine is not None:
            roots.append(os.path.dirname(os.path.realpath(self.engine.sock)))
        return roots

    def purge(self):
        """Remove what a failed leftover check found, so later checks judge their own runs."""
        for c in self.engine.containers():
            self.engine.request("DELETE", "/containers/%s?force=1&v=1" % c["Id"])
        for i in self.engine.images():
            if not Engine.is_cache_image(i):
                self.engine.request("DELETE", "/images/%s?force=1" % i["Id"])


def setup_runners(ctx, engines_out):
    tap = ctx.tap
    runners = []
    for name in ctx.args.runners:
        r = Runner(ctx, name)
        runners.append(r)
        if name == "ns":
            r.store = ctx.args.store
            if not r.store:
                r.store = ctx.mktemp("store-")
                r.env["HM_STORE"] = r.store
                try:
                    tar = ctx.rootfs_tar()
                except Exception as e:
                    r.error = "cannot make the busybox rootfs: %s" % e
                    tap.check(False, "ns: busybox rootfs for the store", r.error)
                    continue
                p = r.hm("image", "import", tar, "alpine:3.20")
                ok = tap.check(p.returncode == 0, "ns: hm image import <busybox rootfs> alpine:3.20",
                               lambda: "rc %d\n%s%s" % (p.returncode, p.stdout.decode(errors="replace"),
                                                        p.stderr.decode(errors="replace")))
                if not ok:
                    r.error = "image import failed"
                    continue
            r.env["HM_STORE"] = r.store
            p = r.hm("image", "ls")
            out = p.stdout.decode(errors="replace")
            tap.check(p.returncode == 0 and "alpine" in out and "3.20" in out,
                      "ns: hm image ls lists alpine:3.20", lambda: "rc %d\n%s%s" % (
                          p.returncode, out, p.stderr.decode(errors="replace")))
        elif name in ("docker", "podman"):
            sock = engines_out.get(name) or (ctx.args.docker_sock if name == "docker" else ctx.args.podman_sock)
            if not sock:
                r.error = "no %s socket (HM_TEST_%s_SOCK or --%s-sock or --start-engines)" % (
                    name, name.upper(), name)
                continue
            r.engine = Engine(name, sock)
            if not r.engine.ping():
                r.error = "%s engine at %s does not answer /_ping" % (name, sock)
                continue
            r.env["DOCKER_HOST" if name == "docker" else "CONTAINER_HOST"] = "unix://" + sock
        else:
            r.error = "unknown runner %r" % name
    return runners


# ---------------------------------------------------------------------------------------------
# The IR cases (shared/ir/README.md)

CASES = []


def case(name, flags=()):
    def deco(fn):
        CASES.append((name, list(flags), fn))
        return fn
    return deco


def exits(tap, p, run, code):
    tap.check(run.rc == code, "%s: exit %d (got %s)" % (p, code, run.rc), run.describe)


@case("cow-chain")
def c_cow_chain(tap, p, run, ev, runner):
    exits(tap, p, run, 0)
    tap.check(ev.logs("c") == ["from-a", "from-b", "c-saw-both"],
              p + ": c prints exactly from-a, from-b, c-saw-both", lambda: ev.logs("c", None))
    tap.check([ev.exit_code(k) for k in "abc"] == [0, 0, 0], p + ": a, b, c end with 0",
              lambda: [ev.exit_code(k) for k in "abc"])


@case("fork-keep-going", ["-k"])
def c_fork_k(tap, p, run, ev, runner):
    exits(tap, p, run, 1)
    tap.check(ev.exit_code("bad") == 3, p + ": bad ends with 3", lambda: ev.kind("step_end", "bad"))
    cf = ev.kind("chain_failed")
    tap.check(len(cf) == 1 and cf[0].get("failed_step_key") == "bad" and cf[0].get("exit_code") == 3,
              p + ": one chain_failed naming bad with 3", lambda: cf)
    for k in ("bad-child", "bad-grandchild"):
        tap.check(ev.terminals(k) == ["step_skipped"] and not ev.started(k),
                  p + ": %s skipped, never started" % k, lambda k=k: (ev.terminals(k), ev.kind("step_start", k)))
    tap.check(ev.logs("good") == ["base"], p + ": good prints base", lambda: ev.logs("good", None))
    tap.check(ev.exit_code("good-child") == 0 and ev.logs("good-child") == ["good-child-ran"],
              p + ": good-child runs and passes", lambda: (ev.kind("step_end", "good-child"), ev.logs("good-child")))
    tap.check(ev.exit_code("root") == 0, p + ": root passes")


@case("fork-keep-going")
def c_fork(tap, p, run, ev, runner):
    exits(tap, p, run, 1)
    tap.check(ev.exit_code("bad") == 3, p + ": bad ends with 3", lambda: ev.kind("step_end", "bad"))
    cf = [e for e in ev.kind("chain_failed") if e.get("failed_step_key") == "bad"]
    tap.check(len(cf) == 1 and cf[0].get("exit_code") == 3, p + ": chain_failed names bad with 3",
              lambda: ev.kind("chain_failed"))
    started = [k for k in ("bad-child", "bad-grandchild") if ev.started(k)]
    tap.check(not started, p + ": nothing downstream of bad starts", lambda: started)
    tap.check(all(t in (["step_skipped"], ["step_canceled"]) for t in
                  (ev.terminals("bad-child"), ev.terminals("bad-grandchild"))),
              p + ": bad-child, bad-grandchild are skipped or canceled",
              lambda: (ev.terminals("bad-child"), ev.terminals("bad-grandchild")))
    aborted = [k for k in ("good", "good-child") if ev.started(k) and ev.exit_code(k) not in (0, 1)]
    tap.check(not aborted, p + ": a step aborted by fail-fast ends with exit_code 1 (or passed)",
              lambda: [ev.kind("step_end", k) for k in aborted])
    tap.diag("%s: good %s, good-child %s" % (p, ev.terminals("good") + [ev.exit_code("good")],
                                             ev.terminals("good-child") + [ev.exit_code("good-child")]))


@case("diamond-wait", [] if (os.cpu_count() or 1) >= 2 else ["--parallelism", "2"])
def c_diamond(tap, p, run, ev, runner):
    exits(tap, p, run, 0)
    sl, sr = ev.index("step_start", "left"), ev.index("step_start", "right")
    el, er = ev.index("step_end", "left"), ev.index("step_end", "right")
    sa = ev.index("step_start", "after")
    tap.check(None not in (sl, sr, el, er) and sl < er and sr < el,
              p + ": left and right overlap (each starts before the other ends)", lambda: (sl, sr, el, er))
    tap.check(None not in (el, er, sa) and sa > el and sa > er, p + ": after starts after both end",
              lambda: (el, er, sa))
    tap.check(ev.logs("after") == ["joined-without-lineage"], p + ": after prints joined-without-lineage",
              lambda: ev.logs("after", None))
    tap.check(ev.logs("left") == ["L=one"], p + ": left prints L=one", lambda: ev.logs("left", None))
    tap.check(ev.logs("right") == ["right", "R=two"], p + ": right prints right, R=two",
              lambda: ev.logs("right", None))


@case("timeouts", ["-k"])
def c_timeouts(tap, p, run, ev, runner):
    exits(tap, p, run, 1)
    end = ev.one("step_end", "slow")
    tap.check(end is not None and end.get("exit_code") == 124, p + ": slow ends with 124", lambda: end)
    ts, te = ev.time("step_start", "slow"), ev.time("step_end", "slow")
    dt = None if None in (ts, te) else te - ts
    tap.check(dt is not None and 1.5 <= dt <= 6, p + ": slow's step_end arrives 1.5-6 s after its step_start "
              "(%s s; duration_ms %s)" % (None if dt is None else round(dt, 2), end and end.get("duration_ms")),
              run.describe)
    cf = [e for e in ev.kind("chain_failed") if e.get("failed_step_key") == "slow"]
    tap.check(len(cf) == 1 and cf[0].get("exit_code") == 124, p + ": chain_failed names slow with 124",
              lambda: ev.kind("chain_failed"))
    tap.check("start" in ev.logs("slow") and "unreachable" not in ev.all_log_lines(),
              p + ": slow printed start, unreachable never logged", lambda: ev.logs("slow", None))
    tap.check(ev.exit_code("fast") == 0 and ev.logs("fast") == ["fast-done"], p + ": fast passes",
              lambda: (ev.kind("step_end", "fast"), ev.logs("fast", None)))


@case("pipeline-timeout")
def c_pipeline_timeout(tap, p, run, ev, runner):
    exits(tap, p, run, 124)
    tap.check(run.wall < 15, p + ": total wall time < 15 s (%.1f s)" % run.wall)
    bad = [(k, ev.exit_code(k)) for k in ("long-a", "long-b") if ev.started(k) and ev.exit_code(k) != 1]
    tap.check(not bad, p + ": steps aborted by the pipeline timeout end with exit_code 1", lambda: bad)
    tap.check(any(ev.started(k) for k in ("long-a", "long-b")), p + ": at least one step was running",
              run.describe)


@case("fanout", ["--parallelism", "4"])
def c_fanout(tap, p, run, ev, runner):
    exits(tap, p, run, 0)
    mc = ev.max_concurrency()
    tap.check(2 <= mc <= 4, p + ": between 2 and 4 steps at once (max %d)" % mc, run.describe)
    bad = [i for i in range(8) if ev.logs("leaf-%d" % i) != ["leaf-%d" % i] or ev.exit_code("leaf-%d" % i) != 0]
    tap.check(not bad and ev.logs("root") == ["root"], p + ": root and the 8 leaves pass and print their name",
              lambda: bad)
    s = [t for t, e in ev.timed if e.get("kind") == "step_start" and ev.key_of(e).startswith("leaf-")]
    e_ = [t for t, e in ev.timed if e.get("kind") == "step_end" and ev.key_of(e).startswith("leaf-")]
    if s and e_:
        tap.diag("%s: leaves took %.2f s of wall time (about 2 s expected; not asserted)" % (p, max(e_) - min(s)))


@case("logs")
def c_logs(tap, p, run, ev, runner):
    exits(tap, p, run, 0)
    out = ev.logs("chatty")
    want = ["line-%d" % i for i in range(2000)] + ["no-newline-at-end"]
    first_diff = next((i for i, (a, b) in enumerate(zip(out, want)) if a != b), None)
    tap.check(out == want, p + ": chatty stdout is line-0..line-1999 in order, then no-newline-at-end",
              lambda: "got %d lines, first difference at %s: %r" % (
                  len(out), first_diff, out[first_diff:first_diff + 3] if first_diff is not None else out[-3:]))
    tap.check(ev.logs("chatty", "stderr") == ["to-stderr"], p + ": to-stderr on stream stderr",
              lambda: ev.logs("chatty", "stderr"))
    streams = {e.get("stream") for e in ev.kind("step_log")}
    tap.check(streams <= {"stdout", "stderr"}, p + ": stream is stdout or stderr", lambda: streams)
    q = ev.one("step_queued", "unicode-t-step")
    tap.check(q is not None and q.get("display_name") == "unicode-\u00e9t\u00e9 step",
              p + ": display_name is the IR label unicode-\u00e9t\u00e9 step", lambda: q)
    u = ev.logs("unicode-t-step")
    tap.check(u == ["caf\u00e9 \u2713 \x01", "done"], p + ": caf\u00e9 \u2713 line survives (\\001 included)",
              lambda: u)
    raw = run.stdout_raw
    tap.check(b"\\u0001" in raw and b"\x01" not in raw, p + ": the \\001 byte is JSON-escaped, never raw")
    tap.check("caf\u00e9 \u2713".encode() in raw or b"caf\\u00e9 \\u2713" in raw,
              p + ": the UTF-8 text is intact in the JSON")


@case("exit-code")
def c_exit_code(tap, p, run, ev, runner):
    exits(tap, p, run, 1)
    tap.check(ev.exit_code("seven") == 7 and ev.logs("seven") == ["about to fail"], p + ": seven ends with 7",
              lambda: (ev.kind("step_end", "seven"), ev.logs("seven", None)))
    cf = ev.kind("chain_failed")
    tap.check(len(cf) == 1 and cf[0].get("failed_step_key") == "seven" and cf[0].get("exit_code") == 7,
              p + ": chain_failed names seven with 7", lambda: cf)
    tap.check(not ev.started("after-seven") and "unreachable" not in ev.all_log_lines(),
              p + ": after-seven never starts", lambda: ev.kind("step_start", "after-seven"))


def make_source_tree(ctx, ir_path):
    d = ctx.mktemp("src-")
    files = {"visible.txt": "v\n", ".hidden": "h\n", ".gitignore": "*.log\nignored-dir/\n",
             "sub/nested.txt": "n\n", "ignored.log": "i\n", "ignored-dir/x": "x\n"}
    for rel, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
        with open(os.path.join(d, rel), "w") as f:
            f.write(text)
    git = ["git", "-C", d, "-c", "user.name=hm test", "-c", "user.email=hm@test.invalid",
           "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "visible.txt", ".hidden", ".gitignore", "sub/nested.txt"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "test tree"], check=True)
    with open(os.path.join(d, "untracked.txt"), "w") as f:  # untracked but not ignored
        f.write("u\n")
    os.makedirs(os.path.join(d, ".hm"))
    shutil.copy(ir_path, os.path.join(d, ".hm", "env-and-workspace.json"))
    return d


@case("env-and-workspace")
def c_env(tap, p, run, ev, runner):
    exits(tap, p, run, 0)
    out = ev.logs("inspect")
    tap.check(out[:4] == ["hello world", "a'b\"c $HOME", "HOME=/root", "/workspace"],
              p + ": hello world, a'b\"c $HOME literally, HOME=/root, /workspace", lambda: out)
    want = {".", "..", ".gitignore", ".hidden", "sub", "untracked.txt", "visible.txt"}
    tap.check(set(out[4:]) == want and len(out[4:]) == len(want),
              p + ": ls -a /workspace is exactly %s" % " ".join(sorted(want)), lambda: out[4:])


def run_case(ctx, runner, name, flags, fn):
    tap = ctx.tap
    p = "%s %s%s" % (runner.name, name, (" " + " ".join(flags)) if flags else "")
    ir_path = os.path.join(ctx.cases_dir, name + ".json")
    ir = load_ir(ir_path)
    before = runner.snapshot()
    try:
        if name == "env-and-workspace":
            src = make_source_tree(ctx, ir_path)
            run = runner.run(flags + ["-d", src])
        elif name == "cached":
            return run_cached(ctx, runner, ir_path, ir, before)
        else:
            run = runner.run(flags, ir_path)
        ev = check_stream_invariants(tap, p, run, step_keys(ir))
        fn(tap, p, run, ev, runner)
    except Exception:
        tap.check(False, p + ": ran without a harness error", traceback.format_exc())
    runner.check_leftovers(p, before)


def run_cached(ctx, runner, ir_path, ir, before):
    tap = ctx.tap
    p = "%s cached" % runner.name
    r1 = runner.run([], ir_path)
    ev1 = check_stream_invariants(tap, p + " (1st run)", r1, step_keys(ir))
    exits(tap, p + " (1st run)", r1, 0)
    tap.check(all(ev1.started(k) for k in ("deps", "tools", "test")) and not ev1.kind("step_cache_hit"),
              p + " (1st run): all three steps run, no cache hit", r1.describe)
    tap.check(ev1.logs("deps") == ["deps-ran"] and ev1.logs("tools")[:1] == ["tools-ran"],
              p + " (1st run): deps and tools print", lambda: (ev1.logs("deps"), ev1.logs("tools")))
    stamp = (ev1.logs("test") or [None])[0]
    tap.check(bool(stamp) and ev1.logs("tools")[1:2] == [stamp],
              p + " (1st run): test prints the /stamp deps wrote (%s)" % stamp,
              lambda: (ev1.logs("tools"), ev1.logs("test")))
    t0 = time.time()
    r2 = runner.run([], ir_path)
    t1 = time.time()
    ev2 = check_stream_invariants(tap, p + " (2nd run)", r2, step_keys(ir))
    exits(tap, p + " (2nd run)", r2, 0)
    keys = {n["step"]["key"]: n["step"].get("cache", {}).get("key") for n in ir["graph"]["nodes"]}
    for k in ("deps", "tools"):
        hits = ev2.kind("step_cache_hit", k)
        tap.check(len(hits) == 1 and hits[0].get("cache_key") == keys[k] and keys[k][:16] in str(hits[0].get("tag")),
                  p + " (2nd run): %s is a cache hit (cache_key, tag)" % k, lambda h=hits: h)
        tap.check(not ev2.logs(k, None) and ev2.exit_code(k) == 0, p + " (2nd run): %s logs nothing, ends 0" % k,
                  lambda k=k: (ev2.logs(k, None), ev2.kind("step_end", k)))
    tap.check(not ev2.kind("step_cache_hit", "test") and (ev2.logs("test") or [None])[0] == stamp,
              p + " (2nd run): test runs and prints the same /stamp", lambda: ev2.logs("test"))
    if runner.engine is not None:
        # the engine's own record: containers created during the 2nd run, by step label
        starts = ev2.kind("build_start")
        run_hex = starts[0]["run_id"].replace("-", "") if starts else ""
        try:
            creates = [a for a in runner.engine.container_creates(t0 - 1, t1) if a.get("hm.run") == run_hex]
        except Exception as e:  # noqa: BLE001
            creates = [{"error": str(e)}]
        steps = sorted(a.get("hm.step", "?") for a in creates)
        tap.check(steps == ["test"], p + " (2nd run): the engine created a container for test only, none for"
                  " the cached deps and tools", lambda: creates)
    runner.check_leftovers(p, before)
    if not ctx.wanted("cache-clean"):
        return
    ls = runner.hm("cache", "ls")
    out = ls.stdout.decode(errors="replace")
    tap.check(ls.returncode == 0 and "deps" in out and "tools" in out, p + ": hm cache ls lists deps and tools",
              lambda: "rc %d\n%s%s" % (ls.returncode, out, ls.stderr.decode(errors="replace")))
    cl = runner.hm("cache", "clean", timeout=120)
    tap.check(cl.returncode == 0, p + ": hm cache clean exits 0",
              lambda: "rc %d\n%s" % (cl.returncode, cl.stderr.decode(errors="replace")))
    if runner.engine is not None:
        left = runner.engine.cache_images()
        tap.check(not left, p + ": hm cache clean removed the cache images",
                  lambda: [i.get("RepoTags") for i in left])
        for i in left:
            runner.engine.request("DELETE", "/images/%s?force=1" % i["Id"])


def run_ir_cases(ctx, runner):
    if "cached" not in [c[0] for c in CASES]:
        CASES.append(("cached", [], None))
    for name, flags, fn in CASES:
        if ctx.wanted(name):
            run_case(ctx, runner, name, flags, fn)


# ---------------------------------------------------------------------------------------------
# Tests that are not IR cases


def t_dry_run(ctx):
    tap = ctx.tap
    files = sorted(f for f in os.listdir(ctx.upstream_dir) if f.endswith(".json"))
    tap.check(len(files) >= 10, "dry-run: upstream fixtures found (%d)" % len(files), ctx.upstream_dir)
    env = ctx.base_env()
    for f in files:
        path = os.path.join(ctx.upstream_dir, f)
        p = subprocess.run([ctx.args.hm, "run", "--dry-run", "-f", path], env=env, capture_output=True,
                           timeout=30, stdin=subprocess.DEVNULL, cwd=ctx.empty_cwd)
        tap.check(p.returncode == 0, "dry-run: hm run --dry-run -f upstream/%s exits 0" % f,
                  lambda: "rc %d\n%s" % (p.returncode, p.stderr.decode(errors="replace")[-2000:]))


BAD_IR = [
    # (name, document, text stderr must contain)
    ("truncated JSON", '{"version": "0", "graph": {"nodes": [', None),
    ("edge to a missing node", {"version": "0", "graph": {
        "nodes": [{"step": {"key": "a", "cmd": "true"}, "env": {}}],
        "node_holes": [], "edge_property": "directed", "edges": [[0, 5, "builds_in"]]}}, "graph.edges[0]"),
    ("timeout_seconds 0", {"version": "0", "graph": {
        "nodes": [{"step": {"key": "a", "cmd": "true", "timeout_seconds": 0}, "env": {}}],
        "node_holes": [], "edge_property": "directed", "edges": []}}, "graph.nodes[0].step.timeout_seconds"),
    ("missing cmd", {"version": "0", "graph": {
        "nodes": [{"step": {"key": "a"}, "env": {}}],
        "node_holes": [], "edge_property": "directed", "edges": []}}, "graph.nodes[0].step"),
    ("unknown edge kind", {"version": "0", "graph": {
        "nodes": [{"step": {"key": "a", "cmd": "true"}, "env": {}}, {"step": {"key": "b", "cmd": "true"}, "env": {}}],
        "node_holes": [], "edge_property": "directed", "edges": [[0, 1, "sideways"]]}}, "graph.edges[0]"),
    ("cycle", {"version": "0", "graph": {
        "nodes": [{"step": {"key": "a", "cmd": "true"}, "env": {}}, {"step": {"key": "b", "cmd": "true"}, "env": {}}],
        "node_holes": [], "edge_property": "directed", "edges": [[0, 1, "builds_in"], [1, 0, "depends_on"]]}},
     "cycle"),
]


def t_bad_ir(ctx):
    tap = ctx.tap
    env = ctx.base_env()
    for i, (name, doc, needle) in enumerate(BAD_IR):
        path = os.path.join(ctx.tmp, "bad-%d.json" % i)
        with open(path, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        p = subprocess.run([ctx.args.hm, "run", "-f", path], env=env, capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        err = [l for l in p.stderr.decode(errors="replace").splitlines() if l.strip()]
        d = lambda p=p, err=err: "rc %d\nstderr: %s" % (p.returncode, err)  # noqa: E731
        tap.check(p.returncode == 7, "bad-ir: %s: exit 7" % name, d)
        tap.check(len(err) == 1 and (needle or "bad-%d.json" % i) in err[0],
                  "bad-ir: %s: one stderr line naming %s" % (name, needle or "the file"), d)
    # The same through stdin.
    p = subprocess.run([ctx.args.hm, "run", "-f", "-"], env=env, input=b'{"graph": 3}', capture_output=True,
                       timeout=30, cwd=ctx.empty_cwd)
    err = [l for l in p.stderr.decode(errors="replace").splitlines() if l.strip()]
    tap.check(p.returncode == 7 and len(err) == 1 and "graph" in err[0],
              "bad-ir: -f - with graph=3: exit 7, one line naming graph", lambda: (p.returncode, err))


def t_socket_errors(ctx):
    """DOCKER_HOST at a missing and at a stale socket: non-zero, one line naming the socket."""
    tap = ctx.tap
    ir = os.path.join(ctx.cases_dir, "cow-chain.json")
    d = ctx.mktemp("sock-")
    missing = os.path.join(d, "missing", "docker.sock")
    stale = os.path.join(d, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)  # the file stays, nobody listens: ECONNREFUSED
    s.close()
    for what, path in (("missing", missing), ("stale", stale)):
        env = ctx.base_env()
        env["DOCKER_HOST"] = "unix://" + path
        env["XDG_CACHE_HOME"] = ctx.mktemp("xdg-")
        run = run_hm([ctx.args.hm, "run", "--runner=docker", "--format", "json", "-f", ir], env=env, timeout=60,
                     cwd=ctx.empty_cwd)
        err = run.stderr_lines()
        tap.check(run.rc is not None and run.rc > 0 and not run.timed_out,
                  "socket-errors: %s socket: exits non-zero, not killed by a signal (%s)" % (what, run.rc),
                  run.describe)
        tap.check(len(err) == 1 and path in err[0], "socket-errors: %s socket: one stderr line naming it" % what,
                  run.describe)
        tap.check(run.wall < 10, "socket-errors: %s socket: fails fast (%.1f s)" % (what, run.wall))


def t_socket_flag(ctx, runner):
    """--socket PATH instead of the environment."""
    tap = ctx.tap
    p = "%s --socket" % runner.name
    before = runner.snapshot()
    env = {"DOCKER_HOST": "", "CONTAINER_HOST": ""}
    argv_flags = ["--socket", runner.engine.sock]
    ir = os.path.join(ctx.cases_dir, "cow-chain.json")
    run = runner.run(argv_flags, ir, extra_env=env)
    ev = check_stream_invariants(tap, p, run, ["a", "b", "c"])
    exits(tap, p, run, 0)
    tap.check(ev.logs("c") == ["from-a", "from-b", "c-saw-both"], p + ": cow-chain passes through --socket")
    runner.check_leftovers(p, before)


def t_missing_image(ctx, runner):
    tap = ctx.tap
    p = "%s missing-image" % runner.name
    image = "127.0.0.1:9/hm-missing/nope:1"
    ir = ctx.write_ir("missing-image.json", one_step_ir("needs-image", "echo never", image=image))
    before = runner.snapshot()
    run = runner.run([], ir, timeout=150)
    ev = check_stream_invariants(tap, p, run, ["needs-image"])
    exits(tap, p, run, 1)
    text = run.stdout_raw.decode(errors="replace") + run.stderr
    tap.check("hm-missing/nope" in text, p + ": a message names the image", run.describe)
    tap.check("never" not in ev.all_log_lines(), p + ": the command never ran")
    runner.check_leftovers(p, before)


def _sleeper_ir(ctx, name, cmd):
    return ctx.write_ir(name + ".json", one_step_ir("sleeper", cmd))


def t_sigint(ctx, runner):
    """SIGINT during a sleep 30 step: exit 130, step_end 1, nothing left."""
    tap = ctx.tap
    p = "%s sigint" % runner.name
    ir = _sleeper_ir(ctx, "sigint", "echo sleeping; sleep 30")
    before = runner.snapshot()

    def hook(proc, run, t, ev):
        if ev is not None and ev.get("kind") == "step_log" and ev.get("line") == "sleeping" and "int" not in run.marks:
            run.marks["int"] = t
            os.kill(proc.pid, signal.SIGINT)

    run = runner.run(["--grace", "5"], ir, timeout=60, on_event=hook)
    ev = check_stream_invariants(tap, p, run, ["sleeper"])
    tap.check("int" in run.marks, p + ": the step was running (printed sleeping) when SIGINT was sent",
              run.describe)
    exits(tap, p, run, 130)
    tap.check(ev.exit_code("sleeper") == 1, p + ": the aborted step ends with exit_code 1",
              lambda: ev.kind("step_end", "sleeper"))
    if "int" in run.marks:
        dt = run.wall - run.marks["int"]
        tap.check(dt < 15, p + ": exits %.1f s after SIGINT (< 15 s)" % dt)
    runner.check_leftovers(p, before)


def t_sigint_twice(ctx, runner):
    """A step that ignores SIGTERM, --grace 20: the first SIGINT waits for the grace, the second
    skips it."""
    tap = ctx.tap
    p = "%s sigint-twice" % runner.name
    ir = _sleeper_ir(ctx, "sigint-twice", "trap '' TERM INT; echo sleeping; sleep 30")
    before = runner.snapshot()

    def hook(proc, run, t, ev):
        if ev is not None and ev.get("kind") == "step_log" and ev.get("line") == "sleeping" and "int1" not in run.marks:
            run.marks["int1"] = t
            os.kill(proc.pid, signal.SIGINT)
        elif "int1" in run.marks and "int2" not in run.marks and t - run.marks["int1"] >= 1.5:
            run.marks["alive"] = proc.poll() is None
            run.marks["int2"] = t
            os.kill(proc.pid, signal.SIGINT)

    run = runner.run(["--grace", "20"], ir, timeout=60, on_event=hook)
    check_stream_invariants(tap, p, run, ["sleeper"])
    tap.check(run.marks.get("alive") is True, p + ": still in the grace period 1.5 s after the first SIGINT",
              run.describe)
    exits(tap, p, run, 130)
    if "int2" in run.marks:
        dt = run.wall - run.marks["int2"]
        tap.check(dt < 8, p + ": exits %.1f s after the second SIGINT (grace 20 s skipped)" % dt)
    runner.check_leftovers(p, before)


def t_daemon_kill(ctx, runner):
    """A throw-away private dockerd killed while a step runs: clear error, non-zero, within 30 s."""
    tap = ctx.tap
    p = "docker daemon-kill"
    d = tempfile.mkdtemp(prefix="hmtest-dockerd-")
    sock = os.path.join(d, "docker.sock")
    log = open(os.path.join(d, "dockerd.log"), "wb")
    dockerd = subprocess.Popen(["dockerd", "--host", "unix://" + sock, "--iptables=false", "--ip6tables=false",
                                "--bridge=none", "--data-root", d + "/docker-data", "--exec-root", d + "/docker-exec",
                                "--pidfile", d + "/dockerd.pid"], stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    ctx.helper_pids.add(dockerd.pid)
    before = runner.snapshot()
    try:
        eng = Engine("docker", sock)
        up = wait_until(eng.ping, 40)
        tap.check(up, p + ": private dockerd answers", lambda: open(d + "/dockerd.log").read()[-2000:])
        if not up:
            return
        eng.import_rootfs_tar(ctx.rootfs_tar(), "localhost/busybox", "test")
        eng.tag("localhost/busybox:test", "alpine", "3.20")
        ir = _sleeper_ir(ctx, "daemon-kill", "echo sleeping; sleep 30")
        env = {"DOCKER_HOST": "unix://" + sock, "XDG_CACHE_HOME": ctx.mktemp("xdg-")}

        def hook(proc, run, t, ev):
            if ev is not None and ev.get("kind") == "step_log" and ev.get("line") == "sleeping" \
                    and "kill" not in run.marks:
                run.marks["kill"] = t
                os.kill(dockerd.pid, signal.SIGKILL)

        argv = [ctx.args.hm, "run", "--runner=docker", "--format", "json", "-f", ir]
        full_env = ctx.base_env()
        full_env.update(env)
        run = run_hm(argv, env=full_env, timeout=90, on_event=hook, cwd=ctx.empty_cwd)
        tap.check("kill" in run.marks, p + ": dockerd was killed while the step ran", run.describe)
        tap.check(run.rc is not None and run.rc > 0 and not run.timed_out,
                  p + ": exits non-zero, not killed by a signal (%s)" % run.rc, run.describe)
        if "kill" in run.marks:
            dt = run.wall - run.marks["kill"]
            tap.check(dt < 30, p + ": exits %.1f s after the daemon died (< 30 s)" % dt)
        msgs = run.stderr + " ".join(json.dumps(e) for e in run.ev().list if e.get("kind") in (
            "notice", "chain_failed", "step_end", "step_canceled"))
        tap.check(any(w in msgs for w in (sock, "connect", "daemon", "engine")),
                  p + ": the error says what happened (socket, connect, daemon or engine)", run.describe)
        ev = run.ev()
        tap.check(ev.build_end() is not None and ev.kind("build_end")[-1] == ev.list[-1] if ev.list else False,
                  p + ": build_end still closes the stream", run.describe)
    except Exception:
        tap.check(False, p + ": ran without a harness error", traceback.format_exc())
    finally:
        if dockerd.poll() is None:
            dockerd.kill()
        dockerd.wait()
        log.close()
        ctx.helper_pids.discard(dockerd.pid)
        subprocess.run([os.path.join(REPO, "tests", "lib", "engines.sh"), "stop", d],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill_orphaned_container_processes()
        time.sleep(0.3)
        reap_zombies()
        shutil.rmtree(d, ignore_errors=True)
    # The dead daemon's containers died with its data dir; hm must leave nothing of its own.
    saved, runner.engine = runner.engine, None
    try:
        runner.check_leftovers(p, before, extra_needles=[d])
    finally:
        runner.engine = saved


def kill_orphaned_container_processes():
    """The dead dockerd's container keeps running under its (killed) shim; its processes were
    re-parented to us (the subreaper).  They are the dead daemon's, not hm's: kill them.  Only
    processes in a docker container cgroup whose parent is us qualify, so the shared engines'
    containers (children of their own shims) are never touched."""
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open("/proc/%d/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%d/cgroup" % pid) as f:
                cg = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and "/docker/" in cg:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------


def start_engines(ctx):
    d = os.path.join(ctx.tmp, "engines")
    p = subprocess.run([os.path.join(REPO, "tests", "lib", "engines.sh"), "start", d], capture_output=True,
                       timeout=300)
    out = {}
    for line in p.stdout.decode().splitlines():
        k, _, v = line.partition("=")
        if k == "DOCKER_SOCK":
            out["docker"] = v
        elif k == "PODMAN_SOCK":
            out["podman"] = v
    ctx.tap.check(p.returncode == 0 and len(out) == 2, "engines.sh start", lambda: p.stderr.decode()[-3000:])
    return d, out


def _terminate(signum, frame):
    # Run the finally blocks (kill the hm in flight, stop engines, remove temp dirs).
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    args = parse_args()
    tap = Tap()
    ctx = Ctx(args, tap)
    set_child_subreaper()
    engines_dir = None
    try:
        if not (os.path.isfile(args.hm) and os.access(args.hm, os.X_OK)):
            tap.check(False, "hm binary exists: %s" % args.hm)
            return 1
        if not os.path.isdir(ctx.cases_dir):
            tap.check(False, "IR cases found: %s" % ctx.cases_dir)
            return 1
        engines = {}
        if args.start_engines:
            engines_dir, engines = start_engines(ctx)
        if ctx.wanted("dry-run"):
            t_dry_run(ctx)
        if ctx.wanted("bad-ir"):
            t_bad_ir(ctx)
        if not args.cases_only and ctx.wanted("socket-errors"):
            t_socket_errors(ctx)
        for r in setup_runners(ctx, engines):
            if r.error:
                tap.check(False, "%s: runner can run" % r.name, r.error)
                continue
            tap.diag("runner %s: %s" % (r.name, r.engine.sock if r.engine else r.store))
            run_ir_cases(ctx, r)
            if args.cases_only:
                continue
            if r.engine is not None and ctx.wanted("socket-flag"):
                t_socket_flag(ctx, r)
            if ctx.wanted("missing-image"):
                t_missing_image(ctx, r)
            if ctx.wanted("sigint"):
                t_sigint(ctx, r)
            if ctx.wanted("sigint-twice"):
                t_sigint_twice(ctx, r)
            if r.name == "docker" and ctx.wanted("daemon-kill"):
                t_daemon_kill(ctx, r)
    except KeyboardInterrupt as e:
        tap.check(False, "harness ran to the end (interrupted: %s)" % (e or "SIGINT"))
    except Exception:
        tap.check(False, "harness ran to the end", traceback.format_exc())
    finally:
        if engines_dir:
            subprocess.run([os.path.join(REPO, "tests", "lib", "engines.sh"), "stop", engines_dir],
                           stdout=subprocess.DEVNULL)
        for m in sorted((m for m in mountpoints() if m.startswith(ctx.tmp + "/")), reverse=True):
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    return 0 if tap.summary() else 1


if __name__ == "__main__":
    sys.exit(main())
