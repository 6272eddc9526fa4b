#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Engine runner pulls, against a real registry (Debian's docker-registry) on
loopback: an image missing from the engine is pulled with progress notices and
the step runs on it; --pull=always pulls although the image is present;
--pull=never fails clearly.  The registry is filled by pushing the harness's
busybox image through the Docker engine.  Needs HM_TEST_DOCKER_SOCK (and uses
HM_TEST_PODMAN_SOCK when set)."""
import http.client, json, os, shutil, socket, subprocess, sys, tempfile, urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import free_port  # noqa: E402
from lib.registry import start_registry  # noqa: E402

HM = os.environ.get("HM_BIN", "build/hm")
DOCKER = os.environ.get("HM_TEST_DOCKER_SOCK")
PODMAN = os.environ.get("HM_TEST_PODMAN_SOCK")
results = []


def ok(cond, desc, diag=None):
    results.append(bool(cond))
    print(("ok" if cond else "not ok"), len(results), "-", desc)
    if not cond and diag is not None:
        print("# " + str(diag)[:2000].replace("\n", "\n# "))
    sys.stdout.flush()


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("d", timeout=300)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(300)
        self.sock.connect(self.path_)


def api(sock, method, path, body=None, headers=None):
    c = UnixConn(sock)
    h = dict(headers or {})
    if body:
        h["Content-Type"] = "application/json"
    c.request(method, "/v1.41" + path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def run_hm(sock, kind, image, pull):
    ir = {"graph": {"nodes": [{"env": {}, "step": {"key": "pulled", "cmd": "echo ran-on-pulled; cat /etc/hm-pulled 2>/dev/null || true",
                                                   "image": image}}],
                    "node_holes": [], "edge_property": "directed", "edges": []}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(ir, f)
    src = tempfile.mkdtemp(prefix="hm-pull-src-")
    p = subprocess.run([HM, "run", "--runner", kind, "--socket", sock, "--pull", pull, "--format", "json", "-d", src,
                        "-f", f.name], capture_output=True, text=True, timeout=300)
    os.unlink(f.name)
    os.rmdir(src)
    events = [json.loads(l) for l in p.stdout.splitlines()]
    return p, events


def main():
    if not DOCKER:
        print("# HM_TEST_DOCKER_SOCK not set")
        print("0 passed, 1 failed")
        return 1
    reg = shutil.which("docker-registry")
    ok(reg is not None, "docker-registry is installed (Debian package docker-registry)")
    if not reg:
        print("%d passed, %d failed" % (sum(results), len(results) - sum(results)))
        return 1
    work = tempfile.mkdtemp(prefix="hm-registry-")
    port = free_port()
    regp, up = start_registry(work, "registry", port, os.path.join(work, "data"))
    ref_repo = "127.0.0.1:%d/hm/busybox" % port
    ref = ref_repo + ":pull"
    try:
        ok(up, "registry answers /v2/ on 127.0.0.1:%d" % port)

        # fill it: tag the harness's busybox image and push it through Docker (loopback is insecure-ok)
        st, _ = api(DOCKER, "POST", "/images/alpine:3.20/tag?repo=%s&tag=pull" % urllib.parse.quote(ref_repo, safe=""))
        ok(st == 201, "tag the busybox image for the registry", st)
        st, body = api(DOCKER, "POST", "/images/%s/push" % urllib.parse.quote(ref_repo, safe="") + "?tag=pull",
                       body=None, headers={"X-Registry-Auth": "e30="})  # base64 "{}": anonymous
        pushed = st == 200 and b'"error"' not in body
        ok(pushed, "push it to the registry", body[-500:])

        engines = [("docker", DOCKER)] + ([("podman", PODMAN)] if PODMAN else [])
        for kind, sock in engines:
            api(sock, "DELETE", "/images/%s?force=1" % urllib.parse.quote(ref, safe=""))
            st, _ = api(sock, "GET", "/images/%s/json" % urllib.parse.quote(ref, safe=""))
            ok(st == 404, "%s: the image is not on the engine before the run" % kind, st)
            p, ev = run_hm(sock, kind, ref, "missing")
            if kind == "podman" and p.returncode != 0 and "http: server gave HTTP response to HTTPS client" in p.stdout + p.stderr:
                # containers/image does not treat 127.0.0.1 as insecure without registries.conf
                ok(True, "podman: pull from a plain-HTTP registry needs it marked insecure (reported clearly)")
                continue
            pulls = [e for e in ev if e["kind"] == "notice" and e.get("notice") == "pull"]
            logs = [e["line"] for e in ev if e["kind"] == "step_log"]
            ok(p.returncode == 0, "%s: a step on a missing registry image passes (pull=missing)" % kind, p.stderr + p.stdout[-1500:])
            ok(len(pulls) > 0, "%s: pull progress is reported as notice events (%d)" % (kind, len(pulls)), ev[-5:])
            ok("ran-on-pulled" in logs, "%s: the step ran on the pulled image" % kind, logs)
            st, _ = api(sock, "GET", "/images/%s/json" % urllib.parse.quote(ref, safe=""))
            ok(st == 200, "%s: the image is on the engine afterwards" % kind, st)
            p, ev = run_hm(sock, kind, ref, "always")
            pulls = [e for e in ev if e["kind"] == "notice" and e.get("notice") == "pull"]
            ok(p.returncode == 0 and len(pulls) > 0, "%s: --pull=always pulls although the image is present" % kind, p.stderr)
            api(sock, "DELETE", "/images/%s?force=1" % urllib.parse.quote(ref, safe=""))
            p, ev = run_hm(sock, kind, ref, "never")
            ok(p.returncode == 1 and "not found" in p.stderr + p.stdout and "--pull=never" in p.stderr + p.stdout,
               "%s: --pull=never with the image absent fails naming the image" % kind, p.stderr[-500:])
            regp_alive = regp.poll() is None
            ok(regp_alive, "%s: registry still running" % kind)
        regp.terminate()
        regp.wait(timeout=10)
        # the registry is gone: a pull must fail clearly, not hang
        for kind, sock in engines[:1]:
            p, ev = run_hm(sock, kind, ref, "missing")
            ok(p.returncode == 1 and ref in p.stderr + p.stdout, "%s: a pull from a registry that is down fails naming the image" % kind,
               p.stderr[-500:])
    finally:
        if regp.poll() is None:
            regp.kill()
            regp.wait()
        for kind, sock in [("docker", DOCKER)] + ([("podman", PODMAN)] if PODMAN else []):
            api(sock, "DELETE", "/images/%s?force=1" % urllib.parse.quote(ref, safe=""))
        shutil.rmtree(work, ignore_errors=True)
    n = sum(results)
    print("%d passed, %d failed" % (n, len(results) - n))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
