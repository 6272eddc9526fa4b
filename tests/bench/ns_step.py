#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Row 1 of `make bench` alone, for before/after comparisons of the ns runtime:
a 50-step builds_in chain of `true` on --runner=ns per step, against
`bwrap --unshare-all true` in the same busybox rootfs, interleaved (each rep
runs every hm binary once, then bwrap 6 times), medians of wall and of CPU
(user+sys of the process and its children, getrusage) per step.

  sudo tests/bench/ns_step.py [HM_BINARY ...]     (default: build/hm)
  NS_STEP_REPS=11 (default 7), NS_STEP_CHAIN=50

Needs root, bwrap and busybox-static (as `make bench` does).  Everything it
makes lives in one temporary directory, removed at the end; reports only.
"""
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))


def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, env):
    c0, t0 = cpu(), time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit("%s exited %d: %s" % (" ".join(cmd[:3]), p.returncode, p.stderr.decode(errors="replace")[-300:]))
    return time.perf_counter() - t0, cpu() - c0


def main():
    if os.geteuid() != 0:
        sys.exit("ns_step.py: must run as root (like make bench)")
    if not shutil.which("bwrap"):
        sys.exit("ns_step.py: bwrap missing (apt-get install bubblewrap)")
    bins = [os.path.abspath(b) for b in sys.argv[1:]] or [os.path.join(TOP, "build", "hm")]
    reps = int(os.environ.get("NS_STEP_REPS", "7"))
    n = int(os.environ.get("NS_STEP_CHAIN", "50"))
    work = tempfile.mkdtemp(prefix="hm-ns-step.")
    try:
        env = dict(os.environ, HM_STORE=work + "/store", XDG_CACHE_HOME=work + "/cache", XDG_DATA_HOME=work + "/data")
        os.makedirs(work + "/cache")
        os.makedirs(work + "/empty")
        rootfs = work + "/rootfs"
        subprocess.run([TOP + "/tests/lib/mkbusybox.sh", rootfs], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["tar", "-C", rootfs, "-cf", work + "/busybox.tar", "."], check=True)
        subprocess.run([bins[0], "image", "import", work + "/busybox.tar", "busybox:bench"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        ir = work + "/chain.json"
        with open(ir, "w") as f:
            subprocess.run([sys.executable, HERE + "/gen.py", "chain", str(n), "busybox:bench"], stdout=f, check=True)
        bw = ["bwrap", "--unshare-all", "--bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev", "true"]

        def hm(b):
            return [b, "run", "-f", ir, "--runner=ns", "--format", "json", "-d", work + "/empty"]

        for b in bins:  # warm-up: page cache, first layer
            timed(hm(b), env)
        timed(bw, env)
        wall = {b: [] for b in bins}
        cpus = {b: [] for b in bins}
        bw_wall, bw_cpu = [], []
        for _ in range(reps):
            for b in bins:
                w, c = timed(hm(b), env)
                wall[b].append(w / n * 1000)
                cpus[b].append(c / n * 1000)
            for _ in range(6):
                w, c = timed(bw, env)
                bw_wall.append(w * 1000)
                bw_cpu.append(c * 1000)
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        bm = statistics.median(bw_wall)
        print("%d-step chain x%d, bwrap x%d, interleaved; load average at the end %s" % (n, reps, len(bw_wall), load))
        print("bwrap --unshare-all true: median %.2f ms wall, %.2f ms CPU per run" % (bm, statistics.median(bw_cpu)))
        for b in bins:
            m = statistics.median(wall[b])
            print("%s: ns step median %.2f ms wall, %.2f ms CPU; ratio to bwrap %.2f (walls: %s)" % (
                b, m, statistics.median(cpus[b]), m / bm, " ".join("%.1f" % x for x in wall[b])))
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", work])


if __name__ == "__main__":
    main()
