"""Custom certificates without a server: compile (paths only, none in the bootstrap), the Nomad job's
read-only mount, diffs and drift by name, the alert rule, and hostile PEM values."""

import copy
import json
import os
import time

import pytest

from devstack.pillars import seed_tree
from hecatelib import schema, spec
from hecatelib.caddy import certs as caddy_certs
from hecatelib.caddy import config as caddy_config
from hecatelib.caddy import drift as caddy_drift
from tests.support.certs import CA, leaked
from tests.unit.test_nomad_templates import parsed, render, task

CERTS = "hecate:reverse_proxy:caddy:tls:certificates"


@pytest.fixture(scope="module")
def ca():
    return CA()


@pytest.fixture(scope="module")
def issued(ca):
    return ca.issue(["*.cybermonkey.dev"])


def with_certs(certificates, mode="internal"):
    raw = copy.deepcopy(seed_tree())
    raw["reverse_proxy"]["caddy"]["tls"] = {"mode": mode, "dir": "/etc/hecate/certs", "certificates": certificates}
    return raw


@pytest.fixture(scope="module")
def tree(issued):
    cert, key, _ = issued
    return schema.validate(with_certs({"wild": {"certificate": cert, "key": key}}))


def test_caddy_loads_files_by_path_and_the_key_is_not_in_the_config(tree, issued):
    _, key, fingerprint = issued
    config = caddy_config.desired_config({}, tree)
    stem = f"/etc/hecate/certs/wild-{fingerprint[:16]}"
    assert config["apps"]["tls"]["certificates"]["load_files"] == [
        {"@id": "hecate_cert_wild", "certificate": f"{stem}.crt", "key": f"{stem}.key", "format": "pem"}
    ]
    assert leaked(json.dumps(config), key) == [] and "BEGIN" not in json.dumps(config)
    # the bootstrap (a new allocation) has none: the files do not exist before the routes stage writes them
    assert "certificates" not in caddy_config.bootstrap_config(tree)["apps"].get("tls", {})


def test_others_load_files_are_kept_and_ours_leave_cleanly(tree):
    theirs = {"certificate": "/etc/other.crt", "key": "/etc/other.key"}
    live = {"apps": {"tls": {"certificates": {"load_files": [theirs]}}}}
    desired = caddy_config.desired_config(live, tree)
    assert [f.get("@id") for f in desired["apps"]["tls"]["certificates"]["load_files"]] == ["hecate_cert_wild", None]
    assert live == {"apps": {"tls": {"certificates": {"load_files": [theirs]}}}}  # pure
    without = copy.deepcopy(tree)
    without["reverse_proxy"]["caddy"]["tls"]["certificates"] = {}
    assert caddy_config.desired_config(desired, without)["apps"]["tls"]["certificates"]["load_files"] == [theirs]
    alone = caddy_config.desired_config(caddy_config.desired_config({}, tree), without)
    assert "certificates" not in alone["apps"]["tls"]


def test_a_rotation_is_one_named_change_and_drift_and_the_job_text_stay_put(tree, ca):
    cert, key, fingerprint = ca.issue(["*.cybermonkey.dev"])
    rotated = copy.deepcopy(tree)
    rotated["reverse_proxy"]["caddy"]["tls"]["certificates"]["wild"] = {"certificate": cert, "key": key}
    before, after = caddy_config.desired_config({}, tree), caddy_config.desired_config({}, rotated)
    changes = caddy_config.diff(before, after)
    assert list(changes["certificates"]["rotated"]) == ["wild"] and changes["certificates"]["rotated"]["wild"]["new"].endswith(
        f"wild-{fingerprint[:16]}.crt"
    )
    assert "server" in changes  # hecate.reconcile counts routes and server: a certificate drift is healed too
    assert caddy_drift.compare(caddy_drift.owned_part(before), after)["certificates"]["rotated"]
    assert render(rotated, "reverse-proxy") == render(tree, "reverse-proxy")  # a reload, never a redeploy
    caddy = task(parsed(tree, "reverse-proxy"), "proxy-stack", "caddy")
    assert caddy["Config"]["volumes"] == ["/etc/hecate/certs:/etc/hecate/certs:ro"]


def test_a_drift_cache_from_before_custom_certificates_still_matches():
    plain = schema.validate(seed_tree())
    config = caddy_config.desired_config({}, plain)
    assert "certificates" not in caddy_drift.owned_part(config)
    assert caddy_drift.compare(caddy_drift.owned_part(config), config) == {}


