#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""hm inside CI containers: socket-mounted engines and the nested built-in runtime.

The image is made by contrib/mkimage-ci.sh (-g: with git) and loaded with `docker load` and
`podman load` into the private engines ($HM_TEST_DOCKER_SOCK, $HM_TEST_PODMAN_SOCK).  In each
environment below one long-lived container holds hm; test_ir_cases.py drives it from outside
through a wrapper passed as --hm, which runs `hm` with the engine's `exec` (working directory and
the hm-related environment carried over).  The test's work dir (IR files, workspaces, the ns
store, XDG_CACHE_HOME, TMPDIR) and shared/ are bind-mounted at the same paths, and for the
socket-mounted environments the engine's socket too, so every path hm is given exists inside.

  docker-sock            docker container, its engine's socket mounted, --runner=docker
  podman-sock            podman container, its engine's socket mounted, --runner=podman
  ns-podman-default      podman container, default profile, --runner=ns
  ns-podman-unconfined   ... --security-opt seccomp=unconfined
  ns-podman-privileged   ... --privileged
  ns-docker-privileged   docker container --privileged (when the engine can start one here)
  ns-docker-default      docker container, default profile: a precise refusal is expected

Per environment: `hm doctor` inside (printed as diagnostics; its key lines asserted per environment,
see doctor_expectations: the path hm takes, the refused steps with their fallback or fix), the IR cases (the full set in
docker-sock and ns-podman-default, a subset elsewhere; HM_NESTED_FULL=1: the full set
everywhere), for ns the reduced isolation (each `notice` event with notice "isolation" once per
run, and the same text in the human output), for the socket-mounted ones `hm reap` from inside
after the hm process inside was SIGKILLed (control: a live run is left alone).
"""

import os
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

from lib import (REPO, Engine, Tap, busybox_rootfs_tar, hm_bin, out_of, run_hm, shared_dir,  # noqa: E402
                 wait_until, write_sleeper_ir)

HM = hm_bin()
SHARED = shared_dir()
DOCKER_SOCK = os.environ.get("HM_TEST_DOCKER_SOCK") or ""
PODMAN_SOCK = os.environ.get("HM_TEST_PODMAN_SOCK") or ""
FULL = os.environ.get("HM_NESTED_FULL") == "1"
# HM_NESTED_ONLY=name,...: only these environments (for debugging)
IMAGE = "localhost/hm-ci:nest-test"

ALL_CASES = ["cow-chain", "fork-keep-going", "diamond-wait", "timeouts", "pipeline-timeout", "fanout",
             "logs", "exit-code", "env-and-workspace", "cached"]
# Snapshots (cow-chain), a failing step (exit-code), the workspace archive; cache on engines.
SUBSET_ENGINE = ["cow-chain", "exit-code", "env-and-workspace", "cached"]
SUBSET_NS = ["cow-chain", "exit-code", "logs", "env-and-workspace"]

tap = Tap()


def cli(engine):
    if engine == "docker":
        return ["docker", "-H", "unix://" + DOCKER_SOCK]
    return ["podman", "--remote", "--url", "unix://" + PODMAN_SOCK]


def sh(argv, timeout=120, **kw):
    return subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


WRAPPER = r"""#!/bin/sh
# hm inside container %(ctr)s: the harness's hm environment and working directory carried over.
# -i only when stdin carries data: podman 4.3's remote exec with -i and an empty stdin sometimes
# drops the command's output (the attach ends on stdin's EOF).
i=
if [ -p /dev/stdin ] || [ -f /dev/stdin ]; then i=-i; fi
exec %(cli)s exec $i -w "$PWD" %(ctr)s /usr/bin/env %(envs)s hm "$@"
"""
PASS_ENV = ("XDG_CACHE_HOME", "TMPDIR", "DOCKER_HOST", "CONTAINER_HOST", "HM_STORE", "HM_RUNNER", "CI")


def write_wrapper(path, engine, ctr):
    # env VAR="${VAR-}" for each: unset outside means empty inside, which hm treats as unset.
    envs = " ".join('%s="${%s-}"' % (v, v) for v in PASS_ENV)
    with open(path, "w") as f:
        f.write(WRAPPER % {"ctr": ctr, "cli": " ".join(cli(engine)), "envs": envs})
    os.chmod(path, 0o755)


class Env:
    def __init__(self, name, engine, args, runner, expect="pass", full=False):
        self.name, self.engine, self.args, self.runner = name, engine, args, runner
        self.expect = expect
        self.full = full or FULL
        self.ctr = None
        self.wrapper = None

    def cases(self):
        if self.full:
            return ALL_CASES
        return SUBSET_NS if self.runner == "ns" else SUBSET_ENGINE


def start_container(env, work):
    name = "hm-nest-%d-%s" % (os.getpid(), env.name)
    binds = ["-v", "%s:%s" % (work, work), "-v", "%s:%s:ro" % (SHARED, SHARED)]
    if env.runner == "docker":
        binds += ["-v", "%s:%s" % (DOCKER_SOCK, DOCKER_SOCK)]
    elif env.runner == "podman":
        binds += ["-v", "%s:%s" % (PODMAN_SOCK, PODMAN_SOCK)]
    argv = cli(env.engine) + ["run", "-d", "--name", name, "--network", "none"] + env.args + binds + \
        [IMAGE, "sleep", "100000"]
    p = sh(argv)
    return name, p


def remove_container(env):
    if env.ctr:
        sh(cli(env.engine) + ["rm", "-f", "-t", "0", env.ctr] if env.engine == "podman"
           else cli(env.engine) + ["rm", "-f", env.ctr])


def inside(env, argv, timeout=120):
    return sh(cli(env.engine) + ["exec", env.ctr] + argv, timeout=timeout)


def relay_ir_cases(env, work):
    """test_ir_cases.py with the wrapper as --hm; its checks become ours, prefixed."""
    argv = [sys.executable, os.path.join(HERE, "test_ir_cases.py"), "--hm", env.wrapper, "--runners", env.runner,
            "--shared", SHARED, "--cases-only", "--exclude", "dry-run,bad-ir", "--only", ",".join(env.cases() + ["cache-clean"]),
            "--no-host-cgroups"]
    e = {k: v for k, v in os.environ.items() if not k.startswith("HM_TEST_") and k != "HM_STORE"}
    e["TMPDIR"] = work  # its temp root, bind-mounted at the same path
    if env.runner == "docker":
        e["HM_TEST_DOCKER_SOCK"] = DOCKER_SOCK
    elif env.runner == "podman":
        e["HM_TEST_PODMAN_SOCK"] = PODMAN_SOCK
    t0 = time.monotonic()
    p = subprocess.run(argv, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900,
                       stdin=subprocess.DEVNULL)
    dt = time.monotonic() - t0
    lines = p.stdout.decode(errors="replace").splitlines()
    summary = lines[-1] if lines else ""
    pending_diag = []
    for line in lines[:-1]:
        if line.startswith("ok ") or line.startswith("not ok "):
            ok = line.startswith("ok ")
            desc = line.split(" - ", 1)[1] if " - " in line else line
            tap.check(ok, "%s: %s" % (env.name, desc))
            pending_diag = []
        elif line.startswith("# "):
            tap.diag("%s: %s" % (env.name, line[2:]))
    tap.check(p.returncode == 0 and summary.endswith(" 0 failed") or ", 0 failed" in summary,
              "%s: IR cases %s pass (%s; %.0f s)" % (env.name, ",".join(env.cases()), summary, dt),
              lambda: "\n".join(lines[-40:]))
    return dt


def isolation_notices(env, work):
    """One ns run with --format json: every isolation notice once, the same text in the human output."""
    ir = os.path.join(SHARED, "ir", "cases", "cow-chain.json")
    store = os.path.join(work, "notice-store-" + env.name)
    os.makedirs(store)
    rootfs = os.path.join(work, "rootfs.tar")
    e = dict(os.environ, HM_STORE=store, XDG_CACHE_HOME=os.path.join(work, "xdg-" + env.name), TMPDIR=work)
    p = sh([env.wrapper, "image", "import", rootfs, "alpine:3.20"], env=e, cwd=work)
    if not tap.check(p.returncode == 0, "%s: hm image import inside" % env.name, lambda: out_of(p)):
        return []
    run = run_hm([env.wrapper, "run", "--runner=ns", "--format", "json", "-f", ir], env=e, timeout=120, cwd=work)
    notices = [ev.get("message") for ev in run.ev().list
               if ev.get("kind") == "notice" and ev.get("notice") == "isolation"]
    tap.check(run.rc == 0, "%s: cow-chain passes with --format json (rc %s)" % (env.name, run.rc), run.describe)
    tap.check(len(notices) == len(set(notices)), "%s: each isolation notice once per run (%d notices, 3 steps)"
              % (env.name, len(notices)), lambda: notices)
    human = sh([env.wrapper, "run", "--runner=ns", "--logs", "-f", ir], env=e, cwd=work)
    text = human.stdout.decode(errors="replace") + human.stderr.decode(errors="replace")
    missing = [n for n in notices if n not in text]
    tap.check(human.returncode == 0 and not missing, "%s: the human output shows each of them" % env.name,
              lambda: "missing %s\n%s" % (missing, text[-3000:]))
    for n in notices:
        tap.diag("%s: reduced isolation: %s" % (env.name, n))
    shutil.rmtree(store, ignore_errors=True)
    return notices


def refusal(env, work, needles):
    """The ns runner cannot run here: a precise reason and fix, non-zero, nothing started."""
    ir = os.path.join(SHARED, "ir", "cases", "cow-chain.json")
    store = os.path.join(work, "store-" + env.name)
    os.makedirs(store)
    e = dict(os.environ, HM_STORE=store, XDG_CACHE_HOME=os.path.join(work, "xdg-" + env.name), TMPDIR=work)
    p = sh([env.wrapper, "image", "import", os.path.join(work, "rootfs.tar"), "alpine:3.20"], env=e, cwd=work)
    tap.check(p.returncode == 0, "%s: hm image import inside" % env.name, lambda: out_of(p))
    run = run_hm([env.wrapper, "run", "--runner=ns", "--format", "json", "-f", ir], env=e, timeout=120, cwd=work)
    text = run.stdout_raw.decode(errors="replace") + run.stderr
    tap.check(run.rc == 1, "%s: hm run --runner=ns exits 1 (got %s)" % (env.name, run.rc), run.describe)
    missing = [n for n in needles if n not in text]
    tap.check(not missing, "%s: the error gives the reason and the fix (%s)" % (env.name, ", ".join(needles)),
              lambda: "missing %s\n%s" % (missing, run.describe()))
    errs = [ev.get("error") or ev.get("message") for ev in run.ev().list if ev.get("kind") == "chain_failed"]
    tap.diag("%s: refusal: %s" % (env.name, errs[:1]))
    tap.check("from-a" not in [ev.get("line") for ev in run.ev().list if ev.get("kind") == "step_log"],
              "%s: no step ran" % env.name)
    shutil.rmtree(store, ignore_errors=True)


def reap_inside(env, work):
    """hm run inside, SIGKILLed inside; hm reap inside removes its container (not before)."""
    eng = Engine(env.runner, DOCKER_SOCK if env.runner == "docker" else PODMAN_SOCK)
    ir = write_sleeper_ir(os.path.join(work, "reap-" + env.name + ".json"))
    var = "DOCKER_HOST" if env.runner == "docker" else "CONTAINER_HOST"
    sock = eng.sock
    xdg = os.path.join(work, "xdg-reap-" + env.name)
    bg = "%s=unix://%s XDG_CACHE_HOME=%s hm run --runner=%s -f %s >/dev/null 2>&1 & echo $!" % (
        var, sock, xdg, env.runner, ir)
    p = inside(env, ["sh", "-c", "cd /tmp && " + bg])
    pid = p.stdout.decode().strip()
    mine = lambda: [c for c in eng.containers() if c.get("State") == "running"]  # noqa: E731
    up = wait_until(mine, 60, 0.3)
    if not tap.check(bool(up) and pid.isdigit(), "%s reap: the run inside started its step container" % env.name,
                     lambda: out_of(p)):
        return
    reap_env = ["env", "%s=unix://%s" % (var, sock), "XDG_CACHE_HOME=" + xdg]
    live = inside(env, reap_env + ["hm", "reap", "--runner", env.runner])
    tap.check(live.returncode == 0 and len(mine()) == 1,
              "%s reap: hm reap inside leaves the live run's container alone (control)" % env.name,
              lambda: out_of(live))
    inside(env, ["kill", "-9", pid])
    time.sleep(0.5)
    dry = inside(env, reap_env + ["hm", "reap", "--dry-run", "--runner", env.runner])
    dry_out = dry.stdout.decode(errors="replace") + dry.stderr.decode(errors="replace")
    cid = up[0]["Id"][:12]
    tap.check(dry.returncode == 0 and cid in dry_out and len(eng.containers()) == 1,
              "%s reap: hm reap --dry-run inside names the dead run's container %s, removes nothing" % (
                  env.name, cid), lambda: out_of(dry))
    rp = inside(env, reap_env + ["hm", "reap", "--runner", env.runner], timeout=120)
    left = wait_until(lambda: not eng.containers() and not [i for i in eng.images() if not eng.is_cache_image(i)],
                      20, 0.3)
    tap.check(rp.returncode == 0 and left, "%s reap: hm reap inside removed the container; nothing labelled "
              "hm.run is left" % env.name, lambda: out_of(rp) + "\n%s" % (eng.leftovers(),))
    for c in eng.containers():
        eng.request("DELETE", "/containers/%s?force=1" % c["Id"])


def parse_doctor(text):
    """hm doctor's lines as {check: (level, message, fix)}, plus "header" and "summary"."""
    out, last = {}, None
    lines = text.splitlines()
    if lines:
        out["header"] = ("", lines[0], "")
    for line in lines[1:]:
        if line.startswith(("ok ", "warning ", "error ")):
            level, rest = line.split(None, 1)
            check, msg = rest[:22].strip(), rest[23:]
            out[check] = (level, msg, "")
            last = check
        elif line.strip().startswith("fix: ") and last:
            out[last] = out[last][:2] + (line.strip()[5:],)
        elif "error(s)" in line:
            out["summary"] = ("", line, "")
    return out


