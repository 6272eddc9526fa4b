#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A step's network helper must not unmount the host's mounts (ns runner, root).

The engine-runner flakes of docs/flake.md (Docker starting a step without its root filesystem,
"tini: exec /bin/sh failed", exit 127; Podman's runc unable to join a vanished /run/netns bind,
exit 1 without output) came from `hm run --runner=ns --network slirp4netns` running as root at
the same time: slirp4netns --enable-sandbox makes only "/" private in its mount namespace and
then lazily unmounts its old root, which unmounts in the host every mount sitting under a mount of
a shared peer group (both engines keep their per-container mounts there).

Set-up: a bind mount made shared, holding a tmpfs, in a temp dir (what dockerd's data root and
Podman's /run/netns look like).  Checked: after a one-step run with --network slirp4netns and
with --network pasta, the tmpfs is still mounted.  Control: slirp4netns started by the test
itself the same way hm starts it (--enable-sandbox, on a network namespace of `unshare --net`)
but from the host's mount namespace unmounts the tmpfs, so the check sees the failure.

Reads HM_BIN, HM_STORE (alpine:3.20 imported).  Needs root and slirp4netns (pasta optional)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Tap, wait_until  # noqa: E402

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
STORE = os.environ.get("HM_STORE", "")
tap = Tap()


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(l.split()[4] == path for l in f)


def sh(*argv):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60)


def ensure_tmpfs(sub):
    if not mounted(sub):
        sh("mount", "-t", "tmpfs", "-o", "size=1m", "hm-prop-test", sub)
    return mounted(sub)


def control(sub, work):
    """slirp4netns --enable-sandbox from the host's mount namespace: the tmpfs goes."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    helper = None
    try:
        ns = "/proc/%d/ns/net" % holder.pid
        if not wait_until(lambda: os.path.exists(ns) and os.readlink(ns) != os.readlink("/proc/self/ns/net"), 10):
            return None
        log = open(os.path.join(work, "slirp.log"), "w")
        helper = subprocess.Popen(["slirp4netns", "--configure", "--mtu=65520", "--enable-sandbox",
                                   "--netns-type=path", ns, "tap0"], stdout=log, stderr=log)
        # gone once the sandbox is set up (it logs the tap fd first); give it the time it takes
        wait_until(lambda: not mounted(sub) or helper.poll() is not None, 20)
        return not mounted(sub)
    finally:
        for p in (helper, holder):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def main():
    if not os.access(HM, os.X_OK):
        tap.check(False, "hm binary at %s" % HM)
        return tap.summary()
    if os.geteuid() != 0 or not STORE or not shutil.which("slirp4netns") or not shutil.which("unshare"):
        tap.skip("network helper propagation", "needs root, $HM_STORE, slirp4netns and unshare")
        return tap.summary()
    work = tempfile.mkdtemp(prefix="hm-net-prop-")
    shared = os.path.join(work, "shared")
    sub = os.path.join(shared, "sub")
    os.makedirs(os.path.join(work, "src"))
    os.makedirs(shared)
    try:
        ok = sh("mount", "--bind", shared, shared).returncode == 0 and \
            sh("mount", "--make-shared", shared).returncode == 0
        os.makedirs(sub, exist_ok=True)
        if not tap.check(ok and ensure_tmpfs(sub), "a tmpfs under a shared bind mount (as an engine keeps them)"):
            return tap.summary()
        irf = os.path.join(work, "one.json")
        with open(irf, "w") as f:
            json.dump({"version": "0", "graph": {"nodes": [{"env": {}, "step": {
                "key": "s", "label": "s", "image": "alpine:3.20",
                "cmd": "grep -c tap0 /proc/net/dev || true"}}],
                "node_holes": [], "edge_property": "directed", "edges": []}}, f)
        modes = ["slirp4netns"] + (["pasta"] if shutil.which("pasta") else [])
        if "pasta" not in modes:
            tap.skip("pasta", "not installed")
        for mode in modes:
            ensure_tmpfs(sub)
            env = dict(os.environ, XDG_CACHE_HOME=os.path.join(work, "cache"))
            p = subprocess.run([HM, "run", "--runner", "ns", "--no-cache", "--network", mode, "-d",
                                os.path.join(work, "src"), "-f", irf], capture_output=True, text=True,
                               timeout=120, env=env)
            tap.check(p.returncode == 0 and mounted(sub),
                      "--network %s: the step ran and the host's mount under the shared one is still there"
                      % mode, lambda: "rc %d, mounted %s\n%s" % (p.returncode, mounted(sub), p.stderr[-800:]))
        ensure_tmpfs(sub)
        gone = control(sub, work)
        if gone is None:
            tap.check(False, "control: a network namespace from unshare --net")
        else:
            tap.check(gone, "control: slirp4netns --enable-sandbox started from the host's mount namespace "
                      "unmounts it (the check can see the failure)")
    finally:
        for m in (sub, shared):
            for _ in range(3):
                if not mounted(m):
                    break
                sh("umount", "-l", m)
        time.sleep(0.1)
        shutil.rmtree(work, ignore_errors=True)
    return tap.summary()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
