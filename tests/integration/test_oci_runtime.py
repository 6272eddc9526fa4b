#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""hm-oci as the OCI runtime of a real engine, and `hm oci run` of the example bundle.

podman: a private store (podman --root/--runroot in a temp dir, CONTAINERS_CONF with its
own tmp_dir, cgroupfs, --network none) holding a busybox image imported from a tar made by
tests/lib/mkbusybox.sh, and `--runtime <build>/hm-oci` (its default --root /run/hm-oci:
podman 4.3's cleanup process drops --runtime-flag, so `delete` would look elsewhere; the
leftover check is scoped to our container ids, from --cidfile):
  - `run --rm` returns the command's output and exit code (control: a second run with a
    different string and exit code 0 returns those);
  - `run -d` + `ps` (running, and hm-oci's state dir holds it) + `stop` + `rm` work;
  - nothing is left: no container process (a unique sleep argument), no mount below the
    temp dir, no entry in the state dir, no podman container.
docker: a dockerd of our own (socket, data-root and exec-root in the temp dir, no bridge, no
iptables) started with `--add-runtime hm=<build>/hm-oci`: `run --rm --runtime hm` output and
exit code (control: another run), `run -d` + `stop` + `rm`, `run -t` on a pty; then the
daemon is stopped and nothing of it is left (processes, mounts).
bundle: bundles/make-busybox-bundle.sh + `hm oci run` (output, exit code, control); and the
same bundle without a mount namespace of its own, through create/start/kill/delete: its
mounts are made below the rootfs in our namespace (seen while it runs: the control) and
are all gone after delete.

podman's defaults for a root container raise RLIMIT_NOFILE/NPROC above the caller's hard
limits, which needs CAP_SYS_RESOURCE (runc fails the same way without it): the podman runs
pass --ulimit values at or below ours.

Needs root and podman (skipped otherwise)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Tap, mountpoints, stray_processes, wait_until  # noqa: E402

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
HM_OCI = os.path.join(os.path.dirname(HM), "hm-oci")
TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
tap = Tap()


def run(argv, timeout=120, env=None):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                              env=env, universal_newlines=True)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(argv, 124, e.stdout or "", (e.stderr or "") + "\n(timed out)")


def describe(p):
    return "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout[-2000:], p.stderr[-2000:])


def mounts_below(d):
    return sorted(m for m in mountpoints() if m == d or m.startswith(d + "/"))


class Podman:
    def __init__(self, tmp):
        self.tmp = tmp
        self.state = "/run/hm-oci"
        os.makedirs(os.path.join(tmp, "ptmp"))
        conf = os.path.join(tmp, "containers.conf")
        with open(conf, "w") as f:
            f.write('[engine]\ntmp_dir = "%s"\nevents_logger = "file"\n' % os.path.join(tmp, "ptmp"))
        self.env = dict(os.environ, CONTAINERS_CONF=conf)
        self.base = ["podman", "--root", os.path.join(tmp, "root"), "--runroot", os.path.join(tmp, "run"),
                     "--cgroup-manager", "cgroupfs", "--runtime", HM_OCI]

    def __call__(self, *args, timeout=120):
        return run(self.base + list(args), timeout=timeout, env=self.env)


