"""The validator as the states run it: a pillar that manages DNS only (no ``reverse_proxy`` at all, so no
``routes`` list) converges its records through ``hetzner_dns.rrsets_managed`` (it crashed with
``KeyError: 'routes'``), and a hostile route is refused by the state before any request."""

import json
import pathlib
import shutil
import tempfile

import pytest

from devstack.emulators.hetzner import HetznerDNS
from tests.conftest import assert_no_violations, loaders_for

ZONE = "example.org"


@pytest.fixture(scope="module")
def hetzner():
    emulator = HetznerDNS().start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def loaders():
    root = pathlib.Path(tempfile.mkdtemp(prefix="hv", dir="/tmp"))
    built = loaders_for(root, {})
    yield built
    built.reset_state()
    shutil.rmtree(root, ignore_errors=True)


def dns_only(emulator, **extra):
    dns = {
        "zone": ZONE,
        "token": emulator.token,
        "endpoint": f"{emulator.url}/v1",
        "allow_insecure_endpoint": True,
        "records": [{"name": "www.example.org", "type": "A", "values": ["203.0.113.9"], "ttl": 300}],
    }
    return {"hecate": {"dns": dns, **extra}}


def converge(loaders, pillar, **kwargs):
    loaders.context.clear()
    return loaders.states.hetzner_dns.rrsets_managed(name=ZONE, pillar=pillar, **kwargs)


def test_a_dns_only_pillar_converges_its_records(hetzner, loaders):
    hetzner.reset()
    hetzner.add_zone(ZONE)
    result = converge(loaders, dns_only(hetzner))
    assert result.result is True, result.comment
    assert hetzner.records(ZONE)[("www", "A")] == (["203.0.113.9"], 300)
    hetzner.reset_counts()
    again = converge(loaders, dns_only(hetzner))
    assert again.result is True and again.changes == {} and hetzner.writes == []
    assert_no_violations(hetzner)


@pytest.mark.fault
def test_a_route_to_the_admin_api_is_refused_before_any_request(hetzner, loaders):
    hetzner.reset()
    hetzner.add_zone(ZONE)
    routes = [{"domain": "www.example.org", "backend": "127.0.0.2:2019"}, {"domain": "localhost", "backend": "10.0.0.5:80"}]
    result = converge(loaders, dns_only(hetzner, reverse_proxy={"caddy": {"routes": routes}}))
    assert result.result is False
    assert "hecate:reverse_proxy:caddy:routes[0](www.example.org):backend: '127.0.0.2:2019' is Caddy's admin API" in result.comment
    assert "hecate:reverse_proxy:caddy:routes[1](localhost):domain" in result.comment
    assert hetzner.requests == []
    assert json.dumps(result.changes) == "{}"
