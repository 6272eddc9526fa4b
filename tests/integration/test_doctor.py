#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`hm doctor` on this machine, line by line, as root and as the user hmtest.

Each expected line is computed here, independently of hm, from what the host says:
  header            uid (root, or hmtest's uid from the passwd database)
  container         /.dockerenv, /run/.containerenv, or (as root) container= in /proc/1/environ
  unshare           util-linux `unshare` as that user: root -m -p -i -u -n, user -U
  user namespaces   `unshare -U -r true`; max_user_namespaces from /proc/sys/user; the AppArmor
                    restriction from /proc/sys/kernel/apparmor_restrict_unprivileged_userns
  overlay           root: `unshare -m` mounting an overlay in a temp dir of the store's filesystem
                    (the store's nearest existing dir: the tmpfs); hmtest ("overlay in userns"):
                    `unshare -U -r -m` mounting one with userxattr there
  fresh /proc       `unshare [-U -r] -m -p -f --mount-proc true`
  hostname          `unshare [-U -r] -u hostname hm-doctor`
  cgroups           the fstype of /sys/fs/cgroup and /sys/fs/cgroup/unified in /proc/self/mountinfo,
                    the v1 controller dirs' writability for that user (`test -w`)
  seccomp           Seccomp: of /proc/self/status (inherited by hm), the first line of
                    /proc/sys/kernel/seccomp/actions_avail
  pidfd             os.pidfd_open
  docker, podman    root: $DOCKER_HOST / $CONTAINER_HOST set to the private engines, their versions
                    from a /_ping's headers; hmtest: no variables and the default sockets absent
                    (else those two lines are skipped)
  store             $HM_STORE on a 64 MiB tmpfs mounted by the test: free space from statvfs
  summary           the count of error and warning lines above
Error case: $DOCKER_HOST names a stale socket (bound, then closed: connection refused): the docker
line is an error with the fix, the summary counts it and hm doctor exits 1.  Control: the error
case's output differs from the root case's in exactly that line, its fix and the summary.
Needs root (tmpfs, the user switch); the hmtest part needs the user hmtest.
"""
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Engine, Tap, UnixHTTPConnection  # noqa: E402

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
tap = Tap()
NAMES = {"ok": "ok     ", "warning": "warning", "error": "error  "}


def fmt(level, check, msg, fix=None):
    out = ["%s  %-22s %s" % (NAMES[level], check, msg)]
    if level != "ok" and fix:
        out.append("         %-22s fix: %s" % ("", fix))
    return out


def as_user(user, argv, **kw):
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def mount_fstype(point):
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            if parts[4] == point:
                found = parts[sep + 1]  # the last mount on a point is the visible one
    return found


# ---------------------------------------------------------------------------------------------


def exp_container(user):
    if os.path.exists("/.dockerenv"):
        hint = "docker: /.dockerenv exists"
    elif os.path.exists("/run/.containerenv"):
        hint = "podman: /run/.containerenv exists"
    else:
        env = read("/proc/1/environ", "") if not user else ""  # not readable for another user
        vals = [e for e in (env or "").split("\0") if e.startswith("container=") and len(e) > 10]
        hint = "pid 1 has " + vals[0] if vals else None
    if hint:
        return fmt("ok", "container", "hm runs inside a container (%s): the lines below say what it allows" % hint)
    return fmt("ok", "container", "not inside a container")


def exp_unshare(user):
    flags = ["-U"] if user else ["-m", "-p", "-i", "-u", "-n"]
    what = "unshare(CLONE_NEWUSER)" if user else "unshare(CLONE_NEWNS|NEWPID|NEWIPC|NEWUTS|NEWNET)"
    if as_user(user, ["unshare"] + flags + ["true"]).returncode == 0:
        return fmt("ok", "unshare", "%s allowed" % what)
    return None  # not this machine: the test says so


def exp_userns(user):
    mx = int(read("/proc/sys/user/max_user_namespaces", "-1").strip())
    aa = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "").strip() == "1"
    if as_user(user, ["unshare", "-U", "-r", "true"]).returncode == 0:
        return fmt("ok", "user namespaces", "can create one (max_user_namespaces=%d%s)"
                   % (mx, "; AppArmor restriction on but not in the way" if aa else ""))
    return None


def exp_overlay(user, store):
    probe = store
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    d = tempfile.mkdtemp(dir=probe)
    os.chmod(d, 0o777)
    for s in "luwm":
        os.mkdir(os.path.join(d, s))
        os.chmod(os.path.join(d, s), 0o777)
    opts = "lowerdir=%s/l,upperdir=%s/u,workdir=%s/w" % (d, d, d)
    if user:
        cmd = "mount -t overlay overlay -o %s,userxattr %s/m" % (opts, d)
        ok = as_user(user, ["unshare", "-U", "-r", "-m", "sh", "-c", cmd]).returncode == 0
    else:
        ok = as_user(None, ["unshare", "-m", "sh", "-c", "mount -t overlay overlay -o %s %s/m" % (opts, d)]).returncode == 0
    shutil.rmtree(d, ignore_errors=True)
    if ok and user:
        return fmt("ok", "overlay in userns", "overlay with userxattr mounts inside a user namespace "
                   "(in the store's filesystem, %s)" % probe)
    if ok:
        return fmt("ok", "overlay", "an overlay mounts (in the store's filesystem, %s)" % probe)
    return None


def exp_hostname(user):
    flags = ["-U", "-r"] if user else []
    if as_user(user, ["unshare"] + flags + ["-u", "hostname", "hm-doctor"]).returncode == 0:
        return fmt("ok", "hostname", "steps get their own hostname (sethostname in a new UTS namespace)")
    return None


def exp_proc(user):
    flags = ["-U", "-r"] if user else []
    if as_user(user, ["unshare"] + flags + ["-m", "-p", "-f", "--mount-proc", "true"]).returncode == 0:
        return fmt("ok", "fresh /proc", "a new /proc mounts in a new %s namespace" % ("user+pid" if user else "pid"))
    return None


def exp_cgroups(user):
    top = mount_fstype("/sys/fs/cgroup")
    if top == "cgroup2":
        ctl = (read("/sys/fs/cgroup/cgroup.subtree_control", "") or "").split("\n")[0]
        w = as_user(user, ["test", "-w", "/sys/fs/cgroup"]).returncode == 0
        return fmt("ok" if w else "warning", "cgroups", "unified v2; controllers enabled: %s%s"
                   % (ctl or "none", "" if w else "; not writable: limits fall back to rlimits"),
                   "run hm in a delegated cgroup (systemd-run --user --scope -p Delegate=yes)")
    kind = "hybrid" if mount_fstype("/sys/fs/cgroup/unified") == "cgroup2" else "legacy v1"
    w = all(as_user(user, ["test", "-w", "/sys/fs/cgroup/" + c]).returncode == 0 for c in ("memory", "pids"))
    if w:
        return fmt("ok", "cgroups", "%s: v1 memory, pids, cpu writable: limits via cgroup v1 (crun refuses such "
                   "hosts; hm and runc do not)" % kind)
    return fmt("warning", "cgroups", "%s: v1 controllers not writable: --memory/--pids-limit fall back to rlimits, "
               "--cpus is not applied" % kind,
               "run as root, or boot with systemd.unified_cgroup_hierarchy=1 and delegate a cgroup")


def exp_seccomp_pidfd():
    status = read("/proc/self/status", "")
    mode = next((int(l.split()[1]) for l in status.splitlines() if l.startswith("Seccomp:")), -1)
    actions = (read("/proc/sys/kernel/seccomp/actions_avail") or "").split("\n")[0]
    if mode > 0:
        out = fmt("warning", "seccomp", "hm itself runs under a seccomp filter (mode %d): nested filters still work"
                  % mode)
    else:
        out = fmt("ok", "seccomp", "filters available (%s)" % (actions or "actions unknown"))
    fd = os.pidfd_open(os.getpid())
    os.close(fd)
    return out + fmt("ok", "pidfd", "pidfd_open works (step exits are watched through pidfds)")


def ping_version(sock):
    conn = UnixHTTPConnection(sock, timeout=10)
    try:
        conn.request("GET", "/_ping")
        r = conn.getresponse()
        r.read()
        libpod = r.getheader("Libpod-Api-Version")
        if libpod:
            return "podman", libpod
        server = r.getheader("Server") or ""
        return "docker", server.split("/", 1)[1].split(" ")[0] if "/" in server else "unknown version"
    finally:
        conn.close()


def exp_engines(env):
    out = []
    dh, ch = env.get("DOCKER_HOST", ""), env.get("CONTAINER_HOST", "")
    for kind, var, val in (("docker", "DOCKER_HOST", dh), ("podman", "CONTAINER_HOST", ch)):
        sock = val[len("unix://"):]
        k, ver = ping_version(sock)
        assert k == kind, "%s is %s, not %s" % (sock, k, kind)
        out += fmt("ok", kind, "%s %s at %s (from $%s)" % (kind, ver, sock, var))
    return out


DEFAULTS = ("/var/run/docker.sock", "/run/podman/podman.sock")


def exp_engines_absent():
    if any(os.path.exists(p) for p in DEFAULTS):
        return None
    # each line lists only its own engine's candidates
    return (fmt("warning", "docker", "no docker engine answered: /var/run/docker.sock: no such file",
                "start dockerd or set DOCKER_HOST=unix://PATH (only needed for --runner=docker)")
            + fmt("warning", "podman", "no podman engine answered: /run/podman/podman.sock: no such file",
                  "start `podman system service` or set CONTAINER_HOST=unix://PATH (only for --runner=podman)"))


def exp_store(path):
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe)
    gib = st.f_bavail * st.f_frsize / (1 << 30)
    return fmt("warning" if gib < 2 else "ok", "store", "%s ($HM_STORE), %.1f GiB free" % (path, gib),
               "free space, or HM_STORE=DIR elsewhere")


def summary(lines):
    e = sum(1 for l in lines if l.startswith("error  "))
    w = sum(1 for l in lines if l.startswith("warning"))
    return ["%d error(s), %d warning(s)" % (e, w)], e


# ---------------------------------------------------------------------------------------------


def compare(name, got, want, rc, want_rc):
    got_lines = got.splitlines()
    ok = got_lines == want and rc == want_rc
    diff = []
    for i in range(max(len(got_lines), len(want))):
        g = got_lines[i] if i < len(got_lines) else "(none)"
        w = want[i] if i < len(want) else "(none)"
        if g != w:
            diff.append("line %d\n  got:  %s\n  want: %s" % (i + 1, g, w))
    tap.check(ok, "%s: hm doctor prints the %d expected lines and exits %d" % (name, len(want), want_rc),
              lambda: "rc %s\n%s\n--- output:\n%s" % (rc, "\n".join(diff), got))


def expected(user, uid, env, work, store, engines):
    parts = [exp_container(user), exp_unshare(user), exp_userns(user), exp_overlay(user, store), exp_proc(user),
             exp_hostname(user)]
    if any(p is None for p in parts):
        return None
    want = ["hm doctor: %s, uid %d" % ("unprivileged user" if user else "root", uid)]
    for p in parts:
        want += p
    want += exp_cgroups(user) + exp_seccomp_pidfd() + engines + exp_store(store)
    s, errors = summary(want)
    return want + s, 1 if errors else 0


def main():
    if not os.access(HM, os.X_OK):
        tap.check(False, "hm binary at %s" % HM)
        return tap.summary()
    if os.geteuid() != 0 or not shutil.which("unshare"):
        tap.skip("hm doctor", "needs root and util-linux unshare")
        return tap.summary()
    work = tempfile.mkdtemp(prefix="hm-doctor-test-")
    os.chmod(work, 0o755)
    tmpfs = os.path.join(work, "small")
    os.mkdir(tmpfs)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0777", "tmpfs", tmpfs]).returncode == 0
    try:
        if not tap.check(mounted, "a 64 MiB tmpfs for the store"):
            return tap.summary()
        store = os.path.join(tmpfs, "store")
        base = {k: v for k, v in os.environ.items()
                if k not in ("DOCKER_HOST", "CONTAINER_HOST", "XDG_RUNTIME_DIR", "HM_STORE")}
        base["HM_STORE"] = store
        dsock, psock = os.environ.get("HM_TEST_DOCKER_SOCK", ""), os.environ.get("HM_TEST_PODMAN_SOCK", "")

        # root, with the private engines
        if dsock and psock and Engine("docker", dsock).ping() and Engine("podman", psock).ping():
            env = dict(base, DOCKER_HOST="unix://" + dsock, CONTAINER_HOST="unix://" + psock)
            root_want = expected(None, 0, env, work, store, exp_engines(env))
            if root_want is None:
                tap.skip("root", "this host refuses namespaces: the expected lines are not computed here")
            else:
                p = subprocess.run([HM, "doctor"], capture_output=True, text=True, timeout=120, env=env)
                compare("root", p.stdout, *root_want[:1], p.returncode, root_want[1])
                tap.check(p.stderr == "", "root: nothing on stderr", p.stderr)

                # error case: $DOCKER_HOST names a socket nobody listens on
                stale = os.path.join(work, "stale.sock")
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(stale)
                s.close()
                eenv = dict(env, DOCKER_HOST="unix://" + stale)
                # docker's own candidates only (engine.h): $DOCKER_HOST, then the docker default;
                # $CONTAINER_HOST (a live podman) and the podman default are not docker's to list
                why = ("no docker engine answered: $DOCKER_HOST unix://%s: connection refused; "
                       "/var/run/docker.sock: no such file" % stale)
                docker_i = next(i for i, l in enumerate(root_want[0]) if l.startswith("ok       docker "))
                want = root_want[0][:docker_i] + fmt("error", "docker", why, "start the engine at unix://%s, or "
                                                     "unset $DOCKER_HOST" % stale) + root_want[0][docker_i + 1:-1]
                want += summary(want)[0]
                if any(os.path.exists(d) for d in DEFAULTS):
                    tap.skip("error case", "a default engine socket exists here: the candidate list differs")
                else:
                    p = subprocess.run([HM, "doctor"], capture_output=True, text=True, timeout=120, env=eenv)
                    compare("error case (stale $DOCKER_HOST)", p.stdout, want, p.returncode, 1)
                    tap.check(len(want) == len(root_want[0]) + 1 and want[-1] != root_want[0][-1],
                              "error case (control): its lines differ from the root case's in the docker line, "
                              "its fix and the summary")
        else:
            tap.skip("root", "$HM_TEST_DOCKER_SOCK / $HM_TEST_PODMAN_SOCK not set or not answering")

        # the unprivileged user, no engine variables
        try:
            uid = pwd.getpwnam("hmtest").pw_uid
        except KeyError:
            uid = None
        engines = exp_engines_absent()
        if uid is None:
            tap.skip("hmtest", "no user hmtest")
        elif engines is None:
            tap.skip("hmtest", "a default engine socket exists here")
        else:
            want = expected("hmtest", uid, base, work, store, engines)
            if want is None:
                tap.skip("hmtest", "this host refuses user namespaces to hmtest: expected lines not computed")
            else:
                argv = ["runuser", "-u", "hmtest", "--", "env"] + ["%s=%s" % kv for kv in sorted(base.items())
                                                                     if kv[0] in ("PATH", "HM_STORE")] + [HM, "doctor"]
                p = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=work,
                                   env={k: v for k, v in base.items() if k in ("PATH", "HM_STORE", "LANG")})
                compare("hmtest", p.stdout, want[0], p.returncode, want[1])
    finally:
        if mounted:
            subprocess.run(["umount", tmpfs])
        shutil.rmtree(work, ignore_errors=True)
    return tap.summary()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
