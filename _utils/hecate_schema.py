"""The pillar contract: every key under ``hecate``, its meaning, its default, and the checks that span keys.

``validate(tree)`` returns the normalised tree (defaults filled in) or raises ``PillarError`` listing
every problem with its key path. Nothing reads pillar except through this function: the ext_pillar,
the states, the runner and ``hecate-validate`` all call it before any backend is touched.

Backend sections that grow with their module (dns, authentik, nomad, terraform, consul) keep their
schema next to their compiler (``hecate_<backend>.PILLAR_SCHEMA`` / ``check_pillar``).
"""

import re

import hecate_authentik
import hecate_dns
import hecate_nomad
import hecate_terraform
from hecate_spec import (  # parse_backend, route_backends, route_service: re-exported, they live in hecate_spec
    Bool,
    Duration,
    Field,
    Hostname,
    Int,
    ListOf,
    Map,
    MapOf,
    PillarError,
    Port,
    Report,
    Secret,
    Str,
    index,
    is_hostname,
    is_ip,
    key,
    parse_backend,
    parse_hostport,
    route_backends,
    route_service,
)

__all__ = ["PillarError", "check", "parse_backend", "route_backends", "route_service", "validate"]

NAME = r"^[a-z0-9]([a-z0-9_-]{0,62})$"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
WILDCARD = {"", "0.0.0.0", "::", "[::]", "*"}  # noqa: S104 - these are the addresses we refuse

# The intent of the seed Caddyfile's (security) + (cybermonkey_common) snippets, each rule on its own.
COMMON_PROFILE = {
    "block_headers": ["Cf-Worker", "Cf-Connecting-Ip", "Cf-Ray"],
    "block_paths": [
        "/wp-admin/*",
        "/wp-login.php",
        "/wordpress/*",
        "/.git/*",
        "/.env",
        "/phpmyadmin/*",
        "/config.json",
        "/.DS_Store",
        "/info.php",
        "/phpinfo.php",
        "/test.php",
        "/telescope/*",
        "/horizon/*",
        "/pulse/*",
        "/.well-known/security.txt",
        "/.svn/*",
        "/.hg/*",
        "/backup/*",
        "/old/*",
        "/temp/*",
        "/tmp/*",  # noqa: S108 - a path we block, not a file we use
        "/sql/*",
        "/admin/*",
        "/manager/*",
        "/shell.php",
    ],
    "block_path_regexp": r"(/(vendor|node_modules|bower_components)/|\.(sql|bak|backup|log|old|orig|original|save|swp|tmp)$)",
    "block_query_params": ["rest_route"],  # the seed's "\\?rest_route=" in path_regexp never matched: paths have no query
    "block_user_agents": r"(?i)(bot|crawler|spider|scraper|scan|exploit|nikto|sqlmap|havij|acunetix)|^Go-http-client/1\.1$",
    "encode": ["zstd", "gzip"],
    "headers": {
        "X-Frame-Options": "SAMEORIGIN",
        "X-Content-Type-Options": "nosniff",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "X-XSS-Protection": "1; mode=block",
    },
}
BUILTIN_PROFILES = {"common": COMMON_PROFILE, "none": {}}


class Backend(Str):
    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str):
            try:
                parse_backend(value)
            except ValueError as exc:
                report.error(path, str(exc))
        return value


class HostPort(Str):
    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str):
            parsed = parse_hostport(value)
            if parsed is None or not (is_hostname(parsed[0]) or is_ip(parsed[0])) or not 1 <= parsed[1] <= 65535:
                report.error(path, f"must be host:port, got {value!r}")
        return value


class Regexp(Str):
    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str):
            try:
                re.compile(value)
            except re.error as exc:
                report.error(path, f"is not a valid regular expression: {exc}")
        return value


