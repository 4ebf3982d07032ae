"""authentik API v3: a thin client for what hecate manages (flows, groups, expression policies, proxy
providers, applications, outposts, policy bindings, tokens, blueprints).

Configuration (pillar or minion config, read with ``config.get``):

- ``hecate:authentik:url``: authentik's URL (``https://auth.example.org``); ``hecate:authentik:endpoint``
  overrides it for the API only (for example an internal address).
- ``hecate:authentik:token``: an API token (Directory > Tokens, intent *API*). Never a function argument.
- ``hecate:authentik:allow_insecure_endpoint``: allow ``http://`` (labs and tests only).
- ``hecate:authentik:ca_bundle``: a CA file to verify authentik's certificate with.

Objects are addressed by their natural keys: flow slug, group name, policy name, provider name,
application slug; functions also accept the pk where authentik uses one. The server version is checked
before the first call (cached for five minutes): authentik older than 2024.10 is refused (proxy providers
need ``invalidation_flow`` from 2024.10 on), and groups are read and written with ``parents`` (2025.12+)
or ``parent`` (before) transparently: this module always shows a ``parents`` list.

A 403 from authentik means the token is invalid, expired or lacks the permission (authentik answers 403,
not 401, to a bad token); the error says which, and names the permissions the refused call needs. A 405
with an empty body is authentik failing on a write (its error page answers GET only); the error says so.
"""

import dataclasses
import datetime
import logging
import re
import time

import salt.utils.args
from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

    hecate_fresh.drop_stale()
    from hecatelib import api
except ImportError as exc:  # pragma: no cover - hecate's _utils not synced, or a library missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

log = logging.getLogger(__name__)

__virtualname__ = "authentik"
CONTEXT_KEY = "authentik.client"

MIN_VERSION = (2024, 10)
PARENTS_VERSION = (2025, 12)
ASYNC_BLUEPRINTS_VERSION = (2025, 8)
EMBEDDED_MANAGED = "goauthentik.io/outposts/embedded"
PAGE_SIZE = 100
VERSION_TTL = 300
DEFAULT_AUTHORIZATION_FLOW = "default-provider-authorization-implicit-consent"
DEFAULT_INVALIDATION_FLOW = "default-provider-invalidation-flow"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
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
    "access_token_validity",
    "refresh_token_validity",
)
APPLICATION_FIELDS = (
    "name",
    "slug",
    "provider",
    "open_in_new_tab",
    "meta_launch_url",
    "meta_description",
    "meta_publisher",
    "policy_engine_mode",
    "group",
)
BINDING_FIELDS = ("policy", "group", "user", "target", "negate", "enabled", "order", "timeout", "failure_result")
# DRF's PermissionDenied (rest_framework/exceptions.py), which authentik answers when the token is valid
# but its user lacks a permission; a bad token gets "Token invalid/expired" instead
NOT_PERMITTED = "You do not have permission to perform this action."


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return __virtualname__


