"""``health.uri`` is sent as written: Caddy's active health checker only ``url.Parse``s it
(``ActiveHealthChecks.Provision`` and ``doActiveHealthCheck`` in caddy's
modules/caddyhttp/reverseproxy/healthchecks.go; the replacer there serves the body and headers only), so
a placeholder in it is never expanded, and hecate must not escape it either (an escaped ``\\{`` would be
sent as a backslash). Proved on the real binary (issue 15)."""

import copy
import time
from urllib.parse import unquote

from tests.support.caddy import Backend

URI = "/health{env.HOME}?probe={env.HOME}"


def test_a_placeholder_in_health_uri_reaches_the_backend_as_written(caddy, make_loaders, local_tree):
    backend = Backend("health").start()
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