class AdminAddress(Str):
    """``unix//abs/path`` or a loopback ``host:port``; never a wildcard (the admin API has no auth)."""

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if not isinstance(value, str):
            return value
        if "{" in value or "}" in value:  # Caddy expands placeholders in it (ParseNetworkAddress, admin.go)
            report.error(path, "must not contain { or } (Caddy would read them as a placeholder)")
            return value
        if value.startswith("unix/"):
            if not value.startswith("unix//"):
                report.error(path, "a unix socket must be written unix//absolute/path")
            return value
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        if host in WILDCARD:
            report.error(path, f"{value!r} listens on every interface; Caddy's admin API has no authentication: "
                         "use unix//run/caddy/admin.sock or 127.0.0.1:<port>")  # fmt: skip
        elif host not in LOOPBACK:
            report.error(path, f"{value!r} is not loopback; use a unix socket or 127.0.0.1:<port>")
        elif not port.isdigit() or not 1 <= int(port) <= 65535:
            report.error(path, f"{value!r}: port must be 1..65535")
        return value


class TlsMode(Str):
    """YAML reads a bare ``off`` as false: both mean off."""

    def __init__(self):
        super().__init__(choices=["acme", "internal", "off"])

    def __call__(self, value, path, report):
        if value is False:
            value = "off"
        return super().__call__(value, path, report)


PROFILE = Map(
    {
        "block_headers": ListOf(Str(pattern=r"^[A-Za-z0-9-]+$", what="header name")),
        "block_paths": ListOf(Str(pattern=r"^/", what="path (must start with /)")),
        "block_path_regexp": Regexp(),
        "block_query_params": ListOf(Str(pattern=r"^[A-Za-z0-9_.-]+$", what="query parameter name")),
        "block_user_agents": Regexp(),
        "encode": ListOf(Str(choices=["zstd", "gzip"]), unique=True),
        "headers": MapOf(Str(), key_spec=Str(pattern=r"^[A-Za-z0-9-]+$", what="header name")),
    }
)

HEALTH = Map(
    {
        "uri": Str(pattern=r"^/", what="path"),
        "interval": Field(Duration(), default="10s"),
        "timeout": Field(Duration(), default="5s"),
        "status": Int(100, 599),
    }
)

ROUTE = Map(
    {
        "domain": Field(Hostname(wildcard=True), required=True),
        "backend": Backend(),
        "backends": ListOf(Backend(), unique=True),
        "service": Str(pattern=NAME, what="service name (lower-case letters, digits, - and _)"),
        "tls_skip_verify": Field(Bool(), default=False),
        "profile": Field(Str(pattern=NAME, what="profile name"), default="common"),
        "lb_policy": Field(
            Str(choices=["round_robin", "random", "least_conn", "first", "ip_hash", "uri_hash"]),
            default="round_robin",
        ),
        "health": HEALTH,
        "auth": hecate_authentik.ROUTE_AUTH_SCHEMA,
        "dns": hecate_dns.ROUTE_DNS_SCHEMA,
    }
)

CADDY = Map(
    {
        "version": Field(Str(pattern=r"^[A-Za-z0-9._-]+$", what="image tag"), default="2.11"),
        "ports": Field(
            Map({"http": Field(Port(), default=80), "https": Field(Port(), default=443), "admin": Field(Port(), default=2019)}),
            default=dict,
        ),
        "admin": AdminAddress(),
        "bind": ListOf(Hostname(ip=True), unique=True),  # listen only on these addresses (default: every interface)
        "tls": Field(
            Map({"mode": Field(TlsMode(), default="acme"), "email": Str(pattern=r"^[^@\s]+@[^@\s]+$", what="e-mail")}),
            default=dict,
        ),
        "stream_close_delay": Field(Duration(), default="5m"),
        "consul_dns": HostPort(),  # DNS server for consul:// backends (Consul's DNS, e.g. 127.0.0.1:8600)
        "verify": Field(Map({"enabled": Field(Bool(), default=True), "timeout": Field(Int(1, 300), default=5)}), default=dict),
        "profiles": MapOf(PROFILE, key_spec=Str(pattern=NAME, what="profile name")),
        "routes": ListOf(ROUTE),
    }
)

