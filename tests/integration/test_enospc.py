#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A full disk (ENOSPC): a clear one-line error naming the path, a non-zero exit, and a store
that is consistent afterwards.

The ns store ($HM_STORE) and $XDG_CACHE_HOME are small tmpfs mounts made here (root):
  import     `hm image import` of the busybox rootfs into a 1 MiB store
  upper      a step that fills its upper dir (dd until ENOSPC, then exits 0): its commit
  workspace  a workspace bigger than the store's free space, copied into a step
  cache      a cacheable step whose cache index write finds $XDG_CACHE_HOME full
  upload     (engine runner) the fake engine (tests/lib/fake_engine.py) answers the workspace
             upload with Docker's ENOSPC message: the error carries it
After each: `hm image ls` works, the store's tmp/ is empty, every layer dir has its metadata, no
ephemeral layer is left live, the space is given back (free space as before the failing run), and
after freeing space (a bigger tmpfs, a smaller workspace, room in the cache dir) the same thing
succeeds.  Control: the same step passes on the same store when it does not fill it.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from lib import Tap, run_hm  # noqa: E402
from fake_engine import FakeEngine  # noqa: E402

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
NOSPC = "No space left on device"
tap = Tap()


def ir(cmd, key="s", cache_key=None):
    step = {"key": key, "label": key, "cmd": cmd, "image": "alpine:3.20"}
    if cache_key:
        step["cache"] = {"env_keys": [], "key": cache_key, "policy": "forever"}
    return {"version": "0", "graph": {"nodes": [{"env": {}, "step": step}], "node_holes": [],
                                      "edge_property": "directed", "edges": []}}