ROOTLESS_HEADER = "root without CAP_SYS_ADMIN in the initial user namespace, uid 0: hm takes the rootless path"
SECCOMP_FIX = ["seccomp=unconfined", "--privileged", "--runner=docker|podman with the engine's socket mounted"]


def doctor_expectations(env):
    """(check, level, [needles in its message + fix]) that hm doctor must print in this environment."""
    priv = "--privileged" in env.args or "ALL" in env.args
    exp = [("header", "", [ROOTLESS_HEADER] if not priv else ["hm doctor: root, uid 0"]),
           ("container", "ok", ["hm runs inside a container (%s" % env.engine])]
    seccomp_refuses = env.engine == "docker" and not priv
    if seccomp_refuses:
        exp += [("unshare", "error", ["unshare(CLONE_NEWUSER) refused (EPERM)", "seccomp filter"] + SECCOMP_FIX),
                ("user namespaces", "error", ["a seccomp filter refuses it"] + SECCOMP_FIX),
                ("fresh /proc", "warning", ["not tried"])]
    elif priv:
        exp += [("unshare", "ok", ["unshare(CLONE_NEWNS|NEWPID|NEWIPC|NEWUTS|NEWNET) allowed"]),
                ("overlay", "ok", ["an overlay mounts (in the store's filesystem"]),
                ("fresh /proc", "ok", ["a new /proc mounts in a new pid namespace"]),
                ("hostname", "ok", ["steps get their own hostname"])]
    else:
        exp += [("unshare", "ok", ["unshare(CLONE_NEWUSER) allowed"]),
                ("user namespaces", "ok", ["can create one", "steps run in one, as for an ordinary user"]),
                ("overlay in userns", "ok", ["overlay with userxattr mounts inside a user namespace (in the store's"]),
                ("fresh /proc", "warning", ["refused", "read-only bind of the outer /proc", "unmask=ALL"])]
        if "seccomp=unconfined" in env.args:
            exp.append(("hostname", "ok", ["steps get their own hostname"]))
        else:
            exp.append(("hostname", "warning", ["refused", "seccomp filter", "keep the surrounding hostname"]
                        + SECCOMP_FIX))
        exp.append(("cgroups", "warning", ["fall back to rlimits", "--privileged"]))
    if env.engine == "podman" and priv:
        exp.append(("cgroups", "ok", ["writable"]))
    if env.runner in ("docker", "podman"):
        exp.append((env.runner, "ok", ["%s " % env.runner, "at %s" % (DOCKER_SOCK if env.runner == "docker"
                                                                    else PODMAN_SOCK)]))
    # the seccomp refusals are the only errors; everything else works or falls back
    exp.append(("summary", "", ["2 error(s)" if seccomp_refuses else "0 error(s)"]))
    return exp


