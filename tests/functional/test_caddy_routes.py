"""caddy.routes_managed against a real Caddy: traffic, idempotency counted in admin mutations,
test=True, rejection and rollback."""

import copy
import json
import socket

import pytest

from tests.support.http import backend_of, get


def converge(loaders, test=False):
    return loaders.states.caddy.routes_managed(name="hecate_routes", test=test)


@pytest.fixture
def seeded(make_loaders, local_tree, caddy):
    loaders = make_loaders({"hecate": local_tree})
    result = converge(loaders)
    assert result.result is True, result.comment
    return loaders


def test_converges_from_bare_caddy_and_serves_every_seed_route(seeded, local_tree, caddy, backends):
    http_port = local_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert caddy.mutations() == [("POST", "/config/")]  # one reload for all eight routes
    for route in local_tree["reverse_proxy"]["caddy"]["routes"]:
        status, _, body = get(http_port, route["domain"])
        expected = "wazuh-https" if route["backend"].startswith("https://") else route["service"]
        assert (status, backend_of(body)) == (200, expected), route["domain"]


def test_second_run_sends_no_mutation(seeded, caddy):
    before = caddy.mutations()
    result = converge(seeded)
    assert result.result is True and result.changes == {}
    assert caddy.mutations() == before
    assert [r for r in caddy.admin_requests() if r[0] == "GET"][-1:] == [("GET", "/config/")]


def test_dry_run_leaves_config_byte_identical(seeded, local_tree, caddy, make_loaders):
    changed = copy.deepcopy(local_tree)
    changed["reverse_proxy"]["caddy"]["routes"][2]["backend"] = "127.0.0.1:1"
    loaders = make_loaders({"hecate": changed})
    before, mutations = caddy.config_bytes(), caddy.mutations()
    result = converge(loaders, test=True)
    assert result.result is None
    assert "hecate_route_grafana" in result.changes["changed"]
    assert caddy.config_bytes() == before
    assert caddy.mutations() == mutations


def test_fifty_changed_routes_cost_one_reload(caddy, make_loaders, local_tree, backends):
    plain, _ = backends
    port = plain["helen"].port
    tree = copy.deepcopy(local_tree)
    tree["reverse_proxy"]["caddy"]["routes"] = [
        {"domain": f"app{i}.cybermonkey.dev", "backend": f"127.0.0.1:{port}", "service": f"app{i}"} for i in range(50)
    ]
    assert converge(make_loaders({"hecate": tree})).result is True
    for route in tree["reverse_proxy"]["caddy"]["routes"]:
        route["profile"] = "none"
    result = converge(make_loaders({"hecate": tree}))
    assert result.result is True and len(result.changes["changed"]) == 50
    assert caddy.mutations() == [("POST", "/config/")] * 2
    assert get(tree["reverse_proxy"]["caddy"]["ports"]["http"], "app49.cybermonkey.dev", "/.env")[0] == 200  # no profile now


def test_unknown_host_gets_404_not_an_empty_200(seeded, local_tree):
    status, headers, _ = get(local_tree["reverse_proxy"]["caddy"]["ports"]["http"], "unknown.example.net")
    assert status == 404 and headers["x-hecate-route"] == "none"


def test_rejected_config_keeps_old_routes_serving(seeded, local_tree, caddy, make_loaders):
    bad = copy.deepcopy(local_tree)
    # A valid pillar Caddy cannot apply: its new HTTP port is taken (no validator can know that).
    # (A Python-only regexp used to play this part; the validator now refuses it, as Go's RE2 would.)
    taken = socket.create_server(("127.0.0.1", 0))
    bad["reverse_proxy"]["caddy"]["ports"]["http"] = taken.getsockname()[1]
    before = caddy.config_bytes()
    with taken:
        result = converge(make_loaders({"hecate": bad}))
    assert result.result is False
    assert "rejected" in result.comment and result.changes == {}
    assert caddy.config_bytes() == before
    status, _, body = get(local_tree["reverse_proxy"]["caddy"]["ports"]["http"], "cloud.cybermonkey.dev")
    assert (status, backend_of(body)) == (200, "nextcloud")


