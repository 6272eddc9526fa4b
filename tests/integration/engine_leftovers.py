#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""engine_leftovers.py SOCK: print every container and image labelled hm.run on that engine
(cache images included) and exit 1 if there is any, 2 if the engine cannot be asked."""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Engine  # noqa: E402


def main():
    if len(sys.argv) != 2:
        print("usage: engine_leftovers.py SOCK", file=sys.stderr)
        return 2
    eng = Engine("engine", sys.argv[1])
    try:
        found = ["container %s %s (%s)" % (c["Id"][:12], c.get("Image"), c.get("State")) for c in eng.containers()]
        found += ["image %s %s" % (i["Id"][:19], i.get("RepoTags")) for i in eng.images()]
    except Exception as e:
        print("cannot list containers/images on %s: %s" % (sys.argv[1], e), file=sys.stderr)
        return 2
    for f in found:
        print(f)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
