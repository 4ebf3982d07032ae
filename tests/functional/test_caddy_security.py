"""The security profile really blocks: each rule of the seed's (security) snippet proven on its own
with a request through a real Caddy (the seed's own snippet let all of these through)."""

import pytest

from tests.support.http import backend_of, get


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    import tempfile

    from saltfactories.utils.functional import Loaders

    from tests.conftest import minion_opts_for
    from tests.support.caddy import Backend, Caddy, free_port
    from tests.support.pillars import local_seed_tree

    root = tempfile.mkdtemp(prefix="hs", dir="/tmp")
    caddy = Caddy(f"{root}/c").start()
    backend = Backend("app").start()
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    services = ["authentik", "nextcloud", "grafana", "jenkins", "minio-console", "minio-api", "helen"]
    tree = local_seed_tree(dict.fromkeys(services, backend.port), backend.port, ports, caddy.admin)
    tree["reverse_proxy"]["caddy"]["routes"] = [r for r in tree["reverse_proxy"]["caddy"]["routes"] if r["service"] != "wazuh"]
    loaders = Loaders(minion_opts_for(f"{root}/m", {"hecate": tree}))
    assert loaders.states.caddy.routes_managed(name="routes").result is True
    yield ports["http"]
    loaders.reset_state()
    caddy.stop()
    backend.stop()


HOST = "observe.cybermonkey.dev"


@pytest.mark.parametrize(
    "path",
    ["/.env", "/.git/config", "/wp-admin/setup.php", "/wp-login.php", "/phpmyadmin/index.php", "/.DS_Store", "/admin/x",
     "/vendor/autoload.php", "/node_modules/x/y.js", "/dump.sql", "/site.bak", "/app.log", "/x.swp"],
)  # fmt: skip
def test_scanner_paths_get_404(proxy, path):
    assert get(proxy, HOST, path)[0] == 404


def test_rest_route_query_gets_404(proxy):
    assert get(proxy, HOST, "/?rest_route=/wp/v2/users")[0] == 404


@pytest.mark.parametrize("header", ["Cf-Worker", "Cf-Connecting-Ip", "Cf-Ray"])
def test_cloudflare_worker_headers_get_404(proxy, header):
    assert get(proxy, HOST, "/", headers={header: "x"})[0] == 404


@pytest.mark.parametrize("agent", ["Go-http-client/1.1", "sqlmap/1.7", "Mozilla/5.0 (compatible; Nikto)", "evil-crawler"])
def test_suspicious_agents_get_the_connection_closed(proxy, agent):
    with pytest.raises(ConnectionError):
        get(proxy, HOST, "/", headers={"User-Agent": agent})


def test_ordinary_requests_pass_with_the_common_headers(proxy):
    status, headers, body = get(proxy, HOST, "/dashboard", headers={"User-Agent": "Go-http-client/2.0"})
    assert status == 200 and backend_of(body) == "app"
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_responses_are_compressed(proxy, encoding):
    status, headers, _ = get(proxy, HOST, "/", headers={"Accept-Encoding": encoding})
    assert status == 200 and headers.get("content-encoding") == encoding
