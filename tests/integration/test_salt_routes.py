"""On a real master + minion: sync, validate, state.apply hecate.routes, and the debugging views."""

import copy

import pytest

from devstack.http import backend_of, get

pytestmark = pytest.mark.integration


def _state(result):
    assert result.returncode == 0 or result.data, result
    return next(iter(result.data.values()))


def test_state_apply_routes_converges_then_is_a_no_op(synced, salt_call_cli, edge_caddy, edge_tree):
    edge_caddy.reset()
    first = _state(salt_call_cli.run("state.apply", "hecate.routes"))
    assert first["result"] is True, first["comment"]
    assert len(first["changes"]["added"]) == 8
    http_port = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    status, _, body = get(http_port, "observe.cybermonkey.dev")
    assert (status, backend_of(body)) == (200, "grafana")
    mutations = edge_caddy.mutations()
    assert mutations[-1:] == [("POST", "/config/")]

    dry = _state(salt_call_cli.run("state.apply", "hecate.routes", test=True))
    second = _state(salt_call_cli.run("state.apply", "hecate.routes"))
    assert dry["result"] is True and dry["changes"] == {}
    assert second["result"] is True and second["changes"] == {}
    assert edge_caddy.mutations() == mutations  # nothing sent by the dry run or the no-op run


def test_caddy_routes_view_on_the_minion(synced, salt_call_cli):
    salt_call_cli.run("state.apply", "hecate.routes")
    result = salt_call_cli.run("caddy.routes", server="hecate")
    assert result.returncode == 0
    hosts = {tuple(r["hosts"]) for r in result.data if r["managed"]}
    assert ("cybermonkey.dev",) in hosts and ("delphi.cybermonkey.dev",) in hosts


def test_salt_run_hecate_validate(synced, salt_run_cli, salt_call_cli, pillar_files, edge_tree):
    good = salt_run_cli.run("hecate.validate", minion="hecate-edge")
    assert good.returncode == 0 and good.data["valid"] is True and good.data["routes"] == 8

    bad = copy.deepcopy(edge_tree)
    bad["reverse_proxy"]["caddy"]["routes"][1]["domain"] = bad["reverse_proxy"]["caddy"]["routes"][0]["domain"]
    bad["reverse_proxy"]["caddy"]["admin"] = "0.0.0.0:2019"
    pillar_files.write(bad)
    try:
        result = salt_run_cli.run("hecate.validate", minion="hecate-edge")
        assert result.returncode == 1
        assert result.data["valid"] is False
        text = " ".join(result.data["errors"])
        assert "hecate:reverse_proxy:caddy:admin" in text and "every interface" in text

        # The minion refuses to run states on the broken pillar: nothing reaches Caddy.
        salt_call_cli.run("saltutil.refresh_pillar", wait=True)
        refused = salt_call_cli.run("state.apply", "hecate.routes")
        assert refused.returncode != 0
        assert "Pillar failed to render" in str(refused.data) or "hecate:reverse_proxy:caddy:admin" in str(refused.data)
    finally:
        pillar_files.load(edge_tree, salt_call_cli)
