"""authentik's part of hecate, pure (no I/O): the pillar schema of ``hecate:authentik`` and of a route's
``auth``, the semantic checks across them, the objects authentik must hold for the protected routes,
and the plan that turns a snapshot of authentik into those objects (the Caddy JSON for forward auth is
hecatelib.caddy.config's).

Ownership. hecate marks what it creates and only ever prunes what carries its mark:

- proxy providers are named ``<name_prefix><service>`` (``hecate-`` by default) and serve no application
  or one of hecate's (a prefixed provider on somebody else's application is theirs);
- applications have the slug ``<name_prefix><service>`` *and* ``meta_publisher: hecate``;
- groups hecate had to create carry ``attributes: {hecate_managed: <name_prefix>}`` (pruned only with
  ``prune_groups: true``: deleting a group drops its members);
- policy bindings on an owned application are hecate's: the pillar is the access list. hecate owns which
  groups are bound (enabled, not negated), not the bindings' ``order``: see :func:`plan_bindings`.

Routes in ``forward_domain`` mode share one provider and one application per cookie domain
(``<name_prefix>domain-<cookie domain with dashes>``), as authentik's domain-level forward auth works.
"""

import re
from urllib.parse import urlsplit

from hecatelib import spec
from hecatelib.spec import Bool, Field, Hostname, ListOf, Map, Port, Report, Secret, Str, index, key

AK_HEADERS = (
    "X-Authentik-Username",
    "X-Authentik-Groups",
    "X-Authentik-Entitlements",
    "X-Authentik-Email",
    "X-Authentik-Name",
    "X-Authentik-Uid",
    "X-Authentik-Jwt",
    "X-Authentik-Meta-Jwks",
    "X-Authentik-Meta-Outpost",
    "X-Authentik-Meta-Provider",
    "X-Authentik-Meta-App",
    "X-Authentik-Meta-Version",
)
OUTPOST_PATH = "/outpost.goauthentik.io/*"
AUTH_URI = "/outpost.goauthentik.io/auth/caddy"
MODES = ("forward_single", "forward_domain")
PUBLISHER = "hecate"
GROUP_MARK = "hecate_managed"
EMBEDDED = "embedded"  # outpost name meaning "authentik's embedded outpost" (managed goauthentik.io/outposts/embedded)
EMBEDDED_MANAGED = "goauthentik.io/outposts/embedded"
DEFAULT_FLOWS = {
    "authorization": "default-provider-authorization-implicit-consent",
    "invalidation": "default-provider-invalidation-flow",
}
SLUG = r"^[-a-zA-Z0-9_]+$"
SLUG_MAX = 50  # Application.slug is a SlugField (max_length 50) up to authentik 2025.10 (core/models.py)
SLUG_UNLIMITED_FROM = (2025, 12)  # ... and a TextField from 2025.12 on


class Url(Str):
    """An http(s) URL with a host and nothing after the path; an international host becomes its A-label
    (``hecatelib.spec.to_ascii``), as the Host header a browser sends."""

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str):
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                report.error(path, f"must be an http(s) URL like https://auth.example.org, got {value!r}")
            elif not parts.hostname.isascii():
                try:
                    port = f":{parts.port}" if parts.port else ""
                    value = parts._replace(netloc=spec.to_ascii(parts.hostname) + port).geturl()
                except ValueError as exc:
                    report.error(path, str(exc))
            value = value.rstrip("/")
        return value


class Cidr(Str):
    def __call__(self, value, path, report):
        import ipaddress

        value = super().__call__(value, path, report)
        if isinstance(value, str):
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                if value != "private_ranges":
                    report.error(path, f"must be a CIDR (10.0.0.0/8) or private_ranges, got {value!r}")
        return value


class Upstream(Str):
    """Where Caddy reaches the outpost: ``host:port``, ``http(s)://host[:port]`` or ``consul://service[:port]``."""

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str):
            try:
                spec.parse_backend(value)
            except ValueError as exc:
                report.error(path, str(exc))
        return value


GROUP_NAME = Str(max_len=150, what="group name")
FLOW_SLUG = Str(pattern=SLUG, max_len=200, what="flow slug")  # checked per version in check_pillar

