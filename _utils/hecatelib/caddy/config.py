"""Compile the validated ``hecate`` tree into Caddy JSON. Pure functions: no I/O, same input -> same output.

What hecate owns in a Caddy config (everything else is left as found):

- ``apps.http.servers.hecate``: one server on ``ports.https`` (``ports.http`` when TLS is off): first
  ``hecate_strip_auth_headers`` (every request), then its routes each ``@id``'d ``hecate_route_<service>``
  (exact hosts before wildcards), and a catch-all ``hecate_catch_all`` (404).
- ``apps.http.http_port`` / ``apps.http.https_port`` (so redirects and ACME use the pillar's ports).
- the TLS automation policy ``@id`` ``hecate_tls`` (first in the list), for ``acme`` and ``internal``.
- ``apps.tls.certificates.load_files`` entries ``@id``'d ``hecate_cert_<name>``: the pillar's custom
  certificates, as files on the edge (paths only: the key never enters the config; see ``hecatelib.caddy.certs``).
- ``apps.pki.certificate_authorities.local.install_trust = false`` with ``internal`` (never touch the
  host's trust store).
- ``admin.listen``: always written, because a config without an admin block moves the admin endpoint.

Pillar strings are data. Caddy runs its replacer (``replacer.go``) over many string fields at request or
provision time, so a header value ``{file./etc/passwd}`` would be read from disk and sent to clients. Every
pillar string that lands in such a field goes through :func:`literal`; regular expressions do not (Caddy
compiles them without the replacer: ``MatchRegexp.Provision`` in ``modules/caddyhttp/matchers.go``), nor does
the active health check's ``uri`` (``url.Parse`` in ``ActiveHealthChecks.Provision``, ``healthchecks.go``).

All the Caddy JSON hecate writes is produced here, forward auth to authentik's outpost included. With
``consul_dns`` set, authentik's and helen's routes go through the Consul services of the Nomad jobs hecate
deploys for them (:data:`NOMAD_SERVICES`), as the seed's Caddyfile did.
"""

import ipaddress
import json
import posixpath

from hecatelib import spec
from hecatelib.authentik import objects as authentik_objects
from hecatelib.caddy import certs as caddy_certs

SERVER = "hecate"
SERVER_ID = "hecate_server"
ROUTE_PREFIX = "hecate_route_"
OUTPOST_SUFFIX = ".outpost"  # the @id of a protected route's outpost route: its own plus this
CATCH_ALL_ID = "hecate_catch_all"
GUARD_PREFIX = "hecate_guard_"  # a profile's blocking rules, once for all the exact hosts that use it
STRIP_ID = "hecate_strip_auth_headers"
TLS_POLICY_ID = "hecate_tls"
SERVER_SETTINGS = "hecate server settings (listen, TLS policy, certificates, ports, admin)"
NO_ROUTE_HEADER = "X-Hecate-Route"  # set only by the catch-all: lets the post-write check tell "unrouted"


def literal(text):
    """``text`` escaped so that Caddy's replacer gives it back unchanged: ``\\{`` and ``\\}`` are written as
    ``{`` and ``}`` (``Replacer.replace`` in caddy's ``replacer.go``: "check for escaped braces"; a backslash
    before anything else is kept as is). For fields Caddy passes through ReplaceAll/ReplaceKnown/ReplaceOrErr."""
    return text.replace("{", "\\{").replace("}", "\\}")


def route_id(route):
    return f"{ROUTE_PREFIX}{route['service']}"


def caddy_settings(tree):
    return tree["reverse_proxy"]["caddy"]


def admin_listen(tree):
    """The admin address as Caddy's ``admin.listen`` wants it (``unix//path`` or ``host:port``)."""
    return caddy_settings(tree)["admin"]


def _static(status, abort=False):
    return {"handler": "static_response", "abort": True} if abort else {"handler": "static_response", "status_code": status}


