"""The orchestration on a real master + minion: salt-run hecate.deploy / plan / history / show / rollback
and salt-run state.orchestrate hecate.orchestrate, with the Consul lock and records (emulated Consul) and
a real Caddy. The seed pillar enables the routes stage; tests/integration/test_full_stack.py adds the rest."""

import copy
import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from devstack.http import backend_of, get
from devstack.stack import jobs_of_run, until
from hecatelib.consul.lock import ConsulLock
from hecatelib.consul.records import Records
from tests.support import browser

pytestmark = pytest.mark.integration


def deploy(salt_run_cli, *args):
    result = salt_run_cli.run("hecate.deploy", *args)
    return result.returncode, result.data


def use(pillar_files, salt_call_cli, tree):
    pillar_files.load(tree, salt_call_cli)


def lock_holder(client):
    """The session holding the deploy lock, or None: every path of a run must release it."""
    _, entry = client.kv.get("hecate/locks/production")
    return entry and entry.get("Session")


def commit_pillar(pillar_files):
    """Make the pillar root a git checkout with one commit; its HEAD."""
    git = ["git", "-C", str(pillar_files.root), "-c", "user.name=ops", "-c", "user.email=ops@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "pillar", "--allow-empty"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def test_deploy_from_nothing_then_the_second_deploy_changes_nothing(
    fresh, salt_run_cli, edge_caddy, edge_tree, salt_master, event_listener, pillar_files
):
    started = time.time()
    head = commit_pillar(pillar_files)
    code, first = deploy(salt_run_cli)
    assert code == 0, first
    routes = len(edge_tree["reverse_proxy"]["caddy"]["routes"]) + 1  # and the catch-all
    assert first["status"] == "success" and first["stages"]["routes"]["changed"] == routes  # things changed, not states
    assert list(first["stages"]) == ["routes", "verify"] and first["stages"]["verify"]["ok"] is True
    shown = salt_run_cli.run("hecate.show", first["id"])
    assert shown.returncode == 0, shown
    assert shown.data["pillar"]["commit"] == head and shown.data["deployed_by"].split("@")[0]
    assert "tree" not in shown.data and any(line.startswith("added: ") for line in shown.data["stages"]["routes"]["changes"]), shown.data[
        "stages"
    ]
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "nextcloud"
    mutations = edge_caddy.new_mutations()

    noop_started = time.time()
    code, second = deploy(salt_run_cli)
    assert code == 0 and second["status"] == "success"
    assert second["stages"]["routes"]["changed"] == 0
    assert edge_caddy.new_mutations() == mutations  # zero admin writes
    assert all(stage.get("skipped") for stage in second["stages"].values()), second["stages"]  # nothing to change: no step ran
    jobs = jobs_of_run(event_listener, salt_master.id, second, noop_started)
    assert jobs == ["state.apply"], jobs  # ONE job: the dry run; nothing will write, so undo reads nothing

    history = salt_run_cli.run("hecate.history").data
    assert [h["id"] for h in history] == [first["id"], second["id"]]
    assert all(h["status"] == "success" for h in history)
    assert [h["changed"] for h in history] == [routes, 0] and history[0]["commit"] == head[:12]
    tags = {e.tag for e in event_listener.get_events([(salt_master.id, "hecate/deploy/*")], after_time=started)}
    assert f"hecate/deploy/{first['id']}/routes/start" in tags and f"hecate/deploy/{first['id']}/done" in tags


def running(salt_call_cli, fun):
    """Whether a job of ``fun`` runs on the minion now (``saltutil.running``, which lists, not matches)."""
    jobs = salt_call_cli.run("saltutil.running").data
    jobs = jobs.get("local") if isinstance(jobs, dict) else jobs  # salt-factories unwraps "local" only sometimes
    return any(isinstance(job, dict) and job.get("fun") == fun for job in jobs or [])