PILLAR_SCHEMA = Map(
    {
        # the seed's keys (the Nomad job deploys authentik with them)
        "version": Str(pattern=r"^[A-Za-z0-9._-]+$", what="image tag"),
        "database": Map(
            {
                "name": Str(pattern=r"^[A-Za-z0-9_]+$", what="database name"),
                "user": Str(pattern=r"^[A-Za-z0-9_]+$", what="database user"),
                "password": Secret(),
                "host": Str(),
                "port": Field(Str(pattern=r"^\d+$", what="port")),
            }
        ),
        "secret_key": Secret(),
        "ports": Map({"http": Port(), "https": Port()}),
        # the API and the routes
        "url": Url(),
        "endpoint": Url(),
        "token": Secret(),
        "allow_insecure_endpoint": Field(Bool(), default=False),
        "ca_bundle": Str(pattern=r"^/", what="absolute path"),
        "service": Field(Str(pattern=r"^[a-z0-9]([a-z0-9_-]{0,62})$", what="service name"), default="authentik"),
        "mode": Field(Str(choices=list(MODES)), default="forward_single"),
        "cookie_domain": Hostname(),
        "outpost": Field(Map({"name": Field(Str(max_len=150), default=EMBEDDED), "upstream": Upstream()}), default=dict),
        "flows": Field(
            Map(
                {
                    "authorization": Field(FLOW_SLUG, default=DEFAULT_FLOWS["authorization"]),
                    "invalidation": Field(FLOW_SLUG, default=DEFAULT_FLOWS["invalidation"]),
                }
            ),
            default=dict,
        ),
        "name_prefix": Field(Str(pattern=r"^[a-z0-9][a-z0-9_-]{0,19}$", what="name prefix"), default="hecate-"),
        "prune": Field(Bool(), default=True),
        "prune_groups": Field(Bool(), default=False),
        "trusted_proxies": ListOf(Cidr(), unique=True),
    }
)


class _RouteAuth:
    """A route's ``auth``: a mapping, or ``true`` (any signed-in user); ``false``/null: not protected."""

    MAP = Map(
        {
            "groups": Field(ListOf(GROUP_NAME, unique=True), default=list),
            "mode": Str(choices=list(MODES)),
            "cookie_domain": Hostname(),
            "name": Str(max_len=150, what="application name"),
        }
    )

    def __call__(self, value, path, report):
        if value is None or value is False:
            return value
        if value is True:
            value = {}
        return self.MAP(value, path, report)


ROUTE_AUTH_SCHEMA = _RouteAuth()


# -- settings derived from the tree ----------------------------------------------------------------------
def section(tree):
    """``hecate:authentik`` with its defaults (works on an unvalidated tree too)."""
    ak = dict((tree or {}).get("authentik") or {})
    ak.setdefault("service", "authentik")
    ak.setdefault("mode", "forward_single")
    ak.setdefault("name_prefix", "hecate-")
    ak.setdefault("prune", True)
    ak.setdefault("prune_groups", False)
    ak.setdefault("allow_insecure_endpoint", False)
    ak["outpost"] = {"name": EMBEDDED, **(ak.get("outpost") or {})}
    ak["flows"] = {**DEFAULT_FLOWS, **(ak.get("flows") or {})}
    return ak


def _routes(tree):
    return (((tree or {}).get("reverse_proxy") or {}).get("caddy") or {}).get("routes") or []


def _service(route):
    if route.get("service"):
        return route["service"]
    return spec.route_service(route)


def auth_routes(tree):
    """The routes that have ``auth`` (in pillar order)."""
    return [r for r in _routes(tree) if r.get("auth") or r.get("auth") == {}]


def authentik_route(tree):
    """The route that serves authentik itself (``service`` = ``hecate:authentik:service``), or None."""
    service = section(tree)["service"]
    return next((r for r in _routes(tree) if _service(r) == service), None)


def public_url(tree):
    """authentik's public URL: ``hecate:authentik:url``, else https://<domain of authentik's route>."""
    ak = section(tree)
    if ak.get("url"):
        return ak["url"].rstrip("/")
    route = authentik_route(tree)
    if route is not None and route.get("domain") and "*" not in route["domain"]:
        return f"https://{route['domain']}"
    return None