def profile_routes(profile):
    """The blocking rules of a profile, one route per rule (matchers in one set would be ANDed)."""
    routes = []
    if profile.get("block_user_agents"):  # a regexp: compiled by Caddy without the replacer, sent as is
        routes.append(
            {"match": [{"header_regexp": {"User-Agent": {"pattern": profile["block_user_agents"]}}}], "handle": [_static(0, abort=True)]}
        )
    if profile.get("block_headers"):  # MatchHeader replaces in values only (matchHeaders): names as they are
        routes.append({"match": [{"header": {name: ["*"]}} for name in profile["block_headers"]], "handle": [_static(404)]})
    if profile.get("block_paths"):  # MatchPath runs ReplaceAll over each pattern (matchers.go MatchWithError)
        routes.append({"match": [{"path": [literal(p) for p in profile["block_paths"]]}], "handle": [_static(404)]})
    if profile.get("block_path_regexp"):
        routes.append({"match": [{"path_regexp": {"pattern": profile["block_path_regexp"]}}], "handle": [_static(404)]})
    if profile.get("block_query_params"):  # MatchQuery runs ReplaceAll over names and values
        routes.append({"match": [{"query": {literal(name): ["*"]}} for name in profile["block_query_params"]], "handle": [_static(404)]})
    return routes


def profile_handlers(profile):
    """Response headers and compression: the handlers that wrap the proxy."""
    handlers = []
    if profile.get("headers"):  # HeaderOps.ApplyTo runs ReplaceKnown over names and values (headers.go)
        response = {"set": {literal(k): [literal(v)] for k, v in sorted(profile["headers"].items())}}
        handlers.append({"handler": "headers", "response": response})
    if profile.get("encode"):
        handlers.append({"handler": "encode", "encodings": {name: {} for name in profile["encode"]}, "prefer": list(profile["encode"])})
    return handlers


def dial(backend):
    """A parsed backend as Caddy dials it (and lists it in /reverse_proxy/upstreams): ``host:port``, ``[v6]:port``."""
    host = f"[{backend['host']}]" if ":" in backend["host"] else backend["host"]
    return f"{host}:{backend['port']}"


def upstream_fields(backends, caddy, tls_skip_verify=False):
    """The reverse_proxy fields that say where Caddy dials parsed ``backends`` (one scheme): ``upstreams``,
    or ``dynamic_upstreams`` for ``consul://`` (SRV without a port, A records with one; asked of
    ``consul_dns`` when the pillar sets it: ``UpstreamResolver`` in caddy's ``reverseproxy/upstreams.go``),
    plus the TLS transport for ``https://``. Shared by the routes' proxy and forward auth to the outpost."""
    scheme = backends[0]["scheme"]
    fields = {}
    if scheme == "consul":
        backend = backends[0]
        dynamic = {"source": "srv", "name": f"{backend['host']}.service.consul", "refresh": "5s"}
        if backend["port"]:
            dynamic.update(source="a", port=str(backend["port"]))
        if caddy.get("consul_dns"):
            resolver = {"addresses": [caddy["consul_dns"]]}
            dynamic["resolver"] = resolver
            if not backend["port"]:
                # SRV answers name targets (<node>.node.<dc>.consul, <hex>.addr.<dc>.consul) that Caddy dials
                # through its transport (SRVUpstreams.GetUpstreams in reverseproxy/upstreams.go): resolve them
                # with Consul's DNS too (HTTPTransport.Resolver, reverseproxy/httptransport.go)
                fields["transport"] = {"protocol": "http", "resolver": resolver}
        fields["dynamic_upstreams"] = dynamic
    else:
        fields["upstreams"] = [{"dial": dial(b)} for b in backends]
    if scheme == "https":
        fields["transport"] = {"protocol": "http", "tls": {"insecure_skip_verify": True} if tls_skip_verify else {}}
    return fields


# The services hecate runs on Nomad that Caddy proxies to, as the seed's Caddyfile did
# (hecate-reverse-proxy.nomad): the Consul service each job registers (salt/hecate/nomad/authentik.nomad.j2,
# helen-bridge.nomad.j2); for helen, the seed's ``header_up X-Forwarded-Source "hecate-cloud"`` and
# ``header_up X-Original-Host {host}`` (hecate's own constants, not pillar strings: the placeholder is meant
# to expand to the request's Host) and its fallback to helen's own address when the bridge is not in Consul.
NOMAD_SERVICES = {
    "authentik": {"consul": "authentik-server"},
    "helen": {
        "consul": "helen-bridge",
        "headers": {"X-Forwarded-Source": ["hecate-cloud"], "X-Original-Host": ["{http.request.host}"]},
        "fallback": True,
    },
}


