"""``salt-run hecate.health``: is every route answering, through every edge, and do the backends agree?

Pure apart from ``call``: :func:`collect` asks the minions through a caller the runner provides
(``call(role, fun, *args, **kwargs) -> {minion: {"ok": bool, "ret": value}}``, ``role`` is ``edge`` or
``controller``), so the same code runs under salt-run (LocalClient) and in tests (Salt's loader). The
sections are the backends' (their ``health`` hook, in ``hecatelib.<backend>.backend``); this module only
gathers them.

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

NOT_CONFIGURED = [{"state": "not configured"}]

# What a backend raises when it cannot answer: Salt's errors (CommandExecutionError, SaltInvocationError,
# SaltClientError from LocalClient) and the transport's (OSError; requests' RequestException is one).
# Anything else is a bug in hecate and keeps its traceback.
BACKEND_ERRORS = (SaltException, OSError)


def answers(call, role, fun, *args, **kwargs):
    """``call`` wrapped: a backend or transport failure becomes one failed answer."""
    try:
        return call(role, fun, *args, **kwargs) or {}
    except BACKEND_ERRORS as exc:
        return {"?": {"ok": False, "ret": f"{type(exc).__name__}: {exc}"}}


def sections(backends):
    """``[(section, function)]`` of every backend, in run order."""
    return [pair for backend in backends for pair in backend.health]


def collect(tree, call, backends, only=None):
    """Every section's rows plus ``summary`` and ``retcode`` (0 healthy, 1 not). ``only`` narrows sections."""
    report = {}
    for name, section in sections(backends):
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
