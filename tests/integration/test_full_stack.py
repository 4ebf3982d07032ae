"""The seed pillar from nothing to production on a real master + minion: real Terraform 1.0.3 (a
local-only null module with the Hetzner module's outputs), the Nomad, authentik, Hetzner DNS, Consul and
Vault emulators, and a real Caddy. Then: a no-op second deploy, a dry run that writes nothing anywhere,
one injected fault per stage that stops the run and keeps the previous working state, and a rollback."""

import copy
import json
import os
import time

import consul as consul_client
import pytest

from devstack import host
from devstack.http import backend_of, get
from devstack.stack import CONSUL_TOKEN, EDGE_IP, ZONE, full_tree, jobs_of_run, start_backends
from hecatelib import schema
from hecatelib.backends import BACKENDS
from hecatelib.engine import stages as engine_stages

pytestmark = pytest.mark.integration


@pytest.fixture
def emulators():
    """Fresh emulators for every test: no state or scripted outcome leaks from one test to the next."""
    started = start_backends()
    yield started
    for emulator in started.values():
        emulator.stop()
        assert not emulator.violations, f"{emulator.name}: {emulator.violations}"


@pytest.fixture
def stack_tree(edge_tree, emulators, terraform_dir):
    """The seed pillar unchanged in meaning, plus the sections that point each backend at its emulator."""
    return full_tree(edge_tree, emulators, terraform_dir)


@pytest.fixture
def stack(synced, stack_tree, pillar_files, salt_call_cli, edge_caddy, consul, edge_tree):
    """A fresh start for each test: Caddy empty, no records, the full pillar; the seed's again after it."""
    edge_caddy.reset()
    consul_client.Consul(host="127.0.0.1", port=consul.port, token=CONSUL_TOKEN).kv.delete("hecate/deployments/", recurse=True)
    pillar_files.load(stack_tree, salt_call_cli)
    yield stack_tree
    pillar_files.load(edge_tree, salt_call_cli)


def nomad_job(emulators, job_id="hecate-reverse-proxy"):
    return next(entry["current"] for (_, jid), entry in emulators["nomad"].jobs.items() if jid == job_id)


def nomad_versions(emulators):
    """``{job: version}`` of every job Nomad runs now."""
    return {job_id: entry["current"]["Version"] for (_, job_id), entry in emulators["nomad"].jobs.items() if entry["current"]}


def writes(emulators):
    return {name: len(emulator.writes) for name, emulator in emulators.items()}


def use(pillar_files, salt_call_cli, tree):
    pillar_files.load(tree, salt_call_cli)


def test_seed_deploys_from_nothing_and_the_second_deploy_writes_nothing(
    stack, salt_run_cli, emulators, edge_caddy, salt_master, event_listener
):
    first = salt_run_cli.run("hecate.deploy")
    assert first.returncode == 0, json.dumps(first.data, indent=1)
    stages = first.data["stages"]
    # every step of the registry in its order (pinned in tests/unit/test_orchestrate.py): expand, switch, verify, contract
    assert list(stages) == [s.name for s in engine_stages.steps(schema.validate(stack, root_prefix=host.PREFIX), BACKENDS)]
    assert len(stages) == 10
    shown = salt_run_cli.run("hecate.show", first.data["id"]).data
    assert [line.split(":")[0] for line in shown["order"] if not line.startswith(" ")] == list(stages)  # execution order
    assert any(line.startswith("  added: ") and "cloud.cybermonkey.dev" in line for line in shown["order"]), shown["order"]
    assert shown["order"][0].startswith("terraform: ok, ")
    assert all(s["ok"] for s in stages.values())

    hz = emulators["hetzner"]
    records = hz.records(ZONE)
    assert records[("observe", "A")][0] == [EDGE_IP] and records[("@", "A")][0] == [EDGE_IP]  # targets from terraform's outputs
    assert {job_id for _, job_id in emulators["nomad"].jobs} >= {"hecate-reverse-proxy", "hecate-authentik", "hecate-postgresql"}
    http = stack["reverse_proxy"]["caddy"]["ports"]["http"]
    status, headers, _ = get(http, "observe.cybermonkey.dev")
    assert status == 302 and "/application/o/authorize/" in headers["location"]  # protected by authentik
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "nextcloud"

    before, mutations = writes(emulators), edge_caddy.new_mutations()
    noop_started = time.time()
    second = salt_run_cli.run("hecate.deploy")
    assert second.returncode == 0 and all(s.get("changed", 0) == 0 for s in second.data["stages"].values())
    assert writes(emulators) == before
    assert edge_caddy.new_mutations() == mutations
    # edge and controller are one minion (its roles grain holds both): ONE state run dry-runs every stage,
    # although the two targets are different grain expressions; nothing will write, so nothing is read
    # for undo, and the Nomad versions of the record are the last success's (the same tree deployed)
    jobs = jobs_of_run(event_listener, salt_master.id, second.data, noop_started)
    assert jobs == ["state.apply"], jobs
    recorded = [salt_run_cli.run("hecate.show", run.data["id"]).data["state"]["nomad"]["versions"] for run in (first, second)]
    assert recorded[0] == recorded[1] == nomad_versions(emulators), recorded


