"""authentik states: protected routes from pillar, and the objects behind them one by one.

``protected_routes`` is the one hecate's state tree uses (``salt/hecate/authentik.sls``): it derives every
object from the pillar routes that have ``auth:`` and converges authentik in one pass: read once, plan
(pure, ``hecatelib.authentik.objects.plan``), then write in dependency order (groups -> providers ->
applications -> outpost -> bindings: new ones, then the ones to drop, then repairs), pruning what hecate
owns in reverse (bindings -> outpost -> applications -> providers [-> groups with ``prune_groups``]). A
second run sends no write; ``test=True`` sends none.

The single-object states (``group_present``, ``proxy_provider_present``, ``application_present``,
``policy_binding_present``, ``outpost_providers_present`` and their ``_absent``) address objects by
natural key and PATCH only the declared fields that differ. Lists the server adds to
(``property_mappings``, an outpost's ``providers``) are compared as sets: what is declared must be there.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

    hecate_fresh.drop_stale()
    from hecatelib import salt_state
    from hecatelib.authentik import objects as authentik_objects
except ImportError as exc:  # pragma: no cover - hecate's _utils not synced, or a library missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

__virtualname__ = "authentik"


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return salt_state.virtual(__virtualname__, __salt__, "authentik.version")


class _Missing(CommandExecutionError):
    """A referenced object does not exist: an error, except in test mode, where an earlier state of the
    same run may be about to create it."""


def _test():
    return salt_state.test(__opts__)


def _fail(ret, exc, done=None):
    if isinstance(exc, _Missing) and _test():
        ret.update(result=None, comment=f"{exc} (yet): it may be created by an earlier state of this run")
        return ret
    return salt_state.fail(ret, str(exc), done)


def _converge(ret, kind, label, current, wanted, create, update):
    """Shared present-logic: create when absent, PATCH the differing declared fields, honour test."""
    if current is None:
        if _test():
            return salt_state.pending(ret, {"new": wanted}, f"{kind} {label} would be created")
        created = create()
        ret.update(comment=f"{kind} {label} created", changes={"new": wanted, "pk": created.get("pk")})
        return ret
    return _patch(ret, kind, label, authentik_objects.differs(current, wanted), update)


def _patch(ret, kind, label, diff, update):
    """Send the differing declared fields (``diff``), or nothing when there are none; honour test."""
    if not diff:
        ret["comment"] = f"{kind} {label} is as declared"
        return ret
    if _test():
        return salt_state.pending(ret, diff, f"{kind} {label} would be updated")
    update({k: v["new"] for k, v in diff.items()})
    ret.update(comment=f"{kind} {label} updated", changes=diff)
    return ret


def _absent(ret, kind, label, current, delete):
    if current is None:
        ret["comment"] = f"{kind} {label} is already absent"
        return ret
    if _test():
        return salt_state.pending(ret, {"old": label, "new": None}, f"{kind} {label} would be deleted")
    delete()
    ret.update(comment=f"{kind} {label} deleted", changes={"old": label, "new": None})
    return ret


# -- groups ------------------------------------------------------------------------------------------------
def group_present(name, parents=None, attributes=None, is_superuser=None):
    """A group called ``name``.

    parents
        Group names; compared as a set (authentik before 2025.12 allows one).
    attributes
        Keys to have with these values; other keys on the server are left alone.
    is_superuser
        Members become superusers (compared only when given).
    """
    ret = salt_state.ret(name)
    try:
        current = __salt__["authentik.group"](name)
        if current is None:
            wanted = {"name": name, "parents": parents, "attributes": attributes, "is_superuser": bool(is_superuser)}
            return _converge(
                ret,
                "group",
                name,
                None,
                wanted,
                lambda: __salt__["authentik.group_create"](name, parents=parents, attributes=attributes, is_superuser=bool(is_superuser)),
                None,
            )
        diff = {}
        if parents is not None:
            names = {g["pk"]: g["name"] for g in __salt__["authentik.groups"]()}
            have = sorted(names.get(p, p) for p in current.get("parents") or [])
            if have != sorted(parents):
                diff["parents"] = {"old": have, "new": sorted(parents)}
        if attributes is not None:
            merged = {**(current.get("attributes") or {}), **attributes}
            if merged != (current.get("attributes") or {}):
                diff["attributes"] = {"old": current.get("attributes"), "new": merged}
        if is_superuser is not None and bool(is_superuser) != current.get("is_superuser"):
            diff["is_superuser"] = {"old": current.get("is_superuser"), "new": bool(is_superuser)}
        return _patch(ret, "group", name, diff, lambda changed: __salt__["authentik.group_update"](current["pk"], **changed))
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _fail(ret, exc)


def _named_absent(name, kind, function, key="pk"):
    """No object called ``name``: read with ``authentik.<function>``, deleted by its ``key`` with
    ``<function>_delete``."""
    ret = salt_state.ret(name)
    try:
        current = __salt__[f"authentik.{function}"](name)
        return _absent(ret, kind, name, current, lambda: __salt__[f"authentik.{function}_delete"](current[key]))
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _fail(ret, exc)


def group_absent(name):
    """No group called ``name`` (its policy bindings go with it)."""
    return _named_absent(name, "group", "group")


# -- proxy providers ---------------------------------------------------------------------------------------
def proxy_provider_present(
    name,
    external_host,
    mode="forward_single",
    authorization_flow=None,
    invalidation_flow=None,
    cookie_domain=None,
    property_mappings=None,
    skip_path_regex=None,
    internal_host=None,
):
    """A proxy provider called ``name``.

    mode
        ``forward_single`` (default), ``forward_domain`` or ``proxy`` (then ``internal_host`` is needed).
    authorization_flow / invalidation_flow
        Flow slugs (default, also for ``None``: authentik's implicit-consent authorization and provider
        invalidation flows).
    property_mappings
        Scope mappings (names or managed ids) that must be attached; authentik adds its own defaults and
        those are kept (set semantics).
    """
    ret = salt_state.ret(name)
    try:
        flows = {}
        for role, slug in (("authorization", authorization_flow), ("invalidation", invalidation_flow)):
            slug = slug or authentik_objects.DEFAULT_FLOWS[role]
            found = __salt__["authentik.flow"](slug)
            if found is None:
                raise CommandExecutionError(f"there is no flow with slug {slug!r} ({role}_flow)")
            flows[f"{role}_flow"] = found["pk"]
        mapping_pks = None
        if property_mappings is not None:
            known = __salt__["authentik.scope_mappings"]()
            mapping_pks = []
            for item in property_mappings:
                found = next((m for m in known if item in (m["pk"], m.get("managed"), m.get("name"))), None)
                if found is None:
                    raise CommandExecutionError(f"there is no scope mapping {item!r}")
                mapping_pks.append(found["pk"])
        wanted = {
            "external_host": external_host,
            "mode": mode,
            **flows,
            "cookie_domain": cookie_domain,
            "skip_path_regex": skip_path_regex,
            "internal_host": internal_host,
            "property_mappings": mapping_pks,  # a set: authentik's own mappings stay
        }
        fields = {k: v for k, v in wanted.items() if v is not None}
        current = __salt__["authentik.proxy_provider"](name)
        update = __salt__["authentik.proxy_provider_update"]
        return _converge(
            ret,
            "proxy provider",
            name,
            current,
            {"name": name, **fields},
            lambda: __salt__["authentik.proxy_provider_create"](name, **fields),
            lambda changed: update(current["pk"], current=current, **changed),
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _fail(ret, exc)


def proxy_provider_absent(name):
    """No proxy provider called ``name`` (authentik drops it from outposts)."""
    return _named_absent(name, "proxy provider", "proxy_provider")


# -- applications ------------------------------------------------------------------------------------------
def application_present(
    name,
    display_name=None,
    provider=None,
    meta_launch_url=None,
    meta_publisher=None,
    meta_description=None,
    policy_engine_mode=None,
    group=None,
):
    """An application with slug ``name`` (looked up by slug: authentik's list can hide applications).

    display_name
        The application's name (default: the slug on create; compared only when given).
    provider
        The provider's name.
    """
    ret = salt_state.ret(name)
    try:
        provider_pk = None
        if provider is not None:
            found = __salt__["authentik.proxy_provider"](provider)
            if found is None:
                raise _Missing(f"there is no proxy provider named {provider!r}")
            provider_pk = found["pk"]
        wanted = {
            "name": display_name,
            "provider": provider_pk,
            "meta_launch_url": meta_launch_url,
            "meta_publisher": meta_publisher,
            "meta_description": meta_description,
            "policy_engine_mode": policy_engine_mode,
            "group": group,
        }
        current = __salt__["authentik.application"](name)
        fields = {k: v for k, v in wanted.items() if v is not None}
        return _converge(
            ret,
            "application",
            name,
            current,
            {"slug": name, **fields},
            lambda: __salt__["authentik.application_create"](name, **{"name": display_name or name, **fields}),
            lambda changed: __salt__["authentik.application_update"](name, **changed),
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _fail(ret, exc)


def application_absent(name):
    """No application with slug ``name`` (its policy bindings go with it)."""
    return _named_absent(name, "application", "application", key="slug")


# -- policy bindings ---------------------------------------------------------------------------------------
def _find_binding(application, group, policy):
    if (group is None) == (policy is None):
        raise SaltInvocationError("give exactly one of group, policy")
    app = __salt__["authentik.application"](application)
    if app is None:
        raise _Missing(f"there is no application with slug {application!r}")
    if group is not None:
        found = __salt__["authentik.group"](group)
        if found is None:
            raise _Missing(f"there is no group named {group!r}")
        field, pk = "group", found["pk"]
    else:
        found = __salt__["authentik.expression_policy"](policy)
        if found is None:
            raise _Missing(f"there is no expression policy named {policy!r}")
        field, pk = "policy", found["pk"]
    bindings = __salt__["authentik.policy_bindings"](targets=[app["pk"]])
    return app, field, pk, next((b for b in bindings if b.get(field) == pk), None), bindings


def policy_binding_present(name, application, group=None, policy=None, binding_order=None, negate=False, enabled=True):
    """A binding of a group (by name) or an expression policy (by name) to the application with slug
    ``application``. The pair is the key; ``negate`` and ``enabled`` are compared, and ``binding_order``
    (authentik's ``order``; Salt reserves ``order`` for state ordering) when given.

    Without ``binding_order`` a new binding takes an order no binding of the application holds, and an
    existing one keeps its own, moving to a free one only when it must be changed and shares its order:
    authentik refuses to PATCH a group or user binding whose order another one has
    (``hecatelib.authentik.objects.plan_bindings``). A ``binding_order`` taken that way is refused before
    any write."""
    ret = salt_state.ret(name)
    try:
        app, field, pk, current, bindings = _find_binding(application, group, policy)
        label = f"{application} <- {field} {group or policy}"
        policy_pk = pk if field == "policy" else None
        mine = current["pk"] if current else None
        wanted = {"order": binding_order, "negate": bool(negate), "enabled": bool(enabled)}
        taken = {b.get("order") for b in bindings}
        writes = current is None or authentik_objects.differs(current, wanted)
        if writes and binding_order is not None and authentik_objects.order_taken(bindings, binding_order, policy_pk, mine):
            raise CommandExecutionError(
                f"binding_order {binding_order} is taken by another {'binding of this policy' if policy_pk else 'group or user binding'} "
                f"of {application}: authentik refuses to change either binding then (unique policy, target, order)"
            )
        if writes and current is not None and binding_order is None:
            if authentik_objects.order_taken(bindings, current.get("order"), policy_pk, mine):
                wanted["order"] = authentik_objects.free_order(taken)
        order = authentik_objects.free_order(taken) if binding_order is None else binding_order
        return _converge(
            ret,
            "policy binding",
            label,
            current,
            wanted,
            lambda: __salt__["authentik.policy_binding_create"](app["pk"], **{field: pk}, order=order, negate=negate, enabled=enabled),
            lambda changed: __salt__["authentik.policy_binding_update"](current["pk"], current=current, **changed),
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _fail(ret, exc)


def policy_binding_absent(name, application, group=None, policy=None):
    """No binding of that group or policy to the application (absent application: nothing to do)."""
    ret = salt_state.ret(name)
    try:
        if __salt__["authentik.application"](application) is None:
            ret["comment"] = f"application {application} is absent, so is the binding"
            return ret
        _, field, _, current, _ = _find_binding(application, group, policy)
        label = f"{application} <- {field} {group or policy}"
        return _absent(ret, "policy binding", label, current, lambda: __salt__["authentik.policy_binding_delete"](current["pk"]))
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _fail(ret, exc)


# -- outposts ----------------------------------------------------------------------------------------------
def _outpost_membership(name, providers, present):
    ret = salt_state.ret(name)
    try:
        outpost = __salt__["authentik.outpost"](name)
        if outpost is None:
            raise CommandExecutionError(f"there is no outpost {name!r}")
        members = set(outpost.get("providers") or [])
        pending = []
        for provider in providers:
            found = __salt__["authentik.proxy_provider"](provider)
            if found is None:
                if present:
                    raise _Missing(f"there is no proxy provider named {provider!r}")
                continue
            if (found["pk"] in members) != present:
                pending.append(provider)
        if not pending:
            ret["comment"] = f"outpost {name}: providers already {'present' if present else 'absent'}"
            return ret
        verb = "added" if present else "removed"
        if _test():
            return salt_state.pending(ret, {verb: pending}, f"outpost {name}: providers would be {verb}")
        __salt__["authentik.outpost_update_providers"](
            add=pending if present else None, remove=None if present else pending, outpost_name=name
        )
        ret.update(comment=f"outpost {name}: providers {verb}", changes={verb: pending})
        return ret
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _fail(ret, exc)


def outpost_providers_present(name, providers):
    """The outpost ``name`` (``embedded``: authentik's embedded outpost) serves these providers (names).
    Other providers on it are left alone."""
    return _outpost_membership(name, providers, True)


def outpost_providers_absent(name, providers):
    """The outpost ``name`` (``embedded``: authentik's embedded outpost) does not serve these providers."""
    return _outpost_membership(name, providers, False)


# -- the set-level state -------------------------------------------------------------------------------------
def _snapshot(desired):
    """Read authentik once: everything the plan compares, natural keys -> objects."""
    prefix = desired["prefix"]
    flows = {}
    for role, slug in desired["flows"].items():
        if slug in flows:
            continue
        found = __salt__["authentik.flow"](slug)
        if found is None:
            raise CommandExecutionError(f"there is no flow with slug {slug!r} (hecate:authentik:flows:{role})")
        flows[slug] = found["pk"]
    groups = {g["name"]: g for g in __salt__["authentik.groups"]()}
    providers = {p["name"]: p for p in __salt__["authentik.proxy_providers"]()}
    me = __salt__["authentik.whoami"]()
    if me.get("is_superuser"):
        # superuser_full_list is honoured for superusers only: then the list is complete
        apps = {a["slug"]: a for a in __salt__["authentik.applications"](full=True)}
    else:
        apps = {a["slug"]: a for a in __salt__["authentik.applications"](full=False)}
        wanted = set(desired["applications"])
        wanted |= {p.get("assigned_application_slug") for p in providers.values() if authentik_objects.owns_provider(p, prefix, apps)}
        for slug in sorted(s for s in wanted - set(apps) if s):
            found = __salt__["authentik.application"](slug)
            if found is not None:
                apps[slug] = found
    outpost = __salt__["authentik.outpost"](desired["outpost"])
    if outpost is None:
        raise CommandExecutionError(f"there is no outpost {desired['outpost']!r} (hecate:authentik:outpost:name)")
    targets = [a["pk"] for s, a in sorted(apps.items()) if s in desired["applications"] or authentik_objects.owns_application(a, prefix)]
    bindings = {}
    if targets:
        for binding in __salt__["authentik.policy_bindings"](targets=targets):
            bindings.setdefault(binding["target"], []).append(binding)
    return {"flows": flows, "groups": groups, "providers": providers, "applications": apps, "outpost": outpost, "bindings": bindings}


def _execute(actions, snapshot, desired, done):
    """Carry out the plan in order; ``done`` collects what happened (for a partial failure's report)."""
    salt = __salt__
    flows = snapshot["flows"]

    def mark(kind, verb, value):
        done.setdefault(kind, {}).setdefault(verb, []).append(value)

    for item in actions["groups_create"]:
        snapshot["groups"][item["name"]] = salt["authentik.group_create"](item["name"], attributes=item["attributes"])
        mark("groups", "created", item["name"])
    for item in actions["providers_create"]:
        fields = dict(item)
        name = fields.pop("name")
        external_host = fields.pop("external_host")
        fields["authorization_flow"] = flows.get(fields["authorization_flow"], fields["authorization_flow"])
        fields["invalidation_flow"] = flows.get(fields["invalidation_flow"], fields["invalidation_flow"])
        snapshot["providers"][name] = salt["authentik.proxy_provider_create"](name, external_host, **fields)
        mark("providers", "created", name)
    for item in actions["providers_update"]:
        changed = {k: v["new"] for k, v in item["diff"].items()}
        snapshot["providers"][item["name"]] = salt["authentik.proxy_provider_update"](item["pk"], current=item["current"], **changed)
        mark("providers", "updated", item["name"])
    for item in actions["applications_create"]:
        fields = dict(item)
        slug = fields.pop("slug")
        fields["provider"] = snapshot["providers"][fields["provider"]]["pk"]
        snapshot["applications"][slug] = salt["authentik.application_create"](slug, **fields)
        mark("applications", "created", slug)
    for item in actions["applications_update"]:
        changed = {k: v["new"] for k, v in item["diff"].items()}
        if "provider" in changed:
            changed["provider"] = snapshot["providers"][desired["applications"][item["slug"]]["provider"]]["pk"]
        snapshot["applications"][item["slug"]] = salt["authentik.application_update"](item["slug"], **changed)
        mark("applications", "updated", item["slug"])
    if actions["outpost_add"] or actions["outpost_remove"]:
        add = [snapshot["providers"][n]["pk"] for n in actions["outpost_add"]]
        remove = [snapshot["providers"][n]["pk"] for n in actions["outpost_remove"]]
        salt["authentik.outpost_update_providers"](add=add, remove=remove, outpost_name=desired["outpost"])
        for name in actions["outpost_add"]:
            mark("outpost", "providers_added", name)
        for name in actions["outpost_remove"]:
            mark("outpost", "providers_removed", name)
    for item in actions["bindings_create"]:
        app = snapshot["applications"][item["application"]]
        group = snapshot["groups"][item["group"]]
        salt["authentik.policy_binding_create"](app["pk"], group=group["pk"], order=item["order"])
        mark("bindings", "created", f"{item['application']} <- group {item['group']}")
    for item in actions["bindings_delete"]:
        salt["authentik.policy_binding_delete"](item["pk"])
        mark("bindings", "deleted", f"{item['application']} <- {item['what']}")
    for item in actions["bindings_update"]:
        salt["authentik.policy_binding_update"](item["pk"], current=item["current"], **{k: v["new"] for k, v in item["diff"].items()})
        mark("bindings", "updated", f"{item['application']} <- group {item['group']}")
    for slug in actions["applications_delete"]:
        salt["authentik.application_delete"](slug)
        mark("applications", "deleted", slug)
    for name in actions["providers_delete"]:
        salt["authentik.proxy_provider_delete"](snapshot["providers"][name]["pk"])
        mark("providers", "deleted", name)
    for name in actions["groups_delete"]:
        salt["authentik.group_delete"](snapshot["groups"][name]["pk"])
        mark("groups", "deleted", name)


def protected_routes(name, prune=None):
    """Make authentik guard exactly the pillar routes that have ``auth:``.

    For each such route (``forward_single``, the default): a proxy provider and an application named
    ``<name_prefix><service>``, the provider on the outpost (the embedded one by default), one policy
    binding per group in ``auth:groups`` (none: any signed-in user), the groups created when missing.
    ``forward_domain`` routes share one provider/application per cookie domain. hecate's objects that no
    route needs any more are removed (``prune``, default ``hecate:authentik:prune``, true).

    name
        The state's ID (free text). The routes and settings come from pillar ``hecate`` (validated first).
    prune
        Override ``hecate:authentik:prune``.
    """
    ret = salt_state.ret(name)
    try:
        # From pillar only, never a state argument: the tree holds the tokens, and a state's arguments end
        # up in the job's return and events. hecatelib.schema.validate already applies authentik's schema.
        tree = salt_state.tree(__pillar__, __opts__, __context__)
    except salt_state.PillarError as exc:
        return _fail(ret, exc)
    settings = authentik_objects.section(tree)
    desired = authentik_objects.desired_objects(tree)
    if not desired["providers"] and not settings.get("url") and not settings.get("endpoint"):
        ret["comment"] = "no route has auth: and authentik is not configured (hecate:authentik:url); nothing to do"
        return ret
    prune = settings["prune"] if prune is None else bool(prune)
    done = {}
    try:
        snapshot = _snapshot(desired)
        actions = authentik_objects.plan(desired, snapshot, prune=prune, prune_groups=settings["prune_groups"])
        changes = authentik_objects.plan_changes(actions)
        count = len(desired["providers"])
        if not changes:
            ret["comment"] = f"authentik already guards the {count} protected route object(s) as declared; nothing sent"
            return ret
        if _test():
            return salt_state.pending(ret, changes, "authentik would change (test=True: nothing sent)")
        _execute(actions, snapshot, desired, done)
        ret.update(changes=changes, comment=f"authentik converged: {count} protected application(s)")
        return ret
    except (CommandExecutionError, SaltInvocationError, KeyError) as exc:
        why = str(exc).removeprefix("authentik: ")  # the module's errors already say whose they are
        return _fail(ret, f"authentik: {why} (done before the failure: {done or 'nothing'})", done)


def mod_watch(name, sfun=None, **kwargs):
    """``watch``: run the watching state again (every state here converges, so that is all a watched
    change asks for), with only the state's own arguments."""
    functions = {
        f.__name__: f
        for f in (
            protected_routes,
            group_present,
            group_absent,
            proxy_provider_present,
            proxy_provider_absent,
            application_present,
            application_absent,
            policy_binding_present,
            policy_binding_absent,
            outpost_providers_present,
            outpost_providers_absent,
        )
    }
    return salt_state.mod_watch(functions, name, sfun, kwargs)
