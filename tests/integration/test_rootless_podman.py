#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Rootless Podman: an ordinary user's hm against that user's own Podman service.

As root, the test makes sure user hmtest exists (useradd -m) with /etc/subuid and /etc/subgid
ranges, gives it a private HOME and XDG_RUNTIME_DIR under a temp dir (so nothing of another
session's hmtest is touched), writes its containers.conf (runtime runc, cgroupfs, file events
log, lowered default_ulimits: shared/docs/engine-api.md §0) and starts, through setpriv as
hmtest, `podman system service` on $XDG_RUNTIME_DIR/podman/podman.sock.  A busybox rootfs is
imported into the user's store as alpine:3.20.  Then, as hmtest:
  - test_ir_cases.py --runners podman --cases-only against that socket (the full case set;
    HM_ROOTLESS_FULL=0: snapshots, a failing step, the workspace, cache and cache clean);
  - a run SIGKILLed while its step sleeps, then `hm reap` (control: a live run is kept).
At the end the service is stopped and nothing may be left: containers and hm.run images in the
user's store, processes of the service (podman, conmon, the rootless pause process), files in the
TMPDIR given to hm.
"""

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)

from lib import (REPO, Engine, Tap, busybox_rootfs_tar, hm_bin, out_of, shared_dir, wait_until,  # noqa: E402
                 write_sleeper_ir)

HM = hm_bin()
SHARED = shared_dir()
FULL = os.environ.get("HM_ROOTLESS_FULL", "1") == "1"  # one environment in its family: the full set
USER = "hmtest"
SUBSET = ["cow-chain", "exit-code", "env-and-workspace", "cached", "cache-clean"]
tap = Tap()


def has_range(path, name, uid):
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (name, str(uid)) and int(parts[2]) >= 65536:
                    return True
    except (OSError, ValueError):
        pass
    return False


class User:
    def __init__(self, root):
        self.pw = pwd.getpwnam(USER)
        self.root = root
        self.home = os.path.join(root, "home")
        self.run = os.path.join(root, "run")
        self.tmp = os.path.join(root, "home", "tmp")
        self.svc_tmp = os.path.join(root, "home", "svc-tmp")
        self.sock = os.path.join(self.run, "podman", "podman.sock")
        for d, mode in ((self.home, 0o755), (self.run, 0o700), (self.tmp, 0o700), (self.svc_tmp, 0o700),
                        (os.path.join(self.home, ".config", "containers"), 0o755),
                        (os.path.join(self.run, "podman"), 0o700)):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, mode)
        for dirpath, _, _ in os.walk(self.home):
            os.chown(dirpath, self.pw.pw_uid, self.pw.pw_gid)
        os.chown(self.run, self.pw.pw_uid, self.pw.pw_gid)
        os.chown(os.path.join(self.run, "podman"), self.pw.pw_uid, self.pw.pw_gid)
        conf = os.path.join(self.home, ".config", "containers", "containers.conf")
        with open(conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
        os.chown(conf, self.pw.pw_uid, self.pw.pw_gid)

    def env(self):
        return {"HOME": self.home, "USER": USER, "LOGNAME": USER, "XDG_RUNTIME_DIR": self.run,
                "XDG_CACHE_HOME": os.path.join(self.home, ".cache"), "TMPDIR": self.tmp,
                "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                "CONTAINER_HOST": "unix://" + self.sock}

    def argv(self, argv, extra=None, client=True):
        e = self.env()
        if not client:  # CONTAINER_HOST would make podman itself a remote client
            del e["CONTAINER_HOST"]
            e["TMPDIR"] = self.svc_tmp  # podman's own temp files (api_load.tar*) are not hm's
        e.update(extra or {})
        return ["setpriv", "--reuid=" + USER, "--regid=" + USER, "--init-groups", "--reset-env", "env"] + \
            ["%s=%s" % kv for kv in e.items()] + list(argv)

    def sh(self, argv, timeout=120, extra=None):
        return subprocess.run(self.argv(argv, extra), capture_output=True, timeout=timeout, cwd=self.home,
                              stdin=subprocess.DEVNULL)

    def processes(self):
        """Processes of hmtest whose environment names our private XDG_RUNTIME_DIR (ours only)."""
        found = []
        needle = ("XDG_RUNTIME_DIR=" + self.run).encode()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.stat("/proc/" + name).st_uid != self.pw.pw_uid:
                    continue
                with open("/proc/%s/environ" % name, "rb") as f:
                    env = f.read().split(b"\0")
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if needle in env or self.run in cmd or self.root in cmd:
                found.append("%s %s" % (name, cmd[:100]))
        return found


def ensure_user():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        p = subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], capture_output=True)
        if not tap.check(p.returncode == 0, "useradd -m %s" % USER, lambda: out_of(p)):
            return False
    pw = pwd.getpwnam(USER)
    ok = has_range("/etc/subuid", USER, pw.pw_uid) and has_range("/etc/subgid", USER, pw.pw_uid)
    return tap.check(ok, "%s has /etc/subuid and /etc/subgid ranges (65536 ids)" % USER,
                     "add them: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 " + USER)


def copy_tree(root, u):
    """hm, the tests and shared/ir where hmtest can read them (as tests/run-all.sh does)."""
    dst = os.path.join(root, "tree")
    os.makedirs(os.path.join(dst, "build"))
    shutil.copy2(HM, os.path.join(dst, "build", "hm"))
    shutil.copytree(os.path.join(REPO, "tests", "integration"), os.path.join(dst, "tests", "integration"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.join(REPO, "tests", "lib"), os.path.join(dst, "tests", "lib"))
    shutil.copytree(os.path.join(SHARED, "ir"), os.path.join(dst, "shared", "ir"))
    subprocess.run(["chmod", "-R", "a+rX", dst], check=True)
    return dst


def start_service(u):
    log = open(os.path.join(u.root, "podman.log"), "wb")
    proc = subprocess.Popen(u.argv(["podman", "system", "service", "--time=0", "unix://" + u.sock], client=False),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=u.home,
                            start_new_session=True)
    log.close()
    eng = Engine("podman", u.sock)
    up = wait_until(lambda: proc.poll() is not None or (os.path.exists(u.sock) and eng.ping()), 60, 0.2) \
        and proc.poll() is None
    tap.check(up, "hmtest's podman system service answers on $XDG_RUNTIME_DIR/podman/podman.sock",
              lambda: open(os.path.join(u.root, "podman.log"), errors="replace").read()[-3000:])
    return proc, eng if up else None


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False


def stop_service(u, proc):
    # Rootless podman re-executes itself inside the user namespace: the
    # process we started may exit on SIGTERM before the re-executed service
    # does.  Stop the whole session (start_new_session), as systemd would.
    pgid = proc.pid
    if proc.poll() is None or group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except OSError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        if not wait_until(lambda: not group_alive(pgid), 30, 0.2):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
    # the rootless pause process (holds the user namespace) outlives the service by design
    pause = os.path.join(u.run, "libpod", "tmp", "pause.pid")
    try:
        with open(pause) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def reap(u, eng, tree):
    ir = os.path.join(u.root, "sleeper.json")
    write_sleeper_ir(ir)
    hm = os.path.join(tree, "build", "hm")
    log = os.path.join(u.root, "reap-run.log")
    with open(log, "wb") as f:
        proc = subprocess.Popen(u.argv([hm, "run", "--runner=podman", "--logs", "-f", ir]), stdin=subprocess.DEVNULL,
                                stdout=f, stderr=subprocess.STDOUT, cwd=u.home, start_new_session=True)
    running = wait_until(lambda: [c for c in eng.containers() if c.get("State") == "running"], 60, 0.3)
    if not tap.check(bool(running), "rootless reap: the run's step container is running",
                     lambda: open(log, errors="replace").read()[-2000:]):
        proc.kill()
        proc.wait()
        return
    live = u.sh([hm, "reap", "--runner", "podman"])
    tap.check(live.returncode == 0 and len(eng.containers()) == 1,
              "rootless reap: hm reap keeps the live run's container (control)", lambda: out_of(live))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    p = u.sh([hm, "reap", "--runner", "podman"])
    gone = wait_until(lambda: not eng.containers(), 20, 0.3)
    tap.check(p.returncode == 0 and gone and running[0]["Id"][:12] in p.stdout.decode(errors="replace"),
              "rootless reap: after SIGKILL, hm reap as hmtest removes the dead run's container",
              lambda: out_of(p) + "\n%s" % (eng.leftovers(),))


def main():
    if os.geteuid() != 0:
        tap.skip("rootless podman", "needs root to set up user %s" % USER)
        tap.summary()
        return 0
    if not shutil.which("podman") or not shutil.which("newuidmap"):
        tap.check(False, "podman and newuidmap (uidmap) installed", "contrib/install-deps.sh")
        tap.summary()
        return 1
    if not ensure_user():
        tap.summary()
        return 1
    root = tempfile.mkdtemp(prefix="hm-rootless-")
    os.chmod(root, 0o755)
    proc = None
    u = None
    t0 = time.monotonic()
    try:
        u = User(root)
        tree = copy_tree(root, u)
        proc, eng = start_service(u)
        if eng is None:
            return 1
        tar = busybox_rootfs_tar(root)
        eng.import_rootfs_tar(tar, "localhost/busybox", "test")
        eng.tag("localhost/busybox:latest", "localhost/alpine", "3.20")  # podman ignores tag= on import
        tap.check(any("localhost/alpine:3.20" in (i.get("RepoTags") or []) for i in eng.get_json("/images/json")),
                  "busybox loaded into hmtest's store as alpine:3.20")
        cases = [] if FULL else ["--only", ",".join(SUBSET)]
        t1 = time.monotonic()
        p = subprocess.run(u.argv(["python3", os.path.join(tree, "tests", "integration", "test_ir_cases.py"),
                                   "--runners", "podman", "--cases-only", "--exclude", "dry-run,bad-ir",
                                   "--hm", os.path.join(tree, "build", "hm"), "--shared", os.path.join(tree, "shared")]
                                  + cases, extra={"HM_TEST_PODMAN_SOCK": u.sock}),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900, cwd=u.home,
                           stdin=subprocess.DEVNULL)
        lines = p.stdout.decode(errors="replace").splitlines()
        for line in lines[:-1]:
            if line.startswith(("ok ", "not ok ")):
                tap.check(line.startswith("ok "), "hmtest: " + line.split(" - ", 1)[-1])
            elif line.startswith("# "):
                tap.diag("hmtest: " + line[2:])
        summary = lines[-1] if lines else ""
        tap.check(p.returncode == 0, "hmtest: IR cases through the rootless service pass (%s; %.0f s)" % (
            summary, time.monotonic() - t1), lambda: "\n".join(lines[-30:]))
        reap(u, eng, tree)
        cs = eng.get_json("/containers/json?all=1")
        tap.check(not cs, "no container at all in hmtest's store", lambda: cs)
        ims = [i for i in eng.images() if not eng.is_cache_image(i)]
        tap.check(not ims, "no image labelled hm.run in hmtest's store", lambda: ims)
        left = os.listdir(u.tmp)
        tap.check(not left, "nothing left in the TMPDIR given to hm", lambda: left)
    except Exception:
        tap.check(False, "ran without a harness error", traceback.format_exc())
    finally:
        if proc is not None:
            stop_service(u, proc)
            procs = wait_until(lambda: not u.processes(), 15, 0.3)
            tap.check(procs, "after the service stopped: no process of hmtest's service (podman, conmon, pause) "
                      "is left", lambda: u.processes())
            for line in u.processes():
                try:
                    os.kill(int(line.split()[0]), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        shutil.rmtree(root, ignore_errors=True)
        tap.check(not os.path.exists(root), "the user's temp dirs are removed")
        tap.diag("rootless podman: %.0f s" % (time.monotonic() - t0))
    return 0 if tap.summary() else 1


if __name__ == "__main__":
    sys.exit(main())