TCP_PROXY = Map(
    {
        "name": Field(Str(pattern=NAME, what="name"), required=True),
        "listen_port": Field(Port(), required=True),
        "backend": Field(HostPort(), required=True),
        "protocol": Field(Str(choices=["tcp", "udp"]), default="tcp"),
    }
)

RESOURCE = Map({"cpu": Int(1, 1_000_000), "memory": Int(1, 10_000_000), "disk": Int(1, 100_000_000)})

SCHEMA = Map(
    {
        "global": Field(
            Map(
                {
                    "domain": Hostname(),
                    "environment": Field(Str(pattern=NAME, what="environment name"), default="production"),
                    "hetzner_location": Str(pattern=r"^[a-z]{3}[0-9]?$", what="Hetzner location (nbg1, fsn1, hel1, ash, hil, sin)"),
                }
            ),
            default=dict,
        ),
        "reverse_proxy": Field(
            Map(
                {
                    "caddy": Field(CADDY, default=dict),
                    "nginx": Map({"version": Str(pattern=r"^[A-Za-z0-9._-]+$", what="image tag"), "tcp_proxies": ListOf(TCP_PROXY)}),
                    "coturn": Map(
                        {
                            "version": Str(pattern=r"^[A-Za-z0-9._-]+$", what="image tag"),
                            "realm": Hostname(),
                            "static_auth_secret": Secret(),
                            "ports": Map({"listening": Port(), "tls_listening": Port(), "relay_min": Port(), "relay_max": Port()}),
                        }
                    ),
                }
            ),
            default=dict,
        ),
        "authentik": hecate_authentik.PILLAR_SCHEMA,
        "dns": hecate_dns.PILLAR_SCHEMA,
        "nomad": hecate_nomad.PILLAR_SCHEMA,
        "terraform": hecate_terraform.PILLAR_SCHEMA,
        "consul": hecate_terraform.CONSUL_SCHEMA,
        "resources": Map(
            {
                "reverse_proxy": RESOURCE,
                "authentik": RESOURCE,
                "postgresql": RESOURCE,
                "redis": RESOURCE,
                "applications": MapOf(RESOURCE, key_spec=Str(pattern=NAME, what="application name")),
            }
        ),
        "deployment": Field(
            Map(
                {
                    "strategy": Field(Str(choices=["blue-green", "rolling", "canary"]), default="rolling"),
                    "health_check_interval": Field(Int(1, 3600), default=30),
                    "health_check_timeout": Field(Int(1, 3600), default=5),
                    "max_parallel_updates": Field(Int(1, 100), default=1),
                    "auto_rollback": Field(Bool(), default=True),
                    "targets": Field(
                        Map(
                            {
                                "controller": Field(Str(), default="roles:hecate-controller"),
                                "edge": Field(Str(), default="roles:hecate-proxy"),
                                "tgt_type": Field(
                                    Str(choices=["grain", "glob", "list", "compound", "pillar", "nodegroup"]), default="grain"
                                ),
                            }
                        ),
                        default=dict,
                    ),
                    "stage_timeout": Field(Int(10, 86400), default=1800),
                    "verify": Field(Bool(), default=True),
                }
            ),
            default=dict,
        ),
        # between deploys: the drift beacon's interval, and what the reactor does with a drift (docs/reconcile.md)
        "reconcile": Field(
            Map(
                {
                    "interval": Field(Int(10, 86400), default=60),
                    "policy": Field(Str(choices=["alert", "heal"]), default="alert"),
                    "max_changes": Field(Int(1, 100000), default=5),
                }
            ),
            default=dict,
        ),
        "backup": Map(
            {
                "enabled": Field(Bool(), default=False),
                "schedule": Str(pattern=r"^\S+( \S+){4}$", what="cron schedule (5 fields)"),
                "retention_days": Int(1, 36500),
                "targets": ListOf(Str(pattern=NAME, what="backup target"), unique=True),
            }
        ),
    }
)


