"""The orchestration on a real master + minion: salt-run hecate.deploy / plan / history / rollback and
salt-run state.orchestrate hecate.orchestrate, with the Consul lock and records (emulated Consul) and a
real Caddy. The seed pillar enables the routes stage; tests/integration/test_full_stack.py adds the rest."""

import copy
import socket
import threading
import time

import consul as consul_client
import hecate_lock
import pytest

from tests.support.http import backend_of, get
from tests.support.stack import CONSUL_TOKEN

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh(synced, edge_caddy, pillar_files, edge_tree, salt_call_cli, consul):
    """Caddy back to nothing, the seed pillar, no deployment records."""
    edge_caddy.reset()
    client = consul_client.Consul(host="127.0.0.1", port=consul.port, token=CONSUL_TOKEN)
    client.kv.delete("hecate/deployments/", recurse=True)
    consul.reset_counts()
    pillar_files.write(edge_tree)
    salt_call_cli.run("saltutil.refresh_pillar", wait=True)
    yield client
    pillar_files.write(edge_tree)
    salt_call_cli.run("saltutil.refresh_pillar", wait=True)


def deploy(salt_run_cli, *args):
    result = salt_run_cli.run("hecate.deploy", *args)
    return result.returncode, result.data


def test_deploy_from_nothing_then_the_second_deploy_changes_nothing(
    fresh, salt_run_cli, edge_caddy, edge_tree, salt_master, event_listener
):
    started = time.time()
    code, first = deploy(salt_run_cli)
    assert code == 0, first
    assert first["status"] == "success" and first["stages"]["routes"]["changed"] == 1
    assert first["stages"]["verify"]["ok"] is True
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "nextcloud"
    mutations = edge_caddy.new_mutations()

    code, second = deploy(salt_run_cli)
    assert code == 0 and second["status"] == "success"
    assert second["stages"]["routes"]["changed"] == 0
    assert edge_caddy.new_mutations() == mutations  # zero admin writes

    history = salt_run_cli.run("hecate.history").data
    assert [h["id"] for h in history] == [first["id"], second["id"]]
    assert all(h["status"] == "success" for h in history)
    tags = {e.tag for e in event_listener.get_events([(salt_master.id, "hecate/deploy/*")], after_time=started)}
    assert f"hecate/deploy/{first['id']}/routes/start" in tags and f"hecate/deploy/{first['id']}/done" in tags


def test_dry_runs_write_nothing(fresh, salt_run_cli, edge_caddy, consul):
    before = edge_caddy.config_bytes()
    planned = salt_run_cli.run("hecate.plan").data
    assert planned["would_change"] == 1 and planned["stages"]["routes"]["ok"]
    via_deploy = salt_run_cli.run("hecate.deploy", test=True).data
    assert via_deploy["stages"].keys() == planned["stages"].keys()
    orchestrated = salt_run_cli.run("state.orchestrate", "hecate.orchestrate", test=True)
    assert orchestrated.returncode == 0, orchestrated
    assert edge_caddy.config_bytes() == before and edge_caddy.new_mutations() == []
    assert consul.writes == []  # no lock, no record
    drift = salt_run_cli.run("hecate.status").data
    assert drift["in_sync"] is False and drift["backends"]["routes"]["state"] == "drift"


def test_state_orchestrate_runs_the_stages_and_records(fresh, salt_run_cli, edge_caddy, edge_tree):
    result = salt_run_cli.run("state.orchestrate", "hecate.orchestrate")
    assert result.returncode == 0, result.stdout
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(http, "s3.cybermonkey.dev")[2]) == "minio-console"
    history = salt_run_cli.run("hecate.history").data
    assert [h["kind"] for h in history] == ["orchestrate"]
    again = salt_run_cli.run("state.orchestrate", "hecate.orchestrate")
    assert again.returncode == 0
    assert edge_caddy.new_mutations() == [("POST", "/config/")]


