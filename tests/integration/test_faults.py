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
Control: the same pipeline passes against the fake without a fault.  Each container the run could
not remove is named in exactly one cleanup notice; none when nothing is left.  wait:hang: only the
watchdog's liveness ping can fail a silent wait, and its verdict fails the removal at once: no
DELETE reaches the wedged engine.

fake engine wedged by a signal's requests: the step runs (2 min on the fake), hm gets SIGTERM, and
the fake wedges at the kill it sends: with HM_ENGINE_TIMEOUT=1 after one SIGTERM, and at the
default limits after a second SIGTERM 0.5 s later (the 2 s ping it triggers, ENG_HURRY_PING_MS);
then a passing two-step builds_in chain whose first image removal at the end wedges the fake,
with two SIGTERMs then.  Asserted: what reached the fake after the wedge (pings only, and the
SIGKILL: no DELETE), the exit code, and one line per object left naming the liveness ping and
its limit.  The harness timeout (45 s) is the only time involved: the old hm took the verdict at
the default limits (10 s + 20 s) plus each removal's 60 s.

real engine: the private dockerd ($HM_TEST_DOCKER_SOCK, started by tests/lib/engines.sh: its
dockerd.pid is next to the socket; never a system daemon) is stopped while a step runs and started
again on the same socket: the run ends with exit 1 and a failed step, the next run passes, and
nothing of the first run is left afterwards.  Then it is SIGSTOPped mid-step (SIGCONT in a
finally) and hm gets SIGTERM, once or twice: hm ends by itself before the harness timeout (bound
in wedge_test), exit 130, one line names the container left and the liveness ping (20.0 s, or
2.0 s after the second signal); after SIGCONT that container is there, and `hm reap` leaves
nothing of the run.  The seconds from SIGTERM to the exit are printed, not asserted.
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

    def diag(self, text):
        self.items.append((None, text, None))

    def emit(self):
        for cond, desc, diag in self.items:
            if cond is None:
                tap.diag(desc)
            else:
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
    if (kind, mode) == ("wait", "hang"):
        # only the watchdog's ping can fail a silent wait; its verdict also fails the removal at once:
        # nothing more is sent to the wedged engine but pings
        after = reqs[fault_at + 1:]
        tap.check(after and all(r == "GET /_ping" for r in after) and msg.count("(liveness ping)") == 2,
                  "fake %s: after the liveness verdict the removal fails at once with it, not sent to the engine"
                  % name, desc)
    elif created or (kind == "create" and mode != "500"):
        # made, or maybe made (no answer): removed by id, or by name when hm never learnt the id
        tap.check(deletes, "fake %s: the run tried to remove its container after the fault" % name, desc)
    else:
        tap.check(not deletes and not left, "fake %s: the engine refused the create: nothing to remove" % name, desc)
    if mode == "hang" or kind == "remove":
        # the engine cannot (wedged) or would not remove it: the error says so
        tap.check("remove container 'hm-" in msg, "fake %s: the error says the removal failed too" % name, desc)
    else:
        tap.check(not left, "fake %s: no container left on the engine" % name, lambda: "%s\n%s" % (left, desc()))
    # never silently: one cleanup line per container left, exactly when the removal failed
    lines = left_lines(ev)
    if "remove container 'hm-" in msg:
        tap.check(len(lines) == 1 and lines[0].startswith("container 'hm-") and "not removed: " in lines[0]
                  and lines[0].endswith("; left for hm reap"),
                  "fake %s: one cleanup notice names the container left" % name, desc)
    else:
        tap.check(not lines, "fake %s: no container reported left" % name, desc)
    return tap


def left_lines(ev):
    """The cleanup notices naming a container the run could not remove."""
    return [n.get("message", "") for n in ev.kind("notice")
            if n.get("notice") == "cleanup" and n.get("message", "").startswith("container '")]


def after_request(reqs, kind):
    """The requests the fake saw after the first one of kind."""
    at = next((i for i, r in enumerate(reqs) if request_kind(*r.split(" ", 1)) == kind), None)
    return None if at is None else reqs[at + 1:]


