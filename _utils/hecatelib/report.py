"""``salt-run hecate.report``: one self-contained HTML page of what happened, for an operator to open.

:func:`render` is pure: data in, HTML out (no I/O, no clock). The page has no script and loads nothing:
its styles are inline and its Content-Security-Policy (``default-src 'none'``) forbids any script, image,
font or request, so it opens the same from a laptop, a mail attachment or an air-gapped box. Every string
that comes from a record, a drift report or a certificate row (pillar data, error messages, hostnames) is
HTML-escaped: a hostile value shows as text, never as markup.

Sections:

- runs: every deployment record (newest first) with its outcome, duration, pillar commit and operator;
- stages: each run's stages as a bar of its timings (a failed stage red, a skipped one grey);
- drift: the drift reports kept in Consul (``hecate/drift``), per day and one row per report;
- certificates: each host's certificate on each edge, soonest end first (the health hook's rows).
"""

import datetime
import html

OUTCOMES = ("success", "failed", "interrupted", "running")
MAX_TEXT = 300  # characters of an error or a drift summary shown in a cell (the record keeps all of it)


def esc(value):
    """Any value as HTML text: escaped, quotes too (it may land in an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def _short(value, limit=MAX_TEXT):
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _seconds(value):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s"


def _commit(record):
    pillar = record.get("pillar")
    if not isinstance(pillar, dict) or not pillar.get("commit"):
        return "-"
    return str(pillar["commit"])[:12] + ("+dirty" if pillar.get("dirty") else "")


def _outcome(status):
    status = str(status or "unknown")
    css = status if status in OUTCOMES else "unknown"
    return f'<span class="outcome {css}">{esc(status)}</span>'


def _stage_order(record):
    stages = record.get("stages") if isinstance(record.get("stages"), dict) else {}
    order = [n for n in record.get("order") or [] if n in stages] or list(stages)
    return [(name, stages[name]) for name in order if isinstance(stages[name], dict)]


def _changed(record):
    return sum(s.get("changed") or 0 for _, s in _stage_order(record) if isinstance(s.get("changed"), int))


def _head(*names):
    return "<tr>" + "".join(f"<th>{esc(name)}</th>" for name in names) + "</tr>"


# -- sections -------------------------------------------------------------------------------------------
def runs_table(runs):
    if not runs:
        return '<p class="empty">No deployment recorded yet.</p>'
    rows = []
    for record in runs:
        rows.append(
            f'<tr class="run {esc(record.get("status"))}"><td>{esc(record.get("recorded_at"))}</td>'
            f"<td><code>{esc(record.get('id'))}</code></td><td>{esc(record.get('kind'))}</td>"
            f"<td>{_outcome(record.get('status'))}</td><td class=num>{esc(_seconds(record.get('seconds')))}</td>"
            f"<td><code>{esc(_commit(record))}</code></td><td>{esc(record.get('deployed_by'))}</td>"
            f"<td class=num>{_changed(record)}</td><td class=error>{esc(_short(record.get('error')))}</td></tr>"
        )
    head = _head("recorded", "run", "kind", "outcome", "duration", "commit", "by", "changed", "error")
    return f'<table id="runs"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def stage_bars(runs):
    """One bar per run, its stages side by side, as wide as their share of the slowest run's time."""
    timed = [(r, _stage_order(r)) for r in runs if _stage_order(r)]
    if not timed:
        return '<p class="empty">No stage timings recorded yet.</p>'
    longest = max(sum(_number(s.get("seconds")) for _, s in stages) for _, stages in timed) or 1
    rows = []
    for record, stages in timed:
        parts, legend = [], []
        for name, stage in stages:
            seconds = _number(stage.get("seconds"))
            state = "skipped" if stage.get("skipped") else "ok" if stage.get("ok") else "failed"
            width = max(0.5, 100 * seconds / longest)
            label = f"{name}: skipped" if state == "skipped" else f"{name}: {state}, {_seconds(seconds)}"
            parts.append(f'<span class="seg {state}" style="width:{width:.2f}%" title="{esc(label)}"></span>')
            legend.append(f'<li class="{state}">{esc(label)}</li>')
        rows.append(
            f'<div class="timing"><div class="who">{_outcome(record.get("status"))} <code>{esc(record.get("id"))}</code></div>'
            f'<div class="bar">{"".join(parts)}</div><ul class="legend">{"".join(legend)}</ul></div>'
        )
    return '<p class="note">A skipped stage\'s dry run found nothing to change.</p>' + "".join(rows)


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0


def _when(report):
    moment = report.get("time")
    if isinstance(moment, (int, float)) and not isinstance(moment, bool):
        return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
    return None


def _drift_detail(drift):
    """A drift report's ``drift`` in one line: the lines a dry run summarised, counts per stage, or a diff."""
    if isinstance(drift, list):
        return "; ".join(map(str, drift))
    if isinstance(drift, dict):
        return "; ".join(f"{k}: {_short(v if not isinstance(v, (dict, list)) else len(v), 80)}" for k, v in drift.items() if k != "count")
    return "" if drift is None else str(drift)


