# SPDX-License-Identifier: Apache-2.0
"""A real registry (Debian's docker-registry) on loopback for the pull tests."""

import http.client
import os
import ssl
import subprocess
import time


def start_registry(work, name, port, data, extra=""):
    """docker-registry serving data on 127.0.0.1:port, its config and log in work/name; extra is
    appended to its http: section (tls:, auth: ...).  Returns (process, answers /v2/ with 200 or
    401 within about 10 s); the process leads a session of its own."""
    d = os.path.join(work, name)
    os.makedirs(d)
    cfg = os.path.join(d, "config.yml")
    with open(cfg, "w") as f:
        f.write("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
                "    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%d\n%s" % (data, port, extra))
    log = open(os.path.join(d, "log"), "w")
    p = subprocess.Popen(["docker-registry", "serve", cfg], stdout=log, stderr=log, start_new_session=True)
    log.close()
    ctx = ssl._create_unverified_context()
    for _ in range(200):
        try:
            c = (http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=ctx) if "tls:" in extra
                 else http.client.HTTPConnection("127.0.0.1", port, timeout=2))
            c.request("GET", "/v2/")
            st = c.getresponse().status
            c.close()
            if st in (200, 401):
                return p, True
        except OSError:
            pass
        if p.poll() is not None:
            break
        time.sleep(0.05)
    return p, False