def fake_wedge_case(work, env, ir_path, signals):
    """The fake wedges at the kill that hm's SIGTERM sends (kill:hang: from then on nothing answers,
    pings included) while the step runs; with signals=2 a second SIGTERM follows 0.5 s later."""
    tap = Checks()  # noqa: F841 (shadows the module's Tap for this case)
    name = "kill:hang after %s" % ("SIGTERM" if signals == 1 else "two SIGTERMs")
    sock = os.path.join(work, "fake-wedge-%d.sock" % signals)
    marks = {}

    def on_event(proc, run, t, ev):
        if ev and ev.get("kind") == "step_log" and ev.get("line") == "hello from the fake engine" and not marks:
            os.kill(proc.pid, signal.SIGTERM)
            marks["term"] = t
        elif signals == 2 and "term" in marks and "term2" not in marks and t >= marks["term"] + 0.5:
            os.kill(proc.pid, signal.SIGTERM)
            marks["term2"] = t

    with FakeEngine(sock, ("kill", "hang"), run_seconds=120) as fe:
        # the old hm took the verdict (30 s at the default limits) plus a DELETE's 60 s limit
        run = run_hm([HM, "run", "--runner", "docker", "--socket", sock, "--format", "json", "-d", work,
                      "-f", ir_path], env=env, timeout=45, on_event=on_event)
        reqs = list(fe.requests)
    desc = lambda: "%s\nmarks: %s\nrequests:\n  %s" % (run.describe(), marks, "\n  ".join(reqs))  # noqa: E731
    if not tap.check("term" in marks, "fake %s: the step ran and hm got SIGTERM" % name, desc):
        return tap
    ev = check_stream_invariants(tap, "fake " + name, run, ["only"])
    after = after_request(reqs, "kill") or []
    # the wait may arrive after the kill: hm sends it once start answered, on its own connection,
    # and the SIGTERM can come first (the step's output arrives on the attach before that)
    tap.check(run.rc == 130 and after and "GET /_ping" in after
              and all(r == "GET /_ping" or request_kind(*r.split(" ", 1)) in ("kill", "wait") for r in after),
              "fake %s: exit 130; after the kill only pings (and the SIGKILL, and a wait already on its way) "
              "reached the engine: no DELETE waited on the wedged engine" % name, desc)
    limit = "1.0" if signals == 1 else "2.0"  # HM_ENGINE_TIMEOUT=1; ENG_HURRY_PING_MS after a second signal
    lines = left_lines(ev)
    tap.check(len(lines) == 1 and lines[0].startswith("container 'hm-") and "-0-only' (" in lines[0]
              and ("not removed: engine at %s did not answer within %s s (liveness ping); left for hm reap"
                   % (sock, limit)) in lines[0],
              "fake %s: one line names the container left and the liveness ping (%s s)" % (name, limit), desc)
    if signals == 2:
        tap.check(any("again: stopping without grace" in n.get("message", "") for n in ev.kind("notice")),
                  "fake %s: the second signal is noticed" % name, desc)
    tap.diag("fake %s: %.1f s from the first SIGTERM to hm's exit" % (name, run.wall - marks["term"]))
    return tap