# -- the client ----------------------------------------------------------------------------------------------
if not IMPORT_ERROR:

    class AuthentikClient(api.ApiClient):
        """hecate's ApiClient with authentik's error vocabulary and pagination."""

        def error(self, method, path, response):
            try:
                body = response.json()
            except ValueError:  # redact, then cut: a cut first could leave part of a token
                body = api.excerpt(response.text, self.secrets, 500)
            status = response.status_code
            needed = _permissions_for(method, path)
            if status == 403:
                detail = body.get("detail") if isinstance(body, dict) else body
                if detail == NOT_PERMITTED and needed:
                    text = (
                        f"HTTP 403 ({detail}): the API token's user lacks a permission this call needs: "
                        f"{' and '.join(needed)}. Give one of the user's roles these global permissions (docs/authentik.md "
                        "lists every permission hecate needs) or use a superuser's token"
                    )
                else:
                    text = (
                        f"HTTP 403 ({detail}): authentik refused the API token: it is invalid or expired, or its user "
                        "lacks the permission for this call. Create a token with intent API (Directory > Tokens) and "
                        "put it in pillar hecate:authentik:token"
                    )
            elif status == 405 and not body:
                # authentik/root/urls.py handler500 is a GET-only TemplateView: a write that fails inside
                # authentik gets that view's 405, with no body, instead of a 500
                text = (
                    "HTTP 405 with an empty body: authentik failed on this request (an internal server error: "
                    "authentik's error page answers GET only, so a failed write reads as 405); its server log has the traceback"
                )
            elif status == 400 and isinstance(body, dict):
                fields = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in sorted(body.items()))
                text = f"HTTP 400, authentik rejected the request: {fields}"
            elif status == 404:
                text = f"HTTP 404: not found ({body.get('detail') if isinstance(body, dict) else body})"
            else:
                text = f"HTTP {status}: {body}"
            return api.ApiError(self._say(method, path, text), status, body)

        def list(self, path, params=None):
            """Every result of a paged list: ``pagination.next`` is the next page number, 0 on the last."""
            params = dict(params or {})
            params.setdefault("page_size", PAGE_SIZE)
            page, results = 1, []
            while True:
                params["page"] = page
                body = self.get(path, params=params) or {}
                results.extend(body.get("results") or [])
                following = int((body.get("pagination") or {}).get("next") or 0)
                if not following:
                    return results
                if following <= page:
                    raise api.ApiError(self._say("GET", path, f"pagination went from page {page} to {following}"))
                page = following


def _permissions_for(method, path):
    """The global permissions authentik checks for a call on one of ``RESOURCES`` (authentik/root/settings.py
    REST_FRAMEWORK defaults): view on every read of the model, list or object, and on every write to one
    object (authentik/rbac/filters.py ObjectFilter), add/change/delete by method (authentik/rbac/permissions.py
    ObjectPermissions, DRF's DjangoObjectPermissions.perms_map). [] when the path is none of them."""
    path = path.split("?")[0].strip("/")
    for res in RESOURCES.values():
        endpoint = res.endpoint.strip("/")
        if res.model is None or not (path == endpoint or path.startswith(endpoint + "/")):
            continue
        app_label, model = res.model.split(".")
        verb = {"POST": "add", "PATCH": "change", "PUT": "change", "DELETE": "delete"}.get(method)
        if path == endpoint:
            return [f"{app_label}.{verb or 'view'}_{model}"]
        return [f"{app_label}.view_{model}"] + ([f"{app_label}.{verb}_{model}"] if verb else [])
    return []


def _cfg(name, default=None):
    return __salt__["config.get"](f"hecate:authentik:{name}", default)


def _client():
    """The API client for the configured authentik (one per settings and token: ``api.client_for``), its
    server version checked every ``VERSION_TTL`` seconds."""
    url = _cfg("endpoint") or _cfg("url")
    if not url:
        raise CommandExecutionError("authentik: hecate:authentik:url is not set (pillar or minion config)")
    url = str(url).rstrip("/")
    problem = api.endpoint_problem(url, _cfg("allow_insecure_endpoint", False) is True, "hecate:authentik:allow_insecure_endpoint")
    if problem:
        raise CommandExecutionError(f"authentik: hecate:authentik:url {problem}")
    token = api.check_token(_cfg("token"), "hecate:authentik:token")
    verify = _cfg("ca_bundle") or True

    def build():
        client = AuthentikClient(url + "/api/v3", "authentik", token=token, verify=verify)
        client.root, client.version, client.version_info, client.checked = url, None, None, 0.0
        return client

    client = api.client_for(__context__, CONTEXT_KEY, {"url": url, "verify": verify}, token, build)
    if client.version is None or time.monotonic() - client.checked > VERSION_TTL:
        info = client.get("admin/version/") or {}
        version = _parse_version(info.get("version_current"))
        if version < MIN_VERSION:
            raise CommandExecutionError(
                f"authentik {info.get('version_current')} is too old: hecate needs 2024.10 or newer "
                "(proxy providers need invalidation_flow since 2024.10)"
            )
        client.version, client.version_info, client.checked = version, info, time.monotonic()
    return client