def test_a_compound_job_breaks_every_state_run_beside_it_so_hecate_publishes_none(fresh, salt_master, salt_minion, salt_call_cli, tmp_path):
    """Salt's behaviour behind a rule of the runner: ``saltutil.is_running`` (every state run's "is
    another state run running?" check, salt/modules/saltutil.py) fnmatches each running job's ``fun``,
    which is a list for a compound job: a state run that starts meanwhile fails with a TypeError
    ("Passed invalid arguments"). Seen in bench/reconcile.py as a deploy's Nomad stage failing beside
    the reactor's compound dry run. The runner publishes single-function jobs only (the no-op tests
    list them)."""
    import salt.client

    release = tmp_path / "release"  # the compound job runs until the test is done with it: no timing decides
    hold = f"sh -c 'for i in $(seq 1200); do [ -e {release} ] && exit 0; sleep 0.1; done; exit 1'"
    client = salt.client.LocalClient(c_path=salt_master.config_file)
    try:
        client.run_job(salt_minion.id, ["cmd.run"], [[hold]], tgt_type="glob")  # compound, not waited for
        until("the compound job running", lambda: running(salt_call_cli, ["cmd.run"]), 60)
        broken = salt_call_cli.run("state.apply", "hecate.routes", test=True)
    finally:
        release.touch()
        client.destroy()
    assert broken.returncode != 0 and "Passed invalid arguments" in broken.stdout + broken.stderr, broken
    until("state runs working again", lambda: salt_call_cli.run("state.apply", "hecate.routes", test=True).returncode == 0, 30)


def test_reconcile_leaves_a_run_under_way_alone(fresh, salt_run_cli, salt_master, event_listener):
    """A drift report while a run holds the deploy lock is not acted on, and no dry run goes to the
    minion: Salt refuses a state run beside another one, so the run's next stage would fail."""
    holder = ConsulLock(fresh, "hecate/locks/production", ttl=15, timeout=0, info={"deployment": "manual-test"})
    holder.acquire()
    try:
        since = time.time()
        result = salt_run_cli.run("hecate.reconcile", minion="hecate-edge")
        assert result.returncode == 0 and result.data["action"].startswith("none (the deploy lock is held by manual-test"), result.data
        ended = event_listener.wait_for_events([(salt_master.id, "salt/run/*/ret")], timeout=30, after_time=since)
        assert ended.found_all_events
        assert not event_listener.get_events([(salt_master.id, "salt/job/*/new")], after_time=since)
    finally:
        holder.release()


def test_a_stage_waits_for_another_state_run_on_its_minion(
    fresh, salt_run_cli, salt_call_cli, salt_master, salt_minion, event_listener, edge_tree, tmp_path
):
    """Salt refuses a state run while another runs on the minion ("is running as PID"): an operator's, a
    plan's or status's dry run, a reconcile begun before the lock. A refused run applied nothing, so the
    stage asks again once the other run ended instead of failing the deploy. The operator's run holds
    until the test has seen the deploy refused, so no timing decides what is tested."""
    release = tmp_path / "release"
    hold = f"name=for i in $(seq 1200); do [ -e {release} ] && exit 0; sleep 0.1; done; exit 1"
    operator = salt_minion.salt_call_cli(timeout=120)  # its own: one salt-factories CLI runs one process at a time
    other = threading.Thread(target=lambda: operator.run("state.single", "cmd.run", hold))
    other.start()
    outcome = {}
    try:
        until("the operator's state run under way", lambda: running(salt_call_cli, "state.single"), 60)
        since = time.time()
        deploying = threading.Thread(target=lambda: outcome.update(deployed=deploy(salt_run_cli)))
        deploying.start()
        until("the deploy's state run refused", lambda: refused_as_busy(event_listener, salt_master.id, salt_minion.id, since), 60)
    finally:
        release.touch()
        other.join()
    deploying.join()
    code, result = outcome["deployed"]
    assert code == 0 and result["status"] == "success", result
    assert backend_of(get(edge_tree["reverse_proxy"]["caddy"]["ports"]["http"], "cloud.cybermonkey.dev")[2]) == "nextcloud"


def refused_as_busy(event_listener, master_id, minion_id, since):
    """Whether a state.apply returned from ``minion_id`` since ``since`` as Salt's "is running as PID"."""
    returns = event_listener.get_events([(master_id, f"salt/job/*/ret/{minion_id}")], after_time=since)
    return any(e.data.get("fun") == "state.apply" and "is running as PID" in str(e.data.get("return")) for e in returns)