@pytest.mark.parametrize(
    ("entry", "ok"),
    [
        ({"expiring": True, "renewal_overdue": False, "managed": True}, False),  # Caddy's 12 h internal: renewed on time
        ({"expiring": True, "renewal_overdue": True, "managed": True}, True),  # ACME renewal failing
        ({"expiring": True, "renewal_overdue": False, "managed": False}, True),  # custom: nobody renews it
        ({"expiring": False, "renewal_overdue": False, "managed": False}, False),
    ],
)
def test_alert_needs_a_person_only_when_nobody_renews_in_time(entry, ok):
    assert caddy_certs.alert(entry) is ok


def test_references_are_left_to_the_ext_pillar_and_records_strip_the_key(issued):
    refs = with_certs({"wild": {"certificate": "vault:secret/tls#crt", "key": "vault:secret/tls#key"}})
    _, report = schema.check(refs)
    assert report.errors == []
    cert, key, _ = issued
    found = spec.secret_values(schema.validate(with_certs({"wild": {"certificate": cert, "key": key}})), schema.SCHEMA)
    assert [path for path, _ in found if path.startswith(CERTS)] == [f"{CERTS}:wild:key"]


@pytest.mark.parametrize(
    "value",
    [
        "-" * 1_000_000,  # 1 MB of dashes: refused in linear time, never quoted
        "-----BEGIN PRIVATE KEY-----\n" + "-----END " * 20_000,
        "secret\x00value",
        ["a", "list"],
    ],
)
def test_hostile_key_values_are_refused_quickly_and_never_echoed(issued, value):
    cert, _, _ = issued
    started = time.monotonic()
    _, report = schema.check(with_certs({"wild": {"certificate": cert, "key": value}}))
    assert time.monotonic() - started < 2
    assert [p for p, _ in report.errors] == [f"{CERTS}:wild:key"]
    text = repr(report.errors)
    assert len(text) < 400 and "secret" not in text.replace("a secret", "")


def test_a_route_not_covered_and_a_certificate_ending_soon_are_warnings(ca):
    cert, key, _ = ca.issue(["intranet.corp.example"], days=5)
    _, report = schema.check(with_certs({"corp": {"certificate": cert, "key": key}}))
    assert report.errors == []
    reasons = dict(report.warnings)
    assert "in 5.0 days" in reasons[f"{CERTS}:corp:certificate"] or "in 4.9 days" in reasons[f"{CERTS}:corp:certificate"]
    assert "covers none of the routes' domains (its names: intranet.corp.example)" in reasons[f"{CERTS}:corp"]


def test_files_are_written_once_with_their_owner_and_an_owner_that_is_no_system_account_is_refused(tmp_path, issued, monkeypatch):
    import types

    cert, key, fingerprint = issued
    # a passwd of our own: the edge minion runs as root, which may give a file to any uid
    users = {"caddy": 555, "alice": 1000, "nobody2": 65534, "toor": 0}
    monkeypatch.setattr(caddy_certs.pwd, "getpwnam", lambda name: types.SimpleNamespace(pw_uid=users[name]))
    prefix = str(tmp_path)
    (tmp_path / "etc").mkdir()  # the host's /etc: hecate makes its root, /etc/hecate, never the root's parents
    raw = with_certs({"wild": {"certificate": cert, "key": key}})
    raw["reverse_proxy"]["caddy"]["tls"].update(dir=f"{prefix}/etc/hecate/tls", owner="caddy")
    tree = schema.validate(raw, root_prefix=prefix)
    plan = caddy_certs.plan_files(tree, prefix)
    assert "BEGIN" not in repr(caddy_certs.certificates(tree, with_key=True))  # a parsed key never prints
    assert sorted(os.path.basename(p) for p in caddy_certs.write_files(plan)) == [
        f"wild-{fingerprint[:16]}.crt",
        f"wild-{fingerprint[:16]}.key",
    ]
    directory = tmp_path / "etc" / "hecate" / "tls"
    assert {(p.stat().st_uid, p.stat().st_mode & 0o777) for p in directory.glob("wild-*")} == {(555, 0o600)}
    assert (directory.stat().st_uid, directory.stat().st_mode & 0o777) == (555, 0o700)
    assert (tmp_path / "etc" / "hecate").stat().st_mode & 0o777 == 0o755  # the root: made, never changed
    again = caddy_certs.plan_files(tree, prefix)
    assert (again["write"], again["remove"], again["fix_dir"]) == ([], [], False)
    for name, reason in [
        ("no-such-user-hecate", "no user"),
        ("alice", "a person's login"),
        ("toor", "root or a base-system account"),
        ("nobody2", "nobody"),
    ]:
        tree["reverse_proxy"]["caddy"]["tls"]["owner"] = name
        with pytest.raises(caddy_certs.CertError, match=f"hecate:reverse_proxy:caddy:tls:owner: .*{reason}"):
            caddy_certs.plan_files(tree, prefix)
