"""On a real master + minion: the DNS stage (state.apply hecate.dns) and salt-call hetzner_dns.rrsets,
against the Hetzner Cloud DNS emulator (every request contract-checked)."""

import copy

import pytest

from devstack.emulators.hetzner import HetznerDNS
from tests.conftest import assert_no_violations

pytestmark = pytest.mark.integration

ZONE = "cybermonkey.dev"


@pytest.fixture
def hetzner():
    emulator = HetznerDNS().start()
    emulator.add_zone(ZONE)
    yield emulator
    emulator.stop()
    assert_no_violations(emulator)
    assert emulator.response_violations == []


def _state(result):
    assert result.returncode == 0 or result.data, result
    return next(iter(result.data.values()))


def test_state_apply_dns_converges_the_seed_zone_then_writes_nothing(synced, salt_call_cli, pillar_files, edge_tree, hetzner):
    tree = copy.deepcopy(edge_tree)
    tree["dns"] = {
        "zone": ZONE,
        "token": hetzner.token,
        "endpoint": f"{hetzner.url}/v1",
        "allow_insecure_endpoint": True,
        "targets": {"ipv4": ["203.0.113.7"], "ipv6": ["2001:db8::7"]},
    }
    pillar_files.write(tree)
    try:
        assert salt_call_cli.run("saltutil.refresh_pillar", wait=True).returncode == 0
        first = _state(salt_call_cli.run("state.apply", "hecate.dns"))
        assert first["result"] is True, first["comment"]
        assert len(first["changes"]) == 16  # 8 seed routes x (A, AAAA)
        assert hetzner.records(ZONE)[("hera", "A")] == (["203.0.113.7"], 300)

        hetzner.reset_counts()
        dry = _state(salt_call_cli.run("state.apply", "hecate.dns", test=True))
        second = _state(salt_call_cli.run("state.apply", "hecate.dns"))
        assert dry["result"] is True and dry["changes"] == {}
        assert second["result"] is True and second["changes"] == {}
        # the dry run reads the serial and one page (the first run's writes moved the serial), the run after it the serial
        assert hetzner.writes == [] and len(hetzner.requests) == 3

        view = salt_call_cli.run("hetzner_dns.rrsets", zone=ZONE, label_selector="managed-by=hecate")
        assert view.returncode == 0
        assert {(r["name"], r["type"]) for r in view.data} >= {("@", "A"), ("delphi", "AAAA")}
        assert hetzner.token not in str(view.data)
    finally:
        pillar_files.load(edge_tree, salt_call_cli)