def _parse_version(text):
    parts = re.findall(r"\d+", str(text or ""))
    if len(parts) < 2:
        raise CommandExecutionError(f"authentik: cannot read the server version from {text!r}")
    return tuple(int(p) for p in parts[:3])


def _kwargs(kwargs):
    return salt.utils.args.clean_kwargs(**kwargs)


def _is_uuid(value):
    return isinstance(value, str) and bool(_UUID.match(value))


def _not_found(exc):
    return isinstance(exc, api.ApiError) and exc.status == 404


# -- version, health, me ---------------------------------------------------------------------------------
def version():
    """
    The running authentik version (``version_current`` and friends) and whether hecate supports it.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.version
    """
    client = _client()
    info = dict(client.version_info or client.get("admin/version/"))
    info["supported"] = client.version >= MIN_VERSION
    info["groups_have_parents"] = client.version >= PARENTS_VERSION
    return info


def health():
    """
    authentik's liveness and readiness (``/-/health/live/``, ``/-/health/ready/``) plus the version.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.health
    """
    client = _client()
    out = {}
    for name in ("live", "ready"):
        try:
            client.request("GET", f"{client.root}/-/health/{name}/", ok=(200, 204))
            out[name] = True
        except api.ApiError as exc:
            out[name] = False
            out[f"{name}_error"] = str(exc)
    out["version"] = version()["version_current"]
    return out


def whoami():
    """
    The user the API token belongs to (``username``, ``is_superuser``, groups).

    CLI Example:

    .. code-block:: bash

        salt-call authentik.whoami
    """
    return (_client().get("core/users/me/") or {}).get("user") or {}


# -- resources as data ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Resource:
    """One kind of authentik object, described for the generic list/get/create/update/delete below.

    ``key``: the natural key field; ``key_filter``: the list filter that narrows a lookup by it (matches
    are then compared exactly); ``by_path``: the detail URL takes the natural key itself (authentik's
    ``lookup_field``), so no lookup is needed; ``pk``: ``uuid`` or ``int``; ``fields``: what may be written;
    ``refs``: written fields naming other objects (kind to resolve names or slugs to pks with);
    ``always``: fields the vendor's ``validate()`` reads from the request itself, so every PATCH carries
    them (DRF validates a partial update's fields alone); ``read``: query parameters for every read;
    ``model``: authentik's ``app_label.model`` behind the endpoint, whose permissions a token needs."""

    label: str
    endpoint: str
    key: str = "name"
    key_filter: str = None
    by_path: bool = False
    pk: str = "uuid"
    fields: tuple = ()
    refs: dict = dataclasses.field(default_factory=dict)
    always: tuple = ()
    read: dict = dataclasses.field(default_factory=dict)
    model: str = None

    def is_pk(self, ref):
        if self.pk == "int":
            return isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit())
        return _is_uuid(ref)


RESOURCES = {
    "flow": Resource("flow", "flows/instances/", key="slug", by_path=True, model="authentik_flows.flow"),
    "group": Resource(
        "group",
        "core/groups/",
        key_filter="name",
        fields=("name", "is_superuser", "attributes", "users", "roles", "parents"),
        refs={"parents": "group"},
        read={"include_users": "false"},
        model="authentik_core.group",
    ),
    "expression_policy": Resource(
        "expression policy",
        "policies/expression/",
        key_filter="name",
        fields=("name", "expression", "execution_logging"),
        model="authentik_policies_expression.expressionpolicy",
    ),
    "scope_mapping": Resource("scope mapping", "propertymappings/provider/scope/", model="authentik_providers_oauth2.scopemapping"),
    # authentik/providers/proxy/api.py ProxyProviderSerializer.validate: a request without mode is a
    # mode=proxy request, which needs internal_host
    "proxy_provider": Resource(
        "proxy provider",
        "providers/proxy/",
        key_filter="name__iexact",
        pk="int",
        fields=PROVIDER_FIELDS,
        refs={"authorization_flow": "flow", "invalidation_flow": "flow", "authentication_flow": "flow"},
        always=("mode", "internal_host"),
        model="authentik_providers_proxy.proxyprovider",
    ),
    "application": Resource(
        "application",
        "core/applications/",
        key="slug",
        by_path=True,
        fields=APPLICATION_FIELDS,
        refs={"provider": "proxy_provider"},
        model="authentik_core.application",
    ),
    # authentik/policies/api/bindings.py PolicyBindingSerializer.validate: target and exactly one of
    # policy/user/group, read from the request
    "policy_binding": Resource(
        "policy binding",
        "policies/bindings/",
        key="pk",
        fields=BINDING_FIELDS,
        refs={"group": "group", "policy": "expression_policy"},
        always=("target", "policy", "group", "user"),
        model="authentik_policies.policybinding",
    ),
    "outpost": Resource(
        "outpost", "outposts/instances/", key_filter="name__iexact", fields=("name", "providers"), model="authentik_outposts.outpost"
    ),
    "token": Resource("token", "core/tokens/", key="identifier", by_path=True),
    "blueprint": Resource("blueprint instance", "managed/blueprints/", key_filter="name", model="authentik_blueprints.blueprintinstance"),
}