def nomad_service(route, tree):
    """The :data:`NOMAD_SERVICES` entry Caddy reaches ``route`` through, or None: authentik's route
    (``service`` = ``hecate:authentik:service``) and the ``service: helen`` route (the one the helen-bridge
    job forwards to), only when the pillar gives Caddy Consul's DNS (``consul_dns``; the jobs' ports are
    dynamic, only Consul knows them). A route whose backend is already ``consul://`` is kept as written."""
    if not caddy_settings(tree).get("consul_dns"):
        return None
    if any(b.startswith("consul://") for b in spec.route_backends(route)):
        return None
    service = spec.route_service(route)
    if service == authentik_objects.section(tree)["service"]:
        return NOMAD_SERVICES["authentik"]
    return NOMAD_SERVICES["helen"] if service == "helen" else None


def route_upstreams(route, tree):
    """The backends Caddy dials for ``route``: its Nomad job's Consul service, else the pillar's."""
    service = nomad_service(route, tree)
    return [f"consul://{service['consul']}"] if service else spec.route_backends(route)


def reverse_proxy(route, tree):
    caddy = caddy_settings(tree)
    backends = [spec.parse_backend(b) for b in route_upstreams(route, tree)]
    handler = {"handler": "reverse_proxy", "stream_close_delay": caddy["stream_close_delay"]}
    scheme = backends[0]["scheme"]
    handler.update(upstream_fields(backends, caddy, route["tls_skip_verify"]))
    service = nomad_service(route, tree) or {}
    if service.get("headers"):
        handler["headers"] = {"request": {"set": {name: list(values) for name, values in service["headers"].items()}}}
    fallback = [spec.parse_backend(b) for b in spec.route_backends(route)] if service.get("fallback") else []
    if fallback and all(b["scheme"] == "http" for b in fallback):
        # Caddy dials the static upstreams when the dynamic lookup fails ("falling back to static upstreams",
        # Handler.proxyLoopIteration in reverseproxy/reverseproxy.go): the seed's {{ else }} to helen's address
        handler["upstreams"] = [{"dial": dial(b)} for b in fallback]
    if len(backends) > 1 or scheme == "consul":
        handler["load_balancing"] = {"selection_policy": {"policy": route["lb_policy"]}, "try_duration": "2s"}
    health = route.get("health")
    if health and health.get("uri"):  # url.Parse only, no replacer (healthchecks.go): sent as is
        active = {"uri": health["uri"], "interval": health["interval"], "timeout": health["timeout"]}
        if health.get("status"):
            active["expect_status"] = health["status"]
        handler["health_checks"] = {"active": active}
    return handler


# -- forward auth to authentik's outpost ----------------------------------------------------------------
# Headers the outpost vouches for (authentik's documented list for Caddy), plus Authorization for providers
# that send HTTP basic credentials to the backend (forward_auth copies it when asked to).
AUTH_COPY_HEADERS = (*authentik_objects.AK_HEADERS, "Authorization")
PRIVATE_RANGES = ["192.168.0.0/16", "172.16.0.0/12", "10.0.0.0/8", "127.0.0.1/8", "fd00::/8", "::1"]


def _proxy_to(upstream, caddy):
    """A reverse_proxy handler to the outpost (``host:port``, ``http(s)://...`` or ``consul://...``)."""
    return {"handler": "reverse_proxy", **upstream_fields([spec.parse_backend(upstream)], caddy)}


def _outpost_upstream(tree):
    """``outpost.upstream`` when set, else where Caddy reaches authentik's route (its Nomad service or backend)."""
    route = authentik_objects.authentik_route(tree)
    explicit = authentik_objects.section(tree)["outpost"].get("upstream")
    upstreams = route_upstreams(route, tree) if route is not None and not explicit else []
    upstream = upstreams[0] if upstreams else authentik_objects.outpost_upstream(tree)
    if upstream is None:
        raise ValueError("no outpost upstream: set hecate:authentik:outpost:upstream or add authentik's route")
    return upstream


def strip_route():
    """The server's first route, for every request (no matcher, not terminal): delete every client-sent
    ``X-Authentik-*`` request header (the explicit list and a wildcard for any future one), so a backend,
    protected or not, only ever sees what the outpost vouched for. Once per server, not once per route."""
    request = {"delete": [*authentik_objects.AK_HEADERS, "X-Authentik-*"]}
    return {"@id": STRIP_ID, "handle": [{"handler": "headers", "request": request}]}


