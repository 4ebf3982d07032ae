"""``straße.example`` deploys end to end on a real master + minion with a real Caddy: one ``hecate.deploy``
puts the record ``xn--strae-oqa`` in the zone (Hetzner emulator), gives authentik a provider whose
external_host is the same A-label (authentik emulator), and Caddy's route answers to the A-label Host
header a browser sends. One conversion (IDNA 2008 + UTS 46) from the pillar to every backend."""

import copy

import consul as consul_client
import pytest

from devstack.caddy import Backend
from devstack.emulators.authentik import AuthentikEmulator
from devstack.emulators.hetzner import HetznerDNS
from devstack.http import backend_of, get
from devstack.stack import AK_TOKEN, CONSUL_TOKEN, EDGE_IP, HZ_TOKEN

pytestmark = pytest.mark.integration

DOMAIN = "stra\u00dfe.example"
A_LABEL = "xn--strae-oqa.example"


@pytest.fixture
def backends():
    started = {
        "authentik": AuthentikEmulator("2025.6.1", token=AK_TOKEN).start(),
        "hetzner": HetznerDNS(token=HZ_TOKEN).start(),
        "app": Backend("strasse-app").start(),
        "open": Backend("open-app").start(),
    }
    started["hetzner"].add_zone("example")
    yield started
    for name, server in started.items():
        server.stop()
        if name in ("authentik", "hetzner"):
            assert not server.violations, f"{name}: {server.violations}"


def small_tree(edge_tree, backends):
    """Caddy (the edge's ports), one protected route on straße.example and one open route on
    bücher.example written as its A-label, authentik and the zone ``example``: no Nomad, no Terraform."""
    caddy = copy.deepcopy(edge_tree["reverse_proxy"]["caddy"])
    caddy["routes"] = [
        {"domain": DOMAIN, "backend": f"127.0.0.1:{backends['app'].port}", "service": "strasse", "auth": {"groups": ["ops"]}},
        {"domain": "xn--bcher-kva.example", "backend": f"127.0.0.1:{backends['open'].port}", "service": "buecher"},
    ]
    caddy.pop("profiles", None)
    return {
        "global": {"domain": "example", "environment": "production"},
        "reverse_proxy": {"caddy": caddy},
        "authentik": {
            "url": backends["authentik"].url,
            "token": AK_TOKEN,
            "allow_insecure_endpoint": True,
            "outpost": {"upstream": f"127.0.0.1:{backends['authentik'].port}"},
        },
        "dns": {
            "zone": "example",
            "token": HZ_TOKEN,
            "endpoint": backends["hetzner"].url + "/v1",
            "allow_insecure_endpoint": True,
            "targets": {"ipv4": [EDGE_IP]},
        },
    }


def test_strasse_example_deploys_with_its_a_label_everywhere(
    synced, edge_tree, backends, pillar_files, salt_call_cli, salt_run_cli, edge_caddy, consul
):
    edge_caddy.reset()
    consul_client.Consul(host="127.0.0.1", port=consul.port, token=CONSUL_TOKEN).kv.delete("hecate/deployments/", recurse=True)
    tree = small_tree(edge_tree, backends)
    pillar_files.write(tree)
    try:
        assert salt_call_cli.run("saltutil.refresh_pillar", wait=True).returncode == 0
        run = salt_run_cli.run("hecate.deploy")
        assert run.returncode == 0, run.data
        assert [s for s in run.data["stages"] if not s.endswith("_contract")] == ["authentik", "dns", "routes", "verify"]

        records = backends["hetzner"].records("example")
        assert records[("xn--strae-oqa", "A")][0] == [EDGE_IP]  # not strasse (IDNA 2003's answer)
        assert records[("xn--bcher-kva", "A")][0] == [EDGE_IP]
        providers = list(backends["authentik"].providers.values())
        assert [p["external_host"] for p in providers] == [f"http://{A_LABEL}"]

        http = tree["reverse_proxy"]["caddy"]["ports"]["http"]
        status, headers, _ = get(http, A_LABEL)  # the Host header a browser sends for straße.example
        assert status == 302 and "/application/o/authorize/" in headers["location"], (status, headers)  # protected
        assert backend_of(get(http, "xn--bcher-kva.example")[2]) == "open-app"
        # the operator sees both forms in the run's summary
        shown = salt_run_cli.run("hecate.show", run.data["id"]).data["order"]
        assert any(line.startswith("  added: ") and f"{DOMAIN} ({A_LABEL})" in line for line in shown), shown
    finally:
        pillar_files.load(edge_tree, salt_call_cli)