def _detail(res, ref):
    return f"{res.endpoint}{ref}/"


def _list(kind, params=None):
    res = RESOURCES[kind]
    return _client().list(res.endpoint, {**res.read, **(params or {})})


def _get(kind, ref):
    """One object by pk or natural key, or None."""
    res = RESOURCES[kind]
    if res.is_pk(ref) or res.by_path:
        try:
            return _client().get(_detail(res, ref), params=res.read or None)
        except api.ApiError as exc:
            if _not_found(exc):
                return None
            raise
    params = {res.key_filter: ref} if res.key_filter else {}
    return next((o for o in _list(kind, params) if o.get(res.key) == ref), None)


def _must(kind, ref):
    found = _get(kind, ref)
    if found is None:
        res = RESOURCES[kind]
        raise CommandExecutionError(f"authentik: there is no {res.label} with {res.key} {ref!r}")
    return found


def _pk(kind, ref):
    """The pk for a pk or a natural key (a lookup only for the latter)."""
    if ref is None:
        return None
    res = RESOURCES[kind]
    if res.is_pk(ref):
        return int(ref) if res.pk == "int" else ref
    return _must(kind, ref)["pk"]


def _body(kind, fields, what):
    """The request body: writable fields only (unknown ones refused), None dropped, references to pks."""
    res = RESOURCES[kind]
    unknown = set(fields) - set(res.fields)
    if unknown:
        raise SaltInvocationError(f"authentik.{what}: unknown field(s) {', '.join(sorted(unknown))}")
    body = {k: v for k, v in fields.items() if v is not None}
    for field, target in res.refs.items():
        if field in body:
            value = body[field]
            body[field] = [_pk(target, v) for v in value] if isinstance(value, list) else _pk(target, value)
    if kind == "proxy_provider" and "property_mappings" in body:
        body["property_mappings"] = _mapping_pks(body["property_mappings"])
    if kind == "group" and "parents" in body:
        _parents_for_version(body)
    return body


def _create(kind, fields, what):
    return _client().json("POST", RESOURCES[kind].endpoint, json=_body(kind, fields, what))


def _update(kind, ref, fields, what, current=None):
    """PATCH the given fields; the ``always`` fields come along from ``current`` (read when not given)."""
    res = RESOURCES[kind]
    body = _body(kind, fields, what)
    missing = [f for f in res.always if f not in body]
    if missing or not (res.is_pk(ref) or res.by_path):
        current = current or _must(kind, ref)
        body.update({f: current[f] for f in missing if current.get(f) is not None})
    path_id = ref if res.is_pk(ref) or res.by_path else current["pk"]
    return _client().json("PATCH", _detail(res, path_id), json=body)


def _delete(kind, ref):
    """True when deleted, False when there was none."""
    res = RESOURCES[kind]
    if not (res.is_pk(ref) or res.by_path):
        found = _get(kind, ref)
        if found is None:
            return False
        ref = found["pk"]
    try:
        _client().request("DELETE", _detail(res, ref))
    except api.ApiError as exc:
        if _not_found(exc):
            return False
        raise
    return True