def outpost_upstream(tree):
    """Where Caddy reaches the outpost: ``outpost.upstream``, else the backend of authentik's route."""
    ak = section(tree)
    if ak["outpost"].get("upstream"):
        return ak["outpost"]["upstream"]
    route = authentik_route(tree)
    if route is not None:
        backends = ([route["backend"]] if route.get("backend") else []) + list(route.get("backends") or [])
        if backends:
            return backends[0]
    return None


def route_mode(route, tree):
    auth = route.get("auth") if isinstance(route.get("auth"), dict) else {}
    return auth.get("mode") or section(tree)["mode"]


def route_cookie_domain(route, tree):
    auth = route.get("auth") if isinstance(route.get("auth"), dict) else {}
    return auth.get("cookie_domain") or section(tree).get("cookie_domain") or ((tree or {}).get("global") or {}).get("domain")


def route_groups(route):
    auth = route.get("auth") if isinstance(route.get("auth"), dict) else {}
    return list(auth.get("groups") or [])


def _scheme(tree):
    tls = ((((tree or {}).get("reverse_proxy") or {}).get("caddy") or {}).get("tls") or {}).get("mode", "acme")
    return "http" if tls in ("off", False) else "https"


def slug_max(version):
    """The longest application (and flow) slug authentik ``version`` (``hecate:authentik:version``, an
    image tag) accepts: 50 before 2025.12, no limit from 2025.12 on; 50 when the tag is no version."""
    parts = re.match(r"^v?(\d+)\.(\d+)", str(version or ""))
    if parts and (int(parts[1]), int(parts[2])) >= SLUG_UNLIMITED_FROM:
        return None
    return SLUG_MAX


def validate_tree(tree):
    """Apply :data:`PILLAR_SCHEMA`, :data:`ROUTE_AUTH_SCHEMA` and :func:`check_pillar` to a tree that
    ``hecatelib.schema`` already validated (idempotent: a tree normalised once comes back unchanged).
    Returns the tree; raises ``PillarError`` naming every bad key path."""
    report = Report("hecate")
    tree = dict(tree or {})
    tree["authentik"] = PILLAR_SCHEMA(tree.get("authentik"), "hecate:authentik", report)
    for i, route in enumerate(_routes(tree)):
        if "auth" in route:
            route["auth"] = ROUTE_AUTH_SCHEMA(route["auth"], key(index("hecate:reverse_proxy:caddy:routes", i), "auth"), report)
    if not report.errors:
        check_pillar(tree, report)
    report.raise_if_errors()
    return tree


# -- semantic checks ---------------------------------------------------------------------------------------
def check_pillar(tree, report):
    """Checks spanning keys, added to ``report`` with key paths. ``tree`` is the normalised hecate tree."""
    ak = section(tree)
    base = "hecate:authentik"
    longest = slug_max(ak.get("version"))
    for role, slug in ak["flows"].items():
        if longest and isinstance(slug, str) and len(slug) > longest:
            report.error(key(key(base, "flows"), role), f"a flow slug has at most {longest} characters before authentik 2025.12")
    for name in ("url", "endpoint"):
        value = ak.get(name)
        if isinstance(value, str) and value.startswith("http://") and not ak["allow_insecure_endpoint"]:
            report.error(key(base, name), "must be https:// (allow_insecure_endpoint: true is for labs and tests only)")
    protected = [(i, r) for i, r in enumerate(_routes(tree)) if r.get("auth") or r.get("auth") == {}]
    if not protected:
        return
    prefix = ak["name_prefix"]
    domains = {}
    service = ak["service"]
    for i, route in protected:
        where = key(index("hecate:reverse_proxy:caddy:routes", i), "auth")
        if public_url(tree) is None:
            report.error(where, f"needs authentik: set {base}:url (or add a route with service: {service})")
        elif outpost_upstream(tree) is None:
            report.error(where, f"needs the outpost's address: set {base}:outpost:upstream (or add a route with service: {service})")
        if _service(route) == service:
            report.error(where, "authentik's own route cannot be behind authentik (nobody could sign in)")
        if "*" in route.get("domain", "") and route_mode(route, tree) == "forward_single":
            report.error(where, "a wildcard domain needs mode: forward_domain (forward_single protects one host)")
        if route_mode(route, tree) == "forward_domain":
            cookie = route_cookie_domain(route, tree)
            domain = route.get("domain", "").lstrip("*.")
            if not cookie:
                report.error(where, f"forward_domain needs a cookie_domain (here, in {base}:cookie_domain or hecate:global:domain)")
                continue
            if not (domain == cookie or domain.endswith("." + cookie)):
                report.error(where, f"domain {route.get('domain')!r} is outside cookie_domain {cookie!r}")
            groups = sorted(route_groups(route))
            if cookie in domains and domains[cookie][1] != groups:
                report.error(
                    key(where, "groups"),
                    f"routes in forward_domain mode under {cookie!r} share one authentik application: their groups must be "
                    f"the same (routes[{domains[cookie][0]}] has {domains[cookie][1]})",
                )
            domains.setdefault(cookie, (i, groups))
            name = domain_object_name(cookie, prefix)
        else:
            name = f"{prefix}{_service(route)}"
        if not re.match(SLUG, name):
            report.error(where, f"the authentik application slug {name!r} would be invalid (a-z 0-9 - _ only)")
        elif longest and len(name) > longest:
            report.error(
                where,
                f"the authentik application slug {name!r} would be {len(name)} characters: authentik before 2025.12 "
                f"takes at most {longest} (hecate:authentik:version is {ak.get('version') or 'not set'})",
            )