def _copy_header_routes(name):
    """Caddy's own ``forward_auth copy_headers`` for one header (``forwardauth/caddyfile.go``
    ``parseCaddyfile``): delete it, then set it only when the outpost's answer had a non-empty value."""
    placeholder = f"{{http.reverse_proxy.header.{name}}}"
    return [
        {"handle": [{"handler": "headers", "request": {"delete": [name]}}]},
        {
            "match": [{"not": [{"vars": {placeholder: [""]}}]}],
            "handle": [{"handler": "headers", "request": {"set": {name: [placeholder]}}}],
        },
    ]


def forward_auth_handler(tree):
    """Caddy's ``forward_auth`` expanded (``forwardauth/caddyfile.go``), as authentik documents it for Caddy:
    GET the outpost's auth endpoint; a 2xx copies the vouched-for headers onto the request and goes on;
    anything else (the 302 to the login flow, a 401) goes back to the client."""
    handler = _proxy_to(_outpost_upstream(tree), caddy_settings(tree))
    handler["rewrite"] = {"method": "GET", "uri": authentik_objects.AUTH_URI}
    handler["headers"] = {"request": {"set": {"X-Forwarded-Method": ["{http.request.method}"], "X-Forwarded-Uri": ["{http.request.uri}"]}}}
    copies = [{"handle": [{"handler": "vars"}]}]
    for name in sorted(AUTH_COPY_HEADERS):
        copies.extend(_copy_header_routes(name))
    handler["handle_response"] = [{"match": {"status_code": [2]}, "routes": copies}]
    trusted = authentik_objects.section(tree).get("trusted_proxies")
    if trusted:
        handler["trusted_proxies"] = _expand_trusted(trusted)
    return handler


def _expand_trusted(items):
    out = []
    for item in items:
        for cidr in PRIVATE_RANGES if item == "private_ranges" else [item]:
            if cidr not in out:
                out.append(cidr)
    return out


def _protected(route):
    return bool(route.get("auth") or route.get("auth") == {})


def auth_handlers(route, tree):
    """The route to put in a protected route's subroute before its reverse_proxy: forward auth."""
    return [{"handle": [forward_auth_handler(tree)]}] if _protected(route) else []


def outpost_route(route, tree):
    """Server-level routes placed before a protected route: ``/outpost.goauthentik.io/*`` on its host goes
    to the outpost (sign-in callback, start, sign-out), ahead of forward auth."""
    if not _protected(route):
        return []
    proxy = _proxy_to(_outpost_upstream(tree), caddy_settings(tree))
    return [
        {
            "@id": f"{route_id(route)}{OUTPOST_SUFFIX}",
            "match": [{"host": [route["domain"]], "path": [authentik_objects.OUTPOST_PATH]}],
            "handle": [{"handler": "subroute", "routes": [{"handle": [proxy]}]}],
            "terminal": True,
        }
    ]


# -- routes and server --------------------------------------------------------------------------------------
def compile_route(route, tree, shared=None, guarded=True):
    """One pillar route -> one Caddy route (a host match around a subroute). ``shared``: a dict the caller
    keeps across routes, so identical profile and auth JSON is built once (5000 routes, one profile).
    ``guarded=False``: without its profile's blocking rules, and for an unprotected route without its
    response headers and compression too (:func:`guard_route` runs them before it; a protected route keeps
    them, after its forward auth)."""
    shared = {} if shared is None else shared
    caddy = caddy_settings(tree)
    name = route["profile"]
    if ("profile", name) not in shared:
        shared["profile", name] = (profile_routes(caddy["profiles"][name]), profile_handlers(caddy["profiles"][name]))
    inner, handlers = shared["profile", name]
    inner = list(inner) if guarded else []
    if _protected(route):
        if "auth" not in shared:
            shared["auth"] = auth_handlers(route, tree)
        inner.extend(shared["auth"])
    own = handlers if guarded or _protected(route) else []
    inner.append({"handle": [*own, reverse_proxy(route, tree)]})
    # The A-label (hecatelib.spec.to_ascii, done by the validator): Caddy's own conversion, idna.ToASCII of
    # golang.org/x/net in MatchHost.Provision (modules/caddyhttp/matchers.go) and in the TLS automation
    # policy's subjects (AutomationPolicy.Provision, modules/caddytls/automation.go), is the Punycode profile:
    # no UTS 46 mapping, no IDNA 2008 check (BÜCHER would become xn--bcher-2pa, not xn--bcher-kva).
    return {
        "@id": route_id(route),
        "match": [{"host": [route["domain"]]}],
        "handle": [{"handler": "subroute", "routes": inner}],
        "terminal": True,
    }


