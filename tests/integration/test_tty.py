#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The human renderers, through a real pseudo-terminal: the live view on a TTY
(running steps redrawn, a failed step's log tail, the summary table) and the
--logs line mode when CI is set.  Uses the test-only null runner, so it needs
no engine and no root."""
import json, os, pty, select, subprocess, sys, tempfile, time

HM = os.environ.get("HM_BIN", "build/hm")
results = []


def ok(cond, desc):
    results.append(bool(cond))
    print(("ok" if cond else "not ok"), len(results), "-", desc)
    sys.stdout.flush()


def ir(steps, edges):
    nodes = [{"env": {}, "step": {"key": k, "label": k, "cmd": c, "image": "img"}} for k, c in steps]
    return json.dumps({"graph": {"nodes": nodes, "node_holes": [], "edge_property": "directed",
                                 "edges": [[a, b, "builds_in"] for a, b in edges]}})


def run_on_pty(args, env):
    """Run hm with stdin/stdout/stderr on a new pty; return (exit code, output bytes)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([HM] + args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.time() + 60
    while time.time() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    os.close(master)
    return p.wait(timeout=30), out


def main():
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")}
    env["TERM"] = "xterm"
    tmp = tempfile.mkdtemp(prefix="hm-tty-")
    env["XDG_CACHE_HOME"] = tmp
    f = os.path.join(tmp, "p.json")
    with open(f, "w") as fh:
        fh.write(ir([("prep", "echo preparing"), ("slow", "echo step-one; sleep 0.6; echo step-two"),
                     ("bad", "echo first-tail-line; echo last-tail-line; exit 4")], [(0, 1), (0, 2)]))
    code, out = run_on_pty(["run", "--runner=null", "-k", "-f", f], env)
    text = out.decode("utf-8", "replace")
    ok(code == 1, "tty: exit 1 with -k and one failing step (got %d)" % code)
    ok("\x1b[" in text, "tty: ANSI control sequences used for the live view")
    ok("slow" in text and "step-one" in text, "tty: a running step is shown with its last line")
    ok("--- bad failed (exit 4) ---" in text, "tty: a failed step gets a header")
    ok("first-tail-line" in text and "last-tail-line" in text, "tty: the failed step's log tail is printed")
    ok("step " in text and "status" in text and "duration" in text and "cache" in text,
       "tty: a summary table is printed")
    ok("exit 4" in text and "passed" in text, "tty: the table lists each step's status")
    ok("Build failed" in text, "tty: the final line says the build failed")

    code, out = run_on_pty(["run", "--runner=null", "-k", "-f", f, "--no-color"], dict(env, CI="true"))
    text = out.decode("utf-8", "replace")
    ok("[slow] step-two" in text and "build: end exit=1" in text, "CI set: --logs line mode even on a TTY")
    ok("\x1b[" not in text, "--no-color: no ANSI sequences")
    n_pass = sum(results)
    print("%d passed, %d failed" % (n_pass, len(results) - n_pass))
    subprocess.run(["rm", "-rf", tmp])
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