def drift_section(reports):
    if not reports:
        return '<p class="empty">No drift reported.</p>'
    dated = [(r, _when(r)) for r in reports]
    per_day = {}
    for _, moment in dated:
        if moment:
            day = moment.date().isoformat()
            per_day[day] = per_day.get(day, 0) + 1
    chart = _day_chart(per_day)
    rows = []
    for report, moment in sorted(
        dated, key=lambda pair: pair[1] or datetime.datetime.min.replace(tzinfo=datetime.timezone.utc), reverse=True
    ):
        rows.append(
            f"<tr><td>{esc(moment.strftime('%Y-%m-%d %H:%M:%S') if moment else '-')}</td><td>{esc(report.get('minion'))}</td>"
            f"<td>{esc(report.get('backend'))}</td><td class=num>{esc(report.get('count'))}</td><td>{esc(report.get('action'))}</td>"
            f"<td>{esc(_short(_drift_detail(report.get('drift'))))}</td></tr>"
        )
    head = _head("time (UTC)", "minion", "backend", "changes", "action", "what drifted")
    return f'{chart}<table id="drift"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _day_chart(per_day):
    """Drift reports per day as an inline SVG bar chart (no script, no external asset)."""
    if not per_day:
        return ""
    days = sorted(per_day)
    top = max(per_day.values())
    width, height, gap = 24, 80, 6
    bars = []
    for i, day in enumerate(days):
        h = max(2, height * per_day[day] / top)
        x = i * (width + gap)
        bars.append(
            f"<g><title>{esc(day)}: {per_day[day]} report(s)</title>"
            f'<rect x="{x}" y="{height - h:.1f}" width="{width}" height="{h:.1f}" class="drift-bar"/>'
            f'<text x="{x + width / 2}" y="{height + 12}" text-anchor="middle">{esc(day[5:])}</text></g>'
        )
    total_width = len(days) * (width + gap)
    return (
        f'<svg class="chart" role="img" aria-label="drift reports per day" width="{total_width}" height="{height + 16}" '
        f'viewBox="0 0 {total_width} {height + 16}">{"".join(bars)}</svg>'
    )


def certs_table(rows):
    if not rows:
        return '<p class="empty">No certificate was reported.</p>'
    if all(row.get("state") == "not configured" for row in rows):
        return '<p class="empty">TLS is off: Caddy serves no certificate.</p>'
    shown = []

    def soonest(row):
        days = row.get("days_left")
        return (row.get("ok") is not False, days if isinstance(days, (int, float)) else float("inf"))

    for row in sorted(rows, key=soonest):
        ok = row.get("ok") is not False
        days = row.get("days_left")
        shown.append(
            f'<tr class="{"ok" if ok else "alert"}"><td>{esc(row.get("edge", "-"))}</td><td>{esc(row.get("domain", "-"))}</td>'
            f"<td class=num>{esc('-' if days is None else days)}</td><td>{'ok' if ok else 'needs attention'}</td>"
            f"<td>{esc(_short(row.get('detail')))}</td></tr>"
        )
    head = _head("edge", "domain", "days left", "state", "detail")
    return f'<table id="certs"><thead>{head}</thead><tbody>{"".join(shown)}</tbody></table>'


def summary(runs, drift, certs):
    counts = {status: sum(1 for r in runs if r.get("status") == status) for status in OUTCOMES}
    last_success = next((r for r in runs if r.get("status") == "success"), None)
    alerts = sum(1 for row in certs if row.get("ok") is False)
    items = [f"{len(runs)} run(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) if runs else "no runs recorded"]
    if last_success:
        items.append(f"last success {last_success.get('recorded_at')} (commit {_commit(last_success)})")
    items.append(f"{len(drift)} drift report(s)")
    items.append(f"{alerts} certificate(s) need attention" if alerts else "no certificate needs attention")
    return "<ul id=summary>" + "".join(f"<li>{esc(item)}</li>" for item in items) + "</ul>"


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d232b;background:#fafbfc}
h1{font-size:1.5em;margin:0 0 .2em} h2{margin-top:2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6} td.num{text-align:right;white-space:nowrap} td.error{color:#8a1c1c;max-width:40em;overflow-wrap:anywhere}
code{font-size:.9em}.empty{color:#57606a;font-style:italic}
.outcome{display:inline-block;padding:0 .5em;border-radius:3px;font-weight:600}
.outcome.success{background:#dafbe1;color:#116329}.outcome.failed{background:#ffd8d3;color:#a40e26}
.outcome.interrupted{background:#fff1c2;color:#7d4e00}.outcome.running{background:#ddf4ff;color:#0a3069}
.outcome.unknown{background:#eaeef2}
tr.run.failed td{background:#fff5f4} tr.alert td{background:#fff5f4}
.timing{margin:.6em 0}.who{margin-bottom:.2em}.bar{display:flex;height:14px;background:#eaeef2;border-radius:3px;overflow:hidden}
.seg{display:block;height:100%;border-right:1px solid #fff}
.seg.ok{background:#2da44e}.seg.failed{background:#cf222e}.seg.skipped{background:#8c959f}
.legend{list-style:none;margin:.2em 0;padding:0;font-size:.85em;color:#57606a}.legend li{display:inline;margin-right:1.2em}
.legend li.failed{color:#a40e26;font-weight:600}
.note{color:#57606a;font-size:.85em}
.chart text{font-size:9px;fill:#57606a}.drift-bar{fill:#bf8700}
"""


def render(data):
    """The whole page. ``data``: ``environment``, ``generated_at`` (text), ``runs`` (deployment records,
    newest first), ``drift`` (drift reports), ``certs`` (the health hook's certificate rows)."""
    runs, drift, certs = data.get("runs") or [], data.get("drift") or [], data.get("certs") or []
    environment = data.get("environment") or "-"
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>hecate: {esc(environment)}</title><style>{STYLE}</style></head><body>"
        f"<h1>hecate: {esc(environment)}</h1><p>generated {esc(data.get('generated_at'))}</p>"
        f"{summary(runs, drift, certs)}"
        f"<h2>Runs</h2>{runs_table(runs)}"
        f"<h2>Stage timings</h2>{stage_bars(runs)}"
        f"<h2>Drift</h2>{drift_section(drift)}"
        f"<h2>Certificates</h2>{certs_table(certs)}"
        "</body></html>\n"
    )
