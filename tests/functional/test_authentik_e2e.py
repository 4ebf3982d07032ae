"""End to end: pillar -> authentik.protected_routes (emulator) + caddy.routes_managed (a real Caddy) ->
traffic through Caddy's forward auth to the emulated embedded outpost -> a local backend that echoes
the request headers it got."""

import copy
import json
import subprocess

import pytest
import requests

from devstack import host
from devstack.caddy import caddy_binary
from devstack.emulators.authentik import SPEC_VERSIONS, AuthentikEmulator
from devstack.http import backend_of, get
from hecatelib import schema
from hecatelib.authentik import objects as authentik_objects
from hecatelib.caddy import config as caddy_config
from tests.conftest import assert_no_violations

TOKEN = "ak-emulator-token"
APP = "observe.cybermonkey.dev"  # the seed's grafana route, protected here


@pytest.fixture(params=SPEC_VERSIONS, ids=lambda v: f"authentik-{v}")
def ak(request):
    with AuthentikEmulator(request.param) as emu:
        yield emu
    assert_no_violations(emu)


@pytest.fixture
def stack(ak, local_tree, make_loaders, backends, caddy):
    """The seed pillar on local backends, authentik's route pointed at the emulator (the embedded outpost
    answers on authentik's own port), grafana behind ``auth: {groups: [ops]}``; both states applied."""
    tree = copy.deepcopy(local_tree)
    authentik_route = next(r for r in tree["reverse_proxy"]["caddy"]["routes"] if r["service"] == "authentik")
    authentik_route["backend"] = f"127.0.0.1:{ak.port}"
    next(r for r in tree["reverse_proxy"]["caddy"]["routes"] if r["service"] == "grafana")["auth"] = {"groups": ["ops"]}
    tree["authentik"].update({"url": ak.url, "token": TOKEN, "allow_insecure_endpoint": True})
    loaders = make_loaders({"hecate": tree})
    protect = loaders.states.authentik.protected_routes(name="protect")
    assert protect.result is True, protect.comment
    routes = loaders.states.caddy.routes_managed(name="routes")
    assert routes.result is True, routes.comment
    ak.add_user("alice", groups=["ops"])
    ak.add_user("bob")  # signed in, but not in ops
    plain, _ = backends
    return {"tree": tree, "loaders": loaders, "port": tree["reverse_proxy"]["caddy"]["ports"]["http"], "grafana": plain["grafana"]}


def seen_headers(body):
    return json.loads(body.decode().strip())["headers"]


