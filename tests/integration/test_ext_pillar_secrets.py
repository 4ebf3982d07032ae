"""The hecate ext_pillar on a real master resolves vault: and consul: references (emulated Vault KV v2 and
Consul KV), and a Vault outage stops the run with a clear error that carries no secret."""

import pytest

from devstack.stack import AUTHENTIK_KEY, COTURN_SECRET

pytestmark = pytest.mark.integration


def test_references_are_resolved_on_the_master(synced, salt_call_cli, vault, consul):
    coturn = salt_call_cli.run("config.get", "hecate:reverse_proxy:coturn:static_auth_secret")
    key = salt_call_cli.run("config.get", "hecate:authentik:secret_key")
    assert coturn.data == COTURN_SECRET
    assert key.data == AUTHENTIK_KEY
    assert any(r.path == "/v1/secret/data/hecate/coturn" for r in vault.requests)
    assert not vault.violations and not consul.violations


def test_vault_down_stops_the_run_without_leaking(synced, salt_call_cli, vault, edge_caddy):
    mutations = edge_caddy.mutations()
    vault.inject(status=503, times=1000, path="/v1/")
    try:
        salt_call_cli.run("saltutil.refresh_pillar", wait=True)
        refused = salt_call_cli.run("state.apply", "hecate.routes")
        text = str(refused.data) + refused.stdout + refused.stderr
        assert refused.returncode != 0
        assert "hecate:reverse_proxy:coturn:static_auth_secret" in text  # names the key path
        assert COTURN_SECRET not in text and AUTHENTIK_KEY not in text
        assert edge_caddy.mutations() == mutations  # nothing reached Caddy
    finally:
        vault.faults.clear()
        salt_call_cli.run("saltutil.refresh_pillar", wait=True)
