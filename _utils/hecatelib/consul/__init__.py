"""Consul for hecate, in one package: the ``hecate:consul`` pillar section and its settings, the one client
factory (this module), the deploy lock (``lock``), the deployment records (``records``), and the external
services registered for Nomad's jobs (``services``)."""

import re
from urllib.parse import parse_qs, urlsplit

import requests

from hecatelib.api import check_endpoint, read_token
from hecatelib.consul import services
from hecatelib.spec import AbsPath, Bool, Either, Field, Int, Map, Secret, Str

DEFAULT_TTL = 15  # seconds; Consul accepts 10..86400. A dead holder elsewhere frees the lock within 2x this
DEFAULT_WAIT = 600  # seconds a second deploy waits for the lock
DEFAULT_LOCK_DELAY = 0  # seconds; Consul's default is 15: why 0, see hecatelib.consul.lock
DEFAULT_TIMEOUT = 10  # seconds per request
LOCK_KEY = "hecate/locks/{environment}"
RECORD_PREFIX = "hecate/deployments"
CONSUL_DEFAULT_WAIT = 300.0  # seconds Consul holds a blocking query that names no wait
_GO_DURATION = re.compile(r"([\d.]+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


# -- configuration ---------------------------------------------------------------------------------
# The pillar section hecate:consul: the Consul connection (:func:`client`), the deploy lock
# and the deployment records, plus the external services the hecate_consul state registers.
SCHEMA = Map(
    {
        "external_services": services.SERVICES,  # registered by the hecate_consul state
        "address": Str(pattern=r"^https?://[A-Za-z0-9.\[\]:_-]+(:\d+)?/?$", what="Consul address (http(s)://host:port)"),
        "token": Secret(),
        "verify": Either("must be true, false or the path of a CA bundle", Bool(), AbsPath()),
        "datacenter": Str(pattern=r"^[a-z0-9]([a-z0-9_-]{0,62})$", what="datacenter name"),
        "allow_insecure_endpoint": Field(Bool(), default=False),
        "lock": Field(
            Map(
                {
                    "key": Field(Str(pattern=r"^[A-Za-z0-9_./{}-]+$", what="KV key"), default=LOCK_KEY),
                    "ttl": Field(Int(10, 86400, "integer (seconds)"), default=DEFAULT_TTL),
                    "wait": Field(Int(0, 86400, "integer (seconds)"), default=DEFAULT_WAIT),
                    "lock_delay": Field(Int(0, 60, "integer (seconds)"), default=DEFAULT_LOCK_DELAY),
                }
            ),
            default=dict,
        ),
        "deployments": Field(
            Map({"prefix": Field(Str(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", what="KV prefix"), default=RECORD_PREFIX)}),
            default=dict,
        ),
    }
)


def settings(hecate=None, opts=None):
    """Connection + lock settings: pillar ``hecate:consul`` (validated, see ``CONSUL_SCHEMA``) over the
    master's ``hecate_ext_pillar:consul``. Returns a dict for :func:`client` plus
    ``lock`` (``key``, ``ttl``, ``wait``, ``lock_delay``) and ``deployments`` (``prefix``)."""
    base = dict(((opts or {}).get("hecate_ext_pillar") or {}).get("consul") or {})
    section = dict(((hecate or {}).get("consul")) or {})
    environment = ((hecate or {}).get("global") or {}).get("environment") or "production"
    out = {**base, **{k: v for k, v in section.items() if k not in ("lock", "deployments") and v is not None}}
    # the master's token goes only where the master's config sends it: a pillar (pull requests) that moves
    # the endpoint or loosens its TLS brings its own token, or none, never the master's (nor $CONSUL_HTTP_TOKEN)
    moved = section.get("address") or section.get("verify") is not None or section.get("allow_insecure_endpoint") is True
    if moved and section.get("token") is None:
        out.pop("token", None)
        out.pop("token_file", None)
        out["ambient_token"] = False
    if section.get("datacenter"):
        out["dc"] = section["datacenter"]
    lock = {"key": LOCK_KEY, "ttl": DEFAULT_TTL, "wait": DEFAULT_WAIT, "lock_delay": DEFAULT_LOCK_DELAY}
    lock.update({k: v for k, v in (section.get("lock") or {}).items() if v is not None})
    lock["key"] = lock["key"].format(environment=environment)
    deployments = {"prefix": RECORD_PREFIX, **(section.get("deployments") or {})}
    out["lock"], out["deployments"], out["environment"] = lock, deployments, environment
    return out


class TimeoutSession(requests.Session):
    """A requests session that never waits forever: every request gets ``timeout`` seconds, a blocking
    query (``?index=..&wait=..``) its ``wait`` plus Consul's jitter (up to wait/16) on top.

    Why: py-consul up to 1.7.1 has no ``connections_timeout`` (``base.Consul.__init__``) and its
    ``std.HTTPClient`` calls ``requests`` without a timeout, so a stalled agent hangs lock acquire, renew,
    release and record writes for ever; 1.8.0 added one (default 30 s). Setting the timeout here enforces
    the configured value whatever py-consul version is installed."""

    def __init__(self, timeout):
        super().__init__()
        self.default_timeout = float(timeout)

    def request(self, method, url, *args, **kwargs):
        kwargs["timeout"] = self.timeout_for(url, kwargs.get("params"))
        return super().request(method, url, *args, **kwargs)

    def timeout_for(self, url, params=None):
        query = parse_qs(urlsplit(url).query)
        query.update({k: [v] for k, v in dict(params or {}).items()})
        if "index" not in query:
            return self.default_timeout
        wait = query.get("wait", [None])[-1]
        seconds = sum(float(n) * _GO_UNITS[u] for n, u in _GO_DURATION.findall(str(wait))) if wait else CONSUL_DEFAULT_WAIT
        return self.default_timeout + seconds + seconds / 16


def client(cfg):
    """A py-consul ``consul.Consul`` from a mapping with ``host``/``port``/``scheme`` (or ``address``:
    ``http://127.0.0.1:8500``), ``token``/``token_file``, ``verify``, ``dc``, ``timeout`` (seconds per
    request, default 10; enforced by :class:`TimeoutSession` on every request)."""
    import consul

    host, port, scheme = cfg.get("host"), cfg.get("port"), cfg.get("scheme")
    address = cfg.get("address")
    if address:
        parts = urlsplit(address if "://" in address else f"http://{address}")
        host, port, scheme = parts.hostname, parts.port, parts.scheme
    host = host or "127.0.0.1"
    scheme = scheme or "http"
    port = int(port or (8501 if scheme == "https" else 8500))  # Consul's default HTTP / HTTPS ports
    check_endpoint(f"{scheme}://{host}:{port}", cfg.get("allow_insecure_endpoint"), "consul: allow_insecure_endpoint", local_agent=True)
    token = read_token(cfg, "CONSUL_HTTP_TOKEN" if cfg.get("ambient_token", True) else None, "consul")
    kwargs = {
        "host": host,
        "port": port,
        "scheme": scheme,
        "token": token,
        "verify": cfg.get("verify", True),
        "dc": cfg.get("dc") or cfg.get("datacenter"),
    }
    client = consul.Consul(**kwargs)
    client.http.session = TimeoutSession(cfg.get("timeout") or DEFAULT_TIMEOUT)
    client.token = token  # py-consul prefers $CONSUL_HTTP_TOKEN over the argument; the config wins here
    client.hecate_address = f"{scheme}://{host}:{port}"
    return client