def _renamed(kwargs, alias, field):
    kwargs = _kwargs(kwargs)
    if alias in kwargs:
        kwargs[field] = kwargs.pop(alias)
    return kwargs


# -- flows -----------------------------------------------------------------------------------------------
def flows(designation=None):
    """
    All flows, optionally of one designation (``authorization``, ``invalidation``, ``authentication``...).

    CLI Example:

    .. code-block:: bash

        salt-call authentik.flows designation=authorization
    """
    return _list("flow", {"designation": designation} if designation else {})


def flow(slug):
    """
    One flow by slug, or None.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.flow default-provider-authorization-implicit-consent
    """
    return _get("flow", slug)


# -- groups ----------------------------------------------------------------------------------------------
def _group_view(group):
    """Normalise a group to carry ``parents`` (a list) on every version."""
    if group is None:
        return None
    group = dict(group)
    if "parents" not in group:
        group["parents"] = [group["parent"]] if group.get("parent") else []
    return group


def _parents_for_version(body):
    """authentik 2025.12 renamed ``parent`` (one group) to ``parents`` (a list)."""
    client = _client()
    if client.version >= PARENTS_VERSION:
        return
    parents = body.pop("parents")
    if len(parents) > 1:
        raise SaltInvocationError(f"authentik {'.'.join(map(str, client.version))} allows one parent group, got {len(parents)}")
    body["parent"] = parents[0] if parents else None


def groups(name=None, include_users=False):
    """
    All groups (or the one called ``name``), each with a ``parents`` list whatever the version.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.groups
        salt-call authentik.groups name=admins include_users=True
    """
    params = {"include_users": "true" if include_users else "false"}
    if name:
        params["name"] = name
    return [_group_view(g) for g in _list("group", params)]


def group(name):
    """
    One group by name (or pk), or None.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.group admins
    """
    return _group_view(_get("group", name))


def group_create(name, parents=None, attributes=None, is_superuser=False):
    """
    Create a group. ``parents``: group names or pks (authentik before 2025.12 allows one).

    CLI Example:

    .. code-block:: bash

        salt-call authentik.group_create admins
        salt-call authentik.group_create ops parents='[staff]' attributes='{"team": "ops"}'
    """
    fields = {"name": name, "parents": parents, "attributes": attributes, "is_superuser": is_superuser}
    return _group_view(_create("group", fields, "group_create"))


def group_update(name, **kwargs):
    """
    Change a group's ``name`` (as ``new_name``), ``parents``, ``attributes`` or ``is_superuser``.
    Only the given fields are sent (PATCH).

    CLI Example:

    .. code-block:: bash

        salt-call authentik.group_update admins attributes='{"owner": "ops"}'
    """
    return _group_view(_update("group", name, _renamed(kwargs, "new_name", "name"), "group_update"))


def group_delete(name):
    """
    Delete a group by name or pk (its policy bindings go with it). Returns False when there was none.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.group_delete old-team
    """
    return _delete("group", name)


# -- expression policies ---------------------------------------------------------------------------------
def expression_policies(name=None):
    """
    All expression policies (or the one called ``name``).

    CLI Example:

    .. code-block:: bash

        salt-call authentik.expression_policies
    """
    return _list("expression_policy", {"name": name} if name else {})


def expression_policy(name):
    """
    One expression policy by name (or pk), or None.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.expression_policy office-hours
    """
    return _get("expression_policy", name)


def expression_policy_create(name, expression, execution_logging=False):
    """
    Create an expression policy (Python evaluated by authentik).

    CLI Example:

    .. code-block:: bash

        salt-call authentik.expression_policy_create office-hours 'return 8 <= request.context["now"].hour < 18'
    """
    fields = {"name": name, "expression": expression, "execution_logging": bool(execution_logging)}
    return _create("expression_policy", fields, "expression_policy_create")


def expression_policy_update(name, **kwargs):
    """
    Change an expression policy's ``expression``, ``execution_logging`` or name (``new_name``).

    CLI Example:

    .. code-block:: bash

        salt-call authentik.expression_policy_update office-hours expression='return True'
    """
    return _update("expression_policy", name, _renamed(kwargs, "new_name", "name"), "expression_policy_update")


