#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Pulling images from registries into the ns runner's store (oci/registry.c),
against real registries on loopback (Debian's docker-registry, configured
here, sharing one storage dir):

  A  plain HTTP, anonymous            (insecure: --tls-verify=false or registries.conf)
  B  TLS with a CA made here (openssl) + htpasswd basic auth (htpasswd -B)
  C  plain HTTP + token auth: the registry's own JWT verification (rootcertbundle)
     against a small token endpoint run by this test (it signs RS256 JWTs with
     openssl; docker-registry ships no token server)

The registry is filled with `skopeo copy` from OCI layouts built here from
busybox (tests/lib/mkimage.sh): a two-layer image, a multi-platform index
(the other platform listed first; also copied as a Docker manifest list with
schema 2 manifests), an image with a zstd layer, one with a 4 MiB incompressible layer
(interrupted pull), one with a 2 MiB layer (two concurrent pulls) and one whose
layer blob is then overwritten in the registry's storage (digest mismatch).
A FakeRegistry serves what a real one does not do on demand (hostile answers), and images
around a 256 MiB incompressible `gzip -1` layer, made here and served from a file: a SIGINT
during its unpack, another layer completing during it (its answer held until the unpack began),
a layer failing during it, and a store lock held by this test (oci/store.c's <store>/lock).
Those checks go by the order of events, never by time.
Each claim has its control next to it (the check can see the failure)."""
import base64, gzip, hashlib, http.client, io, json, os, platform, shutil, signal, subprocess
import sys, tarfile, tempfile, threading, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Tap, free_port  # noqa: E402
from lib.registry import start_registry  # noqa: E402

HM = os.path.abspath(os.environ.get("HM_BIN", "build/hm"))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
OTHER = "arm64" if ARCH != "arm64" else "amd64"
USER, PASSWORD = "hm", "s3cret-Pa55"
t = Tap()


def sha(b):
    return hashlib.sha256(b).hexdigest()


# ------------------------------------------------------------------ OCI layouts built here


class Layout:
    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        self.index = []

    def blob(self, data):
        h = sha(data)
        with open(os.path.join(self.path, "blobs", "sha256", h), "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + h, "size": len(data)}

    def image(self, layers, arch, env):
        """layers: [(blob bytes, media type, diff_id hex)] -> manifest descriptor."""
        cfg = {"architecture": arch, "os": "linux", "config": {"Env": env, "Cmd": ["sh"]},
               "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for _, _, d in layers]}}
        c = self.blob(json.dumps(cfg).encode())
        m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "config": dict(c, mediaType="application/vnd.oci.image.config.v1+json"),
             "layers": [dict(self.blob(b), mediaType=mt) for b, mt, _ in layers]}
        d = self.blob(json.dumps(m).encode())
        return dict(d, mediaType="application/vnd.oci.image.manifest.v1+json",
                    platform={"architecture": arch, "os": "linux"})

    def tag(self, name, desc):
        self.index.append(dict(desc, annotations={"org.opencontainers.image.ref.name": name}))
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.index}, f)


def tar_of(files):
    """files: {path: bytes} -> an uncompressed, reproducible tar."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for path, data in sorted(files.items()):
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            tf.addfile(ti, io.BytesIO(data))
    return bio.getvalue()


def layer_gz(files):
    raw = tar_of(files)
    return (gzip.compress(raw, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip", sha(raw))


def layer_raw(files):
    raw = tar_of(files)
    return (raw, "application/vnd.oci.image.layer.v1.tar", sha(raw))


def build_layouts(work):
    img = os.path.join(work, "img")
    subprocess.run([os.path.join(ROOT, "tests/lib/mkimage.sh"), img], check=True, capture_output=True)
    with open(os.path.join(img, "oci", "index.json")) as f:
        mdesc = json.load(f)["manifests"][0]
    blobs = os.path.join(img, "oci", "blobs", "sha256")
    with open(os.path.join(blobs, mdesc["digest"][7:])) as f:
        man = json.load(f)
    with open(os.path.join(img, "digests")) as f:
        diff1 = dict(l.split() for l in f)["diff1"]
    with open(os.path.join(blobs, man["layers"][0]["digest"][7:]), "rb") as f:
        base = (f.read(), man["layers"][0]["mediaType"], diff1)
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    lay = Layout(os.path.join(work, "layout"))
    # the other platform first: taking the index's first entry would be wrong
    other = lay.image([base, layer_gz({"etc/hm-arch": OTHER.encode() + b"\n"})], OTHER, env + ["HM_ARCH=" + OTHER])
    mine = lay.image([base, layer_gz({"etc/hm-arch": ARCH.encode() + b"\n"})], ARCH, env + ["HM_ARCH=" + ARCH])
    idx = lay.blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                               "manifests": [other, mine]}).encode())
    lay.tag("multi", dict(idx, mediaType="application/vnd.oci.image.index.v1+json"))
    rnd = os.urandom(4 << 20)
    lay.tag("big", lay.image([base, layer_raw({"big/data": rnd})], ARCH, env))
    lay.tag("conc", lay.image([base, layer_raw({"conc/data": os.urandom(2 << 20)})], ARCH, env))
    raw = tar_of({"etc/hm-zstd": b"zstd\n"})
    zst = subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True, check=True).stdout
    lay.tag("zstd", lay.image([base, (zst, "application/vnd.oci.image.layer.v1.tar+zstd", sha(raw))], ARCH, env))
    corrupt = layer_gz({"etc/hm-corrupt": os.urandom(4096)})
    lay.tag("corrupt", lay.image([base, corrupt], ARCH, env))
    return os.path.join(img, "oci"), lay.path, mine, other, idx, sha(corrupt[0]), sha(rnd)


# ------------------------------------------------------------------ registries


