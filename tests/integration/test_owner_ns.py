#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Owner labels across pid namespaces: a live hm run inside a container is never reaped from outside.

hm inside a Docker container with the engine's socket mounted (the CI image of
contrib/mkimage-ci.sh, the private engine $HM_TEST_DOCKER_SOCK) runs a step `sleep 60`.  Its
container's hm.owner label is <pid>:<starttime>:<pidns>:<boot id> with the pid of the container's
pid namespace (oci/owner.h).  Then:

  control       the label's pid in the host's pid namespace is not that hm (absent, or another start
                time): the old judgement (<pid>:<starttime> read on the host) would remove the live run
  host reap     `hm reap --dry-run` and `hm reap` on the host (root in the initial pid namespace: it
                finds the owner through /proc/*/ns/pid and NSpid) leave the live run's container
  quick reap    a host `hm run --runner=docker` (which quick-reaps at start) leaves it too
  sibling       `hm reap --dry-run` in a second container (a sibling pid namespace: it cannot see the
                owner) lists the container as "left ... in another pid namespace" and removes nothing;
                nor do `hm reap` and a quick-reaping `hm run` there (control: the pid there is not it)
  hm killed     hm inside killed (SIGKILL), its container still up: the host's dry run names the step
                container as dead ("its pid namespace has no such process"); the sibling still leaves it
  ns gone       the whole container removed: the host's dry run says "its pid namespace is gone", and
                `hm reap` on the host removes the step container and the run's images
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)

from lib import Engine, Tap, wait_until  # noqa: E402

HM = os.path.abspath(os.environ.get("HM_BIN", os.path.join(REPO, "build", "hm")))
SOCK = os.environ.get("HM_TEST_DOCKER_SOCK") or ""
IMAGE = "localhost/hm-ci:owner-ns-test"

tap = Tap()


def sh(argv, timeout=120, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def out_of(p):
    return "rc %s\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout[-3000:], p.stderr[-3000:])


def docker(*args, timeout=120):
    return sh(["docker", "-H", "unix://" + SOCK] + list(args), timeout=timeout)


def ir_file(work, name, cmd):
    ir = {"version": "0", "graph": {"nodes": [{"step": {"key": name, "label": name, "cmd": cmd,
                                                         "image": "alpine:3.20"}, "env": {}}],
                                    "node_holes": [], "edge_property": "directed", "edges": []}}
    path = os.path.join(work, name + ".json")
    with open(path, "w") as f:
        json.dump(ir, f)
    return path


def host_starttime(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    return int(s[s.rindex(")") + 2:].split()[19])


def host_env(work):
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "CONTAINER_HOST")}
    env.update(HM_STORE=os.path.join(work, "store"), XDG_CACHE_HOME=os.path.join(work, "xdg"),
               DOCKER_HOST="unix://" + SOCK)
    return env


def host_reap(work, *args):
    return sh([HM, "reap", "--runner", "docker", "--socket", SOCK] + list(args), env=host_env(work))


def main():
    if not SOCK or not Engine("docker", SOCK).ping():
        tap.skip("owner labels across pid namespaces", "$HM_TEST_DOCKER_SOCK not set or not answering")
        return tap.summary()
    if os.geteuid() != 0:
        tap.skip("owner labels across pid namespaces", "needs root (the host judge in the initial pid namespace)")
        return tap.summary()
    eng = Engine("docker", SOCK)
    work = tempfile.mkdtemp(prefix="hm-ownerns-")
    os.chmod(work, 0o755)
    ctr_a = "hm-ownerns-a-%d" % os.getpid()
    ctr_b = "hm-ownerns-b-%d" % os.getpid()
    run_ids = []
    loaded = False
    try:
        tar = os.path.join(work, "hm-ci.tar")
        p = sh([os.path.join(REPO, "contrib", "mkimage-ci.sh"), "-b", HM, "-t", IMAGE, tar])
        if not tap.check(p.returncode == 0, "contrib/mkimage-ci.sh makes the image", lambda: out_of(p)):
            return tap.summary()
        p = docker("load", "-i", tar)
        loaded = tap.check(p.returncode == 0, "docker load -i hm-ci.tar", lambda: out_of(p))
        if not loaded:
            return tap.summary()
        binds = ["-v", "%s:%s" % (SOCK, SOCK), "-v", "%s:%s" % (work, work)]
        for name in (ctr_a, ctr_b):
            p = docker("run", "-d", "--name", name, "--network", "none", *binds, IMAGE, "sleep", "100000")
            if not tap.check(p.returncode == 0, "container %s starts" % name, lambda: out_of(p)):
                return tap.summary()

        # a live run inside A, mid-step
        sleeper = ir_file(work, "sleeper", "sleep 60")
        p = docker("exec", ctr_a, "sh", "-c", "cd /tmp && DOCKER_HOST=unix://%s XDG_CACHE_HOME=%s/xdg-a "
                   "hm run --runner=docker -f %s >%s/a.log 2>&1 & echo $!" % (SOCK, work, sleeper, work))
        inner_pid = p.stdout.strip()
        mine = lambda: [c for c in eng.containers() if c.get("State") == "running"]  # noqa: E731
        up = wait_until(mine, 60, 0.3)
        if not tap.check(bool(up) and len(up) == 1 and inner_pid.isdigit(),
                         "the run inside the container started its step container", lambda: out_of(p)):
            return tap.summary()
        step = up[0]
        cid = step["Id"][:12]
        run_ids.append(step["Labels"].get("hm.run"))
        owner = step["Labels"].get("hm.owner", "")
        fields = owner.split(":")
        tap.check(len(fields) == 4 and fields[0] == inner_pid and fields[2].isdigit(),
                  "the step container's hm.owner %s names the pid inside (%s) and a pid namespace" % (owner, inner_pid))
        ns_a = os.stat("/proc/%d/ns/pid" % int(docker("inspect", "-f", "{{.State.Pid}}", ctr_a).stdout.strip())).st_ino
        tap.check(len(fields) == 4 and fields[2] == str(ns_a) and str(ns_a) != str(os.stat("/proc/self/ns/pid").st_ino),
                  "its pid namespace is the container's (%d), not the host's" % ns_a)
        with open("/proc/sys/kernel/random/boot_id") as f:
            tap.check(len(fields) == 4 and fields[3] == f.read().strip(), "its boot id is this boot's")

        # control: the old judgement, <pid>:<starttime> looked up in the host's namespace
        pid, start = int(fields[0]), int(fields[1])
        tap.check(host_starttime(pid) != start,
                  "control: pid %d on the host is not that hm (start time %s, label %d): the old judgement would "
                  "have removed the live run's container" % (pid, host_starttime(pid), start))

        # host judges: alive
        d = host_reap(work, "--dry-run")
        tap.check(d.returncode == 0 and cid not in d.stdout,
                  "host hm reap --dry-run neither lists nor leaves the live run's container (owner found alive)",
                  lambda: out_of(d))
        r = host_reap(work)
        tap.check(r.returncode == 0 and cid not in r.stdout and len(mine()) == 1,
                  "host hm reap removes nothing of the live run", lambda: out_of(r))
        q = sh([HM, "run", "--runner=docker", "-f", ir_file(work, "quick", "true")], env=host_env(work))
        tap.check(q.returncode == 0 and cid not in q.stdout + q.stderr and [c["Id"][:12] for c in mine()] == [cid],
                  "a host hm run (quick reap at start) leaves the live run's container", lambda: out_of(q))

        # sibling judge: cannot see the owner's namespace
        def sibling():
            return docker("exec", ctr_b, "hm", "reap", "--dry-run", "--runner", "docker", "--socket", SOCK)
        b = sibling()
        tap.check(b.returncode == 0 and ("left docker:%s container %s" % (SOCK, cid)) in b.stdout
                  and "in another pid namespace, not visible from here" in b.stdout
                  and ("would remove docker:%s container %s" % (SOCK, cid)) not in b.stdout
                  and "whose owner is in another pid namespace" in b.stdout,
                  "hm reap --dry-run in a sibling container leaves it as foreign and says why", lambda: out_of(b))
        q = docker("exec", ctr_b, "sh", "-c", "cd /tmp && DOCKER_HOST=unix://%s XDG_CACHE_HOME=%s/xdg-b "
                   "hm run --runner=docker -f %s" % (SOCK, work, ir_file(work, "quick-b", "true")))
        tap.check(q.returncode == 0 and cid not in q.stdout + q.stderr and [c["Id"][:12] for c in mine()] == [cid],
                  "a quick-reaping hm run in the sibling leaves it too", lambda: out_of(q))
        st = docker("exec", ctr_b, "cat", "/proc/%d/stat" % pid)
        tap.check(st.returncode != 0 or int(st.stdout[st.stdout.rindex(")") + 2:].split()[19]) != start,
                  "control: pid %d in the sibling's namespace is not that hm either" % pid, lambda: out_of(st))
        r = docker("exec", ctr_b, "hm", "reap", "--runner", "docker", "--socket", SOCK)
        tap.check(r.returncode == 0 and ("removed docker:%s container %s" % (SOCK, cid)) not in r.stdout
                  and ("left docker:%s container %s" % (SOCK, cid)) in r.stdout and len(mine()) == 1,
                  "hm reap in the sibling removes nothing", lambda: out_of(r))

        # hm inside killed, its container (and pid namespace) still up
        docker("exec", ctr_a, "kill", "-9", inner_pid)
        time.sleep(0.3)
        d = host_reap(work, "--dry-run")
        tap.check(d.returncode == 0 and ("would remove docker:%s container %s" % (SOCK, cid)) in d.stdout
                  and "its pid namespace has no such process" in d.stdout and len(mine()) == 1,
                  "hm killed inside: the host's dry run names the step container as dead", lambda: out_of(d))
        b = sibling()
        tap.check(b.returncode == 0 and ("left docker:%s container %s" % (SOCK, cid)) in b.stdout,
                  "the sibling still cannot tell and leaves it", lambda: out_of(b))

        # the whole container gone: its pid namespace too
        docker("rm", "-f", ctr_a)
        if os.stat("/proc/self/ns/pid").st_ino != 0xEFFFFFFC:
            # this host is itself in a container: a namespace it cannot find may still live elsewhere
            d = host_reap(work, "--dry-run")
            tap.check(d.returncode == 0 and ("left docker:%s container %s" % (SOCK, cid)) in d.stdout,
                      "container removed, host outside the initial pid namespace: left as foreign", lambda: out_of(d))
            return tap.summary()
        d = host_reap(work, "--dry-run")
        tap.check(d.returncode == 0 and ("would remove docker:%s container %s" % (SOCK, cid)) in d.stdout
                  and "its pid namespace is gone" in d.stdout,
                  "container removed: the host's dry run says the owner's pid namespace is gone", lambda: out_of(d))
        r = host_reap(work)
        left = wait_until(lambda: not [c for c in eng.containers() if c["Labels"].get("hm.run") in run_ids]
                          and not [i for i in eng.images() if (i.get("Labels") or {}).get("hm.run") in run_ids
                                   and not eng.is_cache_image(i)], 20, 0.3)
        tap.check(r.returncode == 0 and ("removed docker:%s container %s" % (SOCK, cid)) in r.stdout and left,
                  "host hm reap removes the dead run's container and images", lambda: out_of(r) + "\n%s" % (
                      eng.leftovers(),))
    except Exception:
        tap.check(False, "ran without a harness error", traceback.format_exc())
    finally:
        for name in (ctr_a, ctr_b):
            docker("rm", "-f", name)
        for c in eng.containers():
            if c["Labels"].get("hm.run") in run_ids:
                eng.request("DELETE", "/containers/%s?force=1" % c["Id"])
        if loaded:
            docker("rmi", "-f", IMAGE)
        shutil.rmtree(work, ignore_errors=True)
    return tap.summary()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
