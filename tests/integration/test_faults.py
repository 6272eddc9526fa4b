#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Engine faults: every one becomes a clear error within seconds, never a hang, and the run
still tries to remove what it created.

fake engine (tests/lib/fake_engine.py, for faults a real engine cannot produce on demand): a
one-step pipeline on --runner docker against the fake, with one fault at the first request of
one kind: ping, create, upload (archive), attach, start, wait, commit, remove; modes hang (the
engine is wedged from then on), reset (connection closed unanswered), 500 (JSON message) and
badjson (a cut JSON answer, or a non-JSON error body).  HM_ENGINE_TIMEOUT=1 caps hm's engine
timeouts at 1 s so that a hang is seen quickly; the harness's own timeout (60 s) is the guard
against a hang, and no time is asserted.  Asserted: exit code 1, the one-line error (the stage and
what happened, naming the socket for transport faults), and, once a container existed, a DELETE
of it reached the engine after the fault; with an engine that still answers, nothing is left.
Control: the same pipeline passes against the fake without a fault.

real engine: the private dockerd ($HM_TEST_DOCKER_SOCK, started by tests/lib/engines.sh: its
dockerd.pid is next to the socket; never a system daemon) is stopped while a step runs and started
again on the same socket: the run ends with exit 1 and a failed step, the next run passes, and
nothing of the first run is left afterwards.
"""
import concurrent.futures
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
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from lib import Engine, Tap, check_stream_invariants, run_hm, wait_until  # noqa: E402
from fake_engine import FakeEngine, request_kind  # noqa: E402

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
tap = Tap()

KINDS = ("ping", "create", "upload", "attach", "start", "wait", "commit", "remove")
MODES = ("hang", "reset", "500", "badjson")
STAGE = {"create": "create container: ", "upload": "upload workspace: ", "attach": "attach: ",
         "start": "start container: ", "wait": "wait: ", "commit": "commit snapshot ",
         "remove": "remove container "}


def one_step_ir(cmd, key="only"):
    return {"version": "0", "graph": {"nodes": [{"env": {}, "step": {"key": key, "label": key, "cmd": cmd,
                                                                     "image": "alpine:3.20"}}],
                                      "node_holes": [], "edge_property": "directed", "edges": []}}


def expected_text(kind, mode, sock):
    """What the error must say about the fault itself."""
    if mode == "hang":
        if kind == "upload":
            return "engine at %s stopped reading or answering for 1 s" % sock
        if kind == "wait":  # a wait may rightly be silent: the watchdog's ping found the engine wedged
            return "engine at %s did not answer within 1.0 s (liveness ping)" % sock
        return "engine at %s did not answer within 1.0 s" % sock
    if mode == "reset":
        return "engine at %s stopped answering (" % sock if kind != "ping" else "Empty reply from server"
    if mode == "500":
        return "fake engine: %s failed on purpose" % kind
    if kind == "create":
        return "no Id in the answer"
    if kind == "wait":
        return "no StatusCode in the answer"
    if kind == "ping":
        return "HTTP/0.9"  # libcurl: "Received HTTP/0.9 when not allowed"
    return "HTTP 500: <html>fake engine: %s broke</html>" % kind


class Checks:
    """Checks of one case, run in a worker thread; emitted in order afterwards."""

    def __init__(self):
        self.items = []

    def check(self, cond, desc, diag=None):
        self.items.append((bool(cond), desc, diag))
        return bool(cond)

    def emit(self):
        for cond, desc, diag in self.items:
            tap.check(cond, desc, diag)


def fake_case(work, env, ir_path, fault):
    tap = Checks()  # noqa: F841 (shadows the module's Tap for this case)
    sock = os.path.join(work, "fake-%s.sock" % ("-".join(fault) if fault else "none"))
    name = "%s:%s" % fault if fault else "no fault"
    with FakeEngine(sock, fault) as fe:
        run = run_hm([HM, "run", "--runner", "docker", "--socket", sock, "--format", "json", "-d", work,
                      "-f", ir_path], env=env, timeout=60)
        reqs = list(fe.requests)
        left = dict(fe.containers)
        created = list(fe.created)
    desc = lambda: "%s\nrequests:\n  %s" % (run.describe(), "\n  ".join(reqs))  # noqa: E731
    if not tap.check(not run.timed_out, "fake %s: hm ends by itself (no hang)" % name, desc):
        return tap
    if fault is None:
        ev = check_stream_invariants(tap, "fake no fault", run, ["only"])
        tap.check(run.rc == 0 and ev.logs("only") == ["hello from the fake engine"] and not left,
                  "fake no fault (control): the step passes with the fake's output, its container removed", desc)
        return tap
    kind, mode = fault
    text = expected_text(kind, mode, sock)
    if kind == "ping":
        lines = run.stderr_lines()
        want = "hm: error: no docker engine answered: --socket %s: " % sock
        tap.check(run.rc == 1 and len(lines) == 1 and lines[0].startswith(want) and text in lines[0]
                  and not run.events,
                  "fake %s: exit 1, one error line naming the socket and the fault" % name, desc)
        return tap
    ev = check_stream_invariants(tap, "fake " + name, run, ["only"])
    cf = ev.kind("chain_failed")
    msg = cf[0].get("message", "") if cf else ""
    tap.check(run.rc == 1 and ev.exit_code("only") == 1 and msg.startswith("step 'only': " + STAGE[kind])
              and text in msg and "\n" not in msg,
              "fake %s: exit 1, the step fails with '%s...%s'" % (name, STAGE[kind], text), desc)
    # what the run made, it tries to remove: a DELETE of the container after the faulted request
    fault_at = next((i for i, r in enumerate(reqs) if request_kind(*r.split(" ", 1)) == kind), 0)
    deletes = [r for r in reqs[fault_at:] if r.startswith("DELETE ") and "/containers/" in r]
    if created or (kind == "create" and mode != "500"):
        # made, or maybe made (no answer): removed by id, or by name when hm never learnt the id
        tap.check(deletes, "fake %s: the run tried to remove its container after the fault" % name, desc)
    else:
        tap.check(not deletes and not left, "fake %s: the engine refused the create: nothing to remove" % name, desc)
    if mode == "hang" or kind == "remove":
        # the engine cannot (wedged) or would not remove it: the error says so
        tap.check("remove container 'hm-" in msg, "fake %s: the error says the removal failed too" % name, desc)
    else:
        tap.check(not left, "fake %s: no container left on the engine" % name, lambda: "%s\n%s" % (left, desc()))
    return tap


def restart_test(work, env, sock):
    """Stop the private dockerd mid-step and start it again on the same socket."""
    d = os.path.dirname(sock)
    pidfile = os.path.join(d, "dockerd.pid")
    if not os.path.exists(pidfile) or not os.path.exists(os.path.join(ROOT, "tests/lib/engines.sh")):
        tap.skip("real dockerd restart", "no dockerd.pid next to %s (not a private engine)" % sock)
        return
    eng = Engine("docker", sock)
    ir_path = os.path.join(work, "restart.json")
    with open(ir_path, "w") as f:
        json.dump(one_step_ir("echo start; sleep 30; echo never"), f)
    marks = {}

    def restart():
        pid = int(open(pidfile).read().strip())
        os.kill(pid, signal.SIGTERM)
        marks["stopped"] = wait_until(lambda: not os.path.exists("/proc/%d" % pid), 60)
        p = subprocess.run([os.path.join(ROOT, "tests/lib/engines.sh"), "start", d], capture_output=True,
                           text=True, timeout=120)
        marks["started"] = p.returncode == 0 and eng.ping()
        marks["start_log"] = p.stderr[-500:]

    def on_event(proc, run, t, ev):
        if ev and ev.get("kind") == "step_log" and ev.get("line") == "start" and not marks:
            marks["run"] = True
            restart()

    argv = [HM, "run", "--runner", "docker", "--socket", sock, "--format", "json", "-d", work, "--network", "none"]
    run = run_hm(argv + ["-f", ir_path], env=env, timeout=180, on_event=on_event)
    if not tap.check(marks.get("stopped") and marks.get("started"),
                     "restart: the private dockerd was stopped mid-step and started again",
                     lambda: "%s\n%s" % (marks, run.describe())):
        return
    ev = check_stream_invariants(tap, "restart", run, ["only"])
    cf = ev.kind("chain_failed")
    tap.check(run.rc == 1 and ev.exit_code("only") not in (None, 0) and cf and "only" in cf[0].get("message", "")
              and ev.logs("only") == ["start"],
              "restart: the run ends with exit 1 and the step failed (%s)" % (cf[0].get("message") if cf else "?"),
              run.describe)
    run_id = next((e.get("run_id", "").replace("-", "") for e in ev.list if e.get("kind") == "build_start"), "")
    again = run_hm(argv + ["-f", os.path.join(work, "one.json")], env=env, timeout=120)
    tap.check(again.rc == 0, "restart: the next run on the restarted engine passes", again.describe)
    mine = [c for c in eng.containers() if (c.get("Labels") or {}).get("hm.run") == run_id]
    mine += [i for i in eng.images() if (i.get("Labels") or {}).get("hm.run") == run_id]
    tap.check(run_id and not mine, "restart: nothing of the interrupted run is left on the engine",
              lambda: json.dumps(mine)[:1000])


def main():
    if not os.access(HM, os.X_OK):
        tap.check(False, "hm binary at %s" % HM)
        return tap.summary()
    work = tempfile.mkdtemp(prefix="hm-faults-")
    try:
        env = dict(os.environ, HM_ENGINE_TIMEOUT="1", XDG_CACHE_HOME=os.path.join(work, "cache"))
        env.pop("DOCKER_HOST", None)
        env.pop("CONTAINER_HOST", None)
        ir_path = os.path.join(work, "one.json")
        with open(ir_path, "w") as f:
            json.dump(one_step_ir("echo hi"), f)
        t0 = time.monotonic()
        cases = [None] + [(k, m) for k in KINDS for m in MODES]
        # mostly waiting (a hang costs hm's 1 s timeouts): a few at once, each on its own fake
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for checks in list(pool.map(lambda f: fake_case(work, env, ir_path, f), cases)):
                checks.emit()
        tap.diag("fake engine: %d cases in %.1f s" % (len(cases), time.monotonic() - t0))
        sock = os.environ.get("HM_TEST_DOCKER_SOCK", "")
        if sock and Engine("docker", sock).ping() and os.geteuid() == 0:
            t0 = time.monotonic()
            renv = dict(env)
            del renv["HM_ENGINE_TIMEOUT"]  # the real engine at its own pace
            restart_test(work, renv, sock)
            tap.diag("real dockerd restart: %.1f s" % (time.monotonic() - t0))
        else:
            tap.skip("real dockerd restart", "$HM_TEST_DOCKER_SOCK not set or not answering, or not root")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tap.summary()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
