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
exec: `podman exec` and `docker exec` into the running container (exec_checks: output, exit code,
-e/-w/-u with a control without them, the namespaces of the container's init and its pid 1
hm-init with the host's as control, -t with a no-tty control, a missing command, nothing left
in the container); `hm-oci exec` directly on a created+started bundle: the command-line form,
--process + --detach + --pid-file under a subreaper (as conmon/the shim are: it reaps the exit
code), cgroups, seccomp/no_new_privs/bounding set, --tty with a console socket, one-line errors
(bad process file, missing and stopped container), a container with a user namespace of its own
(+ --preserve-fds, with a control), and a rootless container created and exec'd as hmtest.

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


def ns_links(pid):
    out = {}
    for ns in ("pid", "mnt", "net", "uts", "ipc", "cgroup"):
        try:
            out[ns] = os.readlink("/proc/%s/ns/%s" % (pid, ns))
        except OSError:
            out[ns] = None
    return out


INSIDE = "for n in pid mnt net uts ipc cgroup; do echo $n=$(readlink /proc/self/ns/$n); done; echo comm1=$(cat /proc/1/comm)"


def exec_checks(name, ex, ctr, hostname, init_pid):
    """`<engine> exec` into a running container (ctr: its name or id; init_pid: its init on the host)."""
    p = ex(ctr, "sh", "-c", "echo exec-says-hi; echo exec-err >&2; exit 5")
    tap.check(p.returncode == 5 and "exec-says-hi" in p.stdout.splitlines() and "exec-err" in p.stderr,
              "%s exec: stdout, stderr and exit code 5 come back" % name, lambda: describe(p))
    p = ex(ctr, "sh", "-c", "echo exec-other")
    tap.check(p.returncode == 0 and "exec-other" in p.stdout and "exec-says-hi" not in p.stdout,
              "%s exec (control): exit 0 and the other output" % name, lambda: describe(p))
    p = ex("-e", "HM_EXEC_VAR=from-exec", "-w", "/tmp", "-u", "1000:1001", ctr, "sh", "-c",
           "echo var=$HM_EXEC_VAR; echo cwd=$(pwd); echo ids=$(id -u):$(id -g)")
    tap.check(p.returncode == 0 and "var=from-exec" in p.stdout and "cwd=/tmp" in p.stdout and "ids=1000:1001" in p.stdout,
              "%s exec -e -w -u: env, cwd and user of the process" % name, lambda: describe(p))
    p = ex(ctr, "sh", "-c", "echo var=$HM_EXEC_VAR; echo cwd=$(pwd); echo ids=$(id -u):$(id -g); hostname")
    tap.check(p.returncode == 0 and "var=\n" in p.stdout + "\n" and "cwd=/\n" in p.stdout and "ids=0:0" in p.stdout,
              "%s exec without them (control): no such variable, cwd /, root" % name, lambda: describe(p))
    tap.check(hostname in p.stdout.split(), "%s exec: the container's hostname" % name, lambda: describe(p))
    p = ex(ctr, "sh", "-c", INSIDE)
    seen = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    want = ns_links(init_pid) if init_pid > 0 else {}
    own = ns_links("self")
    tap.check(p.returncode == 0 and want and all(seen.get(k) == v for k, v in want.items() if v) and seen.get("comm1") == "hm-init",
              "%s exec: in every namespace of the container's init (pid %d), whose pid 1 is hm-init" % (name, init_pid),
              lambda: describe(p) + "\nwant %r" % want)
    tap.check(all(own[k] != want.get(k) for k in ("pid", "mnt", "uts")) and open("/proc/1/comm").read().strip() != "hm-init",
              "%s exec (control): the host's pid/mnt/uts namespaces and pid 1 differ" % name, lambda: repr(own))
    p = ex("-t", ctr, "sh", "-c", "tty; exit 4")
    tap.check(p.returncode == 4 and "/dev/pts/" in p.stdout, "%s exec -t: the process runs on a pty, exit 4" % name,
              lambda: describe(p))
    p = ex(ctr, "sh", "-c", "tty; true")
    tap.check(p.returncode == 0 and "not a tty" in p.stdout, "%s exec without -t (control): no tty" % name, lambda: describe(p))
    p = ex(ctr, "/no/such/command")
    # docker's CLI prints the runtime's error on stdout
    tap.check(p.returncode not in (0, 124) and "exec '/no/such/command': No such file" in p.stderr + p.stdout,
              "%s exec of a missing command: fails with hm-oci's error naming it" % name, lambda: describe(p))
    p = ex(ctr, "sh", "-c", "ps -o pid,stat,comm")
    rows = [line.split() for line in p.stdout.splitlines()[1:]]
    tap.check(p.returncode == 0 and len(rows) == 3 and not any("Z" in r[1] for r in rows),
              "%s exec: nothing left in the container after the execs (init, its command, this ps)" % name,
              lambda: describe(p))


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
    p = pm("inspect", "--format", "{{.State.Pid}}", "hm-oci-detached")
    init_pid = int(p.stdout.strip() or 0)
    exec_checks("podman", lambda *a: pm("exec", *a), "hm-oci-detached", cid[:12], init_pid)
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
        p = run(dk + ["inspect", "--format", "{{.State.Pid}}", cid])
        init_pid = int(p.stdout.strip() or 0)
        exec_checks("docker", lambda *a: run(dk + ["exec"] + list(a)), cid, cid[:12], init_pid)
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

