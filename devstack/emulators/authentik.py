"""An authentik API v3 emulator, plus the embedded outpost's Caddy forward-auth endpoint.

What it keeps as real state (plain dicts, keyed by pk): flows (the default ones a fresh install has),
the server-managed OAuth scope mappings, users, groups, expression policies, proxy providers,
applications, policy bindings, outposts (the embedded one is there from the start), tokens and
blueprint instances. Behaviour follows authentik where hecate depends on it:

- Bearer token auth on ``/api/v3/``: a missing, unknown or expired token gets 403 (DRF's
  ``{"detail": ...}``), never 401.
- Lists page with ``page``/``page_size`` (``max_page_size`` caps it, default 100 = authentik's
  PAGE_SIZE); ``pagination.next`` is a page number, 0 on the last page.
- ``GET /core/applications/`` hides applications the token's user cannot access (policy bindings),
  unless ``superuser_full_list=true`` and the user is a superuser; ``GET /core/applications/<slug>/``
  always answers.
- 400 with DRF field errors (``{"field": ["message"]}``) for unique names/slugs, unknown references,
  a provider already used by another application, ``mode: proxy`` without ``internal_host``, a slug
  over 50 characters before 2025.12, a binding PATCH colliding on (policy, target, order) (DRF's
  ``UniqueTogetherValidator``, NULL quirk included), a binding list filtered by a target that does not
  exist.
- A server-side crash on a write answers 405 with an empty body (authentik's ``handler500`` is a
  GET-only view), as the real server does; a crash on a read answers 500.
- Proxy providers get exactly the 5 managed scope mappings authentik adds on create and update
  (``set_oauth_defaults``): the server adds its own entries to ``property_mappings``.
- Token permissions: a token acts as its user; a superuser may do everything, any other user only what
  its global permissions allow (``add_user(..., permissions=[...])``), answered with authentik's 403.
- Deleting a provider removes it from outposts and unsets applications' ``provider``; deleting an
  application or group deletes its policy bindings (database cascades).
- Version-dependent: groups have ``parent`` before 2025.12 and ``parents`` from 2025.12 on;
  blueprint ``apply`` is synchronous before 2025.8 and queued (status changes later) from 2025.8 on.

Every ``/api/v3/`` request is checked against the authentik OpenAPI document of ``spec_version``
(2025.6.1 or 2026.5.6), strictly: unknown body fields, unknown query parameters and malformed query
values (integers, booleans, UUIDs) are violations, as are bodies the schema rejects. This is stricter
than the real server, which ignores unknown fields and query parameters (DRF drops body fields a
serializer does not declare; django-filter ignores parameters its FilterSet does not name): a request
hecate sends with a misspelt field would "work" there and change nothing, so the emulator fails it.

The embedded outpost (same server, like authentik's own port 9000) answers
``/outpost.goauthentik.io/auth/caddy``: it finds the proxy provider for the request's host among the
embedded outpost's providers (forward_single: the external_host's hostname; forward_domain: the
cookie_domain), then

- no valid session cookie -> 302 to ``<public_url>/application/o/authorize/?client_id=...`` (which itself
  302s to the authentication flow ``/if/flow/default-authentication-flow/``), as the real outpost does;
- a session whose user passes the application's policy bindings -> 200 with ``X-Authentik-*`` headers;
- a session whose user does not pass -> 403 (simplification: the real chain shows authentik's
  "permission denied" page during authorization instead).

Sessions come from :meth:`AuthentikEmulator.login` (a test's stand-in for logging in through the flow).
"""

import datetime
import hashlib
import itertools
import json
import math
import os
import pathlib
import re
import secrets
import threading
import time
import uuid
from urllib.parse import quote, urlencode, urlsplit

import jsonschema

from devstack.emulators.base import Emulator, OpenAPIRequestChecker, Response, _openapi30_to_jsonschema

SPEC_VERSIONS = ("2025.6.1", "2026.5.6")
EMBEDDED = "goauthentik.io/outposts/embedded"
EMBEDDED_NAME = "authentik Embedded Outpost"  # authentik/outposts/apps.py MANAGED_OUTPOST_NAME
API = "/api/v3"
SESSION_COOKIE = "authentik_proxy_emulated"
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
# the managed scope mappings of a fresh install: blueprints/system/providers-oauth2.yaml and
# providers-proxy.yaml (managed id, name, scope_name; entitlements from 2025.2 on)
MANAGED_SCOPES = (
    ("goauthentik.io/providers/oauth2/scope-openid", "authentik default OAuth Mapping: OpenID 'openid'", "openid"),
    ("goauthentik.io/providers/oauth2/scope-email", "authentik default OAuth Mapping: OpenID 'email'", "email"),
    ("goauthentik.io/providers/oauth2/scope-profile", "authentik default OAuth Mapping: OpenID 'profile'", "profile"),
    ("goauthentik.io/providers/oauth2/scope-entitlements", "authentik default OAuth Mapping: Application Entitlements", "entitlements"),
    ("goauthentik.io/providers/oauth2/scope-offline_access", "authentik default OAuth Mapping: OpenID 'offline_access'", "offline_access"),
    ("goauthentik.io/providers/oauth2/scope-authentik_api", "authentik default OAuth Mapping: authentik API access", "goauthentik.io/api"),
    ("goauthentik.io/providers/proxy/scope-proxy", "authentik default OAuth Mapping: Proxy outpost", "ak_proxy"),
)
# authentik/providers/proxy/models.py ProxyProvider.set_oauth_defaults: the mappings every proxy provider
# gets on each create and update (ProxyProviderSerializer.create/update call it)
PROXY_SCOPES = (
    "goauthentik.io/providers/oauth2/scope-openid",
    "goauthentik.io/providers/oauth2/scope-profile",
    "goauthentik.io/providers/oauth2/scope-email",
    "goauthentik.io/providers/oauth2/scope-entitlements",
    "goauthentik.io/providers/proxy/scope-proxy",
)
# DRF's PermissionDenied as authentik answers it (rest_framework/exceptions.py default_detail)
NOT_PERMITTED = {"detail": "You do not have permission to perform this action."}
# the model behind each endpoint (app_label.model_name), for permission checks
PERMISSION_MODELS = (
    ("/flows/instances/", "authentik_flows.flow"),
    ("/core/groups/", "authentik_core.group"),
    ("/policies/expression/", "authentik_policies_expression.expressionpolicy"),
    ("/providers/proxy/", "authentik_providers_proxy.proxyprovider"),
    ("/core/applications/", "authentik_core.application"),
    ("/policies/bindings/", "authentik_policies.policybinding"),
    ("/outposts/instances/", "authentik_outposts.outpost"),
    ("/propertymappings/provider/scope/", "authentik_providers_oauth2.scopemapping"),
    ("/managed/blueprints/", "authentik_blueprints.blueprintinstance"),
)
SLUG_MAX_UNTIL = (2025, 12)  # Application.slug: SlugField (50) up to 2025.10, a TextField from 2025.12
DEFAULT_FLOWS = (
    ("default-authentication-flow", "Welcome to authentik!", "authentication"),
    ("default-invalidation-flow", "Default Invalidation Flow", "invalidation"),
    ("default-provider-authorization-implicit-consent", "Authorize Application", "authorization"),
    ("default-provider-authorization-explicit-consent", "Authorize Application", "authorization"),
    ("default-provider-invalidation-flow", "Logged out of application", "invalidation"),
)


def version_tuple(text):
    return tuple(int(p) for p in re.findall(r"\d+", str(text))[:3])


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


# -- spec checking --------------------------------------------------------------------------------------
_CHECKERS = {}
_CHECKERS_LOCK = threading.Lock()


def spec_path(version):
    from devstack import SPECS

    return str(SPECS / "authentik" / f"authentik-{version}-schema.yml")


def checker_for(version):
    """The strict request and response checker for one authentik spec version, parsed once per process."""
    with _CHECKERS_LOCK:
        if version not in _CHECKERS:
            spec = _load_spec(spec_path(version))
            if version != SPEC_VERSIONS[-1]:
                _nullable_errata(spec, _load_spec(spec_path(SPEC_VERSIONS[-1])))
            _CHECKERS[version] = StrictRequestChecker(spec)
        return _CHECKERS[version]


