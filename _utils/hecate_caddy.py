"""Compile the validated ``hecate`` tree into Caddy JSON. Pure functions: no I/O, same input -> same output.

What hecate owns in a Caddy config (everything else is left as found):

- ``apps.http.servers.hecate``: one server on ``ports.https`` (``ports.http`` when TLS is off), its
  routes each ``@id``'d ``hecate_route_<service>``, and a catch-all ``hecate_catch_all`` (404).
- ``apps.http.http_port`` / ``apps.http.https_port`` (so redirects and ACME use the pillar's ports).
- the TLS automation policy ``@id`` ``hecate_tls`` (first in the list), for ``acme`` and ``internal``.
- ``apps.pki.certificate_authorities.local.install_trust = false`` with ``internal`` (never touch the
  host's trust store).
- ``admin.listen``: always written, because a config without an admin block moves the admin endpoint.
"""

import hecate_authentik
import hecate_spec

SERVER = "hecate"
SERVER_ID = "hecate_server"
ROUTE_PREFIX = "hecate_route_"
CATCH_ALL_ID = "hecate_catch_all"
TLS_POLICY_ID = "hecate_tls"
NO_ROUTE_HEADER = "X-Hecate-Route"  # set only by the catch-all: lets the post-write check tell "unrouted"


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
    if profile.get("block_user_agents"):
        routes.append(
            {"match": [{"header_regexp": {"User-Agent": {"pattern": profile["block_user_agents"]}}}], "handle": [_static(0, abort=True)]}
        )
    if profile.get("block_headers"):
        routes.append({"match": [{"header": {name: ["*"]}} for name in profile["block_headers"]], "handle": [_static(404)]})
    if profile.get("block_paths"):
        routes.append({"match": [{"path": list(profile["block_paths"])}], "handle": [_static(404)]})
    if profile.get("block_path_regexp"):
        routes.append({"match": [{"path_regexp": {"pattern": profile["block_path_regexp"]}}], "handle": [_static(404)]})
    if profile.get("block_query_params"):
        routes.append({"match": [{"query": {name: ["*"]}} for name in profile["block_query_params"]], "handle": [_static(404)]})
    return routes


def profile_handlers(profile):
    """Response headers and compression: the handlers that wrap the proxy."""
    handlers = []
    if profile.get("headers"):
        handlers.append({"handler": "headers", "response": {"set": {k: [v] for k, v in sorted(profile["headers"].items())}}})
    if profile.get("encode"):
        handlers.append({"handler": "encode", "encodings": {name: {} for name in profile["encode"]}, "prefer": list(profile["encode"])})
    return handlers


def reverse_proxy(route, caddy):
    backends = [hecate_spec.parse_backend(b) for b in hecate_spec.route_backends(route)]
    handler = {"handler": "reverse_proxy", "stream_close_delay": caddy["stream_close_delay"]}
    scheme = backends[0]["scheme"]
    handler.update(hecate_spec.caddy_upstream_fields(backends, route["tls_skip_verify"]))
    if len(backends) > 1 or scheme == "consul":
        handler["load_balancing"] = {"selection_policy": {"policy": route["lb_policy"]}, "try_duration": "2s"}
    health = route.get("health")
    if health and health.get("uri"):
        active = {"uri": health["uri"], "interval": health["interval"], "timeout": health["timeout"]}
        if health.get("status"):
            active["expect_status"] = health["status"]
        handler["health_checks"] = {"active": active}
    return handler


def compile_route(route, tree):
    """One pillar route -> one Caddy route (a host match around a subroute)."""
    caddy = caddy_settings(tree)
    profile = caddy["profiles"][route["profile"]]
    inner = profile_routes(profile)
    if route.get("auth"):
        inner.extend(hecate_authentik.caddy_auth_handlers(route, tree))
    inner.append({"handle": [*profile_handlers(profile), reverse_proxy(route, caddy)]})
    return {
        "@id": route_id(route),
        "match": [{"host": [route["domain"]]}],
        "handle": [{"handler": "subroute", "routes": inner}],
        "terminal": True,
    }


def catch_all():
    return {
        "@id": CATCH_ALL_ID,
        "handle": [
            {"handler": "headers", "response": {"set": {NO_ROUTE_HEADER: ["none"]}}},
            {"handler": "static_response", "status_code": 404, "body": "no site is configured for this host\n"},
        ],
    }


