"""The orchestration's pure parts: stage selection, reading state returns, secret-free records, overlays."""

import json

import hecate_orchestrate
import hecate_schema
import pytest

from tests.support.pillars import seed_tree


@pytest.fixture
def tree():
    return hecate_schema.validate(seed_tree())


def test_seed_pillar_runs_only_the_routes_stage(tree):
    assert [s.name for s in hecate_orchestrate.enabled_stages(tree)] == ["routes"]


def test_stages_follow_the_seed_order_when_everything_is_configured():
    names = [s.name for s in hecate_orchestrate.STAGES]
    assert names.index("terraform") < names.index("nomad_stateful") < names.index("nomad_core") < names.index("routes")
    assert names.index("routes") < names.index("dns") < names.index("nomad_apps")
    assert names.index("authentik") < names.index("routes")  # providers exist before Caddy sends users to the outpost


def test_unknown_stage_is_refused(tree):
    with pytest.raises(ValueError, match="unknown stage"):
        hecate_orchestrate.enabled_stages(tree, only=["routez"])


def test_targets_default_to_the_seed_grains(tree):
    assert hecate_orchestrate.target(tree, "controller") == ("roles:hecate-controller", "grain")
    assert hecate_orchestrate.target(tree, "edge") == ("roles:hecate-proxy", "grain")


def test_reading_state_returns():
    returns = {
        "edge-1": {"ret": {"caddy_|-r_|-r_|-routes_managed": {"name": "r", "result": True, "changes": {"added": {"x": 1}}, "comment": ""}}},
        "edge-2": {"ret": {"caddy_|-r_|-r_|-routes_managed": {"name": "r", "result": False, "changes": {}, "comment": "Caddy rejected"}}},
        "edge-3": {"ret": ["Rendering SLS 'base:hecate.routes' failed: bad"]},
    }
    ok, changes, problems = hecate_orchestrate.read_state_returns(returns)
    assert ok is False
    assert changes == {"edge-1": {"r": {"added": {"x": 1}}}}
    assert problems == ["edge-2: r: Caddy rejected", "edge-3: Rendering SLS 'base:hecate.routes' failed: bad"]
    assert hecate_orchestrate.read_state_returns({})[0] is False


def test_records_keep_no_secret(tree):
    tree["reverse_proxy"]["coturn"]["static_auth_secret"] = "coturn-SECRET-1"
    tree["authentik"]["secret_key"] = "authentik-SECRET-2"
    tree["authentik"]["database"]["password"] = "db-SECRET-3"
    stripped = hecate_orchestrate.strip_secrets(hecate_schema.validate(tree))
    text = json.dumps(stripped)
    assert "SECRET" not in text
    assert stripped["reverse_proxy"]["caddy"]["routes"] == hecate_schema.validate(tree)["reverse_proxy"]["caddy"]["routes"]


def test_overlay_is_salts_pillar_merge():
    live = {"a": {"token": "t", "keep": 1}, "routes": [1, 2, 3]}
    recorded = {"a": {"keep": 2}, "routes": [9]}
    assert hecate_orchestrate.overlay(live, recorded) == {"a": {"token": "t", "keep": 2}, "routes": [9]}
