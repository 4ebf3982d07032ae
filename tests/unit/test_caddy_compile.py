"""Pillar -> Caddy JSON, pure: deterministic ids, backend shapes, TLS modes, ownership of config keys."""

import copy
import json

import hecate_caddy
import hecate_schema
import pytest

from tests.support.pillars import seed_tree


@pytest.fixture
def tree():
    return hecate_schema.validate(seed_tree())


def by_service(config, service):
    return hecate_caddy.owned_routes(config)[f"hecate_route_{service}"]


def proxy_of(route):
    return route["handle"][0]["routes"][-1]["handle"][-1]


def test_same_pillar_same_json(tree):
    first = json.dumps(hecate_caddy.bootstrap_config(tree), sort_keys=True)
    again = json.dumps(hecate_caddy.bootstrap_config(hecate_schema.validate(seed_tree())), sort_keys=True)
    assert first == again


def test_every_route_has_a_deterministic_id_and_the_catch_all_is_last(tree):
    server = hecate_caddy.bootstrap_config(tree)["apps"]["http"]["servers"]["hecate"]
    ids = [r["@id"] for r in server["routes"]]
    assert ids[-1] == "hecate_catch_all"
    assert ids[:-1] == [f"hecate_route_{r['service']}" for r in tree["reverse_proxy"]["caddy"]["routes"]]
    assert server["listen"] == [":443"]


def test_https_backend_becomes_host_443_with_tls_transport(tree):
    proxy = proxy_of(by_service(hecate_caddy.bootstrap_config(tree), "wazuh"))
    assert proxy["upstreams"] == [{"dial": "100.88.163.85:443"}]
    assert proxy["transport"] == {"protocol": "http", "tls": {"insecure_skip_verify": True}}


def test_plain_backend_has_no_tls_and_keeps_streams_open_across_reloads(tree):
    proxy = proxy_of(by_service(hecate_caddy.bootstrap_config(tree), "grafana"))
    assert proxy["upstreams"] == [{"dial": "100.65.138.128:8069"}]
    assert "transport" not in proxy
    assert proxy["stream_close_delay"] == "5m"


