"""A real Caddy reaches authentik and helen through the Consul services of their Nomad jobs (issue 16 item
3), found with a local stand-in for Consul's DNS interface that answers as Consul does for a Nomad service
with a dynamic port: SRV ``<service>.service.consul`` -> ``<node>.node.dc1.consul:<port>``, A for the node."""

import copy
import json
import socket
import threading

import pytest

from tests.support.caddy import Backend
from tests.support.http import backend_of, get

SRV, A = 33, 1


def _name(labels):
    return b"".join(bytes([len(part)]) + part.encode() for part in labels.split(".") if part) + b"\x00"


class ConsulSrvDns:
    """Consul's DNS (``agent/dns.go``: a service lookup answers SRV records whose targets are node names, the
    node name answers A records), reduced to what Caddy asks; UDP on 127.0.0.1. ``services``: name ->
    (node, port); every node is 127.0.0.1. Unknown names: NXDOMAIN; a known name without that record type:
    an empty answer (NODATA), as Consul answers the AAAA query Go sends next to A."""

    def __init__(self, services):
        self.services = dict(services)
        self.nodes = {f"{node}.node.dc1.consul" for node, _ in self.services.values()}
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def answer(self, name, qtype):
        service = name[: -len(".service.consul")] if name.endswith(".service.consul") else None
        if service in self.services:
            if qtype != SRV:
                return True, b""
            node, port = self.services[service]
            rdata = b"\x00\x01\x00\x01" + port.to_bytes(2, "big") + _name(f"{node}.node.dc1.consul")
            return True, b"\xc0\x0c" + SRV.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00" + len(rdata).to_bytes(2, "big") + rdata
        if name in self.nodes:
            return True, b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x7f\x00\x00\x01" if qtype == A else b""
        return False, b""

    def serve(self):
        while True:
            try:
                packet, peer = self.sock.recvfrom(1024)
            except OSError:
                return
            labels, i = [], 12
            while packet[i]:
                labels.append(packet[i + 1 : i + 1 + packet[i]].decode().lower())
                i += 1 + packet[i]
            qtype = int.from_bytes(packet[i + 1 : i + 3], "big")
            name = ".".join(labels)
            self.queries.append((name, qtype))
            known, answer = self.answer(name, qtype)
            flags = b"\x85\x80" if known else b"\x85\x83"  # authoritative answer / NXDOMAIN
            header = packet[:2] + flags + b"\x00\x01" + (b"\x00\x01" if answer else b"\x00\x00") + b"\x00\x00\x00\x00"
            self.sock.sendto(header + packet[12 : i + 5] + answer, peer)

    def stop(self):
        self.sock.close()


@pytest.fixture
def direct():
    """What the seed pillar's own authentik/helen backends stand for here: reached only without Consul."""
    server = Backend("direct").start()
    yield server
    server.stop()


@pytest.fixture
def consul_dns(backends):
    plain, _ = backends
    dns = ConsulSrvDns(
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
    dns = ConsulSrvDns({"authentik-server": ("hecate-production-app-1", plain["authentik"].port)})
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