DETACH_HELPER = """
import ctypes, os, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, as conmon and the shim are
rc = subprocess.call(sys.argv[2:], cwd="/")
if rc:
    sys.exit(rc)
pid = int(open(sys.argv[1]).read())
ppid = [l.split()[1] for l in open("/proc/%d/status" % pid) if l.startswith("PPid:")][0]
print("cgroup=" + ",".join(sorted(open("/proc/%d/cgroup" % pid).read().split())))
_, st = os.waitpid(pid, 0)
print("reaped=%d parent-was-us=%s status=%d" % (pid, ppid == str(os.getpid()), os.waitstatus_to_exitcode(st)))
"""


def exec_with_console(argv):
    """Run argv (hm-oci exec -t --console-socket S ...): take the pty master from S, read it to the end."""
    import socket
    d = tempfile.mkdtemp(prefix="hm-oci-console.")
    path = os.path.join(d, "sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(60)
    proc = subprocess.Popen(argv[:4] + ["--console-socket", path] + argv[4:],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    out = b""
    try:
        conn, _ = srv.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 64, 1)
        with os.fdopen(fds[0], "rb", buffering=0) as master:
            while True:
                try:
                    b = master.read(4096)
                except OSError:  # EIO: the slave's last holder is gone
                    break
                if not b:
                    break
                out += b
    except OSError as e:
        out += ("(console: %s)" % e).encode()
    finally:
        srv.close()
        shutil.rmtree(d, ignore_errors=True)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace") + stdout, stderr)


def oci_create(oci, bundle, name, out_path, cwd=None):
    """`hm-oci create`; its output goes to a file: the container keeps the caller's stdout open."""
    with open(out_path, "w+") as out:
        rc = subprocess.call(oci + ["create", "--bundle", bundle, name], stdout=out, stderr=out,
                             stdin=subprocess.DEVNULL, timeout=60, cwd=cwd)
        out.seek(0)
        return rc, out.read()


def exec_direct_tests(tmp):
    """hm-oci exec without an engine: create + start a bundle, then exec into it."""
    state = os.path.join(tmp, "xstate")
    token = "14142135"
    d = make_bundle(tmp, "bbx", ["sleep", token])
    if not tap.check(d is not None, "exec: a bundle whose command sleeps"):
        return
    oci = [HM_OCI, "--root", state]
    rc, msg = oci_create(oci, d, "hm-x", os.path.join(tmp, "xcreate.out"))
    if not tap.check(rc == 0 and run(oci + ["start", "hm-x"]).returncode == 0, "exec: the container is created and started",
                     lambda: msg):
        return
    with open(os.path.join(state, "hm-x", "state.json")) as f:
        init_pid = json.load(f)["pid"]
    ex = [HM_OCI, "--root", state, "exec"]
    p = run(ex + ["hm-x", "sh", "-c", "echo direct-hi; exit 7"])
    tap.check(p.returncode == 7 and "direct-hi" in p.stdout, "hm-oci exec ID CMD: output and exit code 7", lambda: describe(p))
    p = run(ex + ["--env", "K=v", "--cwd", "/tmp", "--user", "1000:1001", "hm-x", "sh", "-c",
                  "echo k=$K cwd=$(pwd) ids=$(id -u):$(id -g); for f in /proc/$$/fd/*; do [ -e \"$f\" ] && printf '%s ' \"${f##*/}\"; done; echo"])
    tap.check(p.returncode == 0 and "k=v cwd=/tmp ids=1000:1001" in p.stdout and p.stdout.split("\n")[1].split() == ["0", "1", "2"],
              "hm-oci exec --env --cwd --user: applied; the process holds fds 0-2 only", lambda: describe(p))
    p = run(ex + ["hm-x", "sh", "-c", INSIDE + "; grep -E '^(Seccomp|NoNewPrivs|CapBnd):' /proc/self/status"])
    seen = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    want = ns_links(init_pid)
    tap.check(all(seen.get(k) == v for k, v in want.items() if v) and seen.get("comm1") == "hm-init",
              "hm-oci exec: every namespace of the container's init, pid 1 is hm-init", lambda: describe(p))
    with open(os.path.join(d, "config.json")) as f:
        bnd = json.load(f)["process"]["capabilities"]["bounding"]
    st = dict(line.split(":", 1) for line in p.stdout.splitlines() if ":" in line)
    tap.check(st.get("Seccomp", "").strip() == "2" and st.get("NoNewPrivs", "").strip() == "1" and
              bin(int(st.get("CapBnd", "0").strip(), 16)).count("1") == len(bnd),
              "hm-oci exec: the container's seccomp filter, no_new_privs and bounding set (%d caps)" % len(bnd),
              lambda: describe(p))

    proc_file = os.path.join(tmp, "process.json")
    with open(proc_file, "w") as f:
        json.dump({"args": ["sh", "-c", "cat /proc/self/cgroup; sleep 1; exit 3"], "env": ["PATH=/bin"], "cwd": "/",
                   "user": {"uid": 0, "gid": 0}, "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                                                 "permitted": ["CAP_KILL"]}, "noNewPrivileges": True}, f)
    pid_file = os.path.join(tmp, "exec.pid")
    p = run([sys.executable, "-c", DETACH_HELPER, pid_file] + ex + ["--process", proc_file, "--detach", "--pid-file", pid_file, "hm-x"])
    tap.check(p.returncode == 0 and "parent-was-us=True status=3" in p.stdout,
              "hm-oci exec --process --detach --pid-file: hm exits 0, the process is reparented to the caller's subreaper, "
              "which reaps its exit code 3", lambda: describe(p))
    with open("/proc/%d/cgroup" % init_pid) as f:
        init_cg = "cgroup=" + ",".join(sorted(f.read().split()))
    tap.check(init_cg in p.stdout.splitlines() and "hm-x" in init_cg,
              "hm-oci exec: the process is in every cgroup of the container's init", lambda: describe(p) + "\ninit: " + init_cg)
    with open("/proc/self/cgroup") as f:
        tap.check("hm-x" not in f.read(), "hm-oci exec (control): our own cgroups are others")

    p = exec_with_console(ex + ["--tty", "hm-x", "sh", "-c", "tty; exit 4"])
    tap.check(p.returncode == 4 and "/dev/pts/" in p.stdout, "hm-oci exec --tty --console-socket: a pty of the container, exit 4",
              lambda: describe(p))
    p = run(ex + ["--tty", "hm-x", "tty"])
    tap.check(p.returncode != 0 and "console socket" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
              "hm-oci exec --tty without --console-socket: a one-line error", lambda: describe(p))
    with open(os.path.join(tmp, "bad-process.json"), "w") as f:
        f.write('{"args": ["true"], "cwd": "/", "user": {"uid": "root"}}')
    p = run(ex + ["--process", os.path.join(tmp, "bad-process.json"), "hm-x"])
    tap.check(p.returncode != 0 and "bad-process.json: user.uid" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
              "hm-oci exec --process with a bad field: one line naming the file and the field", lambda: describe(p))
    p = run(ex + ["hm-x-nosuch", "true"])
    tap.check(p.returncode != 0 and "'hm-x-nosuch' does not exist" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
              "hm-oci exec into a container that does not exist: one line naming it", lambda: describe(p))
    p = run(ex + ["hm-x", "sh", "-c", "ps -o pid,stat,comm"])
    rows = [line.split() for line in p.stdout.splitlines()[1:]]
    tap.check(p.returncode == 0 and len(rows) == 3 and not any("Z" in r[1] for r in rows),
              "hm-oci exec: nothing left in the container after the execs (init, its command, this ps)", lambda: describe(p))
    run(oci + ["kill", "hm-x", "KILL"])
    wait_until(lambda: '"stopped"' in run(oci + ["state", "hm-x"]).stdout, 10)
    p = run(ex + ["hm-x", "true"])
    tap.check(p.returncode != 0 and "'hm-x' is stopped" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
              "hm-oci exec into a stopped container: one line naming it", lambda: describe(p))
    p = run(oci + ["delete", "hm-x"])
    tap.check(p.returncode == 0, "exec: delete", lambda: describe(p))
    left = os.listdir(state) if os.path.isdir(state) else []
    cg = [c for c in ("/sys/fs/cgroup/pids/hm/hm-x", "/sys/fs/cgroup/hm/hm-x") if os.path.exists(c)]
    tap.check(not left and not cg, "exec: no state and no cgroup left", lambda: repr(left + cg))
    gone = wait_until(lambda: not stray_processes([token, state]), 10)
    tap.check(gone, "exec: no process left", lambda: "\n".join(stray_processes([token, state])))
    exec_created_tests(tmp)
    exec_userns_tests(tmp)
    exec_rootless_tests(tmp)


def exec_created_tests(tmp):
    """A created (not started) container: its command, set up and waiting for `start`, is still a
    fork of hm with no seccomp filter.  A process exec'd into the container must not reach it
    (non-dumpable until execve): no /proc/N/exe (hm's binary on the host), no ptrace."""
    state = os.path.join(tmp, "cstate")
    token = "26457513"
    d = make_bundle(tmp, "bbc", ["sleep", token])
    if not tap.check(d is not None, "exec created: a bundle"):
        return
    oci = [HM_OCI, "--root", state]
    rc, msg = oci_create(oci, d, "hm-c", os.path.join(tmp, "ccreate.out"))
    if not tap.check(rc == 0 and '"created"' in run(oci + ["state", "hm-c"]).stdout,
                     "exec created: the container is created, not started", lambda: msg):
        return
    with open(os.path.join(state, "hm-c", "state.json")) as f:
        init_pid = json.load(f)["pid"]
    with open("/proc/%d/task/%d/children" % (init_pid, init_pid)) as f:
        kids = f.read().split()
    try:
        host_view = os.path.realpath(os.readlink("/proc/%s/exe" % kids[0])) if kids else ""
    except OSError as e:
        host_view = "(%s)" % e
    hm_real = os.path.realpath(HM_OCI)
    tap.check(len(kids) == 1 and os.path.exists(host_view) and os.path.samefile(host_view, hm_real),
              "exec created (control): from the host (CAP_SYS_PTRACE), the waiting command's exe is hm's binary",
              lambda: "kids %r exe %r hm %r" % (kids, host_view, hm_real))
    p = run(oci + ["exec", "hm-c", "sh", "-c",
                   "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(readlink $p/exe 2>&1)\"; done; "
                   "grep -E '^(Pid|PPid|TracerPid):' /proc/2/status"])
    rows = dict(line.split(" ", 1) for line in p.stdout.splitlines() if " " in line and line.split(" ", 1)[0].isdigit())
    tap.check(p.returncode == 0 and "2" in rows and not rows["2"].strip().startswith("/") and "Pid:\t2" in p.stdout,
              "exec created: the waiting command (pid 2) is not dumpable: its /proc/2/exe cannot be read from inside",
              lambda: describe(p))
    tap.check(any(v.strip() == "/bin/busybox" for v in rows.values()),
              "exec created (control): the exec'd shell reads its own /proc/N/exe inside", lambda: describe(p))
    run(oci + ["kill", "hm-c", "KILL"])
    wait_until(lambda: '"stopped"' in run(oci + ["state", "hm-c"]).stdout, 10)
    p = run(oci + ["delete", "hm-c"])
    left = os.listdir(state) if os.path.isdir(state) else []
    tap.check(p.returncode == 0 and not left, "exec created: deleted, no state left", lambda: describe(p) + repr(left))
    gone = wait_until(lambda: not stray_processes([token, state]), 10)
    tap.check(gone, "exec created: no process left", lambda: "\n".join(stray_processes([token, state])))


def exec_userns_tests(tmp):
    """As root, a container with a user namespace of its own (0 -> 200000): exec joins it first."""
    state = os.path.join(tmp, "ustate")
    token = "22360679"
    d = make_bundle(tmp, "bbu", ["sleep", token])
    if not tap.check(d is not None, "exec userns: a bundle"):
        return
    cfg = os.path.join(d, "config.json")
    with open(cfg) as f:
        spec = json.load(f)
    spec["linux"]["namespaces"].append({"type": "user"})
    for k in ("uidMappings", "gidMappings"):
        spec["linux"][k] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    with open(cfg, "w") as f:
        json.dump(spec, f)
    oci = [HM_OCI, "--root", state]
    rc, msg = oci_create(oci, d, "hm-u", os.path.join(tmp, "ucreate.out"))
    if tap.check(rc == 0 and run(oci + ["start", "hm-u"]).returncode == 0, "exec userns: created and started", lambda: msg):
        # --preserve-fds 1: our fd 3 reaches the process
        r, w = os.pipe()
        os.write(w, b"fd3-in-exec\n")
        os.close(w)
        if r != 3:
            os.dup2(r, 3)
            os.close(r)
        try:
            p = subprocess.run(oci + ["exec", "--preserve-fds", "1", "-u", "7:8", "hm-u", "sh", "-c",
                                      "id -u; id -g; cat /proc/self/uid_map; cat <&3"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60, pass_fds=(3,))
        finally:
            os.close(3)
        tap.check(p.returncode == 0 and p.stdout.split()[:5] == ["7", "8", "0", "200000", "65536"],
                  "hm-oci exec into a user namespace (0 -> 200000) as root: uid 7, gid 8 there", lambda: describe(p))
        tap.check("fd3-in-exec" in p.stdout, "hm-oci exec --preserve-fds 1: fd 3 reaches the process", lambda: describe(p))
        p = run(oci + ["exec", "hm-u", "sh", "-c", "cat <&3"])
        tap.check(p.returncode != 0 and "fd3-in-exec" not in p.stdout, "without --preserve-fds (control): no fd 3",
                  lambda: describe(p))
        with open("/proc/self/uid_map") as f:
            tap.check(f.read().split()[:2] == ["0", "0"], "exec userns (control): our own uid map is the identity")
    p = run(oci + ["delete", "--force", "hm-u"])
    tap.check(p.returncode == 0 and not os.listdir(state), "exec userns: delete --force, no state left", lambda: describe(p))
    gone = wait_until(lambda: not stray_processes([token]), 10)
    tap.check(gone, "exec userns: no process left", lambda: "\n".join(stray_processes([token])))


def exec_rootless_tests(tmp):
    """The same binary as an unprivileged user (hmtest): create, start, exec, delete."""
    import pwd
    try:
        user = pwd.getpwnam("hmtest")
    except KeyError:
        tap.skip("hm-oci exec rootless", "no user hmtest")
        return
    base = os.path.join(tmp, "rootless")
    os.makedirs(os.path.join(base, "bin"))
    token = "17320508"
    d = make_bundle(base, "bb", ["sleep", token])
    if not tap.check(d is not None, "exec rootless: a bundle"):
        return
    # limits without cgroups (rootless): rlimits for the command, and for what is exec'd
    cfg = os.path.join(d, "config.json")
    with open(cfg) as f:
        spec = json.load(f)
    spec["linux"].setdefault("resources", {}).update({"memory": {"limit": 1 << 30}, "pids": {"limit": 200}})
    with open(cfg, "w") as f:
        json.dump(spec, f)
    shutil.copy(HM_OCI, os.path.join(base, "bin", "hm-oci"))  # the build dir may be closed to hmtest
    for root, dirs, files in os.walk(base):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), user.pw_uid, user.pw_gid)
    os.chown(base, user.pw_uid, user.pw_gid)
    state = os.path.join(base, "state")
    oci = ["setpriv", "--reuid", str(user.pw_uid), "--regid", str(user.pw_gid), "--clear-groups",
           os.path.join(base, "bin", "hm-oci"), "--root", state]
    rc, msg = oci_create(oci, d, "hm-rl", os.path.join(base, "create.out"), cwd=base)
    if not tap.check(rc == 0 and run(oci + ["start", "hm-rl"]).returncode == 0, "exec rootless: created and started as hmtest",
                     lambda: msg):
        return
    p = run(oci + ["exec", "--user", "5:6", "hm-rl", "sh", "-c", "echo ids=$(id -u):$(id -g) comm1=$(cat /proc/1/comm); exit 9"])
    tap.check(p.returncode == 9 and "ids=5:6 comm1=hm-init" in p.stdout,
              "hm-oci exec as hmtest (rootless): in the container (pid 1 hm-init), user 5:6, exit 9", lambda: describe(p))
    p = run(oci + ["exec", "hm-rl", "sh", "-c", "grep -E '^Max (address space|processes)' /proc/self/limits; echo --; "
                   "grep -E '^Max (address space|processes)' /proc/2/limits"])
    mine, _, theirs = p.stdout.partition("--\n")
    want = ["Max processes 200 200 processes", "Max address space %d %d bytes" % (1 << 30, 1 << 30)]
    norm = lambda t: sorted(" ".join(line.split()) for line in t.splitlines() if line.strip())  # noqa: E731
    tap.check(p.returncode == 0 and norm(theirs) == sorted(want),
              "exec rootless (control): the container's command has memory.limit and pids.limit as rlimits (no cgroups)",
              lambda: describe(p))
    tap.check(p.returncode == 0 and norm(mine) == sorted(want),
              "hm-oci exec rootless: the exec'd process has the same rlimits", lambda: describe(p))
    p = run(oci + ["delete", "--force", "hm-rl"])
    tap.check(p.returncode == 0 and not os.listdir(state), "exec rootless: delete --force, no state left", lambda: describe(p))
    gone = wait_until(lambda: not stray_processes([token]), 10)
    tap.check(gone, "exec rootless: no process left", lambda: "\n".join(stray_processes([token])))


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
        exec_direct_tests(tmp)
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