def test_dry_runs_write_nothing(fresh, salt_run_cli, edge_caddy, consul):
    before = edge_caddy.config_bytes()
    planned = salt_run_cli.run("hecate.plan").data
    assert planned["would_change"] == len(fresh_routes(salt_run_cli)) + 1 and planned["stages"]["routes"]["ok"]
    via_deploy = salt_run_cli.run("hecate.deploy", test=True).data
    assert via_deploy["stages"].keys() == planned["stages"].keys()
    orchestrated = salt_run_cli.run("state.orchestrate", "hecate.orchestrate", test=True)
    assert orchestrated.returncode == 0, orchestrated
    assert edge_caddy.config_bytes() == before and edge_caddy.new_mutations() == []
    assert consul.writes == []  # no lock, no record
    drift = salt_run_cli.run("hecate.status")
    assert drift.returncode == 1, drift  # cron and alerting see drift
    assert drift.data["in_sync"] is False and drift.data["backends"]["routes"]["state"] == "drift"
    assert deploy(salt_run_cli)[0] == 0
    in_sync = salt_run_cli.run("hecate.status")
    assert in_sync.returncode == 0 and in_sync.data["in_sync"] is True


def test_state_orchestrate_runs_the_stages_under_the_lock_and_records(fresh, salt_run_cli, edge_caddy, edge_tree):
    result = salt_run_cli.run("state.orchestrate", "hecate.orchestrate")
    assert result.returncode == 0, result.stdout
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(http, "s3.cybermonkey.dev")[2]) == "minio-console"
    history = salt_run_cli.run("hecate.history").data
    assert [(h["kind"], h["status"]) for h in history] == [("orchestrate", "success")]
    assert history[0]["changed"] == len(edge_tree["reverse_proxy"]["caddy"]["routes"]) + 1  # and the catch-all
    assert lock_holder(fresh) is None
    again = salt_run_cli.run("state.orchestrate", "hecate.orchestrate")
    assert again.returncode == 0
    assert edge_caddy.new_mutations() == [("POST", "/config/")]  # the first run's one load; none the second time
    assert lock_holder(fresh) is None


def test_state_orchestrate_rolls_back_a_failed_stage_records_it_and_releases_the_lock(
    fresh, salt_run_cli, edge_caddy, edge_tree, pillar_files, salt_call_cli
):
    assert salt_run_cli.run("state.orchestrate", "hecate.orchestrate").returncode == 0
    before = edge_caddy.config_bytes()
    broken = copy.deepcopy(edge_tree)
    broken["reverse_proxy"]["caddy"]["verify"] = {"enabled": False}  # the routes state trusts the change; verify does not
    broken["reverse_proxy"]["caddy"]["routes"][2]["backend"] = "127.0.0.1:9"
    use(pillar_files, salt_call_cli, broken)
    failed = salt_run_cli.run("state.orchestrate", "hecate.orchestrate")
    assert failed.returncode != 0, failed.stdout  # the failed salt.runner step fails the orchestration
    steps = {state["__id__"]: state for state in failed.data["data"][next(iter(failed.data["data"]))].values()}
    assert steps["hecate_verify"]["result"] is False and steps["hecate_undo"]["result"] is True
    assert steps["hecate_finish"]["__run_num__"] == max(s["__run_num__"] for s in steps.values())
    assert edge_caddy.config_bytes() == before  # undo loaded the snapshot back
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(http, "observe.cybermonkey.dev")[2]) == "grafana"
    last = salt_run_cli.run("hecate.history").data[-1]
    assert last["status"] == "failed" and last["error"].startswith("verify failed") and "observe.cybermonkey.dev" in last["error"]
    record = salt_run_cli.run("hecate.show", last["id"]).data
    assert record["rollback"] == {"done": ["caddy on hecate-edge: restored the snapshot"], "problems": []}
    assert lock_holder(fresh) is None


def test_state_orchestrate_waits_for_the_lock_then_stops_without_touching_anything(
    fresh, salt_run_cli, edge_caddy, edge_tree, pillar_files, salt_call_cli
):
    impatient = copy.deepcopy(edge_tree)
    impatient["consul"] = {"lock": {"wait": 0}}
    use(pillar_files, salt_call_cli, impatient)
    holder = ConsulLock(fresh, "hecate/locks/production", ttl=15, timeout=0, info={"deployment": "manual-test"})
    holder.acquire()
    try:
        refused = salt_run_cli.run("state.orchestrate", "hecate.orchestrate")
        assert lock_holder(fresh) == holder.session  # finish released nothing it did not take
    finally:
        holder.release()
    assert refused.returncode != 0
    assert "manual-test" in json.dumps(refused.data)
    assert edge_caddy.new_mutations() == []
    assert salt_run_cli.run("hecate.history").data == []


