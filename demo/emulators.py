"""Demo stand-ins for the services that cannot run here: authentik, Hetzner Cloud DNS, Nomad, Consul and
Vault EMULATORS (devstack/emulators: real state, requests checked against the vendor specs), all on 127.0.0.1.
Usage: python demo/emulators.py <file to write their addresses to>   (runs until killed)

``stats`` in that file is a port answering ``GET /`` with each emulator's request counts
(``{name: {"requests", "writes"}}``): what the benchmarks count (bench/scale.py)."""

import json
import pathlib
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parent.parent), str(pathlib.Path(__file__).resolve().parent.parent / "_utils")]

from devstack.http import serve  # noqa: E402
from devstack.stack import ext_pillar_config, start_backends, start_secret_stores  # noqa: E402


def stats_server(emulators):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = json.dumps({name: {"requests": len(e.requests), "writes": len(e.writes)} for name, e in emulators.items()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serve(server)
    return server.server_address[1]


if __name__ == "__main__":
    backends = start_backends()
    vault, kv = start_secret_stores()
    described = {name: {"url": e.url, "port": e.port} for name, e in backends.items()}
    described["ext_pillar"] = ext_pillar_config(vault, kv)
    described["stats"] = stats_server({**backends, "vault": vault, "consul": kv})
    pathlib.Path(sys.argv[1]).write_text(json.dumps(described))
    while True:
        time.sleep(3600)
