"""The seed pillar from nothing to production on a real master + minion: real Terraform 1.0.3 (a
local-only null module with the Hetzner module's outputs), the Nomad, authentik, Hetzner DNS, Consul and
Vault emulators, and a real Caddy. Then: a no-op second deploy, a dry run that writes nothing anywhere,
one injected fault per stage that stops the run and keeps the previous working state, and a rollback."""

import copy
import json
import os

import consul as consul_client
import pytest

from tests.support.http import backend_of, get
from tests.support.stack import CONSUL_TOKEN, EDGE_IP, ZONE, full_tree, start_backends, terraform_module

pytestmark = pytest.mark.integration


@pytest.fixture
def emulators():
    """Fresh emulators for every test: no state or scripted outcome leaks from one test to the next."""
    started = start_backends()
    yield started
    for emulator in started.values():
        emulator.stop()
        assert not emulator.violations, f"{emulator.name}: {emulator.violations}"


@pytest.fixture(scope="module")
def terraform_dir(integration_dir):
    return terraform_module(integration_dir / "tf")


@pytest.fixture
def stack_tree(edge_tree, emulators, terraform_dir):
    """The seed pillar unchanged in meaning, plus the sections that point each backend at its emulator."""
    return full_tree(edge_tree, emulators, terraform_dir)


@pytest.fixture
def stack(synced, stack_tree, pillar_files, salt_call_cli, edge_caddy, consul):
    """A fresh start for each test: Caddy empty, no records, the full pillar."""
    edge_caddy.reset()
    consul_client.Consul(host="127.0.0.1", port=consul.port, token=CONSUL_TOKEN).kv.delete("hecate/deployments/", recurse=True)
    pillar_files.write(stack_tree)
    salt_call_cli.run("saltutil.refresh_pillar", wait=True)
    yield stack_tree
    pillar_files.write(stack_tree)
    salt_call_cli.run("saltutil.refresh_pillar", wait=True)


def nomad_job(emulators, job_id="hecate-reverse-proxy"):
    return next(entry["current"] for (_, jid), entry in emulators["nomad"].jobs.items() if jid == job_id)


def writes(emulators):
    return {name: len(emulator.writes) for name, emulator in emulators.items()}


def use(pillar_files, salt_call_cli, tree):
    pillar_files.write(tree)
    salt_call_cli.run("saltutil.refresh_pillar", wait=True)


def test_seed_deploys_from_nothing_and_the_second_deploy_writes_nothing(stack, salt_run_cli, emulators, edge_caddy):
    first = salt_run_cli.run("hecate.deploy")
    assert first.returncode == 0, json.dumps(first.data, indent=1)
    stages = first.data["stages"]
    assert list(stages) == [
        "terraform",
        "nomad_stateful",
        "nomad_core",
        "nomad_authentik",
        "authentik",
        "routes",
        "dns",
        "nomad_apps",
        "verify",
    ]
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
    second = salt_run_cli.run("hecate.deploy")
    assert second.returncode == 0 and all(s.get("changed", 0) == 0 for s in second.data["stages"].values())
    assert writes(emulators) == before
    assert edge_caddy.new_mutations() == mutations


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


FAULTS = {  # stage -> how to break it
    "nomad_core": lambda e: e["nomad"].script("hecate-reverse-proxy", "fail"),  # failed deployment, auto-reverted
    "authentik": lambda e: e["authentik"].inject(status=500, times=1000, method="POST"),
    "dns": lambda e: e["hetzner"].inject(status=429, times=100000, headers={"RateLimit-Reset": "4000000000"}),
}


@pytest.mark.fault
def test_a_fault_at_each_stage_stops_the_run_and_keeps_the_previous_state(
    stack, salt_run_cli, emulators, edge_caddy, pillar_files, salt_call_cli
):
    assert salt_run_cli.run("hecate.deploy").returncode == 0
    changed = copy.deepcopy(stack)
    changed["reverse_proxy"]["caddy"]["version"] = "2.11.9"  # a new Caddy image: the reverse-proxy job changes
    extra = {"domain": "new.cybermonkey.dev", "backend": changed["reverse_proxy"]["caddy"]["routes"][1]["backend"], "service": "newapp",
             "auth": {"groups": ["ops"]}}  # fmt: skip
    changed["reverse_proxy"]["caddy"]["routes"].append(extra)
    use(pillar_files, salt_call_cli, changed)
    caddy_before = edge_caddy.config_bytes()
    http = stack["reverse_proxy"]["caddy"]["ports"]["http"]
    for stage, inject in FAULTS.items():
        inject(emulators)
        try:
            result = salt_run_cli.run("hecate.deploy")
        finally:
            for emulator in emulators.values():
                emulator.faults.clear()
        assert result.returncode == 1, stage
        assert result.data["status"] == "failed" and result.data["error"].startswith(f"stage {stage} failed"), result.data["error"]
        assert edge_caddy.config_bytes() == caddy_before, stage  # Caddy back to (or still at) the previous deployment
        assert get(http, "new.cybermonkey.dev")[0] == 404
        assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "nextcloud"
    statuses = [h["status"] for h in salt_run_cli.run("hecate.history").data]
    assert statuses == ["success", "failed", "failed", "failed"]


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
    result = salt_run_cli.run("hecate.rollback")
    assert result.returncode == 0, result.data
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "nextcloud"
    assert "caddy:2.11.9" not in json.dumps(nomad_job(emulators))  # the reverted version's task config
