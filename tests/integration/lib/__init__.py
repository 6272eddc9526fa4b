# SPDX-License-Identifier: Apache-2.0
"""Helpers for the black-box integration tests of build/hm.

Standard library only: the tests run on a bare Debian 12 with python3.
  - Tap:        TAP-like reporting ("ok N - desc" / "not ok N - desc", final "N passed, M failed")
  - Engine:     a tiny Docker/Podman API client over a Unix socket (leftover checks)
  - run_hm:     run hm, read NDJSON events as they arrive (with arrival times), react to events
  - Events:     queries over one run's events (per step key, logs, terminal events)
  - leftovers:  mounts, processes, store tmp dirs that a run must not leave behind
  - shared set-up: REPO/hm_bin()/shared_dir(), out_of, free_port, write_sleeper_ir,
    busybox_rootfs_tar, pick_runners, per_runner; lib/registry.py: start_registry (docker-registry)
"""

import ctypes
import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

# ---------------------------------------------------------------------------------------------
# TAP


class Tap:
    def __init__(self, out=sys.stdout):
        self.out = out
        self.n = 0
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures = []

    def _emit(self, line):
        self.out.write(line + "\n")
        self.out.flush()

    def diag(self, msg):
        for line in str(msg).splitlines() or [""]:
            self._emit("# " + line)

    def check(self, cond, desc, diag=None):
        """One assertion.  diag (str or callable) is printed only on failure."""
        self.n += 1
        if cond:
            self.passed += 1
            self._emit("ok %d - %s" % (self.n, desc))
            return True
        self.failed += 1
        self.failures.append(desc)
        self._emit("not ok %d - %s" % (self.n, desc))
        if diag is not None:
            try:
                text = diag() if callable(diag) else diag
            except Exception as e:  # a diagnostic must never hide the failure
                text = "(diagnostic failed: %r)" % (e,)
            self.diag(text)
        return False

    def skip(self, desc, why):
        self.n += 1
        self.skipped += 1
        self._emit("ok %d - %s # SKIP %s" % (self.n, desc, why))

    def summary(self):
        line = "%d passed, %d failed" % (self.passed, self.failed)
        if self.skipped:
            line += ", %d skipped" % self.skipped
        if self.failures:
            self.diag("failed: " + "; ".join(self.failures))
        self._emit(line)
        return self.failed == 0


# ---------------------------------------------------------------------------------------------
# Engine API over a Unix socket


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except Exception:
            s.close()
            raise
        self.sock = s


class EngineError(Exception):
    pass


