"""Demo stand-ins for the services that cannot run here: authentik, Hetzner Cloud DNS, Nomad, Consul and
Vault EMULATORS (tests/emulators: real state, requests checked against the vendor specs), all on 127.0.0.1.
Usage: python demo/emulators.py <file to write their addresses to>   (runs until killed)"""

import json
import pathlib
import sys
import time

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent.parent), str(pathlib.Path(__file__).resolve().parent.parent / "_utils")]

from tests.support.stack import ext_pillar_config, start_backends, start_secret_stores  # noqa: E402

if __name__ == "__main__":
    backends = start_backends()
    vault, kv = start_secret_stores()
    described = {name: {"url": e.url, "port": e.port} for name, e in backends.items()}
    described["ext_pillar"] = ext_pillar_config(vault, kv)
    pathlib.Path(sys.argv[1]).write_text(json.dumps(described))
    while True:
        time.sleep(3600)