def expression_policy_delete(name):
    """
    Delete an expression policy (and its bindings). Returns False when there was none.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.expression_policy_delete office-hours
    """
    return _delete("expression_policy", name)


# -- property mappings -----------------------------------------------------------------------------------
def scope_mappings(managed=None):
    """
    OAuth scope mappings (the ones proxy providers use); ``managed`` filters by managed id.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.scope_mappings managed=goauthentik.io/providers/proxy/scope-proxy
    """
    return _list("scope_mapping", {"managed": managed} if managed else {})


def _mapping_pks(values):
    pks, wanted = [], []
    for value in values:
        (pks if _is_uuid(value) else wanted).append(value)
    if wanted:
        known = scope_mappings()
        for value in wanted:
            found = next((m for m in known if value in (m.get("managed"), m.get("name"))), None)
            if found is None:
                raise CommandExecutionError(f"authentik: there is no scope mapping {value!r} (name or managed id)")
            pks.append(found["pk"])
    return pks


# -- proxy providers -------------------------------------------------------------------------------------
def proxy_providers(name=None):
    """
    All proxy providers (or those named ``name``, case-insensitively filtered by the server).

    CLI Example:

    .. code-block:: bash

        salt-call authentik.proxy_providers
    """
    return _list("proxy_provider", {"name__iexact": name} if name else {})


def proxy_provider(name):
    """
    One proxy provider by name (or numeric pk), or None.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.proxy_provider hecate-grafana
    """
    return _get("proxy_provider", name)


def proxy_provider_create(
    name,
    external_host,
    mode="forward_single",
    authorization_flow=DEFAULT_AUTHORIZATION_FLOW,
    invalidation_flow=DEFAULT_INVALIDATION_FLOW,
    **kwargs,
):
    """
    Create a proxy provider. ``mode`` is always sent (authentik's default is ``proxy``, which needs an
    ``internal_host``); flows are slugs or pks. Further fields as keyword arguments: ``cookie_domain``,
    ``property_mappings`` (names, managed ids or pks), ``skip_path_regex``, ``internal_host``...

    CLI Example:

    .. code-block:: bash

        salt-call authentik.proxy_provider_create hecate-grafana https://grafana.example.org
        salt-call authentik.proxy_provider_create hecate-domain https://auth.example.org mode=forward_domain cookie_domain=example.org
    """
    fields = {
        **_kwargs(kwargs),
        "name": name,
        "external_host": external_host,
        "mode": mode,
        "authorization_flow": authorization_flow,
        "invalidation_flow": invalidation_flow,
    }
    return _create("proxy_provider", fields, "proxy_provider_create")


def proxy_provider_update(name, current=None, **kwargs):
    """
    Change the given fields of a proxy provider (PATCH); rename with ``new_name``. Every PATCH also
    carries the provider's ``mode`` and ``internal_host`` (authentik validates a request without ``mode``
    as ``mode: proxy``, which needs ``internal_host``): taken from ``current`` (the provider as last read)
    or read first.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.proxy_provider_update hecate-grafana external_host=https://grafana2.example.org
    """
    return _update("proxy_provider", name, _renamed(kwargs, "new_name", "name"), "proxy_provider_update", current)


def proxy_provider_delete(name):
    """
    Delete a proxy provider by name or pk (authentik drops it from outposts). Returns False when there
    was none.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.proxy_provider_delete hecate-grafana
    """
    return _delete("proxy_provider", name)


# -- applications ----------------------------------------------------------------------------------------
def applications(full=True):
    """
    Applications. authentik's list hides the ones the token's user cannot access; ``full`` (default)
    asks for every application (``superuser_full_list``, honoured for superusers only). Use
    :func:`application` to find one for sure.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.applications
    """
    return _list("application", {"superuser_full_list": "true"} if full else {})


def application(slug):
    """
    One application by slug (looked up directly: lists can hide it), or None.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.application hecate-grafana
    """
    return _get("application", slug)