def domain_object_name(cookie_domain, prefix):
    return f"{prefix}domain-{cookie_domain.replace('.', '-')}"


# -- desired objects ---------------------------------------------------------------------------------------
def desired_objects(tree):
    """What authentik must hold for the protected routes. Pure.

    Returns ``{"flows": {role: slug}, "groups": [names], "providers": {name: fields},
    "applications": {slug: fields}, "bindings": {slug: [group, ...]}, "outpost": name,
    "prefix": str}``. Provider fields name flows by slug; applications name their provider by name.
    """
    ak = section(tree)
    prefix = ak["name_prefix"]
    scheme = _scheme(tree)
    out = {
        "flows": dict(ak["flows"]),
        "groups": [],
        "providers": {},
        "applications": {},
        "bindings": {},
        "outpost": ak["outpost"]["name"],
        "prefix": prefix,
    }
    for route in auth_routes(tree):
        mode = route_mode(route, tree)
        auth = route["auth"] if isinstance(route.get("auth"), dict) else {}
        if mode == "forward_domain":
            cookie = route_cookie_domain(route, tree)
            name = domain_object_name(cookie, prefix)
            if name in out["providers"]:
                continue
            provider = {
                "name": name,
                "mode": mode,
                "external_host": public_url(tree),
                "cookie_domain": cookie,
                "authorization_flow": ak["flows"]["authorization"],
                "invalidation_flow": ak["flows"]["invalidation"],
            }
            display = auth.get("name") or cookie
        else:
            name = f"{prefix}{_service(route)}"
            provider = {
                "name": name,
                "mode": mode,
                "external_host": f"{scheme}://{route['domain']}",
                "authorization_flow": ak["flows"]["authorization"],
                "invalidation_flow": ak["flows"]["invalidation"],
            }
            display = auth.get("name") or _service(route)
        out["providers"][name] = provider
        out["applications"][name] = {
            "slug": name,
            "name": display,
            "provider": name,
            "meta_launch_url": f"{scheme}://{route['domain'].lstrip('*.')}/",
            "meta_publisher": PUBLISHER,
            "policy_engine_mode": "any",
        }
        groups = route_groups(route)
        out["bindings"][name] = groups
        for group in groups:
            if group not in out["groups"]:
                out["groups"].append(group)
    return out


# -- the plan: snapshot of authentik + desired -> ordered actions ------------------------------------------
def owns_provider(provider, prefix, applications=None):
    """A provider is hecate's when its name has the prefix and it serves no application, or one of
    hecate's (a prefixed provider attached to somebody else's application is theirs)."""
    if not str(provider.get("name", "")).startswith(prefix):
        return False
    slug = provider.get("assigned_application_slug")
    app = (applications or {}).get(slug) if slug else None
    return app is None or owns_application(app, prefix)