def compile_server(tree):
    caddy = caddy_settings(tree)
    mode = caddy["tls"]["mode"]
    port = caddy["ports"]["http"] if mode == "off" else caddy["ports"]["https"]
    routes = []
    for route in caddy["routes"]:
        if route.get("auth"):
            routes.extend(hecate_authentik.caddy_outpost_route(route, tree) or [])
        routes.append(compile_route(route, tree))
    hosts = [f"[{h}]" if ":" in h else h for h in caddy.get("bind") or [""]]  # "": every interface
    server = {"@id": SERVER_ID, "listen": [f"{host}:{port}" for host in hosts], "routes": [*routes, catch_all()]}
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
        issuer["email"] = caddy["tls"]["email"]
    subjects = sorted({r["domain"] for r in caddy["routes"]})
    return {"@id": TLS_POLICY_ID, "subjects": subjects, "issuers": [issuer]}


def _own(parent, key):
    """A fresh copy of the mapping ``parent[key]`` (created when missing), set back into ``parent``:
    only the mappings on the way to what hecate writes are copied; the rest stays shared, untouched."""
    child = dict(parent.get(key) or {})
    parent[key] = child
    return child


def desired_config(current, tree):
    """The whole config Caddy should have: ``current`` with hecate's parts replaced. Pure: ``current``
    is not modified (a deep copy of a 1000-route config cost more than the compile itself)."""
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
    return config


def bootstrap_config(tree):
    """A complete config for a new Caddy (the Nomad job starts ``caddy run --resume`` with it)."""
    return desired_config({}, tree)


def owned_routes(config):
    """hecate's routes in a live config, by ``@id`` (the catch-all excluded)."""
    server = (((config or {}).get("apps") or {}).get("http") or {}).get("servers", {}).get(SERVER) or {}
    return {r["@id"]: r for r in server.get("routes", []) if r.get("@id", "").startswith(ROUTE_PREFIX)}


def route_summary(route):
    """Domain and upstreams of a compiled route: what a human wants to see in a diff."""
    hosts = [h for m in route.get("match", []) for h in m.get("host", [])]
    proxy = _backend_proxy(route)
    if proxy is None:
        upstreams = []
    elif "dynamic_upstreams" in proxy:
        upstreams = [f"{proxy['dynamic_upstreams']['source']}:{proxy['dynamic_upstreams']['name']}"]
    else:
        upstreams = [u.get("dial") for u in proxy.get("upstreams", [])]
    return {"hosts": hosts, "upstreams": upstreams}


def _backend_proxy(route):
    """The backend reverse_proxy of a compiled route: the last handler of its subroute's last route."""
    try:
        handler = route["handle"][0]["routes"][-1]["handle"][-1]
    except (KeyError, IndexError, TypeError):
        return None
    return handler if handler.get("handler") == "reverse_proxy" else None


def diff(current, desired):
    """What changes between two full configs, for humans: routes added/removed/changed + other owned keys."""
    before, after = owned_routes(current), owned_routes(desired)
    changes = {}
    added = {i: route_summary(after[i]) for i in sorted(after.keys() - before.keys())}
    removed = {i: route_summary(before[i]) for i in sorted(before.keys() - after.keys())}
    changed = {}
    for i in sorted(after.keys() & before.keys()):
        if after[i] != before[i]:
            old, new = route_summary(before[i]), route_summary(after[i])
            changed[i] = {"old": old, "new": new} if old != new else "settings (headers, profile, TLS, health)"
    if added:
        changes["added"] = added
    if removed:
        changes["removed"] = removed
    if changed:
        changes["changed"] = changed
    rest_before, rest_after = _without_routes(current), _without_routes(desired)
    if rest_before != rest_after:
        changes["server"] = "hecate server settings (listen, TLS policy, ports, admin)"
    return changes


def _without_routes(config):
    """``config`` with hecate's routes left out of its server (copies only the path to that list)."""
    config = dict(config) if isinstance(config, dict) else {}
    servers = ((config.get("apps") or {}).get("http") or {}).get("servers") or {}
    if SERVER in servers:
        server = _own(_own(_own(_own(config, "apps"), "http"), "servers"), SERVER)
        server["routes"] = [r for r in server.get("routes", []) if not r.get("@id", "").startswith(ROUTE_PREFIX)]
    return config


def changed_domains(current, desired):
    """Domains whose route is new or different: the hosts the post-write check requests."""
    before, after = owned_routes(current), owned_routes(desired)
    hosts = []
    for rid, route in after.items():
        if before.get(rid) != route:
            hosts.extend(route_summary(route)["hosts"])
    return sorted(set(hosts))
