"""Caddy as a backend of the engine: the ``routes`` stage on every edge (the switch), its undo (each edge's
config from before the run, loaded back), the verify step (every route through every edge), the health
sections (routes, certificates, upstreams) and its part of a backup (each edge's config)."""

from hecatelib import backups, health
from hecatelib.caddy import certs as caddy_certs
from hecatelib.caddy import config as caddy_config
from hecatelib.engine.backend import EDGE, SWITCH, Backend, Outcome, Read, Stage, answered, failures, first_ok


def before(tree, run_id):
    """Each edge's config, kept on the edge (``caddy.snapshot keep=<run id>``: 0600, newest 10); only its
    path comes back (shipping a config of 1000 routes through Salt cost seconds)."""
    return [Read(EDGE, "caddy.snapshot", kwargs={"keep": run_id})]


def keep(tree, answers):
    (kept,) = answers
    return {m: snap["path"] for m, snap in answered(kept).items() if isinstance(snap, dict) and snap.get("path")}


def undo(ctx, snapshots, only=None):
    """Load each edge's snapshot back (``caddy.restore``), each answer checked."""
    outcome = Outcome()
    for minion, snap in sorted((snapshots or {}).items()):
        if only is not None and minion not in only:
            continue
        answer = ctx.call(f"minion:{minion}", "caddy.restore", snap).get(minion) or {"ok": False, "ret": "no answer"}
        outcome.add(answer["ok"] and answer["ret"] is True, f"caddy on {minion}: restored the snapshot", answer["ret"])
    return outcome


def switched_domains(tree, switched):
    """The domains the routes stage's changes (``{minion: {state: changes}}``, ``caddy.routes_managed``'s)
    added or changed, or None when they reach further (server settings, certificates: every route) or name a
    route the pillar does not have."""
    by_id = {caddy_config.route_id(route): route["domain"] for route in tree["reverse_proxy"]["caddy"]["routes"]}
    found = set()
    for states in switched.values():
        for diff in states.values():
            if not isinstance(diff, dict) or set(diff) - {"added", "changed", "removed"}:
                return None
            for route_id in [*(diff.get("added") or {}), *(diff.get("changed") or {})]:
                domain = by_id.get(route_id.removesuffix(caddy_config.OUTPOST_SUFFIX))
                if domain is None:
                    return None
                found.add(domain)
    return sorted(found)


def verify(tree, call, switched=None):
    """The pillar routes requested through every edge (one ``caddy.check`` per edge): every route, or only
    those the switch added or changed when it was all the run changed; the failures."""
    domains = [route["domain"] for route in tree["reverse_proxy"]["caddy"]["routes"]]
    narrowed = switched_domains(tree, switched) if switched is not None else None
    if narrowed is not None:
        domains = [domain for domain in domains if domain in narrowed]
    if not domains:
        return []
    out = []
    for minion, answer in call(EDGE, "caddy.check", domains).items():
        failed = _listed(answer, "failed")
        if failed is None:
            out.append(f"{minion}: {answer['ret']}")
            continue
        out.extend(f"{probe['domain']} via {minion}: {probe['reason']}" for probe in failed)
    return out


def _listed(answer, name):
    """The list ``name`` of a ``{name: [...], "comment": ...}`` answer (caddy.check, certs, upstreams), or None
    when the minion answered something else (an error)."""
    ret = answer.get("ret") if answer.get("ok") else None
    found = ret.get(name) if isinstance(ret, dict) else None
    return found if isinstance(found, list) else None


def routes_section(tree, call):
    """One ``caddy.probes`` per edge for all routes (one validation, parallel requests on the edge)."""
    rows = []
    routes = tree["reverse_proxy"]["caddy"]["routes"]
    answers = health.answers(call, "edge", "caddy.probes", [route["domain"] for route in routes])
    if not answers:
        return [{"edge": "-", "domain": route["domain"], "service": route["service"], "status": None, "ok": False,
                 "reason": "no edge minion answered"} for route in routes]  # fmt: skip
    for minion, answer in sorted(answers.items()):
        found = answer.get("ret") if answer.get("ok") and isinstance(answer.get("ret"), list) else []
        by_domain = {probe.get("domain"): probe for probe in found if isinstance(probe, dict)}
        for route in routes:
            probe = by_domain.get(route["domain"])
            if probe is None:
                row = {"status": None, "ok": False, "reason": str(answer.get("ret"))[:300]}
            else:
                row = {"status": probe.get("status"), "ok": bool(probe.get("ok")), "reason": probe.get("reason") or ""}
            rows.append({"edge": minion, "domain": route["domain"], "service": route["service"], **row})
    return rows


