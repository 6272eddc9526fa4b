# SPDX-License-Identifier: Apache-2.0
"""A fake Docker engine on a Unix socket, for the faults a real engine cannot produce on demand.

Just enough of the Engine API (v1.41) for one engine-runner step: ping, image inspect,
container create, archive upload, attach, start, wait, commit, kill, remove, image remove and
the label lists of hm's quick reap.  A container "runs" from start for RUN_SECONDS (or the
run_seconds given to FakeEngine), or until a kill: its attach stream carries one stdout frame
and ends, its wait then answers StatusCode 0 (137 after a kill).

One fault, at the first request of one kind (FakeEngine(sock, fault=("create", "hang"))):
  hang     the engine is wedged from that request on: every request, this one and all later
           ones (pings too), is read and never answered (a deadlocked or stopped daemon)
  reset    the connection is closed without an answer, the request body left unread; for
           every request of that kind (libcurl retries a request once on a fresh connection
           when a reused one dies without an answer)
  500      HTTP 500 with {"message": "fake engine: KIND failed on purpose"} (or the fault's third
           element: ("upload", "500", "write /x: no space left on device"))
  badjson  a 2xx whose JSON body is cut short where hm reads the answer's JSON (create: the
           container is made all the same, wait);
           a 500 whose body is not JSON where it does not (upload, attach, start, commit,
           remove); for ping a reply that is not HTTP at all
Kinds: ping, inspect, create, upload, attach, start, wait, commit, remove, kill, rmi, list, logs.

Every request is logged as "METHOD PATH" in .requests (in arrival order, before any answer), and
.containers holds the containers created and not removed.  Standard library only.
"""

import http.server
import json
import os
import socket
import socketserver
import struct
import threading
import time
import uuid

RUN_SECONDS = 0.2
KINDS = ("ping", "inspect", "create", "upload", "attach", "start", "wait", "commit", "remove", "kill", "rmi",
         "list", "logs")
MODES = ("hang", "reset", "500", "badjson")


def request_kind(method, path):
    p = path.split("?", 1)[0]
    if p.startswith("/v1."):
        p = p[p.index("/", 1):]
    parts = [x for x in p.split("/") if x]
    if p in ("/_ping", "/version"):
        return "ping"
    if p in ("/containers/json", "/images/json"):
        return "list"
    if p == "/containers/create":
        return "create"
    if p == "/commit":
        return "commit"
    if parts[:1] == ["images"]:
        return "rmi" if method == "DELETE" else "inspect"
    if parts[:1] == ["containers"] and len(parts) >= 2:
        if method == "DELETE":
            return "remove"
        return {"archive": "upload", "attach": "attach", "start": "start", "wait": "wait", "kill": "kill",
                "logs": "logs"}.get(parts[2] if len(parts) > 2 else "", "other")
    return "other"


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that hung up (hm timed out, reset faults): nothing to report