def test_forward_auth_through_a_real_caddy_then_removing_auth_cleans_up(stack, ak, caddy, make_loaders):
    port, grafana = stack["port"], stack["grafana"]
    hits = grafana.hits

    # no session: 302 to authentik's authorize endpoint, which sends the browser on to the login flow
    status, headers, _ = get(port, APP, "/dashboards?x=1")
    provider = ak.provider_by_name("hecate-grafana")
    assert status == 302 and headers["location"].startswith(f"{ak.url}/application/o/authorize/?client_id={provider['client_id']}")
    assert grafana.hits == hits
    login = requests.get(headers["location"], allow_redirects=False, timeout=10)
    assert login.status_code == 302 and "/if/flow/default-authentication-flow/" in login.headers["location"]

    # a session of a member of ops: 200, and the backend gets the outpost's identity headers
    alice = ak.login("alice")
    status, _, body = get(port, APP, "/", headers={"Cookie": alice})
    assert status == 200 and backend_of(body) == "grafana"
    got = seen_headers(body)
    assert got["x-authentik-username"] == "alice" and got["x-authentik-groups"] == "ops"
    assert got["x-authentik-meta-app"] == "hecate-grafana" and got["x-authentik-meta-provider"] == "hecate-grafana"

    # spoofed identity headers never reach the backend, with or without a session
    spoof = {
        "Cookie": alice,
        "X-Authentik-Username": "mallory",
        "x-authentik-groups": "admins",
        "X-AUTHENTIK-UID": "0",
        "X-Authentik-Custom": "1",
        "X_Authentik_Username": "mallory",
    }
    status, _, body = get(port, APP, "/", headers=spoof)
    got = seen_headers(body)
    assert status == 200 and got["x-authentik-username"] == "alice" and got["x-authentik-groups"] == "ops"
    assert got["x-authentik-uid"] == ak.user_by_name("alice")["uid"]
    assert "mallory" not in json.dumps(got) and "x-authentik-custom" not in got
    hits = grafana.hits
    status, _, _ = get(port, APP, "/", headers={k: v for k, v in spoof.items() if k != "Cookie"})
    assert status == 302 and grafana.hits == hits

    # signed in but not in a bound group: denied, the backend never sees the request
    status, _, _ = get(port, APP, "/", headers={"Cookie": ak.login("bob")})
    assert status == 403 and grafana.hits == hits

    # the outpost's own paths go to the outpost, not through forward auth and not to the backend
    before = len(ak.requests)
    status, headers, _ = get(port, APP, "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=x")
    assert status == 302 and grafana.hits == hits
    assert [r.path for r in ak.requests[before:]] == ["/outpost.goauthentik.io/callback"]

    # an unprotected seed route is untouched
    status, _, body = get(port, "cloud.cybermonkey.dev", "/")
    assert status == 200 and backend_of(body) == "nextcloud"

    # removing auth: cleans up both sides
    tree = copy.deepcopy(stack["tree"])
    next(r for r in tree["reverse_proxy"]["caddy"]["routes"] if r["service"] == "grafana").pop("auth")
    loaders = make_loaders({"hecate": tree})  # the pillar without auth:
    protect = loaders.states.authentik.protected_routes(name="protect")
    assert protect.result is True and protect.changes["providers"] == {"deleted": ["hecate-grafana"]}
    routes = loaders.states.caddy.routes_managed(name="routes")
    assert routes.result is True and routes.changes
    assert ak.provider_by_name("hecate-grafana") is None and ak.application_by_slug("hecate-grafana") is None
    assert not ak.embedded_outpost()["providers"]
    assert b"hecate_route_grafana.outpost" not in caddy.config_bytes() and b"outpost.goauthentik.io" not in caddy.config_bytes()
    hits = grafana.hits
    status, _, body = get(port, APP, "/")
    assert status == 200 and backend_of(body) == "grafana" and grafana.hits == hits + 1

    # and both sides are converged: nothing sent on a re-run
    writes, mutations = len(ak.writes), caddy.mutations()
    assert loaders.states.authentik.protected_routes(name="protect").changes == {}
    assert loaders.states.caddy.routes_managed(name="routes").changes == {}
    assert len(ak.writes) == writes and caddy.mutations() == mutations


def test_every_outpost_form_passes_caddy_validate(tmp_path, local_tree):
    """Auth routes with an http, an https and a consul outpost, trusted_proxies and forward_domain: the
    compiled JSON is accepted by ``caddy validate``."""
    variants = {
        "http": {"outpost": {"upstream": "10.0.0.9:9000"}},
        "https": {"outpost": {"upstream": "https://outpost.example.org"}, "trusted_proxies": ["private_ranges"]},
        "consul": {"outpost": {"upstream": "consul://authentik-server"}, "mode": "forward_domain", "cookie_domain": "cybermonkey.dev"},
    }
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "d"), "XDG_CONFIG_HOME": str(tmp_path / "c"), "PATH": "/usr/bin:/bin"}
    for name, settings in variants.items():
        tree = copy.deepcopy(local_tree)
        tree["authentik"].update({"url": "https://hera.cybermonkey.dev", **settings})
        for route in tree["reverse_proxy"]["caddy"]["routes"][1:3]:
            route["auth"] = {"groups": ["ops"]}
        tree = authentik_objects.validate_tree(schema.validate(tree, root_prefix=host.PREFIX))
        config = caddy_config.desired_config({}, tree)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        done = subprocess.run([caddy_binary(), "validate", "--config", str(path)], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, (name, done.stderr[-2000:])
        assert json.dumps(config).count('"uri": "/outpost.goauthentik.io/auth/caddy"') == 2
