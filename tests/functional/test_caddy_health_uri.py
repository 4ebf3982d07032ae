"""``health.uri`` is sent as written: Caddy's active health checker only ``url.Parse``s it
(``ActiveHealthChecks.Provision`` and ``doActiveHealthCheck`` in caddy's
modules/caddyhttp/reverseproxy/healthchecks.go; the replacer there serves the body and headers only), so
a placeholder in it is never expanded, and hecate must not escape it either (an escaped ``\\{`` would be
sent as a backslash). Proved on the real binary (issue 15)."""

import copy
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

URI = "/health{env.HOME}?probe={env.HOME}"


class Recording:
    """A loopback backend answering 200 to everything and keeping every request path it got."""

    def __init__(self):
        paths = self.paths = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_placeholder_in_health_uri_reaches_the_backend_as_written(caddy, make_loaders, local_tree):
    backend = Recording()
    try:
        tree = copy.deepcopy(local_tree)
        tree["reverse_proxy"]["caddy"]["routes"] = [
            {"domain": "health.example.org", "backend": f"127.0.0.1:{backend.port}", "health": {"uri": URI, "interval": "1s"}}
        ]
        result = make_loaders({"hecate": tree}).states.caddy.routes_managed(name="routes")
        assert result.result is True, result.comment
        deadline = time.monotonic() + 60
        while not any(path.startswith("/health") for path in backend.paths) and time.monotonic() < deadline:
            time.sleep(0.2)
        checks = [path for path in backend.paths if path.startswith("/health")]
        assert checks, backend.paths
        assert {unquote(path) for path in checks} == {URI}, checks  # braces percent-encoded in the path, not expanded
        assert str(caddy.workdir) not in "".join(checks)  # Caddy's HOME is its workdir
    finally:
        backend.stop()
