"""The orchestration's pure parts: the backends' run order and phases (expand, switch, contract), reading state returns, secret-free records, overlays."""

import copy
import json
import os
import pathlib
import re
import subprocess

import pytest
import yaml

from devstack.pillars import seed_tree
from hecatelib import schema
from hecatelib.backends import BACKENDS
from hecatelib.engine import results, run
from hecatelib.engine import stages as engine_stages
from hecatelib.engine.stages import stages_of

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def tree():
    return schema.validate(seed_tree())


def full(tree):
    """Every backend on: what devstack/stack.py's full_tree turns on, without servers."""
    tree = copy.deepcopy(tree)
    tree["reverse_proxy"]["caddy"]["routes"][2]["auth"] = {"groups": ["ops"]}
    tree["authentik"].update({"url": "https://auth.example.org", "token": "t"})
    tree["dns"] = {"zone": "cybermonkey.dev", "token": "t"}
    tree["nomad"] = {"address": "https://nomad.example.org:4646", "token": "t"}
    tree["terraform"] = {"workdir": "/var/lib/hecate/terraform/x", "render": False}
    return schema.validate(tree)


def names(steps):
    return [s.name for s in steps]


def test_seed_pillar_runs_the_routes_then_verifies(tree):
    assert names(engine_stages.steps(tree, BACKENDS)) == ["routes", "verify"]


def test_a_run_expands_then_switches_then_contracts(tree):
    steps = engine_stages.steps(full(tree), BACKENDS)
    assert names(steps) == [
        "terraform",
        "nomad_stateful",
        "nomad_core",
        "nomad_authentik",
        "nomad_apps",
        "authentik",
        "dns",
        "routes",
        "verify",
        "authentik_contract",  # hecate:authentik:prune defaults to true; DNS prune to false: no DNS contract
    ]
    phases = [s.phase for s in steps]
    assert phases == sorted(phases, key=["expand", "switch", "verify", "contract"].index)
    by_name = {s.name: s for s in steps}
    assert by_name["authentik"].prune is False and by_name["dns"].prune is False  # expand deletes nothing
    assert by_name["authentik_contract"].prune is None and by_name["routes"].prune is None  # the pillar's own setting


def test_dns_gets_a_contract_step_only_when_it_may_prune(tree):
    pruning = full(tree)
    pruning["dns"]["prune"] = True
    assert names(engine_stages.steps(pruning, BACKENDS))[-2:] == ["authentik_contract", "dns_contract"]


def test_verify_off_and_only(tree):
    everything = full(tree)
    everything["deployment"]["verify"] = False
    assert "verify" not in names(engine_stages.steps(everything, BACKENDS))
    assert names(engine_stages.steps(full(tree), BACKENDS, only="[routes, dns]")) == ["dns", "routes", "verify"]


def test_unknown_stage_is_refused_in_one_line_naming_the_stages(tree):
    with pytest.raises(ValueError) as refused:
        engine_stages.steps(tree, BACKENDS, only=["routez"])
    message = str(refused.value)
    assert "\n" not in message and "'routez'" in message
    assert all(stage.name in message for _, stage in stages_of(BACKENDS))


def test_every_backend_says_how_it_is_undone():
    """A backend is undone by its hook, or says why it is not; a rollback converges it from the recorded
    tree, or returns it to the record's state with its restore hook (Nomad: job versions)."""
    assert {b.name: b.undo_note for b in BACKENDS if b.undo is None} == {
        "terraform": "never undone automatically (destroying machines is not a rollback)"
    }
    assert {b.name for b in BACKENDS if not b.rolls_back} == {"terraform", "nomad"}
    assert {b.name for b in BACKENDS if b.restore} == {"nomad"}


def test_targets_default_to_the_seed_grains(tree):
    assert engine_stages.target(tree, "controller") == ("roles:hecate-controller", "grain")
    assert engine_stages.target(tree, "edge") == ("roles:hecate-proxy", "grain")


