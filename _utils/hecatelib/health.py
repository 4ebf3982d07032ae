"""``salt-run hecate.health``: is every route answering, through every edge, and do the backends agree?

Pure apart from ``call``: :func:`collect` asks the minions through a caller the runner provides
(``call(role, fun, *args, **kwargs) -> {minion: {"ok": bool, "ret": value}}``, ``role`` is ``edge`` or
``controller``), so the same code runs under salt-run (LocalClient) and in tests (Salt's loader).

The report is a dict of row lists, one per section, so Salt's ``table`` outputter prints it as tables
and ``--out=json`` gives the same rows to scripts:

- ``routes``: every pillar route requested through every edge (``caddy.probes``: 127.0.0.1, SNI = host,
  protected routes' upstreams dialled too);
- ``certs``: each host's certificate on each edge (``caddy.certs``), and each custom certificate, flagged
  when it ends within 14 days and nobody renews it in time (custom, or Caddy's renewal overdue);
- ``upstreams``: Caddy's view of each upstream (``caddy.upstreams``: requests in flight, recent failures);
- ``authentik``: liveness/readiness (``authentik.health``);
- ``nomad``: each hecate job's version, status and allocations (``nomad_job.status`` / ``.allocations``);
- ``dns``: every record set the pillar implies, against the zone (``hetzner_dns.rrsets``);
- ``summary``: one row, ``healthy`` true only when nothing above failed.

A backend that is not configured in pillar shows one row ``{"state": "not configured"}``; a backend whose
module is missing or whose API fails shows ``{"state": "error", "detail": ...}``: neither stops the rest.
"""

from salt.exceptions import SaltException

from hecatelib import schema
from hecatelib.caddy import certs as caddy_certs
from hecatelib.caddy import config as caddy_config
from hecatelib.dns import zones as dns_zones
from hecatelib.nomad import jobs as nomad_jobs
from hecatelib.spec import Report

NOT_CONFIGURED = [{"state": "not configured"}]

# What a backend raises when it cannot answer: Salt's errors (CommandExecutionError, SaltInvocationError,
# SaltClientError from LocalClient) and the transport's (OSError; requests' RequestException is one).
# Anything else is a bug in hecate and keeps its traceback.
BACKEND_ERRORS = (SaltException, OSError)


def _answers(call, role, fun, *args, **kwargs):
    """``call`` wrapped: a backend or transport failure becomes one failed answer."""
    try:
        return call(role, fun, *args, **kwargs) or {}
    except BACKEND_ERRORS as exc:
        return {"?": {"ok": False, "ret": f"{type(exc).__name__}: {exc}"}}


def _first_ok(answers):
    for minion, answer in sorted(answers.items()):
        if answer.get("ok"):
            return minion, answer.get("ret")
    return None, None


def _error_text(answers, what):
    if not answers:
        return f"no minion answered {what}"
    return "; ".join(f"{m}: {str(a.get('ret'))[:300]}" for m, a in sorted(answers.items()))


def _dials(tree):
    """Upstream address (as Caddy lists it) -> services that use it."""
    out = {}
    for route in tree["reverse_proxy"]["caddy"]["routes"]:
        for backend in caddy_config.route_upstreams(route, tree):  # as Caddy dials it (consul_dns: the job's service)
            parsed = schema.parse_backend(backend)
            if parsed["scheme"] == "consul":
                continue
            out.setdefault(caddy_config.dial(parsed), []).append(route["service"])
    return out


def routes_section(tree, call):
    """One ``caddy.probes`` per edge for all routes (one validation, parallel requests on the edge)."""
    rows = []
    routes = tree["reverse_proxy"]["caddy"]["routes"]
    answers = _answers(call, "edge", "caddy.probes", [route["domain"] for route in routes])
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


def upstreams_section(tree, call):
    dials = _dials(tree)
    rows = []
    answers = _answers(call, "edge", "caddy.upstreams")
    for minion, answer in sorted(answers.items()):
        if not answer.get("ok") or not isinstance(answer.get("ret"), list):
            rows.append({"edge": minion, "address": "-", "services": "", "requests": None, "fails": None, "ok": False,
                         "detail": str(answer.get("ret"))[:300]})  # fmt: skip
            continue
        for upstream in answer["ret"]:
            address = upstream.get("address", "")
            fails = upstream.get("fails") or 0
            rows.append({
                "edge": minion,
                "address": address,
                "services": ", ".join(dials.get(address, [])) or "(not in pillar)",
                "requests": upstream.get("num_requests", 0),
                "fails": fails,
                "ok": fails == 0,
                "detail": "" if fails == 0 else "recent failures (passive health)",
            })  # fmt: skip
    return rows