class Engine:
    """Just enough of the Docker Engine API (v1.41, same on Podman's compat API)."""

    CACHE_REPOS = ("harmont-cache/", "localhost/harmont-cache/", "docker.io/library/harmont-cache/")

    def __init__(self, kind, sock):
        self.kind = kind
        self.sock = sock

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = UnixHTTPConnection(self.sock, timeout=timeout)
        try:
            conn.request(method, "/v1.41" + path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, data
        finally:
            conn.close()

    def get_json(self, path):
        status, data = self.request("GET", path)
        if status // 100 != 2:
            raise EngineError("GET %s: HTTP %d: %s" % (path, status, data[:200]))
        return json.loads(data)

    def ping(self):
        try:
            conn = UnixHTTPConnection(self.sock, timeout=3)
            conn.request("GET", "/_ping")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    @staticmethod
    def _filters(d):
        return urllib.parse.quote(json.dumps(d, separators=(",", ":")))

    def containers(self, label="hm.run"):
        return self.get_json("/containers/json?all=1&filters=" + self._filters({"label": [label]}))

    def images(self, label="hm.run"):
        return self.get_json("/images/json?filters=" + self._filters({"label": [label]}))

    @classmethod
    def is_cache_image(cls, img):
        tags = img.get("RepoTags") or []
        return bool(tags) and all(t.startswith(cls.CACHE_REPOS) for t in tags)

    def leftovers(self):
        """(containers, non-cache images) labelled hm.run, as short descriptions."""
        cs = ["container %s %s (%s)" % (c.get("Id", "?")[:12], c.get("Image"), c.get("State"))
              for c in self.containers()]
        ims = []
        for i in self.images():
            if self.is_cache_image(i):
                continue
            d = "image %s %s run %s step %s created %s" % (i.get("Id", "?")[:19], i.get("RepoTags"),
                                                           (i.get("Labels") or {}).get("hm.run"),
                                                           (i.get("Labels") or {}).get("hm.step"), i.get("Created"))
            try:  # what keeps an image the engine did not delete: its children and the containers using it
                every = self.get_json("/images/json?all=1")
                kids = [(k.get("Id", "")[:19], k.get("RepoTags")) for k in every if k.get("ParentId") == i.get("Id")]
                users = [(c.get("Id", "")[:12], c.get("State"), c.get("Names"))
                         for c in self.get_json("/containers/json?all=1") if c.get("ImageID") == i.get("Id")]
                d += " parent %s children %s containers %s" % ((i.get("ParentId") or "")[:19], kids, users)
            except Exception as e:  # noqa: BLE001 (a diagnostic only)
                d += " (details: %s)" % e
            ims.append(d)
        return cs, ims

    def container_creates(self, since, until, label="hm.run"):
        """Attributes of the container 'create' events between two unix times (engine-api.md §9:
        Docker replays with since+until; Podman ignores until and needs stream=false; Podman's
        label filter matches nothing, so the label is checked here)."""
        q = "since=%d&filters=%s" % (int(since), self._filters({"type": ["container"]}))
        q += "&until=%d" % (int(until) + 1) if self.kind == "docker" else "&stream=false"
        status, data = self.request("GET", "/events?" + q, timeout=30)
        if status // 100 != 2:
            raise EngineError("GET /events: HTTP %d: %s" % (status, data[:200]))
        out = []
        for line in data.decode(errors="replace").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            attrs = (e.get("Actor") or {}).get("Attributes") or {}
            if e.get("Action") == "create" and e.get("time", 0) <= until + 1 and label in attrs:
                out.append(attrs)
        return out

    def cache_images(self):
        return [i for i in self.images() if self.is_cache_image(i)]

    def running_hm_containers(self):
        return [c for c in self.containers() if c.get("State") == "running"]

    def import_rootfs_tar(self, tar_path, repo, tag):
        with open(tar_path, "rb") as f:
            body = f.read()
        q = "fromSrc=-&repo=%s&tag=%s" % (urllib.parse.quote(repo, safe=""), tag)
        status, data = self.request("POST", "/images/create?" + q, body=body,
                                    headers={"Content-Type": "application/x-tar"}, timeout=120)
        if status // 100 != 2 or b'"error"' in data:
            raise EngineError("import: HTTP %d: %s" % (status, data[:300]))

    def tag(self, src, repo, tag):
        q = "repo=%s&tag=%s" % (urllib.parse.quote(repo, safe=""), tag)
        status, data = self.request("POST", "/images/%s/tag?%s" % (src, q))
        if status // 100 != 2:
            raise EngineError("tag %s: HTTP %d: %s" % (src, status, data[:300]))


# ---------------------------------------------------------------------------------------------
# Running hm


class HmRun:
    """One finished hm invocation."""

    def __init__(self, argv):
        self.argv = argv
        self.rc = None
        self.stdout_raw = b""
        self.stderr_raw = b""
        self.lines = []        # (arrival seconds since spawn, raw bytes of one stdout line)
        self.events = []       # (arrival seconds since spawn, dict) for lines that parsed
        self.bad_lines = []    # (raw line, error) that did not parse as a JSON object with "kind"
        self.wall = None
        self.timed_out = False
        self.marks = {}        # name -> seconds since spawn (set by event hooks)

    @property
    def stderr(self):
        return self.stderr_raw.decode("utf-8", "replace")

    def stderr_lines(self):
        return [l for l in self.stderr.splitlines() if l.strip()]

    def ev(self):
        return Events(self.events)

    def describe(self, max_lines=60):
        out = ["argv: %s" % " ".join(self.argv), "rc: %s  wall: %.2fs  timed_out: %s"
               % (self.rc, self.wall or -1, self.timed_out)]
        err = self.stderr.splitlines()
        if err:
            out.append("stderr (%d lines):" % len(err))
            out += ["  " + l for l in err[-20:]]
        if self.bad_lines:
            out.append("unparsable stdout lines: %d, first: %r" % (len(self.bad_lines), self.bad_lines[0]))
        evs = [json.dumps(e, ensure_ascii=True)[:400] for _, e in self.events
               if e.get("kind") != "step_log"]
        out.append("events without step_log (%d of %d):" % (len(evs), len(self.events)))
        out += ["  " + l for l in evs[:max_lines]]
        return "\n".join(out)


def _parse_line(run, t, raw):
    run.lines.append((t, raw))
    try:
        text = raw.decode("utf-8")  # strict: every event must be valid UTF-8
        ev = json.loads(text)       # strict: raw control characters are invalid JSON
        if not isinstance(ev, dict) or not isinstance(ev.get("kind"), str):
            raise ValueError("not an object with a string 'kind'")
    except Exception as e:
        run.bad_lines.append((raw[:200], str(e)))
        return None
    run.events.append((t, ev))
    return ev


def run_hm(argv, env=None, timeout=120, on_event=None, stdin_data=None, cwd=None):
    """Run hm; collect stdout lines as NDJSON with arrival times.

    on_event(proc, run, t, ev) is called for each event as it arrives (to send signals, kill
    daemons, record marks).  The process runs in its own session so that signals go to hm only.
    On timeout the whole process group is killed and run.timed_out is set.
    """
    run = HmRun(argv)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                            start_new_session=True, close_fds=True)
    if stdin_data is not None:
        try:
            proc.stdin.write(stdin_data)
        except BrokenPipeError:
            pass
        proc.stdin.close()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    pending = b""
    open_streams = 2
    try:
        while open_streams:
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                run.timed_out = True
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                data = os.read(key.fileobj.fileno(), 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                if key.data == "err":
                    run.stderr_raw += data
                    continue
                run.stdout_raw += data
                pending += data
                t = time.monotonic() - t0
                while b"\n" in pending:
                    raw, pending = pending.split(b"\n", 1)
                    ev = _parse_line(run, t, raw)
                    if ev is not None and on_event is not None:
                        on_event(proc, run, t, ev)
            if on_event is not None and open_streams:
                on_event(proc, run, time.monotonic() - t0, None)  # a tick for time-based hooks
        if pending:
            _parse_line(run, time.monotonic() - t0, pending)
        if run.timed_out:
            _stop(proc)
        try:
            proc.wait(timeout=max(1, timeout - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            run.timed_out = True
            _stop(proc)
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
        if proc.poll() is None:  # the harness itself is being interrupted
            _stop(proc)
    run.rc = proc.returncode
    run.wall = time.monotonic() - t0
    return run


def _stop(proc, grace=20):
    """Stop hm the way a user would (SIGINT: it cleans up after itself), then by force."""
    try:
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=grace)
    except (OSError, subprocess.TimeoutExpired):
        pass
    _kill_group(proc)
    proc.wait()


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------
# Queries over events

TERMINAL = ("step_end", "step_skipped", "step_canceled")


class Events:
    def __init__(self, timed_events):
        self.timed = timed_events
        self.list = [e for _, e in timed_events]
        self.id2key = {}
        for e in self.list:
            if e.get("kind") in ("step_queued", "step_start") and e.get("step_id") and e.get("key"):
                self.id2key.setdefault(e["step_id"], e["key"])

    def key_of(self, e):
        if e.get("step_id") in self.id2key:
            return self.id2key[e["step_id"]]
        return e.get("key")

    def kind(self, kind, key=None):
        return [e for e in self.list if e.get("kind") == kind and (key is None or self.key_of(e) == key)]

    def index(self, kind, key):
        """Position of the first event of kind for key, or None."""
        for i, e in enumerate(self.list):
            if e.get("kind") == kind and self.key_of(e) == key:
                return i
        return None

    def time(self, kind, key):
        for t, e in self.timed:
            if e.get("kind") == kind and self.key_of(e) == key:
                return t
        return None

    def one(self, kind, key):
        got = self.kind(kind, key)
        return got[0] if len(got) == 1 else None

    def exit_code(self, key):
        e = self.one("step_end", key)
        return None if e is None else e.get("exit_code")

    def logs(self, key, stream="stdout"):
        return [e.get("line") for e in self.kind("step_log", key) if stream is None or e.get("stream") == stream]

    def all_log_lines(self):
        return [e.get("line") for e in self.kind("step_log")]

    def started(self, key):
        return self.index("step_start", key) is not None

    def terminals(self, key):
        return [e.get("kind") for e in self.list if e.get("kind") in TERMINAL and self.key_of(e) == key]

    def build_end(self):
        ends = self.kind("build_end")
        return ends[-1] if ends else None

    def max_concurrency(self):
        """Largest number of steps between their step_start and step_end at once."""
        cur = best = 0
        for e in self.list:
            if e.get("kind") == "step_start":
                cur += 1
                best = max(best, cur)
            elif e.get("kind") == "step_end" and self.started(self.key_of(e)):
                cur -= 1
        return best


def check_stream_invariants(tap, prefix, run, step_keys):
    """What every --format json run must satisfy, whatever the case."""
    ev = run.ev()
    tap.check(not run.timed_out, prefix + ": finished before the harness timeout", run.describe)
    tap.check(run.lines and not run.bad_lines, prefix + ": every stdout line is a JSON event",
              run.describe)
    kinds = [e.get("kind") for e in ev.list]
    tap.check(kinds[:1] == ["build_start"], prefix + ": build_start first", lambda: kinds[:5])
    be = ev.build_end()
    tap.check(kinds[-1:] == ["build_end"] and kinds.count("build_end") == 1 and be.get("exit_code") == run.rc,
              prefix + ": build_end once, last, exit_code = process exit (%s)" % run.rc,
              lambda: "last kinds %s, build_end %s" % (kinds[-3:], be))
    bs = ev.one("build_start", None)
    tap.check(bs is not None and (bs.get("plan") or {}).get("step_count") == len(step_keys),
              prefix + ": build_start.plan.step_count = %d" % len(step_keys), lambda: bs)
    bad = {}
    for k in step_keys:
        t = ev.terminals(k)
        if len(t) != 1:
            bad[k] = t
        elif ev.started(k) and t != ["step_end"]:
            bad[k] = "started but ends with %s" % t
        elif len(ev.kind("step_start", k)) > 1:
            bad[k] = "started twice"
        elif ev.started(k) and (ev.index("step_queued", k) is None
                                or ev.index("step_queued", k) > ev.index("step_start", k)):
            bad[k] = "step_start without an earlier step_queued"
    unknown = sorted({ev.key_of(e) for e in ev.list if e.get("kind") in TERMINAL + ("step_start",)}
                     - set(step_keys))
    tap.check(not bad and not unknown, prefix + ": every step ends with exactly one terminal event",
              lambda: "bad: %s unknown keys: %s\n%s" % (bad, unknown, run.describe()))
    return ev


# ---------------------------------------------------------------------------------------------
# Leftovers: mounts, processes, store tmp dirs


def step_cgroups():
    """The ns runtime's per-step cgroups: <our cgroup>/hm/hm-* in every hierarchy (v1 and v2)."""
    found = set()
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if not ctrls:
            bases = ["/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"]
        else:
            bases = ["/sys/fs/cgroup/" + c for c in ctrls.split(",") if not c.startswith("name=")]
        for base in bases:
            d = os.path.normpath(base + path + "/hm")
            try:
                found.update(os.path.join(d, e) for e in os.listdir(d) if e.startswith("hm-"))
            except OSError:
                pass
    return found


def mountpoints():
    pts = set()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 4:
                pts.add(parts[4].encode().decode("unicode_escape"))
    return pts


def set_child_subreaper():
    """Orphans of hm (leaked step processes) are re-parented to us, so we can see them."""
    PR_SET_CHILD_SUBREAPER = 36
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def reap_zombies():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _proc_stat(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    rp = data.rfind(")")
    fields = data[rp + 2:].split()
    return {"comm": data[data.find("(") + 1:rp], "state": fields[0], "ppid": int(fields[1])}


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _exe(pid):
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return ""


def stray_processes(needles, exes=(), exclude_pids=()):
    """Our (subreaper) children not in exclude_pids, any process running one of exes (the hm
    binary), and any process whose command line names one of needles (store, run dirs)."""
    reap_zombies()
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me or pid in exclude_pids:
            continue
        st = _proc_stat(pid)
        if st is None or st["state"] == "Z":
            continue
        cmd = _cmdline(pid)
        if st["ppid"] == me or _exe(pid) in exes or any(n and n in cmd for n in needles):
            found.append("%d %s" % (pid, cmd[:120] or st["comm"]))
    return found


def wait_until(pred, timeout, step=0.1):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


# ---------------------------------------------------------------------------------------------
# Set-up shared by several tests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def hm_bin():
    """$HM_BIN, else the checkout's build/hm (absolute)."""
    return os.path.abspath(os.environ.get("HM_BIN", os.path.join(REPO, "build", "hm")))


def shared_dir():
    """$HM_SHARED_DIR, else ../shared next to the checkout (absolute)."""
    return os.path.abspath(os.environ.get("HM_SHARED_DIR", os.path.join(REPO, "..", "shared")))


def out_of(p):
    """A finished subprocess (bytes or text output, either may be None) as a diagnostic."""
    def tail(b):
        if b is None:
            return ""
        return (b.decode(errors="replace") if isinstance(b, bytes) else b)[-3000:]
    return "rc %s\nstdout: %s\nstderr: %s" % (p.returncode, tail(p.stdout), tail(p.stderr))


def logs_and_ends(stdout, errors=None):
    """`hm run --format json` output (text) as ({key: [log lines]}, {key: exit_code}).

    Every non-empty line must be an event (a stray line raises).  With a list as errors, the
    messages of chain_failed events are appended to it.
    """
    logs, ends = {}, {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        e = json.loads(line)
        kind = e.get("kind")
        if kind == "step_log":
            logs.setdefault(e["key"], []).append(e["line"])
        elif kind == "step_end":
            ends[e["key"]] = e.get("exit_code")
        elif kind == "chain_failed" and errors is not None:
            errors.append(e.get("error") or e.get("message") or "")
    return logs, ends


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_sleeper_ir(path):
    """A one-step IR (key "sleeper": sleep 60 on alpine:3.20) at path, world-readable; returns path."""
    ir = {"version": "0", "graph": {"nodes": [{"step": {"key": "sleeper", "label": "sleeper", "cmd": "sleep 60",
                                                         "image": "alpine:3.20"}, "env": {}}],
                                    "node_holes": [], "edge_property": "directed", "edges": []}}
    with open(path, "w") as f:
        json.dump(ir, f)
    os.chmod(path, 0o644)
    return path


def busybox_rootfs_tar(work):
    """A busybox root filesystem (tests/lib/mkbusybox.sh) in work/rootfs, tarred to work/rootfs.tar."""
    rootfs = os.path.join(work, "rootfs")
    tar = os.path.join(work, "rootfs.tar")
    subprocess.run([os.path.join(REPO, "tests", "lib", "mkbusybox.sh"), rootfs], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
    return tar


def pick_runners(tap, make, store, engines=("docker", "podman")):
    """make("ns") when root with a $HM_STORE dir, then make(name, sock) for each engine whose
    $HM_TEST_<NAME>_SOCK answers; a skip line for each one left out."""
    runners = []
    if store and os.path.isdir(store) and os.geteuid() == 0:
        runners.append(make("ns"))
    else:
        tap.skip("ns runner", "needs root and $HM_STORE with alpine:3.20")
    for name in engines:
        var = "HM_TEST_%s_SOCK" % name.upper()
        sock = os.environ.get(var, "")
        if sock and Engine(name, sock).ping():
            runners.append(make(name, sock))
        else:
            tap.skip("%s runner" % name, "$%s not set or not answering" % var)
    return runners


def per_runner(tap, runners, prefix, body):
    """body(runner, work) for each runner, timed in a diagnostic line, with one work dir (holding an
    empty src/) made with prefix and removed at the end; returns tap.summary()."""
    work = tempfile.mkdtemp(prefix=prefix)
    os.makedirs(os.path.join(work, "src"))
    try:
        for r in runners:
            t0 = time.monotonic()
            body(r, work)
            tap.diag("%s: %.1f s" % (r.name, time.monotonic() - t0))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tap.summary()