def host_order(domain):
    """Sort key: exact hosts before wildcards, the longest (most specific) wildcard first, as Caddy's
    Caddyfile adapter orders site blocks (``httpcaddyfile/httptype.go``, ``sort.SliceStable`` with
    ``specificity``: length minus the ``*``). Caddy runs a server's routes in order and stops at the first
    terminal match, so ``*.example.org`` listed first would otherwise serve ``secret.example.org`` without
    its auth. Exact hosts never overlap each other: they keep their pillar order (a stable sort)."""
    if "*" not in domain:
        return (False, 0)
    return (True, -(len(domain) - domain.count("*")))


def catch_all():
    return {
        "@id": CATCH_ALL_ID,
        "handle": [
            {"handler": "headers", "response": {"set": {NO_ROUTE_HEADER: ["none"]}}},
            {"handler": "static_response", "status_code": 404, "body": "no site is configured for this host\n"},
        ],
    }


def guard_route(key, rules, hosts):
    """Blocking rules (:func:`profile_routes`, plus the profile's headers and compression for unprotected
    routes) for ``hosts``, once: a route that is not terminal, so a request the rules let through goes on
    to its host's own route, its response wrapped. Caddy provisions every matcher and handler of its config
    on every reload: at 5000 routes (one profile) a reload took 3.2 CPU seconds with all of it inside each
    route, 1.2 with the rules once, 0.6 with the headers and compression once too."""
    return {"@id": f"{GUARD_PREFIX}{key}", "match": [{"host": hosts}], "handle": [{"handler": "subroute", "routes": rules}]}


def compile_server(tree):
    """hecate's server: the header strip, then for the exact hosts their outpost routes and the guard routes
    (:func:`guard_route`: one per profile for unprotected hosts, its rules, headers and compression, and
    ``<profile>.auth`` for protected ones, its rules only), then each route in host order (exact hosts,
    then wildcards, which keep everything inside their route with their outpost route before it: a
    wildcard also matches exact hosts, which must not get its rules), then the catch-all. Exact hosts never
    overlap, so for each of them the same handlers run in the same order as with all of them inside its
    route: its outpost route; its rules; forward auth if protected; headers, compression, the proxy."""
    caddy = caddy_settings(tree)
    mode = caddy["tls"]["mode"]
    port = caddy["ports"]["http"] if mode == "off" else caddy["ports"]["https"]
    outposts, guarded, routes, shared = [], {}, [], {}
    for route in sorted(caddy["routes"], key=lambda r: host_order(r["domain"])):  # stable: pillar order otherwise
        name = route["profile"]
        if ("profile", name) not in shared:
            shared["profile", name] = (profile_routes(caddy["profiles"][name]), profile_handlers(caddy["profiles"][name]))
        rules, handlers = shared["profile", name]
        shared_part = rules if _protected(route) else [*rules, *([{"handle": handlers}] if handlers else [])]
        if "*" in route["domain"] or not shared_part:
            routes.extend(outpost_route(route, tree))
            routes.append(compile_route(route, tree, shared))
            continue
        outposts.extend(outpost_route(route, tree))
        key = f"{name}.auth" if _protected(route) else name
        guarded.setdefault(key, (shared_part, []))[1].append(route["domain"])
        routes.append(compile_route(route, tree, shared, guarded=False))
    guards = [guard_route(key, part, hosts) for key, (part, hosts) in guarded.items()]
    hosts = [f"[{h}]" if ":" in h else h for h in caddy.get("bind") or [""]]  # "": every interface
    server = {
        "@id": SERVER_ID,
        "listen": [f"{host}:{port}" for host in hosts],
        "routes": [strip_route(), *outposts, *guards, *routes, catch_all()],
    }
    if mode == "off":
        server["automatic_https"] = {"disable": True}
    return server