def application_create(slug, name=None, provider=None, **kwargs):
    """
    Create an application. ``provider``: a provider name or pk. Further fields: ``meta_launch_url``,
    ``meta_publisher``, ``meta_description``, ``policy_engine_mode`` (``any``/``all``), ``group``,
    ``open_in_new_tab``.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.application_create hecate-grafana name=Grafana provider=hecate-grafana
    """
    fields = {**_kwargs(kwargs), "slug": slug, "name": name or slug, "provider": provider}
    return _create("application", fields, "application_create")


def application_update(slug, **kwargs):
    """
    Change the given fields of an application (PATCH); ``provider`` by name or pk, ``new_slug`` renames.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.application_update hecate-grafana meta_launch_url=https://grafana.example.org/
    """
    return _update("application", slug, _renamed(kwargs, "new_slug", "slug"), "application_update")


def application_delete(slug):
    """
    Delete an application (its policy bindings go with it). Returns False when there was none.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.application_delete hecate-grafana
    """
    return _delete("application", slug)


# -- outposts --------------------------------------------------------------------------------------------
def outposts():
    """
    All outposts.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.outposts
    """
    return _list("outpost")


def outpost(name=None):
    """
    One outpost by name; without a name (or ``embedded``), authentik's embedded outpost (the one
    ``managed: goauthentik.io/outposts/embedded``). None when there is none.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.outpost
        salt-call authentik.outpost edge-outpost
    """
    if not name or name == "embedded":
        found = _list("outpost", {"managed__iexact": EMBEDDED_MANAGED})
        return next((o for o in found if o.get("managed") == EMBEDDED_MANAGED), None)
    return _get("outpost", name)


def outpost_update_providers(add=None, remove=None, outpost_name=None):
    """
    Add and remove providers (names or pks) on an outpost in one read-modify-write of its ``providers``
    list; providers already there (or already absent) are left alone. Returns the outpost, or the
    unchanged one without writing when there is nothing to do. authentik refuses an empty list on an
    outpost other than the embedded one: removing its last provider is an error (delete the provider
    instead: authentik drops a deleted provider from its outposts).

    CLI Example:

    .. code-block:: bash

        salt-call authentik.outpost_update_providers add='[hecate-grafana]'
        salt-call authentik.outpost_update_providers remove='[hecate-old]' outpost_name=edge-outpost
    """
    found = outpost(outpost_name)
    if found is None:
        raise CommandExecutionError(f"authentik: there is no outpost {outpost_name or 'embedded'!r}")
    current = list(found.get("providers") or [])
    adds = [_pk("proxy_provider", p) for p in add or []]
    removes = set()
    for item in remove or []:
        try:
            removes.add(_pk("proxy_provider", item))
        except CommandExecutionError:
            continue  # a provider that no longer exists is not on the outpost either
    wanted = [p for p in current if p not in removes] + [p for p in adds if p not in current and p not in removes]
    if wanted == current:
        return found
    if not wanted and found.get("managed") != EMBEDDED_MANAGED:
        # authentik/outposts/api/outposts.py OutpostSerializer.validate_providers: "This list may not be empty."
        raise CommandExecutionError(
            f"authentik: outpost {found['name']!r} would serve no provider, which authentik refuses for an outpost "
            "other than the embedded one; delete the provider (authentik drops it from the outpost) or the outpost"
        )
    return _client().json("PATCH", _detail(RESOURCES["outpost"], found["pk"]), json={"providers": wanted})


# -- policy bindings -------------------------------------------------------------------------------------
def policy_bindings(application=None, targets=None):
    """
    Policy bindings: those of one application (slug), of several targets (pks), or all.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.policy_bindings application=hecate-grafana
    """
    if application:
        return _list("policy_binding", {"target": _must("application", application)["pk"]})
    if targets is not None:
        targets = list(targets)
        out = []
        for start in range(0, len(targets), 50):
            out.extend(_list("policy_binding", {"target_in": targets[start : start + 50]}))
        return out
    return _list("policy_binding")