def check_doctor(env, work):
    """hm doctor inside, with the store the runs use (bind-mounted): its key lines; then the default store
    on the container's own overlay root: the overlay line names it and the fix."""
    denv = ["env", "HM_STORE=" + os.path.join(work, "doctor-store-" + env.name)]
    if env.runner == "docker":
        denv.append("DOCKER_HOST=unix://" + DOCKER_SOCK)
    elif env.runner == "podman":
        denv.append("CONTAINER_HOST=unix://" + PODMAN_SOCK)
    d = inside(env, denv + ["hm", "doctor"])
    text = (d.stdout + d.stderr).decode(errors="replace")
    tap.diag("%s: hm doctor (exit %d):" % (env.name, d.returncode))
    for line in text.splitlines():
        tap.diag("%s:   %s" % (env.name, line))
    got = parse_doctor(d.stdout.decode(errors="replace"))
    for check, level, needles in doctor_expectations(env):
        g = got.get(check)
        missing = [n for n in needles if not g or n not in g[1] + " " + g[2]]
        tap.check(g is not None and g[0] == level and not missing,
                  "%s: hm doctor: %s %s%s" % (env.name, level or "line", check,
                                              " (%s)" % "; ".join(needles) if needles else ""),
                  lambda: "got %s; missing %s" % (g, missing))
    seccomp_refuses = env.engine == "docker" and not ("--privileged" in env.args or "ALL" in env.args)
    if env.runner != "ns" or seccomp_refuses:
        return
    d = inside(env, ["hm", "doctor"])
    got = parse_doctor(d.stdout.decode(errors="replace"))
    g = got.get("overlay") or got.get("overlay in userns")
    needles = ["failed in the store's filesystem (/var/lib", "itself an overlay", "put the store on a volume"]
    tap.check(d.returncode == 1 and g is not None and g[0] == "error" and all(n in g[1] + " " + g[2] for n in needles),
              "%s: hm doctor with the default store on the container's overlay root: an error naming it, with the "
              "fix (control: the same check passes with the store on a volume)" % env.name,
              lambda: out_of(d))


