"""A real Caddy reaches authentik and helen through the Consul services of their Nomad jobs (issue 16 item
3), found with a local stand-in for Consul's DNS interface that answers as Consul does for a Nomad service
with a dynamic port: SRV ``<service>.service.consul`` -> ``<node>.node.dc1.consul:<port>``, A for the node."""

import copy
import json

import pytest

from devstack.caddy import Backend
from devstack.emulators.authentik import SPEC_VERSIONS, AuthentikEmulator
from devstack.http import backend_of, get
from tests.conftest import assert_no_violations
from tests.support.consul_dns import SRV, A, ConsulDns


@pytest.fixture
def direct():
    """What the seed pillar's own authentik/helen backends stand for here: reached only without Consul."""
    server = Backend("direct").start()
    yield server
    server.stop()


@pytest.fixture
def consul_dns(backends):
    plain, _ = backends
    dns = ConsulDns(
        {
            "authentik-server": ("hecate-production-app-1", plain["authentik"].port),
            "helen-bridge": ("hecate-production-edge-1", plain["helen"].port),
        }
    )
    yield dns
    dns.stop()


def test_authentik_and_helen_answer_through_their_consul_services(caddy, make_loaders, local_tree, direct, consul_dns):
    tree = copy.deepcopy(local_tree)
    caddy_pillar = tree["reverse_proxy"]["caddy"]
    caddy_pillar["consul_dns"] = consul_dns.address
    for route in caddy_pillar["routes"]:
        if route["service"] in ("authentik", "helen"):
            route["backend"] = f"127.0.0.1:{direct.port}"  # the pillar's direct address: not what Caddy dials
    loaders = make_loaders({"hecate": tree})
    plan = loaders.states.caddy.routes_managed(name="hecate_routes", test=True)
    assert plan.result is None and caddy.mutations() == []  # test=True: the plan, nothing written
    assert plan.changes["added"]["hecate_route_helen"]["upstreams"] == ["srv:helen-bridge.service.consul", f"127.0.0.1:{direct.port}"]
    assert plan.changes["added"]["hecate_route_authentik"]["upstreams"] == ["srv:authentik-server.service.consul"]
    result = loaders.states.caddy.routes_managed(name="hecate_routes")
    assert result.result is True, result.comment
    port = caddy_pillar["ports"]["http"]

    status, _, body = get(port, "hera.cybermonkey.dev")
    assert (status, backend_of(body)) == (200, "authentik")
    status, _, body = get(port, "cybermonkey.dev", headers={"X-Forwarded-Source": "client", "X-Original-Host": "forged"})
    assert (status, backend_of(body)) == (200, "helen")
    seen = json.loads(body.decode())["headers"]
    # the seed's header_up lines: a constant, and the Host the client asked for (client values replaced)
    assert (seen["x-forwarded-source"], seen["x-original-host"]) == ("hecate-cloud", "cybermonkey.dev")
    assert direct.hits == 0
    assert backend_of(get(port, "observe.cybermonkey.dev")[2]) == "grafana"  # not a Nomad job: its pillar backend

    # Caddy asked the pillar's Consul DNS for the services (SRV) and for the nodes they run on (A)
    for name, qtype in [
        ("authentik-server.service.consul", SRV),
        ("helen-bridge.service.consul", SRV),
        ("hecate-production-app-1.node.dc1.consul", A),
        ("hecate-production-edge-1.node.dc1.consul", A),
    ]:
        assert (name, qtype) in consul_dns.queries

    mutations = caddy.mutations()
    again = loaders.states.caddy.routes_managed(name="hecate_routes")
    assert again.result is True and again.changes == {}
    assert caddy.mutations() == mutations  # the second run writes nothing


def test_helen_falls_back_to_its_own_address_when_the_bridge_is_not_in_consul(caddy, make_loaders, local_tree, backends, direct):
    """The seed's ``{{ range service "helen-bridge" }} ... {{ else }} to 100.65.138.128:8009``: Consul knows no
    helen-bridge (NXDOMAIN), Caddy falls back to the route's pillar backend, headers included."""
    plain, _ = backends
    dns = ConsulDns({"authentik-server": ("hecate-production-app-1", plain["authentik"].port)})
    try:
        tree = copy.deepcopy(local_tree)
        caddy_pillar = tree["reverse_proxy"]["caddy"]
        caddy_pillar["consul_dns"] = dns.address
        next(r for r in caddy_pillar["routes"] if r["service"] == "helen")["backend"] = f"127.0.0.1:{direct.port}"
        result = make_loaders({"hecate": tree}).states.caddy.routes_managed(name="hecate_routes")
        assert result.result is True, result.comment
        status, _, body = get(caddy_pillar["ports"]["http"], "cybermonkey.dev")
        assert (status, backend_of(body)) == (200, "direct")
        assert json.loads(body.decode())["headers"]["x-forwarded-source"] == "hecate-cloud"
        assert ("helen-bridge.service.consul", SRV) in dns.queries  # asked Consul first
    finally:
        dns.stop()


def test_forward_auth_reaches_authentiks_outpost_through_consul(caddy, make_loaders, local_tree, backends, direct):
    """No ``outpost.upstream``: Caddy asks the outpost where it reaches authentik, ``authentik-server`` in
    Consul, not the route's pillar backend (a server that is not authentik)."""
    plain, _ = backends
    with AuthentikEmulator(SPEC_VERSIONS[-1]) as ak:
        dns = ConsulDns({"authentik-server": ("hecate-production-app-1", ak.port)})
        try:
            tree = copy.deepcopy(local_tree)
            caddy_pillar = tree["reverse_proxy"]["caddy"]
            caddy_pillar["consul_dns"] = dns.address
            routes = {r["service"]: r for r in caddy_pillar["routes"]}
            routes["authentik"]["backend"] = f"127.0.0.1:{direct.port}"
            routes["grafana"]["auth"] = {"groups": ["ops"]}
            tree["authentik"].update({"url": ak.url, "token": "ak-emulator-token", "allow_insecure_endpoint": True})
            loaders = make_loaders({"hecate": tree})
            assert loaders.states.authentik.protected_routes(name="protect").result is True
            result = loaders.states.caddy.routes_managed(name="routes")
            assert result.result is True, result.comment
            ak.add_user("alice", groups=["ops"])
            port = caddy_pillar["ports"]["http"]

            status, headers, _ = get(port, "observe.cybermonkey.dev")  # no session: the outpost sends to sign-in
            assert status == 302 and headers["location"].startswith(f"{ak.url}/application/o/authorize/")
            status, _, body = get(port, "observe.cybermonkey.dev", headers={"Cookie": ak.login("alice")})
            assert (status, backend_of(body)) == (200, "grafana")
            assert json.loads(body.decode())["headers"]["x-authentik-username"] == "alice"
            assert direct.hits == 0 and plain["grafana"].hits
        finally:
            dns.stop()
    assert_no_violations(ak)