def authentik_section(tree, call):
    authentik = tree.get("authentik") or {}
    if not authentik.get("url"):
        return list(NOT_CONFIGURED)
    answers = _answers(call, "controller", "authentik.health")
    minion, health = _first_ok(answers)
    if not isinstance(health, dict):
        return [{"state": "error", "ok": False, "detail": _error_text(answers, "authentik.health")}]
    ok = bool(health.get("live")) and bool(health.get("ready"))
    detail = "; ".join(str(health[k]) for k in ("live_error", "ready_error") if health.get(k))
    return [{"state": "ok" if ok else "down", "ok": ok, "url": authentik["url"], "live": health.get("live"), "ready": health.get("ready"),
             "version": health.get("version"), "via": minion, "detail": detail}]  # fmt: skip


def nomad_section(tree, call):
    if not tree.get("nomad"):
        return list(NOT_CONFIGURED)
    rows = []
    for name in nomad_jobs.JOBS:
        job_id = nomad_jobs.job_settings(tree, name)["id"]  # pure, on the validated tree
        status_answers = _answers(call, "controller", "nomad_job.status", job_id)
        via, status = _first_ok(status_answers)
        if via is None:
            rows.append({"job": job_id, "ok": False, "state": "error", "detail": _error_text(status_answers, "nomad_job.status")})
            continue
        if status is None:
            rows.append({"job": job_id, "ok": False, "state": "not registered", "detail": ""})
            continue
        alloc_answers = _answers(call, "controller", "nomad_job.allocations", job_id)
        _, allocs = _first_ok(alloc_answers)
        allocs = [a for a in allocs or [] if a.get("DesiredStatus") == "run"]
        running = sum(1 for a in allocs if a.get("ClientStatus") == "running")
        failed = sum(1 for a in allocs if a.get("ClientStatus") in ("failed", "lost"))
        unhealthy = sum(1 for a in allocs if a.get("Healthy") is False)
        wanted = sum((status.get("groups") or {}).values()) if not status.get("Stop") else 0
        deployment = (status.get("deployment") or {}).get("Status") or ""
        ok = running >= wanted and not failed and not unhealthy and deployment not in ("failed",)
        rows.append({
            "job": job_id,
            "version": status.get("Version"),
            "status": status.get("Status"),
            "deployment": deployment,
            "allocations": f"{running}/{wanted} running",
            "failed": failed,
            "unhealthy": unhealthy,
            "ok": ok,
            "state": "ok" if ok else "degraded",
        })  # fmt: skip
    return rows


def dns_section(tree, call):
    if not dns_zones.enabled(tree):
        return list(NOT_CONFIGURED)
    dns = tree.get("dns") or {}
    targets = None
    if not (dns.get("targets") or {}).get("ipv4") and not (dns.get("targets") or {}).get("ipv6") and tree.get("terraform"):
        _, targets = _first_ok(_answers(call, "controller", "hecate_terraform.dns_targets"))
    report = Report("hecate")
    desired = dns_zones.compile_zones(tree, targets=targets if isinstance(targets, dict) else None, report=report, require_targets=False)
    rows = [{"zone": "-", "name": path, "type": "-", "want": "", "have": "", "ok": False, "state": "pillar: " + reason}
            for path, reason in report.errors]  # fmt: skip
    for zone, wanted in sorted(desired.items()):
        answers = _answers(call, "controller", "hetzner_dns.rrsets", zone)
        _, actual = _first_ok(answers)
        if not isinstance(actual, list):
            rows.append({"zone": zone, "name": "-", "type": "-", "want": "", "have": "", "ok": False,
                         "state": "error: " + _error_text(answers, "hetzner_dns.rrsets")})  # fmt: skip
            continue
        index = {(r["name"], r["type"]): r for r in actual}
        for (name, rtype), want in sorted(wanted.items()):
            have = index.get((name, rtype))
            have_records = dns_zones.actual_records(have, zone) if have else []
            if have is None:
                state = "missing"
            elif have_records != want["records"]:
                state = "differs"
            elif have.get("ttl") != want["ttl"]:
                state = f"ttl {have.get('ttl')} (want {want['ttl']})"
            else:
                state = "ok"
            rows.append({"zone": zone, "name": dns_zones.absolute_name(name, zone), "type": rtype, "want": " ".join(want["records"]),
                         "have": " ".join(have_records) if have else "-", "ok": state == "ok", "state": state})  # fmt: skip
        if not wanted:
            rows.append({"zone": zone, "name": "-", "type": "-", "want": "", "have": "", "ok": True,
                         "state": "no record sets implied (no targets: set hecate:dns:targets)"})  # fmt: skip
    return rows


