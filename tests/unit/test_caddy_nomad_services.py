"""authentik and helen through the Consul services of the Nomad jobs hecate deploys (issue 16 item 3), as the
seed's Caddyfile did (hecate-reverse-proxy.nomad), when the pillar gives Caddy Consul's DNS (``consul_dns``)."""

import copy

import pytest

from devstack.pillars import seed_tree
from hecatelib import schema
from hecatelib.caddy import config as caddy_config
from hecatelib.nomad import jobs as nomad_jobs
from tests.unit.test_caddy_compile import by_service, caddy_adapt, proxy_of
from tests.unit.test_nomad_templates import parsed

CONSUL_DNS = "127.0.0.1:8600"


def with_consul_dns(tree=None):
    raw = copy.deepcopy(tree or seed_tree())
    raw["reverse_proxy"]["caddy"]["consul_dns"] = CONSUL_DNS
    return schema.validate(raw)


def test_the_seed_pillar_unchanged_keeps_its_backends():
    config = caddy_config.bootstrap_config(schema.validate(seed_tree()))
    assert proxy_of(by_service(config, "authentik"))["upstreams"] == [{"dial": "hecate-server-1:9000"}]
    helen = proxy_of(by_service(config, "helen"))
    assert helen["upstreams"] == [{"dial": "100.65.138.128:8009"}] and "headers" not in helen


def test_with_consul_dns_authentik_and_helen_go_through_their_jobs_consul_services():
    config = caddy_config.bootstrap_config(with_consul_dns())
    resolver = {"addresses": [CONSUL_DNS]}
    for service, consul in (("authentik", "authentik-server"), ("helen", "helen-bridge")):
        proxy = proxy_of(by_service(config, service))
        # SRV: the jobs' ports are dynamic; the SRV targets are resolved through Consul's DNS too
        assert proxy["dynamic_upstreams"] == {"source": "srv", "name": f"{consul}.service.consul", "refresh": "5s", "resolver": resolver}
        assert proxy["transport"] == {"protocol": "http", "resolver": resolver}
    authentik, helen = proxy_of(by_service(config, "authentik")), proxy_of(by_service(config, "helen"))
    assert "headers" not in authentik and "upstreams" not in authentik  # the seed's authentik had no fallback
    assert helen["upstreams"] == [{"dial": "100.65.138.128:8009"}]  # the seed's {{ else }}: helen's own address
    assert proxy_of(by_service(config, "grafana"))["upstreams"] == [{"dial": "100.65.138.128:8069"}]  # not a Nomad job


