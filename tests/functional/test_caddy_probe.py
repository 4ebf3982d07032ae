"""The post-write check and its views (caddy.check / probe / probes, hecate.health's routes) against a
real Caddy: one validation and one CA fetch per run, probes in parallel, closed connections retried,
and a protected route proving its backend answers (issue 13; issue 10 items 13 and 14)."""

import copy
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devstack import host
from devstack.caddy import free_port
from devstack.http import serve
from devstack.pillars import local_seed_tree
from hecatelib import schema
from hecatelib.caddy import backend as caddy_backend

PROTECTED = "observe.cybermonkey.dev"  # the seed's grafana route


class Answering:
    """A loopback HTTP server: ``status`` for every request, after ``delay`` seconds."""

    def __init__(self, status=200, delay=0.0, headers=None):
        answering = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                time.sleep(answering.delay)
                self.send_response(answering.status)
                for name, value in (answering.headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.status, self.delay, self.headers = status, delay, headers
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        serve(self.server)
        self.port = self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class ClosesFirst:
    """Accepts connections and ends the first ``closes`` of them without a response (what an old Caddy
    server does right after a reload): a clean close after reading the request, or with ``reset`` a TCP
    reset. Then answers 200. ``closes=None``: ends every one."""

    def __init__(self, closes, reset=False):
        self.closes, self.reset, self.accepted = closes, reset, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.recv(65536)
                if self.closes is None or self.accepted <= self.closes:
                    if self.reset:
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue  # no response
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def stop(self):
        self.listener.close()


def closing_tree(port):
    """A pillar whose Caddy 'http' port is the closing server (TLS off): the probe talks to it directly."""
    return {
        "reverse_proxy": {
            "caddy": {
                "ports": {"http": port, "https": free_port(), "admin": free_port()},
                "tls": {"mode": "off"},
                "verify": {"timeout": 60},  # a starved machine must not turn a close into a timeout
                "routes": [{"domain": "app.example.org", "backend": "127.0.0.1:8080", "service": "app"}],
            }
        }
    }


@pytest.mark.parametrize(("reset", "error"), [(False, "closed connection without response"), (True, "reset by peer")])
def test_a_connection_closed_without_response_is_retried_before_the_route_fails(make_loaders, reset, error):
    flaky = ClosesFirst(closes=2, reset=reset)
    try:
        failures = make_loaders({"hecate": closing_tree(flaky.port)}).modules.caddy.check()["failed"]
        assert failures == [] and flaky.accepted == 3, (failures, flaky.accepted)  # two closed, the third answered
    finally:
        flaky.stop()

    dead = ClosesFirst(closes=None, reset=reset)
    try:
        failures = make_loaders({"hecate": closing_tree(dead.port)}).modules.caddy.check()["failed"]
        assert [f["domain"] for f in failures] == ["app.example.org"], failures
        assert error in failures[0]["reason"] and dead.accepted == 3, (failures, dead.accepted)  # bounded: three tries
    finally:
        dead.stop()


@pytest.fixture
def validations(monkeypatch):
    calls = []
    real = schema.validate

    def counting(tree, **kwargs):
        calls.append(1)
        return real(tree, **kwargs)

    monkeypatch.setattr(schema, "validate", counting)
    return calls


def many_routes(local_tree, port, n):
    tree = copy.deepcopy(local_tree)
    tree["reverse_proxy"]["caddy"]["routes"] = [
        {"domain": f"r{i:04d}.cybermonkey.dev", "backend": f"127.0.0.1:{port}", "service": f"r{i:04d}"} for i in range(n)
    ]
    tree["reverse_proxy"]["caddy"]["verify"] = {"enabled": False}
    return tree


def test_check_validates_once_and_probes_in_parallel(caddy, make_loaders, local_tree, validations):
    slow = Answering(delay=0.2)  # 64 routes one after another: 12.8 s; 16 at a time: about 0.8 s
    try:
        tree = many_routes(local_tree, slow.port, 64)
        loaders = make_loaders({"hecate": tree})
        assert loaders.states.caddy.routes_managed(name="routes").result is True
        del validations[:]
        started = time.perf_counter()
        assert loaders.modules.caddy.check()["failed"] == []
        seconds = time.perf_counter() - started
        assert len(validations) == 1  # once per run, not once per probed domain
        assert seconds < 4, seconds
        results = loaders.modules.caddy.probes()
        assert [r["domain"] for r in results] == [r["domain"] for r in tree["reverse_proxy"]["caddy"]["routes"]]
        assert {r["status"] for r in results} == {200} and len(validations) == 1  # the same run: the tree validated above
    finally:
        slow.stop()


def test_local_ca_is_fetched_once_per_check(short_tmp, caddy, backends, make_loaders):
    plain, secure = backends
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    tree = local_seed_tree({k: b.port for k, b in plain.items()}, secure.port, ports, caddy.admin, tls_mode="internal")
    loaders = make_loaders({"hecate": tree})
    routes = loaders.states.caddy.routes_managed(name="routes")
    assert routes.result is True, routes.comment
    before = len(caddy.admin_requests())
    assert loaders.modules.caddy.check()["failed"] == []
    assert caddy.admin_requests()[before:] == [("GET", "/pki/ca/local")]


@pytest.fixture
def outpost():
    """authentik's outpost as Caddy's forward_auth sees it for a browser without a session: a 302."""
    server = Answering(status=302, headers={"Location": "https://auth.cybermonkey.dev/application/o/authorize/"})
    yield server
    server.stop()


def protected_tree(local_tree, outpost, grafana_backend):
    tree = copy.deepcopy(local_tree)
    routes = tree["reverse_proxy"]["caddy"]["routes"]
    next(r for r in routes if r["service"] == "authentik")["backend"] = f"127.0.0.1:{outpost.port}"
    grafana = next(r for r in routes if r["service"] == "grafana")
    grafana.update(auth={"groups": ["ops"]}, backend=grafana_backend)
    tree["authentik"].update({"url": "https://auth.cybermonkey.dev", "token": "unused-here"})
    return tree


def test_protected_route_with_a_dead_backend_fails_the_check_and_rolls_back(caddy, make_loaders, local_tree, backends, outpost):
    plain, _ = backends
    alive = protected_tree(local_tree, outpost, f"127.0.0.1:{plain['grafana'].port}")
    loaders = make_loaders({"hecate": alive})
    first = loaders.states.caddy.routes_managed(name="routes")
    assert first.result is True, first.comment
    assert loaders.modules.caddy.probe(PROTECTED) == {"domain": PROTECTED, "status": 302, "ok": True, "reason": ""}

    dead = protected_tree(local_tree, outpost, f"127.0.0.1:{free_port()}")  # nothing listens there
    before = json.loads(caddy.config_bytes())
    loaders = make_loaders({"hecate": dead})
    result = loaders.states.caddy.routes_managed(name="routes")
    assert result.result is False
    assert "restored" in result.comment and f"{PROTECTED}: behind auth, backend 127.0.0.1:" in result.comment
    assert json.loads(caddy.config_bytes()) == before

    # hecate.verify (caddy.check on each edge) and hecate.health (caddy.probes) see it too
    unverified = copy.deepcopy(dead)
    unverified["reverse_proxy"]["caddy"]["verify"] = {"enabled": False}
    unchecked = make_loaders({"hecate": unverified})
    assert unchecked.states.caddy.routes_managed(name="routes").result is True  # the dead route is live now
    failures = unchecked.modules.caddy.check()["failed"]
    assert [f["domain"] for f in failures] == [PROTECTED] and failures[0]["status"] == 302

    def call(role, fun, *args, **kwargs):
        return {"edge-1": {"ok": True, "ret": unchecked.modules[fun](*args, **kwargs)}}

    rows = caddy_backend.routes_section(schema.validate(copy.deepcopy(dead), root_prefix=host.PREFIX), call)
    assert [r["domain"] for r in rows if not r["ok"]] == [PROTECTED]
    assert len(rows) == len(dead["reverse_proxy"]["caddy"]["routes"])