def fake_drop_case(work, env):
    """A two-step builds_in chain passes; the fake wedges at the first image removal of the run's
    end (rmi:hang); hm gets SIGTERM then, and again 0.5 s later: the second gives the clean-up up."""
    tap = Checks()  # noqa: F841 (shadows the module's Tap for this case)
    name = "rmi:hang, two SIGTERMs during the clean-up"
    sock = os.path.join(work, "fake-drop.sock")
    ir = one_step_ir("echo a", key="a")
    ir["graph"]["nodes"].append({"env": {}, "step": {"key": "b", "label": "b", "cmd": "echo b"}})
    ir["graph"]["edges"].append([0, 1, "builds_in"])
    ir_path = os.path.join(work, "drop.json")
    with open(ir_path, "w") as f:
        json.dump(ir, f)
    marks = {}

    def on_event(proc, run, t, ev):
        if ev and ev.get("kind") == "step_end" and run.ev().key_of(ev) == "b" and not marks:
            os.kill(proc.pid, signal.SIGTERM)
            marks["term"] = t
        elif "term" in marks and "term2" not in marks and t >= marks["term"] + 0.5:
            os.kill(proc.pid, signal.SIGTERM)
            marks["term2"] = t

    with FakeEngine(sock, ("rmi", "hang")) as fe:
        # the old hm ignored signals once every step had ended, and each removal took its 60 s
        run = run_hm([HM, "run", "--runner", "docker", "--socket", sock, "--format", "json", "-d", work,
                      "-f", ir_path], env=env, timeout=45, on_event=on_event)
        reqs = list(fe.requests)
    desc = lambda: "%s\nmarks: %s\nrequests:\n  %s" % (run.describe(), marks, "\n  ".join(reqs))  # noqa: E731
    if not tap.check("term2" in marks, "fake %s: both steps ended and hm got two SIGTERMs" % name, desc):
        return tap
    ev = check_stream_invariants(tap, "fake " + name, run, ["a", "b"])
    run_id = next((e.get("run_id", "").replace("-", "") for e in ev.list if e.get("kind") == "build_start"), "")
    after = after_request(reqs, "rmi") or []
    tap.check(run.rc == 0 and after and all(r == "GET /_ping" for r in after)
              and any("again: giving up the clean-up" in n.get("message", "") for n in ev.kind("notice")),
              "fake %s: exit 0 (the steps passed); after the first removal only pings reached the engine" % name,
              desc)
    lines = [n.get("message", "") for n in ev.kind("notice") if n.get("notice") == "cleanup"
             and n.get("message", "").startswith("remove image ")]
    want = ["remove image 'localhost/hm-ephemeral:%s-%d': engine at %s did not answer within 2.0 s (liveness ping)"
            % (run_id[:12], i, sock) for i in (1, 0)]
    tap.check(sorted(lines) == sorted(want), "fake %s: one line per image left, naming the liveness ping" % name,
              lambda: "%s\n%s" % (lines, desc()))
    tap.diag("fake %s: %.1f s from the second SIGTERM to hm's exit" % (name, run.wall - marks["term2"]))
    return tap