def test_a_held_lock_stops_a_second_deploy_and_a_waiting_deploy_runs_after(fresh, salt_run_cli, edge_caddy):
    holder = hecate_lock.ConsulLock(fresh, "hecate/locks/production", ttl=15, timeout=0, info={"deployment": "manual-test"})
    holder.acquire()
    try:
        code, refused = deploy(salt_run_cli, "wait=0")
        assert code == 1 and refused["status"] == "not started"
        assert "manual-test" in refused["error"] or "held" in refused["error"]
        assert edge_caddy.new_mutations() == []
        threading.Timer(3, holder.release).start()
        code, waited = deploy(salt_run_cli, "wait=30")
    finally:
        holder.release()
    assert code == 0 and waited["status"] == "success"


def test_a_stage_rejected_by_caddy_stops_the_run_and_keeps_the_previous_state(
    fresh, salt_run_cli, edge_caddy, edge_tree, pillar_files, salt_call_cli
):
    assert deploy(salt_run_cli)[0] == 0
    before = edge_caddy.config_bytes()
    bad = copy.deepcopy(edge_tree)
    taken = socket.create_server(("127.0.0.1", 0))  # a valid pillar Caddy cannot apply: its HTTP port is taken
    bad["reverse_proxy"]["caddy"]["ports"]["http"] = taken.getsockname()[1]
    pillar_files.write(bad)
    salt_call_cli.run("saltutil.refresh_pillar", wait=True)
    with taken:
        code, failed = deploy(salt_run_cli)
    assert code == 1 and failed["status"] == "failed"
    assert "routes" in failed["error"] and "rejected" in failed["error"]
    assert edge_caddy.config_bytes() == before
    assert [h["status"] for h in salt_run_cli.run("hecate.history").data] == ["success", "failed"]


def test_failed_verify_rolls_the_routes_back(fresh, salt_run_cli, edge_caddy, edge_tree, pillar_files, salt_call_cli):
    assert deploy(salt_run_cli)[0] == 0
    before = edge_caddy.config_bytes()
    broken = copy.deepcopy(edge_tree)
    broken["reverse_proxy"]["caddy"]["verify"] = {"enabled": False}  # the state trusts the change; the deploy verifies
    broken["reverse_proxy"]["caddy"]["routes"][2]["backend"] = "127.0.0.1:9"
    pillar_files.write(broken)
    salt_call_cli.run("saltutil.refresh_pillar", wait=True)
    code, failed = deploy(salt_run_cli)
    assert code == 1 and failed["error"].startswith("verify failed") and "observe.cybermonkey.dev" in failed["error"]
    assert failed["rollback"]["done"] == ["routes on hecate-edge: restored the snapshot"]
    assert edge_caddy.config_bytes() == before
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(http, "observe.cybermonkey.dev")[2]) == "grafana"


def test_rollback_returns_to_the_previous_deployment(fresh, salt_run_cli, edge_tree, pillar_files, salt_call_cli, edge_backends):
    assert deploy(salt_run_cli)[0] == 0
    changed = copy.deepcopy(edge_tree)
    plain, _ = edge_backends
    changed["reverse_proxy"]["caddy"]["routes"][1]["backend"] = f"127.0.0.1:{plain['jenkins'].port}"  # cloud -> jenkins' backend
    pillar_files.write(changed)
    salt_call_cli.run("saltutil.refresh_pillar", wait=True)
    assert deploy(salt_run_cli)[0] == 0
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "jenkins"
    result = salt_run_cli.run("hecate.rollback")
    assert result.returncode == 0, result.data
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "nextcloud"
    history = salt_run_cli.run("hecate.history").data
    assert history[-1]["kind"] == "rollback" and history[-1]["rolled_back_to"] == history[0]["id"]


def test_an_invalid_pillar_stops_deploy_before_anything_is_touched(
    fresh, salt_run_cli, edge_caddy, edge_tree, pillar_files, salt_call_cli, consul
):
    bad = copy.deepcopy(edge_tree)
    bad["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "ftp://10.0.0.1"
    pillar_files.write(bad)
    salt_call_cli.run("saltutil.refresh_pillar", wait=True)
    code, refused = deploy(salt_run_cli)
    assert code == 1 and refused["status"] == "not started"
    assert "hecate:reverse_proxy:caddy:routes[0](hera.cybermonkey.dev):backend" in refused["error"]
    assert "Passed invalid arguments" not in refused["error"]
    assert edge_caddy.new_mutations() == [] and consul.writes == []