def test_changes_count_things_not_states():
    changes = {
        "edge-1": {
            "r": {
                "added": {"hecate_route_a": {"hosts": ["a.example.org"]}, "hecate_route_b": {"hosts": ["b.example.org"]}},
                "changed": {"hecate_route_c": {"old": {"hosts": ["c.example.org"]}, "new": {"hosts": ["c.example.org"]}}},
            }
        },
        "ctl": {
            "ak": {"providers": {"created": ["hecate-a", "hecate-b"]}, "applications": {"deleted": ["hecate-c"]}},
            "example.org": {"a.example.org A": {"old": None, "new": {"records": ["1.2.3.4"]}}, "b.example.org A": {"old": {}, "new": None}},
        },
    }
    assert results.count_changes(changes) == 3 + 3 + 2
    lines = results.summarize(changes)
    assert "ctl: providers created: hecate-a, hecate-b" in lines
    assert "edge-1: added: a.example.org, b.example.org" in lines  # routes by host
    assert "edge-1: changed: c.example.org" in lines
    assert "ctl: a.example.org A" in lines and "ctl: applications deleted: hecate-c" in lines


def test_the_timeline_is_in_execution_order_with_changes_under_each_step():
    steps = {
        "terraform": {"ok": True, "changed": 0, "seconds": 2.5, "changes": [], "problems": []},
        "routes": {"ok": False, "changed": 1, "seconds": 1.0, "changes": ["added: a.example.org"], "problems": ["Caddy rejected"]},
    }
    assert results.timeline(steps) == [
        "terraform: ok, 0 changed (2.5 s)",
        "routes: FAILED, 1 changed (1.0 s): Caddy rejected",
        "  added: a.example.org",
    ]


def test_removed_routes_are_named_by_host():
    changes = {"edge-1": {"r": {"removed": {"hecate_route_a": {"hosts": ["a.example.org"]}}, "added": {"x": {"hosts": ["x.org"]}}}}}
    assert results.removed_hosts(changes) == ["a.example.org"]
    assert results.removed_hosts({}) == []