def environments():
    envs = []
    if DOCKER_SOCK:
        envs.append(Env("docker-sock", "docker", [], "docker", full=True))
    if PODMAN_SOCK:
        envs.append(Env("podman-sock", "podman", [], "podman"))
        envs.append(Env("ns-podman-default", "podman", [], "ns", full=True))
        envs.append(Env("ns-podman-unconfined", "podman", ["--security-opt", "seccomp=unconfined"], "ns"))
        envs.append(Env("ns-podman-privileged", "podman", ["--privileged"], "ns"))
    if DOCKER_SOCK:
        envs.append(Env("ns-docker-privileged", "docker", ["--privileged"], "ns"))
        envs.append(Env("ns-docker-default", "docker", [], "ns", expect="refused"))
    only = [x for x in os.environ.get("HM_NESTED_ONLY", "").split(",") if x]
    return [e for e in envs if not only or e.name in only]


def host_bounding_set():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return 0


def run_env(env, work):
    t0 = time.monotonic()
    env.ctr, p = start_container(env, work)
    if p.returncode != 0 and "--privileged" in env.args and env.engine == "docker":
        # Docker asks the kernel for every capability it knows; a host whose own bounding set
        # lacks one (here: CAP_SYS_RESOURCE) cannot start any --privileged container.
        err = p.stderr.decode(errors="replace").strip()
        remove_container(env)
        missing = [c for c in range(38) if not host_bounding_set() & (1 << c)]
        tap.diag("%s: the engine cannot start a --privileged container here: %s (capabilities missing from "
                 "this host's bounding set: %s)" % (env.name, err.splitlines()[0] if err else "?", missing))
        tap.check("caps" in err and missing, "%s: docker refuses --privileged only because the host's bounding "
                  "set lacks capabilities %s" % (env.name, missing), err)
        # The nearest equivalent: every capability the host has, no seccomp, no masked paths.
        env.args = ["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
                    "--security-opt", "systempaths=unconfined", "--security-opt", "apparmor=unconfined"]
        env.name += "-equivalent"
        env.ctr, p = start_container(env, work)
    if not tap.check(p.returncode == 0, "%s: container starts (%s)" % (env.name, " ".join(env.args) or "defaults"),
                     lambda: out_of(p)):
        env.ctr = None
        return 0
    env.wrapper = os.path.join(work, "hm-in-" + env.name)
    write_wrapper(env.wrapper, env.engine, env.ctr)
    check_doctor(env, work)
    if env.expect == "refused":
        refusal(env, work, ["seccomp", "seccomp=unconfined", "--privileged"])
    else:
        if env.runner == "ns":
            isolation_notices(env, work)
        relay_ir_cases(env, work)
        if env.runner == "ns":
            # the host's view cannot see them: count step cgroups from inside
            cg = inside(env, ["find", "/sys/fs/cgroup", "-path", "*/hm/hm-*"])
            left = cg.stdout.decode(errors="replace").split()
            tap.check(cg.returncode in (0, 1) and not left, "%s: no step cgroup left inside the container" % env.name,
                      lambda: out_of(cg))
        if env.runner in ("docker", "podman"):
            reap_inside(env, work)
    dt = time.monotonic() - t0
    tap.diag("%s: %.0f s" % (env.name, dt))
    return dt