def tls_policy(tree):
    caddy = caddy_settings(tree)
    mode = caddy["tls"]["mode"]
    if mode == "off":
        return None
    issuer = {"module": "internal"} if mode == "internal" else {"module": "acme"}
    if mode == "acme" and caddy["tls"].get("email"):
        issuer["email"] = literal(caddy["tls"]["email"])  # ReplaceOrErr in ACMEIssuer.Provision (acmeissuer.go)
    subjects = sorted({r["domain"] for r in caddy["routes"]})
    return {"@id": TLS_POLICY_ID, "subjects": subjects, "issuers": [issuer]}


def _own(parent, key):
    """A fresh copy of the mapping ``parent[key]`` (created when missing), set back into ``parent``:
    only the mappings on the way to what hecate writes are copied; the rest stays shared, untouched."""
    child = dict(parent.get(key) or {})
    parent[key] = child
    return child


def _is_owned_certificate(entry):
    return isinstance(entry, dict) and str(entry.get("@id", "")).startswith(caddy_certs.ID_PREFIX)


def owned_certificates(config):
    """hecate's ``load_files`` entries in a config (``@id`` ``hecate_cert_<name>``), in order."""
    tls = ((config or {}).get("apps") or {}).get("tls") or {}
    return [f for f in (tls.get("certificates") or {}).get("load_files") or [] if _is_owned_certificate(f)]


def _set_certificates(apps, entries):
    """Put ``entries`` first in ``apps.tls.certificates.load_files``, others' entries kept after them;
    when hecate's were the last ones, the keys on the way go too."""
    current = (((apps.get("tls") or {}).get("certificates") or {}).get("load_files")) or []
    others = [f for f in current if not _is_owned_certificate(f)]
    if entries or others:
        _own(_own(apps, "tls"), "certificates")["load_files"] = entries + others
    elif current:
        certificates = _own(_own(apps, "tls"), "certificates")
        del certificates["load_files"]
        if not certificates:
            del apps["tls"]["certificates"]
        if not apps["tls"]:
            del apps["tls"]


def desired_config(current, tree, certificates=True):
    """The whole config Caddy should have: ``current`` with hecate's parts replaced. Pure: ``current``
    is not modified (a deep copy of a 1000-route config cost more than the compile itself).

    ``certificates=False`` leaves the custom certificates out (the bootstrap of a new allocation: their
    files are written by the routes state, which runs after the Nomad job, and a rotation must not change
    the job's text). Raises ``hecatelib.caddy.certs.CertError`` for a certificate that cannot be parsed."""
    caddy = caddy_settings(tree)
    config = dict(current) if isinstance(current, dict) else {}
    _own(config, "admin")["listen"] = admin_listen(tree)
    apps = _own(config, "apps")
    http = _own(apps, "http")
    http["http_port"] = caddy["ports"]["http"]
    http["https_port"] = caddy["ports"]["https"]
    _own(http, "servers")[SERVER] = compile_server(tree)

    policy = tls_policy(tree)
    others = [p for p in (((apps.get("tls") or {}).get("automation") or {}).get("policies") or []) if p.get("@id") != TLS_POLICY_ID]
    policies = ([policy] if policy else []) + others
    if policies:
        _own(_own(apps, "tls"), "automation")["policies"] = policies
    elif "policies" in ((apps.get("tls") or {}).get("automation") or {}):
        tls = _own(apps, "tls")
        automation = _own(tls, "automation")
        del automation["policies"]
        if not automation:
            del tls["automation"]
        if not tls:
            del apps["tls"]
    if caddy["tls"]["mode"] == "internal":
        _own(_own(_own(apps, "pki"), "certificate_authorities"), "local")["install_trust"] = False
    _set_certificates(apps, caddy_certs.load_files(tree) if certificates and caddy["tls"]["mode"] != "off" else [])
    return config


def bootstrap_config(tree):
    """A complete config for a new Caddy (the Nomad job starts ``caddy run --resume`` with it), without
    the custom certificates (see :func:`desired_config`)."""
    return desired_config({}, tree, certificates=False)


def owned_routes(config):
    """hecate's routes in a live config, by ``@id`` (the catch-all excluded)."""
    server = (((config or {}).get("apps") or {}).get("http") or {}).get("servers", {}).get(SERVER) or {}
    return {r["@id"]: r for r in server.get("routes", []) if r.get("@id", "").startswith(ROUTE_PREFIX)}


def _hosts(route):
    return [h for m in route.get("match", []) for h in m.get("host", [])]