class FakeEngine:
    def __init__(self, sock_path, fault=None, run_seconds=RUN_SECONDS):
        self.sock_path = sock_path
        self.fault = fault
        self.run_seconds = run_seconds
        self.fault_hit = False
        self.wedged = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests = []
        self.containers = {}  # id -> {"name", "started": Event}
        self.created = []     # ids of every container created
        self.server = None
        self.thread = None

    # -- lifecycle

    def start(self):
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)
        engine = self

        class Handler(_Handler):
            fake = engine

        self.server = _Server(self.sock_path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        try:
            os.unlink(self.sock_path)
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- helpers for the handler

    def log(self, line):
        with self.lock:
            self.requests.append(line)

    def take_fault(self, kind):
        """The mode to apply to this request, or None."""
        if self.wedged.is_set():
            return "hang"
        with self.lock:
            if self.fault and self.fault[0] == kind and (not self.fault_hit or self.fault[1] == "reset"):
                self.fault_hit = True
                if self.fault[1] == "hang":
                    self.wedged.set()
                return self.fault[1]
        return None

    def find(self, ref):
        with self.lock:
            for cid, c in self.containers.items():
                if ref in (cid, c["name"]):
                    return cid, c
        return None, None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake = None  # set by FakeEngine.start

    def log_message(self, fmt, *args):  # no stderr noise
        pass

    def address_string(self):
        return "unix"

    # -- answers

    def _send(self, status, body=b"", ctype="application/json", extra=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Api-Version", "1.41")
        self.send_header("Server", "Docker/20.10.99-fake (linux)")
        self.send_header("Content-Type", ctype)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _hang(self):
        self.fake.stopping.wait()
        self.close_connection = True

    def _reset(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self):
        kind = request_kind(self.command, self.path)
        self.fake.log("%s %s" % (self.command, self.path))
        mode = self.fake.take_fault(kind)
        if mode == "hang":
            return self._hang()
        if mode == "reset":
            return self._reset()
        body = self._body()
        if mode == "500":
            msg = self.fake.fault[2] if len(self.fake.fault) > 2 else "fake engine: %s failed on purpose" % kind
            return self._send(500, {"message": msg})
        if mode == "badjson":
            if kind == "ping":
                self.close_connection = True
                self.wfile.write(b"this is not HTTP\r\n\r\n")
                return None
            if kind == "create":
                self._make_container()  # a 201 means it exists, whatever the body says
                return self._send(201, b'{"Id": "0123')
            if kind == "wait":
                return self._send(200, b'{"Id": "0123')
            return self._send(500, b"<html>fake engine: %s broke</html>" % kind.encode(), ctype="text/html")
        return getattr(self, "_ok_" + kind, self._ok_other)(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = lambda self: self._handle()

    # -- normal behaviour per kind

    def _ok_ping(self, body):
        if self.path.startswith("/version") or "/version" in self.path:
            return self._send(200, {"Version": "20.10.99-fake", "ApiVersion": "1.41"})
        return self._send(200, b"OK", ctype="text/plain")

    def _ok_list(self, body):
        return self._send(200, [])

    def _ok_inspect(self, body):
        return self._send(200, {"Id": "sha256:" + "ab" * 32, "Config": {"Env": ["PATH=/bin"]}})

    def _make_container(self):
        name = ""
        if "name=" in self.path:
            name = self.path.split("name=", 1)[1].split("&", 1)[0]
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        with self.fake.lock:
            self.fake.containers[cid] = {"name": name, "started": threading.Event(), "killed": threading.Event()}
            self.fake.created.append(cid)
        return cid

    def _ok_create(self, body):
        return self._send(201, {"Id": self._make_container(), "Warnings": []})

    def _cid(self):
        return self.path.split("?", 1)[0].split("/containers/", 1)[1].split("/", 1)[0]

    def _ok_upload(self, body):
        cid, _ = self.fake.find(self._cid())
        return self._send(200 if cid else 404, b"" if cid else {"message": "no such container"})

    def _ok_start(self, body):
        cid, c = self.fake.find(self._cid())
        if not cid:
            return self._send(404, {"message": "no such container"})
        c["t_start"] = time.monotonic()
        c["started"].set()
        return self._send(204)

    def _ok_attach(self, body):
        cid, c = self.fake.find(self._cid())
        if not cid:
            return self._send(404, {"message": "no such container"})
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.raw-stream")
        self.end_headers()
        self.wfile.flush()
        if not c["started"].wait(30):
            return None
        line = b"hello from the fake engine\n"
        self.wfile.write(struct.pack(">BxxxL", 1, len(line)) + line)
        self.wfile.flush()
        self._run(c)
        return None

    def _run(self, c):
        """The container runs: until run_seconds passed since start, a kill, or the fake stops."""
        left = c["t_start"] + self.fake.run_seconds - time.monotonic()
        while left > 0 and not c["killed"].is_set() and not self.fake.stopping.is_set():
            c["killed"].wait(min(left, 0.1))
            left = c["t_start"] + self.fake.run_seconds - time.monotonic()

    def _ok_wait(self, body):
        cid, c = self.fake.find(self._cid())
        if not cid:
            return self._send(404, {"message": "no such container"})
        if c["started"].wait(30):
            self._run(c)
        return self._send(200, {"StatusCode": 137 if c["killed"].is_set() else 0, "Error": None})

    def _ok_logs(self, body):
        line = b"hello from the fake engine\n"
        return self._send(200, struct.pack(">BxxxL", 1, len(line)) + line, ctype="application/vnd.docker.raw-stream")

    def _ok_kill(self, body):
        cid, c = self.fake.find(self._cid())
        if not cid:
            return self._send(404, {"message": "no such container"})
        c["killed"].set()
        return self._send(204)

    def _ok_commit(self, body):
        return self._send(201, {"Id": "sha256:" + uuid.uuid4().hex * 2})

    def _ok_remove(self, body):
        cid, _ = self.fake.find(self._cid())
        if not cid:
            return self._send(404, {"message": "no such container"})
        with self.fake.lock:
            del self.fake.containers[cid]
        return self._send(204)

    def _ok_rmi(self, body):
        return self._send(200, [])

    def _ok_other(self, body):
        return self._send(404, {"message": "fake engine: %s %s not implemented" % (self.command, self.path)})