def make_ca(work):
    d = os.path.join(work, "pki")
    os.makedirs(d)
    q = lambda *a: subprocess.run(list(a), cwd=d, check=True, capture_output=True)  # noqa: E731
    q("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
      "-subj", "/CN=hm-test-ca")
    q("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    q("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
      "srv.crt", "-days", "2", "-extfile", "ext")
    # the token signer: a self-signed cert the token-auth registry trusts (rootcertbundle)
    q("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "tok.key", "-out", "tok.crt", "-days", "2",
      "-subj", "/CN=hm-test-token")
    der = subprocess.run(["openssl", "x509", "-in", "tok.crt", "-outform", "DER"], cwd=d, check=True,
                         capture_output=True).stdout
    return d, base64.b64encode(der).decode()


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenServer:
    """A token endpoint for docker-registry's token auth: basic credentials in,
    an RS256 JWT (x5c = the signer's cert) granting the asked-for pull scope out."""

    def __init__(self, pki, x5c, service, issuer):
        self.requests = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                auth = self.headers.get("Authorization", "")
                outer.requests.append((q, auth))
                want = "Basic " + base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
                if auth != want:
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"details":"wrong credentials"}')
                    return
                access = []
                for sc in q.get("scope", []):
                    typ, name, acts = sc.split(":")
                    access.append({"type": typ, "name": name, "actions": [a for a in acts.split(",") if a == "pull"]})
                now = int(time.time())
                hdr = {"alg": "RS256", "typ": "JWT", "x5c": [x5c]}
                claims = {"iss": issuer, "sub": USER, "aud": service, "exp": now + 600, "nbf": now - 60, "iat": now,
                          "jti": os.urandom(8).hex(), "access": access}
                signing = (b64url(json.dumps(hdr).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
                sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", os.path.join(pki, "tok.key")],
                                     input=signing, capture_output=True, check=True).stdout
                body = json.dumps({"token": signing.decode() + "." + b64url(sig), "expires_in": 600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.th = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.th.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


# ------------------------------------------------------------------ hm


class Env:
    def __init__(self, work):
        self.work = work
        self.base = dict(os.environ)
        for k in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "HM_PULL_RATE", "HM_REGISTRIES_CONF", "HM_REGISTRY_CERTS_DIR"):
            self.base.pop(k, None)
        self.base["HOME"] = os.path.join(work, "home")
        self.base["XDG_RUNTIME_DIR"] = os.path.join(work, "xdg")
        os.makedirs(self.base["HOME"])
        os.makedirs(self.base["XDG_RUNTIME_DIR"])

    def env(self, store, **kw):
        e = dict(self.base, HM_STORE=store)
        e.update({k: v for k, v in kw.items() if v is not None})
        return e


def hm(env, *args, timeout=120):
    return subprocess.run([HM] + list(args), env=env, capture_output=True, text=True, timeout=timeout)


def events(out):
    evs = []
    for line in out.splitlines():
        try:
            evs.append(json.loads(line))
        except ValueError:
            pass
    return evs


def store_state(store):
    def ls(*p):
        d = os.path.join(store, *p)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []
    return {"layers": ls("layers"), "blobs": ls("blobs", "sha256"), "images": ls("images"), "tmp": ls("tmp")}


def images_of(env):
    p = hm(env, "image", "ls")
    return [l.split()[0] for l in p.stdout.splitlines()[1:] if l.strip()]


def run_pipeline(env, image, cmd, *flags):
    ir = {"graph": {"nodes": [{"env": {}, "step": {"key": "root", "cmd": cmd, "image": image}}],
                    "node_holes": [], "edge_property": "directed", "edges": []}}
    d = tempfile.mkdtemp(prefix="hm-reg-src-")
    f = os.path.join(d, "p.json")
    with open(f, "w") as fh:
        json.dump(ir, fh)
    src = os.path.join(d, "src")
    os.mkdir(src)
    p = hm(env, "run", "--runner", "ns", "--format", "json", "-d", src, "-f", f, *flags)
    shutil.rmtree(d)
    return p, events(p.stdout)


def logs(evs):
    return [e.get("line") for e in evs if e.get("kind") == "step_log"]


# ------------------------------------------------------------------ cases


def case_plain(R, E):
    store = os.path.join(E.work, "s-plain")
    env = E.env(store)
    ref = "127.0.0.1:%d/hm/busybox:1" % R["A"]
    p = hm(env, "image", "pull", ref)
    t.check(p.returncode == 1 and "TLS failed" in p.stderr and "--tls-verify=false" in p.stderr,
            "control: a plain-HTTP registry not marked insecure is refused, the error says how to mark it", p.stderr)
    t.check(images_of(env) == [] and store_state(store)["tmp"] == [], "control: nothing entered the store")
    p = hm(env, "image", "pull", "--tls-verify=false", ref)
    t.check(p.returncode == 0 and "pulled %s: 2 layers (2 downloaded" % ref in p.stdout, "pull by tag (--tls-verify=false)",
            p.stdout + p.stderr)
    t.check(images_of(env) == [ref], "the image is in the store under its reference", images_of(env))
    digest = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", "docker://" + ref],
                                       capture_output=True, text=True).stdout or "{}").get("Digest", "")
    t.check(digest and ("manifest " + digest) in p.stdout, "the manifest pulled is the one skopeo sees (%s)" % digest[:19],
            p.stdout)
    dref = "127.0.0.1:%d/hm/busybox@%s" % (R["A"], digest)
    p = hm(env, "image", "pull", "--tls-verify=false", "--format", "json", dref)
    evs = events(p.stdout)
    t.check(p.returncode == 0 and dref in images_of(env) and
            sum(1 for e in evs if e.get("phase") == "exists") == 2 and not any(e.get("phase") == "verified" for e in evs),
            "pull by digest: stored under REF@DIGEST; both layers already present, none downloaded", p.stdout + p.stderr)
    t.check(all(e.get("kind") == "pull" and e.get("image") for e in evs) and evs and evs[-1].get("phase") == "done",
            "--format json: one `pull` event per line, `done` last", p.stdout[-600:])
    bad = dref[:-1] + ("0" if dref[-1] != "0" else "1")
    p = hm(env, "image", "pull", "--tls-verify=false", bad)
    t.check(p.returncode == 1 and "HTTP 404" in p.stderr and bad in p.stderr,
            "control: an unknown digest fails naming the reference (HTTP 404)", p.stderr)
    p = hm(env, "image", "pull", "--tls-verify=false", "127.0.0.1:%d/hm/Busybox" % R["A"])
    t.check(p.returncode == 2 or (p.returncode == 1 and "invalid reference" in p.stderr and "lowercase" in p.stderr),
            "an invalid reference fails before any request, saying what is wrong", p.stderr)
    return store


def case_multi(R, E, mine, other, idx):
    store = os.path.join(E.work, "s-multi")
    conf = os.path.join(E.work, "registries.conf")
    env = E.env(store, HM_REGISTRIES_CONF=conf)
    ref = "127.0.0.1:%d/hm/multi:1" % R["A"]
    p = hm(env, "image", "pull", ref)
    t.check(p.returncode == 0 and ("manifest " + mine["digest"]) in p.stdout,
            "index: the linux/%s manifest is chosen (insecure = true in registries.conf)" % ARCH, p.stdout + p.stderr)
    t.check(other["digest"] not in p.stdout + p.stderr, "control: the linux/%s entry (listed first) is not" % OTHER)
    p, evs = run_pipeline(env, ref, "cat /etc/hm-arch; echo $HM_ARCH", "--pull", "never")
    t.check(p.returncode == 0 and logs(evs) == [ARCH, ARCH], "a step on it sees the %s layer and config" % ARCH,
            p.stderr + p.stdout[-800:])


def case_formats(R, E, mine):
    store = os.path.join(E.work, "s-formats")
    conf = os.path.join(E.work, "registries.conf")
    env = E.env(store, HM_REGISTRIES_CONF=conf)
    ref = "127.0.0.1:%d/hm/dlist:1" % R["A"]
    c = http.client.HTTPConnection("127.0.0.1", R["A"], timeout=10)
    c.request("GET", "/v2/hm/dlist/manifests/1", headers={"Accept": "application/vnd.docker.distribution.manifest.list.v2+json"})
    r = c.getresponse()
    lst = json.loads(r.read() or b"{}")
    c.close()
    t.check(lst.get("mediaType") == "application/vnd.docker.distribution.manifest.list.v2+json",
            "the registry serves a Docker manifest list (skopeo --format v2s2)", lst.get("mediaType"))
    p = hm(env, "image", "pull", ref)
    p2, evs = run_pipeline(env, ref, "cat /etc/hm-arch", "--pull", "never")
    t.check(p.returncode == 0 and logs(evs) == [ARCH], "Docker manifest list + schema 2 manifests: the %s image" % ARCH,
            p.stderr + p2.stdout[-500:])
    ref = "127.0.0.1:%d/hm/zstd:1" % R["A"]
    p = hm(env, "image", "pull", ref)
    p2, evs = run_pipeline(env, ref, "cat /etc/hm-zstd", "--pull", "never")
    t.check(p.returncode == 0 and logs(evs) == ["zstd"], "a zstd-compressed layer (tar+zstd) is pulled and unpacked",
            p.stderr + p2.stdout[-500:])


