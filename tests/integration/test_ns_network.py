#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Step networking on the built-in runtime (--runner=ns), from inside real steps.

A TCP server started here on the host's loopback sends a token to whoever
connects.  Steps try to reach it: through the address pasta maps to the host
(the gateway, with pasta:--map-gw) and slirp4netns (10.0.2.2, with
slirp4netns:allow_host_loopback=true), through 127.0.0.1 with --network host;
with none (the control) and with pasta / slirp4netns without the mapping they
must not.  Then: resolv.conf per mode, the one-line errors (unknown mode,
missing tool, HM_NETWORK, .hm/config.toml), and no pasta/slirp4netns left
after success, failure, SIGINT and SIGKILL of hm (helpers are recognised by a
tag in their environment, so other users' helpers are never counted).
Last, a helper that never comes up (a fake pasta / slirp4netns in an absolute
PATH entry, for the first step that starts one): the run's other step goes on
meanwhile, SIGINT ends the run at once and leaves nothing, and the 10 s bound
fails the step with one line.

As root the whole set runs as root, then the reachability and leftover cases
again as the unprivileged user hmtest (rootless: user namespace) when it
exists.  Needs busybox (tests/lib/mkbusybox.sh) and the packages passt and
slirp4netns (contrib/install-deps.sh)."""
import json, os, pwd, shutil, signal, socket, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Tap, logs_and_ends, mountpoints, run_hm, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
TAG = "hm-net-test-%d-%d" % (os.getpid(), int(time.time()))
tap = Tap()


class TokenServer:
    """Accept on 127.0.0.1:PORT and send a token line to each client."""

    def __init__(self):
        self.token = "tok-%s" % os.urandom(6).hex()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            try:
                c.sendall((self.token + "\n").encode())
            finally:
                c.close()


def pipeline(steps):
    nodes = [{"env": {}, "step": {"key": k, "cmd": c, "image": "alpine:3.20"}} for k, c in steps]
    return {"graph": {"nodes": nodes, "node_holes": [], "edge_property": "directed", "edges": []}}


class Ctx:
    """Where and as whom hm runs."""

    def __init__(self, user=None):
        self.user = user
        self.tmp = tempfile.mkdtemp(prefix="hm-net-")
        os.chmod(self.tmp, 0o755)
        self.hm = HM
        self.store = os.environ.get("HM_STORE")
        if user:
            self.hm = os.path.join(self.tmp, "hm")
            shutil.copy2(HM, self.hm)
            self.store = os.path.join(self.tmp, "store")
            home = os.path.join(self.tmp, "home")
            os.makedirs(home)
            pw = pwd.getpwnam(user)
            for d in (self.tmp, home):
                os.chown(d, pw.pw_uid, pw.pw_gid)
            rootfs, tar = os.path.join(self.tmp, "rootfs"), os.path.join(self.tmp, "rootfs.tar")
            subprocess.run([os.path.join(ROOT, "tests/lib/mkbusybox.sh"), rootfs], check=True, capture_output=True)
            subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
            shutil.rmtree(rootfs)
            os.chmod(tar, 0o644)
            p = self.cmd([self.hm, "image", "import", tar, "alpine:3.20"])
            r = subprocess.run(p[0], env=p[1], capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise RuntimeError("import as %s failed: %s" % (user, r.stderr))
        self.src = os.path.join(self.tmp, "src")
        os.makedirs(self.src)
        if user:
            os.chown(self.src, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)

    def cmd(self, argv, extra_env=None):
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HM_NET_TEST_TAG": TAG}
        if self.store:
            env["HM_STORE"] = self.store
        if self.user:
            pw = pwd.getpwnam(self.user)
            env.update(HOME=os.path.join(self.tmp, "home"), USER=self.user,
                       XDG_CACHE_HOME=os.path.join(self.tmp, "home", ".cache"))
            argv = ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid, "--init-groups", "--"] + argv
        else:
            env["XDG_CACHE_HOME"] = os.path.join(self.tmp, "cache")
        env.update(extra_env or {})
        return argv, env

    def write_ir(self, steps):
        path = os.path.join(self.tmp, "p-%s.json" % os.urandom(4).hex())
        with open(path, "w") as f:
            json.dump(pipeline(steps), f)
        os.chmod(path, 0o644)
        return path

    def run(self, steps, flags=(), extra_env=None, timeout=120):
        ir = self.write_ir(steps)
        argv, env = self.cmd([self.hm, "run", "--runner=ns", "--format", "json", "-k", "--no-cache", "-d", self.src,
                              "-f", ir] + list(flags), extra_env)
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        errors = []
        logs, ends = logs_and_ends(p.stdout, errors)
        for m in errors:
            p.stderr += "\nchain_failed: %s" % m
        return p, logs, ends

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def helpers():
    """pasta / slirp4netns processes started by this test's hm runs (tag in their environment)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % name) as f:
                comm = f.read().strip()
            if not (comm.startswith("pasta") or comm.startswith("passt") or comm == "slirp4netns"):
                continue
            with open("/proc/%s/environ" % name, "rb") as f:
                env = f.read()
            with open("/proc/%s/stat" % name) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if ("HM_NET_TEST_TAG=" + TAG).encode() in env.split(b"\0") and state != "Z":
            found.append("%s %s" % (name, comm))
    return found


def reach_cmd(addr_expr, port, tries=1):
    """busybox nc: print what the server sends.  `timeout` bounds each try: the
    packaged pasta (2023-03) sometimes loses the server's FIN, so nc may hang
    after the token arrived; a lost mapping is retried up to `tries` times."""
    return ("a=%s; echo addr=$a; i=0; while [ $i -lt %d ]; do i=$((i+1)); "
            "out=$(timeout 2 nc $a %d </dev/null 2>&1); echo \"$out\"; "
            "case \"$out\" in tok-*) break;; esac; done; true") % (addr_expr, tries, port)


GW = "$(ip route | awk '/^default/ {print $3; exit}')"


def reachability(ctx, srv, who):
    cases = [
        ("pasta:--map-gw", GW, True, "pasta:--map-gw: the gateway address reaches the host's loopback"),
        ("slirp4netns:allow_host_loopback=true", "10.0.2.2", True,
         "slirp4netns:allow_host_loopback=true: 10.0.2.2 reaches the host's loopback"),
        ("host", "127.0.0.1", True, "host: 127.0.0.1 is the host's loopback"),
        ("none", "127.0.0.1", False, "none (control): the host's loopback server is not reachable"),
        ("pasta", GW, False, "pasta (default, --no-map-gw): the gateway does not reach the host's loopback"),
        ("slirp4netns", "10.0.2.2", False, "slirp4netns (default): 10.0.2.2 does not reach the host's loopback"),
    ]
    for mode, addr, want, desc in cases:
        p, logs, ends = ctx.run([("reach", reach_cmd(addr, srv.port, 3 if want else 1))], ["--network", mode])
        lines = logs.get("reach", [])
        got = any(srv.token in l for l in lines)
        tap.check(p.returncode == 0 and got == want, "%s: %s" % (who, desc),
                  "rc=%s ends=%s logs=%s stderr=%s" % (p.returncode, ends, lines, p.stderr[-600:]))
    # the helpers configured the namespace: an interface beside lo with an address and a default route
    for mode, ifname in (("pasta", None), ("slirp4netns", "tap0")):
        p, logs, _ = ctx.run([("ifs", "ls /sys/class/net | tr '\\n' ' '; echo; ip route | grep -c ^default")],
                             ["--network", mode])
        l = logs.get("ifs", [])
        ifs = l[0].split() if l else []
        ok = p.returncode == 0 and "lo" in ifs and len(ifs) == 2 and l[-1] == "1" and (ifname is None or ifname in ifs)
        tap.check(ok, "%s: %s: one interface beside lo and a default route in the step" % (who, mode), (l, p.stderr[-400:]))


def resolv(ctx):
    host_ns = []
    with open("/etc/resolv.conf") as f:
        for line in f:
            w = line.split()
            if len(w) >= 2 and w[0] == "nameserver":
                host_ns.append(w[1])
    cmd = "grep ^nameserver /etc/resolv.conf | awk '{print $2}' | tr '\\n' ' '; true"
    p, logs, _ = ctx.run([("dns", cmd)], ["--network", "slirp4netns"])
    tap.check(logs.get("dns", [""])[0].split() == ["10.0.2.3"], "slirp4netns: resolv.conf names slirp4netns's DNS (10.0.2.3)",
              (logs, p.stderr[-300:]))
    want = [a for a in host_ns if not a.startswith("127.") and a != "::1"]
    p, logs, _ = ctx.run([("dns", cmd)], ["--network", "pasta"])
    got = logs.get("dns", [""])[0].split() if logs.get("dns") else []
    tap.check(got == want and got, "pasta: resolv.conf holds the host's non-loopback nameservers %s" % want, got)
    p, logs, _ = ctx.run([("dns", cmd)], ["--network", "host"])
    got = logs.get("dns", [""])[0].split() if logs.get("dns") else []
    tap.check(got == host_ns, "host: resolv.conf is the host's", got)
    p, logs, _ = ctx.run([("dns", "cat /etc/resolv.conf 2>&1 | head -3; echo end")], ["--network", "none"])
    tap.check(not any(l.startswith("nameserver") for l in logs.get("dns", [])),
              "none: no nameserver is configured (the image has none)", logs.get("dns"))
    # a DNS query answered through slirp4netns's forwarder (UDP from the step to 10.0.2.3:53)
    if host_ns:
        p, logs, _ = ctx.run([("q", "nslookup localhost 10.0.2.3 >/dev/null 2>&1; echo rc=$?")],
                             ["--network", "slirp4netns"])
        tap.check(logs.get("q") == ["rc=0"] or logs.get("q") == ["rc=1"],
                  "slirp4netns: a DNS query to 10.0.2.3 runs (answer depends on the host's resolver)", logs.get("q"))


def errors(ctx):
    def one_line(p):
        lines = [l for l in p.stderr.splitlines() if l.strip() and not l.startswith("hm: runner") and not l.startswith("chain_failed")]
        return lines

    p, _, _ = ctx.run([("x", "true")], ["--network", "bogus"])
    l = one_line(p)
    tap.check(p.returncode == 2 and len(l) == 1 and "--network 'bogus'" in l[0] and "pasta" in l[0],
              "an unknown mode: exit 2, one line naming --network and the modes", (p.returncode, l))
    p, _, _ = ctx.run([("x", "true")], ["--network", "pasta:--frobnicate"])
    l = one_line(p)
    tap.check(p.returncode == 2 and len(l) == 1 and "--frobnicate" in l[0] and "--map-gw" in l[0],
              "an unknown pasta option: one line naming it and the accepted ones", (p.returncode, l))
    for mode, pkg in (("pasta", "passt"), ("slirp4netns", "slirp4netns")):
        p, _, _ = ctx.run([("x", "true")], ["--network", mode], extra_env={"PATH": "/nonexistent"})
        l = one_line(p)
        tap.check(p.returncode == 2 and len(l) == 1 and "--network '%s'" % mode in l[0] and "'%s'" % pkg in l[0]
                  and "install-deps" in l[0], "%s missing: one line naming --network and the package to install" % mode,
                  (p.returncode, l))
    p, _, _ = ctx.run([("x", "true")], extra_env={"HM_NETWORK": "nope"})
    l = one_line(p)
    tap.check(p.returncode == 2 and len(l) == 1 and "HM_NETWORK 'nope'" in l[0], "a bad HM_NETWORK names HM_NETWORK",
              (p.returncode, l))
    # per-pipeline default in .hm/config.toml; --network overrides it
    hmdir = os.path.join(ctx.src, ".hm")
    os.makedirs(hmdir, exist_ok=True)
    with open(os.path.join(hmdir, "config.toml"), "w") as f:
        f.write('# hm settings\nbackend = "docker"\nnetwork = "slirp4netns"  # user-mode\n[cloud]\nnetwork = "x"\n')
    p, logs, _ = ctx.run([("i", "ls /sys/class/net | tr '\\n' ' '")])
    tap.check("tap0" in (logs.get("i") or [""])[0], ".hm/config.toml network = \"slirp4netns\" is the run's default",
              (logs, p.stderr[-300:]))
    p, logs, _ = ctx.run([("i", "ls /sys/class/net | tr '\\n' ' '")], ["--network", "none"])
    tap.check((logs.get("i") or [""])[0].split() == ["lo"], "--network none overrides .hm/config.toml", logs)
    p, logs, _ = ctx.run([("i", "ls /sys/class/net | tr '\\n' ' '")], extra_env={"HM_NETWORK": "none"})
    tap.check((logs.get("i") or [""])[0].split() == ["lo"], "HM_NETWORK overrides .hm/config.toml", logs)
    with open(os.path.join(hmdir, "config.toml"), "w") as f:
        f.write("network = pasta\n")
    p, _, _ = ctx.run([("x", "true")])
    l = one_line(p)
    tap.check(p.returncode == 2 and len(l) == 1 and "config.toml:1" in l[0], "a malformed config line is named with file:line",
              (p.returncode, l))
    shutil.rmtree(hmdir)


def lifetimes(ctx, who):
    for mode in ("pasta", "slirp4netns"):
        p, _, ends = ctx.run([("ok", "true"), ("bad", "exit 3")], ["--network", mode])
        tap.check(ends == {"ok": 0, "bad": 3}, "%s: %s: a passing and a failing step run" % (who, mode), (ends, p.stderr[-300:]))
        left = wait_until(lambda: not helpers(), 5) or helpers()
        tap.check(left is True or left == [], "%s: %s: no helper left after success and failure" % (who, mode), helpers())
        for sig in (signal.SIGINT, signal.SIGKILL):
            ir = ctx.write_ir([("long", "echo started; sleep 60")])
            argv, env = ctx.cmd([ctx.hm, "run", "--runner=ns", "--format", "json", "--no-cache", "-d", ctx.src, "-f", ir,
                                 "--network", mode])
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            seen = False
            for raw in proc.stdout:
                if b'"started"' in raw:
                    seen = True
                    break
            running = helpers()
            init = [q for q in sleeping(ir) if int(q) != proc.pid]
            tap.check(init and all(sid_of(q) not in (None, proc.pid) for q in init),
                      "%s: %s: the step's processes are not in hm's session (a Ctrl-C on hm's terminal goes to hm only)"
                      % (who, mode), "hm %d, step processes %s, sids %s" % (proc.pid, init, [sid_of(q) for q in init]))
            # out of hm's session: a Ctrl-C or hangup on hm's terminal does not reach the helper
            sids = [sid_of(h.split()[0]) for h in running]
            tap.check(sids and proc.pid not in sids and sid_of(proc.pid) == proc.pid,
                      "%s: %s: the helper is in a session of its own, not hm's (%s)" % (who, mode, proc.pid),
                      "helpers %s sids %s" % (running, sids))
            # setpriv execs hm: the pid is hm's
            os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            gone = wait_until(lambda: not helpers(), 10)
            tap.check(seen and len(running) == 1 and gone,
                      "%s: %s: the helper ran during the step and is gone after %s of hm" % (who, mode, sig.name),
                      "seen=%s running=%s left=%s" % (seen, running, helpers()))
            # a SIGKILLed hm leaves its store dirs to `hm reap`; the step's processes must be gone
            if sig == signal.SIGKILL:
                left = wait_until(lambda: not sleeping(ir), 10)
                tap.check(left, "%s: %s: the step is gone after SIGKILL of hm" % (who, mode), sleeping(ir))
                argv, env = ctx.cmd([ctx.hm, "reap"])
                subprocess.run(argv, env=env, capture_output=True, timeout=60)


# The first start of a helper in a run hangs (pasta: never exits; slirp4netns: never writes on
# --ready-fd); later ones exec the real helper.  A helper nobody killed leaves its 8 s mark, which
# is before hm's own 10 s bound of each start stage.
FAKE_HELPER = """#!/bin/sh
d=%(state)s
if mkdir "$d/hung" 2>/dev/null; then
    echo $$ >"$d/hung/pid"
    sleep 8
    touch "$d/hung/8s"
    exec sleep 60
fi
exec %(real)s "$@"
"""
TICKS = "i=0; while [ $i -lt 4 ]; do i=$((i+1)); echo tick-$i; sleep 0.2; done"


class FakeHelper:
    def __init__(self, ctx, mode):
        self.dir = tempfile.mkdtemp(prefix="fake-%s-" % mode, dir=ctx.tmp)
        self.bin = os.path.join(self.dir, "bin")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.bin)
        os.makedirs(self.state)
        self.path = os.path.join(self.bin, mode)
        with open(self.path, "w") as f:
            f.write(FAKE_HELPER % {"state": self.state, "real": shutil.which(mode)})
        os.chmod(self.path, 0o755)
        os.chmod(self.dir, 0o755)
        if ctx.user:
            pw = pwd.getpwnam(ctx.user)
            os.chown(self.state, pw.pw_uid, pw.pw_gid)
        self.env = {"PATH": self.bin + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}

    def started(self):
        return os.path.exists(os.path.join(self.state, "hung", "pid"))

    def marked(self):
        return os.path.exists(os.path.join(self.state, "hung", "8s"))


