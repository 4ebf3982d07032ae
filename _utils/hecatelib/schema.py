"""The pillar contract: every key under ``hecate``, its meaning, its default, and the checks that span keys.

``validate(tree)`` returns the normalised tree (defaults filled in) or raises ``PillarError`` listing
every problem with its key path. Nothing reads pillar except through this function: the ext_pillar,
the states, the runner and ``hecate-validate`` all call it before any backend is touched.

The core (global, reverse_proxy, consul, resources, deployment, reconcile) is here; each backend brings its
own section and cross-key checks (``schema`` and ``check`` of its object in ``hecatelib.backends``, kept
next to its compiler).
"""

import hashlib
import json
import re

from hecatelib import backups, bulk, consul, paths, validated
from hecatelib.authentik import objects as authentik_objects
from hecatelib.backends import BACKENDS
from hecatelib.caddy import certs as caddy_certs
from hecatelib.caddy import config as caddy_config
from hecatelib.caddy import re2
from hecatelib.dns import zones as dns_zones
from hecatelib.spec import (  # parse_backend, route_backends, route_service: re-exported, they live in hecatelib.spec
    LINK_LOCAL,
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
    is_link_local,
    is_loopback,
    key,
    parse_backend,
    parse_hostport,
    quote,
    route_backends,
    route_service,
    shape_problem,
    shown,
    to_ascii,
)

__all__ = ["PillarError", "check", "parse_backend", "route_backends", "route_service", "validate"]

NAME = r"^[a-z0-9]([a-z0-9_-]{0,62})$"
WILDCARD = {"", "0.0.0.0", "::", "[::]", "*"}  # noqa: S104 - these are the addresses we refuse
ROUTES = "hecate:reverse_proxy:caddy:routes"

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
                report.error(path, f"must be host:port, got {quote(value)}")
        return value


class Regexp(Str):
    """A regular expression as Caddy compiles it: Go's RE2 syntax (hecatelib.caddy.re2 ports Go's
    regexp/syntax rules), not Python's."""

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str):
            problem = re2.problem(value)
            if problem:
                report.error(path, f"is not a regular expression Caddy accepts (Go's RE2 syntax): {problem}")
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
            if not re.fullmatch(r"unix//[A-Za-z0-9._@+-][A-Za-z0-9._@+/-]*", value) or not paths.well_formed(value[len("unix/") :]):
                report.error(
                    path, "a unix socket must be written unix//absolute/path (letters, digits, . _ - + @ /; no ., .. or hidden parts)"
                )
            return value
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        if host in WILDCARD:
            reason = "listens on every interface; Caddy's admin API has no authentication: use a unix socket or 127.0.0.1:<port>"
            report.error(path, f"{quote(value)} {reason}")
        elif not is_loopback(host):
            report.error(path, f"{quote(value)} is not loopback; use a unix socket or 127.0.0.1:<port>")
        elif not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
            report.error(path, f"{quote(value)}: port must be 1..65535")
        return value


class Owner(Str):
    """``tls.owner``: a user name that is not a shared account (``hecatelib.paths.check_owner_name``; the
    edge checks the uid too)."""

    def __init__(self):
        super().__init__(pattern=r"^[a-z_][a-z0-9_-]{0,31}$", what="user name")

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        paths.check_owner_name(value, path, report)
        return value


class TlsMode(Str):
    """YAML reads a bare ``off`` as false: both mean off."""

    def __init__(self):
        super().__init__(choices=["acme", "internal", "off"])

    def __call__(self, value, path, report):
        if value is False:
            value = "off"
        return super().__call__(value, path, report)


# HTTP drops spaces around a field value (RFC 9110 5.5): the client would get another value than the pillar's.
HEADER_VALUE = Str(pattern=r"\A[^ \t](.*[^ \t])?\Z", what="header value (no space at either end: HTTP drops it)")