def policy_binding_create(application, group=None, policy=None, user=None, order=0, negate=False, enabled=True, timeout=None):
    """
    Bind a group (name or pk), an expression policy (name or pk) or a user (pk) to an application
    (slug or pk). Exactly one of ``group``, ``policy``, ``user``.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.policy_binding_create hecate-grafana group=admins
    """
    if sum(x is not None for x in (group, policy, user)) != 1:
        raise SaltInvocationError("authentik.policy_binding_create: give exactly one of group, policy, user")
    target = application if _is_uuid(application) else _must("application", application)["pk"]
    fields = {"target": target, "group": group, "policy": policy, "user": None if user is None else int(user)}
    fields.update(order=int(order), negate=bool(negate), enabled=bool(enabled), timeout=None if timeout is None else int(timeout))
    return _create("policy_binding", fields, "policy_binding_create")


def policy_binding_update(pk, current=None, **kwargs):
    """
    Change the given fields of a policy binding (by pk): ``order``, ``negate``, ``enabled``, ``timeout``...
    Every PATCH also carries the binding's ``target`` and its ``group``/``policy``/``user`` (authentik
    validates them from the request itself): taken from ``current`` (the binding as last read) or read first.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.policy_binding_update 9f0c...e1 order=5
    """
    return _update("policy_binding", pk, _kwargs(kwargs), "policy_binding_update", current)


def policy_binding_delete(pk):
    """
    Delete a policy binding by pk. Returns False when there was none.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.policy_binding_delete 9f0c...e1
    """
    return _delete("policy_binding", pk)


# -- tokens ----------------------------------------------------------------------------------------------
def _token_view(token):
    out = {k: v for k, v in token.items() if k not in ("key", "user_obj")}
    out["username"] = (token.get("user_obj") or {}).get("username")
    expires = token.get("expires")
    out["expires_in_days"] = None
    if token.get("expiring") and expires:
        when = datetime.datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
        now = datetime.datetime.now(datetime.timezone.utc)
        out["expires_in_days"] = round((when - now).total_seconds() / 86400, 1)
    return out


def tokens(user=None, intent=None):
    """
    Tokens (never their keys): identifier, intent, user, ``expires`` and ``expires_in_days``.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.tokens user=akadmin intent=api
    """
    params = {}
    if user:
        params["user__username"] = user
    if intent:
        params["intent"] = intent
    return [_token_view(t) for t in _list("token", params)]


def token(identifier):
    """
    One token by identifier (never its key), with its expiry; None when there is none.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.token hecate-api
    """
    found = _get("token", identifier)
    return None if found is None else _token_view(found)


# -- blueprints ------------------------------------------------------------------------------------------
def blueprints():
    """
    Blueprint instances with their status and last apply.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.blueprints
    """
    return _list("blueprint")


def blueprint(name):
    """
    One blueprint instance by name (or pk), or None.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.blueprint "Default - Authentication flow"
    """
    return _get("blueprint", name)


def blueprint_apply(name, wait=True, timeout=120, interval=1.0):
    """
    Apply a blueprint instance. From authentik 2025.8 on the apply is queued: with ``wait`` (default)
    this polls until ``last_applied`` moves and reports the final ``status`` (error after ``timeout``
    seconds). Earlier versions apply synchronously.

    CLI Example:

    .. code-block:: bash

        salt-call authentik.blueprint_apply "Default - Authentication flow"
    """
    found = _must("blueprint", name)
    client = _client()
    before = found.get("last_applied")
    result = client.json("POST", _detail(RESOURCES["blueprint"], found["pk"]) + "apply/")
    if client.version < ASYNC_BLUEPRINTS_VERSION or not wait:
        return result
    deadline = time.monotonic() + float(timeout)
    while True:
        current = _get("blueprint", found["pk"])
        if current.get("last_applied") != before and current.get("status") not in (None, "unknown"):
            if current["status"] == "error":
                raise CommandExecutionError(f"authentik: blueprint {found['name']!r} failed to apply (status error)")
            return current
        if time.monotonic() > deadline:
            raise CommandExecutionError(f"authentik: blueprint {found['name']!r} was not applied within {timeout}s")
        time.sleep(float(interval))