def certs_section(tree, call):
    """Each host's certificate on each edge (``caddy.certs``), and each custom certificate. Not ok on
    ``hecatelib.caddy.certs.alert``: it ends within ``hecate:reconcile:cert_warn_days`` (14) and nobody renews it in
    time (a custom certificate, or a managed one with less than a third of its lifetime left): a
    short-lived internal certificate that Caddy renews every few hours is no alarm."""
    if tree["reverse_proxy"]["caddy"]["tls"]["mode"] == "off":
        return NOT_CONFIGURED
    rows = []
    warn_days = tree["reconcile"]["cert_warn_days"]
    for minion, answer in sorted(_answers(call, "edge", "caddy.certs", warn_days=warn_days).items()):
        if not answer.get("ok") or not isinstance(answer.get("ret"), list):
            rows.append({"edge": minion, "domain": "-", "days_left": None, "ok": False, "detail": str(answer.get("ret"))[:300]})
            continue
        for cert in answer["ret"]:
            late = caddy_certs.alert(cert)
            renewer = "Caddy" if cert.get("managed", True) else "nobody (a custom certificate: rotate it in pillar)"
            detail = cert.get("error") or (f"ends in {cert.get('days_left')} days and was not renewed by {renewer}" if late else "")
            domain = cert.get("domain") or f"- ({cert.get('certificate')}, no route)"
            rows.append({"edge": minion, "domain": domain, "days_left": cert.get("days_left"),
                         "ok": "error" not in cert and not late, "detail": detail})  # fmt: skip
    return rows


SECTIONS = (
    ("routes", routes_section),
    ("certs", certs_section),
    ("upstreams", upstreams_section),
    ("authentik", authentik_section),
    ("nomad", nomad_section),
    ("dns", dns_section),
)


def collect(tree, call, only=None):
    """Every section's rows plus ``summary`` and ``retcode`` (0 healthy, 1 not). ``only`` narrows sections."""
    report = {}
    for name, section in SECTIONS:
        if only and name not in only:
            continue
        try:
            report[name] = section(tree, call)
        except BACKEND_ERRORS as exc:
            report[name] = [{"state": "error", "ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}]
    report["summary"] = [summary(report)]
    report["retcode"] = 0 if report["summary"][0]["healthy"] else 1
    return report


def summary(report):
    routes = report.get("routes") or []
    failing = {name: sum(1 for row in rows if row.get("ok") is False) for name, rows in report.items() if isinstance(rows, list)}
    configured = [n for n, rows in report.items() if isinstance(rows, list) and rows != NOT_CONFIGURED]
    return {
        "healthy": not any(failing.values()),
        "routes": f"{sum(1 for r in routes if r.get('ok'))}/{len(routes)} answering",
        "failing": ", ".join(f"{n}: {c}" for n, c in failing.items() if c) or "none",
        "checked": ", ".join(configured),
    }


def text_table(rows, columns=None):
    """Rows as an aligned plain-text table (for logs and docs; salt-run uses Salt's table outputter)."""
    if not rows:
        return "(none)"
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.extend("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells)
    return "\n".join(lines)


def render(report):
    """The whole report as text, section by section."""
    parts = []
    for name, rows in report.items():
        if isinstance(rows, list):
            parts.append(f"{name.upper()}\n{text_table(rows)}")
    return "\n\n".join(parts)
