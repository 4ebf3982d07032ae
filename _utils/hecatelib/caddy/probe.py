"""Request routes through the local Caddy as a client would: the post-write check, ``caddy.check``,
``caddy.probe(s)``, ``hecate.verify`` and ``hecate.health`` all end here.

One :class:`Prober` per run: the pillar is validated and Caddy's local CA fetched once by the caller,
the TLS context built once, and the routes probed concurrently (at most :data:`WORKERS` at a time), so
checking 1000 routes costs about what 1000 requests cost, not 1000 validations.

Right after a reload the old server closes the connections it still holds: a request that meets a
closed connection (no response, reset, EOF in the TLS handshake) is sent again, :data:`TRIES` times in
all with a short backoff, before the route counts as failed.

A protected route answers with authentik's redirect whether or not its backend lives, so for it the
edge also requests each upstream at the address Caddy dials (``hecatelib.caddy.config.dial``): a dead backend
behind auth fails the check like an unprotected one.
"""

import http.client
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

from hecatelib import spec
from hecatelib.authentik import objects as authentik_objects
from hecatelib.caddy import config as caddy_config

AGENT = "hecate-verify/1.0"
WORKERS = 16
TRIES = 3
BACKOFF = 0.1  # seconds before the 2nd try, doubled for each next one
# A connection the server closed without answering: what an old server does right after a reload.
CLOSED = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError)
# Caddy's handshake answer for a name whose certificate it has not issued yet.
NO_CERTIFICATE_YET = "TLSV1_ALERT_INTERNAL_ERROR"
ISSUE_WAIT = 30  # seconds a post-write check waits for certificates Caddy is still issuing (tls: internal)
# 502/503/504: Caddy (or the backend) says the backend is not there.
GATEWAY_ERRORS = (502, 503, 504)


def _failure(exc):
    """Why a request got no usable answer. An ``HTTPException`` means the server did answer, but with
    something ``http.client`` cannot read (more than ``http.client._MAXHEADERS`` = 100 header lines, a
    malformed status line): say that, not "no answer"."""
    if isinstance(exc, http.client.HTTPException):
        return f"answered, but Python's http.client cannot read the response: {exc}"
    return f"no answer: {exc}"


def targets(tree, domains=None):
    """``[(domain, route or None)]`` for ``domains`` (default: every pillar route); the route says how
    to prove the backend of a protected domain."""
    routes = tree["reverse_proxy"]["caddy"]["routes"]
    protected = {route["domain"] for route in authentik_objects.auth_routes(tree)}
    # the route as Caddy dials it: its Nomad job's Consul service when consul_dns maps it there
    by_domain = {
        route["domain"]: {**route, "upstreams": caddy_config.route_upstreams(route, tree)}
        for route in routes
        if route["domain"] in protected
    }
    if domains is None:
        domains = [route["domain"] for route in routes]
    return [(domain, by_domain.get(domain)) for domain in domains]