def tagged_processes(fake):
    """Processes of this test's hm runs (hm, its step's pid 1 before exec, the helper's start, the
    fake helper and its sleep: all carry hm's environment) or naming the fake helper."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                env = f.read().split(b"\0")
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        if ("HM_NET_TEST_TAG=" + TAG).encode() in env or fake.dir.encode() in cmd:
            found.append("%s %s" % (name, cmd.decode("utf-8", "replace")[:100]))
    return found


def run_cgroups(run_id):
    """Step cgroups of one run (hm-<first 8 hex of the run id>-N) in every hierarchy."""
    prefix = "hm-%s-" % run_id.replace("-", "")[:8]
    found = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(root, d) for d in dirs if d.startswith(prefix)]
        dirs[:] = [d for d in dirs if not d.startswith(prefix)]
    return found


def store_tmp(ctx):
    d = os.path.join(ctx.store or ("/var/lib/hm" if os.getuid() == 0 else ""), "tmp")
    try:
        return set(os.listdir(d))
    except OSError:
        return set()


def leftovers(ctx, fake, run_id, tmp0, mounts0):
    store = ctx.store or "/var/lib/hm"
    left = {"processes": tagged_processes(fake), "cgroups": run_cgroups(run_id) if run_id else ["(no run id)"],
            "store tmp/": sorted(store_tmp(ctx) - tmp0),
            "mounts": sorted(m for m in mountpoints() - mounts0 if m.startswith((store, ctx.tmp)))}
    return {k: v for k, v in left.items() if v}


def hung_helper(ctx, who):
    for mode in ("pasta", "slirp4netns"):
        fake = FakeHelper(ctx, mode)
        ir = ctx.write_ir([("s1", TICKS), ("s2", TICKS)])
        argv, env = ctx.cmd([ctx.hm, "run", "--runner=ns", "--format", "json", "-k", "--no-cache", "--parallelism", "2",
                             "-d", ctx.src, "-f", ir, "--network", mode], fake.env)
        tmp0, mounts0 = store_tmp(ctx), mountpoints()
        seen = {"run_id": None, "other_end": None, "sigint": None}

        def on_event(proc, run, t, ev):
            if ev is None:
                return
            if ev.get("kind") == "build_start":
                seen["run_id"] = ev.get("run_id")
            if ev.get("kind") == "step_end" and seen["other_end"] is None:
                # the first step to end: the one whose helper came up (its lines are all there)
                ends = [e for _, e in run.events if e.get("kind") in ("step_end", "step_canceled")]
                lines = [e.get("line") for _, e in run.events if e.get("kind") == "step_log" and e.get("key") == ev["key"]]
                seen["other_end"] = {"key": ev["key"], "exit": ev.get("exit_code"), "lines": lines, "t": t,
                                     "ends_so_far": [e.get("key") for e in ends], "helper_started": fake.started(),
                                     "helper_marked": fake.marked()}
                seen["sigint"] = t
                os.kill(proc.pid, signal.SIGINT)

        run = run_hm(argv, env=env, timeout=60, on_event=on_event)
        marked_at_exit = fake.marked()
        o = seen["other_end"] or {}
        hung_key = ({"s1", "s2"} - {o.get("key")}).pop() if o else None
        tap.check(o and o["exit"] == 0 and o["lines"] == ["tick-1", "tick-2", "tick-3", "tick-4"]
                  and o["ends_so_far"] == [o["key"]] and o["helper_started"] and not o["helper_marked"],
                  "%s: %s: a helper that never comes up: the run's other step runs, prints and ends while the "
                  "first still waits for it (the loop is not blocked)" % (who, mode),
                  lambda: "other step at its end: %s\n%s" % (o, run.describe()))
        hung_end = [e for _, e in run.events if e.get("kind") in ("step_end", "step_canceled") and e.get("key") == hung_key]
        left = leftovers(ctx, fake, seen["run_id"], tmp0, mounts0)
        tap.check(run.rc == 130 and not marked_at_exit and len(hung_end) == 1 and not left,
                  "%s: %s: SIGINT while a step waits for its helper: exit 130 before the helper's own 8 s mark "
                  "(hm's bound is 10 s); no process, cgroup, store tmp dir or mount left" % (who, mode),
                  lambda: "rc %s, 8 s mark at exit %s, end of %s: %s, left %s\n%s"
                  % (run.rc, marked_at_exit, hung_key, hung_end, left, run.describe()))
        if seen["sigint"] is not None and not run.timed_out:
            tap.diag("%s: %s: the other step ended %.2f s after hm's start, SIGINT then, hm gone %.2f s later"
                     % (who, mode, seen["sigint"], run.wall - seen["sigint"]))

        # the bound: nobody interrupts; the step fails with one line naming it and the helper
        fake = FakeHelper(ctx, mode)
        ir = ctx.write_ir([("lonely", "echo never")])
        argv, env = ctx.cmd([ctx.hm, "run", "--runner=ns", "--format", "json", "-k", "--no-cache", "-d", ctx.src,
                             "-f", ir, "--network", mode], fake.env)
        tmp0, mounts0 = store_tmp(ctx), mountpoints()
        run = run_hm(argv, env=env, timeout=60)
        msgs = [e.get("message") or "" for _, e in run.events if e.get("kind") == "chain_failed"]
        rid = [e.get("run_id") for _, e in run.events if e.get("kind") == "build_start"]
        left = leftovers(ctx, fake, rid[0] if rid else None, tmp0, mounts0)
        stage = "finish starting" if mode == "pasta" else "bring the network up"
        tap.check(run.rc == 1 and len(msgs) == 1 and "\n" not in msgs[0] and msgs[0].startswith("step 'lonely': ")
                  and "network %s: '%s' did not %s within 10 s" % (mode, fake.path, stage) in msgs[0]
                  and not any(l == "never" for l in logs_and_ends(run.stdout_raw.decode())[0].get("lonely", []))
                  and not left,
                  "%s: %s: a helper that never comes up fails its step after 10 s, in one line naming the step "
                  "and the helper; nothing left" % (who, mode),
                  lambda: "messages %s, left %s\n%s" % (msgs, left, run.describe()))


def sid_of(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def relative_path(ctx):
    """A relative PATH entry is not searched for the helper: the repository (hm's cwd) could
    otherwise supply a `pasta` that runs on the host."""
    bindir = os.path.join(ctx.src, "bin")
    os.makedirs(bindir, exist_ok=True)
    marker = os.path.join(ctx.tmp, "repo-pasta-ran")
    fake = os.path.join(bindir, "pasta")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\ntouch %s\nexit 1\n" % marker)
    os.chmod(fake, 0o755)
    path = "bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    naive = shutil.which("pasta", path=os.path.join(ctx.src, "bin") + ":/usr/bin")
    tap.check(naive == fake, "control: a PATH search from the checkout finds the repository's bin/pasta", naive)
    ir = ctx.write_ir([("x", "ls /sys/class/net | tr '\\n' ' '")])
    argv, env = ctx.cmd([ctx.hm, "run", "--runner=ns", "--format", "json", "--no-cache", "-d", ctx.src, "-f", ir,
                         "--network", "pasta"], {"PATH": path})
    p = subprocess.run(argv, env=env, cwd=ctx.src, capture_output=True, text=True, timeout=120)
    tap.check(p.returncode == 0 and not os.path.exists(marker),
              "PATH=bin:... in the checkout: hm runs the system's pasta, never the repository's bin/pasta",
              "rc %d marker %s\n%s" % (p.returncode, os.path.exists(marker), p.stderr[-400:]))
    os.unlink(fake)


def sleeping(ir):
    """The step of a killed run still alive? (its hm-init names the IR file in its command line)"""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    if ir.encode() in f.read():
                        out.append(name)
            except OSError:
                pass
    return out


def main():
    if not shutil.which("pasta") or not shutil.which("slirp4netns"):
        tap.skip("ns network", "pasta or slirp4netns not installed (contrib/install-deps.sh)")
        return tap.summary()
    srv = TokenServer()
    ctx = Ctx()
    try:
        reachability(ctx, srv, "root" if os.getuid() == 0 else "user")
        resolv(ctx)
        errors(ctx)
        relative_path(ctx)
        lifetimes(ctx, "root" if os.getuid() == 0 else "user")
        hung_helper(ctx, "root" if os.getuid() == 0 else "user")
    finally:
        ctx.cleanup()
    if os.getuid() == 0:
        try:
            pwd.getpwnam("hmtest")
        except KeyError:
            tap.skip("rootless network cases", "no user hmtest (tests/run-all.sh creates it)")
        else:
            tun = os.stat("/dev/net/tun").st_mode & 0o777 if os.path.exists("/dev/net/tun") else 0
            uctx = Ctx("hmtest")
            if tun & 0o006 != 0o006:
                # the one-line error instead; the rest needs a usable /dev/net/tun
                try:
                    p, _, _ = uctx.run([("x", "true")], ["--network", "pasta"])
                    l = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith("hm: runner")]
                    tap.check(p.returncode == 2 and len(l) == 1 and "/dev/net/tun" in l[0] and "--network 'pasta'" in l[0],
                              "hmtest: /dev/net/tun mode %o: one line naming --network, /dev/net/tun and the fix" % tun,
                              (p.returncode, l))
                finally:
                    uctx.cleanup()
                tap.skip("rootless network cases", "/dev/net/tun is mode %o here (Debian's default is 0666)" % tun)
                tap.check(not helpers(), "no pasta/slirp4netns of this test's runs left at the end", helpers())
                return tap.summary()
            try:
                reachability(uctx, srv, "hmtest")
                lifetimes(uctx, "hmtest")
                hung_helper(uctx, "hmtest")
            finally:
                uctx.cleanup()
    tap.check(not helpers(), "no pasta/slirp4netns of this test's runs left at the end", helpers())
    return tap.summary()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