def owns_application(app, prefix):
    return str(app.get("slug", "")).startswith(prefix) and app.get("meta_publisher") == PUBLISHER


def owns_group(group, prefix):
    return (group.get("attributes") or {}).get(GROUP_MARK) == prefix


SET_FIELDS = ("property_mappings", "providers")  # lists authentik adds to: the declared entries must be there


def differs(current, wanted):
    """The declared fields of ``wanted`` that differ in ``current``: ``{field: {"old": ..., "new": ...}}``.
    None means "not declared". Lists in :data:`SET_FIELDS` compare as sets: declared entries must be
    there, others stay (``new`` is the union)."""
    out = {}
    for field, value in wanted.items():
        have = current.get(field)
        if value is None:
            continue
        if field in SET_FIELDS:
            have = set(have or [])
            if not set(value) <= have:
                out[field] = {"old": sorted(have), "new": sorted(have | set(value))}
        elif have != value:
            out[field] = {"old": have, "new": value}
    return out


def plan(desired, snapshot, prune=True, prune_groups=False):
    """Compare ``desired`` (from :func:`desired_objects`) with ``snapshot`` and return the actions.

    ``snapshot`` holds what was read, natural keys resolved to pks::

        {"flows": {slug: pk}, "groups": {name: group}, "providers": {name: provider},
         "applications": {slug: app}, "outpost": outpost (its "providers" are pks),
         "bindings": {app_pk: [binding, ...]}}

    Provider ``property_mappings`` and the outpost's ``providers`` are compared as sets (authentik adds
    its own entries). Returns a list per :data:`ACTION_ORDER` name, each in execution order (bindings:
    :func:`plan_bindings`). Updates carry the declared fields that differ (``diff``) and the
    object as read (``current``: authentik validates some fields from every PATCH, which the client
    takes from it). A non-embedded outpost is never emptied: authentik refuses an empty provider list
    there, and deleting the providers takes them off it anyway.
    """
    prefix = desired["prefix"]
    flows = snapshot["flows"]
    actions = {name: [] for name in ACTION_ORDER}
    for name in desired["groups"]:
        if name not in snapshot["groups"]:
            actions["groups_create"].append({"name": name, "attributes": {GROUP_MARK: prefix}})

    for name, fields in desired["providers"].items():
        wanted = {**fields}
        for role in ("authorization", "invalidation"):
            slug = wanted[f"{role}_flow"]
            wanted[f"{role}_flow"] = flows.get(slug, slug)
        current = snapshot["providers"].get(name)
        if current is None:
            actions["providers_create"].append(wanted)
            continue
        diff = differs(current, wanted)
        if diff:
            actions["providers_update"].append({"name": name, "pk": current["pk"], "diff": diff, "current": current})

    for slug, fields in desired["applications"].items():
        current = snapshot["applications"].get(slug)
        if current is None:
            actions["applications_create"].append(dict(fields))
            continue
        provider = snapshot["providers"].get(fields["provider"])
        wanted = {k: v for k, v in fields.items() if k != "provider"}
        diff = differs(current, wanted)
        if provider is None or current.get("provider") != provider["pk"]:
            diff["provider"] = {"old": current.get("provider"), "new": fields["provider"]}
        if diff:
            actions["applications_update"].append({"slug": slug, "diff": diff})

    # outpost membership: desired providers in, owned-but-undesired providers out
    outpost = snapshot.get("outpost") or {"providers": []}
    members = set(outpost.get("providers") or [])
    for name in desired["providers"]:
        current = snapshot["providers"].get(name)
        if current is None or current["pk"] not in members:
            actions["outpost_add"].append(name)
    doomed_providers = []
    if prune:
        doomed_providers = [
            p
            for n, p in sorted(snapshot["providers"].items())
            if n not in desired["providers"] and owns_provider(p, prefix, snapshot["applications"])
        ]
        actions["outpost_remove"] = [p["name"] for p in doomed_providers if p["pk"] in members]
        left = members - {p["pk"] for p in doomed_providers}
        if not left and not actions["outpost_add"] and outpost.get("managed") != EMBEDDED_MANAGED:
            # authentik refuses an empty provider list on any outpost but the embedded one
            # (outposts/api/outposts.py validate_providers); deleting the providers (below) takes them off
            actions["outpost_remove"] = []

    # bindings on owned/desired applications: exactly the pillar's groups
    for slug, groups in desired["bindings"].items():
        app = snapshot["applications"].get(slug)
        existing = list(snapshot["bindings"].get(app["pk"], [])) if app else []
        for verb, items in plan_bindings(slug, groups, existing, snapshot).items():
            actions[f"bindings_{verb}"].extend(items)

    if prune:
        for slug, app in sorted(snapshot["applications"].items()):
            if owns_application(app, prefix) and slug not in desired["applications"]:
                actions["applications_delete"].append(slug)
        actions["providers_delete"] = [p["name"] for p in doomed_providers]
        if prune_groups:
            for name, group in sorted(snapshot["groups"].items()):
                if owns_group(group, prefix) and name not in desired["groups"]:
                    actions["groups_delete"].append(name)
    return actions


