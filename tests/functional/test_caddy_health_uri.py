"""``health.uri`` is sent as written: Caddy's active health checker only ``url.Parse``s it
(``ActiveHealthChecks.Provision`` and ``doActiveHealthCheck`` in caddy's
modules/caddyhttp/reverseproxy/healthchecks.go; the replacer there serves the body and headers only), so
a placeholder in it is never expanded, and hecate must not escape it either (an escaped ``\\{`` would be
sent as a backslash). Proved on the real binary (issue 15).

And Caddy runs those checks for static upstreams only, never for ``dynamic_upstreams`` (how hecate reaches a
``consul://`` backend): so the schema refuses ``health`` there (issue 27)."""

import copy
import time
from urllib.parse import unquote

from devstack.caddy import Backend, free_port
from devstack.http import backend_of, get
from devstack.stack import until

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


def test_caddy_probes_static_upstreams_and_never_dynamic_ones(caddy):
    """Two routes to one backend, the same active health check (200 ms) but for its path: one dials it as a
    static upstream, one finds it through ``dynamic_upstreams`` (A records, as a ``consul://host:port``
    backend compiles). Requests flow through both; the static one is probed again and again, the dynamic
    one never (``doActiveHealthCheckForAllHosts`` walks ``h.Upstreams`` only, reverseproxy/healthchecks.go)."""
    backend = Backend("probed").start()
    port = free_port()

    def route(host, upstreams, probe):
        proxy = {"handler": "reverse_proxy", **upstreams, "health_checks": {"active": {"uri": probe, "interval": "200ms"}}}
        return {"match": [{"host": [host]}], "handle": [proxy], "terminal": True}

    dynamic = {"dynamic_upstreams": {"source": "a", "name": "127.0.0.1", "port": str(backend.port), "refresh": "1s"}}
    servers = {"probe": {"listen": [f"127.0.0.1:{port}"], "automatic_https": {"disable": True}, "routes": [
        route("static.example.org", {"upstreams": [{"dial": f"127.0.0.1:{backend.port}"}]}, "/probe-static"),
        route("dynamic.example.org", dynamic, "/probe-dynamic"),
    ]}}  # fmt: skip
    try:
        caddy.load({"admin": {"listen": caddy.admin}, "apps": {"http": {"servers": servers}}})
        for host in ("static.example.org", "dynamic.example.org"):
            status, _, body = get(port, host)
            assert (status, backend_of(body)) == (200, "probed"), host
        until("five probes of the static upstream", lambda: backend.paths.count("/probe-static") >= 5, 60)
        assert get(port, "dynamic.example.org")[0] == 200  # the dynamic upstream is in use all along
        assert "/probe-dynamic" not in backend.paths, backend.paths
    finally:
        backend.stop()