class Tmpfs:
    def __init__(self, path, size):
        self.path = path
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", path], check=True)

    def resize(self, size):
        subprocess.run(["mount", "-o", "remount,size=%s" % size, self.path], check=True)

    def free(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def umount(self):
        subprocess.run(["umount", "-l", self.path])


def hm(args, env, **kw):
    return subprocess.run([HM] + args, capture_output=True, text=True, timeout=120, env=env, **kw)


def consistent(name, store, env, free_before=None, fs=None):
    """The store after a failure: hm image ls works, tmp/ empty, every layer dir has its meta,
    no live ephemeral layer, (and the space given back)."""
    ls = hm(["image", "ls"], env)
    tmp = sorted(os.listdir(os.path.join(store, "tmp"))) if os.path.isdir(os.path.join(store, "tmp")) else []
    layers = os.listdir(os.path.join(store, "layers")) if os.path.isdir(os.path.join(store, "layers")) else []
    no_meta = [l for l in layers if not l.endswith(".meta") and l + ".meta" not in layers]
    live_eph = []
    for l in layers:
        if l.endswith(".meta"):
            with open(os.path.join(store, "layers", l)) as f:
                m = dict((x.split(" ", 1) + [""])[:2] for x in f.read().splitlines() if x)
            if m.get("ephemeral", "0") not in ("0", "") and m.get("dropped", "0") in ("0", ""):
                live_eph.append(l)
    tap.check(ls.returncode == 0 and ls.stdout.startswith("NAME"), "%s: hm image ls works afterwards" % name,
              ls.stderr)
    tap.check(not tmp and not no_meta and not live_eph,
              "%s: no tmp/ entry, no layer dir without metadata, no live ephemeral layer" % name,
              "tmp %s\nno meta %s\nlive ephemeral %s" % (tmp, no_meta, live_eph))
    if free_before is not None:
        tap.check(fs.free() == free_before, "%s: the space is given back (%d KiB free, as before)"
                  % (name, free_before // 1024), "free now %d, before %d" % (fs.free(), free_before))


def one_error_line(run):
    cf = run.ev().kind("chain_failed")
    return cf[0].get("message", "") if len(cf) == 1 else ""


def main():
    if not os.access(HM, os.X_OK):
        tap.check(False, "hm binary at %s" % HM)
        return tap.summary()
    if os.geteuid() != 0:
        tap.skip("ENOSPC", "needs root (tmpfs mounts)")
        return tap.summary()
    work = tempfile.mkdtemp(prefix="hm-enospc-")
    mounts = []
    try:
        rootfs = os.path.join(work, "rootfs")
        subprocess.run([os.path.join(ROOT, "tests/lib/mkbusybox.sh"), rootfs], check=True, capture_output=True)
        tar = os.path.join(work, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
        fs = Tmpfs(os.path.join(work, "store"), "1m")
        mounts.append(fs)
        cache = Tmpfs(os.path.join(work, "cache"), "64k")
        mounts.append(cache)
        store = os.path.join(fs.path, "s")
        env = dict(os.environ, HM_STORE=store, XDG_CACHE_HOME=cache.path)
        for k in ("DOCKER_HOST", "CONTAINER_HOST", "HM_RUNNER"):
            env.pop(k, None)
        src = os.path.join(work, "src")
        os.makedirs(src)
        irs = {}
        for name, doc in (("fill", ir("dd if=/dev/zero of=/big bs=64k count=100000 2>/dev/null; echo filled")),
                          ("small", ir("echo small > /small; echo ok")),
                          ("ls", ir("ls -l /workspace/big.bin")),
                          ("cached", ir("echo cached", "c", cache_key="enospc-test"))):
            irs[name] = os.path.join(work, name + ".json")
            with open(irs[name], "w") as f:
                json.dump(doc, f)

        # import into a 1 MiB store
        p = hm(["image", "import", tar, "alpine:3.20"], env)
        lines = p.stderr.splitlines()
        tap.check(p.returncode != 0 and len(lines) == 1 and NOSPC in lines[0]
                  and re.search(r"write '%s/tmp/[^']+/bin/busybox'" % re.escape(store), lines[0]),
                  "import: exit %d, one line naming the file that did not fit" % p.returncode, p.stderr)
        consistent("import", store, env)
        tap.check("alpine" not in hm(["image", "ls"], env).stdout, "import: no half image listed")
        fs.resize("16m")
        p = hm(["image", "import", tar, "alpine:3.20"], env)
        tap.check(p.returncode == 0 and "alpine:3.20" in hm(["image", "ls"], env).stdout,
                  "import: succeeds once there is room", p.stderr)

        # control: a small step passes on this store, and gives its space back
        free0 = fs.free()
        r = run_hm([HM, "run", "--format", "json", "-d", src, "-f", irs["small"]], env=env, timeout=120)
        tap.check(r.rc == 0 and r.ev().logs("s") == ["ok"] and fs.free() == free0,
                  "control: a step that fits passes and gives its space back", r.describe)

        # a step fills its upper dir, then its commit needs a block
        r = run_hm([HM, "run", "--format", "json", "-d", src, "-f", irs["fill"]], env=env, timeout=120)
        msg = one_error_line(r)
        tap.check(r.rc == 1 and r.ev().logs("s") == ["filled"] and msg.startswith("step 's': commit: ")
                  and NOSPC in msg and re.search(r"'%s/layers/[0-9a-f]+\.meta'" % re.escape(store), msg),
                  "upper: exit 1, the commit fails naming the file it could not write (%s)" % msg, r.describe)
        consistent("upper", store, env, free0, fs)
        r = run_hm([HM, "run", "--format", "json", "-d", src, "-f", irs["small"]], env=env, timeout=120)
        tap.check(r.rc == 0, "upper: a later run passes", r.describe)

        # a workspace bigger than the free space
        with open(os.path.join(src, "big.bin"), "wb") as f:
            f.write(os.urandom(fs.free() + (1 << 20)))
        r = run_hm([HM, "run", "--format", "json", "-d", src, "-f", irs["ls"]], env=env, timeout=120)
        msg = one_error_line(r)
        tap.check(r.rc == 1 and msg.startswith("step 's': workspace: ") and NOSPC in msg
                  and re.search(r"write '%s/tmp/workspace-[^']+/workspace/big\.bin'" % re.escape(store), msg),
                  "workspace: exit 1, the copy fails naming the file (%s)" % msg, r.describe)
        consistent("workspace", store, env, free0, fs)
        with open(os.path.join(src, "big.bin"), "wb") as f:
            f.write(b"x" * 1000)
        r = run_hm([HM, "run", "--format", "json", "-d", src, "-f", irs["ls"]], env=env, timeout=120)
        tap.check(r.rc == 0 and any(" 1000 " in l for l in r.ev().logs("s")),
                  "workspace: a smaller workspace then passes, whole", r.describe)
        os.unlink(os.path.join(src, "big.bin"))

        # the cache index write finds $XDG_CACHE_HOME full
        fd = os.open(os.path.join(cache.path, "fill"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        os.close(fd)
        r = run_hm([HM, "run", "--format", "json", "-d", src, "-f", irs["cached"]], env=env, timeout=120)
        msg = one_error_line(r)
        tap.check(r.rc == 1 and msg.startswith("step 'c': cache index: ") and NOSPC in msg
                  and "'%s/hm/index" % cache.path in msg,
                  "cache: exit 1, the index write fails naming the file (%s)" % msg, r.describe)
        ls = hm(["cache", "ls"], env)
        tags = os.listdir(os.path.join(store, "tags"))
        tap.check(ls.returncode == 0 and len(ls.stdout.splitlines()) == 1 and not tags,
                  "cache: the index still loads (empty) and no cache tag is left in the store",
                  "%s%s\ntags %s" % (ls.stdout, ls.stderr, tags))
        consistent("cache", store, env, free0, fs)
        os.unlink(os.path.join(cache.path, "fill"))
        r = run_hm([HM, "run", "--format", "json", "-d", src, "-f", irs["cached"]], env=env, timeout=120)
        r2 = run_hm([HM, "run", "--format", "json", "-d", src, "-f", irs["cached"]], env=env, timeout=120)
        rows = hm(["cache", "ls"], env).stdout.splitlines()
        tap.check(r.rc == 0 and r2.rc == 0 and len(r2.ev().kind("step_cache_hit")) == 1 and len(rows) == 2,
                  "cache: with room again the entry is written and the next run hits it", r.describe)
        hm(["cache", "clean"], env)

        # the engine runner's upload: the fake engine answers with Docker's ENOSPC message
        sock = os.path.join(work, "fake.sock")
        enospc = "write /var/lib/docker/overlay2/x/diff/workspace/big.bin: no space left on device"
        # (a non-empty workspace: an empty one is not uploaded at all)
        with open(os.path.join(src, "file.txt"), "w") as f:
            f.write("to upload\n")
        with FakeEngine(sock, ("upload", "500", enospc)) as fe:
            r = run_hm([HM, "run", "--runner", "docker", "--socket", sock, "--format", "json", "-d", src,
                        "-f", irs["small"]], env=env, timeout=60)
            left = dict(fe.containers)
        msg = one_error_line(r)
        tap.check(r.rc == 1 and msg == "step 's': upload workspace: " + enospc and not left,
                  "upload: exit 1, the engine's message names the path (%s); the container is removed" % msg,
                  r.describe)
    finally:
        for m in reversed(mounts):
            m.umount()
        shutil.rmtree(work, ignore_errors=True)
    return tap.summary()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