def route_summary(route):
    """Domain and upstreams of a compiled route: what a human wants to see in a diff (an international
    host in both forms, ``straße.example (xn--strae-oqa.example)``: Caddy matches the A-label)."""
    hosts = [spec.shown(h) for h in _hosts(route)]
    proxy = _backend_proxy(route) or {}
    dynamic = proxy.get("dynamic_upstreams")
    upstreams = [f"{dynamic['source']}:{dynamic['name']}"] if dynamic else []
    upstreams += [u.get("dial") for u in proxy.get("upstreams", [])]  # the only ones, or the dynamic ones' fallback
    return {"hosts": hosts, "upstreams": upstreams}


def _backend_proxy(route):
    """The backend reverse_proxy of a compiled route: the last handler of its subroute's last route."""
    try:
        handler = route["handle"][0]["routes"][-1]["handle"][-1]
    except (KeyError, IndexError, TypeError):
        return None
    return handler if handler.get("handler") == "reverse_proxy" else None


def diff(current, desired):
    """What changes between two full configs, for humans: routes added, removed, renamed or changed, plus
    the other owned keys. A route whose ``service`` (its ``@id``) changed while its hosts stayed is one
    ``renamed`` entry (``{"hosts", "old": <old id>, "new": <new id>}``), not an add and a remove."""
    before, after = owned_routes(current), owned_routes(desired)
    changes = {}
    gone, new = sorted(before.keys() - after.keys()), sorted(after.keys() - before.keys())
    renamed = _renames({i: before[i] for i in gone}, {i: after[i] for i in new})
    gone = [i for i in gone if i not in renamed]
    new = [i for i in new if i not in {r["new"] for r in renamed.values()}]
    added = {i: route_summary(after[i]) for i in new}
    removed = {i: route_summary(before[i]) for i in gone}
    changed = {}
    guards_before, guards_after = guards(current), guards(desired)
    for i in sorted(after.keys() & before.keys()):
        if after[i] != before[i]:
            old, new_summary = route_summary(before[i]), route_summary(after[i])
            changed[i] = {"old": old, "new": new_summary} if old != new_summary else ROUTE_SETTINGS
        elif any(guards_before.get(host) != guards_after.get(host) for host in _hosts(after[i])):
            changed[i] = ROUTE_SETTINGS  # its profile's blocking rules (its guard route) changed
    for verb, found in (("added", added), ("removed", removed), ("renamed", {r["new"]: r for r in renamed.values()}), ("changed", changed)):
        if found:
            changes[verb] = found
    certificates = certificate_changes(current, desired)
    if certificates:
        changes["certificates"] = certificates
    rest_before, rest_after = _without_routes(current), _without_routes(desired)
    if rest_before != rest_after:  # certificates count here too: hecate.reconcile counts routes and server
        changes["server"] = SERVER_SETTINGS
    return changes


ROUTE_SETTINGS = "settings (headers, profile, TLS, health)"


def guards(config):
    """Host -> the blocking rules its guard route runs before its own route (:func:`guard_route`), as JSON."""
    server = (((config or {}).get("apps") or {}).get("http") or {}).get("servers", {}).get(SERVER) or {}
    out = {}
    for route in server.get("routes", []):
        if route.get("@id", "").startswith(GUARD_PREFIX):
            rules = json.dumps(route.get("handle"), sort_keys=True)
            out.update(dict.fromkeys(_hosts(route), rules))
    return out


def _renames(gone, new):
    """Old id -> ``{"hosts", "old", "new"}`` for each removed route whose hosts a new route serves (the same
    kind of route: a protected route's ``.outpost`` route pairs with the new ``.outpost`` route)."""

    def identity(rid, route):
        return tuple(sorted(route_summary(route)["hosts"])), rid.endswith(".outpost")

    by_identity = {}
    for rid, route in new.items():
        by_identity.setdefault(identity(rid, route), []).append(rid)
    renamed = {}
    for rid, route in gone.items():
        hosts, outpost = identity(rid, route)
        candidates = by_identity.get((hosts, outpost)) or []
        if hosts and len(candidates) == 1:
            entry = {"hosts": list(hosts), "old": rid, "new": candidates.pop()}
            old_summary, new_summary = route_summary(route), route_summary(new[entry["new"]])
            if old_summary != new_summary:
                entry["upstreams"] = {"old": old_summary["upstreams"], "new": new_summary["upstreams"]}
            renamed[rid] = entry
    return renamed