def main():
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt("signal %d" % s)))
    if not DOCKER_SOCK and not PODMAN_SOCK:
        tap.skip("hm in containers", "no HM_TEST_DOCKER_SOCK / HM_TEST_PODMAN_SOCK")
        tap.summary()
        return 0
    work = tempfile.mkdtemp(prefix="hm-nest-")
    os.chmod(work, 0o755)
    envs = environments()
    loaded = []
    try:
        tar = os.path.join(work, "hm-ci.tar")
        p = sh([os.path.join(REPO, "contrib", "mkimage-ci.sh"), "-g", "-b", HM, "-t", IMAGE, tar])
        if not tap.check(p.returncode == 0, "contrib/mkimage-ci.sh -g makes the image", lambda: out_of(p)):
            return 1
        tap.diag(p.stdout.decode(errors="replace").strip())
        for engine, sock in (("docker", DOCKER_SOCK), ("podman", PODMAN_SOCK)):
            if not sock:
                continue
            p = sh(cli(engine) + ["load", "-i", tar])
            if tap.check(p.returncode == 0 and IMAGE in p.stdout.decode(errors="replace"),
                         "%s load -i hm-ci.tar loads %s" % (engine, IMAGE), lambda: out_of(p)):
                loaded.append(engine)
        busybox_rootfs_tar(work)
        times = {}
        for env in envs:
            if env.engine not in loaded:
                continue
            try:
                times[env.name] = run_env(env, work)
            except Exception:
                tap.check(False, "%s: ran without a harness error" % env.name, traceback.format_exc())
            finally:
                remove_container(env)
        tap.diag("durations: " + ", ".join("%s %.0f s" % kv for kv in times.items()))
    except KeyboardInterrupt as e:
        tap.check(False, "harness ran to the end (interrupted: %s)" % e)
    finally:
        for env in envs:
            remove_container(env)
        for engine in loaded:
            sh(cli(engine) + ["rmi", "-f", IMAGE])
        shutil.rmtree(work, ignore_errors=True)
    return 0 if tap.summary() else 1


if __name__ == "__main__":
    sys.exit(main())
