"""The security profile really blocks: each rule of the seed's (security) snippet proven on its own
with a request through a real Caddy (the seed's own snippet let all of these through)."""

import copy
import json

import pytest
from salt.exceptions import SaltInvocationError

from devstack.http import backend_of, get, serve


@pytest.fixture(scope="module")
def proxy(short_tmp):

    from devstack.caddy import Backend, Caddy, free_port
    from devstack.pillars import local_seed_tree
    from tests.conftest import loaders_for

    root = short_tmp / "security"  # short (unix socket paths) and removed with the session's temp dir
    caddy = Caddy(f"{root}/c").start()
    backend = Backend("app").start()
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    services = ["authentik", "nextcloud", "grafana", "jenkins", "minio-console", "minio-api", "helen"]
    tree = local_seed_tree(dict.fromkeys(services, backend.port), backend.port, ports, caddy.admin)
    tree["reverse_proxy"]["caddy"]["routes"] = [r for r in tree["reverse_proxy"]["caddy"]["routes"] if r["service"] != "wazuh"]
    loaders = loaders_for(f"{root}/m", {"hecate": tree})
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


# -- hostile pillar strings, host order, forward-auth headers: one real Caddy ---------------------------------
LEAKY = {
    "headers": {
        "X-Leak": "{file./etc/passwd}",
        "X-Env": "{env.HOME}",
        "X-Reflect": "{http.request.header.X-Input}",
        "X-Mixed": "a\\{b}{c}",
    },
    "block_paths": ["/{env.HOME}"],
    "block_path_regexp": "^/a{2,3}$",
    "block_user_agents": "^x{2,3}$",
}
BASIC = "Basic YWxpY2U6cGFzcw=="