def certs_section(tree, call):
    """Each host's certificate on each edge (``caddy.certs``), and each custom certificate. Not ok on
    ``hecatelib.caddy.certs.alert``: it ends within ``hecate:reconcile:cert_warn_days`` (14) and nobody renews it in
    time (a custom certificate, or a managed one with less than a third of its lifetime left): a
    short-lived internal certificate that Caddy renews every few hours is no alarm."""
    if tree["reverse_proxy"]["caddy"]["tls"]["mode"] == "off":
        return health.NOT_CONFIGURED
    rows = []
    warn_days = tree["reconcile"]["cert_warn_days"]
    for minion, answer in sorted(health.answers(call, "edge", "caddy.certs", warn_days=warn_days).items()):
        found = _listed(answer, "certificates")
        if found is None:
            rows.append({"edge": minion, "domain": "-", "days_left": None, "ok": False, "detail": str(answer.get("ret"))[:300]})
            continue
        for cert in found:
            late = caddy_certs.alert(cert)
            renewer = "Caddy" if cert.get("managed", True) else "nobody (a custom certificate: rotate it in pillar)"
            detail = cert.get("error") or (f"ends in {cert.get('days_left')} days and was not renewed by {renewer}" if late else "")
            domain = cert.get("domain") or f"- ({cert.get('certificate')}, no route)"
            rows.append({"edge": minion, "domain": domain, "days_left": cert.get("days_left"),
                         "ok": "error" not in cert and not late, "detail": detail})  # fmt: skip
    return rows


def upstreams_section(tree, call):
    """Caddy's view of each upstream on each edge (``caddy.upstreams``), with the services that use it."""
    rows = []
    answers = health.answers(call, "edge", "caddy.upstreams")
    for minion, answer in sorted(answers.items()):
        found = _listed(answer, "upstreams")
        if found is None:
            rows.append({"edge": minion, "address": "-", "services": "", "requests": None, "fails": None, "ok": False,
                         "detail": str(answer.get("ret"))[:300]})  # fmt: skip
            continue
        for upstream in found:
            address = upstream.get("address", "")
            fails = upstream.get("fails") or 0
            rows.append({
                "edge": minion,
                "address": address,
                "services": ", ".join(upstream.get("services") or []) or "(not in pillar)",
                "requests": upstream.get("num_requests", 0),
                "fails": fails,
                "ok": fails == 0,
                "detail": "" if fails == 0 else "recent failures (passive health)",
            })  # fmt: skip
    return rows


def collect_caddy(tree, call):
    answers = call("edge", "caddy.snapshot")
    files, problems = {}, []
    for minion, answer in sorted((answers or {}).items()):
        snap = answer.get("ret")
        if answer.get("ok") and isinstance(snap, dict) and "config" in snap:
            files[f"caddy/{backups.file_name(minion)}.json"] = {"minion": minion, **snap}
        else:
            problems.append(f"{minion}: {str(snap)[:300]}")
    if not answers:
        problems.append("no edge minion answered caddy.snapshot")
    section = {"state": "saved" if files else "failed", "edges": sorted(f["minion"] for f in files.values())}
    if problems:
        section["problems"] = problems
    return section, files


def restore_caddy(directory, manifest, call, test):
    done, problems = [], []
    for rel in sorted(r for r in manifest["files"] if r.startswith("caddy/")):
        snap = backups.load(directory, rel)
        minion = snap["minion"]
        target = f"minion:{minion}"
        answers = call(target, "caddy.snapshot")
        via, live = first_ok(answers)
        if via is None:
            problems.append(f"caddy on {minion}: cannot read the live config: {failures(answers, 'caddy.snapshot')}")
            continue
        if live.get("config") == snap["config"]:
            done.append(f"caddy on {minion}: already the saved config")
            continue
        if test:
            done.append(f"caddy on {minion}: would load the saved config (one reload)")
            continue
        answers = call(target, "caddy.restore", {"config": snap["config"], "etag": snap.get("etag")})
        via, _ = first_ok(answers)
        if via is None:
            problems.append(f"caddy on {minion}: {failures(answers, 'caddy.restore')}")
            continue
        _, after = first_ok(call(target, "caddy.snapshot"))
        if not isinstance(after, dict) or after.get("config") != snap["config"]:
            problems.append(f"caddy on {minion}: loaded, but the live config differs from the saved one")
        else:
            done.append(f"caddy on {minion}: saved config loaded")
    return done, problems


BACKEND = Backend(
    name="caddy",
    section="reverse_proxy",
    stages=(Stage("routes", EDGE, "hecate.routes", SWITCH),),
    enabled=lambda tree: True,
    before=before,
    keep=keep,
    undo=undo,
    verify=verify,
    health=(("routes", routes_section), ("certs", certs_section), ("upstreams", upstreams_section)),
    backup=collect_caddy,
    restore_backup=restore_caddy,
)