def _exchange(connect, method, path, headers, tries, backoff):
    """One request on a fresh connection from ``connect()``; a closed connection is retried.
    Returns the response (body read) or raises the last error."""
    for attempt in range(tries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        conn = None
        try:
            conn = connect()
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            response.read()
            return response
        except CLOSED:  # http.client.RemoteDisconnected is a ConnectionResetError
            if attempt == tries - 1:
                raise
        finally:
            if conn is not None:
                conn.close()


class Prober:
    """Probes through Caddy on 127.0.0.1 (the pillar's ports, SNI = the domain). ``caddy`` is the
    validated ``hecate:reverse_proxy:caddy``; ``ca``: PEM certificates to trust (Caddy's local root when
    ``tls: internal``, the pillar's custom certificates)."""

    def __init__(self, caddy, ca=None, timeout=None, tries=TRIES, backoff=BACKOFF):
        self.mode = caddy["tls"]["mode"]
        self.port = caddy["ports"]["http" if self.mode == "off" else "https"]
        self.timeout = timeout or caddy["verify"]["timeout"]
        self.tries, self.backoff = tries, backoff
        self.context = None
        if self.mode != "off":
            self.context = ssl.create_default_context()
            if ca:
                self.context.load_verify_locations(cadata=ca)
                # a custom certificate in ``ca`` is trusted as it is, without the company CA above it
                self.context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN

    def run(self, found, path="/", workers=WORKERS):
        """Probe every ``(domain, route)`` of :func:`targets`; the results in the same order."""
        if len(found) <= 1:
            return [self.probe(domain, route, path) for domain, route in found]
        with ThreadPoolExecutor(max_workers=min(workers, len(found))) as pool:
            return list(pool.map(lambda item: self.probe(item[0], item[1], path), found))

    def _connect_edge(self, host):
        def connect():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            if self.context is not None:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
                try:
                    conn.sock = self.context.wrap_socket(sock, server_hostname=host)
                except BaseException:
                    sock.close()
                    raise
            return conn

        return connect

    def _through_edge(self, host, path):
        """The request through Caddy. With ``tls: internal`` Caddy issues certificates in the background
        after a reload and, until then, answers the handshake with an internal-error alert: wait for it,
        up to the verify timeout or ``ISSUE_WAIT`` seconds, whichever is longer (issuing a dozen
        certificates on a busy 2-core edge took more than the 5 s default)."""
        deadline = time.monotonic() + max(self.timeout, ISSUE_WAIT)
        while True:
            try:
                return _exchange(self._connect_edge(host), "GET", path, {"Host": host, "User-Agent": AGENT}, self.tries, self.backoff)
            except ssl.SSLError as exc:
                if self.mode != "internal" or NO_CERTIFICATE_YET not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(self.backoff)

    def probe(self, domain, route=None, path="/"):
        """``{"domain", "status", "ok", "reason"}`` for one domain (``route``: its pillar route when
        protected). A 502/503/504, the catch-all's answer, a refused connection or, behind auth, an
        upstream that does not answer is not ok. With ``tls: acme`` a certificate not issued yet is
        reported as pending, not as a failure."""
        result = {"domain": domain, "status": None, "ok": False, "reason": ""}
        try:  # the Host header and SNI carry the A-label (a Unicode host would go out as Latin-1 bytes)
            host = spec.to_ascii(domain).replace("*", "hecate-probe")
        except ValueError as exc:
            result["reason"] = str(exc)
            return result
        try:
            response = self._through_edge(host, path)
        except ssl.SSLError as exc:
            if self.mode == "acme" and not isinstance(exc, CLOSED):
                result.update(ok=True, reason=f"certificate pending (ACME): {exc}")
            else:
                result["reason"] = f"TLS failed: {exc}"
            return result
        except (OSError, http.client.HTTPException) as exc:
            result["reason"] = f"127.0.0.1:{self.port} {_failure(exc)}"
            return result
        result["status"] = response.status
        if response.getheader(caddy_config.NO_ROUTE_HEADER):
            result["reason"] = "not routed (answered by the catch-all)"
        elif response.status in GATEWAY_ERRORS:
            result["reason"] = f"HTTP {response.status}: Caddy could not reach the backend"
        elif route is not None:
            dead = self.dead_upstreams(route, host)
            result.update(ok=not dead, reason="; ".join(dead))
        else:
            result["ok"] = True
        return result

    def dead_upstreams(self, route, host):
        """Behind auth, Caddy's answer says nothing about the backend: request each upstream at the
        address Caddy dials, as Caddy would (TLS for https://, verified unless ``tls_skip_verify``).
        ``consul://`` upstreams are resolved by Caddy itself and are not dialled from here."""
        dead = []
        for backend in route.get("upstreams") or spec.route_backends(route):
            parsed = spec.parse_backend(backend)
            if parsed["scheme"] == "consul":
                continue
            address = caddy_config.dial(parsed)
            try:
                response = _exchange(
                    self._connect_upstream(parsed, route["tls_skip_verify"]),
                    "GET",
                    "/",
                    {"Host": host, "User-Agent": AGENT},
                    self.tries,
                    self.backoff,
                )
            except (OSError, http.client.HTTPException) as exc:
                dead.append(f"behind auth, backend {address} {_failure(exc)}")
                continue
            if response.status in GATEWAY_ERRORS:
                dead.append(f"behind auth, backend {address} answered HTTP {response.status}")
        return dead

    def _connect_upstream(self, backend, skip_verify):
        def connect():
            if backend["scheme"] != "https":
                return http.client.HTTPConnection(backend["host"], backend["port"], timeout=self.timeout)
            context = ssl.create_default_context()
            if skip_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(backend["host"], backend["port"], timeout=self.timeout, context=context)

        return connect
