"""Demo backends: one local HTTP server per name, each answering JSON that names itself.
Usage: python demo/backends.py name=port [name=port ...]  (runs until killed)"""

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from devstack.caddy import Backend

if __name__ == "__main__":
    servers = []
    for pair in sys.argv[1:]:
        name, port = pair.split("=")
        servers.append(Backend(name, port=int(port)).start())
    while True:
        time.sleep(3600)