def diff_line(changes):
    """:func:`diff`'s result in one line: ``no changes``, or ``would change: 1 added, 1 renamed, server``."""
    if not changes:
        return "no changes"
    parts = [f"{len(changes[k])} route(s) {k}" for k in ("added", "removed", "renamed", "changed") if changes.get(k)]
    parts += [k for k in ("certificates", "server") if changes.get(k)]
    return "would change: " + ", ".join(parts)


def upstream_services(tree):
    """Upstream address as Caddy lists it (``/reverse_proxy/upstreams``) -> the pillar services that dial it
    (``consul://`` backends are resolved by Caddy at request time: not listed)."""
    out = {}
    for route in tree["reverse_proxy"]["caddy"]["routes"]:
        for backend in route_upstreams(route, tree):  # as Caddy dials it (consul_dns: the job's service)
            parsed = spec.parse_backend(backend)
            if parsed["scheme"] != "consul":
                out.setdefault(dial(parsed), []).append(route["service"])
    return out


def _certificate_files(config):
    """name -> the certificate file of each hecate ``load_files`` entry (its name carries the fingerprint)."""
    return {f["@id"][len(caddy_certs.ID_PREFIX) :]: f.get("certificate") for f in owned_certificates(config)}


def certificate_changes(current, desired):
    """Custom certificates added, removed or rotated, by name, with their files (no content)."""
    before, after = _certificate_files(current), _certificate_files(desired)
    changes = {}
    for verb, names in (("added", after.keys() - before.keys()), ("removed", before.keys() - after.keys())):
        if names:
            changes[verb] = {n: (after if verb == "added" else before)[n] for n in sorted(names)}
    rotated = {n: {"old": before[n], "new": after[n]} for n in sorted(after.keys() & before.keys()) if before[n] != after[n]}
    if rotated:
        changes["rotated"] = rotated
    return changes


def _without_routes(config):
    """``config`` with hecate's routes left out of its server (copies only the path to that list)."""
    config = dict(config) if isinstance(config, dict) else {}
    servers = ((config.get("apps") or {}).get("http") or {}).get("servers") or {}
    if SERVER in servers:
        server = _own(_own(_own(_own(config, "apps"), "http"), "servers"), SERVER)
        server["routes"] = [r for r in server.get("routes", []) if not r.get("@id", "").startswith((ROUTE_PREFIX, GUARD_PREFIX))]
    return config


def changed_domains(current, desired):
    """Domains whose route (or the blocking rules of its guard route) is new or different: the hosts the
    post-write check requests."""
    before, after = owned_routes(current), owned_routes(desired)
    guards_before, guards_after = guards(current), guards(desired)
    hosts = []
    for rid, route in after.items():
        if before.get(rid) != route or any(guards_before.get(host) != guards_after.get(host) for host in _hosts(route)):
            hosts.extend(_hosts(route))
    return sorted(set(hosts))


def _dials(config):
    """Every ``dial`` string in a config tree (shared subtrees visited once; matchers never dial)."""
    found, seen, stack = [], set(), [config]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            if isinstance(node.get("dial"), str):
                found.append(node["dial"])
            stack.extend(v for k, v in node.items() if k != "match" and isinstance(v, (dict, list)))
        else:
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return found


def _is_local_host(host):
    host = host.strip("[]").lower()
    if host in ("", "localhost"):  # "" (":2019"): Go dials the local system
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified  # Linux answers 0.0.0.0 / :: from loopback


def admin_dials(config, admin_addresses):
    """The upstream ``dial`` addresses in ``config`` that reach one of ``admin_addresses`` (Caddy's admin
    endpoint: ``unix//path`` or ``host:port``), i.e. routes that would put the admin API on a public
    listener. A tcp admin endpoint is reached through its port on any local address."""
    sockets = {posixpath.normpath(a[len("unix/") :]) for a in admin_addresses if a.startswith("unix/")}
    ports = {a.rpartition(":")[2] for a in admin_addresses if not a.startswith("unix/")}
    found = []
    for dial in _dials(config):
        if dial.startswith("unix/"):
            if posixpath.normpath(dial[len("unix/") :]) in sockets:
                found.append(dial)
            continue
        host, _, port = dial.rpartition(":")
        if port in ports and _is_local_host(host):
            found.append(dial)
    return found