def test_unknown_stage_and_bad_pillar_are_one_line_refusals(fresh, salt_run_cli, pillar_files, salt_call_cli, edge_caddy):
    unknown = salt_run_cli.run("hecate.deploy", "only=[routez]")
    assert unknown.returncode == 1 and unknown.data["status"] == "not started"
    assert unknown.data["error"] == "unknown stage 'routez'; the stages are: terraform, nomad_stateful, nomad_core, nomad_authentik, " \
        "nomad_apps, authentik, dns, routes"  # fmt: skip
    (pillar_files.root / "hecate.sls").write_text("hecate:\n  global:\n    domain: x\n   environment: y\n")  # bad indentation
    salt_call_cli.run("saltutil.refresh_pillar", wait=True)
    broken = salt_run_cli.run("hecate.deploy")
    assert broken.returncode == 1 and "line 4, column 4" in broken.data["error"], broken.data  # not "see master log"
    assert edge_caddy.new_mutations() == []


def fresh_routes(salt_run_cli):
    return salt_run_cli.run("pillar.show_pillar", "hecate-master").data["hecate"]["reverse_proxy"]["caddy"]["routes"]


def test_a_held_lock_stops_a_second_deploy_and_a_waiting_deploy_runs_after(fresh, salt_run_cli, edge_caddy):
    holder = ConsulLock(fresh, "hecate/locks/production", ttl=15, timeout=0, info={"deployment": "manual-test"})
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
    fresh, salt_run_cli, edge_caddy, edge_tree, pillar_files, salt_call_cli, tmp_path
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

    # the report an operator opens, in a real browser: both runs, the failed one marked; a hostile string in a
    # drift report (a minion's event carries it) shown as text, not run as markup
    hostile = '<img src=x onerror="document.title=1">'
    drift_reports = Records(fresh, "production", "hecate/drift")
    kept = drift_reports.write({"time": time.time(), "minion": hostile, "backend": "caddy", "count": 1,
                                "drift": ["changed: observe.cybermonkey.dev"], "action": "alert"})  # fmt: skip
    page = tmp_path / "report.html"
    try:
        written = salt_run_cli.run("hecate.report", f"path={page}")
    finally:
        drift_reports.delete(kept["id"])
    assert written.returncode == 0 and written.data["path"] == str(page) and written.data["runs"] == 2, written
    dom = browser.dump_dom(page)
    rows = re.findall(r'<tr class="run (\w+)">(.*?)</tr>', dom)
    assert [status for status, _ in rows] == ["failed", "success"]  # newest first
    assert '<span class="outcome failed">failed</span>' in rows[0][1] and "rejected" in rows[0][1]
    assert '&lt;img src=x onerror="document.title=1"&gt;' in dom and "<img" not in dom
    assert "<title>hecate: production</title>" in dom  # the title is the page's own: nothing ran


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
    assert failed["rollback"]["done"] == ["caddy on hecate-edge: restored the snapshot"]
    assert edge_caddy.config_bytes() == before
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(http, "observe.cybermonkey.dev")[2]) == "grafana"


def test_rollback_returns_to_the_last_deployment_that_differs_from_live(
    fresh, salt_run_cli, edge_tree, pillar_files, salt_call_cli, edge_backends, edge_caddy
):
    assert deploy(salt_run_cli)[0] == 0
    changed = copy.deepcopy(edge_tree)
    plain, _ = edge_backends
    changed["reverse_proxy"]["caddy"]["routes"][1]["backend"] = f"127.0.0.1:{plain['jenkins'].port}"  # cloud -> jenkins' backend
    pillar_files.write(changed)
    salt_call_cli.run("saltutil.refresh_pillar", wait=True)
    assert deploy(salt_run_cli)[0] == 0
    assert deploy(salt_run_cli)[0] == 0  # a no-op deploy after the change: not a point to roll back to
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "jenkins"
    first = salt_run_cli.run("hecate.history").data[0]["id"]
    mutations = len(edge_caddy.new_mutations())
    dry = salt_run_cli.run("hecate.rollback", test=True)
    assert dry.returncode == 0 and dry.data["target"] == first and dry.data["test"] is True, dry.data
    assert dry.data["stages"]["routes"]["changes"], dry.data  # what the rollback would change
    assert len(edge_caddy.new_mutations()) == mutations and len(salt_run_cli.run("hecate.history").data) == 3
    result = salt_run_cli.run("hecate.rollback")
    assert result.returncode == 0, result.data
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "nextcloud"
    history = salt_run_cli.run("hecate.history").data
    assert history[-1]["kind"] == "rollback" and history[-1]["rolled_back_to"] == first
    assert lock_holder(fresh) is None


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
    refused_run = salt_run_cli.run("hecate.deploy")
    assert "Traceback" not in refused_run.stdout + refused_run.stderr  # the ext_pillar refuses without one