def case_rootless(R, E):
    import pwd
    try:
        pw = pwd.getpwnam("hmtest")
    except KeyError:
        return t.skip("rootless pull (user hmtest)", "no user hmtest (tests/run-all.sh makes it)")
    if os.getuid() != 0:
        return t.skip("rootless pull (user hmtest)", "not root")
    d = os.path.join(E.work, "rootless")
    os.makedirs(os.path.join(d, "src"))
    for x in (d, os.path.join(d, "src")):
        os.chown(x, pw.pw_uid, pw.pw_gid)
    os.chmod(E.work, 0o755)
    shutil.copy(HM, os.path.join(d, "hm"))
    os.chmod(os.path.join(d, "hm"), 0o755)
    env = dict(E.base, HM_STORE=os.path.join(d, "store"), HOME=d, XDG_RUNTIME_DIR=d)
    ref = "127.0.0.1:%d/hm/busybox:1" % R["A"]
    ir = {"graph": {"nodes": [{"env": {}, "step": {"key": "root", "cmd": "cat /etc/hm-image", "image": ref}}],
                    "node_holes": [], "edge_property": "directed", "edges": []}}
    with open(os.path.join(d, "p.json"), "w") as f:
        json.dump(ir, f)
    os.chmod(os.path.join(d, "p.json"), 0o644)
    run = lambda *a: subprocess.run(["runuser", "-u", "hmtest", "--", os.path.join(d, "hm")] + list(a), env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    p = run("image", "pull", "--tls-verify=false", ref)
    t.check(p.returncode == 0, "as user hmtest: pull into a rootless store", p.stderr)
    p = run("run", "--runner", "ns", "--format", "json", "--pull", "never", "-d", os.path.join(d, "src"),
            "-f", os.path.join(d, "p.json"))
    t.check(p.returncode == 0 and logs(events(p.stdout)) == ["busybox"], "as user hmtest: a step runs on the pulled image",
            p.stderr + p.stdout[-800:])


def case_tty(R, E):
    import pty
    store = os.path.join(E.work, "s-tty")
    ref = "127.0.0.1:%d/hm/conc:1" % R["A"]
    master, slave = pty.openpty()
    p = subprocess.Popen([HM, "image", "pull", "--tls-verify=false", ref], env=E.env(store, HM_PULL_RATE="4000000"),
                         stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    p.wait()
    os.close(master)
    text = out.decode(errors="replace")
    t.check(p.returncode == 0 and "\r\x1b[Kpulling " + ref in text and " of 3.0 MiB" in text,
            "on a terminal: a progress line redrawn in place (bytes of the image's layers)", repr(text[-600:]))
    q = hm(E.env(os.path.join(E.work, "s-tty2")), "image", "pull", "--tls-verify=false", ref)
    t.check(q.returncode == 0 and "\x1b[" not in q.stderr and "verified and unpacked" in q.stderr,
            "control: without a terminal, plain lines and no escape sequences", q.stderr)


def case_mirrors(R, E):
    store = os.path.join(E.work, "s-mirror")
    conf = os.path.join(E.work, "registries.conf")
    env = E.env(store, HM_REGISTRIES_CONF=conf)
    p = hm(env, "image", "pull", "127.0.0.1:%d/hm/busybox:1" % R["dead"])
    t.check(p.returncode == 0 and "pulled 127.0.0.1:%d/hm/busybox:1" % R["dead"] in p.stdout,
            "a registry that is down is served by its mirror (registry A) from registries.conf", p.stdout + p.stderr)
    p = hm(env, "image", "pull", "127.0.0.1:%d/hm/multi:1" % R["A"])
    t.check(p.returncode == 0, "a mirror that is down is skipped: the registry itself answers", p.stderr)
    p = hm(E.env(store), "image", "pull", "--tls-verify=false", "127.0.0.1:%d/hm/busybox:1" % R["dead"])
    t.check(p.returncode == 1 and "127.0.0.1:%d" % R["dead"] in p.stderr,
            "control: without the mirror setting the pull fails naming the registry", p.stderr)


class FakeRegistry:
    """For what a real registry does not do on demand: answer(path) -> (status, headers, body).
    body is bytes, or a function writing it to the socket (headers then give its Content-Length).
    Records (path, Authorization) of every request.  TLS with the test CA's server cert if given.
    The default answer: 401 asking for a Basic login."""

    def __init__(self, answer=None, tls=None):
        self.requests = []
        outer = self
        answer = answer or (lambda path: (401, {"WWW-Authenticate": 'Basic realm="fake"'}, b""))

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Authorization", "")))
                status, headers, body = answer(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if not callable(body):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if self.command != "HEAD" and callable(body):
                        body(self.wfile)
                    elif self.command != "HEAD":
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # hm stopped the transfer

            do_HEAD = do_GET

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        if tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(os.path.join(tls, "srv.crt"), os.path.join(tls, "srv.key"))
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        self.host = "127.0.0.1:%d" % self.port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    @property
    def auths(self):
        return [a for _, a in self.requests]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def case_mirror_login(R, E):
    """A registry's login never goes to its mirrors: a mirror is another server, with its own entry
    in the auth file (or none).  A mirror that wants a login hm has no entry for is skipped."""
    m = FakeRegistry()
    try:
        reg, mir = "127.0.0.1:%d" % R["A"], "127.0.0.1:%d" % m.port
        conf = os.path.join(E.work, "registries-login.conf")
        with open(conf, "w") as f:
            f.write('[[registry]]\nlocation = "%s"\ninsecure = true\n[[registry.mirror]]\nlocation = "%s"\ninsecure = true\n'
                    % (reg, mir))
        auth = os.path.join(E.work, "auth-login.json")
        b64 = lambda up: base64.b64encode(up.encode()).decode()  # noqa: E731
        with open(auth, "w") as f:
            json.dump({"auths": {reg: {"auth": b64("alice:s3cret-registry")}}}, f)
        p = hm(E.env(os.path.join(E.work, "s-mlogin"), HM_REGISTRIES_CONF=conf, REGISTRY_AUTH_FILE=auth),
               "image", "pull", reg + "/hm/busybox:1")
        leaked = [a for a in m.auths if a]
        t.check(p.returncode == 0 and m.auths and not leaked,
                "a mirror that asks for a login gets no credentials of its registry (requests: %d, none with "
                "Authorization); the registry itself serves the pull" % len(m.auths),
                "rc %d, mirror saw %r\n%s" % (p.returncode, m.auths, p.stderr))
        m.requests.clear()
        with open(auth, "w") as f:
            json.dump({"auths": {reg: {"auth": b64("alice:s3cret-registry")}, mir: {"auth": b64("bob:mirror-pw")}}}, f)
        p = hm(E.env(os.path.join(E.work, "s-mlogin2"), HM_REGISTRIES_CONF=conf, REGISTRY_AUTH_FILE=auth),
               "image", "pull", reg + "/hm/busybox:1")
        sent = {base64.b64decode(a.split(" ", 1)[1]).decode(errors="replace") for a in m.auths if a.startswith("Basic ")}
        t.check(p.returncode == 0 and sent == {"bob:mirror-pw"},
                "control: with an auth entry of its own, the mirror is sent that login (and only it)",
                "rc %d, mirror saw %r\n%s" % (p.returncode, sent, p.stderr))
    finally:
        m.close()


def case_hostile(R, E, pki):
    """Registries that misbehave on purpose (fakes: a real one does not do this on demand)."""
    b64 = lambda up: base64.b64encode(up.encode()).decode()  # noqa: E731
    # 1. a TLS registry whose token server is plain http: the login is not sent there
    tok = FakeRegistry()  # records; refuses everything
    reg = FakeRegistry(lambda path: (401, {"WWW-Authenticate": 'Bearer realm="http://%s/token",service="x"' % tok.host},
                                     b""), tls=pki)
    try:
        certs = os.path.join(E.work, "certs-hostile")
        os.makedirs(os.path.join(certs, reg.host))
        shutil.copy(os.path.join(pki, "ca.crt"), os.path.join(certs, reg.host, "ca.crt"))
        auth = os.path.join(E.work, "auth-hostile.json")
        with open(auth, "w") as f:
            json.dump({"auths": {reg.host: {"auth": b64("alice:s3cret-tls")}}}, f)
        p = hm(E.env(os.path.join(E.work, "s-host1"), HM_REGISTRY_CERTS_DIR=certs), "image", "pull", reg.host + "/hm/x:1")
        t.check(p.returncode == 1 and len(tok.requests) == 1 and not tok.auths[0],
                "control: anonymous, hm asks the registry's http token server (without a login)",
                "rc %d token server saw %r\n%s" % (p.returncode, tok.requests, p.stderr))
        tok.requests.clear()
        p = hm(E.env(os.path.join(E.work, "s-host2"), HM_REGISTRY_CERTS_DIR=certs, REGISTRY_AUTH_FILE=auth),
               "image", "pull", reg.host + "/hm/x:1")
        t.check(p.returncode == 1 and not tok.requests and "not HTTPS" in p.stderr and "s3cret" not in p.stderr,
                "a TLS registry naming an http:// token server: the login is not sent in clear, one clear error",
                "rc %d token server saw %r\n%s" % (p.returncode, tok.requests, p.stderr))
    finally:
        reg.close()
        tok.close()
    # 2. a registry's error text with terminal escape sequences: printed without them
    esc = FakeRegistry(lambda path: (404, {"Content-Type": "application/json"},
                                     b'{"errors":[{"code":"NAME_UNKNOWN","message":"\\u001b[2J\\u001b[31mno such repo"}]}'))
    try:
        p = hm(E.env(os.path.join(E.work, "s-host3")), "image", "pull", "--tls-verify=false", esc.host + "/hm/x:1")
        t.check(p.returncode == 1 and "no such repo" in p.stderr and "\x1b" not in p.stderr,
                "a registry's error message reaches the user without its control characters", repr(p.stderr))
    finally:
        esc.close()
    # 3. a manifest declaring a layer larger than the store takes: refused before any download
    config = json.dumps({"architecture": ARCH, "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]},
                         "config": {}}).encode()
    cdig = "sha256:" + hashlib.sha256(config).hexdigest()

    def manifest(size):
        return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig,
                                      "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + "1" * 64,
                                       "size": size}]}).encode()

    sizes = {"big": 1 << 50, "small": 10}

    def answer(path):
        for name, size in sizes.items():
            if path == "/v2/hm/%s/manifests/1" % name:
                body = manifest(size)
                return 200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                             "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()}, body
        if path.endswith("/blobs/" + cdig):
            return 200, {}, config
        if path.startswith("/v2/") and path != "/v2/":
            return 404, {}, b""
        return 200, {}, b"{}"

    big = FakeRegistry(answer)
    try:
        p = hm(E.env(os.path.join(E.work, "s-host4")), "image", "pull", "--tls-verify=false", big.host + "/hm/small:1")
        asked = [r for r, _ in big.requests if "/blobs/sha256:111" in r]
        t.check(p.returncode == 1 and asked, "control: a layer of a sane declared size is asked for", (big.requests, p.stderr))
        big.requests.clear()
        p = hm(E.env(os.path.join(E.work, "s-host5")), "image", "pull", "--tls-verify=false", big.host + "/hm/big:1")
        asked = [r for r, _ in big.requests if "/blobs/sha256:111" in r]
        t.check(p.returncode == 1 and not asked and "over the store's limit" in p.stderr,
                "a layer declared at 1 PiB is refused before its download, naming the store's limit",
                (big.requests, p.stderr))
    finally:
        big.close()