def free_order(taken):
    """The lowest order (0, 1, ...) not in ``taken``."""
    order = 0
    while order in taken:
        order += 1
    return order


def plan_bindings(slug, groups, existing, snapshot):
    """The binding actions that leave application ``slug`` bound to exactly ``groups`` (names), each
    enabled and not negated; ``existing`` holds its bindings as read. Returns ``{"create", "delete",
    "update"}``, in the order they must run.

    hecate owns which groups are bound, not the bindings' ``order``. For group (and user) bindings the
    order decides nothing: authentik's PolicyEngine.compute_static_bindings (policies/engine.py) folds
    them into one result, passing when any of them passes, before ``policy_engine_mode`` (``any`` as
    hecate sets it, or ``all``) combines that result with the policies'; the order only sorts policy
    results. So reordering ``auth.groups`` sends nothing, and a binding keeps the order it has.

    Orders still matter to authentik's API: a PATCH is refused when another group or user binding of the
    application has the same order (PolicyBinding's unique_together (policy, target, order) checked by
    DRF's UniqueTogetherValidator with ``policy IS NULL``; a POST is not checked). Hence:

    - new bindings take orders no binding of the application holds, and are created first: the
      application never passes through zero bindings, which authentik reads as "everyone may enter";
    - then the bindings the pillar does not name (another group, a user, a policy, a duplicate) go;
    - then the kept bindings are repaired (``enabled``, ``negate``), a binding whose order another kept
      one shares moving to a free order in the same PATCH.
    """
    by_group, kept, keep = {}, {}, set()
    for binding in existing:
        if binding.get("group") and binding.get("policy") is None and binding.get("user") is None:
            by_group.setdefault(binding["group"], []).append(binding)
    out = {"create": [], "delete": [], "update": []}
    for group_name in groups:
        group = snapshot["groups"].get(group_name)
        found = by_group.get(group["pk"], []) if group else []
        if found:  # a duplicate: keep the one needing no repair, else the first by order
            best = min(found, key=lambda b: (bool(_binding_repair(b)), b.get("order", 0)))
            kept[group_name] = best
            keep.add(best["pk"])
    taken = {b.get("order") for b in existing}
    for group_name in groups:
        if group_name not in kept:
            order = free_order(taken)
            taken.add(order)
            out["create"].append({"application": slug, "group": group_name, "order": order})
    for binding in existing:
        if binding["pk"] not in keep:
            out["delete"].append({"application": slug, "pk": binding["pk"], "what": _binding_label(binding, snapshot)})
    sharing = {}
    for binding in kept.values():
        sharing[binding.get("order")] = sharing.get(binding.get("order"), 0) + 1
    for group_name, binding in kept.items():
        diff = _binding_repair(binding)
        if not diff:
            continue
        if sharing[binding.get("order")] > 1:
            sharing[binding.get("order")] -= 1
            order = free_order(taken)
            taken.add(order)
            diff["order"] = {"old": binding.get("order"), "new": order}
        out["update"].append({"application": slug, "group": group_name, "pk": binding["pk"], "diff": diff, "current": binding})
    return out