def wedge_test(work, env, sock, signals):
    """SIGSTOP the private dockerd mid-step (SIGCONT in a finally), then SIGTERM hm once or twice."""
    pidfile = os.path.join(os.path.dirname(sock), "dockerd.pid")
    name = "wedged dockerd, %s" % ("SIGTERM" if signals == 1 else "two SIGTERMs")
    if not os.path.exists(pidfile):
        tap.skip(name, "no dockerd.pid next to %s (not a private engine)" % sock)
        return
    pid = int(open(pidfile).read().strip())
    eng = Engine("docker", sock)
    ir_path = os.path.join(work, "wedge.json")
    with open(ir_path, "w") as f:
        json.dump(one_step_ir("echo start; sleep 60; echo never"), f)
    marks = {}

    def on_event(proc, run, t, ev):
        if ev and ev.get("kind") == "step_log" and ev.get("line") == "start" and not marks:
            os.kill(pid, signal.SIGSTOP)
            marks["stop"] = t
            os.kill(proc.pid, signal.SIGTERM)
            marks["term"] = t
        elif signals == 2 and "term" in marks and "term2" not in marks and t >= marks["term"] + 1:
            os.kill(proc.pid, signal.SIGTERM)
            marks["term2"] = t

    # Bound: the verdict comes at most ENG_WATCH_INTERVAL_MS + ENG_PING_TIMEOUT_MS = 30 s after the
    # stop (ENG_HURRY_PING_MS = 2 s after a second signal), hm ends a few seconds later, and the step
    # runs a few seconds after spawn: 50 s (40 s).  The old hm then waited out the removal's own
    # limit (ENG_REQUEST_TIMEOUT_MS, 60 s): 80 s or more after the stop.
    argv = [HM, "run", "--runner", "docker", "--socket", sock, "--format", "json", "-d", work, "--network", "none"]
    try:
        run = run_hm(argv + ["-f", ir_path], env=env, timeout=50 if signals == 1 else 40, on_event=on_event)
    finally:
        os.kill(pid, signal.SIGCONT)
    desc = lambda: "%s\nmarks: %s" % (run.describe(), marks)  # noqa: E731
    if not tap.check("stop" in marks, "%s: dockerd was stopped mid-step and hm got SIGTERM" % name, desc):
        return
    ev = check_stream_invariants(tap, name, run, ["only"])
    run_id = next((e.get("run_id", "").replace("-", "") for e in ev.list if e.get("kind") == "build_start"), "")
    limit = "20.0" if signals == 1 else "2.0"  # ENG_PING_TIMEOUT_MS, or ENG_HURRY_PING_MS
    cname = "hm-%s-0-only" % run_id[:12]
    lines = left_lines(ev)
    tap.check(run.rc == 130 and len(lines) == 1 and lines[0].startswith("container '%s' (" % cname)
              and ("not removed: engine at %s did not answer within %s s (liveness ping)" % (sock, limit))
              in lines[0],
              "%s: exit 130, one line names the container left and the liveness ping (%s s)" % (name, limit), desc)
    tap.diag("%s: %.1f s from SIGTERM to hm's exit" % (name, run.wall - marks["term"]))
    wait_until(eng.ping, 30)
    mine = lambda: ([c for c in eng.containers() if (c.get("Labels") or {}).get("hm.run") == run_id]  # noqa: E731
                    + [i for i in eng.images() if (i.get("Labels") or {}).get("hm.run") == run_id])
    before = mine()
    tap.check(any("/" + cname in (c.get("Names") or []) for c in before),
              "%s: after SIGCONT the container named is on the engine" % name, lambda: json.dumps(before)[:1000])
    reap = subprocess.run([HM, "reap", "--runner", "docker", "--socket", sock], env=env, capture_output=True,
                          text=True, timeout=120)
    # a removal the engine had queued while stopped may still be in progress ("removing"): let it end
    wait_until(lambda: not mine(), 30)
    left = mine()
    tap.check(run_id and reap.returncode == 0 and not left,
              "%s: hm reap leaves nothing of the interrupted run" % name,
              lambda: "reap rc %s\n%s%s\n%s" % (reap.returncode, reap.stdout, reap.stderr, json.dumps(left)[:1000]))


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
        t0 = time.monotonic()
        nocap = dict(env)
        del nocap["HM_ENGINE_TIMEOUT"]  # a second signal's short ping, under the default limits
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            jobs = [pool.submit(fake_wedge_case, work, env, ir_path, 1),
                    pool.submit(fake_wedge_case, work, nocap, ir_path, 2), pool.submit(fake_drop_case, work, nocap)]
            for job in jobs:
                job.result().emit()
        tap.diag("fake engine wedged at the kill: %.1f s" % (time.monotonic() - t0))
        sock = os.environ.get("HM_TEST_DOCKER_SOCK", "")
        if sock and Engine("docker", sock).ping() and os.geteuid() == 0:
            t0 = time.monotonic()
            renv = dict(env)
            del renv["HM_ENGINE_TIMEOUT"]  # the real engine at its own pace
            restart_test(work, renv, sock)
            tap.diag("real dockerd restart: %.1f s" % (time.monotonic() - t0))
            for signals in (1, 2):
                t0 = time.monotonic()
                wedge_test(work, renv, sock, signals)
                tap.diag("real dockerd wedged (%d signal(s)): %.1f s" % (signals, time.monotonic() - t0))
        else:
            tap.skip("real dockerd restart", "$HM_TEST_DOCKER_SOCK not set or not answering, or not root")
            tap.skip("real dockerd wedged", "$HM_TEST_DOCKER_SOCK not set or not answering, or not root")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tap.summary()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