def test_helens_headers_are_what_caddy_makes_of_the_seeds_header_up_lines():
    # the seed's own lines (hecate-reverse-proxy.nomad, the helen site block), adapted by the real Caddy
    adapted = caddy_adapt(
        "http://cybermonkey.dev {\n  reverse_proxy 10.0.0.1:8009 {\n"
        '    header_up X-Forwarded-Source "hecate-cloud"\n    header_up X-Original-Host {host}\n  }\n}\n'
    )
    theirs = adapted["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]["routes"][0]["handle"][0]
    assert proxy_of(by_service(caddy_config.bootstrap_config(with_consul_dns()), "helen"))["headers"] == theirs["headers"]


def test_helen_over_https_has_no_static_fallback():
    """The transport (TLS) is per handler: an https fallback would make Caddy speak TLS to the bridge."""
    raw = seed_tree()
    raw["reverse_proxy"]["caddy"]["routes"][-1]["backend"] = "https://helen.example.org"
    helen = proxy_of(by_service(caddy_config.bootstrap_config(with_consul_dns(raw)), "helen"))
    assert "upstreams" not in helen and "tls" not in helen["transport"]
    assert helen["dynamic_upstreams"]["name"] == "helen-bridge.service.consul"


def test_a_consul_backend_written_in_pillar_is_kept_as_written():
    raw = seed_tree()
    raw["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "consul://idp:9000"
    raw["reverse_proxy"]["caddy"]["routes"][-1]["backend"] = "consul://helen-direct:8009"
    config = caddy_config.bootstrap_config(with_consul_dns(raw))
    assert proxy_of(by_service(config, "authentik"))["dynamic_upstreams"]["name"] == "idp.service.consul"
    helen = proxy_of(by_service(config, "helen"))
    assert helen["dynamic_upstreams"]["name"] == "helen-direct.service.consul" and "headers" not in helen


def test_authentiks_route_is_found_by_hecate_authentik_service():
    raw = seed_tree()
    raw["reverse_proxy"]["caddy"]["routes"][0]["service"] = "idp"
    raw.setdefault("authentik", {})["service"] = "idp"
    config = caddy_config.bootstrap_config(with_consul_dns(raw))
    assert proxy_of(by_service(config, "idp"))["dynamic_upstreams"]["name"] == "authentik-server.service.consul"


@pytest.mark.parametrize(("outpost", "expected"), [(None, "authentik-server.service.consul"), ("10.0.0.9:9000", None)])
def test_forward_auth_reaches_the_outpost_the_way_caddy_reaches_authentik(outpost, expected):
    raw = seed_tree()
    raw["reverse_proxy"]["caddy"]["routes"][2]["auth"] = {"groups": ["admins"]}  # grafana behind authentik
    if outpost:
        raw.setdefault("authentik", {})["outpost"] = {"upstream": outpost}
    handler = caddy_config.forward_auth_handler(with_consul_dns(raw))
    if expected:
        assert handler["dynamic_upstreams"]["name"] == expected and "upstreams" not in handler
    else:
        assert handler["upstreams"] == [{"dial": outpost}] and "dynamic_upstreams" not in handler


def service_names(node):
    """Every Consul service name registered anywhere in a parsed job."""
    if isinstance(node, dict):
        names = [s["Name"] for s in node.get("Services") or []]
        return names + [n for v in node.values() for n in service_names(v)]
    if isinstance(node, list):
        return [n for v in node for n in service_names(v)]
    return []


@pytest.mark.parametrize(("job", "route"), [("authentik", "authentik"), ("helen-bridge", "helen")])
def test_the_consul_names_are_the_ones_the_rendered_jobs_register(job, route):
    assert caddy_config.NOMAD_SERVICES[route]["consul"] in service_names(parsed(with_consul_dns(), job))


def test_the_helen_bridge_still_forwards_to_helens_pillar_backend():
    """Caddy -> helen-bridge -> helen: the bridge's upstream stays the route's pillar backend (no loop)."""
    assert nomad_jobs.job_context(with_consul_dns(), "helen-bridge")["upstream"] == "100.65.138.128:8009"


def _refusals(raw):
    with pytest.raises(schema.PillarError) as caught:
        schema.validate(raw)
    return [line for line in str(caught.value).splitlines() if ":health" in line]


def test_health_on_a_route_caddy_reaches_through_consul_is_refused_with_its_key_path():
    """Issue 27: Caddy runs active health checks for static upstreams only (``doActiveHealthCheckForAllHosts``
    walks ``h.Upstreams`` in caddy's reverseproxy/healthchecks.go: "Active health checks do not run for dynamic
    upstreams"), so ``health`` on a route compiled to ``dynamic_upstreams`` did nothing, silently."""
    health = {"uri": "/health", "interval": "10s"}
    raw = copy.deepcopy(seed_tree())
    routes = raw["reverse_proxy"]["caddy"]["routes"]
    routes[1].update(backend="consul://nextcloud", health=health)
    [line] = _refusals(raw)
    assert line.strip().startswith(f"hecate:reverse_proxy:caddy:routes[1]({routes[1]['domain']}):health:"), line
    assert "consul://" in line and "no active health checks" in line and "Consul" in line

    raw = copy.deepcopy(seed_tree())  # authentik and helen go through Consul once consul_dns is set
    raw["reverse_proxy"]["caddy"]["consul_dns"] = CONSUL_DNS
    routes = raw["reverse_proxy"]["caddy"]["routes"]
    for route in routes:
        route["health"] = health
    refused = _refusals(raw)
    services = {by["service"]: by["domain"] for by in routes if by.get("service") in ("authentik", "helen")}
    assert len(refused) == 2 and all("consul_dns" in line for line in refused), refused
    assert sorted(line.split("(")[1].split(")")[0] for line in refused) == sorted(services.values())

    del raw["reverse_proxy"]["caddy"]["consul_dns"]  # static upstreams: Caddy probes them; accepted
    assert all(r["health"]["uri"] == "/health" for r in schema.validate(raw)["reverse_proxy"]["caddy"]["routes"])