PROFILE = Map(
    {
        "block_headers": ListOf(Str(pattern=r"^[A-Za-z0-9-]+$", what="header name")),
        "block_paths": ListOf(Str(pattern=r"^/", what="path (must start with /)")),
        "block_path_regexp": Regexp(),
        "block_query_params": ListOf(Str(pattern=r"^[A-Za-z0-9_.-]+$", what="query parameter name")),
        "block_user_agents": Regexp(),
        "encode": ListOf(Str(choices=["zstd", "gzip"]), unique=True),
        "headers": MapOf(HEADER_VALUE, key_spec=Str(pattern=r"^[A-Za-z0-9-]+$", what="header name")),
    }
)

HEALTH = Map(
    {
        "uri": Str(pattern=r"^/", what="path"),
        "interval": Field(Duration(positive=True), default="10s"),
        "timeout": Field(Duration(positive=True), default="5s"),
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
        "auth": authentik_objects.ROUTE_AUTH_SCHEMA,
        "dns": dns_zones.ROUTE_DNS_SCHEMA,
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
            Map(
                {
                    "mode": Field(TlsMode(), default="acme"),
                    "email": Str(pattern=r"^[^@\s]+@[^@\s]+$", what="e-mail"),
                    # custom certificates, Caddy picks one by SNI (hecatelib.caddy.certs); the key is a Secret
                    "certificates": MapOf(
                        Map(
                            {
                                "certificate": Field(caddy_certs.PemCertificate(), required=True),
                                "key": Field(caddy_certs.PemKey(), required=True),
                            }
                        ),
                        key_spec=Str(pattern=NAME, what="certificate name"),
                    ),
                    # where the edge keeps them for Caddy (below /etc/hecate, mode 0700, files 0600); Caddy reads the same path
                    "dir": Field(paths.HostPath("absolute directory path"), default=caddy_certs.DEFAULT_DIR),
                    "owner": Owner(),  # a Caddy that does not run as root: its dedicated system account
                }
            ),
            default=dict,
        ),
        "stream_close_delay": Field(Duration(), default="5m"),
        "consul_dns": HostPort(),  # DNS server for consul:// backends (Consul's DNS, e.g. 127.0.0.1:8600)
        "verify": Field(Map({"enabled": Field(Bool(), default=True), "timeout": Field(Int(1, 300), default=5)}), default=dict),
        "profiles": MapOf(PROFILE, key_spec=Str(pattern=NAME, what="profile name")),
        "routes": Field(ListOf(ROUTE), default=list),  # a DNS-only pillar has none
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

CORE = {
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
    "consul": consul.SCHEMA,
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
                            "tgt_type": Field(Str(choices=["grain", "glob", "list", "compound", "pillar", "nodegroup"]), default="grain"),
                        }
                    ),
                    default=dict,
                ),
                "stage_timeout": Field(Int(10, 86400), default=1800),
                # the routes stage over several edges: one canary first, then batches of this size
                "edge_batch": Field(Int(1, 1000), default=5),
                "verify": Field(Bool(), default=True),
            }
        ),
        default=dict,
    ),
    # between deploys: the drift beacon's interval, and what the reactor does with a drift (docs/reconcile.md)
    "reconcile": Field(
        Map(
            {
                "interval": Field(Int(2, 86400), default=60),  # one GET per interval: even 2 s costs Caddy nothing
                "policy": Field(Str(choices=["alert", "heal"]), default="alert"),
                "max_changes": Field(Int(1, 100000), default=5),
                # deploy each new commit of this git_pillar branch (hecate.follow, on a master schedule)
                "follow_branch": Str(pattern=r"^[A-Za-z0-9._/-]+$", what="git branch name"),
                "history": Field(Int(10, 10000), default=500),  # drift reports kept in Consul KV
                # health and the drift beacon flag a certificate Caddy will not renew in time within this many days
                "cert_warn_days": Field(Int(1, 365), default=14),
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


def schema_for(backends):
    """The contract with these backends' sections: the core keys plus each backend's own."""
    return Map({**CORE, **{b.section: b.schema for b in backends if b.schema}})


SCHEMA = schema_for(BACKENDS)


def check(tree, backends=None, root_prefix=""):
    """Validate ``tree`` (the value of pillar ``hecate``). Returns ``(normalised, report)``; never raises.
    ``backends``: whose sections and checks make the contract (default: hecate's, ``hecatelib.backends``).

    Every error names its key path; a route's path carries its domain when that is a valid name:
    ``hecate:reverse_proxy:caddy:routes[6](app.example.org):backend``. Host paths must lie below hecate's
    roots (``hecatelib.paths``), relocated under ``root_prefix`` (the ``hecate_root_prefix`` option) in tests."""
    with bulk.gc_paused():  # a tree of thousands of routes (hecatelib.bulk)
        return _check(tree, backends, root_prefix)


def _check(tree, backends, root_prefix):
    report = Report("hecate")
    if tree is None:
        report.error("hecate", "missing: the pillar has no 'hecate' key")
        return {}, report
    shape = shape_problem(tree)
    if shape:
        report.error(*shape)
        return {}, report
    out = (SCHEMA if backends is None else schema_for(backends))(tree, "hecate", report)
    # the checks that span keys run on what validated, so one run lists every problem: a route with an error
    # is left out of them, and a check whose section has an error elsewhere is skipped (its error is listed)
    for cross_check, sections in ((_check_caddy, ("reverse_proxy:caddy",)), (_check_nginx, ("reverse_proxy:nginx", "reverse_proxy:caddy")),
                                  (_check_coturn, ("reverse_proxy:coturn",))):  # fmt: skip
        _on_what_validated(out, report, cross_check, sections)
    _on_what_validated(out, report, lambda tree, found: paths.check_pillar(tree, found, root_prefix), None)
    _on_what_validated(
        out, report, lambda tree, found: backups.check_pillar(tree, found, BACKENDS if backends is None else backends), ("backup",)
    )
    for backend in BACKENDS if backends is None else backends:
        if backend.check:  # they read the normalised caddy section and each other's: only errors in routes may remain
            _on_what_validated(out, report, backend.check, None)
    _name_routes(tree, report)
    return out, report


_ROUTE_INDEX = re.compile(re.escape(ROUTES) + r"\[([0-9]+)\]")
_ROUTE_REF = re.compile(r"(?<![A-Za-z_])(routes\[)([0-9]+)(\])")


def _related(path, section):
    """Is ``path`` inside ``section``, or one of its parents (``hecate:reverse_proxy`` for its caddy)?"""
    return path == section or path.startswith(section + ":") or section.startswith(path + ":")


def _on_what_validated(out, report, cross_check, sections):
    """Run ``cross_check(out, report)`` on the routes that have no error so far, unless a key it reads outside
    the routes has one (``sections``: the ``hecate:``-relative sections it reads; None: every section). The
    routes list is narrowed in place for the call; the problems it finds name each route by its index in the
    pillar (``routes[3]``, ``also at routes[0]``)."""
    outside = [path for path, _ in report.errors if not _ROUTE_INDEX.match(path)]
    if any(sections is None or any(_related(path, f"hecate:{s}") for s in sections) for path in outside):
        return
    broken = {int(m.group(1)) for path, _ in report.errors if (m := _ROUTE_INDEX.match(path))}
    caddy = out.get("reverse_proxy", {}).get("caddy", {})
    routes = caddy.get("routes")
    if not broken or not isinstance(routes, list):
        cross_check(out, report)
        return
    kept = [i for i in range(len(routes)) if i not in broken]
    found = Report(report.root)
    caddy["routes"] = [routes[i] for i in kept]
    try:
        cross_check(out, found)
    finally:
        caddy["routes"] = routes

    def pillar_index(text):
        return _ROUTE_REF.sub(
            lambda m: f"{m.group(1)}{kept[int(m.group(2))] if int(m.group(2)) < len(kept) else m.group(2)}{m.group(3)}", text
        )

    report.errors.extend((pillar_index(path), pillar_index(reason)) for path, reason in found.errors)
    report.warnings.extend((pillar_index(path), pillar_index(reason)) for path, reason in found.warnings)


def digest(tree):
    """The digest of a pillar tree: canonical JSON, sha256 (equal trees, equal digests, whatever their order)."""
    text = json.dumps(tree, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def validate_on_host(tree, cachedir, root_prefix="", tree_digest=None):
    """:func:`validate` ``tree``, unless this host validated this very tree to itself before with the same
    helpers and root prefix (:mod:`hecatelib.validated`): then ``tree`` as it is. The ext_pillar's output is
    such a tree, so the runner and every state read it without a second validation."""
    tree_digest = tree_digest or digest(tree)
    if validated.known(cachedir, tree_digest, root_prefix):
        return tree
    out = validate(tree, root_prefix=root_prefix)
    if digest(out) == tree_digest:
        validated.remember(cachedir, tree_digest, root_prefix)
    return out


def validate(tree, backends=None, root_prefix=""):
    """Return the normalised ``hecate`` tree, or raise ``PillarError`` naming every bad key path."""
    out, report = check(tree, backends, root_prefix)
    report.raise_if_errors()
    return out


def route_path(i, domain=None):
    """The key path of route ``i``: ``hecate:reverse_proxy:caddy:routes[i](domain)``."""
    return f"{index(ROUTES, i)}({domain})" if domain else index(ROUTES, i)


def _name_routes(tree, report):
    """Put each route's domain into the key paths that name it by index (every check, whichever
    module made the path). Only a valid name is shown: the path must stay short and plain; an
    international one in both forms, ``routes[0](straße.example (xn--strae-oqa.example))``."""
    routes = tree
    for name in ("reverse_proxy", "caddy", "routes"):  # the raw tree: any of these may be of any type
        routes = routes.get(name) if isinstance(routes, dict) else None
    if not isinstance(routes, list) or not (report.errors or report.warnings):
        return
    domains = {}
    for i, route in enumerate(routes):
        domain = route.get("domain") if isinstance(route, dict) else None
        if isinstance(domain, str) and is_hostname(domain, wildcard=True):
            domains[i] = shown(to_ascii(domain))
    pattern = re.compile(re.escape(ROUTES) + r"\[([0-9]+)\](?![(])")

    def named(path):
        return pattern.sub(lambda m: route_path(int(m.group(1)), domains.get(int(m.group(1)))), path, count=1)

    report.errors[:] = [(named(path), reason) for path, reason in report.errors]
    report.warnings[:] = [(named(path), reason) for path, reason in report.warnings]


def _admin_endpoint(caddy):
    """Where Caddy's admin API listens: ``(ports on loopback, unix socket path or None)``. Both the
    ``admin`` address and ``ports.admin`` count (the port is refused even when admin is a socket)."""
    admin = caddy["admin"]
    ports = {caddy["ports"]["admin"]}
    if admin.startswith("unix/"):
        return ports, admin[len("unix/") :]
    port = admin.rpartition(":")[2]
    if port.isascii() and port.isdigit():
        ports.add(int(port))
    return ports, None


def _check_caddy(tree, report):
    caddy = tree["reverse_proxy"]["caddy"]
    path = "hecate:reverse_proxy:caddy"
    ports = caddy["ports"]
    if len({ports["http"], ports["https"], ports["admin"]}) != 3:
        report.error(f"{path}:ports", "http, https and admin must be three different ports")
    caddy.setdefault("admin", f"127.0.0.1:{ports['admin']}")
    admin_ports, _ = _admin_endpoint(caddy)
    profiles = {**BUILTIN_PROFILES, **caddy.get("profiles", {})}
    caddy["profiles"] = profiles
    domains, services = {}, {}
    for i, route in enumerate(caddy["routes"]):
        where = route_path(i)
        route["service"] = route_service(route)
        if not route_backends(route):
            report.error(key(where, "backend"), "required: give backend (host:port or https://host) or backends")
        for name, seen, value in (("domain", domains, route["domain"]), ("service", services, route["service"])):
            if value in seen:
                report.error(key(where, name), f"duplicate {name} {quote(value)} (also at routes[{seen[value]}])")
            seen.setdefault(value, i)
        if is_loopback(route["domain"]):
            reason = "is a loopback name: its route would answer requests meant for the edge itself (and its admin API)"
            report.error(key(where, "domain"), f"{quote(route['domain'])} {reason}")
        if route["profile"] not in profiles:
            report.error(key(where, "profile"), f"unknown profile {quote(route['profile'])}; defined: {', '.join(sorted(profiles))}")
        parsed = [parse_backend(b) for b in route_backends(route)]
        for j, backend in enumerate(parsed):
            if backend["port"] in admin_ports and backend["scheme"] != "consul" and is_loopback(backend["host"]):
                field = "backend" if route.get("backend") and j == 0 else "backends"
                reason = f"is Caddy's admin API (port {backend['port']} on this machine): a route would publish it to the world"
                report.error(key(where, field), f"{quote(route_backends(route)[j])} {reason}")
        schemes = {b["scheme"] for b in parsed}
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
        if route.get("health"):
            _check_health_upstreams(tree, route, where, schemes, report)
    _check_host_overlaps(caddy["routes"], report)
    caddy_certs.check_pillar(tree, report)


def _check_health_upstreams(tree, route, where, schemes, report):
    """``health`` configures Caddy's active health checks, which run for static upstreams only
    (``doActiveHealthCheckForAllHosts`` walks ``h.Upstreams``; "Active health checks do not run for dynamic
    upstreams", caddy's modules/caddyhttp/reverseproxy/healthchecks.go). A route Caddy reaches through
    Consul (``dynamic_upstreams``) would keep the key and probe nothing: refused. Consul's DNS answers only
    instances whose checks pass (``Filter`` in consul's agent/dns.go), so the check belongs to the service."""
    why = "Caddy runs no active health checks for dynamic upstreams (reverseproxy/healthchecks.go); Consul's DNS "
    why += "answers only instances whose checks pass: give the service a check in Consul (its Nomad job's check)"
    if "consul" in schemes:
        report.error(key(where, "health"), f"a consul:// backend: {why}")
    elif caddy_config.nomad_service(route, tree):
        consul = caddy_config.nomad_service(route, tree)["consul"]
        report.error(key(where, "health"), f"with reverse_proxy:caddy:consul_dns set, this route goes to Consul service {consul}: {why}")


def _check_host_overlaps(routes, report):
    """Caddy's host matcher lets ``*`` stand for exactly one label (caddyhttp MatchHost), and the
    compiler puts exact hosts before wildcards (hecatelib.caddy.config orders routes by host specificity), so
    two routes can only overlap as ``*.example.org`` and ``app.example.org``: the exact host wins.
    Duplicate domains are refused above, so no overlap is left ambiguous. What is left to say is
    when the exact host drops protection its wildcard has."""
    protected = {r["domain"][2:]: i for i, r in enumerate(routes) if r["domain"].startswith("*.") and r.get("auth")}
    for i, route in enumerate(routes):
        parent = route["domain"].partition(".")[2]
        if not route["domain"].startswith("*.") and parent in protected and not route.get("auth"):
            report.warn(
                key(route_path(i), "auth"),
                f"{route['domain']} is served without authentication although *.{parent} "
                f"(routes[{protected[parent]}]) requires it: the exact host wins",
            )


def _check_nginx(tree, report):
    nginx = tree["reverse_proxy"].get("nginx") or {}
    seen_names, seen_ports = {}, {}
    caddy_ports = set(tree["reverse_proxy"]["caddy"]["ports"].values())
    for i, proxy in enumerate(nginx.get("tcp_proxies", [])):
        where = index("hecate:reverse_proxy:nginx:tcp_proxies", i)
        host, port = parse_hostport(proxy["backend"])
        if is_loopback(host) and port in _admin_endpoint(tree["reverse_proxy"]["caddy"])[0]:
            report.error(key(where, "backend"), f"port {port} on this machine is Caddy's admin API: never proxy to it")
        if is_link_local(host):
            report.error(key(where, "backend"), f"{quote(host)} {LINK_LOCAL}: a proxy would publish it")
        if proxy["name"] in seen_names:
            report.error(key(where, "name"), f"duplicate name {quote(proxy['name'])}")
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
