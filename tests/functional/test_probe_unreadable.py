"""A probe that meets an answer Python's http.client cannot read (more than 100 header lines) reports a
failed route with a reason that says so, never a traceback and never "no answer" (issue 15)."""

import socket
import threading

from devstack.caddy import free_port
from hecatelib.caddy import probe as caddy_probe

HEADERS = 150  # http.client._MAXHEADERS is 100


class ManyHeaders:
    """A loopback server answering every request with 200 and ``HEADERS`` header lines."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        lines = b"".join(b"X-Header-%d: v\r\n" % i for i in range(HEADERS))
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 0\r\nConnection: close\r\n\r\n")

    def stop(self):
        self.listener.close()


def test_a_route_answering_more_than_100_headers_is_a_failed_probe_with_a_clear_reason(make_loaders):
    server = ManyHeaders()
    try:
        tree = {
            "reverse_proxy": {
                "caddy": {
                    "ports": {"http": server.port, "https": free_port(), "admin": free_port()},
                    "tls": {"mode": "off"},
                    "routes": [{"domain": "app.example.org", "backend": "127.0.0.1:8080", "service": "app"}],
                }
            }
        }
        caddy = make_loaders({"hecate": tree}).modules.caddy
        result = caddy.probe("app.example.org")
        assert result["ok"] is False and result["status"] is None, result
        assert "answered" in result["reason"] and "more than 100 headers" in result["reason"], result
        assert "no answer" not in result["reason"], result
        assert [f["domain"] for f in caddy.check()["failed"]] == ["app.example.org"]
        assert server.accepted == 2  # not retried: the server did answer
    finally:
        server.stop()


def test_an_upstream_behind_auth_answering_more_than_100_headers_says_so():
    server = ManyHeaders()
    try:
        prober = caddy_probe.Prober({"tls": {"mode": "off"}, "ports": {"http": free_port()}, "verify": {"timeout": 5}})
        route = {"backend": f"127.0.0.1:{server.port}", "tls_skip_verify": False}
        [reason] = prober.dead_upstreams(route, "app.example.org")
        assert reason.startswith(f"behind auth, backend 127.0.0.1:{server.port} answered, but"), reason
        assert "more than 100 headers" in reason and "does not answer" not in reason, reason
    finally:
        server.stop()