class Outpost:
    """authentik's outpost as forward auth sees it: 200 + identity headers for a session cookie, else a 302
    to the login flow. It sends X-Authentik-Groups empty (a user in no group) and an Authorization header."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                signed_in = "session=ok" in (self.headers.get("Cookie") or "")
                if self.path.startswith("/outpost.goauthentik.io/auth/caddy") and not signed_in:
                    self.send_response(302)
                    self.send_header("Location", "https://auth.example.org/flows/login")
                else:
                    self.send_response(200)
                    if signed_in:
                        self.send_header("X-Authentik-Username", "alice")
                        self.send_header("X-Authentik-Groups", "")
                        self.send_header("Authorization", BASIC)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

        serve(self.server)
        self.port = self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hostile(short_tmp):
    """A wildcard listed before a protected exact host, a profile full of placeholders, through real Caddy."""

    from devstack.caddy import Backend, Caddy, free_port
    from tests.conftest import loaders_for

    root = short_tmp / "hostile"
    caddy = Caddy(f"{root}/c").start()
    wild, secret, outpost = Backend("wild").start(), Backend("secret").start(), Outpost()
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    tree = {
        "global": {"domain": "example.org"},
        "reverse_proxy": {
            "caddy": {
                "admin": caddy.admin,
                "ports": ports,
                "tls": {"mode": "off"},
                "bind": ["127.0.0.1"],
                "profiles": {"leaky": LEAKY},
                "routes": [
                    {"domain": "*.example.org", "backend": f"127.0.0.1:{wild.port}", "service": "wild", "profile": "leaky"},
                    {"domain": "secret.example.org", "backend": f"127.0.0.1:{secret.port}", "service": "secret", "profile": "none",
                     "auth": {"groups": ["admins"]}},
                ],
            }
        },
        "authentik": {"url": "https://auth.example.org", "outpost": {"upstream": f"127.0.0.1:{outpost.port}"}},
    }  # fmt: skip
    loaders = loaders_for(f"{root}/m", {"hecate": tree})
    result = loaders.states.caddy.routes_managed(name="routes")
    assert result.result is True, result.comment
    yield {"port": ports["http"], "home": str(caddy.workdir)}
    loaders.reset_state()
    caddy.stop()
    for server in (wild, secret, outpost):
        server.stop()


def test_pillar_header_values_reach_the_client_literally(hostile):
    status, headers, body = get(hostile["port"], "www.example.org", "/", headers={"X-Input": "reflected!"})
    assert status == 200 and backend_of(body) == "wild"
    assert headers["x-leak"] == "{file./etc/passwd}"  # not the file's content
    assert headers["x-env"] == "{env.HOME}"  # not Caddy's environment
    assert headers["x-reflect"] == "{http.request.header.X-Input}"  # not the request's header
    assert headers["x-mixed"] == "a\\{b}{c}"


def test_pillar_paths_are_matched_literally(hostile):
    assert get(hostile["port"], "www.example.org", "/%7Benv.HOME%7D")[0] == 404  # the literal path is blocked
    assert get(hostile["port"], "www.example.org", hostile["home"])[0] == 200  # Caddy's $HOME is not


@pytest.mark.parametrize(("path", "status"), [("/a", 200), ("/aa", 404), ("/aaa", 404), ("/aaaa", 200)])
def test_regexp_quantifiers_still_work(hostile, path, status):
    assert get(hostile["port"], "www.example.org", path)[0] == status


def test_user_agent_regexp_quantifiers_still_work(hostile):
    with pytest.raises(ConnectionError):
        get(hostile["port"], "www.example.org", "/", headers={"User-Agent": "xxx"})
    assert get(hostile["port"], "www.example.org", "/", headers={"User-Agent": "x"})[0] == 200


def test_wildcard_listed_first_never_captures_the_protected_host(hostile):
    status, headers, _ = get(hostile["port"], "secret.example.org", "/")
    assert status == 302 and headers["location"] == "https://auth.example.org/flows/login"
    status, _, body = get(hostile["port"], "other.example.org", "/")
    assert (status, backend_of(body)) == (200, "wild")


def test_forward_auth_copies_only_what_the_outpost_sent(hostile):
    forged = {"Cookie": "session=ok", "X-Authentik-Groups": "admins", "X-Authentik-Email": "boss@example.org"}
    status, _, body = get(hostile["port"], "secret.example.org", "/", headers=forged)
    seen = json.loads(body.decode().strip())
    assert status == 200 and seen["backend"] == "secret"
    assert seen["headers"]["x-authentik-username"] == "alice"
    assert "x-authentik-groups" not in seen["headers"]  # the outpost sent it empty: not set, the forged one gone
    assert "x-authentik-email" not in seen["headers"]
    assert seen["headers"]["authorization"] == BASIC  # basic-auth providers: copied from the outpost


def test_client_sent_authentik_headers_are_stripped_on_unprotected_routes(hostile):
    forged = {"X-Authentik-Username": "root", "X-Authentik-Groups": "admins", "X-Authentik-Future": "x"}
    status, _, body = get(hostile["port"], "www.example.org", "/", headers=forged)
    seen = json.loads(body.decode().strip())
    assert status == 200 and not [h for h in seen["headers"] if h.startswith("x-authentik-")]


# -- the admin API is never written off loopback or behind a route -------------------------------------------
@pytest.fixture
def admin_caddy(short_tmp):
    from devstack.caddy import Caddy

    server = Caddy(short_tmp / "ac").start()
    yield server
    server.stop()


def _loaders_for(make_loaders, admin):
    return make_loaders({"hecate": {"reverse_proxy": {"caddy": {"admin": admin}}}})


@pytest.mark.parametrize("listen", ["0.0.0.0:2999", "[::]:2999", "192.168.1.10:2019", ":2019"])
def test_load_apply_and_restore_refuse_an_admin_listener_off_loopback(admin_caddy, make_loaders, listen):
    caddy = _loaders_for(make_loaders, admin_caddy.admin).modules.caddy
    exposed = {"admin": {"listen": listen}}
    for write in (lambda: caddy.load(exposed), lambda: caddy.apply(exposed, None), lambda: caddy.restore({"config": exposed})):
        with pytest.raises(SaltInvocationError, match="admin:listen"):
            write()
    assert admin_caddy.mutations() == []


def test_write_paths_refuse_remote_admin_and_routes_to_the_admin_socket(admin_caddy, make_loaders):
    caddy = _loaders_for(make_loaders, admin_caddy.admin).modules.caddy
    proxy = {"handler": "reverse_proxy", "upstreams": [{"dial": admin_caddy.admin}]}
    to_admin = {"apps": {"http": {"servers": {"x": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [proxy]}]}}}}}
    with pytest.raises(SaltInvocationError, match="admin endpoint"):
        caddy.load(to_admin)
    with pytest.raises(SaltInvocationError, match="remote"):
        caddy.load({"admin": {"listen": admin_caddy.admin, "remote": {"listen": "0.0.0.0:2021"}}})
    route = {"@id": "hecate_route_x", "handle": [proxy]}
    with pytest.raises(SaltInvocationError, match="admin endpoint"):
        caddy.insert("apps/http/servers/x/routes/0", route)
    with pytest.raises(SaltInvocationError, match="admin endpoint"):
        caddy.patch("hecate_route_x", route)
    with pytest.raises(SaltInvocationError, match="admin block"):
        caddy.insert("admin/listen", "0.0.0.0:2019")
    assert admin_caddy.mutations() == []


def test_a_pillar_route_to_the_admin_port_is_never_served(short_tmp, make_loaders):
    from devstack.caddy import Caddy, free_port

    admin = f"127.0.0.1:{free_port()}"
    caddy = Caddy(short_tmp / "tc", admin=admin).start()
    try:
        ports = {"http": free_port(), "https": free_port(), "admin": int(admin.rpartition(":")[2])}
        route = {"domain": "www.example.org", "backend": admin, "service": "www"}
        tree = {"reverse_proxy": {"caddy": {"admin": admin, "ports": ports, "tls": {"mode": "off"}, "routes": [route]}}}
        result = make_loaders({"hecate": tree}).states.caddy.routes_managed(name="routes")
        assert result.result is False and "admin" in result.comment and result.changes == {}
        assert caddy.mutations() == []
        with pytest.raises(OSError):
            get(ports["http"], "www.example.org", "/config/")
    finally:
        caddy.stop()


def test_any_mix_of_braces_and_backslashes_reaches_the_client_unchanged(caddy, make_loaders, local_tree):
    """hecatelib.caddy.config.literal against Caddy's own replacer: 80 random strings over an alphabet of braces,
    backslashes and placeholder-ish text, each a response header value, one config, one request."""
    import random

    rng = random.Random(15)
    alphabet = ["{", "}", "\\", "env.", "HOME", "file.", "/etc/hostname", "http.request.host", ".", "a", "$", ":"]
    values = {
        f"X-P{i}": "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10))) for i in range(80)
    }  # http.client reads 100 headers at most
    tree = copy.deepcopy(local_tree)
    tree["reverse_proxy"]["caddy"]["profiles"] = {"fuzz": {"headers": values}}
    tree["reverse_proxy"]["caddy"]["routes"] = [{**tree["reverse_proxy"]["caddy"]["routes"][1], "profile": "fuzz"}]
    result = make_loaders({"hecate": tree}).states.caddy.routes_managed(name="routes")
    assert result.result is True, result.comment
    status, headers, _ = get(tree["reverse_proxy"]["caddy"]["ports"]["http"], tree["reverse_proxy"]["caddy"]["routes"][0]["domain"])
    assert status == 200
    assert {name: headers.get(name.lower()) for name in values} == values
