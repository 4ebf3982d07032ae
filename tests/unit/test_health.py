"""hecatelib.health turns a backend's failure into a report row, and lets a bug in hecate raise with its
traceback (it used to catch every exception, so a KeyError became a row that looked like an outage)."""

import copy

import pytest
import requests
from salt.exceptions import CommandExecutionError, SaltClientError

from devstack.pillars import seed_tree
from hecatelib import health as health_report
from hecatelib import schema
from hecatelib.backends import BACKENDS
from hecatelib.dns import zones as dns_zones

ZONE = "cybermonkey.dev"


@pytest.fixture(scope="module")
def tree():
    raw = copy.deepcopy(seed_tree())
    raw["dns"] = {"zone": ZONE, "token": "vault:secret/hecate/hetzner#dns", "targets": {"ipv4": ["203.0.113.7"]}}
    return schema.validate(raw)


def caller(rrsets):
    """The runner's ``call`` for ``hetzner_dns.rrsets``: answers ``rrsets``, or raises it."""

    def call(role, fun, *args, **kwargs):
        assert (role, fun, args) == ("controller", "hetzner_dns.rrsets", (ZONE,))
        if isinstance(rrsets, Exception):
            raise rrsets
        return {"ctl-1": {"ok": True, "ret": rrsets}}

    return call


@pytest.mark.parametrize(
    "error",
    [
        CommandExecutionError("hetzner_dns: 401 Unauthorized"),
        SaltClientError("the master's LocalClient could not publish"),
        requests.ConnectionError("connection refused"),
    ],
    ids=["CommandExecutionError", "SaltClientError", "requests.ConnectionError"],
)
def test_a_backend_error_is_a_report_row(tree, error):
    report = health_report.collect(tree, caller(error), BACKENDS, only=["dns"])
    (row,) = report["dns"]
    assert row["ok"] is False and row["zone"] == ZONE
    assert row["state"] == f"error: ?: {type(error).__name__}: {error}"
    assert report["retcode"] == 1 and report["summary"][0]["failing"] == "dns: 1"


def test_a_zone_that_matches_the_pillar_is_healthy(tree):
    (wanted,) = dns_zones.compile_zones(tree).values()
    rrsets = [{"name": name, "type": rtype, "ttl": want["ttl"], "records": [{"value": v} for v in want["records"]]}
              for (name, rtype), want in wanted.items()]  # fmt: skip
    report = health_report.collect(tree, caller(rrsets), BACKENDS, only=["dns"])
    assert len(report["dns"]) == len(wanted) > 0 and {row["state"] for row in report["dns"]} == {"ok"}
    assert report["retcode"] == 0


def test_routes_the_wildcard_answers_are_healthy_when_it_is(tree):
    wild = schema.validate({**copy.deepcopy(tree), "dns": {**tree["dns"], "wildcard": True}})
    seed = [{"name": "*", "type": "A", "ttl": 300, "records": [{"value": "203.0.113.7"}], "labels": {}}]
    seed += [{"name": "@", "type": "A", "ttl": 300, "records": [{"value": "203.0.113.7"}], "labels": {}}]
    ours = [{**r, "labels": dns_zones.owner_labels(wild)} for r in seed]
    report = health_report.collect(wild, caller(ours), BACKENDS, only=["dns"])
    rows = {row["name"]: row["state"] for row in report["dns"]}
    assert rows["*.cybermonkey.dev"] == "ok" and rows["cloud.cybermonkey.dev"] == "wildcard" and rows["cybermonkey.dev"] == "ok"
    assert report["retcode"] == 0
    wrong = [{**ours[0], "records": [{"value": "192.0.2.1"}]}, ours[1]]
    rows = {row["name"]: row["state"] for row in health_report.collect(wild, caller(wrong), BACKENDS, only=["dns"])["dns"]}
    assert rows["*.cybermonkey.dev"] == "differs" and rows["cloud.cybermonkey.dev"] == "wildcard not ok"
    # a wildcard someone else keeps answers nothing of hecate's: every route shows its own (missing) set
    rows = {row["name"]: row["state"] for row in health_report.collect(wild, caller(seed), BACKENDS, only=["dns"])["dns"]}
    assert rows["cloud.cybermonkey.dev"] == "missing" and "*.cybermonkey.dev" not in rows


def test_a_programming_error_keeps_its_traceback(tree):
    """An answer of the wrong shape (a record set without ``name``) is hecate's bug, not an outage."""
    with pytest.raises(KeyError, match="name"):
        health_report.collect(tree, caller([{"type": "A", "ttl": 300, "records": []}]), BACKENDS, only=["dns"])


def test_a_programming_error_in_a_caller_is_not_a_failed_answer(tree):
    with pytest.raises(TypeError):
        health_report.collect(tree, caller(TypeError("call() got an unexpected keyword argument")), BACKENDS, only=["dns"])


def _certs(found):
    def call(role, fun, *args, **kwargs):
        assert (role, fun, kwargs) == ("edge", "caddy.certs", {"warn_days": 14})
        return {"edge-1": {"ok": True, "ret": {"certificates": found, "comment": "-"}}}

    return call


@pytest.mark.parametrize(
    ("cert", "ok"),
    [
        ({"days_left": 60.0, "expiring": False, "renewal_overdue": False}, True),  # ACME, fresh
        ({"days_left": 0.4, "expiring": True, "renewal_overdue": False}, True),  # Caddy's 12 h internal cert, renewed on time
        ({"days_left": 9.5, "expiring": True, "renewal_overdue": True}, False),  # ACME, renewal failing
        ({"error": "no certificate from 127.0.0.1:443: handshake failed"}, False),
    ],
)
def test_certificates_are_flagged_only_when_renewal_is_late(tree, cert, ok):
    acme = copy.deepcopy(tree)
    acme["reverse_proxy"]["caddy"]["tls"] = {"mode": "acme"}
    report = health_report.collect(acme, _certs([{"domain": "cloud.cybermonkey.dev", **cert}]), BACKENDS, only=["certs"])
    assert [row["ok"] for row in report["certs"]] == [ok]
    assert report["retcode"] == (0 if ok else 1)


def test_no_certificates_without_tls(tree):
    plain = copy.deepcopy(tree)
    plain["reverse_proxy"]["caddy"]["tls"] = {"mode": "off"}
    assert health_report.collect(plain, _certs([]), BACKENDS, only=["certs"])["certs"] == health_report.NOT_CONFIGURED