def case_pipeline(R, E):
    store = os.path.join(E.work, "s-run")
    conf = os.path.join(E.work, "registries.conf")
    env = E.env(store, HM_REGISTRIES_CONF=conf)
    ref = "127.0.0.1:%d/hm/busybox:1" % R["A"]
    p, evs = run_pipeline(env, ref, "cat /etc/hm-image", "--pull", "never")
    t.check(p.returncode == 1 and "--pull" not in p.stderr and any(
        "not in the store" in (e.get("message") or "") for e in evs if e.get("kind") == "chain_failed"),
        "control: --pull=never with the image missing fails, nothing pulled", p.stdout[-800:])
    t.check(images_of(env) == [], "control: the store is still empty")
    p, evs = run_pipeline(env, ref, "cat /etc/hm-image")
    pulls = [e for e in evs if e.get("kind") == "notice" and e.get("notice") == "pull"]
    t.check(p.returncode == 0 and logs(evs) == ["busybox"] and pulls,
            "a pipeline whose root step names the registry image runs on --runner=ns (pulled: %d notices)" % len(pulls),
            p.stderr + p.stdout[-1500:])
    p, evs = run_pipeline(env, ref, "true")
    t.check(p.returncode == 0 and not any(e.get("notice") == "pull" for e in evs),
            "second run: the image is in the store, no pull")
    p, evs = run_pipeline(env, ref, "true", "--pull", "always")
    msgs = [e.get("message", "") for e in evs if e.get("notice") == "pull"]
    t.check(p.returncode == 0 and msgs and not any(" verified" in m for m in msgs),
            "--pull=always asks the registry again but downloads no layer it has", msgs)
    left = store_state(store)["tmp"]
    t.check(left == [], "no tmp/ left in the store after the runs", left)


def case_corrupt(R, E, data, corrupt_hex):
    store = os.path.join(E.work, "s-corrupt")
    env = E.env(store)
    ref = "127.0.0.1:%d/hm/busybox:1" % R["A"]
    hm(env, "image", "pull", "--tls-verify=false", ref)
    before = store_state(store)
    blob = os.path.join(data, "docker", "registry", "v2", "blobs", "sha256", corrupt_hex[:2], corrupt_hex, "data")
    t.check(os.path.isfile(blob), "the layer blob is in the registry's storage", blob)
    with open(blob, "r+b") as f:
        b = bytearray(f.read())
        for i in range(100, min(len(b), 600)):
            b[i] ^= 0x5A
        f.seek(0)
        f.write(b)
    p = hm(env, "image", "pull", "--tls-verify=false", "127.0.0.1:%d/hm/corrupt:1" % R["A"])
    t.check(p.returncode == 1 and "digest mismatch" in p.stderr and corrupt_hex in p.stderr,
            "a corrupted blob is refused: digest mismatch naming the blob", p.stderr)
    after = store_state(store)
    t.check(after == before, "nothing of it is left in the store (layers, blobs, images, tmp unchanged)",
            json.dumps({k: sorted(set(after[k]) ^ set(before[k])) for k in after}))


def part_files(store):
    out = []
    tmp = os.path.join(store, "tmp")
    for d in os.listdir(tmp) if os.path.isdir(tmp) else []:
        if d.startswith("pull-"):
            for f in os.listdir(os.path.join(tmp, d)):
                if f.endswith(".part"):
                    try:
                        out.append(os.path.getsize(os.path.join(tmp, d, f)))
                    except OSError:
                        pass
    return out


def wait_part(store, p):
    """Bytes in the pull's .part file once it holds > 100 kB (0 if hm ended first)."""
    for _ in range(4000):
        parts = part_files(store)
        if parts and max(parts) > 100000:
            return max(parts)
        if p.poll() is not None:
            return 0
        time.sleep(0.005)
    return 0


