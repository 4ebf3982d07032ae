"""``hecatelib.report.render``: data in, one self-contained page out; every pillar and record string escaped."""

import re

from hecatelib import report

HOSTILE = '<img src=x onerror="alert(1)">'


def data(**extra):
    runs = [
        {"id": "20260102T100000.000Z-bbbbbb", "kind": "deploy", "status": "failed", "recorded_at": "2026-01-02T10:00:00Z",
         "seconds": 75.5, "deployed_by": HOSTILE, "error": f"stage routes failed: {HOSTILE}",
         "pillar": {"commit": "0123456789abcdef0123", "dirty": True}, "order": ["dns", "routes"],
         "stages": {"dns": {"ok": True, "seconds": 1.5, "changed": 2}, "routes": {"ok": False, "seconds": 3.0, "changed": 0}}},
        {"id": "20260101T100000.000Z-aaaaaa", "kind": "deploy", "status": "success", "recorded_at": "2026-01-01T10:00:00Z",
         "seconds": 4.2, "deployed_by": "ops@ctl", "pillar": {"commit": "fedcba9876543210fedc", "dirty": False},
         "stages": {"dns": {"ok": True, "seconds": 1.0, "changed": 1}, "routes": {"ok": True, "skipped": True, "seconds": 0}}},
    ]  # fmt: skip
    drift = [{"time": 1767261600, "minion": HOSTILE, "backend": "caddy", "count": 1, "action": "alert (policy alert)",
              "drift": ["changed: app.example.org"]}]  # fmt: skip
    certs = [{"edge": "edge-1", "domain": HOSTILE, "days_left": 3.5, "ok": False, "detail": "ends in 3.5 days"},
             {"edge": "edge-1", "domain": "b.example.org", "days_left": 60, "ok": True, "detail": ""}]  # fmt: skip
    return {"environment": "production", "generated_at": "2026-01-02 11:00:00 UTC", "runs": runs, "drift": drift, "certs": certs, **extra}


def test_every_string_is_escaped_and_nothing_is_loaded_or_run():
    page = report.render(data())
    assert HOSTILE not in page and "<img" not in page
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") == 4  # operator, error, drift minion, cert domain
    assert "<script" not in page.lower() and not re.search(r"<[^>]*\s(src|href)=", page)  # no script, no external asset
    assert "default-src 'none'" in page  # and the page forbids any


def test_runs_show_outcome_duration_commit_and_stage_timings():
    page = report.render(data())
    failed_row = re.search(r'<tr class="run failed">.*?</tr>', page).group(0)
    assert '<span class="outcome failed">failed</span>' in failed_row and "1 min 16 s" in failed_row
    assert "0123456789ab+dirty" in failed_row and ">2<" in failed_row  # the commit, and 2 things changed
    assert '<li class="failed">routes: failed, 3.0 s</li>' in page and '<li class="skipped">routes: skipped</li>' in page
    assert "2 run(s): 1 success, 1 failed" in page and "last success 2026-01-01T10:00:00Z (commit fedcba987654)" in page


def test_certificates_needing_attention_come_first_and_empty_sections_say_so():
    page = report.render(data())
    assert page.index("ends in 3.5 days") < page.index("b.example.org")
    assert "1 certificate(s) need attention" in page
    empty = report.render({"environment": "staging", "runs": [], "drift": [], "certs": [{"state": "not configured"}]})
    assert "No deployment recorded yet." in empty and "No drift reported." in empty
    assert "TLS is off: Caddy serves no certificate." in empty
