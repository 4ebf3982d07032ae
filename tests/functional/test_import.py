"""The seed Caddyfile through the real ``caddy adapt`` into hecate pillar, then onto a real Caddy with
``caddy.routes_managed``: every site the Caddyfile serves answers through Caddy, from the right backend,
with the imported security profile really blocking."""

import copy
import re

import pytest

from devstack import SEED
from devstack.caddy import Backend
from devstack.http import backend_of, get
from hecatelib import schema
from hecatelib.caddy import caddyfile

CADDYFILE = SEED / "Caddyfile"


def live_sites(text):
    """Site addresses of the Caddyfile's uncommented site blocks (what the user's Caddy serves today)."""
    hosts = []
    for line in text.splitlines():
        match = re.match(r"^(?:https://)?([a-z0-9.-]+\.[a-z]+)\s*\{$", line.strip())
        if match and not line.startswith("#"):
            hosts.append(match.group(1))
    return hosts


@pytest.fixture(scope="module")
def seed_import():
    return caddyfile.import_file(str(CADDYFILE))


@pytest.fixture(scope="module")
def site_backends(seed_import, short_tmp):
    """One local backend per imported route; the https one (wazuh's) with a self-signed certificate."""
    started = {}
    for route in seed_import["pillar"]["hecate"]["reverse_proxy"]["caddy"]["routes"]:
        tls_dir = short_tmp / "imp-tls" if route["backend"].startswith("https://") else None
        started[route["service"]] = Backend(route["service"], tls_dir=tls_dir).start()
    yield started
    for backend in started.values():
        backend.stop()


def local_tree(imported, site_backends, caddy, ports):
    """The imported pillar with each backend moved to its local server, keeping its shape."""
    tree = copy.deepcopy(imported["pillar"]["hecate"])
    caddy_section = tree["reverse_proxy"]["caddy"]
    caddy_section.update(ports=dict(ports), admin=caddy.admin, tls={"mode": "off"}, bind=["127.0.0.1"])  # loopback only
    for route in caddy_section["routes"]:
        port = site_backends[route["service"]].port
        backend = route["backend"]
        if backend.startswith("https://"):
            route["backend"] = f"https://127.0.0.1:{port}"
        elif not backend[0].isdigit():
            route["backend"] = f"localhost:{port}"  # the seed's hostname backend keeps its shape
        else:
            route["backend"] = f"127.0.0.1:{port}"
    return tree


def test_seed_import_maps_every_live_site_and_validates(seed_import):
    routes = seed_import["pillar"]["hecate"]["reverse_proxy"]["caddy"]["routes"]
    assert [r["domain"] for r in routes] == live_sites(CADDYFILE.read_text())
    assert len(routes) == 10
    by_domain = {r["domain"]: r for r in routes}
    assert by_domain["delphi.cybermonkey.dev"]["backend"] == "https://100.88.163.85"
    assert by_domain["delphi.cybermonkey.dev"]["tls_skip_verify"] is True
    assert by_domain["hera.cybermonkey.dev"] == {
        "domain": "hera.cybermonkey.dev", "backend": "hecate-server-1:9000", "service": "authentik", "profile": "cybermonkey_common"}  # fmt: skip
    assert by_domain["observe.cybermonkey.dev"]["service"] == "grafana"
    assert by_domain["cloud.cybermonkey.dev"]["service"] == "nextcloud"
    tree, report = schema.check(seed_import["pillar"]["hecate"])
    assert report.errors == []
    assert [w[0] for w in report.warnings] == ["hecate:reverse_proxy:caddy:routes[7](delphi.cybermonkey.dev):tls_skip_verify"]
    profile = tree["reverse_proxy"]["caddy"]["profiles"]["cybermonkey_common"]
    assert profile["block_query_params"] == ["rest_route"]
    assert profile["headers"]["X-Frame-Options"] == "SAMEORIGIN"