def test_ctrl_c_is_one_line_releases_the_lock_and_records_the_run_as_interrupted(fresh, salt_run_cli, edge_caddy):
    process = subprocess.Popen(salt_run_cli.cmdline("hecate.deploy"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while not (lock_holder(fresh) and fresh.kv.get("hecate/deployments/", recurse=True)[1]):  # begun: locked, recorded
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    # Salt's CLI may print interpreter-teardown noise after our answer (an asyncio loop's __del__, its
    # unclosed Runner): not a traceback of the run; everything else counts.
    err = re.sub(r"Exception ignored in: <function BaseEventLoop.__del__.*?AttributeError: [^\n]*\n", "", err, flags=re.S)
    err = "\n".join(line for line in err.splitlines() if not line.startswith("unclosed Runner <salt.runner.Runner"))
    assert "hecate: Ctrl-C: stopping after the current step (again to stop now)" in err, err  # said at once, on the terminal
    err = re.sub(r"^\[\d\d:\d\d:\d\d\] hecate: .*\n?", "", err, flags=re.M)  # the run's progress lines
    assert "Traceback" not in out + err and len(err.strip().splitlines()) <= 2, err
    assert "interrupted" in out
    assert lock_holder(fresh) is None
    assert [h["status"] for h in salt_run_cli.run("hecate.history").data] == ["interrupted"]


def test_500_routes_deploy_no_op_change_one_and_roll_back_at_one_reload_each(
    fresh, salt_run_cli, edge_tree, pillar_files, salt_call_cli, edge_backends, edge_caddy
):
    """bench/scale.py at 500 routes instead of 5000, counted instead of timed: the first deploy is one reload,
    a no-op deploy sends Caddy no write, a one-route change and its rollback are one reload each, and the
    record keeps every route (a tree of any size: records are blobs)."""
    plain, _ = edge_backends
    many = copy.deepcopy(edge_tree)
    many["reverse_proxy"]["caddy"]["routes"] += [
        {"domain": f"app{i}.cybermonkey.dev", "backend": f"127.0.0.1:{plain['grafana'].port}", "service": f"app{i}"}
        for i in range(500 - len(edge_tree["reverse_proxy"]["caddy"]["routes"]))
    ]
    use(pillar_files, salt_call_cli, many)
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    code, first = deploy(salt_run_cli)
    assert code == 0 and first["stages"]["routes"]["changed"] >= 500, first
    assert len(edge_caddy.new_mutations()) == 1
    code, noop = deploy(salt_run_cli)
    assert code == 0 and noop["stages"]["routes"].get("skipped") and len(edge_caddy.new_mutations()) == 1, noop

    moved = copy.deepcopy(many)
    last = moved["reverse_proxy"]["caddy"]["routes"][-1]
    last["backend"] = f"127.0.0.1:{plain['jenkins'].port}"
    use(pillar_files, salt_call_cli, moved)
    code, change = deploy(salt_run_cli)
    assert code == 0 and change["stages"]["routes"]["changed"] == 1 and len(edge_caddy.new_mutations()) == 2, change
    assert backend_of(get(http, last["domain"])[2]) == "jenkins"
    back = salt_run_cli.run("hecate.rollback")  # to the newest success before the change: the no-op's (the first's tree)
    assert back.returncode == 0 and back.data["rolled_back_to"] == noop["id"], back.data
    assert len(edge_caddy.new_mutations()) == 3 and backend_of(get(http, last["domain"])[2]) == "grafana"
    recorded = salt_run_cli.run("hecate.show", first["id"], tree=True).data["tree"]
    assert len(recorded["reverse_proxy"]["caddy"]["routes"]) == 500