def _nullable_errata(spec, newer):
    """Read-only fields the server has always answered ``null`` (DRF's ``fields.get_attribute`` returns
    None for a missing relation: a provider without application, a binding's unused ``*_obj``) but that
    older documents declare non-null. The newer document marks them ``nullable`` (goauthentik/authentik
    PR #21421, "core: fix policy binding objects not being nullable"); the older one gets the same marks."""
    fixed = newer["components"]["schemas"]
    for name, schema in spec["components"]["schemas"].items():
        for prop, node in (schema.get("properties") or {}).items():
            later = ((fixed.get(name) or {}).get("properties") or {}).get(prop) or {}
            if node.get("readOnly") and later.get("nullable") and not node.get("nullable"):
                node["nullable"] = True


SPEC_CACHE = pathlib.Path(__file__).resolve().parents[2] / ".cache" / "emulators"  # in the checkout: make clean removes it


def _load_spec(path):
    """Parse the (1.7 MB) YAML document, through a JSON copy keyed by the document's content: YAML takes ~1.3 s,
    JSON ~50 ms. The copy lives in the checkout (:data:`SPEC_CACHE`, ignored by git, removed by ``make clean``),
    never in the temp dir, where every clone left its own 1.4 MB copies behind."""
    import yaml

    with open(path, "rb") as handle:
        raw = handle.read()
    cache = SPEC_CACHE / f"{os.path.basename(path)}-{hashlib.sha256(raw).hexdigest()[:16]}.json"
    try:
        return json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    spec = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader (C or Python)
    SPEC_CACHE.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f"{cache.name}.{os.getpid()}")
    partial.write_text(json.dumps(spec), encoding="utf-8")
    os.replace(partial, cache)  # atomic: a concurrent session reads a whole file or none
    return spec


