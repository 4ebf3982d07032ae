"""Custom certificates (``hecate:reverse_proxy:caddy:tls:certificates``) against a real Caddy: a route served
with a company CA's certificate, files 0600 in a 0700 directory, the key in no return, log, config or cache,
rotation, refusals that name the key path, test=True and a second run that write nothing, the drift beacon."""

import copy
import hashlib
import json
import logging
import os
import socket
import ssl
import stat
import sys

import pytest

from devstack import host
from devstack.caddy import free_port
from devstack.http import backend_of, get
from devstack.pillars import local_seed_tree
from hecatelib import paths, schema, spec
from tests.support.certs import CA, leaked

CUSTOM = "cloud.cybermonkey.dev"  # the seed route the company certificate covers
KEY_PATH = "hecate:reverse_proxy:caddy:tls:certificates:corp:key"


@pytest.fixture(scope="module")
def ca():
    return CA()


@pytest.fixture
def cert_dir():
    """The certificate directory, below the scratch host's /etc/hecate; hecate makes it."""
    return host.below("etc", "tls", make=False)


@pytest.fixture
def issued(ca):
    return ca.issue([CUSTOM])


@pytest.fixture
def tree(caddy, backends, cert_dir, issued):
    """The seed pillar on this test's Caddy, tls internal, with the company certificate ``corp`` for CUSTOM."""
    plain, secure = backends
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    tree = local_seed_tree({k: b.port for k, b in plain.items()}, secure.port, ports, caddy.admin, tls_mode="internal")
    cert, key, _ = issued
    tree["reverse_proxy"]["caddy"]["tls"].update(dir=str(cert_dir), certificates={"corp": {"certificate": cert, "key": key}})
    return tree


def with_cert(tree, cert, key):
    changed = copy.deepcopy(tree)
    changed["reverse_proxy"]["caddy"]["tls"]["certificates"]["corp"] = {"certificate": cert, "key": key}
    return changed


def converge(loaders, test=False):
    return loaders.states.caddy.routes_managed(name="hecate_routes", test=test)


def shown(result):
    """What a state run shows: its name, changes and comment."""
    return json.dumps({"name": result.name, "changes": result.changes, "comment": result.comment}, default=str)