def order_taken(bindings, order, policy=None, pk=None):
    """Whether another of ``bindings`` (of one target) than ``pk`` holds ``order`` with the same ``policy``
    (None for a group or user binding): authentik then refuses to PATCH the binding at that order (see
    :func:`plan_bindings`)."""
    return any(b["pk"] != pk and b.get("order") == order and b.get("policy") == policy for b in bindings)


def _binding_repair(binding):
    return differs(binding, {"enabled": True, "negate": False})


ACTION_ORDER = (
    "groups_create",
    "providers_create",
    "providers_update",
    "applications_create",
    "applications_update",
    "outpost_add",
    "outpost_remove",
    "bindings_create",
    "bindings_delete",
    "bindings_update",
    "applications_delete",
    "providers_delete",
    "groups_delete",
)


def _binding_label(binding, snapshot):
    if binding.get("group"):
        name = next((n for n, g in snapshot["groups"].items() if g["pk"] == binding["group"]), binding["group"])
        return f"group {name}"
    if binding.get("policy"):
        return f"policy {binding['policy']}"
    return f"user {binding.get('user')}"


def plan_changes(actions):
    """A human-readable ``changes`` dict for Salt (empty when there is nothing to do)."""
    changes = {}

    def put(kind, verb, value):
        if value:
            changes.setdefault(kind, {})[verb] = value

    put("groups", "created", [a["name"] for a in actions["groups_create"]])
    put("providers", "created", [a["name"] for a in actions["providers_create"]])
    put("providers", "updated", {a["name"]: a["diff"] for a in actions["providers_update"]})
    put("applications", "created", [a["slug"] for a in actions["applications_create"]])
    put("applications", "updated", {a["slug"]: a["diff"] for a in actions["applications_update"]})
    put("outpost", "providers_added", list(actions["outpost_add"]))
    put("outpost", "providers_removed", list(actions["outpost_remove"]))
    put("bindings", "created", [f"{a['application']} <- group {a['group']}" for a in actions["bindings_create"]])
    put("bindings", "updated", {f"{a['application']} <- group {a['group']}": a["diff"] for a in actions["bindings_update"]})
    put("bindings", "deleted", [f"{a['application']} <- {a['what']}" for a in actions["bindings_delete"]])
    put("applications", "deleted", list(actions["applications_delete"]))
    put("providers", "deleted", list(actions["providers_delete"]))
    put("groups", "deleted", list(actions["groups_delete"]))
    return changes


# The global permissions the API token's user needs for protected_routes when it is not a superuser, and
# what needs each. Measured on authentik 2025.12.4 (tests/functional/test_authentik_real.py
# test_least_privilege_token): the lifecycle passes with exactly these, and fails without any one of them.
# Not needed: authentik_core.change_group (hecate never changes a group). A read of one object and a write
# to one object need view_ too (authentik/rbac/filters.py ObjectFilter runs first).
TOKEN_PERMISSIONS = {
    "authentik_flows.view_flow": "every run: the two flows, read by slug",
    "authentik_core.view_group": "every run: the group list",
    "authentik_core.add_group": "a group named in auth.groups that does not exist yet",
    "authentik_core.delete_group": "prune_groups: true only",
    "authentik_providers_proxy.view_proxyprovider": "every run: the provider list",
    "authentik_providers_proxy.add_proxyprovider": "a new protected route",
    "authentik_providers_proxy.change_proxyprovider": "a changed domain or flow, drift",
    "authentik_providers_proxy.delete_proxyprovider": "a route that lost auth: (prune)",
    "authentik_core.view_application": "every run: hecate's applications, read by slug (the list hides them from a non-superuser)",
    "authentik_core.add_application": "a new protected route",
    "authentik_core.change_application": "a changed name or URL, drift",
    "authentik_core.delete_application": "a route that lost auth: (prune)",
    "authentik_outposts.view_outpost": "every run: the outpost",
    "authentik_outposts.change_outpost": "a provider added to or taken off the outpost",
    "authentik_policies.view_policybinding": "every run with an application: its bindings",
    "authentik_policies.add_policybinding": "a group added to a route",
    "authentik_policies.change_policybinding": "drift: a disabled or negated binding",
    "authentik_policies.delete_policybinding": "a group dropped from a route, a binding added by hand",
}