def _strict(schema):
    """Close every object schema that lists its properties: unknown request fields are errors."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) if k in ("properties", "items", "anyOf", "allOf", "oneOf") else v for k, v in schema.items()}
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in out and "allOf" not in out:
            out["additionalProperties"] = False
    return out


class StrictRequestChecker(OpenAPIRequestChecker):
    """OpenAPI 3.0 request checks (nullable, Draft 7), strict: closed bodies, known query parameters with
    well-formed values, UUID formats. Stricter than authentik itself, which ignores unknown body fields
    (DRF serializers drop them) and unknown query parameters (django-filter ignores them): hecate must not
    send what the server would silently drop. Prepared validators are cached per operation."""

    def __init__(self, spec):
        super().__init__(spec, draft=jsonschema.Draft7Validator, nullable=True)
        self._validators = {}
        self._lock = threading.Lock()

    def check(self, request, base_path=""):
        if not request.raw_path.startswith(API + "/"):
            return []  # the outpost, flows and health endpoints are not part of the API document
        problems = super().check(request, API)
        path = request.raw_path[len(API) :]
        template, ops, _ = self.match(path)
        if template is None or ops.get(request.method.lower()) is None:
            return problems
        op = ops[request.method.lower()]
        params = {}
        for param in op.get("parameters", []) + ops.get("parameters", []):
            param = self.resolve(param)
            if param.get("in") == "query":
                params[param["name"]] = param
        for name, values in request.query.items():
            if name not in params:
                problems.append(f"{request.method} {template}: unknown query parameter {name!r}")
                continue
            schema = params[name].get("schema", {})
            if schema.get("type") != "array" and len(values) > 1:
                problems.append(f"{request.method} {template}: query parameter {name!r} given {len(values)} times")
            item = schema.get("items", {}) if schema.get("type") == "array" else schema
            for value in values:
                reason = _query_value_problem(value, item)
                if reason:
                    problems.append(f"{request.method} {template}: query parameter {name}={value!r}: {reason}")
        return problems

    def validate(self, instance, schema, response=False):
        key = (id(schema), response)
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                prepared = _strict(_openapi30_to_jsonschema(schema, self, response=response))
                validator = self.draft(prepared, format_checker=self.draft.FORMAT_CHECKER)
                self._validators[key] = validator
        return [f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}" for e in validator.iter_errors(instance)]

    def check_response(self, request, status, body):
        """The emulator's own answer against the document: a documented status's schema, closed (an
        unknown field is a violation), read-only fields required. authentik documents no 404 (DRF's
        ``{"detail": ...}``) nor 5xx: those statuses are not checked."""
        if not request.raw_path.startswith(API + "/"):
            return []
        template, ops, _ = self.match(request.raw_path[len(API) :])
        op = (ops or {}).get(request.method.lower())
        spec = self.resolve(((op or {}).get("responses") or {}).get(str(status)))
        if spec is None:
            return []
        schema = ((spec.get("content") or {}).get("application/json") or {}).get("schema")
        if schema is None:
            return [] if body is None else [f"response {request.method} {template} -> {status}: a body where the spec has none"]
        body = json.loads(json.dumps(body))
        return [f"response {request.method} {template} -> {status}: {p}" for p in self.validate(body, schema, response=True)]


def _query_value_problem(value, schema):
    kind = schema.get("type")
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        return "not an integer"
    if kind == "number" and not re.fullmatch(r"-?\d+(\.\d+)?", value):
        return "not a number"
    if kind == "boolean" and value.lower() not in ("true", "false", "1", "0"):
        return "not a boolean"
    if schema.get("format") == "uuid":
        try:
            uuid.UUID(value)
        except ValueError:
            return "not a UUID"
    if "enum" in schema and value not in schema["enum"]:
        return f"not one of {schema['enum']}"
    return None


def _truthy(value):
    return str(value).lower() in ("true", "1")


# -- the emulator ----------------------------------------------------------------------------------------
class AuthentikEmulator(Emulator):
    """authentik at ``spec_version`` (the OpenAPI document requests are checked against) reporting
    ``version`` (defaults to the spec version; set an older one to test refusals)."""

    name = "authentik"

    def __init__(self, spec_version="2025.6.1", version=None, token="ak-emulator-token", max_page_size=100):
        super().__init__()
        self.spec_version = spec_version
        self.version = version or spec_version
        self.checker = checker_for(spec_version)
        self.max_page_size = max_page_size
        self.public_url = None  # defaults to self.url once started
        self.blueprint_delay = 0.2  # seconds a queued blueprint apply takes (2025.8+)
        self._ids = itertools.count(1)
        self.flows, self.scopes, self.users, self.groups = {}, {}, {}, {}
        self.policies, self.providers, self.applications, self.bindings = {}, {}, {}, {}
        self.outposts, self.tokens, self.blueprints, self.sessions = {}, {}, {}, {}
        self._seed(token)
        self._routes()

    def start(self, port=0):
        super().start(port)
        # The handler writes headers and body separately: without TCP_NODELAY every answer waits ~40 ms
        # for the client's delayed ACK. The handler class is local to this server, so this is ours alone.
        self.server.RequestHandlerClass.disable_nagle_algorithm = True
        if self.public_url is None:
            self.public_url = self.url
        return self

    # -- version-dependent behaviour ---------------------------------------------------------------------
    @property
    def has_parents(self):
        return version_tuple(self.version) >= (2025, 12)

    @property
    def async_blueprints(self):
        return version_tuple(self.version) >= (2025, 8)

    @property
    def base_url(self):
        return self.public_url or self.url

    # -- initial state -----------------------------------------------------------------------------------
    def _seed(self, token):
        for slug, title, designation in DEFAULT_FLOWS:
            pk = str(uuid.uuid4())
            self.flows[pk] = {"pk": pk, "slug": slug, "name": title, "title": title, "designation": designation}
        for managed, name, scope in MANAGED_SCOPES:
            if managed.endswith("scope-entitlements") and version_tuple(self.version) < (2025, 2):
                continue
            pk = str(uuid.uuid4())
            self.scopes[pk] = {"pk": pk, "managed": managed, "name": name, "scope_name": scope}
        admins = self._new_group("authentik Admins", is_superuser=True)
        admin = self.add_user("akadmin", groups=[], superuser=True)
        admins["users"].append(admin["pk"])
        self.token_user = admin["pk"]
        self.add_token("hecate-api", token, user=admin["pk"], expires_in=86400 * 30)
        pk = str(uuid.uuid4())
        self.outposts[pk] = {
            "pk": pk,
            "name": EMBEDDED_NAME,
            "type": "proxy",
            "providers": [],
            "service_connection": None,
            "config": {"authentik_host": "", "log_level": "info", "object_naming_template": "ak-outpost-%(name)s"},
            "managed": EMBEDDED,
        }
        for name, path in (
            ("Default - Authentication flow", "default/flow-default-authentication-flow.yaml"),
            (
                "Default - Provider authorization flow (implicit consent)",
                "default/flow-default-provider-authorization-implicit-consent.yaml",
            ),
        ):
            pk = str(uuid.uuid4())
            self.blueprints[pk] = {
                "pk": pk,
                "name": name,
                "path": path,
                "context": {},
                "last_applied": _now(),
                "last_applied_hash": hashlib.sha256(path.encode()).hexdigest(),
                "status": "successful",
                "enabled": True,
                "content": "",
                "_pending": None,
            }
        # A flow binding a fresh install has, so binding lists are never trivially empty.
        auth_flow = self.flow_by_slug("default-authentication-flow")
        binding_pk = str(uuid.uuid4())
        self.bindings[binding_pk] = self._binding_defaults({"pk": binding_pk, "target": auth_flow["pk"], "group": admins["pk"]})

    def _new_group(self, name, is_superuser=False, parents=None, attributes=None):
        pk = str(uuid.uuid4())
        group = {
            "pk": pk,
            "num_pk": next(self._ids),
            "name": name,
            "is_superuser": is_superuser,
            "parents": list(parents or []),
            "users": [],
            "attributes": dict(attributes or {}),
            "roles": [],
        }
        self.groups[pk] = group
        return group

    # -- test helpers ------------------------------------------------------------------------------------
    def add_user(self, username, groups=(), superuser=False, permissions=()):
        """Create a user and put it in the named groups (which must exist). ``permissions``: the global
        permissions (``app_label.codename``) its roles give it; a superuser has them all. Returns the user."""
        pk = next(self._ids)
        user = {"pk": pk, "username": username, "name": username.title(), "email": f"{username}@example.org", "is_superuser": superuser}
        user["permissions"] = set(permissions)
        user["uid"] = hashlib.sha256(username.encode()).hexdigest()
        self.users[pk] = user
        for name in groups:
            group = self.group_by_name(name)
            if group is None:
                raise KeyError(f"no group {name!r}")
            group["users"].append(pk)
        return user

    def add_token(self, identifier, key, user=None, expires_in=None, intent="api"):
        pk = str(uuid.uuid4())
        expires = None
        if expires_in is not None:
            expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=expires_in)).isoformat()
        self.tokens[pk] = {
            "pk": pk,
            "managed": None,
            "identifier": identifier,
            "key": key,
            "intent": intent,
            "user": user or self.token_user,
            "description": "",
            "expires": expires,
            "expiring": expires is not None,
        }
        return self.tokens[pk]

    def add_outpost(self, name, providers=()):
        """A proxy outpost of one's own (not the embedded one), serving ``providers`` (pks)."""
        pk = str(uuid.uuid4())
        self.outposts[pk] = {
            "pk": pk,
            "name": name,
            "type": "proxy",
            "providers": list(providers),
            "service_connection": None,
            "config": {"authentik_host": "", "log_level": "info", "object_naming_template": "ak-outpost-%(name)s"},
            "managed": None,
        }
        return self.outposts[pk]

    def login(self, username):
        """A proxy session for ``username`` (what logging in through the flow leaves behind).
        Returns the ``Cookie`` header value to send."""
        user = self.user_by_name(username)
        if user is None:
            raise KeyError(f"no user {username!r}")
        session = secrets.token_urlsafe(24)
        self.sessions[session] = user["pk"]
        return f"{SESSION_COOKIE}={session}"

    def flow_by_slug(self, slug):
        return next((f for f in self.flows.values() if f["slug"] == slug), None)

    def group_by_name(self, name):
        return next((g for g in self.groups.values() if g["name"] == name), None)

    def user_by_name(self, name):
        return next((u for u in self.users.values() if u["username"] == name), None)

    def provider_by_name(self, name):
        return next((p for p in self.providers.values() if p["name"] == name), None)

    def application_by_slug(self, slug):
        return next((a for a in self.applications.values() if a["slug"] == slug), None)

    def embedded_outpost(self):
        return next(o for o in self.outposts.values() if o.get("managed") == EMBEDDED)

    # -- routing -----------------------------------------------------------------------------------------
    def _routes(self):
        uuid_re = r"(?P<pk>[0-9a-fA-F-]{36})"
        r = self.route
        r("GET", API + r"/admin/version/", self.get_version)
        r("GET", API + r"/core/users/me/", self.get_me)
        r("GET", API + r"/flows/instances/", self.list_flows)
        r("GET", API + r"/flows/instances/(?P<slug>[^/]+)/", self.get_flow)
        r("GET", API + r"/propertymappings/provider/scope/", self.list_scopes)
        # groups
        r("GET", API + r"/core/groups/", self.list_groups)
        r("POST", API + r"/core/groups/", self.create_group)
        r("GET", API + rf"/core/groups/{uuid_re}/", self.get_group)
        r("PATCH", API + rf"/core/groups/{uuid_re}/", self.update_group)
        r("PUT", API + rf"/core/groups/{uuid_re}/", self.update_group)
        r("DELETE", API + rf"/core/groups/{uuid_re}/", self.delete_group)
        # expression policies
        r("GET", API + r"/policies/expression/", self.list_policies)
        r("POST", API + r"/policies/expression/", self.create_policy)
        r("GET", API + rf"/policies/expression/{uuid_re}/", self.get_policy)
        r("PATCH", API + rf"/policies/expression/{uuid_re}/", self.update_policy)
        r("PUT", API + rf"/policies/expression/{uuid_re}/", self.update_policy)
        r("DELETE", API + rf"/policies/expression/{uuid_re}/", self.delete_policy)
        # proxy providers
        r("GET", API + r"/providers/proxy/", self.list_providers)
        r("POST", API + r"/providers/proxy/", self.create_provider)
        r("GET", API + r"/providers/proxy/(?P<pk>\d+)/", self.get_provider)
        r("PATCH", API + r"/providers/proxy/(?P<pk>\d+)/", self.update_provider)
        r("PUT", API + r"/providers/proxy/(?P<pk>\d+)/", self.update_provider)
        r("DELETE", API + r"/providers/proxy/(?P<pk>\d+)/", self.delete_provider)
        # applications
        r("GET", API + r"/core/applications/", self.list_applications)
        r("POST", API + r"/core/applications/", self.create_application)
        r("GET", API + r"/core/applications/(?P<slug>[^/]+)/", self.get_application)
        r("PATCH", API + r"/core/applications/(?P<slug>[^/]+)/", self.update_application)
        r("PUT", API + r"/core/applications/(?P<slug>[^/]+)/", self.update_application)
        r("DELETE", API + r"/core/applications/(?P<slug>[^/]+)/", self.delete_application)
        # bindings
        r("GET", API + r"/policies/bindings/", self.list_bindings)
        r("POST", API + r"/policies/bindings/", self.create_binding)
        r("GET", API + rf"/policies/bindings/{uuid_re}/", self.get_binding)
        r("PATCH", API + rf"/policies/bindings/{uuid_re}/", self.update_binding)
        r("PUT", API + rf"/policies/bindings/{uuid_re}/", self.update_binding)
        r("DELETE", API + rf"/policies/bindings/{uuid_re}/", self.delete_binding)
        # outposts
        r("GET", API + r"/outposts/instances/", self.list_outposts)
        r("GET", API + rf"/outposts/instances/{uuid_re}/", self.get_outpost)
        r("PATCH", API + rf"/outposts/instances/{uuid_re}/", self.update_outpost)
        r("PUT", API + rf"/outposts/instances/{uuid_re}/", self.update_outpost)
        # tokens
        r("GET", API + r"/core/tokens/", self.list_tokens)
        r("GET", API + r"/core/tokens/(?P<identifier>[^/]+)/", self.get_token)
        # blueprints
        r("GET", API + r"/managed/blueprints/", self.list_blueprints)
        r("GET", API + rf"/managed/blueprints/{uuid_re}/", self.get_blueprint)
        r("POST", API + rf"/managed/blueprints/{uuid_re}/apply/", self.apply_blueprint)
        # outside the API: health, the embedded outpost, the OAuth authorize step and flows
        r("GET", r"/-/health/live/", lambda req: Response(200, ""))
        r("GET", r"/-/health/ready/", lambda req: Response(200, ""))
        r("GET", r"/outpost\.goauthentik\.io/auth/caddy", self.outpost_auth_caddy)
        r("GET", r"/outpost\.goauthentik\.io/start", self.outpost_start)
        r("GET", r"/outpost\.goauthentik\.io/callback", lambda req: Response(302, "", {"Location": "/"}))
        r("GET", r"/application/o/authorize/", self.authorize)
        r("GET", r"/if/flow/(?P<slug>[^/]+)/", lambda req: Response(200, "<html>authentik login</html>", {"Content-Type": "text/html"}))

    def response_problems(self, request, response):
        return self.checker.check_response(request, response.status, response.body)

    # -- auth ----------------------------------------------------------------------------------------------
    def authenticate(self, request):
        if not request.path.startswith(API + "/"):
            return None
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return Response(403, {"detail": "Authentication credentials were not provided."})
        key = header[len("Bearer ") :]
        token = next((t for t in self.tokens.values() if t["key"] == key and t["intent"] == "api"), None)
        if token is None or (token["expiring"] and token["expires"] and token["expires"] < _iso_now_offset()):
            return Response(403, {"detail": "Token invalid/expired"})
        request.user = token["user"]
        missing = self.missing_permissions(request)
        if missing:
            return Response(403, NOT_PERMITTED)
        return None

    def required_permissions(self, request):
        """The global permissions a request needs, as authentik's defaults decide
        (authentik/root/settings.py REST_FRAMEWORK): authentik/rbac/filters.py ObjectFilter raises
        PermissionDenied on any list or detail of a model the user may not view (object permissions are
        not modelled), and authentik/rbac/permissions.py ObjectPermissions (DRF's DjangoObjectPermissions
        perms_map) needs add_ for a POST, change_ for PATCH/PUT, delete_ for DELETE, on top of view_ for
        an object. Exceptions: the version and the token's own user (IsAuthenticated), the application
        list (authentik/core/api/applications.py ApplicationViewSet.list filters by policy instead)."""
        path = request.path[len(API) :]
        model = next((m for prefix, m in PERMISSION_MODELS if path.startswith(prefix)), None)
        if model is None:
            return []
        app_label, name = model.split(".")
        detail = path.rstrip("/").count("/") > next(p for p, m in PERMISSION_MODELS if m == model).rstrip("/").count("/")
        if not detail and request.method == "GET" and name == "application":
            return []
        if not detail and request.method == "POST":
            return [f"{app_label}.add_{name}"]
        verb = {"PATCH": "change", "PUT": "change", "DELETE": "delete", "POST": "add"}.get(request.method)
        # a detail write reads the object first (get_object runs ObjectFilter); blueprints' apply is a POST
        # on the detail (authentik/blueprints/api.py apply: @permission_required view, then the object's POST)
        return [f"{app_label}.view_{name}"] + ([f"{app_label}.{verb}_{name}"] if verb else [])

    def missing_permissions(self, request):
        user = self.users[request.user]
        if self._is_superuser(user):
            return []
        return [p for p in self.required_permissions(request) if p not in user["permissions"]]

    # -- helpers -------------------------------------------------------------------------------------------
    def _page(self, request, items):
        try:
            page = int(request.arg("page", 1))
            size = int(request.arg("page_size", 100))
        except ValueError:
            return Response(404, {"detail": "Invalid page."})
        size = max(1, min(size, self.max_page_size))
        total = len(items)
        pages = max(1, math.ceil(total / size))
        if page < 1 or page > pages:
            return Response(404, {"detail": "Invalid page."})
        chunk = items[(page - 1) * size : page * size]
        start = (page - 1) * size + 1 if chunk else 0
        return {
            "pagination": {
                "next": page + 1 if page < pages else 0,
                "previous": page - 1 if page > 1 else 0,
                "count": total,
                "current": page,
                "total_pages": pages,
                "start_index": start,
                "end_index": start + len(chunk) - 1 if chunk else 0,
            },
            "results": chunk,
            **({"autocomplete": {}} if version_tuple(self.spec_version) >= (2025, 12) else {}),
        }

    @staticmethod
    def _not_found(what):
        return Response(404, {"detail": f"No {what} matches the given query."})

    @staticmethod
    def _crash(request):
        """A server error as authentik answers it: authentik/root/urls.py sets handler500 to
        authentik/core/views/error.py ServerErrorView, a TemplateView (GET only). Django calls it with
        the failed request, so a failed POST/PATCH/PUT/DELETE gets the view's 405 with an empty body;
        a failed GET gets the 500 page."""
        if request.method == "GET":
            return Response(500, "<html>Server Error</html>", {"Content-Type": "text/html"})
        return Response(405, None, {"Content-Type": "text/html"})

    @staticmethod
    def _field_errors(errors):
        return Response(400, errors)

    def _search(self, request, items, *fields):
        term = request.arg("search")
        if not term:
            return items
        return [i for i in items if any(term.lower() in str(i.get(f, "")).lower() for f in fields)]

    # -- version, me, flows, scopes ----------------------------------------------------------------------
    def get_version(self, request):
        return {
            "version_current": self.version,
            "version_latest": self.version,
            "version_latest_valid": True,
            "build_hash": "",
            "outdated": False,
            "outpost_outdated": False,
        }

    def get_me(self, request):
        user = self.users[request.user]
        groups = [{"name": g["name"], "pk": g["pk"]} for g in self.groups.values() if user["pk"] in g["users"]]
        body = {
            "pk": user["pk"],
            "username": user["username"],
            "name": user["name"],
            "is_active": True,
            "is_superuser": user["is_superuser"] or any(g["is_superuser"] for g in self.groups.values() if user["pk"] in g["users"]),
            "groups": groups,
            "email": user["email"],
            "avatar": "",
            "uid": user["uid"],
            "settings": {},
            "type": "internal",
            "system_permissions": [],
        }
        if version_tuple(self.spec_version) >= (2025, 12):
            body["roles"] = []
        return {"user": body}

    def _flow_out(self, flow):
        out = {
            "pk": flow["pk"],
            "policybindingmodel_ptr_id": flow["pk"],
            "name": flow["name"],
            "slug": flow["slug"],
            "title": flow["title"],
            "designation": flow["designation"],
            "background": "/static/dist/assets/images/flow_background.jpg",
            "stages": [],
            "policies": [],
            "cache_count": 0,
            "policy_engine_mode": "any",
            "compatibility_mode": False,
            "export_url": f"{API}/flows/instances/{flow['slug']}/export/",
            "layout": "stacked",
            "denied_action": "message_continue",
            "authentication": "none",
        }
        if version_tuple(self.spec_version) >= (2025, 12):
            out["background_url"] = out["background"]
            out["background_themed_urls"] = None
        return out

    def list_flows(self, request):
        items = sorted(self.flows.values(), key=lambda f: f["slug"])
        if request.arg("slug"):
            items = [f for f in items if f["slug"] == request.arg("slug")]
        if request.arg("designation"):
            items = [f for f in items if f["designation"] == request.arg("designation")]
        items = self._search(request, items, "slug", "name", "title")
        return self._page(request, [self._flow_out(f) for f in items])

    def get_flow(self, request):
        flow = self.flow_by_slug(request.params["slug"])
        return self._flow_out(flow) if flow else self._not_found("Flow")

    def list_scopes(self, request):
        items = sorted(self.scopes.values(), key=lambda s: s["name"])
        if request.arg("managed"):
            wanted = set(request.query.get("managed"))
            items = [s for s in items if s["managed"] in wanted]
        out = [
            {
                **s,
                "expression": "return {}",
                "component": "ak-property-mapping-provider-scope-form",
                "verbose_name": "Scope Mapping",
                "verbose_name_plural": "Scope Mappings",
                "meta_model_name": "authentik_providers_oauth2.scopemapping",
                "description": "",
            }
            for s in items
        ]
        return self._page(request, out)

    # -- groups --------------------------------------------------------------------------------------------
    def _group_out(self, group, include_users=True):
        out = {
            "pk": group["pk"],
            "num_pk": group["num_pk"],
            "name": group["name"],
            "is_superuser": group["is_superuser"],
            "users": list(group["users"]),
            "users_obj": [self._partial_user(self.users[u]) for u in group["users"]] if include_users else None,
            "attributes": group["attributes"],
            "roles": [],
            "roles_obj": [],
        }
        if self.has_parents:
            out["parents"] = list(group["parents"])
            out["parents_obj"] = [self._related_group(self.groups[p]) for p in group["parents"] if p in self.groups]
            out["inherited_roles_obj"] = []
            children = [g["pk"] for g in self.groups.values() if group["pk"] in g["parents"]]
            out["children"] = children
            out["children_obj"] = [self._related_group(self.groups[c]) for c in children]
        else:
            parent = group["parents"][0] if group["parents"] else None
            out["parent"] = parent
            out["parent_name"] = self.groups[parent]["name"] if parent in self.groups else None
        return out

    def _related_group(self, group):
        return {
            "pk": group["pk"],
            "group_uuid": group["pk"],
            "name": group["name"],
            "is_superuser": group["is_superuser"],
            "attributes": group["attributes"],
        }

    def _partial_group(self, group):
        return {k: group[k] for k in ("pk", "num_pk", "name", "is_superuser", "attributes")}

    def _partial_user(self, user):
        return {
            "pk": user["pk"],
            "username": user["username"],
            "name": user["name"],
            "is_active": True,
            "last_login": None,
            "email": user["email"],
            "attributes": {},
            "uid": user["uid"],
        }

    def list_groups(self, request):
        items = sorted(self.groups.values(), key=lambda g: g["name"])
        if request.arg("name"):
            items = [g for g in items if g["name"] == request.arg("name")]
        items = self._search(request, items, "name")
        include_users = _truthy(request.arg("include_users", "true"))
        return self._page(request, [self._group_out(g, include_users) for g in items])

    def get_group(self, request):
        group = self.groups.get(request.params["pk"])
        return self._group_out(group, _truthy(request.arg("include_users", "true"))) if group else self._not_found("Group")

    def _group_fields(self, body, current=None):
        """authentik/core/api/groups.py GroupSerializer: the fields sent only (partial on PATCH)."""
        errors = {}
        if "name" in body:
            other = self.group_by_name(body["name"])
            if other is not None and (current is None or other["pk"] != current["pk"]):
                errors["name"] = ["group with this name already exists."]
        parents = None
        if "parent" in body:  # < 2025.12 (the strict checker refuses it on newer specs)
            parents = [body["parent"]] if body["parent"] else []
        if "parents" in body:
            parents = list(body["parents"])
        if parents is not None:
            field = "parents" if "parents" in body else "parent"
            for parent in parents:
                if parent not in self.groups:
                    errors.setdefault(field, []).append(f'Invalid pk "{parent}" - object does not exist.')
                # authentik/core/api/groups.py GroupSerializer.validate_parent: not the group itself
                elif current is not None and parent == current["pk"]:
                    errors.setdefault(field, []).append("Cannot set group as parent of itself.")
        for user in body.get("users", []):
            if user not in self.users:
                errors.setdefault("users", []).append(f'Invalid pk "{user}" - object does not exist.')
        return errors, parents

    def create_group(self, request):
        body = request.body or {}
        errors, parents = self._group_fields(body)
        if errors:
            return self._field_errors(errors)
        group = self._new_group(body["name"], body.get("is_superuser", False), parents, body.get("attributes"))
        group["users"] = list(body.get("users", []))
        return Response(201, self._group_out(group))

    def update_group(self, request):
        group = self.groups.get(request.params["pk"])
        if group is None:
            return self._not_found("Group")
        body = request.body or {}
        errors, parents = self._group_fields(body, group)
        if errors:
            return self._field_errors(errors)
        for field in ("name", "is_superuser", "users", "attributes"):
            if field in body:
                group[field] = body[field]
        if parents is not None:
            group["parents"] = parents
        return self._group_out(group)

    def delete_group(self, request):
        group = self.groups.pop(request.params["pk"], None)
        if group is None:
            return self._not_found("Group")
        for pk in [pk for pk, b in self.bindings.items() if b["group"] == group["pk"]]:
            del self.bindings[pk]
        for other in self.groups.values():
            if group["pk"] in other["parents"]:
                other["parents"].remove(group["pk"])
        return Response(204, None)

    # -- expression policies -------------------------------------------------------------------------------
    def _policy_out(self, policy):
        return {
            **policy,
            "component": "ak-policy-expression-form",
            "verbose_name": "Expression Policy",
            "verbose_name_plural": "Expression Policies",
            "meta_model_name": "authentik_policies_expression.expressionpolicy",
            "bound_to": sum(1 for b in self.bindings.values() if b["policy"] == policy["pk"]),
        }

    def list_policies(self, request):
        items = sorted(self.policies.values(), key=lambda p: p["name"])
        if request.arg("name"):
            items = [p for p in items if p["name"] == request.arg("name")]
        items = self._search(request, items, "name")
        return self._page(request, [self._policy_out(p) for p in items])

    def get_policy(self, request):
        policy = self.policies.get(request.params["pk"])
        return self._policy_out(policy) if policy else self._not_found("ExpressionPolicy")

    def _policy_errors(self, body, current=None):
        errors = {}
        if "name" in body:
            other = next((p for p in self.policies.values() if p["name"] == body["name"]), None)
            if other is not None and (current is None or other["pk"] != current["pk"]):
                errors["name"] = ["policy with this name already exists."]
        if "expression" in body:
            try:
                compile(
                    "def expression():\n" + "\n".join("    " + line for line in body["expression"].splitlines()), "<expression>", "exec"
                )
            except SyntaxError as exc:
                errors["expression"] = [f"invalid syntax: {exc.msg}"]
        return errors

    def create_policy(self, request):
        body = request.body or {}
        errors = self._policy_errors(body)
        if errors:
            return self._field_errors(errors)
        pk = str(uuid.uuid4())
        self.policies[pk] = {
            "pk": pk,
            "name": body["name"],
            "execution_logging": body.get("execution_logging", False),
            "expression": body["expression"],
        }
        return Response(201, self._policy_out(self.policies[pk]))

    def update_policy(self, request):
        policy = self.policies.get(request.params["pk"])
        if policy is None:
            return self._not_found("ExpressionPolicy")
        body = request.body or {}
        errors = self._policy_errors(body, policy)
        if errors:
            return self._field_errors(errors)
        policy.update({k: v for k, v in body.items() if k in ("name", "execution_logging", "expression")})
        return self._policy_out(policy)

    def delete_policy(self, request):
        policy = self.policies.pop(request.params["pk"], None)
        if policy is None:
            return self._not_found("ExpressionPolicy")
        for pk in [pk for pk, b in self.bindings.items() if b["policy"] == policy["pk"]]:
            del self.bindings[pk]
        return Response(204, None)

    # -- proxy providers ---------------------------------------------------------------------------------
    PROVIDER_FIELDS = (
        "name",
        "authentication_flow",
        "authorization_flow",
        "invalidation_flow",
        "property_mappings",
        "internal_host",
        "external_host",
        "internal_host_ssl_validation",
        "certificate",
        "skip_path_regex",
        "basic_auth_enabled",
        "basic_auth_password_attribute",
        "basic_auth_user_attribute",
        "mode",
        "intercept_header_auth",
        "cookie_domain",
        "jwt_federation_sources",
        "jwt_federation_providers",
        "access_token_validity",
        "refresh_token_validity",
    )

    def _provider_app(self, provider):
        return next((a for a in self.applications.values() if a["provider"] == provider["pk"]), None)

    def _provider_base(self, provider):
        app = self._provider_app(provider)
        return {
            "pk": provider["pk"],
            "name": provider["name"],
            "authentication_flow": provider["authentication_flow"],
            "authorization_flow": provider["authorization_flow"],
            "invalidation_flow": provider["invalidation_flow"],
            "property_mappings": list(provider["property_mappings"]),
            "component": "ak-provider-proxy-form",
            "assigned_application_slug": app["slug"] if app else None,
            "assigned_application_name": app["name"] if app else None,
            "assigned_backchannel_application_slug": None,
            "assigned_backchannel_application_name": None,
            "verbose_name": "Proxy Provider",
            "verbose_name_plural": "Proxy Providers",
            "meta_model_name": "authentik_providers_proxy.proxyprovider",
        }

    def _provider_out(self, provider):
        out = self._provider_base(provider)
        for field in self.PROVIDER_FIELDS:
            out.setdefault(field, provider[field])
        out["client_id"] = provider["client_id"]
        out["redirect_uris"] = [
            {
                "matching_mode": "strict",
                "url": provider["external_host"].rstrip("/") + "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true",
            }
        ]
        out["outpost_set"] = [f"Outpost {o['name']}" for o in self.outposts.values() if provider["pk"] in o["providers"]]
        return out

    def list_providers(self, request):
        items = sorted(self.providers.values(), key=lambda p: p["pk"])
        for param, field in (("name__iexact", "name"), ("mode__iexact", "mode"), ("external_host__iexact", "external_host")):
            if request.arg(param):
                items = [p for p in items if str(p[field]).lower() == request.arg(param).lower()]
        if request.arg("application__isnull") is not None:
            want_null = _truthy(request.arg("application__isnull"))
            items = [p for p in items if (self._provider_app(p) is None) == want_null]
        items = self._search(request, items, "name", "external_host")
        return self._page(request, [self._provider_out(p) for p in items])

    def get_provider(self, request):
        provider = self.providers.get(int(request.params["pk"]))
        return self._provider_out(provider) if provider else self._not_found("ProxyProvider")

    def _provider_errors(self, body, current=None):
        """DRF validates the fields sent, and only those (a PATCH is ``partial=True``): ``body`` is the
        request body, on create and on update alike, never the stored object merged with it."""
        errors = {}
        if "name" in body:
            other = self.provider_by_name(body["name"])
            if other is not None and (current is None or other["pk"] != current["pk"]):
                errors["name"] = ["provider with this name already exists."]
        for field in ("authorization_flow", "invalidation_flow", "authentication_flow"):
            value = body.get(field)
            if value and value not in self.flows:
                errors[field] = [f'Invalid pk "{value}" - object does not exist.']
        for mapping in body.get("property_mappings", []):
            if mapping not in self.scopes:
                errors.setdefault("property_mappings", []).append(f'Invalid pk "{mapping}" - object does not exist.')
        # authentik/providers/proxy/api.py ProxyProviderSerializer.validate_basic_auth_enabled: both
        # attributes must be in the same request (it reads initial_data, not the stored provider)
        if body.get("basic_auth_enabled") and not (body.get("basic_auth_password_attribute") and body.get("basic_auth_user_attribute")):
            errors["basic_auth_enabled"] = ["User and password attributes must be set when basic auth is enabled."]
        # authentik/providers/proxy/api.py ProxyProviderSerializer.validate: attrs holds the fields sent;
        # no mode sent counts as mode proxy, which needs internal_host in the same request
        if body.get("mode", "proxy") == "proxy" and body.get("internal_host", "") == "":
            errors["internal_host"] = ["Internal host cannot be empty when forward auth is disabled."]
        return errors

    def _oauth_defaults(self, provider):
        """authentik/providers/proxy/models.py ProxyProvider.set_oauth_defaults(), called by
        ProxyProviderSerializer.create and .update (providers/proxy/api.py): the managed scopes in
        PROXY_SCOPES are added on every write, so a PATCH taking one off is undone."""
        mappings = list(provider["property_mappings"])
        for pk, scope in self.scopes.items():
            if scope["managed"] in PROXY_SCOPES and pk not in mappings:
                mappings.append(pk)
        provider["property_mappings"] = mappings

    def create_provider(self, request):
        body = request.body or {}
        provider = {
            "authentication_flow": None,
            "property_mappings": [],
            "internal_host": "",
            "internal_host_ssl_validation": True,
            "certificate": None,
            "skip_path_regex": "",
            "basic_auth_enabled": False,
            "basic_auth_password_attribute": "",
            "basic_auth_user_attribute": "",
            "mode": "proxy",
            "intercept_header_auth": True,
            "cookie_domain": "",
            "jwt_federation_sources": [],
            "jwt_federation_providers": [],
            "access_token_validity": "hours=24",
            "refresh_token_validity": "days=30",
            **{k: v for k, v in body.items() if k in self.PROVIDER_FIELDS},
        }
        errors = self._provider_errors(body)
        if errors:
            return self._field_errors(errors)
        provider["pk"] = next(self._ids)
        provider["client_id"] = secrets.token_hex(20)
        self._oauth_defaults(provider)
        self.providers[provider["pk"]] = provider
        return Response(201, self._provider_out(provider))

    def update_provider(self, request):
        provider = self.providers.get(int(request.params["pk"]))
        if provider is None:
            return self._not_found("ProxyProvider")
        body = request.body or {}
        errors = self._provider_errors(body, provider)
        if errors:
            return self._field_errors(errors)
        provider.update({k: v for k, v in body.items() if k in self.PROVIDER_FIELDS})
        self._oauth_defaults(provider)
        return self._provider_out(provider)

    def delete_provider(self, request):
        provider = self.providers.pop(int(request.params["pk"]), None)
        if provider is None:
            return self._not_found("ProxyProvider")
        for outpost in self.outposts.values():
            if provider["pk"] in outpost["providers"]:
                outpost["providers"].remove(provider["pk"])
        for app in self.applications.values():
            if app["provider"] == provider["pk"]:
                app["provider"] = None
        return Response(204, None)

    # -- applications --------------------------------------------------------------------------------------
    APP_FIELDS = ("name", "slug", "provider", "backchannel_providers", "open_in_new_tab", "meta_launch_url", "meta_description",
                  "meta_publisher", "policy_engine_mode", "group", "meta_icon", "meta_hide")  # fmt: skip

    def _app_out(self, app):
        provider = self.providers.get(app["provider"]) if app["provider"] is not None else None
        out = {k: app[k] for k in self.APP_FIELDS if k in app}
        out["pk"] = app["pk"]
        out["provider_obj"] = self._provider_base(provider) if provider else None
        out["backchannel_providers_obj"] = []
        out["launch_url"] = app.get("meta_launch_url") or (provider["external_host"] if provider else None)
        if version_tuple(self.spec_version) >= (2025, 12):
            out.setdefault("meta_icon", "")
            out["meta_icon_url"] = None
            out["meta_icon_themed_urls"] = None
            out.setdefault("meta_hide", False)
        else:
            out["meta_icon"] = None
            out.pop("meta_hide", None)
        return out

    def user_passes(self, user_pk, app):
        """authentik/policies/engine.py PolicyEngine for an application: the enabled group and user
        bindings make one result together (compute_static_bindings: passing when any of them passes,
        whatever the mode and the order), then ``policy_engine_mode`` (``any`` / ``all``) combines it
        with each policy's result. No binding: passing."""
        bindings = [b for b in self.bindings.values() if b["target"] == app["pk"] and b["enabled"]]
        if not bindings:
            return True
        static, results = [], []
        for binding in bindings:
            if binding["policy"] is None:
                group = self.groups.get(binding["group"]) if binding["group"] else None
                member = bool(group) and user_pk in group["users"] if binding["group"] else binding["user"] == user_pk
                static.append(member != binding["negate"])
            else:
                results.append(False)  # expression policies are not evaluated by the emulator: fail closed
        if static:
            results.append(any(static))
        return all(results) if app["policy_engine_mode"] == "all" else any(results)

    def list_applications(self, request):
        items = sorted(self.applications.values(), key=lambda a: a["slug"])
        user = self.users[request.user]
        if not (_truthy(request.arg("superuser_full_list", "false")) and self._is_superuser(user)):
            items = [a for a in items if self.user_passes(user["pk"], a)]
        for param in ("slug", "name", "meta_publisher", "group"):
            if request.arg(param) is not None:
                items = [a for a in items if a.get(param) == request.arg(param)]
        items = self._search(request, items, "name", "slug")
        return self._page(request, [self._app_out(a) for a in items])

    def _is_superuser(self, user):
        return user["is_superuser"] or any(g["is_superuser"] for g in self.groups.values() if user["pk"] in g["users"])

    def get_application(self, request):
        app = self.application_by_slug(request.params["slug"])
        return self._app_out(app) if app else self._not_found("Application")

    def _app_errors(self, body, current=None):
        """authentik/core/api/applications.py ApplicationSerializer: the fields sent only (partial on PATCH)."""
        errors = {}
        if "slug" in body:
            other = self.application_by_slug(body["slug"])
            if other is not None and (current is None or other["pk"] != current["pk"]):
                errors["slug"] = ["Application with this slug already exists."]
            # authentik/core/models.py Application.slug: a SlugField (max_length 50) up to 2025.10, a
            # TextField with validate_slug from 2025.12
            elif version_tuple(self.version) < SLUG_MAX_UNTIL and len(body["slug"]) > 50:
                errors["slug"] = ["Ensure this field has no more than 50 characters."]
        provider = body.get("provider")
        if provider is not None:
            if provider not in self.providers:
                errors["provider"] = [f'Invalid pk "{provider}" - object does not exist.']
            else:
                holder = next((a for a in self.applications.values() if a["provider"] == provider), None)
                if holder is not None and (current is None or holder["pk"] != current["pk"]):
                    errors["provider"] = ["Application with this provider already exists."]
        return errors

    def create_application(self, request):
        body = request.body or {}
        app = {"provider": None, "open_in_new_tab": False, "meta_launch_url": "", "meta_description": "", "meta_publisher": "",
               "policy_engine_mode": "any", "group": "", "backchannel_providers": []}  # fmt: skip
        app.update({k: v for k, v in body.items() if k in self.APP_FIELDS})
        errors = self._app_errors(body)
        if errors:
            return self._field_errors(errors)
        app["pk"] = str(uuid.uuid4())
        self.applications[app["pk"]] = app
        return Response(201, self._app_out(app))

    def update_application(self, request):
        app = self.application_by_slug(request.params["slug"])
        if app is None:
            return self._not_found("Application")
        body = request.body or {}
        errors = self._app_errors(body, app)
        if errors:
            return self._field_errors(errors)
        app.update({k: v for k, v in body.items() if k in self.APP_FIELDS})
        return self._app_out(app)

    def delete_application(self, request):
        app = self.application_by_slug(request.params["slug"])
        if app is None:
            return self._not_found("Application")
        del self.applications[app["pk"]]
        for pk in [pk for pk, b in self.bindings.items() if b["target"] == app["pk"]]:
            del self.bindings[pk]
        return Response(204, None)

    # -- policy bindings ---------------------------------------------------------------------------------
    def _binding_defaults(self, body):
        return {
            "policy": None,
            "group": None,
            "user": None,
            "negate": False,
            "enabled": True,
            "order": 0,
            "timeout": 30,
            "failure_result": False,
            **body,
        }

    def _binding_out(self, binding):
        group = self.groups.get(binding["group"]) if binding["group"] else None
        policy = self.policies.get(binding["policy"]) if binding["policy"] else None
        user = self.users.get(binding["user"]) if binding["user"] is not None else None
        out = dict(binding)
        out["group_obj"] = self._partial_group(group) if group and self.has_parents else (self._group_out(group, False) if group else None)
        out["policy_obj"] = (
            {
                "pk": policy["pk"],
                "name": policy["name"],
                "execution_logging": policy["execution_logging"],
                "component": "ak-policy-expression-form",
                "verbose_name": "Expression Policy",
                "verbose_name_plural": "Expression Policies",
                "meta_model_name": "authentik_policies_expression.expressionpolicy",
                "bound_to": 1,
            }
            if policy
            else None
        )
        # the binding's user_obj: a full User before 2025.12, a PartialUser after
        user_out = self._partial_user if version_tuple(self.spec_version) >= (2025, 12) else self._user_out
        out["user_obj"] = user_out(user) if user else None
        return out

    def _targets(self):
        return set(self.applications) | set(self.flows)

    def _binding_collides(self, body, current):
        """authentik/policies/models.py PolicyBinding.Meta.unique_together = ("policy", "target", "order")
        becomes DRF's UniqueTogetherValidator on PolicyBindingSerializer (rest_framework/validators.py,
        DRF 3.16). On an update it fills the fields not sent from the instance and filters with them, so
        ``policy=None`` is ``policy IS NULL``: every group or user binding of a target collides with any
        other on the same order. It skips the check only when no field changed, and ``target`` always
        counts as changed when sent (the serializer's field returns the Application subclass, the
        instance holds the base PolicyBindingModel, and Django's Model.__eq__ compares concrete models).
        A create is not checked that way (policy None is in the checked values: the validator skips), so
        duplicates can be made with POST; the database's unique index sees NULLs as distinct."""
        merged = {f: body.get(f, current[f]) for f in ("policy", "target", "order")}
        changed = [merged[f] for f in ("policy", "order") if merged[f] != current[f]]
        if "target" in body:
            changed.append(merged["target"])
        if not changed or None in changed:
            return False
        return any(
            other["pk"] != current["pk"] and all(other[f] == merged[f] for f in ("policy", "target", "order"))
            for other in self.bindings.values()
        )

    def _binding_errors(self, body, current=None):
        """authentik/policies/api/bindings.py PolicyBindingSerializer, on the fields sent only (partial on
        PATCH). Returns (status, errors): field errors first (DRF runs validate() only when they pass)."""
        errors = {}
        if current is None:  # required on create: target (declared required=True), order (no model default)
            errors.update({f: ["This field is required."] for f in ("target", "order") if f not in body})
        if "target" in body and body["target"] not in self._targets():
            errors["target"] = [f'Invalid pk "{body["target"]}" - object does not exist.']
        for field, known in (("group", self.groups), ("policy", self.policies), ("user", self.users)):
            if body.get(field) is not None and body[field] not in known:
                errors[field] = [f'Invalid pk "{body[field]}" - object does not exist.']
        if errors:
            return 400, errors
        # DRF's Serializer.run_validation runs the serializer's validators (the unique-together one below)
        # before validate()
        if current is not None and self._binding_collides(body, current):
            return 400, {"non_field_errors": ["The fields policy, target, order must make a unique set."]}
        # PolicyBindingSerializer.validate, since application entitlements (older releases read only
        # policy/group/user): target = attrs.get("target"), then target.supported_policy_binding_targets():
        # a PATCH without target is an AttributeError: a server error
        if "target" not in body:
            return 500, None
        # ... then exactly one of the supported fields (authentik/policies/models.py
        # PolicyBindingModel.supported_policy_binding_targets: policy, user, group) set *in the request*
        count = sum(1 for f in ("policy", "user", "group") if body.get(f))
        if count > 1:
            return 400, {"non_field_errors": ["Only one of 'policy', 'user', 'group' can be set."]}
        if count < 1:
            return 400, {"non_field_errors": ["One of 'policy', 'user', 'group' must be set."]}
        return 200, {}

    def list_bindings(self, request):
        items = list(self.bindings.values())
        # authentik/policies/api/bindings.py PolicyBindingFilter: target (a ModelChoiceFilter of the
        # binding's FK) and target_in (ModelMultipleChoiceFilter) refuse a target that does not exist with
        # django-filter's 400 (the choice field's invalid_choice message)
        if request.arg("target"):
            if request.arg("target") not in self._targets():
                return Response(400, {"target": ["Select a valid choice. That choice is not one of the available choices."]})
            items = [b for b in items if b["target"] == request.arg("target")]
        if "target_in" in request.query:
            wanted = set(request.query["target_in"])
            for target in request.query["target_in"]:
                if target not in self._targets():
                    return Response(400, {"target_in": [f"Select a valid choice. {target} is not one of the available choices."]})
            items = [b for b in items if b["target"] in wanted]
        if request.arg("policy"):
            items = [b for b in items if b["policy"] == request.arg("policy")]
        if request.arg("enabled") is not None:
            items = [b for b in items if b["enabled"] == _truthy(request.arg("enabled"))]
        items.sort(key=lambda b: (b["target"], b["order"], b["pk"]))
        return self._page(request, [self._binding_out(b) for b in items])

    def get_binding(self, request):
        binding = self.bindings.get(request.params["pk"])
        return self._binding_out(binding) if binding else self._not_found("PolicyBinding")

    def create_binding(self, request):
        body = request.body or {}
        status, errors = self._binding_errors(body)
        if errors:
            return Response(status, errors)
        binding = self._binding_defaults(dict(body))
        binding["pk"] = str(uuid.uuid4())
        self.bindings[binding["pk"]] = binding
        return Response(201, self._binding_out(binding))

    def update_binding(self, request):
        binding = self.bindings.get(request.params["pk"])
        if binding is None:
            return self._not_found("PolicyBinding")
        body = request.body or {}
        status, errors = self._binding_errors(body, binding)
        if status == 500:
            return self._crash(request)
        if errors:
            return Response(status, errors)
        binding.update(body)
        # the model keeps one of policy/group/user: the others sent as null or left as they were
        return self._binding_out(binding)

    def delete_binding(self, request):
        if self.bindings.pop(request.params["pk"], None) is None:
            return self._not_found("PolicyBinding")
        return Response(204, None)

    # -- outposts ------------------------------------------------------------------------------------------
    def _outpost_out(self, outpost):
        out = dict(outpost)
        out["providers"] = list(outpost["providers"])
        out["providers_obj"] = [self._provider_base(self.providers[p]) for p in outpost["providers"] if p in self.providers]
        out["service_connection_obj"] = None
        out["refresh_interval_s"] = 150
        out["token_identifier"] = f"ak-outpost-{outpost['pk']}-api"
        if not out["config"].get("authentik_host"):
            out["config"] = {**out["config"], "authentik_host": self.base_url}
        return out

    def list_outposts(self, request):
        items = sorted(self.outposts.values(), key=lambda o: o["name"])
        for param, field in (("managed__iexact", "managed"), ("name__iexact", "name")):
            if request.arg(param):
                items = [o for o in items if str(o.get(field) or "").lower() == request.arg(param).lower()]
        items = self._search(request, items, "name")
        return self._page(request, [self._outpost_out(o) for o in items])

    def get_outpost(self, request):
        outpost = self.outposts.get(request.params["pk"])
        return self._outpost_out(outpost) if outpost else self._not_found("Outpost")

    def update_outpost(self, request):
        outpost = self.outposts.get(request.params["pk"])
        if outpost is None:
            return self._not_found("Outpost")
        body = request.body or {}
        errors = {}
        for provider in body.get("providers", []):
            if provider not in self.providers:
                errors.setdefault("providers", []).append(f'Invalid pk "{provider}" - object does not exist.')
        # authentik/outposts/api/outposts.py OutpostSerializer.validate_providers (only when providers is
        # sent): the type sent must match the providers (only proxy providers here); an empty list is
        # refused unless the outpost is the embedded one
        if "providers" in body and not errors:
            if body.get("type") not in (None, "proxy") and body["providers"]:
                errors["providers"] = [f"Outpost type {body['type']} can't be used with ProxyProvider providers."]
            elif outpost.get("managed") != EMBEDDED and not body["providers"]:
                errors["providers"] = ["This list may not be empty."]
        # OutpostSerializer.validate_name: the embedded outpost keeps its name
        if "name" in body and outpost.get("managed") == EMBEDDED and body["name"] != EMBEDDED_NAME:
            errors["name"] = ["Embedded outpost's name cannot be changed"]
        if errors:
            return self._field_errors(errors)
        for field in ("name", "type", "service_connection", "config", "managed"):
            if field in body:
                outpost[field] = body[field]
        if "providers" in body:
            outpost["providers"] = list(dict.fromkeys(body["providers"]))
        return self._outpost_out(outpost)

    # -- tokens --------------------------------------------------------------------------------------------
    def _token_out(self, token):
        out = {k: v for k, v in token.items() if k != "key"}
        out["user_obj"] = self._user_out(self.users[token["user"]])
        return out

    def _user_out(self, user):
        """authentik/core/api/users.py UserSerializer (the document's ``User``)."""
        out = {
            **self._partial_user(user),
            "is_superuser": self._is_superuser(user),
            "groups": [],
            "groups_obj": None,
            "avatar": "",
            "date_joined": _now(),
            "uuid": str(uuid.UUID(user["uid"][:32])),
            "path": "users",
            "type": "internal",
            "password_change_date": _now(),
            "last_login": None,
        }
        if version_tuple(self.spec_version) >= (2025, 12):  # the User schema has roles from 2025.12 on
            out.update(last_updated=_now(), roles=[], roles_obj=[])
        return out

    def list_tokens(self, request):
        items = sorted(self.tokens.values(), key=lambda t: t["identifier"])
        if request.arg("identifier"):
            items = [t for t in items if t["identifier"] == request.arg("identifier")]
        if request.arg("intent"):
            items = [t for t in items if t["intent"] == request.arg("intent")]
        if request.arg("user__username"):
            items = [t for t in items if self.users[t["user"]]["username"] == request.arg("user__username")]
        return self._page(request, [self._token_out(t) for t in items])

    def get_token(self, request):
        token = next((t for t in self.tokens.values() if t["identifier"] == request.params["identifier"]), None)
        return self._token_out(token) if token else self._not_found("Token")

    # -- blueprints ----------------------------------------------------------------------------------------
    def _settle(self, blueprint):
        pending = blueprint.get("_pending")
        if pending and time.monotonic() >= pending:
            blueprint["_pending"] = None
            blueprint["last_applied"] = _now()
            blueprint["status"] = "successful"

    def _blueprint_out(self, blueprint):
        self._settle(blueprint)
        out = {k: v for k, v in blueprint.items() if not k.startswith("_")}
        out["managed_models"] = []
        out["metadata"] = {}
        return out

    def list_blueprints(self, request):
        items = sorted(self.blueprints.values(), key=lambda b: b["name"])
        for param in ("name", "path"):
            if request.arg(param):
                items = [b for b in items if b[param] == request.arg(param)]
        return self._page(request, [self._blueprint_out(b) for b in items])

    def get_blueprint(self, request):
        blueprint = self.blueprints.get(request.params["pk"])
        return self._blueprint_out(blueprint) if blueprint else self._not_found("BlueprintInstance")

    def apply_blueprint(self, request):
        blueprint = self.blueprints.get(request.params["pk"])
        if blueprint is None:
            return self._not_found("BlueprintInstance")
        if self.async_blueprints:
            out = self._blueprint_out(blueprint)  # queued: the answer is the instance before the apply
            blueprint["_pending"] = time.monotonic() + self.blueprint_delay
            return out
        time.sleep(0.001)  # so last_applied moves even on coarse clocks
        blueprint["last_applied"] = _now()
        blueprint["status"] = "successful"
        return self._blueprint_out(blueprint)

    # -- the embedded outpost --------------------------------------------------------------------------
    def provider_for_host(self, host):
        """The provider the embedded outpost serves ``host`` with (forward modes only)."""
        host = (host or "").split(":")[0].lower()
        outpost = self.embedded_outpost()
        candidates = [self.providers[p] for p in outpost["providers"] if p in self.providers]
        for provider in candidates:
            if provider["mode"] == "forward_single" and (urlsplit(provider["external_host"]).hostname or "").lower() == host:
                return provider
        for provider in candidates:
            domain = (provider["cookie_domain"] or "").lower().lstrip(".")
            if provider["mode"] == "forward_domain" and domain and (host == domain or host.endswith("." + domain)):
                return provider
        return None

    def _session_user(self, request):
        cookies = {}
        for part in request.headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            cookies[name] = value
        pk = self.sessions.get(cookies.get(SESSION_COOKIE, ""))
        return self.users.get(pk) if pk is not None else None

    def outpost_auth_caddy(self, request):
        host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
        provider = self.provider_for_host(host)
        if provider is None:
            return Response(400, f"no provider of the embedded outpost serves {host!r}\n", {"Content-Type": "text/plain"})
        app = self._provider_app(provider)
        if app is None:
            return Response(500, "provider has no application\n", {"Content-Type": "text/plain"})
        user = self._session_user(request)
        if user is None:
            proto = request.headers.get("x-forwarded-proto", "https")
            redirect = f"{proto}://{host}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true"
            query = urlencode(
                {"client_id": provider["client_id"], "redirect_uri": redirect, "response_type": "code", "state": secrets.token_urlsafe(8)}
            )
            return Response(302, "", {"Location": f"{self.base_url}/application/o/authorize/?{query}", "Content-Type": "text/plain"})
        if not self.user_passes(user["pk"], app):
            return Response(403, "permission denied\n", {"Content-Type": "text/plain"})
        groups = [g["name"] for g in sorted(self.groups.values(), key=lambda g: g["name"]) if user["pk"] in g["users"]]
        headers = {
            "X-Authentik-Username": user["username"],
            "X-Authentik-Groups": "|".join(groups),
            "X-Authentik-Entitlements": "",
            "X-Authentik-Email": user["email"],
            "X-Authentik-Name": user["name"],
            "X-Authentik-Uid": user["uid"],
            "X-Authentik-Jwt": "",
            "X-Authentik-Meta-Jwks": f"{self.base_url}/application/o/{app['slug']}/jwks/",
            "X-Authentik-Meta-Outpost": self.embedded_outpost()["name"],
            "X-Authentik-Meta-Provider": provider["name"],
            "X-Authentik-Meta-App": app["slug"],
            "X-Authentik-Meta-Version": f"goauthentik.io/outpost/{self.version}",
            "Content-Type": "text/plain",
        }
        return Response(200, "", headers)

    def outpost_start(self, request):
        provider = self.provider_for_host(request.headers.get("host", ""))
        if provider is None:
            return Response(400, "no provider\n", {"Content-Type": "text/plain"})
        query = urlencode({"client_id": provider["client_id"], "response_type": "code"})
        return Response(302, "", {"Location": f"{self.base_url}/application/o/authorize/?{query}"})

    def authorize(self, request):
        flow = self.flow_by_slug("default-authentication-flow")
        target = quote(request.raw_path + ("?" + urlencode(request.query, doseq=True) if request.query else ""), safe="")
        return Response(302, "", {"Location": f"{self.base_url}/if/flow/{flow['slug']}/?next={target}"})


def _iso_now_offset():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()