def check(tree):
    """Validate ``tree`` (the value of pillar ``hecate``). Returns ``(normalised, report)``; never raises."""
    report = Report("hecate")
    if tree is None:
        report.error("hecate", "missing: the pillar has no 'hecate' key")
        return {}, report
    out = SCHEMA(tree, "hecate", report)
    if not report.errors:
        _check_caddy(out, report)
        _check_nginx(out, report)
        _check_coturn(out, report)
    if not report.errors:  # backend checks rely on the normalised caddy section (services, defaults)
        for backend in (hecate_authentik, hecate_dns, hecate_nomad, hecate_terraform):
            backend.check_pillar(out, report)
    return out, report


def validate(tree):
    """Return the normalised ``hecate`` tree, or raise ``PillarError`` naming every bad key path."""
    out, report = check(tree)
    report.raise_if_errors()
    return out


def _check_caddy(tree, report):
    caddy = tree["reverse_proxy"]["caddy"]
    path = "hecate:reverse_proxy:caddy"
    ports = caddy["ports"]
    if len({ports["http"], ports["https"], ports["admin"]}) != 3:
        report.error(f"{path}:ports", "http, https and admin must be three different ports")
    caddy.setdefault("admin", f"127.0.0.1:{ports['admin']}")
    profiles = {**BUILTIN_PROFILES, **caddy.get("profiles", {})}
    caddy["profiles"] = profiles
    domains, services = {}, {}
    for i, route in enumerate(caddy["routes"]):
        where = index(f"{path}:routes", i)
        route["service"] = route_service(route)
        if not route_backends(route):
            report.error(key(where, "backend"), "required: give backend (host:port or https://host) or backends")
        for name, seen, value in (("domain", domains, route["domain"]), ("service", services, route["service"])):
            if value in seen:
                report.error(key(where, name), f"duplicate {name} {value!r} (also at routes[{seen[value]}])")
            seen.setdefault(value, i)
        if route["profile"] not in profiles:
            report.error(key(where, "profile"), f"unknown profile {route['profile']!r}; defined: {', '.join(sorted(profiles))}")
        schemes = {parse_backend(b)["scheme"] for b in route_backends(route)}
        if route["tls_skip_verify"] and "https" in schemes:
            report.warn(
                key(where, "tls_skip_verify"),
                "TLS verification to the backend is off: anyone on the path can impersonate it",
            )
        elif route["tls_skip_verify"]:
            report.error(key(where, "tls_skip_verify"), "only means something for https:// backends")
        if len(schemes) > 1:
            report.error(
                key(where, "backends"),
                "mixes schemes; one route talks to its backends one way (all http, all https, or consul)",
            )
        if "consul" in schemes and len(route_backends(route)) > 1:
            report.error(key(where, "backends"), "a consul:// backend already yields every instance; give it alone")


def _check_nginx(tree, report):
    nginx = tree["reverse_proxy"].get("nginx") or {}
    seen_names, seen_ports = {}, {}
    caddy_ports = set(tree["reverse_proxy"]["caddy"]["ports"].values())
    for i, proxy in enumerate(nginx.get("tcp_proxies", [])):
        where = index("hecate:reverse_proxy:nginx:tcp_proxies", i)
        if proxy["name"] in seen_names:
            report.error(key(where, "name"), f"duplicate name {proxy['name']!r}")
        seen_names[proxy["name"]] = i
        listen = (proxy["listen_port"], proxy["protocol"])
        if listen in seen_ports:
            report.error(
                key(where, "listen_port"),
                f"{listen[1]} port {listen[0]} is already used by tcp_proxies[{seen_ports[listen]}]",
            )
        seen_ports[listen] = i
        if proxy["protocol"] == "tcp" and proxy["listen_port"] in caddy_ports:
            report.error(key(where, "listen_port"), f"port {proxy['listen_port']} is Caddy's")


def _check_coturn(tree, report):
    ports = (tree["reverse_proxy"].get("coturn") or {}).get("ports") or {}
    if ports.get("relay_min") and ports.get("relay_max") and ports["relay_min"] > ports["relay_max"]:
        report.error("hecate:reverse_proxy:coturn:ports:relay_min", "must not be above relay_max")