RUN_FLAGS = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def podman_tests(tmp):
    pm = Podman(tmp)
    p = pm("import", os.path.join(tmp, "busybox.tar"), "localhost/hm-oci-busybox:test")
    if not tap.check(p.returncode == 0, "podman: busybox image imported into the private store", lambda: describe(p)):
        return
    img = "localhost/hm-oci-busybox:test"

    cids = []

    def cidfile():
        cids.append(os.path.join(tmp, "cid%d" % len(cids)))
        return "--cidfile=" + cids[-1]

    p = pm("run", "--rm", cidfile(), *RUN_FLAGS, img, "sh", "-c", "echo hello-from-hm-oci; echo to-stderr >&2; exit 3")
    tap.check(p.returncode == 3, "podman run --rm: the command's exit code (3) comes back", lambda: describe(p))
    tap.check("hello-from-hm-oci" in p.stdout.splitlines(), "podman run --rm: its stdout comes back", lambda: describe(p))
    tap.check("to-stderr" in p.stderr, "podman run --rm: its stderr comes back", lambda: describe(p))
    # control: the same checks see a different outcome
    p = pm("run", "--rm", cidfile(), *RUN_FLAGS, img, "sh", "-c", "echo other-output")
    tap.check(p.returncode == 0 and "other-output" in p.stdout and "hello-from-hm-oci" not in p.stdout,
              "podman run --rm (control): exit 0 and the other output", lambda: describe(p))

    # process.terminal: the pty master reaches conmon over --console-socket
    p = pm("run", "--rm", "-t", cidfile(), *RUN_FLAGS, img, "sh", "-c", "tty; exit 4")
    tap.check(p.returncode == 4 and "/dev/pts/" in p.stdout, "podman run -t: the command runs on a pty (console socket)",
              lambda: describe(p))
    p = pm("run", "--rm", cidfile(), *RUN_FLAGS, img, "sh", "-c", "tty; true")
    tap.check(p.returncode == 0 and "not a tty" in p.stdout, "podman run without -t (control): no tty", lambda: describe(p))
    # --preserve-fds: the caller's fd 3 reaches the command
    r, w = os.pipe()
    os.write(w, b"through-fd-3\n")
    os.close(w)
    if r != 3:
        os.dup2(r, 3)
        os.close(r)
    try:
        p = subprocess.run(pm.base + ["run", "--rm", cidfile(), "--preserve-fds", "1"] + RUN_FLAGS + [img, "sh", "-c", "cat <&3"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, env=pm.env, universal_newlines=True,
                           pass_fds=(3,))
    finally:
        os.close(3)
    tap.check(p.returncode == 0 and "through-fd-3" in p.stdout, "podman run --preserve-fds 1: fd 3 reaches the command",
              lambda: describe(p))
    p = pm("run", "--rm", cidfile(), *RUN_FLAGS, img, "sh", "-c", "cat <&3")
    tap.check(p.returncode != 0 and "through-fd-3" not in p.stdout, "without --preserve-fds (control): no fd 3",
              lambda: describe(p))

    token = "31415926"  # a sleep argument nothing else on the machine uses
    p = pm("run", "-d", cidfile(), "--name", "hm-oci-detached", *RUN_FLAGS, img, "sleep", token)
    cid = p.stdout.strip()
    if not tap.check(p.returncode == 0 and len(cid) == 64, "podman run -d: a container id", lambda: describe(p)):
        return
    p = pm("ps", "--format", "{{.ID}} {{.Status}}")
    tap.check(cid[:12] in p.stdout and "Up" in p.stdout, "podman ps: the detached container is up", lambda: describe(p))
    tap.check(os.path.isfile(os.path.join(pm.state, cid, "state.json")),
              "hm-oci keeps its state under --root while it runs",
              lambda: "state dir: %r" % (os.listdir(pm.state) if os.path.isdir(pm.state) else None))
    tap.check(bool(stray_processes([token])), "the container's process is visible while it runs (control)")
    p = pm("exec", "hm-oci-detached", "true")
    if p.returncode != 0:
        tap.diag("podman exec is not implemented by hm-oci (%s)" % p.stderr.strip().splitlines()[-1:])
    p = pm("stop", "-t", "2", "hm-oci-detached", timeout=60)
    tap.check(p.returncode == 0, "podman stop", lambda: describe(p))
    p = pm("ps", "-a", "--format", "{{.ID}} {{.Status}}")
    tap.check(cid[:12] in p.stdout and "Exited" in p.stdout, "podman ps -a: the container exited", lambda: describe(p))
    p = pm("rm", "hm-oci-detached")
    tap.check(p.returncode == 0, "podman rm", lambda: describe(p))
    p = pm("ps", "-a", "-q")
    tap.check(p.returncode == 0 and not p.stdout.strip(), "podman ps -a: no container left", lambda: describe(p))

    gone = wait_until(lambda: not stray_processes([token]), 10)
    tap.check(gone, "no container process left", lambda: "\n".join(stray_processes([token])))
    ids = []
    for c in cids:
        try:
            with open(c) as f:
                ids.append(f.read().strip())
        except OSError:
            pass
    left = [i for i in ids if os.path.exists(os.path.join(pm.state, i))]
    tap.check(len(ids) == 7 and not left, "no state left under hm-oci's --root for our %d containers" % len(ids),
              lambda: repr(left))
    m = [x for x in mounts_below(tmp) if "/overlay" not in x or "/merged" in x]
    tap.check(not m, "no container mount left below the temp dir", lambda: "\n".join(m))
    pm("rmi", "-f", img)
    pm("system", "reset", "-f", timeout=60)
    m = mounts_below(tmp)
    tap.check(not m, "after podman system reset no mount is left below the temp dir", lambda: "\n".join(m))


def docker_tests(tmp, tar):
    d = os.path.join(tmp, "docker")
    os.makedirs(d)
    sock = os.path.join(d, "docker.sock")
    log = open(os.path.join(d, "dockerd.log"), "w")
    daemon = subprocess.Popen(["dockerd", "--host", "unix://" + sock, "--iptables=false", "--ip6tables=false", "--bridge=none",
                               "--data-root", os.path.join(d, "data"), "--exec-root", os.path.join(d, "exec"),
                               "--pidfile", os.path.join(d, "dockerd.pid"), "--add-runtime", "hm=" + HM_OCI],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    dk = ["docker", "-H", "unix://" + sock]
    try:
        up = wait_until(lambda: daemon.poll() is None and run(dk + ["version"], timeout=10).returncode == 0, 30, 0.2)
        if not tap.check(up, "docker: a private dockerd with --add-runtime hm=hm-oci answers",
                         lambda: open(os.path.join(d, "dockerd.log")).read()[-2000:]):
            return
        p = run(dk + ["import", tar, "hm-oci-busybox:test"])
        if not tap.check(p.returncode == 0, "docker: busybox image imported", lambda: describe(p)):
            return
        img = "hm-oci-busybox:test"
        p = run(dk + ["run", "--rm", "--runtime", "hm", "--network", "none", img, "sh", "-c", "echo hello-docker; exit 6"])
        tap.check(p.returncode == 6 and "hello-docker" in p.stdout, "docker run --rm --runtime hm: output and exit code 6",
                  lambda: describe(p))
        p = run(dk + ["run", "--rm", "--runtime", "hm", "--network", "none", img, "sh", "-c", "echo other-docker"])
        tap.check(p.returncode == 0 and "other-docker" in p.stdout and "hello-docker" not in p.stdout,
                  "docker run (control): exit 0 and the other output", lambda: describe(p))
        p = run(dk + ["run", "-d", "--runtime", "hm", "--network", "none", img, "sleep", "16180339"])
        cid = p.stdout.strip()
        tap.check(p.returncode == 0 and bool(stray_processes(["16180339"])), "docker run -d: the container runs",
                  lambda: describe(p))
        p = run(dk + ["stop", "-t", "2", cid], timeout=60)
        q = run(dk + ["ps", "-a", "--format", "{{.ID}} {{.Status}}"])
        tap.check(p.returncode == 0 and "Exited" in q.stdout, "docker stop: it exited", lambda: describe(p) + describe(q))
        p = run(dk + ["rm", cid])
        q = run(dk + ["ps", "-a", "-q"])
        tap.check(p.returncode == 0 and not q.stdout.strip(), "docker rm: no container left", lambda: describe(p) + describe(q))
        p = run(dk + ["run", "--rm", "-t", "--runtime", "hm", "--network", "none", img, "tty"])
        tap.check(p.returncode == 0 and "/dev/pts/" in p.stdout, "docker run -t: a pty through --console-socket",
                  lambda: describe(p))
        run(dk + ["rmi", "-f", img])
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
    gone = wait_until(lambda: not stray_processes([d, "16180339"]), 15)
    tap.check(gone, "docker: no daemon, shim or container process left", lambda: "\n".join(stray_processes([d, "16180339"])))
    m = mounts_below(d)
    tap.check(not m, "docker: no mount left below its dirs", lambda: "\n".join(m))


def make_bundle(tmp, name, args):
    d = os.path.join(tmp, name)
    env = dict(os.environ, HM=HM)
    p = run(["sh", os.path.join(TOP, "bundles/make-busybox-bundle.sh"), d] + args, env=env)
    return d if p.returncode == 0 else None


def bundle_tests(tmp):
    state = os.path.join(tmp, "bstate")
    d = make_bundle(tmp, "bb", ["sh", "-c", "echo bundle-says-hi; exit 5"])
    if not tap.check(d is not None, "bundles/make-busybox-bundle.sh builds a bundle"):
        return
    p = run([HM, "oci", "--root", state, "run", "--bundle", d, "hm-oci-bundle"])
    tap.check(p.returncode == 5 and "bundle-says-hi" in p.stdout, "hm oci run of the bundle: output and exit code 5",
              lambda: describe(p))
    d2 = make_bundle(tmp, "bb2", [])
    p = run([HM_OCI, "--root", state, "run", "--bundle", d2, "hm-oci-bundle2"])
    tap.check(p.returncode == 0 and "hello from busybox" in p.stdout and "hm-bundle" in p.stdout,
              "hm-oci run of the default bundle (control): exit 0, its greeting and hostname", lambda: describe(p))

    # no mount namespace of its own: the mounts live in ours below the rootfs until delete
    d3 = make_bundle(tmp, "bb3", ["sleep", "27182818"])
    cfg = os.path.join(d3, "config.json")
    with open(cfg) as f:
        spec = json.load(f)
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "mount"]
    with open(cfg, "w") as f:
        json.dump(spec, f)
    rootfs = os.path.realpath(os.path.join(d3, "rootfs"))
    # the container keeps create's stdio: files, not pipes (a pipe would not see EOF)
    with open(os.path.join(tmp, "create.out"), "w+") as out:
        rc = subprocess.call([HM_OCI, "--root", state, "create", "--bundle", d3, "hm-oci-nomnt"], stdout=out,
                             stderr=out, stdin=subprocess.DEVNULL, timeout=60)
        out.seek(0)
        p = subprocess.CompletedProcess([], rc, out.read(), "")
    if tap.check(p.returncode == 0, "create without a mount namespace", lambda: describe(p)):
        tap.check(len(mounts_below(rootfs)) >= 2, "while it exists, its mounts are below its rootfs (control)",
                  lambda: repr(mounts_below(rootfs)))
        p = run([HM_OCI, "--root", state, "start", "hm-oci-nomnt"])
        tap.check(p.returncode == 0, "start", lambda: describe(p))
        p = run([HM_OCI, "--root", state, "kill", "hm-oci-nomnt", "KILL"])
        tap.check(p.returncode == 0, "kill", lambda: describe(p))
        wait_until(lambda: '"stopped"' in run([HM_OCI, "--root", state, "state", "hm-oci-nomnt"]).stdout, 10)
        p = run([HM_OCI, "--root", state, "delete", "hm-oci-nomnt"])
        tap.check(p.returncode == 0, "delete", lambda: describe(p))
        tap.check(not mounts_below(rootfs), "after delete no mount is left below its rootfs",
                  lambda: repr(mounts_below(rootfs)))
    left = os.listdir(state) if os.path.isdir(state) else []
    tap.check(not left, "no state left under --root", lambda: repr(left))
    needles = ["27182818", state, d]  # also a container still blocked before exec (its cmdline is hm-oci's)
    gone = wait_until(lambda: not stray_processes(needles), 10)
    tap.check(gone, "no bundle process left", lambda: "\n".join(stray_processes(needles)))


def main():
    if os.geteuid() != 0:
        tap.skip("hm-oci under podman and bundles", "needs root")
        return tap.summary()
    if not tap.check(os.access(HM_OCI, os.X_OK), "%s exists (make all links it)" % HM_OCI):
        return tap.summary()
    tmp = tempfile.mkdtemp(prefix="hm-oci-test.")
    os.chmod(tmp, 0o755)
    try:
        rootfs, tar = os.path.join(tmp, "rootfs"), os.path.join(tmp, "busybox.tar")
        p = run(["bash", os.path.join(TOP, "tests/lib/mkbusybox.sh"), rootfs])
        if p.returncode == 0:
            p = run(["tar", "-C", rootfs, "-cf", tar, "."])
        tap.check(p.returncode == 0, "a busybox image tar from tests/lib/mkbusybox.sh", lambda: describe(p))
        if shutil.which("podman"):
            podman_tests(tmp)
        else:
            tap.skip("podman --runtime hm-oci", "podman not installed")
        tar = os.path.join(tmp, "busybox.tar")
        if shutil.which("dockerd") and shutil.which("docker") and os.path.exists(tar):
            docker_tests(tmp, tar)
        else:
            tap.skip("docker --runtime hm", "dockerd/docker or the busybox tar missing")
        bundle_tests(tmp)
    finally:
        for pid in [int(x.split()[0]) for x in stray_processes([tmp])]:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        for m in reversed(mounts_below(tmp)):
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    return tap.summary()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