def test_dry_run_writes_nothing_anywhere(stack, salt_run_cli, emulators, edge_caddy, consul, terraform_dir):
    before, consul_writes = writes(emulators), len(consul.writes)
    files = sorted(os.listdir(terraform_dir["workdir"]))
    planned = salt_run_cli.run("hecate.deploy", test=True)
    assert planned.returncode == 0, planned.data
    assert set(planned.data["stages"]) >= {"terraform", "nomad_core", "authentik", "routes", "dns"}
    assert planned.data["would_change"] > 0
    assert writes(emulators) == before and len(consul.writes) == consul_writes
    assert edge_caddy.new_mutations() == []
    assert sorted(os.listdir(terraform_dir["workdir"])) == files


def test_plan_shows_the_authentik_objects_a_new_auth_creates_and_the_records_that_stay(
    stack, salt_run_cli, emulators, pillar_files, salt_call_cli
):
    assert salt_run_cli.run("hecate.deploy").returncode == 0
    edited = copy.deepcopy(stack)
    routes = edited["reverse_proxy"]["caddy"]["routes"]
    next(r for r in routes if r["domain"] == "cloud.cybermonkey.dev")["auth"] = {"groups": ["ops"]}
    routes[:] = [r for r in routes if r["domain"] != "s3.cybermonkey.dev"]
    use(pillar_files, salt_call_cli, edited)
    before = writes(emulators)
    planned = salt_run_cli.run("hecate.plan")
    assert planned.returncode == 0, planned.data
    stages = planned.data["stages"]
    assert any(line.startswith("providers created: ") and "nextcloud" in line for line in stages["authentik"]["changes"]), stages
    assert any("applications created" in line for line in stages["authentik"]["changes"])
    assert stages["dns"]["notes"] == ["s3.cybermonkey.dev: its DNS record stays (hecate:dns:prune is off)"]
    routes_lines = stages["routes"]["changes"]
    assert "removed: s3.cybermonkey.dev" in routes_lines and "added: cloud.cybermonkey.dev" in routes_lines, routes_lines
    assert stages["routes"]["would_change"] == 3, routes_lines  # things (auth route added, route changed, s3 removed), not stages
    assert planned.data["would_change"] == sum(s["would_change"] for s in stages.values())
    assert writes(emulators) == before


FAULTS = {  # stage -> how to break it
    "nomad_core": lambda e: e["nomad"].script("hecate-reverse-proxy", "fail"),  # failed deployment, auto-reverted
    "authentik": lambda e: e["authentik"].inject(status=500, times=1000, method="POST"),
    "dns": lambda e: e["hetzner"].inject(status=429, times=100000, headers={"RateLimit-Reset": "4000000000"}),
}


def orchestrate(salt_run_cli):
    """``salt-run state.orchestrate hecate.orchestrate``: exit code, and the newest record."""
    result = salt_run_cli.run("state.orchestrate", "hecate.orchestrate")
    history = salt_run_cli.run("hecate.history").data
    return result.returncode, history[-1] if history else None


def lock_free(consul):
    _, entry = consul_client.Consul(host="127.0.0.1", port=consul.port, token=CONSUL_TOKEN).kv.get("hecate/locks/production")
    return not (entry and entry.get("Session"))


@pytest.mark.fault
def test_a_fault_at_each_stage_stops_state_orchestrate_and_keeps_the_previous_state(
    stack, salt_run_cli, emulators, edge_caddy, pillar_files, salt_call_cli, consul
):
    assert orchestrate(salt_run_cli)[0] == 0
    changed = copy.deepcopy(stack)
    changed["reverse_proxy"]["caddy"]["version"] = "2.11.9"  # a new Caddy image: the reverse-proxy job changes
    extra = {"domain": "new.cybermonkey.dev", "backend": changed["reverse_proxy"]["caddy"]["routes"][1]["backend"], "service": "newapp",
             "auth": {"groups": ["ops"]}}  # fmt: skip
    changed["reverse_proxy"]["caddy"]["routes"].append(extra)
    use(pillar_files, salt_call_cli, changed)
    caddy_before = edge_caddy.config_bytes()
    providers_before = sorted(p["name"] for p in emulators["authentik"].providers.values())
    http = stack["reverse_proxy"]["caddy"]["ports"]["http"]
    for stage, inject in FAULTS.items():
        inject(emulators)
        try:
            code, record = orchestrate(salt_run_cli)
        finally:
            for emulator in emulators.values():
                emulator.faults.clear()
        assert code != 0, stage
        assert record["status"] == "failed" and record["error"].startswith(f"stage {stage} failed"), record
        assert edge_caddy.config_bytes() == caddy_before, stage  # Caddy back to (or still at) the previous deployment
        assert get(http, "new.cybermonkey.dev")[0] == 404
        assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "nextcloud"
        assert get(http, "observe.cybermonkey.dev")[0] == 302  # still protected
        assert sorted(p["name"] for p in emulators["authentik"].providers.values()) == providers_before, stage  # undone
        assert "caddy:2.11.9" not in json.dumps(nomad_job(emulators)), stage  # the reverse proxy job reverted
        assert lock_free(consul), stage
    statuses = [h["status"] for h in salt_run_cli.run("hecate.history").data]
    assert statuses == ["success", "failed", "failed", "failed"]