def test_seed_import_reports_what_it_could_not_map(seed_import):
    unmapped = "\n".join(seed_import["unmapped"])
    assert "global options: log (file /var/log/caddy/access.log, json, INFO)" in unmapped
    assert "hera.cybermonkey.dev: log (file /var/log/caddy/hera-auth.log, json, DEBUG)" in unmapped
    assert "delphi.cybermonkey.dev: log (file /var/log/caddy/delphi-wazuh.log, json, DEBUG)" in unmapped
    notes = "\n".join(seed_import["notes"])
    assert "collaborate.cybermonkey.dev; persephoneapi.cybermonkey.dev): site block commented out" in notes
    assert "respond 444" in notes and "ANDs path + path_regexp" in notes
    assert seed_import["yaml"].startswith("# hecate pillar imported from")
    assert any("not formatted" in w for w in seed_import["warnings"])  # caddy's own warning is passed on


def test_imported_seed_serves_the_same_sites_through_a_real_caddy(seed_import, site_backends, caddy, caddy_ports, make_loaders):
    tree = local_tree(seed_import, site_backends, caddy, caddy_ports)
    loaders = make_loaders({"hecate": tree})
    result = loaders.states.caddy.routes_managed(name="imported")
    assert result.result is True, result.comment
    assert [m[0] for m in caddy.mutations()] == ["POST"], "one reload for the whole import"
    port = caddy_ports["http"]
    for route in tree["reverse_proxy"]["caddy"]["routes"]:
        status, headers, body = get(port, route["domain"])
        assert status == 200, route["domain"]
        assert backend_of(body) == route["service"], route["domain"]
        assert headers["x-frame-options"] == "SAMEORIGIN"
        assert headers["strict-transport-security"].startswith("max-age=31536000")
    status, headers, _ = get(port, "cloud.cybermonkey.dev", headers={"Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip"
    # the imported profile blocks what the seed's snippet only meant to block
    for path in ("/.env", "/.git/config", "/backup.sql", "/?rest_route=/wp/v2/users", "/wp-admin/x"):
        assert get(port, "observe.cybermonkey.dev", path)[0] == 404, path
    assert get(port, "observe.cybermonkey.dev", headers={"Cf-Worker": "x"})[0] == 404
    for agent in ("sqlmap/1.7", "Go-http-client/1.1"):
        with pytest.raises(ConnectionError):
            get(port, "observe.cybermonkey.dev", headers={"User-Agent": agent})
    assert get(port, "not-in-the-caddyfile.example.org")[0] == 404
    again = loaders.states.caddy.routes_managed(name="imported")
    assert again.result is True and again.changes == {}
    assert [m[0] for m in caddy.mutations()] == ["POST"], "the second run sends nothing"


def test_a_caddyfile_caddy_refuses_is_reported_with_caddys_reason(tmp_path):
    bad = tmp_path / "Caddyfile"
    bad.write_text("example.org {\n  reverse_proxy {\n    no_such_subdirective 1\n  }\n}\n")
    with pytest.raises(caddyfile.CaddyfileError, match="no_such_subdirective"):
        caddyfile.import_file(str(bad))
    with pytest.raises(caddyfile.CaddyfileError, match="no such file"):
        caddyfile.import_file(str(tmp_path / "missing"))


def test_sites_hecate_cannot_proxy_are_listed_and_the_rest_imported(tmp_path):
    source = tmp_path / "Caddyfile"
    source.write_text(
        "# Docs\ndocs.example.org {\n  root * /srv/docs\n  file_server\n}\n"
        "# API\napi.example.org {\n  reverse_proxy 10.0.0.7:8080 {\n    header_up X-Real-IP {remote_host}\n  }\n}\n"
    )
    result = caddyfile.import_file(str(source))
    routes = result["pillar"]["hecate"]["reverse_proxy"]["caddy"]["routes"]
    assert routes == [{"domain": "api.example.org", "backend": "10.0.0.7:8080", "service": "api", "profile": "none"}]
    text = "\n".join(result["unmapped"])
    assert "docs.example.org: not imported: no reverse_proxy" in text
    assert "docs.example.org: handler file_server" in text
    assert "api.example.org: reverse_proxy headers" in text
