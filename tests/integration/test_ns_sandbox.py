#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What a step sees inside the built-in runtime, checked from inside real
steps run by `hm run --runner=ns`: its own pid namespace under hm's pid 1,
its own hostname, the reduced capability set, no_new_privs, seccomp, blocked
syscalls, masked and read-only /proc paths, and enforced limits.  Needs a
busybox image named alpine:3.20 in $HM_STORE (tests/run-all.sh imports it)."""
import json, os, signal, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import logs_and_ends  # noqa: E402

HM = os.environ.get("HM_BIN", "build/hm")
DEFAULT_CAPS = "00000000a80425fb"  # the usual container default set
results = []


def ok(cond, desc, diag=None):
    results.append(bool(cond))
    print(("ok" if cond else "not ok"), len(results), "-", desc)
    if not cond and diag:
        print("# " + str(diag).replace("\n", "\n# "))
    sys.stdout.flush()


def run_steps(steps, extra=(), preexec_fn=None):
    nodes = [{"env": {}, "step": {"key": k, "cmd": c, "image": "alpine:3.20"}} for k, c in steps]
    ir = {"graph": {"nodes": nodes, "node_holes": [], "edge_property": "directed", "edges": []}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(ir, f)
    src = tempfile.mkdtemp(prefix="hm-sbx-src-")
    p = subprocess.run([HM, "run", "--runner=ns", "--format", "json", "-k", "-d", src, "-f", f.name] + list(extra),
                       capture_output=True, text=True, timeout=120, preexec_fn=preexec_fn)
    os.unlink(f.name)
    os.rmdir(src)
    logs, ends = logs_and_ends(p.stdout)
    return p, logs, ends


def main():
    p, logs, ends = run_steps([
        ("pids", "echo self=$$; cat /proc/1/cmdline | tr '\\0' ' '; echo; ps -o comm | tail -n +2 | sort -u | tr '\\n' ' '"),
        ("host-name", "hostname"),
        ("status", "grep -E '^(CapEff|CapBnd|CapInh|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status"),
        ("blocked", "unshare -U true 2>&1; echo unshare=$?; mount -t tmpfs none /mnt 2>&1; echo mount=$?;"
                    " nsenter -t 1 -m true 2>&1; echo nsenter=$?"),
        ("masked", "echo kcore=$(wc -c < /proc/kcore 2>/dev/null || echo absent) timer=$(wc -c < /proc/timer_list); "
                   "echo 1 > /proc/sys/kernel/domainname 2>&1; echo sys=$?; echo x > /proc/sysrq-trigger 2>&1; echo sysrq=$?"),
        ("net", "ls /sys/class/net | tr '\\n' ' '"),
    ])
    ok(p.returncode == 0, "sandbox probe pipeline passes", p.stderr)
    pl = logs.get("pids", [])
    ok("self=2" in pl, "the step's shell is pid 2 in its own pid namespace", pl)
    ok(len(pl) > 1 and "hm" in pl[1], "pid 1 is hm's init", pl)
    comms = set(pl[-1].split()) if pl else set()
    ok(comms and comms <= {"hm-init", "sh", "ps", "tail", "sort", "tr", "exe"}, "only the step's own processes are visible (busybox re-execs applets as exe)", pl)
    ok(logs.get("host-name") == ["host-name"], "the hostname is the step's own", logs.get("host-name"))
    st = dict(l.split(":\t") for l in logs.get("status", []))
    ok(st.get("CapEff") == DEFAULT_CAPS and st.get("CapBnd") == DEFAULT_CAPS, "effective and bounding caps are the default set", st)
    ok(st.get("CapInh") == "0000000000000000" and st.get("CapAmb") == "0000000000000000", "no inheritable or ambient caps", st)
    ok(st.get("NoNewPrivs") == "1", "no_new_privs is 1", st)
    ok(st.get("Seccomp") == "2", "a seccomp filter is installed", st)
    bl = logs.get("blocked", [])
    ok("unshare=0" not in bl and any("Operation not permitted" in l for l in bl), "unshare fails with EPERM", bl)
    ok("mount=0" not in bl, "mount fails", bl)
    ok("nsenter=0" not in bl, "setns into another namespace fails", bl)
    ml = logs.get("masked", [])
    ok("kcore=0 timer=0" in ml or "kcore=absent timer=0" in ml, "masked /proc paths read empty (kcore may be absent)", ml)
    ok("sys=0" not in ml and "sysrq=0" not in ml, "/proc/sys and /proc/sysrq-trigger are not writable", ml)
    ok(logs.get("net", [""])[0].split() == ["lo"], "the default network is a private namespace with only lo", logs.get("net"))
    # limits: cgroup v1 here as root (v2 where delegated); rootless falls back to rlimits with a notice
    p, logs, ends = run_steps([
        ("forks", "i=0; while [ $i -lt 30 ]; do sleep 2 & i=$((i+1)); done 2>&1 | tail -n 1; wait"),
        ("alloc", "dd if=/dev/zero of=/dev/null bs=96M count=1 2>&1 | tail -n 1"),
        ("small", "dd if=/dev/zero of=/dev/null bs=4M count=1 2>&1 | tail -n 1"),
    ], ["--pids-limit", "12", "--memory", "48m"])
    ok(any("can't fork" in l for l in logs.get("forks", [])), "--pids-limit 12 stops a fork loop", logs.get("forks"))
    ok(logs.get("alloc", [""])[-1].strip() == "Killed", "--memory 48m kills a 96 MiB allocation", logs.get("alloc"))
    ok(logs.get("small", [""])[-1].startswith("1+0 records out"), "a 4 MiB allocation under --memory 48m works", logs.get("small"))
    # a caller that ignores SIGCHLD (it survives execve): hm still waits for its steps
    ignore = lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # noqa: E731
    ctl = subprocess.run(["grep", "^SigIgn:", "/proc/self/status"], capture_output=True, text=True, preexec_fn=ignore)
    ok(int(ctl.stdout.split()[1], 16) & (1 << (signal.SIGCHLD - 1)),
       "control: a program started this way has SIGCHLD ignored", ctl.stdout)
    p, logs, ends = run_steps([("seven", "exit 7"), ("fine", "echo fine")], preexec_fn=ignore)
    ok(p.returncode == 1 and ends == {"seven": 7, "fine": 0} and logs.get("fine") == ["fine"],
       "started with SIGCHLD ignored, hm still gets each step's exit code (7 and 0)", (p.returncode, ends, p.stderr[-400:]))
    n_pass = sum(results)
    print("%d passed, %d failed" % (n_pass, len(results) - n_pass))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