def served_fingerprint(tree, host):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", tree["reverse_proxy"]["caddy"]["ports"]["https"]), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def files_of(cert_dir):
    """The certificate files (not hecate's mark that it made the directory) with mode, inode, mtime."""
    return {
        p.name: (stat.S_IMODE(p.stat().st_mode), p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(cert_dir.iterdir())
        if p.name != paths.MARK
    }


def test_route_is_served_with_the_custom_certificate_and_the_key_stays_in_its_file(make_loaders, tree, caddy, ca, issued, cert_dir, caplog):
    _, key, fingerprint = issued
    loaders = make_loaders({"hecate": tree})
    with caplog.at_level(logging.DEBUG):
        result = converge(loaders)
    assert result.result is True, result.comment
    https = tree["reverse_proxy"]["caddy"]["ports"]["https"]
    # the company CA verifies the chain and the name: Caddy serves the pillar's certificate for this host
    status, _, body = get(https, CUSTOM, tls_ca=ca.pem)
    assert (status, backend_of(body)) == (200, "nextcloud")
    assert served_fingerprint(tree, CUSTOM) == fingerprint
    # ... and its own internal ones for the others (no ACME, no internal certificate for CUSTOM)
    found = {c["domain"]: c for c in loaders.modules.caddy.certs()["certificates"]}
    assert found[CUSTOM]["certificate"] == "corp" and found[CUSTOM]["managed"] is False
    assert "hecate test company CA" in found[CUSTOM]["issuer"] and found[CUSTOM]["days_left"] > 80
    skipped = [json.loads(line) for line in caddy.log_path.read_text().splitlines() if "matching certificates are already loaded" in line]
    assert [entry["domain"] for entry in skipped] == [CUSTOM]  # Caddy's automatic HTTPS leaves the loaded one alone
    assert found["observe.cybermonkey.dev"]["managed"] is True and "Caddy Local Authority" in found["observe.cybermonkey.dev"]["issuer"]

    assert stat.S_IMODE(cert_dir.stat().st_mode) == 0o700 and (cert_dir / paths.MARK).is_file()  # made and marked by hecate
    names = {f"corp-{fingerprint[:16]}.crt", f"corp-{fingerprint[:16]}.key"}
    assert {name: mode for name, (mode, *_) in files_of(cert_dir).items()} == dict.fromkeys(names, 0o600)
    assert (cert_dir / f"corp-{fingerprint[:16]}.key").read_text() == key.strip() + "\n"
    assert result.changes["certificate files"]["written"] == [str(cert_dir / n) for n in sorted(names, key=lambda n: n.endswith(".key"))]

    config = caddy.config_bytes().decode()
    assert str(cert_dir / f"corp-{fingerprint[:16]}.key") in config  # Caddy loads the file ...
    places = {
        "state return": shown(result),
        "logs": caplog.text + (pathlib_text(loaders.opts["log_file"])),
        "Caddy's config": config,
        "Caddy's autosave": (caddy.workdir / "config" / "caddy" / "autosave.json").read_text(),
        "drift cache": pathlib_text(os.path.join(loaders.opts["cachedir"], "hecate", "caddy-applied.json")),
        "caddy.plan / caddy.config": json.dumps([loaders.modules.caddy.plan(), loaders.modules.caddy.config()]),
    }
    assert caplog.records and "corp-" in places["drift cache"]  # the search is not vacuous ...
    assert leaked((cert_dir / f"corp-{fingerprint[:16]}.key").read_text(), key)  # ... and finds a key where it is
    assert {where: leaked(text, key) for where, text in places.items() if leaked(text, key)} == {}  # ... never its content


def pathlib_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def test_second_run_and_test_mode_write_nothing(make_loaders, tree, caddy, cert_dir, ca):
    loaders = make_loaders({"hecate": tree})
    dry = converge(loaders, test=True)
    assert dry.result is None and "certificate files" in dry.changes
    assert not cert_dir.exists() and caddy.mutations() == []  # test=True on a bare Caddy: nothing written anywhere
    assert converge(loaders).result is True
    before, mutations = files_of(cert_dir), caddy.mutations()
    again = converge(make_loaders({"hecate": tree}))
    assert again.result is True and again.changes == {}, again.changes
    assert files_of(cert_dir) == before and caddy.mutations() == mutations  # same inodes, same mtimes, no reload

    new_cert, new_key, _ = ca.issue([CUSTOM])
    rotate = converge(make_loaders({"hecate": with_cert(tree, new_cert, new_key)}), test=True)
    assert rotate.result is None and list(rotate.changes["certificates"]["rotated"]) == ["corp"]
    assert leaked(shown(rotate), new_key) == []
    assert files_of(cert_dir) == before and caddy.mutations() == mutations


def test_rotation_reloads_and_serves_the_new_certificate(make_loaders, tree, caddy, cert_dir, ca, issued):
    assert converge(make_loaders({"hecate": tree})).result is True
    caddy.mark()
    new_cert, new_key, new_fingerprint = ca.issue([CUSTOM], days=200)
    result = converge(make_loaders({"hecate": with_cert(tree, new_cert, new_key)}))
    assert result.result is True, result.comment
    old = issued[2][:16]
    assert result.changes["certificates"]["rotated"]["corp"] == {
        "old": str(cert_dir / f"corp-{old}.crt"),
        "new": str(cert_dir / f"corp-{new_fingerprint[:16]}.crt"),
    }
    assert caddy.new_mutations() == [("POST", "/config/")]  # one reload
    assert served_fingerprint(tree, CUSTOM) == new_fingerprint
    assert sorted(files_of(cert_dir)) == [f"corp-{new_fingerprint[:16]}.crt", f"corp-{new_fingerprint[:16]}.key"]  # old pair removed
    assert sorted(result.changes["certificate files"]["removed"]) == [str(cert_dir / f"corp-{old}.crt"), str(cert_dir / f"corp-{old}.key")]
    assert leaked(shown(result), new_key) == []


@pytest.mark.parametrize(
    ("bad_key", "reason"),
    [
        ("other", "does not match the certificate"),
        ("-----BEGIN PRIVATE KEY-----\nTUlJQmtqQ0NBVGFnQXdJQkFnSVVmb28=\n-----END PRIVATE KEY-----\n", "is not a PEM private key"),
        ("hunter2-not-a-pem-secret-value", "is not PEM text"),
        ("vault:secret/hecate/tls#key", "reference that was not resolved"),
    ],
)
def test_a_bad_key_is_refused_naming_its_path_and_nothing_is_written(make_loaders, tree, caddy, cert_dir, ca, issued, bad_key, reason):
    key = ca.issue([CUSTOM])[1] if bad_key == "other" else bad_key
    result = converge(make_loaders({"hecate": with_cert(tree, issued[0], key)}))
    assert result.result is False and KEY_PATH in result.comment and reason in result.comment, result.comment
    assert "value not shown" in result.comment or "vault:" in bad_key
    text = shown(result)
    assert leaked(text, key) == [] and ("hunter2" not in text)
    assert caddy.mutations() == [] and not cert_dir.exists()


def test_validation_shows_expiry_and_refuses_a_bad_certificate(tree, ca):
    cert, key, _ = ca.issue([CUSTOM], days=3)
    _, report = schema.check(with_cert(tree, cert, key), root_prefix=host.PREFIX)
    assert report.errors == []
    assert any(p.endswith("corp:certificate") and "in 3.0 days" in r for p, r in report.warnings), report.warnings
    _, report = schema.check(with_cert(tree, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", key), root_prefix=host.PREFIX)
    assert report.errors == [("hecate:reverse_proxy:caddy:tls:certificates:corp:certificate", "is not a PEM certificate Caddy can load")]
    off = with_cert(tree, cert, key)
    off["reverse_proxy"]["caddy"]["tls"]["mode"] = "off"
    assert [p for p, _ in schema.check(off, root_prefix=host.PREFIX)[1].errors] == ["hecate:reverse_proxy:caddy:tls:certificates"]
    stripped = spec.without_secrets(schema.validate(tree, root_prefix=host.PREFIX), schema.SCHEMA)  # what records keep
    assert stripped["reverse_proxy"]["caddy"]["tls"]["certificates"]["corp"].keys() == {"certificate"}


def test_a_failed_write_keeps_the_previous_files_and_config(make_loaders, tree, caddy, cert_dir, ca, issued):
    assert converge(make_loaders({"hecate": tree})).result is True
    before, config = files_of(cert_dir), caddy.config_bytes()
    blocked = cert_dir.parent / f"{cert_dir.name}-file"
    blocked.write_text("a file where the new directory should be")
    moved = with_cert(tree, *ca.issue([CUSTOM])[:2])
    moved["reverse_proxy"]["caddy"]["tls"]["dir"] = str(blocked)
    result = converge(make_loaders({"hecate": moved}))
    assert result.result is False and "nothing was changed" in result.comment and "not a directory" in result.comment, result.comment
    assert caddy.config_bytes() == config and files_of(cert_dir) == before
    assert served_fingerprint(tree, CUSTOM) == issued[2]


def test_state_engine_applies_hecate_routes_with_the_certificate(make_loaders, tree, cert_dir, ca, issued):
    loaders = make_loaders({"hecate": tree})
    first = loaders.modules.state.sls("hecate.routes")
    assert [r.result for r in first] == [True] and "certificate files" in first[0].changes
    assert served_fingerprint(tree, CUSTOM) == issued[2]
    assert get(tree["reverse_proxy"]["caddy"]["ports"]["https"], CUSTOM, tls_ca=ca.pem)[0] == 200
    second = loaders.modules.state.sls("hecate.routes")
    assert [r.changes for r in second] == [{}]


@pytest.fixture
def beacon(make_beacon):
    """``beacon(tree)``: the hecate_drift beacon over a minion whose pillar is ``tree``."""
    return make_beacon


def test_beacon_flags_a_custom_certificate_that_ends_in_two_days_once_an_hour(beacon, tree, caddy, ca):
    cert, key, _ = ca.issue([CUSTOM], days=2)
    run = beacon(with_cert(tree, cert, key))
    module = sys.modules[run.__module__]
    module._CERTS.clear()
    assert converge(run.loaders).result is True
    caddy.mark()
    before = len(caddy.admin_requests())
    run([{"interval": 60}])
    assert len(run.events) == 1, run.events
    tag, data = run.events[0]
    assert tag == f"hecate/certs/{run.loaders.opts['id']}/expiring"
    assert [(c["domain"], c["certificate"], c["managed"]) for c in data["certificates"]] == [(CUSTOM, "corp", False)]
    assert 1.5 < data["certificates"][0]["days_left"] <= 2
    for _ in range(2):  # within the hour: no certificate check, one GET per interval, nothing fired again
        run([{"interval": 60}])
    assert caddy.admin_requests()[before:] == [("GET", "/config/")] * 3 and caddy.new_mutations() == []
    assert len(run.events) == 1
    # Caddy's own internal certificates (12 h, renewed on time) are never flagged
    assert all(c["certificate"] == "corp" for c in data["certificates"])
