"""authentik as a backend of the engine: the ``authentik`` stage creates and updates the objects protected
routes need before Caddy sends users to the outpost (expand), and deletes what the pillar dropped only after
the switch (contract); a failed run is undone by converging the previous deployment's tree again; its drift,
health and its part of a backup (the objects hecate owns, by natural key)."""

from hecatelib import backups, health
from hecatelib.authentik import objects as authentik_objects
from hecatelib.engine.backend import CONTROLLER, EXPAND, Backend, Stage, failures, first_ok, reapply_previous

STAGE = Stage("authentik", CONTROLLER, "hecate.authentik", EXPAND)


def enabled(tree):
    """authentik is driven when it is configured and at least one route asks for it."""
    routes = tree["reverse_proxy"]["caddy"]["routes"]
    return bool((tree.get("authentik") or {}).get("url")) and any(r.get("auth") for r in routes)


def authentik_section(tree, call):
    authentik = tree.get("authentik") or {}
    if not authentik.get("url"):
        return list(health.NOT_CONFIGURED)
    answers = health.answers(call, "controller", "authentik.health")
    minion, found = first_ok(answers)
    if not isinstance(found, dict):
        return [{"state": "error", "ok": False, "detail": failures(answers, "authentik.health")}]
    ok = bool(found.get("live")) and bool(found.get("ready"))
    detail = "; ".join(str(found[k]) for k in ("live_error", "ready_error") if found.get(k))
    return [{"state": "ok" if ok else "down", "ok": ok, "url": authentik["url"], "live": found.get("live"), "ready": found.get("ready"),
             "version": found.get("version"), "via": minion, "detail": detail}]  # fmt: skip


def collect_authentik(tree, call):
    if not (tree.get("authentik") or {}).get("url"):
        return {"state": "not configured", "note": "hecate:authentik:url is not set"}, {}

    def one(fun, *args, **kwargs):
        answers = call("controller", fun, *args, **kwargs)
        via, value = first_ok(answers)
        if via is None:
            raise backups.BackupError(f"{fun}: {failures(answers, fun)}")
        return value

    settings = authentik_objects.section(tree)
    prefix = settings["name_prefix"]
    outpost_name = settings["outpost"]["name"]
    flows = {f["pk"]: f["slug"] for f in one("authentik.flows") or []}
    groups = one("authentik.groups") or []
    group_names = {g["pk"]: g["name"] for g in groups}
    apps = {a["slug"]: a for a in one("authentik.applications", full=True) or []}
    providers = one("authentik.proxy_providers") or []
    owned_apps = {s: a for s, a in apps.items() if authentik_objects.owns_application(a, prefix)}
    owned_providers = [p for p in providers if authentik_objects.owns_provider(p, prefix, apps)]
    provider_names = {p["pk"]: p["name"] for p in providers}
    out = {"prefix": prefix, "outpost": outpost_name, "groups": [], "providers": [], "applications": [], "outpost_providers": [],
           "bindings": []}  # fmt: skip
    for group in groups:
        if authentik_objects.owns_group(group, prefix):
            out["groups"].append({"name": group["name"], "parents": sorted(group_names.get(p, p) for p in group.get("parents") or []),
                                  "attributes": group.get("attributes") or {}})  # fmt: skip
    for provider in owned_providers:
        item = {"name": provider["name"], "external_host": provider.get("external_host"), "mode": provider.get("mode") or "forward_single"}
        for field in ("authorization_flow", "invalidation_flow"):
            if provider.get(field):
                item[field] = flows.get(provider[field], provider[field])
        for field in ("cookie_domain", "skip_path_regex", "internal_host"):
            if provider.get(field):
                item[field] = provider[field]
        out["providers"].append(item)
    for slug, app in sorted(owned_apps.items()):
        item = {"name": slug, "display_name": app.get("name"), "provider": provider_names.get(app.get("provider"))}
        for field in ("meta_launch_url", "meta_publisher", "meta_description", "policy_engine_mode", "group"):
            if app.get(field) not in (None, ""):
                item[field] = app[field]
        out["applications"].append(item)
    outpost = one("authentik.outpost", outpost_name)
    owned_pks = {p["pk"] for p in owned_providers}
    out["outpost_providers"] = sorted(provider_names[p] for p in (outpost or {}).get("providers") or [] if p in owned_pks)
    targets = {a["pk"]: s for s, a in owned_apps.items()}
    if targets:
        for binding in one("authentik.policy_bindings", targets=sorted(targets)) or []:
            if not binding.get("group"):
                continue  # hecate binds groups only; user/policy bindings someone added are left to them
            out["bindings"].append({
                "application": targets[binding["target"]],
                "group": group_names.get(binding["group"], binding["group"]),
                "binding_order": binding.get("order", 0),
                "negate": bool(binding.get("negate")),
                "enabled": binding.get("enabled", True) is not False,
            })  # fmt: skip
    counts = {k: len(v) for k, v in out.items() if isinstance(v, list)}
    return {"state": "saved", "objects": counts}, {"authentik.json": out}


def restore_authentik(directory, manifest, call, test):
    saved = backups.load(directory, "authentik.json")
    done, problems = [], []
    steps = [("authentik.group_present", g) for g in saved["groups"]]
    steps += [("authentik.proxy_provider_present", p) for p in saved["providers"]]
    steps += [("authentik.application_present", a) for a in saved["applications"]]
    if saved["outpost_providers"]:
        steps.append(("authentik.outpost_providers_present", {"name": saved["outpost"], "providers": saved["outpost_providers"]}))
    for binding in saved["bindings"]:
        steps.append(("authentik.policy_binding_present", {"name": f"{binding['application']} <- {binding['group']}", **binding}))
    changed = 0
    for state, kwargs in steps:
        ok, did, comments = backups.single(call, state, test, **kwargs)
        changed += did
        if not ok:
            problems.append(f"{state} {kwargs.get('name')}: {'; '.join(comments)}")
    done.append(f"authentik: {len(steps)} objects checked, {changed} {'would change' if test else 'restored'}")
    return done, problems


BACKEND = Backend(
    name="authentik",
    section="authentik",
    schema=authentik_objects.PILLAR_SCHEMA,
    check=authentik_objects.check_pillar,
    stages=(STAGE,),
    enabled=enabled,
    prunes=True,
    prune_default=True,
    undo=reapply_previous(STAGE),
    drift=True,
    health=(("authentik", authentik_section),),
    backup=collect_authentik,
    restore_backup=restore_authentik,
)
