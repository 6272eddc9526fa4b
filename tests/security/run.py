#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Escape test suite for hm's sandboxes (tests/security/README.md).

Every attack runs INSIDE a pipeline step through the real `hm run` (or, for
the image/bundle vectors, through `hm image import` / `hm oci run`) and
prints one "VERDICT: BLOCKED|ESCAPED <why>" line (probes live in the static
tests/init multitool, copied into the step's workspace).  Each case also has
a control that shows its probe can detect an escape: the same probe run on
the host, or hm's runtime with the protection removed (HM_SEC_ORIG_BIN).  A
case passes when the control detects and the ns column is BLOCKED; docker
and podman columns are for comparison only.

    tests/security/run.py [--runners ns,docker,podman] [--socket RUNNER=PATH]
                          [--results FILE] [--only NAME,...]

Env: HM_BIN (default build/hm), HM_INIT (default: hm-test-init next to
HM_BIN), HM_STORE (an ns store with alpine:3.20 imported; made on the fly
from tests/lib/mkbusybox.sh when unset), DOCKER_HOST / CONTAINER_HOST
(unix://...), HM_SEC_ORIG_BIN (an hm built without the hardening: controls).
"""
import argparse, io, json, os, secrets, shutil, signal, subprocess, sys, tarfile, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from lib import logs_and_ends  # noqa: E402
HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
INIT = os.path.abspath(os.environ.get("HM_INIT", os.path.join(os.path.dirname(HM), "hm-test-init")))
ORIG = os.environ.get("HM_SEC_ORIG_BIN")
TOKEN = "hm-canary-" + secrets.token_hex(8)
CANARY_DIR = "/tmp/hm-sec-canary-" + secrets.token_hex(4)
CANARY = CANARY_DIR + "/canary"

BLOCKED, ESCAPED, NA, ERROR = "BLOCKED", "ESCAPED", "N-A", "ERROR"


class Case:
    """name, step command (sh, cwd /workspace, ./init is the multitool),
    control() -> (detects: bool|None, detail); None = no control possible on
    this machine (the case is then skipped, never passed), host_check() ->
    ESCAPED/BLOCKED/None overriding the in-step verdict (writes land in the
    container when blocked, so only the host can tell), require: a word the
    ns verdict must contain (e.g. the seccomp errno)."""

    def __init__(self, name, desc, cmd=None, control=None, host_check=None, require=None, special=None,
                 parent=None, engines=True, flags=()):
        self.name, self.desc, self.cmd, self.control = name, desc, cmd, control
        self.host_check, self.require, self.special, self.parent = host_check, require, special, parent
        self.engines, self.flags = engines, tuple(flags)


# ---------------------------------------------------------------- helpers

def probe_host(*args, pass_fds=()):
    p = subprocess.run([INIT, "attack"] + list(args), capture_output=True, text=True, timeout=30,
                       pass_fds=pass_fds)
    return parse_verdict(p.stdout.splitlines())


def parse_verdict(lines):
    for l in lines:
        if l.startswith("VERDICT: "):
            word, _, why = l[len("VERDICT: "):].partition(" ")
            return word, why
    return None, "\n".join(lines)[-300:]


def host_control(*args, **kw):
    def f():
        v, why = probe_host(*args, **kw)
        return v == ESCAPED, "host: " + why
    return f


def syscall_control(name):
    """The host reaches the syscall; or its kernel lacks it (ENOSYS), and then
    the ns verdict must be seccomp's EPERM (require=), which a filter that let
    the call through could not produce."""
    def f():
        v, why = probe_host("sys", name)
        if v == ESCAPED:
            return True, "host: " + why
        if "ENOSYS" in why:
            return True, "host kernel lacks it (%s): the ns answer must be seccomp's EPERM" % why
        return False, "host: " + why
    return f


def mknod_control(disk):
    def f():
        v, why = probe_host("mknod", *disk)
        if v != ESCAPED and "open: EPERM" in why:
            return None, "the host shell is itself confined by a devices cgroup (%s)" % why
        return v == ESCAPED, "host: " + why
    return f


def host_control_or_na(path, *args):
    """A control that needs `path` on the host (absent on some kernels)."""
    def f():
        if not os.path.exists(path):
            return None, "host has no %s" % path
        return host_control(*args)()
    return f


class Helper:
    """A host process in its own UTS+IPC namespaces: a target for setns/ptrace."""

    def __init__(self):
        self.p = subprocess.Popen(["unshare", "--uts", "--ipc", "sleep", "600"])
        time.sleep(0.2)
        self.pid = self.p.pid

    def stop(self):
        self.p.kill()
        self.p.wait()


def host_file_check(path):
    return lambda: ESCAPED if os.path.exists(path) else BLOCKED


def masked_proc_file():
    for p in ("/proc/kcore", "/proc/timer_list", "/proc/sched_debug", "/proc/keys"):
        if os.path.exists(p):
            return p
    return "/proc/kcore"


def first_disk():
    with open("/proc/partitions") as f:
        for line in f.readlines()[2:]:
            parts = line.split()
            if len(parts) == 4:
                return parts[0], parts[1]
    return "8", "0"


def orig_control(args, expect_escape=True):
    """Same attack through an hm without the hardening (HM_SEC_ORIG_BIN) via hm oci run."""
    def f():
        if not ORIG:
            return None, "HM_SEC_ORIG_BIN unset"
        v, why = oci_run(ORIG, ["/init", "attack"] + args)
        return v == ESCAPED, "unhardened hm: %s %s" % (v, why)
    return f


# ---------------------------------------------------------------- the runtime's own binary (CVE-2019-5736)

SELF_EXE_PROBE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
/* Preloaded (the image's /etc/ld.so.preload) into hm's binary, which the
   kernel runs as the interpreter of the image's "#!/proc/self/exe" /bin/sh. */
__attribute__((constructor)) static void probe(void)
{
        char self[512] = "";
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = 0;
        int w = open("/proc/self/exe", O_WRONLY | O_APPEND | O_CLOEXEC);
        int we = errno;
        if (w >= 0) {
                ssize_t k = write(w, "HMPWN", 5);
                printf("VERDICT: ESCAPED appended %zd bytes to the runtime's binary %s\n", k, self);
        } else {
                int r = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
                int seals = r >= 0 ? fcntl(r, F_GET_SEALS) : -1;
                if (r >= 0 && seals < 0)
                        printf("VERDICT: ESCAPED the runtime's binary %s is the host's file, open for reading; "
                               "writing it is refused only while an hm process runs it (%s)\n", self, strerror(we));
                else if (r >= 0 && (!(seals & (0x0008 | 0x0010)) || (seals & 0x0007) != 0x0007))
                        /* F_SEAL_WRITE or F_SEAL_FUTURE_WRITE, and SEAL|SHRINK|GROW */
                        printf("VERDICT: ESCAPED /proc/self/exe is %s, a memfd without the write seals (seals 0x%x): "
                               "only ETXTBSY (%s) stands between a writer and it\n", self, seals, strerror(we));
                else
                        printf("VERDICT: BLOCKED /proc/self/exe is %s, seals 0x%x; open for writing: %s\n",
                               self, seals, strerror(we));
        }
        fflush(stdout);
        _exit(0);
}
"""


def self_exe_image(work):
    """busybox + the loader and libraries of hm + a preloaded probe; /bin/sh is '#!/proc/self/exe'."""
    root = os.path.join(work, "selfexe-root")
    shutil.copytree(BUNDLE_ROOT, root, symlinks=True)
    libs = subprocess.run(["ldd", HM], capture_output=True, text=True, check=True).stdout
    for w in libs.split():
        if w.startswith("/") and os.path.exists(w):
            dst = root + w
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.realpath(w), dst)
    src = os.path.join(work, "probe.c")
    with open(src, "w") as f:
        f.write(SELF_EXE_PROBE)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", os.path.join(root, "probe.so"), src], check=True)
    # an ASan hm needs its runtime first among the preloaded libraries
    asan = [w for w in libs.split() if w.startswith("/") and "libasan" in w]
    with open(os.path.join(root, "etc/ld.so.preload"), "w") as f:
        f.write("".join(a + "\n" for a in asan) + "/probe.so\n")
    os.unlink(os.path.join(root, "bin/sh"))
    with open(os.path.join(root, "bin/sh"), "w") as f:
        f.write("#!/proc/self/exe\n")
    os.chmod(os.path.join(root, "bin/sh"), 0o755)
    tar = os.path.join(work, "selfexe.tar")
    subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
    shutil.rmtree(root)
    subprocess.run([HM, "image", "import", tar, "hm-sec-selfexe:1"], check=True, capture_output=True)
    os.unlink(tar)


def sha256(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def self_exe_run(unsealed):
    """A copy of hm (so that a successful control damages only the copy) runs one step on the image."""
    work = tempfile.mkdtemp(prefix="hm-sec-selfexe-")
    try:
        hm = os.path.join(work, "hm")
        shutil.copy2(HM, hm)
        before = sha256(hm)
        ir = {"graph": {"nodes": [{"env": {}, "step": {"key": "selfexe", "cmd": "true", "image": "hm-sec-selfexe:1"}}],
                        "node_holes": [], "edge_property": "directed", "edges": []}}
        f = os.path.join(work, "p.json")
        with open(f, "w") as fh:
            json.dump(ir, fh)
        env = dict(os.environ)
        env.pop("HM_INSECURE_NO_SEALED_EXE", None)
        if unsealed:
            env["HM_INSECURE_NO_SEALED_EXE"] = "1"
        p = subprocess.run([hm, "run", "--runner=ns", "--format", "json", "--no-cache", "-d", SRC, "-f", f],
                           capture_output=True, text=True, timeout=120, env=env)
        lines = [json.loads(l).get("line", "") for l in p.stdout.splitlines() if '"step_log"' in l]
        v, why = parse_verdict(lines)
        if sha256(hm) != before:
            return ESCAPED, "the hm binary on the host changed; step said: %s" % why
        if v is None:
            return ERROR, "no verdict (hm exit %d): %s %s" % (p.returncode, lines[-3:], p.stderr.strip()[-200:])
        return v, why + " (host binary unchanged)"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def special_self_exe(hm):
    return self_exe_run(unsealed=False)


def control_self_exe():
    v, why = self_exe_run(unsealed=True)
    return v == ESCAPED, "hm without the sealed copy (HM_INSECURE_NO_SEALED_EXE=1): %s %s" % (v, why)


# ---------------------------------------------------------------- network

NET_TOKEN = "hm-net-" + secrets.token_hex(8)
ABSTRACT = "hm-sec-abstract-" + secrets.token_hex(4)
UCONN = r"""
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
/* uconn NAME TOKEN: connect to the abstract Unix socket @NAME, look for TOKEN */
int main(int argc, char **argv)
{
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        size_t n = strlen(argv[1]);
        memcpy(a.sun_path + 1, argv[1], n);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (s < 0 || connect(s, (struct sockaddr *) &a, sizeof(sa_family_t) + 1 + n) < 0) {
                printf("VERDICT: BLOCKED connect @%s: %m\n", argv[1]);
                return 0;
        }
        char buf[128] = "";
        ssize_t k = read(s, buf, sizeof buf - 1);
        buf[k > 0 ? k : 0] = 0;
        printf(strstr(buf, argv[2]) ? "VERDICT: ESCAPED the host's abstract socket @%s answered\n"
                                    : "VERDICT: BLOCKED @%s answered without the token\n", argv[1]);
        return 0;
}
"""


class TokenServers:
    """A TCP server on the host's 127.0.0.1 and an abstract Unix socket in the host's network
    namespace; both send NET_TOKEN to whoever connects."""

    def __init__(self):
        import socket, threading
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.port = self.tcp.getsockname()[1]
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + ABSTRACT)
        self.unix.listen(16)
        for srv in (self.tcp, self.unix):
            threading.Thread(target=self._serve, args=(srv,), daemon=True).start()

    @staticmethod
    def _serve(srv):
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            try:
                c.sendall((NET_TOKEN + "\n").encode())
            except OSError:
                pass
            c.close()

    def close(self):
        self.tcp.close()
        self.unix.close()


def tcp_probe(addr_expr, port, tries=1):
    """Shell: connect to addr:port (addr may be a shell expression), ESCAPED when the token comes back.
    `timeout` bounds each try (the packaged pasta sometimes loses the server's FIN)."""
    return ("a=%s; i=0; out=; while [ $i -lt %d ]; do i=$((i+1)); out=$(timeout 2 nc $a %d </dev/null 2>&1); "
            "case \"$out\" in *%s*) break;; esac; done; case \"$out\" in *%s*) "
            "echo \"VERDICT: ESCAPED $a:%d (the host's loopback) answered\";; "
            "*) echo \"VERDICT: BLOCKED $a:%d: ${out:-no answer}\";; esac"
            % (addr_expr, tries, port, NET_TOKEN, NET_TOKEN, port, port))


GW = "$(ip route | awk '/^default/ {print $3; exit}')"


def any_probe(*probes):
    """Shell: run each probe; ESCAPED if any escaped, else BLOCKED with every reason."""
    files = ["/tmp/hm-sec-r%d" % i for i in range(len(probes))]
    runs = "; ".join("(%s) >%s 2>&1" % (p, f) for p, f in zip(probes, files))
    fs = " ".join(files)
    return ("%s; if grep -q 'VERDICT: ESCAPED' %s; then grep -h 'VERDICT: ESCAPED' %s | head -n 1; "
            "else echo \"VERDICT: BLOCKED $(sed 's/VERDICT: BLOCKED //' %s | tr '\\n' ' ')\"; fi" % (runs, fs, fs, fs))


def host_tcp_control(port):
    def f():
        import socket
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                got = c.recv(128).decode()
        except OSError as e:
            return False, "host: connect 127.0.0.1:%d: %s" % (port, e)
        return NET_TOKEN in got, "host: 127.0.0.1:%d answers with the token" % port
    return f


def host_abstract_control():
    p = subprocess.run([os.path.join(SRC, "uconn"), ABSTRACT, NET_TOKEN], capture_output=True, text=True, timeout=10)
    v, why = parse_verdict(p.stdout.splitlines())
    return v == ESCAPED, "host: " + why


def net_step(mode, cmd):
    """One step on --network MODE (ns only); its verdict."""
    ir = {"graph": {"nodes": [{"env": {}, "step": {"key": "net", "cmd": cmd, "image": "alpine:3.20"}}],
                    "node_holes": [], "edge_property": "directed", "edges": []}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(ir, f)
    try:
        p = subprocess.run([HM, "run", "--runner=ns", "--format", "json", "--no-cache", "-d", SRC, "-f", f.name,
                            "--network", mode], capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(f.name)
    errs = []
    logs, _ = logs_and_ends(p.stdout, errs)
    lines = [l for k in logs for l in logs[k]]
    v, why = parse_verdict(lines)
    if v is None:
        return ERROR, "no verdict (hm exit %d): %s %s" % (p.returncode, errs, p.stderr.strip()[-200:])
    return v, why


def net_special(mode, cmd):
    return lambda hm: net_step(mode, cmd)


def net_control(mode, cmd):
    def f():
        v, why = net_step(mode, cmd)
        return v == ESCAPED, "--network %s: %s %s" % (mode, v, why)
    return f


def net_cases(port):
    helper_setns = ("pid=; for d in /proc/[0-9]*; do case $(cat $d/comm 2>/dev/null) in pasta*|passt*|slirp4netns) "
                    "pid=${d#/proc/};; esac; done; [ -n \"$pid\" ] || { echo 'VERDICT: ERROR no helper seen'; exit 0; }; "
                    "out=$(timeout 3 nsenter -t $pid -n timeout 2 nc 127.0.0.1 %d </dev/null 2>&1); "
                    "case \"$out\" in *%s*) echo \"VERDICT: ESCAPED through the helper $pid's network namespace\";; "
                    "*) echo \"VERDICT: BLOCKED nsenter -t $pid -n: ${out:-no answer}\";; esac" % (port, NET_TOKEN))
    host_setns = ("out=$(timeout 3 nsenter -t %d -n timeout 2 nc 127.0.0.1 %d </dev/null 2>&1); "
                  "case \"$out\" in *%s*) echo VERDICT: ESCAPED;; *) echo \"VERDICT: BLOCKED $out\";; esac")

    def helper_setns_control():
        p = subprocess.run(["busybox", "sh", "-c", host_setns % (os.getpid(), port, NET_TOKEN)],
                           capture_output=True, text=True, timeout=20)
        v, why = parse_verdict(p.stdout.splitlines())
        return v == ESCAPED, "host: nsenter -n into a host process and connect: %s %s" % (v, why)

    return [
        Case("net-loopback-default", "default network: reach a TCP service on the host's 127.0.0.1",
             tcp_probe("127.0.0.1", port), host_tcp_control(port)),
        Case("net-abstract-default", "default network: connect to an abstract Unix socket of the host",
             "./uconn %s %s" % (ABSTRACT, NET_TOKEN), host_abstract_control),
        Case("net-loopback-pasta", "--network pasta: the host's loopback through the gateway or 127.0.0.1",
             special=net_special("pasta", any_probe(tcp_probe("127.0.0.1", port), tcp_probe(GW, port, 2))),
             control=net_control("pasta:--map-gw", tcp_probe(GW, port, 3)), engines=False),
        Case("net-loopback-slirp4netns", "--network slirp4netns: the host's loopback through 10.0.2.2 or 127.0.0.1",
             special=net_special("slirp4netns", any_probe(tcp_probe("127.0.0.1", port), tcp_probe("10.0.2.2", port))),
             control=net_control("slirp4netns:allow_host_loopback=true", tcp_probe("10.0.2.2", port, 3)),
             engines=False),
        Case("net-abstract-pasta", "--network pasta: connect to an abstract Unix socket of the host",
             special=net_special("pasta", "./uconn %s %s" % (ABSTRACT, NET_TOKEN)), control=host_abstract_control,
             engines=False),
        Case("net-helper-setns-pasta", "--network pasta: setns into the pasta helper's (host) network namespace",
             special=net_special("pasta", helper_setns), control=helper_setns_control, engines=False),
        Case("net-helper-setns-slirp4netns", "--network slirp4netns: setns into the slirp4netns helper's namespace",
             special=net_special("slirp4netns", helper_setns), control=helper_setns_control, engines=False),
    ]


# ---------------------------------------------------------------- sandbox flags, on every runner

DENY_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW",
              "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
FLAG_PROBES = {
    "flag-user": ("--user 1000:1000: the step's uid",
                  'u=$(id -u); [ "$u" = 1000 ] && echo "VERDICT: BLOCKED runs as uid $u" '
                  '|| echo "VERDICT: ESCAPED runs as uid $u"'),
    "flag-cap-drop-all": ("--cap-drop all: effective capabilities",
                          "c=$(awk '/^CapEff/ {print $2}' /proc/self/status); [ \"$c\" = 0000000000000000 ] "
                          "&& echo \"VERDICT: BLOCKED CapEff $c\" || echo \"VERDICT: ESCAPED CapEff $c\""),
    "flag-tmpfs-tmp": ("--tmpfs-tmp: /tmp is a fresh tmpfs",
                       "grep -q ' /tmp tmpfs ' /proc/mounts && echo 'VERDICT: BLOCKED /tmp is a tmpfs' "
                       "|| echo 'VERDICT: ESCAPED /tmp is the image filesystem'"),
    "flag-seccomp-file": ("--seccomp FILE (a profile denying mkdir): mkdir in /tmp",
                          "d=/tmp/hm-sec-$$; mkdir $d 2>/tmp/hm-sec-err && echo 'VERDICT: ESCAPED mkdir allowed' "
                          "|| echo \"VERDICT: BLOCKED $(cat /tmp/hm-sec-err)\"; rmdir $d 2>/dev/null; true"),
    "flag-read-only": ("--read-only: write to the root filesystem",
                       "e=$(touch /hm-sec-ro 2>&1) && echo 'VERDICT: ESCAPED / is writable' "
                       "|| echo \"VERDICT: BLOCKED $e\""),
}
_flag_controls = {}


def flag_control(name):
    """The probe in a step without the flag (ns): it must see what the flag takes away."""
    def f():
        if not _flag_controls:
            probes = [Case(n, d, cmd) for n, (d, cmd) in FLAG_PROBES.items()]
            p, logs, ends = run_pipeline("ns", None, probes)
            for c in probes:
                _flag_controls[c.name] = judge(c, logs, ends, p)
        v, why = _flag_controls[name]
        return v == ESCAPED, "without the flag (ns): %s %s" % (v, why)
    return f


def flag_cases(profile):
    a = ("--user", "1000:1000", "--cap-drop", "all", "--tmpfs-tmp", "--seccomp", profile)
    return [Case(n, FLAG_PROBES[n][0], FLAG_PROBES[n][1], flag_control(n),
                 flags=("--read-only",) if n == "flag-read-only" else a) for n in FLAG_PROBES]


# ---------------------------------------------------------------- hm oci run bundles (ns only)

BUNDLE_ROOT = None


def oci_run(hm, args, cwd="/", seccomp=True, pass_fds=()):
    b = tempfile.mkdtemp(prefix="hm-sec-bundle-")
    try:
        os.symlink(BUNDLE_ROOT, os.path.join(b, "rootfs"))
        spec = json.loads(subprocess.run([hm, "oci", "spec"], capture_output=True, text=True, check=True).stdout)
        spec["root"] = {"path": "rootfs"}
        spec["process"]["args"] = args
        spec["process"]["cwd"] = cwd
        if not seccomp:
            spec["linux"].pop("seccomp", None)
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(spec, f)
        p = subprocess.run([hm, "oci", "run", "--bundle", b, "hm-sec-" + secrets.token_hex(3)],
                           capture_output=True, text=True, timeout=60, pass_fds=pass_fds)
        v, why = parse_verdict(p.stdout.splitlines())
        if v is None:
            return BLOCKED if p.returncode else ERROR, (p.stderr.strip() or why)[-200:]
        return v, why
    finally:
        shutil.rmtree(b, ignore_errors=True)


def special_cwd_fd(hm):
    """CVE-2024-21626: hm runs with a directory fd of the host open (as a
    caller may leak one); process.cwd = /proc/self/fd/N points at it."""
    return oci_run(hm, ["/init", "attack", "read", "canary", TOKEN], cwd="/proc/self/fd/%d" % HOST_DIRFD,
                   pass_fds=(HOST_DIRFD,))


def special_ptrace_init(hm):
    return oci_run(hm, ["/init", "attack", "ptrace", "1"], seccomp=False)


def control_cwd_fd():
    if not ORIG:
        return None, "HM_SEC_ORIG_BIN unset"
    v, why = special_cwd_fd(ORIG)
    return v == ESCAPED, "unhardened hm: %s %s" % (v, why)


def control_ptrace_init():
    if not ORIG:
        return None, "HM_SEC_ORIG_BIN unset"
    v, why = special_ptrace_init(ORIG)
    return v == ESCAPED, "unhardened hm: " + why


# ---------------------------------------------------------------- malicious layer tars (ns only)

def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        d = tarfile.TarInfo("bin")
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        t.addfile(d)
        for kind, name, arg in entries:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                data = arg.encode()
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
                t.addfile(ti)
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
                t.addfile(ti)
    return buf.getvalue()


def layer_tars():
    rel = os.path.relpath(CANARY_DIR, "/")
    return {
        "tar-dotdot": [("file", "../" * 12 + rel + "/tar-dotdot", "x")],
        "tar-absolute": [("file", CANARY_DIR + "/tar-absolute", "x")],
        "tar-symlink-file": [("symlink", "evil", CANARY_DIR), ("file", "evil/tar-symlink-file", "x")],
        "tar-hardlink-out": [("hardlink", "hl", CANARY), ("file", "hl", "overwritten")],
    }


def tar_outside_written(name):
    changed = os.path.exists(os.path.join(CANARY_DIR, name))
    with open(CANARY) as f:
        changed |= TOKEN not in f.read()
    changed |= os.stat(CANARY).st_nlink != 1
    return changed


def special_tar(name):
    def f(hm):
        data = tar_bytes(layer_tars()[name])
        with tempfile.NamedTemporaryFile(suffix=".tar", delete=False) as t:
            t.write(data)
        p = subprocess.run([hm, "image", "import", t.name, "hm-sec/%s:latest" % name], capture_output=True,
                           text=True, timeout=60, env=dict(os.environ))
        os.unlink(t.name)
        how = (p.stderr.strip() or p.stdout.strip())[-160:]
        if tar_outside_written(name):
            return ESCAPED, "wrote outside the store: " + how
        return BLOCKED, ("import refused: " if p.returncode else "imported, nothing outside: ") + how
    return f


def control_tar(name):
    def f():
        d = tempfile.mkdtemp(prefix="hm-sec-tarctl-")
        inner = os.path.join(d, "a", "b", "c")
        os.makedirs(inner)
        entries = layer_tars()[name]
        try:
            # what a naive extractor (tarfile without a filter) does with the same tar
            with tarfile.open(fileobj=io.BytesIO(tar_bytes(entries))) as t:
                try:
                    t.extractall(inner, filter="fully_trusted")
                except TypeError:
                    t.extractall(inner)
            hit = tar_outside_written(name)
        except Exception as e:  # a naive extractor may also trip over its own escape
            hit, e = tar_outside_written(name), e
        finally:
            shutil.rmtree(d, ignore_errors=True)
        restore_canary()
        return hit, "naive extraction writes outside its directory" if hit else "naive extraction stayed inside"
    return f


def restore_canary():
    for n in os.listdir(CANARY_DIR):
        os.unlink(os.path.join(CANARY_DIR, n))
    with open(CANARY, "w") as f:
        f.write(TOKEN + "\n")


# ---------------------------------------------------------------- the cases

def build_cases(helper, disk):
    mpf = masked_proc_file()
    C, T, D = CANARY, TOKEN, CANARY_DIR
    cases = [
        Case("host-read-abs", "read a host file by its absolute path",
             "./init attack read %s %s" % (C, T), host_control("read", C, T)),
        Case("host-read-proc1-root", "read a host file via /proc/1/root",
             "./init attack read /proc/1/root%s %s" % (C, T), host_control("read", "/proc/self/root" + C, T)),
        Case("host-read-self-root-dotdot", "read a host file via /proc/self/root/../../..",
             "./init attack read /proc/self/root/../../../..%s %s" % (C, T),
             host_control("read", "/proc/self/root/../../../.." + C, T)),
        Case("host-write-abs", "create a file in a host dir by absolute path",
             "mkdir -p %s; ./init attack create %s/w-abs" % (D, D), host_control("create", D + "/w-abs-ctl"),
             host_check=host_file_check(D + "/w-abs")),
        Case("host-write-proc1-root", "create a host file via /proc/1/root",
             "./init attack create /proc/1/root%s/w-p1" % D, host_control("create", D + "/w-p1-ctl"),
             host_check=host_file_check(D + "/w-p1")),
        Case("mount", "mount a tmpfs", "./init attack sys mount", host_control("sys", "mount")),
        Case("unshare-mnt", "unshare(CLONE_NEWNS)", "./init attack sys unshare-ns", host_control("sys", "unshare-ns")),
        Case("unshare-user", "unshare(CLONE_NEWUSER) (the door to 'root' in a new user ns)",
             "./init attack sys unshare-user", host_control("sys", "unshare-user")),
        Case("clone-newuser", "clone(CLONE_NEWUSER)", "./init attack sys clone-newuser",
             host_control("sys", "clone-newuser")),
        Case("setns-host", "setns into the namespaces of a host process (pid %d)" % helper.pid,
             "./init attack setns %d" % helper.pid, host_control("setns", str(helper.pid))),
        Case("setns-pid1", "setns into the namespaces of pid 1 inside (hm's init)",
             "./init attack setns 1", host_control("setns", str(helper.pid))),
        Case("ptrace-outside", "ptrace a process outside (the suite, pid %d)" % os.getpid(),
             "./init attack ptrace %d" % os.getpid(), host_control("ptrace", str(helper.pid))),
        Case("ptrace-pid1", "ptrace pid 1 (hm's init runs without the seccomp filter)",
             "./init attack ptrace 1", host_control("ptrace", str(helper.pid))),
        Case("keyctl", "keyctl (kernel keyrings are not namespaced)", "./init attack sys keyctl",
             host_control("sys", "keyctl")),
        Case("init_module", "load a kernel module (init_module)", "./init attack sys init_module",
             syscall_control("init_module"), require="EPERM"),
        Case("finit_module", "load a kernel module (finit_module)", "./init attack sys finit_module",
             syscall_control("finit_module"), require="EPERM"),
        Case("bpf", "bpf(2)", "./init attack sys bpf", host_control("sys", "bpf")),
        Case("perf_event_open", "perf_event_open(2)", "./init attack sys perf_event_open",
             host_control("sys", "perf_event_open")),
        Case("userfaultfd", "userfaultfd(2) (race amplifier for kernel exploits)", "./init attack sys userfaultfd",
             host_control("sys", "userfaultfd")),
        Case("kexec_load", "kexec_load(2)", "./init attack sys kexec_load", syscall_control("kexec_load"),
             require="EPERM"),
        Case("reboot", "reboot(2) (bad magic: harmless when reached)", "./init attack sys reboot",
             host_control("sys", "reboot")),
        Case("swapon", "swapon(2)", "./init attack sys swapon", host_control("sys", "swapon")),
        Case("pivot_root", "pivot_root(2)", "./init attack sys pivot_root", host_control("sys", "pivot_root")),
        Case("open_by_handle_at", "open_by_handle_at (the 'shocker' escape)", "./init attack handle",
             host_control("handle")),
        Case("raw-socket", "raw socket: allowed by design (CAP_NET_RAW as Docker) but the net ns has only lo",
             "./init attack raw", host_control("raw")),
        Case("proc-sys-write", "open /proc/sys/kernel/core_pattern for writing",
             "./init attack open-wr /proc/sys/kernel/core_pattern",
             host_control("open-wr", "/proc/sys/kernel/core_pattern")),
        Case("sysrq-trigger", "open /proc/sysrq-trigger for writing", "./init attack open-wr /proc/sysrq-trigger",
             host_control_or_na("/proc/sysrq-trigger", "open-wr", "/proc/sysrq-trigger")),
        Case("proc-masked-read", "read a masked /proc file (%s)" % mpf, "./init attack read-some %s" % mpf,
             host_control_or_na(mpf, "read-some", mpf)),
        Case("leaked-fds", "fds of hm leaked into the step (only 0,1,2 expected)", "./init attack fds",
             lambda: (lambda r: (r[0] == ESCAPED, "host with an extra fd: " + r[1]))(
                 probe_host("fds", pass_fds=(HOST_DIRFD,)))),
        Case("fd-walk", "walk '..' from every open directory fd and /proc/self/fd/N/..",
             "./init attack fd-walk %s %s" % (C, T),
             lambda: (lambda r: (r[0] == ESCAPED, "host with a dir fd: " + r[1]))(
                 probe_host("fd-walk", C, T, pass_fds=(HOST_DIRFD,)))),
        Case("chroot-walk", "classic chroot break (chroot subdir, chdir .. x64, chroot .)",
             "./init attack chroot %s %s" % (C, T), host_control("chroot", C, T)),
        Case("proc1-exe-read", "open /proc/1/exe (hm's binary on the host) from the step",
             "./init attack proc-exe 1 exe r", orig_control(["proc-exe", "1", "exe", "r"])),
        Case("proc1-exe-write", "open /proc/1/exe for writing (CVE-2019-5736: overwrite hm on the host)",
             "./init attack proc-exe 1 exe w", orig_control(["proc-exe", "1", "exe", "r"])),
        Case("proc1-mem", "open /proc/1/mem read-write (inject code into hm's init)",
             "./init attack proc-exe 1 mem rw", orig_control(["proc-exe", "1", "mem", "rw"])),
        Case("mknod-blk", "mknod the host disk (%s:%s) and read it" % disk, "./init attack mknod %s %s" % disk,
             mknod_control(disk)),
        Case("sys-write", "open a /sys knob for writing",
             "./init attack open-wr /sys/kernel/mm/transparent_hugepage/enabled",
             host_control_or_na("/sys/kernel/mm/transparent_hugepage/enabled", "open-wr",
                                "/sys/kernel/mm/transparent_hugepage/enabled")),
        Case("cgroup-escape", "create a cgroup / write cgroup.procs, release_agent under /sys/fs/cgroup",
             "./init attack cgroup", host_control("cgroup")),
        Case("workspace-symlink-parent", "a step replaces /workspace with a symlink to /; its child writes there",
             "cd /; rm -rf /workspace && ln -s / /workspace && ls -ld /workspace", None, engines=True),
        Case("workspace-symlink-child", "child of workspace-symlink-parent: /workspace must be its own dir",
             "test -d /workspace -a ! -L /workspace && echo x > /workspace/hm-sec-race && "
             "./init attack create /workspace/../hm-sec-race-root >/dev/null; "
             "echo VERDICT: $( [ -L /workspace ] && echo ESCAPED symlink followed || echo BLOCKED own dir )",
             lambda: (True, "a symlink to / is followed by any path lookup (by construction)"),
             host_check=lambda: ESCAPED if os.path.exists("/hm-sec-race") or os.path.exists("/hm-sec-race-root")
             or os.path.exists(os.path.join(SRC, "hm-sec-race")) else BLOCKED,
             parent="workspace-symlink-parent"),
        Case("workspace-symlink-concurrent", "a step flips /workspace to a symlink to / while a sibling starts",
             "sleep 1; test -d /workspace -a ! -L /workspace "
             "&& echo y > /workspace/hm-sec-race-y && echo VERDICT: BLOCKED sibling sees its own /workspace "
             "|| echo VERDICT: ESCAPED sibling sees the flipped /workspace",
             lambda: (True, "by construction"),
             host_check=lambda: ESCAPED if os.path.exists("/hm-sec-race-y") or
             os.path.exists(os.path.join(SRC, "hm-sec-race-y")) else BLOCKED),
        Case("workspace-flipper", "(helper) flips /workspace for 3 s",
             "cd /; end=$(( $(date +%s) + 3 )); while [ $(date +%s) -lt $end ]; do rm -rf /workspace; "
             "ln -sfn / /workspace; rm -f /workspace; mkdir /workspace; done; echo VERDICT: BLOCKED helper only",
             lambda: (True, "helper")),
        Case("workspace-symlink-fd", "a step makes /workspace a symlink to /proc/self/fd/7; its child starts there",
             "cd /; rm -rf /workspace && ln -s /proc/self/fd/7 /workspace; echo VERDICT: BLOCKED helper only",
             lambda: (True, "helper")),
        Case("workspace-fd-child", "child of workspace-symlink-fd: the runtime must not chdir through the link",
             "./init attack read ../../../../../..%s %s" % (C, T), lambda: (True, "see cwd-leaked-fd"),
             parent="workspace-symlink-fd"),
        Case("cwd-leaked-fd", "CVE-2024-21626: process.cwd /proc/self/fd/N (hm oci run)",
             special=special_cwd_fd, control=control_cwd_fd, engines=False),
        Case("ptrace-init-unconfined", "ptrace hm's pid 1 with seccomp off (hm oci run)",
             special=special_ptrace_init, control=control_ptrace_init, engines=False),
    ] + net_cases(NET_PORT) + flag_cases(SECCOMP_PROFILE) + [
        Case("self-exe-shebang", "CVE-2019-5736: the image's /bin/sh is '#!/proc/self/exe', so the kernel runs "
             "hm's binary in the step, with a preloaded probe that opens it for writing",
             special=special_self_exe, control=control_self_exe, engines=False),
    ]
    for name in layer_tars():
        cases.append(Case(name, "hm image import of a layer tar with a %s entry" % name[4:],
                          special=special_tar(name), control=control_tar(name), engines=False))
    return cases


HELPERS = {"workspace-symlink-parent", "workspace-flipper", "workspace-symlink-fd"}


# ---------------------------------------------------------------- running steps

def run_pipeline(runner, socket, cases, flags=()):
    idx = {c.name: i for i, c in enumerate(cases)}
    nodes, edges = [], []
    for c in cases:
        step = {"key": c.name, "cmd": c.cmd}
        if c.parent:
            edges.append([idx[c.parent], idx[c.name], "builds_in"])
        else:
            step["image"] = "alpine:3.20"
        nodes.append({"env": {}, "step": step})
    ir = {"version": "0", "graph": {"nodes": nodes, "node_holes": [], "edge_property": "directed", "edges": edges}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(ir, f)
    cmd = [HM, "run", "--runner=" + runner, "--format", "json", "-k", "--no-cache", "--parallelism", "4",
           "-d", SRC, "-f", f.name]
    if socket:
        cmd += ["--socket", socket]
    cmd += list(flags)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    finally:
        os.unlink(f.name)
    logs, ends = logs_and_ends(p.stdout)
    return p, logs, ends


def judge(c, logs, ends, p):
    v, why = parse_verdict(logs.get(c.name, []))
    if v is None:
        if p.returncode not in (0, 1) or c.name not in ends:
            return ERROR, "no verdict (hm exit %s): %s" % (p.returncode, p.stderr.strip()[-200:])
        return ERROR, "no verdict (step exit %s): %s" % (ends.get(c.name), why)
    if c.host_check:
        hv = c.host_check()
        if hv == ESCAPED:
            return ESCAPED, "host changed; step said: " + why
        if v == ESCAPED:
            return BLOCKED, "host unchanged (write stayed in the container); step said: " + why
    return v, why


def main():
    global SRC, HOST_DIRFD, BUNDLE_ROOT, NET_PORT, SECCOMP_PROFILE
    ap = argparse.ArgumentParser()
    ap.add_argument("--runners", default="ns")
    ap.add_argument("--socket", action="append", default=[], help="RUNNER=PATH")
    ap.add_argument("--results", default=os.path.join(HERE, "results.md"))
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("tests/security: needs root (mknod, engines, host controls)")
        print("0 passed, 0 failed, 1 skipped")
        return 0
    runners = [r for r in a.runners.split(",") if r]
    sockets = dict(s.split("=", 1) for s in a.socket)
    for r, var in (("docker", "DOCKER_HOST"), ("podman", "CONTAINER_HOST")):
        if r not in sockets and os.environ.get(var, "").startswith("unix://"):
            sockets[r] = os.environ[var][len("unix://"):]

    work = tempfile.mkdtemp(prefix="hm-sec-")
    os.makedirs(CANARY_DIR)
    restore_canary()
    SRC = os.path.join(work, "src")
    os.makedirs(SRC)
    shutil.copy2(INIT, os.path.join(SRC, "init"))
    os.chmod(os.path.join(SRC, "init"), 0o755)
    HOST_DIRFD = os.open(CANARY_DIR, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(HOST_DIRFD, True)
    BUNDLE_ROOT = os.path.join(work, "rootfs")
    subprocess.run([os.path.join(REPO, "tests/lib/mkbusybox.sh"), BUNDLE_ROOT], check=True, capture_output=True)
    shutil.copy2(INIT, os.path.join(BUNDLE_ROOT, "init"))
    if not os.environ.get("HM_STORE"):
        os.environ["HM_STORE"] = os.path.join(work, "store")
        tar = os.path.join(work, "rootfs.tar")
        subprocess.run(["tar", "-C", BUNDLE_ROOT, "-cf", tar, "."], check=True)
        subprocess.run([HM, "image", "import", tar, "alpine:3.20"], check=True, capture_output=True)
    self_exe_image(work)
    uc = os.path.join(work, "uconn.c")
    with open(uc, "w") as f:
        f.write(UCONN)
    subprocess.run(["cc", "-static", "-O1", "-o", os.path.join(SRC, "uconn"), uc], check=True)
    SECCOMP_PROFILE = os.path.join(work, "deny-mkdir.json")
    with open(SECCOMP_PROFILE, "w") as f:
        json.dump(DENY_MKDIR, f)
    os.chmod(work, 0o755)
    servers = TokenServers()
    NET_PORT = servers.port
    src_before = sorted(os.listdir(SRC))
    helper = Helper()
    try:
        cases = build_cases(helper, first_disk())
        if a.only:
            keep = set(a.only.split(","))
            cases = [c for c in cases if c.name in keep or c.name in HELPERS or
                     any(k == d.name and d.parent == c.name for d in cases for k in keep)]
        table = {c.name: {} for c in cases}
        controls = {}
        for c in cases:
            controls[c.name] = c.control() if c.control else (None, "no control")
            restore_canary()
        step_cases = [c for c in cases if c.cmd]
        for r in runners:
            sel = [c for c in step_cases if r == "ns" or c.engines]
            if r != "ns" and r not in sockets:
                for c in cases:
                    table[c.name][r] = (NA, "no socket for " + r)
                continue
            p, logs, ends = run_pipeline(r, sockets.get(r), [c for c in sel if not c.flags])
            # the sandbox-flag cases: one run per set of flags, same flags on every runner
            for fl in sorted({c.flags for c in sel if c.flags}):
                fp, flogs, fends = run_pipeline(r, sockets.get(r), [c for c in sel if c.flags == fl], fl)
                for c in sel:
                    if c.flags == fl:
                        table[c.name][r] = judge(c, flogs, fends, fp)
                        if c.name not in flogs and fp.returncode == 2:
                            table[c.name][r] = (NA, "flags refused: " + fp.stderr.strip()[-200:])
            for c in cases:
                if c.flags and c in sel:
                    continue
                if c.special:
                    table[c.name][r] = c.special(HM) if r == "ns" else (NA, "ns runtime only")
                    restore_canary()
                elif c in sel:
                    table[c.name][r] = judge(c, logs, ends, p)
                else:
                    table[c.name][r] = (NA, "not applicable")
            if p.returncode not in (0, 1):
                print("# %s: hm exited %d: %s" % (r, p.returncode, p.stderr.strip()[-400:]))
            restore_canary()
        if sorted(os.listdir(SRC)) != src_before:
            print("# the -d source tree changed: %s" % sorted(os.listdir(SRC)))
            for c in cases:
                if c.name.startswith("workspace-"):
                    table[c.name]["ns"] = (ESCAPED, "the host source tree changed")
    finally:
        helper.stop()
        servers.close()
        subprocess.run([HM, "image", "rm", "hm-sec-selfexe:1"], capture_output=True)
        os.close(HOST_DIRFD)
        shutil.rmtree(CANARY_DIR, ignore_errors=True)
        shutil.rmtree("/tmp/hm-chroot-jail", ignore_errors=True)
        for leftover in ("/hm-sec-race", "/hm-sec-race-root", "/hm-sec-race-y"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        subprocess.run(["rm", "-rf", work])
    return report(cases, runners, table, controls, a.results)


def report(cases, runners, table, controls, results_path):
    passed = failed = skipped = 0
    rows = []
    for c in cases:
        if c.name in HELPERS:
            continue
        detects, cdetail = controls[c.name]
        ns = table[c.name].get("ns", (NA, ""))
        if "ns" not in runners:
            status = "n/a"
        elif detects is None:
            status, skipped = "skip", skipped + 1
        elif not detects:
            status, failed = "FAIL (control did not detect)", failed + 1
        elif ns[0] != BLOCKED or (c.require and c.require not in ns[1]):
            status, failed = "FAIL", failed + 1
        else:
            status, passed = "pass", passed + 1
        for r in runners:
            if table[c.name].get(r, (None,))[0] == ERROR and r != "ns":
                print("# %s crashed on %s: %s" % (c.name, r, table[c.name][r][1]))
        rows.append((c, status, detects, cdetail))
    head = "| attack | " + " | ".join(runners) + " | control | result |"
    sep = "|" + "---|" * (len(runners) + 3)
    lines = [head, sep]
    for c, status, detects, cdetail in rows:
        cells = [table[c.name].get(r, (NA, ""))[0] for r in runners]
        ctl = "detects" if detects else ("n/a" if detects is None else "BROKEN")
        lines.append("| %s | %s | %s | %s |" % (c.name, " | ".join(cells), ctl, status))
    print("\n".join(lines))
    print()
    for c, status, detects, cdetail in rows:
        print("# %-28s %s" % (c.name, c.desc))
        print("#   control: %s" % cdetail)
        for r in runners:
            v, why = table[c.name].get(r, (NA, ""))
            print("#   %-6s %-7s %s" % (r, v, why))
    summary = "%d passed, %d failed, %d skipped" % (passed, failed, skipped)
    with open(results_path, "w") as f:
        f.write("# Latest escape-suite results\n\n")
        f.write("Generated by `tests/security/run.py --runners %s` on %s, kernel %s.\n\n" %
                (",".join(runners), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.uname().release))
        f.write("\n".join(lines) + "\n\n")
        f.write("## Details (verdict lines printed inside the steps)\n\n")
        for c, status, detects, cdetail in rows:
            f.write("- **%s**: %s. Control: %s.\n" % (c.name, c.desc, cdetail))
            for r in runners:
                v, why = table[c.name].get(r, (NA, ""))
                f.write("  - %s: %s %s\n" % (r, v, why.replace("|", "/")))
        f.write("\n%s\n" % summary)
    print(summary)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