def test_the_pillar_commit_is_named_when_the_pillar_is_a_git_checkout(tmp_path):
    plain, repo = tmp_path / "plain", tmp_path / "repo"
    plain.mkdir()
    repo.mkdir()
    opts = {"pillar_roots": {"base": [str(plain)]}, "cachedir": str(tmp_path / "cache")}
    assert run.pillar_commit(opts) is None
    (repo / "hecate.sls").write_text("hecate: {}\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "pillar"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    opts["pillar_roots"]["base"].append(str(repo))
    assert run.pillar_commit(opts) == {"commit": head, "dirty": False, "path": str(repo), "source": str(repo)}
    (repo / "hecate.sls").write_text("hecate: {global: {}}\n")
    assert run.pillar_commit(opts)["dirty"] is True


def test_the_operator_is_the_user_behind_sudo(monkeypatch):
    monkeypatch.setenv("SUDO_USER", "alice")
    monkeypatch.setenv("USER", "root")
    assert run.operator({"user": "salt"}).startswith("alice@")
    monkeypatch.delenv("SUDO_USER")
    assert run.operator({"user": "salt"}).startswith("root@")


def test_a_runs_file_is_private_and_named_safely(tmp_path):
    files = run.run_files({"cachedir": str(tmp_path)})
    files.save(run.Run(id="20261202T100000Z-abc123", kind="deploy", steps=["routes"]))
    path = files.path("20261202T100000Z-abc123")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert files.load("20261202T100000Z-abc123").steps == ["routes"]
    files.drop("20261202T100000Z-abc123")
    assert files.load("20261202T100000Z-abc123") is None
    with pytest.raises(ValueError):
        files.path("../../etc/passwd")


def test_reading_state_returns():
    returns = {
        "edge-1": {"ret": {"caddy_|-r_|-r_|-routes_managed": {"name": "r", "result": True, "changes": {"added": {"x": 1}}, "comment": ""}}},
        "edge-2": {"ret": {"caddy_|-r_|-r_|-routes_managed": {"name": "r", "result": False, "changes": {}, "comment": "Caddy rejected"}}},
        "edge-3": {"ret": ["Rendering SLS 'base:hecate.routes' failed: bad"]},
    }
    ok, changes, problems = results.read_state_returns(returns)
    assert ok is False
    assert changes == {"edge-1": {"r": {"added": {"x": 1}}}}
    assert problems == ["edge-2: r: Caddy rejected", "edge-3: Rendering SLS 'base:hecate.routes' failed: bad"]
    assert results.read_state_returns({})[0] is False


def test_records_keep_no_secret(tree):
    tree["reverse_proxy"]["coturn"]["static_auth_secret"] = "coturn-SECRET-1"
    tree["authentik"]["secret_key"] = "authentik-SECRET-2"
    tree["authentik"]["database"]["password"] = "db-SECRET-3"
    stripped = run.strip_secrets(schema.validate(tree))
    text = json.dumps(stripped)
    assert "SECRET" not in text
    assert stripped["reverse_proxy"]["caddy"]["routes"] == schema.validate(tree)["reverse_proxy"]["caddy"]["routes"]


def test_overlay_is_salts_pillar_merge():
    live = {"a": {"token": "t", "keep": 1}, "routes": [1, 2, 3]}
    recorded = {"a": {"keep": 2}, "routes": [9]}
    assert run.overlay(live, recorded) == {"a": {"token": "t", "keep": 2}, "routes": [9]}


def _included(sls):
    """The SLS files ``sls`` includes, read from the state tree itself (its top-level ``include:`` list)."""
    path = REPO / "salt" / (sls.replace(".", "/") + ".sls")
    text = (path if path.exists() else path.with_suffix("") / "init.sls").read_text()
    block = re.search(r"^include:\n((?:[ \t]+-.*\n)+)", text, re.M)
    return tuple(yaml.safe_load(block.group(1))) if block else ()


@pytest.mark.parametrize("stage", [s for _, s in stages_of(BACKENDS)], ids=lambda s: s.name)
def test_every_stage_names_the_sls_files_it_includes(stage):
    """A dry run of every stage in one job credits each state to a stage by its ``__sls__``: a stage whose
    SLS includes others must list them (``parts``), or its states would be credited to another stage."""
    assert stage.parts == _included(stage.sls)


def test_a_state_belongs_to_the_first_stage_holding_its_sls():
    nomad = [pair for pair in stages_of(BACKENDS) if pair[0].name == "nomad"]
    assert engine_stages.owner(nomad, "hecate.nomad.redis")[1].name == "nomad_stateful"
    assert engine_stages.owner(nomad, "hecate.nomad.authentik")[1].name == "nomad_authentik"  # apps includes it too
    assert engine_stages.owner(nomad, "hecate.nomad.helen-bridge")[1].name == "nomad_apps"
    assert engine_stages.owner(nomad, "hecate.dns") is None


def test_a_run_skips_only_steps_that_cannot_change_anything(tree):
    steps = engine_stages.steps(full(tree), BACKENDS)
    every = {s.stage.name for s in steps if s.stage}
    assert engine_stages.skippable(steps, every) == names(steps)  # a no-op: nothing runs, nothing to verify
    routes_only = engine_stages.skippable(steps, every - {"routes"})
    assert "routes" not in routes_only and "verify" not in routes_only
    assert set(routes_only) == {"terraform", "nomad_stateful", "nomad_core", "nomad_authentik", "nomad_apps", "authentik", "dns",
                                "authentik_contract"}  # fmt: skip
    # terraform changes: the DNS stage reads its outputs, so every later step runs even if its dry run was clean
    assert engine_stages.skippable(steps, every - {"terraform"}) == []
    # a failed or changing authentik dry run: the steps before it are left out, authentik and after run
    assert engine_stages.skippable(steps, every - {"authentik"}) == ["terraform", "nomad_stateful", "nomad_core",
                                                                       "nomad_authentik", "nomad_apps"]  # fmt: skip