def case_interrupted(R, E, big_hex):
    store = os.path.join(E.work, "s-int")
    env = E.env(store)
    ref = "127.0.0.1:%d/hm/big:1" % R["A"]
    hm(env, "image", "pull", "--tls-verify=false", "127.0.0.1:%d/hm/busybox:1" % R["A"])
    before = store_state(store)
    # a stop signal: hm cancels the pull itself and keeps nothing
    p = subprocess.Popen([HM, "image", "pull", "--tls-verify=false", ref], env=E.env(store, HM_PULL_RATE="400000"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = wait_part(store, p)
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=60)[1]
    t.check(seen > 0 and p.returncode == 130 and "stopped by signal" in err,
            "SIGTERM mid-download (%d bytes in): exit 130, said so" % seen, err)
    t.check(store_state(store) == before, "nothing of it is left, tmp/ included (the SIGKILL case below is the control)", store_state(store))
    # SIGKILL: nothing can clean up; what is left must be tmp/ only
    p = subprocess.Popen([HM, "image", "pull", "--tls-verify=false", ref], env=E.env(store, HM_PULL_RATE="400000"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = wait_part(store, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    t.check(seen > 0, "hm was killed mid-download (%d of %d bytes in the .part file)" % (seen, 4 << 20))
    after = store_state(store)
    t.check(after["layers"] == before["layers"] and after["blobs"] == before["blobs"] and ref not in images_of(env),
            "the killed pull left no layer, blob or image record")
    t.check(len(after["tmp"]) == 1 and after["tmp"][0].startswith("pull-"),
            "control: its tmp/pull-* dir is what remains", after["tmp"])
    q = hm(env, "image", "pull", "--tls-verify=false", ref)
    t.check(q.returncode == 0 and "1 downloaded" in q.stdout, "the pull restarted cleanly (one layer downloaded)",
            q.stdout + q.stderr)
    r, evs = run_pipeline(E.env(store), ref, "wc -c < /big/data", "--pull", "never")
    t.check(r.returncode == 0 and logs(evs) == [str(4 << 20)], "a step on it reads the whole 4 MiB layer", logs(evs))
    rp = hm(env, "reap", "--runner", "ns")
    t.check(rp.returncode == 0 and store_state(store)["tmp"] == [], "`hm reap` removes the dead pull's tmp/ dir",
            rp.stdout + rp.stderr)


def case_concurrent(R, E):
    store = os.path.join(E.work, "s-conc")
    env = E.env(store)
    hm(env, "image", "pull", "--tls-verify=false", "127.0.0.1:%d/hm/busybox:1" % R["A"])
    before = store_state(store)
    ref = "127.0.0.1:%d/hm/conc:1" % R["A"]
    e2 = E.env(store, HM_PULL_RATE="2000000")
    ps = [subprocess.Popen([HM, "image", "pull", "--tls-verify=false", "--format", "json", ref], env=e2,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in ps]
    evs = [events(o[0]) for o in outs]
    t.check(all(p.returncode == 0 for p in ps), "two concurrent pulls of one image both succeed",
            [o[1] for o in outs])
    downloads = sum(1 for ev in evs for e in ev if e.get("phase") == "verified")
    waited = sum(1 for ev in evs if any(e.get("phase") == "waiting" for e in ev))
    t.check(downloads == 1 and waited == 1, "the layer was downloaded once; the other pull waited for it "
            "(downloads %d, waited %d)" % (downloads, waited))
    after = store_state(store)
    t.check(len(set(after["layers"]) - set(before["layers"])) == 2 and after["tmp"] == [] and ref in images_of(env),
            "one new layer (+ meta) in the store, no tmp/ left", after)
    p, ev = run_pipeline(env, ref, "wc -c < /conc/data", "--pull", "never")
    t.check(p.returncode == 0 and logs(ev) == [str(2 << 20)], "the image is whole", logs(ev))
    # two names, the same layers (like alpine:3.20 and alpine:latest): the per-layer locks
    store = os.path.join(E.work, "s-conc2")
    refs = [ref, "127.0.0.1:%d/hm/conc2:1" % R["A"]]
    ps = [subprocess.Popen([HM, "image", "pull", "--tls-verify=false", "--format", "json", r],
                           env=E.env(store, HM_PULL_RATE="2000000"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True) for r in refs]
    outs = [p.communicate(timeout=120) for p in ps]
    evs = [events(o[0]) for o in outs]
    downloads = sorted(e.get("digest") for ev in evs for e in ev if e.get("phase") == "verified")
    waits = [e.get("digest") for ev in evs for e in ev if e.get("phase") == "waiting"]
    t.check(all(p.returncode == 0 for p in ps) and sorted(images_of(E.env(store))) == sorted(refs),
            "two images with the same layers pulled at once: both in the store", [o[1] for o in outs])
    t.check(len(downloads) == 2 and len(set(downloads)) == 2 and len(waits) == 1 and waits[0] in downloads,
            "each of the 2 layers was downloaded once; one pull waited on a layer lock", (downloads, waits))
    t.check(store_state(store)["tmp"] == [], "no tmp/ left")
    # the pull that downloaded both layers had both transfers in flight at once (on loopback the
    # first small layer may finish within one read burst, so this is about requests, not bytes)
    both = [ev for ev in evs if sum(1 for e in ev if e.get("phase") == "verified") == 2]
    first = next((i for i, e in enumerate(both[0]) if e.get("phase") == "verified"), 0) if both else 0
    started = {e.get("layer") for e in (both[0][:first] if both else []) if e.get("phase") == "download"}
    t.check(len(started) == 2, "layers of one image download concurrently (both transfers started before either ended)",
            both[0][:first] if both else evs)


# ------------------------------------------------------------------ big layers: unpacked off the loop

BIG_MIB = 256  # incompressible, `gzip -1`: its unpack takes seconds, the window the cases below act in


def make_big_layer(work):
    """A layer tar holding BIG_MIB MiB of random bytes, compressed by `gzip -1` into a file:
    (path, digest hex, diff_id hex, size).  Made in chunks: the test holds none of it in memory."""
    path = os.path.join(work, "big-layer.tar.gz")
    raw = hashlib.sha256()
    with open(path, "wb") as out:
        gz = subprocess.Popen(["gzip", "-1", "-c"], stdin=subprocess.PIPE, stdout=out)
        ti = tarfile.TarInfo("big/data")
        ti.size, ti.mode, ti.mtime = BIG_MIB << 20, 0o644, 0
        chunks = [ti.tobuf(format=tarfile.USTAR_FORMAT)] + [None] * BIG_MIB + [b"\0" * 1024]
        for c in chunks:
            c = c if c is not None else os.urandom(1 << 20)
            raw.update(c)
            gz.stdin.write(c)
        gz.stdin.close()
        gz.wait()
    comp = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            comp.update(b)
    return path, comp.hexdigest(), raw.hexdigest(), os.path.getsize(path)


class BigImages:
    """Images for a FakeRegistry over the big layer and small ones.  A small blob can be held
    (its answer waits for hold[name].set()) or served corrupted (other bytes of its length)."""

    def __init__(self, big):
        self.path, self.big_hex, big_diff, self.big_size = big
        self.blobs = {self.big_hex: None}  # None: the big file
        self.manifests = {}
        self.holds = {}
        self.corrupt = set()
        self.small = {}
        for name in ("base", "held", "bad", "other"):
            data, _, diff = layer_gz({"etc/hm-" + name: name.encode() + b"\n"})
            self.blobs[sha(data)] = data
            self.small[name] = ("sha256:" + sha(data), len(data), diff)
        self.bigl = ("sha256:" + self.big_hex, self.big_size, big_diff)
        self.image("bigbase", ["base"])
        self.image("other", ["other"])
        self.image("bigint", ["base", "big"])   # SIGINT while the big layer unpacks
        self.image("bigloop", ["big", "held"])  # the held layer completes while the big one unpacks
        self.image("bigbad", ["big", "bad"])    # the bad layer fails while the big one unpacks
        self.holds["held"] = threading.Event()
        self.holds["bad"] = threading.Event()
        self.corrupt.add(self.small["bad"][0][7:])

    def layer(self, name):
        return self.bigl if name == "big" else self.small[name]

    def image(self, name, layers):
        ls = [self.layer(n) for n in layers]
        cfg = json.dumps({"architecture": ARCH, "os": "linux", "config": {"Cmd": ["sh"]},
                          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for _, _, d in ls]}}).encode()
        self.blobs[sha(cfg)] = cfg
        m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + sha(cfg),
                                   "size": len(cfg)},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": dg, "size": n}
                                   for dg, n, _ in ls]}).encode()
        self.manifests["/v2/hm/%s/manifests/1" % name] = m

    def answer(self, path):
        if path in self.manifests:
            m = self.manifests[path]
            return 200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                         "Docker-Content-Digest": "sha256:" + sha(m)}, m
        hexd = path.rsplit("/blobs/sha256:", 1)[-1] if "/blobs/sha256:" in path else None
        if hexd not in self.blobs:
            return (200, {}, b"{}") if path == "/v2/" else (404, {}, b"")
        data = self.blobs[hexd]
        if data is None:
            def send_big(out):
                with open(self.path, "rb") as f:
                    for b in iter(lambda: f.read(1 << 20), b""):
                        out.write(b)
            return 200, {"Content-Length": str(self.big_size)}, send_big
        hold = next((ev for n, ev in self.holds.items() if self.small[n][0] == "sha256:" + hexd), None)
        body = bytes(b ^ 0x5A for b in data) if hexd in self.corrupt else data

        def send_small(out):
            if hold:
                hold.wait(300)
            out.write(body)
        return 200, {"Content-Length": str(len(body))}, send_small