def test_consul_backends_use_dynamic_upstreams(tree):
    tree["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "consul://authentik-server:9000"
    tree["reverse_proxy"]["caddy"]["routes"][1]["backend"] = "consul://nextcloud"
    config = hecate_caddy.bootstrap_config(tree)
    assert proxy_of(by_service(config, "authentik"))["dynamic_upstreams"] == {
        "source": "a", "name": "authentik-server.service.consul", "port": "9000", "refresh": "5s"}  # fmt: skip
    assert proxy_of(by_service(config, "nextcloud"))["dynamic_upstreams"]["source"] == "srv"


def test_several_backends_get_a_policy_and_health_checks(tree):
    route = tree["reverse_proxy"]["caddy"]["routes"][2]
    route.update(backends=["10.0.0.1:80", "10.0.0.2:80"], lb_policy="least_conn", health={"uri": "/h", "interval": "10s", "timeout": "2s"})
    proxy = proxy_of(hecate_caddy.compile_route(route, tree))
    assert [u["dial"] for u in proxy["upstreams"]] == ["100.65.138.128:8069", "10.0.0.1:80", "10.0.0.2:80"]
    assert proxy["load_balancing"]["selection_policy"] == {"policy": "least_conn"}
    assert proxy["health_checks"]["active"] == {"uri": "/h", "interval": "10s", "timeout": "2s"}


def test_each_security_rule_is_its_own_route(tree):
    inner = by_service(hecate_caddy.bootstrap_config(tree), "helen")["handle"][0]["routes"]
    matchers = [list(r["match"][0]) for r in inner[:-1]]
    assert matchers == [["header_regexp"], ["header"], ["path"], ["path_regexp"], ["query"]]
    assert inner[0]["handle"] == [{"handler": "static_response", "abort": True}]  # closes, not "HTTP 444"
    assert len(inner[1]["match"]) == 3  # one matcher set per header: ORed, not ANDed


@pytest.mark.parametrize(
    ("mode", "listen", "issuer", "automatic"),
    [("acme", ":443", {"module": "acme", "email": "ops@cybermonkey.dev"}, None), ("internal", ":443", {"module": "internal"}, None),
     ("off", ":80", None, {"disable": True})],
)  # fmt: skip
def test_tls_modes(tree, mode, listen, issuer, automatic):
    tree["reverse_proxy"]["caddy"]["tls"] = {"mode": mode, "email": "ops@cybermonkey.dev"}
    config = hecate_caddy.bootstrap_config(tree)
    server = config["apps"]["http"]["servers"]["hecate"]
    assert server["listen"] == [listen]
    assert server.get("automatic_https") == automatic
    policies = config["apps"].get("tls", {}).get("automation", {}).get("policies", [])
    assert [p["issuers"][0] for p in policies] == ([issuer] if issuer else [])
    trust = config["apps"].get("pki", {}).get("certificate_authorities", {}).get("local", {}).get("install_trust")
    assert trust is (False if mode == "internal" else None)


def test_foreign_config_is_kept_and_our_tls_policy_comes_first(tree):
    foreign_policy = {"subjects": ["other.example.net"], "issuers": [{"module": "acme"}]}
    current = {
        "admin": {"listen": "127.0.0.1:2019", "config": {"persist": False}},
        "logging": {"logs": {"default": {"level": "INFO"}}},
        "apps": {"http": {"servers": {"other": {"listen": [":8443"]}}}, "tls": {"automation": {"policies": [foreign_policy]}}},
    }
    config = hecate_caddy.desired_config(current, tree)
    assert config["logging"] == current["logging"]
    assert config["admin"]["config"] == {"persist": False}
    assert config["apps"]["http"]["servers"]["other"] == {"listen": [":8443"]}
    assert config["apps"]["tls"]["automation"]["policies"][1:] == [foreign_policy]
    assert config["apps"]["tls"]["automation"]["policies"][0]["@id"] == "hecate_tls"
    assert current["apps"]["http"]["servers"].keys() == {"other"}  # the input is not mutated
    assert hecate_caddy.desired_config(config, tree) == config  # converged: a second pass changes nothing


def test_diff_names_what_changed(tree):
    live = hecate_caddy.bootstrap_config(tree)
    changed = copy.deepcopy(tree)
    changed["reverse_proxy"]["caddy"]["routes"][2]["backend"] = "10.9.9.9:80"
    del changed["reverse_proxy"]["caddy"]["routes"][3]
    changed["reverse_proxy"]["caddy"]["routes"].append(
        {**changed["reverse_proxy"]["caddy"]["routes"][0], "domain": "new.cybermonkey.dev", "service": "new"}
    )
    desired = hecate_caddy.desired_config(live, changed)
    diff = hecate_caddy.diff(live, desired)
    assert diff["changed"]["hecate_route_grafana"]["new"]["upstreams"] == ["10.9.9.9:80"]
    assert list(diff["removed"]) == ["hecate_route_jenkins"]
    assert list(diff["added"]) == ["hecate_route_new"]
    assert hecate_caddy.changed_domains(live, desired) == ["new.cybermonkey.dev", "observe.cybermonkey.dev"]


def test_bind_restricts_the_listeners(tree):
    tree["reverse_proxy"]["caddy"]["bind"] = ["127.0.0.1", "::1"]
    server = hecate_caddy.bootstrap_config(tree)["apps"]["http"]["servers"]["hecate"]
    assert server["listen"] == ["127.0.0.1:443", "[::1]:443"]


@pytest.mark.parametrize("mode", ["acme", "internal", "off"])
def test_the_live_config_is_never_modified(tree, mode):
    live = hecate_caddy.bootstrap_config(tree)
    live["apps"]["tls"]["automation"]["policies"].append({"subjects": ["other.example.net"]})
    before = json.dumps(live, sort_keys=True)
    tree["reverse_proxy"]["caddy"]["tls"] = {"mode": mode}
    tree["reverse_proxy"]["caddy"]["routes"].pop()
    desired = hecate_caddy.desired_config(live, tree)
    hecate_caddy.diff(live, desired)
    assert json.dumps(live, sort_keys=True) == before
    assert desired != live