def test_failed_host_check_restores_the_snapshot(seeded, local_tree, caddy, make_loaders):
    broken = copy.deepcopy(local_tree)
    broken["reverse_proxy"]["caddy"]["routes"][3]["backend"] = "127.0.0.1:9"  # jenkins -> nothing listens
    before = json.loads(caddy.config_bytes())
    result = converge(make_loaders({"hecate": broken}))
    assert result.result is False
    assert "jenkins.cybermonkey.dev" in result.comment and "restored" in result.comment
    assert json.loads(caddy.config_bytes()) == before
    assert caddy.mutations()[-2:] == [("POST", "/config/"), ("POST", "/load")]
    status, _, body = get(local_tree["reverse_proxy"]["caddy"]["ports"]["http"], "jenkins.cybermonkey.dev")
    assert (status, backend_of(body)) == (200, "jenkins")


def test_https_backend_without_skip_verify_is_caught_and_rolled_back(seeded, local_tree, caddy, make_loaders):
    strict = copy.deepcopy(local_tree)
    wazuh = next(r for r in strict["reverse_proxy"]["caddy"]["routes"] if r["service"] == "wazuh")
    wazuh["tls_skip_verify"] = False  # the backend's certificate is self-signed: Caddy must refuse it
    result = converge(make_loaders({"hecate": strict}))
    assert result.result is False and "delphi.cybermonkey.dev" in result.comment
    status, _, body = get(local_tree["reverse_proxy"]["caddy"]["ports"]["http"], "delphi.cybermonkey.dev")
    assert (status, backend_of(body)) == (200, "wazuh-https")


def test_invalid_pillar_touches_nothing(caddy, make_loaders, local_tree):
    bad = copy.deepcopy(local_tree)
    bad["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "ftp://x"
    result = converge(make_loaders({"hecate": bad}))
    assert result.result is False
    assert "hecate:reverse_proxy:caddy:routes[0](hera.cybermonkey.dev):backend" in result.comment
    assert caddy.admin_requests() == []


def test_other_servers_are_left_alone(caddy, make_loaders, local_tree):
    foreign = {"listen": ["127.0.0.1:0"], "routes": [{"@id": "theirs", "handle": [{"handler": "static_response", "body": "x"}]}]}
    loaders = make_loaders({"hecate": local_tree})
    loaders.modules.caddy.load({"admin": {"listen": caddy.admin}, "apps": {"http": {"servers": {"other": foreign}}}})
    assert converge(loaders).result is True
    live = json.loads(caddy.config_bytes())
    assert live["apps"]["http"]["servers"]["other"] == foreign
    shrunk = copy.deepcopy(local_tree)
    del shrunk["reverse_proxy"]["caddy"]["routes"][1:]
    result = converge(make_loaders({"hecate": shrunk}))
    assert sorted(result.changes["removed"]) == sorted(
        f"hecate_route_{r['service']}" for r in local_tree["reverse_proxy"]["caddy"]["routes"][1:]
    )
    live = json.loads(caddy.config_bytes())
    assert live["apps"]["http"]["servers"]["other"] == foreign
    assert [r["@id"] for r in live["apps"]["http"]["servers"]["hecate"]["routes"]] == ["hecate_route_authentik", "hecate_catch_all"]


def test_several_backends_are_balanced(caddy, make_loaders, local_tree, backends):
    plain, _ = backends
    tree = copy.deepcopy(local_tree)
    tree["reverse_proxy"]["caddy"]["routes"] = [
        {
            "domain": "pool.cybermonkey.dev",
            "backends": [f"127.0.0.1:{plain['grafana'].port}", f"127.0.0.1:{plain['jenkins'].port}"],
            "lb_policy": "round_robin",
            "health": {"uri": "/", "interval": "1s"},
        }
    ]
    assert converge(make_loaders({"hecate": tree})).result is True
    seen = {backend_of(get(tree["reverse_proxy"]["caddy"]["ports"]["http"], "pool.cybermonkey.dev")[2]) for _ in range(6)}
    assert seen == {"grafana", "jenkins"}