def proc_stat(pid):
    """(comm, state, ppid) of a process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    rest = st[st.rindex(")") + 2:].split()
    return st[st.index("(") + 1:st.rindex(")")], rest[0], int(rest[1])


def unpack_children(ppid):
    """hm's unpack children (comm "hm-unpack") of process ppid."""
    kids = []
    try:
        for task in os.listdir("/proc/%d/task" % ppid):
            with open("/proc/%d/task/%s/children" % (ppid, task)) as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    stats = [(k, proc_stat(k)) for k in kids]
    return [k for k, st in stats if st and st[0] == "hm-unpack" and st[2] == ppid and st[1] != "Z"]


def alive_unpackers(pids):
    """Those of pids still running as hm-unpack (a zombie has exited)."""
    stats = [(pid, proc_stat(pid)) for pid in pids]
    return [pid for pid, st in stats if st and st[0] == "hm-unpack" and st[1] != "Z"]


def locks_held(store):
    """Store lock files another process holds (each tried with flock LOCK_NB)."""
    import fcntl
    held = []
    files = [os.path.join(store, "lock")]
    if os.path.isdir(os.path.join(store, "locks")):
        files += [os.path.join(store, "locks", f) for f in os.listdir(os.path.join(store, "locks"))]
    for f in files:
        if not os.path.exists(f):
            continue
        fd = os.open(f, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            held.append(f)
        finally:
            os.close(fd)
    return held


class Pulling:
    """hm (image pull or run) with --format json, its events read as they come."""

    def __init__(self, argv, env):
        self.p = subprocess.Popen([HM] + argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.evs, self.err = [], ""
        self.children = set()
        self.t_out = threading.Thread(target=self._read, daemon=True)
        self.t_out.start()
        self.t_err = threading.Thread(target=self._read_err, daemon=True)
        self.t_err.start()

    def _read(self):
        for line in self.p.stdout:
            try:
                self.evs.append(json.loads(line))
            except ValueError:
                pass

    def _read_err(self):
        self.err = self.p.stderr.read()

    def phase(self, phase, digest):
        """Index of the first event of this phase about this blob (pull events or pull notices), or None."""
        for i, e in enumerate(self.evs):
            if e.get("phase") == phase and e.get("digest") == digest:
                return i
            if e.get("notice") == "pull" and digest in (e.get("message") or "") and \
                    (e.get("message") or "").endswith(" " + phase):
                return i
        return None

    def wait(self, cond, guard=300):
        """Poll until cond() (True) or hm ended or the hang guard passed (False); no timing is asserted."""
        end = time.monotonic() + guard
        while time.monotonic() < end:
            if cond():
                return True
            if self.p.poll() is not None:
                return bool(cond())
            self.children.update(unpack_children(self.p.pid))
            time.sleep(0.005)
        return False

    def wait_unpacking(self, store):
        """Until the big layer's download is complete and its unpack runs: its tmp/layer-* dir exists.
        Then its unpack child, when hm starts one: it follows the dir within microseconds, with an
        `unpacking` event; a hm without one (the old one unpacked on its loop) is given 0.05 s, well
        within its unpack of this layer."""
        tmp = os.path.join(store, "tmp")
        seen = self.wait(lambda: any(d.startswith("layer-") for d in (os.listdir(tmp) if os.path.isdir(tmp) else [])))
        kids, t0 = [], time.monotonic()
        while seen and self.p.poll() is None:
            kids = unpack_children(self.p.pid)
            announced = any(e.get("phase") == "unpacking" or (e.get("message") or "").endswith(" unpacking")
                            for e in list(self.evs))
            if kids or time.monotonic() - t0 > (5 if announced else 0.05):
                break
            time.sleep(0.002)
        self.children.update(kids)
        return seen, kids

    def finish(self, timeout=300):
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.t_out.join(10)
        self.t_err.join(10)
        return self.p.returncode


def big_env(E, store, fake):
    conf = os.path.join(E.work, "registries-big.conf")
    with open(conf, "w") as f:
        f.write('[[registry]]\nlocation = "%s"\ninsecure = true\n' % fake.host)
    return E.env(store, HM_REGISTRIES_CONF=conf)


def case_big_sigint(E, fake, imgs):
    """SIGINT once the big layer is downloaded and its unpack runs: exit 130 at once, a report of what
    was kept that is true, and nothing left: no unpack process, no tmp/ dir, no lock held."""
    store = os.path.join(E.work, "s-bigint")
    env = big_env(E, store, fake)
    ref = fake.host + "/hm/bigint:1"
    p = hm(env, "image", "pull", fake.host + "/hm/bigbase:1")
    t.check(p.returncode == 0, "big layer: the image's small base layer is in the store first", p.stderr)
    before = store_state(store)
    run = Pulling(["image", "pull", "--format", "json", ref], env)
    seen, kids = run.wait_unpacking(store)
    t0 = time.monotonic()
    run.p.send_signal(signal.SIGINT)
    rc = run.finish()
    took = time.monotonic() - t0
    t.diag("SIGINT to exit during the unpack of a %d MiB layer: %.2f s (unpack child seen: %s)" % (BIG_MIB, took, bool(kids)))
    stored = ref in images_of(env)
    err = run.err.strip()
    t.check(seen and rc == 130, "SIGINT during the big layer's unpack: exit 130", "seen %s rc %s\n%s" % (seen, rc, err))
    t.check(not stored and "nothing kept" not in err and "was not stored" in err and "kept: 1 of 2 layers" in err and
            imgs.bigl[0][:19] in err and ref in err and len(err.splitlines()) == 1,
            "its one-line report is true: not stored, the base layer kept, the big layer named as not kept",
            "image stored: %s\n%s" % (stored, err))
    left = alive_unpackers(run.children)
    after = store_state(store)
    t.check(not left and after["tmp"] == [] and after["layers"] == before["layers"],
            "nothing is left: no unpack process, no tmp/ dir, no layer", (left, after))
    t.check(not locks_held(store), "no store or layer lock is held", locks_held(store))
    p = hm(env, "image", "pull", ref)
    t.check(p.returncode == 0 and ref in images_of(env) and "1 downloaded" in p.stdout,
            "a second pull of the image succeeds (downloads the big layer again)", p.stdout + p.stderr)
    shutil.rmtree(store, ignore_errors=True)


def case_big_loop(E, fake, imgs):
    """While the big layer unpacks, the loop runs: the second layer's transfer (held by the registry
    until the unpack has begun) completes before the big layer's unpack ends.  The unpack child is
    stopped (SIGSTOP) until then, so the order does not depend on speed."""
    store = os.path.join(E.work, "s-bigloop")
    env = big_env(E, store, fake)
    ref = fake.host + "/hm/bigloop:1"
    run = Pulling(["image", "pull", "--format", "json", ref], env)
    stopped = []
    try:
        seen, kids = run.wait_unpacking(store)
        for k in kids:
            os.kill(k, signal.SIGSTOP)
            stopped.append(k)
        imgs.holds["held"].set()
        held, big = imgs.small["held"][0], imgs.bigl[0]
        run.wait(lambda: run.phase("verified", held) is not None or run.phase("unpacked", big) is not None)
    finally:
        imgs.holds["held"].set()
        for k in stopped:
            os.kill(k, signal.SIGCONT)
    rc = run.finish()
    i_held, i_big = run.phase("verified", held), run.phase("unpacked", big)
    t.check(seen and i_held is not None and i_big is not None and i_held < i_big,
            "the loop runs while a layer unpacks: another layer's download completed before the big layer's "
            "unpack ended (events %s < %s)" % (i_held, i_big), run.evs[-8:])
    t.check(run.phase("unpacking", big) is not None and (run.phase("unpacking", big) or 0) < (i_held or 0),
            "an `unpacking` event says the unpack began", [e.get("phase") for e in run.evs])
    t.check(rc == 0 and ref in images_of(env) and store_state(store)["tmp"] == [] and not alive_unpackers(run.children),
            "the pull then completes: image stored, no tmp/ dir or unpack process left", run.err)
    shutil.rmtree(store, ignore_errors=True)


def case_big_error(E, fake, imgs):
    """Another layer fails (digest mismatch) while the big one unpacks: its child is killed and reaped,
    its dir removed; one error line naming the reference and the failing layer."""
    store = os.path.join(E.work, "s-bigbad")
    env = big_env(E, store, fake)
    ref = fake.host + "/hm/bigbad:1"
    run = Pulling(["image", "pull", "--format", "json", ref], env)
    try:
        seen, kids = run.wait_unpacking(store)
        imgs.holds["bad"].set()
    finally:
        imgs.holds["bad"].set()
    rc = run.finish()
    err = run.err.strip()
    t.check(seen and rc == 1 and "digest mismatch" in err and ref in err and imgs.small["bad"][0] in err and
            len(err.splitlines()) == 1, "a layer failing while another unpacks: one error line naming the reference "
            "and the layer", err)
    t.check(not alive_unpackers(run.children) and store_state(store)["tmp"] == [] and not locks_held(store) and
            ref not in images_of(env), "the unpacking layer's process and dir are gone, no lock held", run.children)
    shutil.rmtree(store, ignore_errors=True)


def case_big_run(E, fake, imgs):
    """The same SIGINT in `hm run`, whose step pulls the image: exit 130, the pull notice says what was
    kept, nothing is left."""
    store = os.path.join(E.work, "s-bigrun")
    env = big_env(E, store, fake)
    ref = fake.host + "/hm/bigint:1"
    d = tempfile.mkdtemp(prefix="hm-reg-src-", dir=E.work)
    f = os.path.join(d, "p.json")
    with open(f, "w") as fh:
        json.dump({"graph": {"nodes": [{"env": {}, "step": {"key": "root", "cmd": "true", "image": ref}}],
                             "node_holes": [], "edge_property": "directed", "edges": []}}, fh)
    os.mkdir(os.path.join(d, "src"))
    run = Pulling(["run", "--runner", "ns", "--format", "json", "-d", os.path.join(d, "src"), "-f", f], env)
    seen, kids = run.wait_unpacking(store)
    t0 = time.monotonic()
    run.p.send_signal(signal.SIGINT)
    rc = run.finish()
    t.diag("hm run: SIGINT to exit during the unpack: %.2f s" % (time.monotonic() - t0))
    notes = [e.get("message", "") for e in run.evs if e.get("notice") == "pull" and "stopped" in e.get("message", "")]
    t.check(seen and rc == 130 and notes and "was not stored" in notes[0] and imgs.bigl[0][:19] in notes[0],
            "hm run: SIGINT while its step's image unpacks: exit 130, a pull notice says what was not kept",
            (rc, notes, run.err[-500:]))
    t.check(not alive_unpackers(run.children) and store_state(store)["tmp"] == [] and not locks_held(store),
            "hm run: no unpack process, tmp/ dir or lock left", (run.children, store_state(store)["tmp"]))
    shutil.rmtree(store, ignore_errors=True)


def case_store_lock(E, fake, imgs):
    """The store's lock (<store>/lock, oci/store.c) held by another process at the commit: the pull
    says it waits, goes on when the lock is free, and a SIGINT while it waits ends it at once."""
    import fcntl
    store = os.path.join(E.work, "s-lock")
    env = big_env(E, store, fake)
    p = hm(env, "image", "pull", fake.host + "/hm/bigbase:1")
    t.check(p.returncode == 0, "store lock: the store exists", p.stderr)
    ref = fake.host + "/hm/other:1"
    other = imgs.small["other"][0]
    fd = os.open(os.path.join(store, "lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        run = Pulling(["image", "pull", "--format", "json", ref], env)
        said = run.wait(lambda: any(e.get("phase") == "store-locked" for e in run.evs), guard=20)
        t.check(said and run.p.poll() is None, "with the store lock held elsewhere, the pull says it waits for it",
                [e.get("phase") for e in run.evs])
        fcntl.flock(fd, fcntl.LOCK_UN)
        rc = run.finish()
        t.check(rc == 0 and ref in images_of(env), "once the lock is free the pull completes", run.err)
        p = hm(env, "image", "rm", ref)
        fcntl.flock(fd, fcntl.LOCK_EX)
        run = Pulling(["image", "pull", "--format", "json", ref], env)
        run.wait(lambda: run.phase("unpacked", other) is not None)
        run.wait(lambda: any(e.get("phase") == "store-locked" for e in run.evs), guard=5)
        t0 = time.monotonic()
        run.p.send_signal(signal.SIGINT)
        ended = run.wait(lambda: run.p.poll() is not None, guard=30)
        t.diag("SIGINT to exit while the store lock is held: %s" % ("%.2f s" % (time.monotonic() - t0) if ended else "did not end"))
        t.check(ended, "SIGINT while the pull waits for the store lock ends it while the lock is still held")
    finally:
        os.close(fd)  # releases it
    rc = run.finish()
    err = run.err.strip()
    t.check(rc == 130 and "was not stored" in err and "nothing kept" not in err and other[:19] in err and
            ref not in images_of(env), "exit 130; the report says the image was not stored and names its layer", err)
    t.check(store_state(store)["tmp"] == [] and not locks_held(store), "no tmp/ dir or lock left", store_state(store))
    shutil.rmtree(store, ignore_errors=True)


def case_big(E):
    """The cases around a big layer (unpack off the loop), on a FakeRegistry serving it from a file."""
    if shutil.which("gzip") is None:
        return t.check(False, "gzip is installed")
    big = make_big_layer(E.work)
    imgs = BigImages(big)
    fake = FakeRegistry(imgs.answer)
    try:
        case_store_lock(E, fake, imgs)
        case_big_sigint(E, fake, imgs)
        case_big_loop(E, fake, imgs)
        case_big_error(E, fake, imgs)
        case_big_run(E, fake, imgs)
    finally:
        fake.close()
        os.unlink(big[0])


def write_auth(path, host, password, docker_style=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    key = ("https://%s/v1/" % host) if docker_style else host
    with open(path, "w") as f:
        json.dump({"auths": {key: {"auth": base64.b64encode(("%s:%s" % (USER, password)).encode()).decode()}}}, f)


def case_tls_basic(R, E, pki):
    store = os.path.join(E.work, "s-tls")
    host = "127.0.0.1:%d" % R["B"]
    ref = host + "/hm/busybox:1"
    certs = os.path.join(E.work, "certs.d")
    os.makedirs(os.path.join(certs, host))
    shutil.copy(os.path.join(pki, "ca.crt"), os.path.join(certs, host, "ca.crt"))
    good, bad = os.path.join(E.work, "auth-good.json"), os.path.join(E.work, "auth-bad.json")
    write_auth(good, host, PASSWORD)
    write_auth(bad, host, "wrong-password")
    p = hm(E.env(store, REGISTRY_AUTH_FILE=good), "image", "pull", ref)
    t.check(p.returncode == 1 and "TLS failed" in p.stderr and "certs.d" in p.stderr,
            "control: without the test CA the TLS registry is not trusted", p.stderr)
    p = hm(E.env(store, HM_REGISTRY_CERTS_DIR=certs), "image", "pull", ref)
    t.check(p.returncode == 1 and "requires a login" in p.stderr, "with the CA but no credentials: a login is asked for",
            p.stderr)
    p = hm(E.env(store, HM_REGISTRY_CERTS_DIR=certs, REGISTRY_AUTH_FILE=bad), "image", "pull", ref)
    t.check(p.returncode == 1 and "authentication failed for user 'hm'" in p.stderr and bad in p.stderr,
            "a wrong password fails clearly (user and credentials file named)", p.stderr)
    t.check("wrong-password" not in p.stderr + p.stdout, "the password is not in the output")
    p = hm(E.env(store, HM_REGISTRY_CERTS_DIR=certs, REGISTRY_AUTH_FILE=good), "image", "pull", ref)
    t.check(p.returncode == 0 and images_of(E.env(store)) == [ref], "TLS (CA from certs.d) + basic auth: pulled",
            p.stdout + p.stderr)
    t.check(PASSWORD not in p.stderr + p.stdout, "the password is not in the output")
    xdg = E.base["XDG_RUNTIME_DIR"]
    write_auth(os.path.join(xdg, "containers", "auth.json"), host, PASSWORD)
    p = hm(E.env(store, HM_REGISTRY_CERTS_DIR=certs), "image", "pull", ref)
    os.unlink(os.path.join(xdg, "containers", "auth.json"))
    t.check(p.returncode == 0, "credentials from ${XDG_RUNTIME_DIR}/containers/auth.json", p.stderr)


def case_token(R, E, ts):
    store = os.path.join(E.work, "s-token")
    conf = os.path.join(E.work, "registries.conf")
    host = "127.0.0.1:%d" % R["C"]
    ref = host + "/hm/busybox:1"
    p = hm(E.env(store, HM_REGISTRIES_CONF=conf), "image", "pull", ref)
    t.check(p.returncode == 1 and "refused anonymous access" in p.stderr,
            "token auth, no credentials: the token server's refusal is reported", p.stderr)
    docker_cfg = os.path.join(E.base["HOME"], ".docker", "config.json")
    write_auth(docker_cfg, host, "wrong-password", docker_style=True)
    p = hm(E.env(store, HM_REGISTRIES_CONF=conf), "image", "pull", ref)
    t.check(p.returncode == 1 and "authentication failed for user 'hm'" in p.stderr and "wrong-password" not in p.stderr,
            "token auth, wrong password: fails clearly", p.stderr)
    write_auth(docker_cfg, host, PASSWORD, docker_style=True)
    n0 = len(ts.requests)
    p = hm(E.env(store, HM_REGISTRIES_CONF=conf), "image", "pull", ref)
    scopes = [q.get("scope") for q, _ in ts.requests[n0:]]
    t.check(p.returncode == 0 and images_of(E.env(store)) == [ref],
            "token auth (Bearer, credentials from ~/.docker/config.json): pulled", p.stdout + p.stderr)
    t.check(scopes and all(s == ["repository:hm/busybox:pull"] for s in scopes),
            "the token was asked for the pull scope of the repository (%d token requests)" % len(scopes), scopes)
    os.unlink(docker_cfg)
    c = http.client.HTTPConnection("127.0.0.1", R["C"], timeout=10)
    c.request("GET", "/v2/hm/busybox/manifests/1", headers={"Authorization": "Bearer " + b64url(b'{"alg":"none"}') + ".e30."})
    st = c.getresponse().status
    c.close()
    t.check(st == 401, "control: registry C checks tokens (an unsigned one gets HTTP %d)" % st)


def main():
    for tool in ("docker-registry", "skopeo", "openssl", "htpasswd", "zstd"):
        if not shutil.which(tool):
            t.check(False, "%s is installed (contrib/install-deps.sh)" % tool)
            t.summary()
            return 1
    if not os.path.exists(HM):
        t.check(False, "hm binary at %s" % HM)
        t.summary()
        return 1
    work = tempfile.mkdtemp(prefix="hm-test-registry-")
    procs, ts = [], None
    try:
        E = Env(work)
        oci, layout, mine, other, idx, corrupt_hex, big_raw = build_layouts(work)
        big_hex = big_raw
        pki, x5c = make_ca(work)
        data = os.path.join(work, "data")
        R = {k: free_port() for k in ("A", "B", "C", "dead", "dead2")}
        with open(os.path.join(work, "htpasswd"), "w") as f:
            f.write(subprocess.run(["htpasswd", "-nbB", USER, PASSWORD], capture_output=True, text=True,
                                   check=True).stdout.strip() + "\n")
        with open(os.path.join(work, "registries.conf"), "w") as f:
            f.write('# written by test_registry.py\nunqualified-search-registries = ["docker.io"]\n\n'
                    '[[registry]]\nlocation = "127.0.0.1:%d"\ninsecure = true\n'
                    '[[registry.mirror]]\nlocation = "127.0.0.1:%d"  # down: skipped\n\n'
                    '[[registry]]\nlocation = "127.0.0.1:%d"\ninsecure = true\n\n'
                    '[[registry]]\nlocation = "127.0.0.1:%d"  # down: served by its mirror\ninsecure = true\n'
                    '[[registry.mirror]]\nlocation = "127.0.0.1:%d"\ninsecure = true  # its own, not the registry\'s\n'
                    % (R["A"], R["dead2"], R["C"], R["dead"], R["A"]))
        pa, up = start_registry(work, "reg-a", R["A"], data, "")
        procs.append(pa)
        t.check(up, "registry A (plain HTTP) answers on 127.0.0.1:%d" % R["A"])
        copies = [("oci:%s:test" % oci, "hm/busybox:1", [])] + \
                 [("oci:%s:%s" % (layout, n), "hm/%s:1" % n, ["--all"] if n == "multi" else [])
                  for n in ("multi", "big", "conc", "corrupt", "zstd")] + \
                 [("oci:%s:multi" % layout, "hm/dlist:1", ["--all", "--format", "v2s2"]),
                  ("oci:%s:conc" % layout, "hm/conc2:1", [])]
        for src, dst, extra in copies:
            c = subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false"] + extra +
                               [src, "docker://127.0.0.1:%d/%s" % (R["A"], dst)], capture_output=True, text=True)
            t.check(c.returncode == 0, "skopeo copy %s -> registry A %s" % (src.split(":")[-1], dst), c.stderr)
        tls = ("  tls:\n    certificate: %s/srv.crt\n    key: %s/srv.key\nauth:\n  htpasswd:\n    realm: hm-test\n"
               "    path: %s/htpasswd\n" % (pki, pki, work))
        pb, up = start_registry(work, "reg-b", R["B"], data, tls)
        procs.append(pb)
        t.check(up, "registry B (TLS + htpasswd) answers on 127.0.0.1:%d" % R["B"])
        ts = TokenServer(pki, x5c, "hm-registry", "hm-test-issuer")
        tok = ("auth:\n  token:\n    realm: http://127.0.0.1:%d/token\n    service: hm-registry\n"
               "    issuer: hm-test-issuer\n    rootcertbundle: %s/tok.crt\n" % (ts.port, pki))
        pc, up = start_registry(work, "reg-c", R["C"], data, tok)
        procs.append(pc)
        t.check(up, "registry C (token auth) answers on 127.0.0.1:%d" % R["C"])

        case_plain(R, E)
        case_multi(R, E, mine, other, idx)
        case_mirrors(R, E)
        case_mirror_login(R, E)
        case_hostile(R, E, pki)
        case_formats(R, E, mine)
        case_rootless(R, E)
        case_tty(R, E)
        case_pipeline(R, E)
        case_tls_basic(R, E, pki)
        case_token(R, E, ts)
        case_concurrent(R, E)
        case_interrupted(R, E, big_hex)
        case_corrupt(R, E, data, corrupt_hex)
        case_big(E)
    finally:
        if ts:
            ts.stop()
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        if t.failed:
            for n in ("reg-a", "reg-b", "reg-c"):
                lp = os.path.join(work, n, "log")
                if os.path.exists(lp):
                    with open(lp) as f:
                        t.diag("%s log tail:\n%s" % (n, f.read()[-1500:]))
        shutil.rmtree(work, ignore_errors=True)
    alive = [p.pid for p in procs if p.poll() is None]
    t.check(not alive, "every registry this test started has exited", alive)
    return 0 if t.summary() else 1


if __name__ == "__main__":
    sys.exit(main())