def test_half_apply_a_removed_protected_route_keeps_serving_when_the_switch_fails(
    stack, salt_run_cli, emulators, pillar_files, salt_call_cli, consul
):
    """The issue's scenario: one edit removes a protected route and points another at a dead port. The
    authentik objects of the removed route are deleted only in the contract step, which a failed switch
    never reaches: the old routes keep serving, protected as before."""
    assert orchestrate(salt_run_cli)[0] == 0
    http = stack["reverse_proxy"]["caddy"]["ports"]["http"]
    providers = sorted(p["name"] for p in emulators["authentik"].providers.values())
    assert any("grafana" in name for name in providers)
    edited = copy.deepcopy(stack)
    routes = edited["reverse_proxy"]["caddy"]["routes"]
    routes[:] = [r for r in routes if r["service"] != "grafana"]  # the protected route goes
    next(r for r in routes if r["domain"] == "s3.cybermonkey.dev")["backend"] = "127.0.0.1:9"  # and s3 breaks
    use(pillar_files, salt_call_cli, edited)
    code, record = orchestrate(salt_run_cli)
    assert code != 0 and record["status"] == "failed" and record["error"].startswith("stage routes failed"), record
    status, headers, _ = get(http, "observe.cybermonkey.dev")
    assert status == 302 and "/application/o/authorize/" in headers["location"]  # still there, still protected
    assert backend_of(get(http, "s3.cybermonkey.dev")[2]) == "minio-console"
    assert sorted(p["name"] for p in emulators["authentik"].providers.values()) == providers
    assert lock_free(consul)


@pytest.mark.fault
def test_a_refused_terraform_plan_stops_the_run_before_anything_else(stack, salt_run_cli, emulators, pillar_files, salt_call_cli):
    assert salt_run_cli.run("hecate.deploy").returncode == 0
    before = writes(emulators)
    shrunk = copy.deepcopy(stack)
    shrunk["terraform"]["vars"] = {"nodes": {}}  # would destroy the edge: refused without allow_delete
    use(pillar_files, salt_call_cli, shrunk)
    result = salt_run_cli.run("hecate.deploy")
    assert result.returncode == 1 and result.data["error"].startswith("stage terraform failed")
    assert "delete" in result.data["error"]
    assert writes(emulators) == before


def test_rollback_reverts_nomad_and_routes(stack, salt_run_cli, emulators, pillar_files, salt_call_cli):
    assert salt_run_cli.run("hecate.deploy").returncode == 0
    version_a = nomad_job(emulators)["Version"]
    changed = copy.deepcopy(stack)
    changed["reverse_proxy"]["caddy"]["version"] = "2.11.9"
    changed["reverse_proxy"]["caddy"]["routes"][1]["backend"] = changed["reverse_proxy"]["caddy"]["routes"][3]["backend"]
    use(pillar_files, salt_call_cli, changed)
    assert salt_run_cli.run("hecate.deploy").returncode == 0
    assert nomad_job(emulators)["Version"] > version_a
    http = stack["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "jenkins"
    emulators["nomad"].inject(status=500, method="POST", path=r"/revert$", body="can't revert", times=1)
    failed = salt_run_cli.run("hecate.rollback")
    assert failed.returncode == 1 and failed.data["status"] == "failed", failed.data  # a 500 is not "done"
    assert "nomad restore failed" in failed.data["error"] and "FAILED" in failed.data["error"]
    emulators["nomad"].faults.clear()
    result = salt_run_cli.run("hecate.rollback")
    assert result.returncode == 0, result.data
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "nextcloud"
    assert "caddy:2.11.9" not in json.dumps(nomad_job(emulators))  # the reverted version's task config
    assert result.data["stages"]["nomad_restore"]["changes"]
    # the rollback's record holds the versions live after the revert: a later rollback to it returns there
    assert salt_run_cli.run("hecate.show", result.data["id"]).data["state"]["nomad"]["versions"] == nomad_versions(emulators)
