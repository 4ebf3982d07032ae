"""What the operator sees, through the real salt-run on a real master + minion (issue 22 items 1-4, issue 27
item 4): progress on the terminal while a run waits and works, one JSON document on stdout, the events on
the bus; one status per run; an orchestration's output sized to what changed; a rollback that asks before
it undoes the last success; and the verbs that work from the records while the pillar does not validate."""

import copy
import json
import os
import pathlib
import re
import subprocess
import threading
import time

import pytest
import yaml

from devstack.http import backend_of, get
from devstack.stack import until
from hecatelib.consul.lock import ConsulLock
from hecatelib.consul.records import Records
from tests.integration.test_orchestrate import deploy, lock_holder, running, use

pytestmark = pytest.mark.integration

LOCK = "hecate/locks/production"
STEPS = ["hecate_begin", "hecate_routes", "hecate_verify", "hecate_undo", "hecate_finish"]


class Terminal:
    """A salt-run process whose stderr is read line by line as it arrives (what an operator's terminal
    shows while the run goes on); stdout goes to a file, read once the process ended."""

    def __init__(self, cmdline, out_path):
        self.out_path = out_path
        self.out = open(out_path, "w")
        self.process = subprocess.Popen(cmdline, stdout=self.out, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def line(self, text):
        """The first stderr line so far that contains ``text``, or None."""
        return next((line for line in list(self.lines) if text in line), None)

    def alive(self):
        return self.process.poll() is None

    def wait(self, timeout=180):
        self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        self.out.close()
        return pathlib.Path(self.out_path).read_text()


@pytest.fixture
def terminal(tmp_path):
    """Start salt-run processes as :class:`Terminal`; one a failed test left running is killed (by its PID)."""
    started = []

    def start(cmdline):
        started.append(Terminal(cmdline, tmp_path / f"stdout-{len(started)}.txt"))
        return started[-1]

    yield start
    for run in started:
        if run.alive():
            run.process.kill()
            run.process.wait(timeout=30)


def without_out(cmdline):
    """salt-factories adds ``--out=json``: the operator's default outputter instead."""
    return [arg for arg in cmdline if not arg.startswith("--out")]


def test_progress_reaches_the_terminal_while_a_run_waits_and_works(
    fresh, salt_run_cli, salt_call_cli, salt_minion, salt_master, event_listener, tmp_path, terminal
):
    """Before: the runner's lines went to the master log only; nothing on the terminal until the end.
    The run cannot end while the test holds the lock, then while an operator's state run holds the
    minion: every line asserted here arrived while the run was still going."""
    holder = ConsulLock(fresh, LOCK, ttl=15, timeout=0, info={"deployment": "manual-test", "kind": "deploy"})
    holder.acquire()
    release = tmp_path / "release"
    hold = f"name=for i in $(seq 1200); do [ -e {release} ] && exit 0; sleep 0.1; done; exit 1"
    operator = salt_minion.salt_call_cli(timeout=120)
    other = threading.Thread(target=lambda: operator.run("state.single", "cmd.run", hold))
    since = time.time()
    run = terminal(salt_run_cli.cmdline("hecate.deploy"))
    try:
        waiting = until("a line saying the run waits for the lock", lambda: run.line("waiting for the deploy lock"), 60)
        assert run.alive(), run.lines
        assert "held by run manual-test (deploy)" in waiting and f"pid {os.getpid()}" in waiting and waiting.endswith("; alive"), waiting
        other.start()
        until("the operator's state run under way", lambda: running(salt_call_cli, "state.single"), 60)
        holder.release()
        until("a line saying the routes step started", lambda: run.line("routes: applying hecate.routes"), 60)
        until("a line saying the minion is busy", lambda: run.line("another state run is under way on hecate-edge"), 60)
        assert run.alive(), run.lines
    finally:
        release.touch()
        holder.release()
        if other.is_alive() or other.ident:
            other.join()
    result = json.loads(run.wait())  # one JSON document on stdout, whatever went to the terminal
    assert run.process.returncode == 0 and result["status"] == "success", (result, run.lines)
    for text in ("dry run done", f"routes: ok, {result['stages']['routes']['changed']} changed", "verify: every route answered",
                 f"deploy {result['id']}: success"):  # fmt: skip
        assert run.line(text), (text, run.lines)
    done = f"hecate/deploy/{result['id']}/done"  # the run's last event: the others reached the listener before it
    assert event_listener.wait_for_events([(salt_master.id, done)], timeout=30, after_time=since).found_all_events
    tags = {e.tag for e in event_listener.get_events([(salt_master.id, f"hecate/deploy/{result['id']}/*")], after_time=since)}
    for suffix in ("waiting", "start", "routes/start", "routes/done", "verify/start", "verify/done", "done"):
        assert f"hecate/deploy/{result['id']}/{suffix}" in tags, (suffix, sorted(tags))
    waited = next(iter(event_listener.get_events([(salt_master.id, f"hecate/deploy/{result['id']}/waiting")], after_time=since)))
    assert waited.data["deployment"] == "manual-test" and waited.data["alive"] is True and waited.data["pid"] == os.getpid()


def test_a_deploy_killed_while_it_works_never_blocks_the_next_one(fresh, salt_run_cli, salt_minion, salt_call_cli, tmp_path, terminal):
    """The brief's "a killed deploy blocks the next one silently for 45 s": ``kill -9`` of ``salt-run`` while its
    routes step waits for the minion; the next deploy takes the dead run's lock at once (same host, its pid
    gone), says so, records the killed run interrupted and deploys. Before: it waited out the session's TTL."""
    release = tmp_path / "release"
    hold = f"name=for i in $(seq 1200); do [ -e {release} ] && exit 0; sleep 0.1; done; exit 1"
    operator = salt_minion.salt_call_cli(timeout=120)
    other = threading.Thread(target=lambda: operator.run("state.single", "cmd.run", hold))
    other.start()
    try:
        until("the operator's state run under way", lambda: running(salt_call_cli, "state.single"), 60)
        killed = terminal(without_out(salt_run_cli.cmdline("hecate.deploy")))
        until("the run waiting for the minion", lambda: killed.line("another state run is under way on hecate-edge"), 120)
        killed_id = re.search(r"deploy (\S+): \d+ steps", killed.line("steps (")).group(1)
        killed.process.kill()  # SIGKILL: no finally, no release; the lock's session lives on in Consul
        killed.process.wait(timeout=30)
    finally:
        release.touch()
        other.join()
    assert fresh.kv.get(LOCK)[1] is not None  # the dead run still holds the lock
    started = time.monotonic()
    after = terminal(salt_run_cli.cmdline("hecate.deploy"))
    took_over = until("the next run taking the lock over", lambda: after.line("died holding the deploy lock"), 60)
    assert time.monotonic() - started < 15, after.lines  # salt-run's start-up and the takeover: not the TTL
    assert killed_id in took_over and "recorded as interrupted" in took_over, took_over
    result = json.loads(after.wait())
    print("the next deploy's terminal:", *after.lines, sep="\n  ")  # what an operator sees (pytest -s)
    assert after.process.returncode == 0 and result["status"] == "success", (result, after.lines)
    history = {run["id"]: run["status"] for run in salt_run_cli.run("hecate.history").data}
    assert history[killed_id] == "interrupted" and history[result["id"]] == "success", history
    assert salt_run_cli.run("hecate.show", killed_id).data["status"] == "interrupted"


def test_rollback_with_out_json_is_one_document_and_says_its_target_on_the_terminal(
    fresh, salt_run_cli, edge_tree, edge_backends, pillar_files, salt_call_cli, terminal
):
    """Before: ``hecate.rollback --out=json`` printed a progress event document, then the result."""
    assert deploy(salt_run_cli)[0] == 0
    use(pillar_files, salt_call_cli, moved_cloud(edge_tree, edge_backends))
    assert deploy(salt_run_cli)[0] == 0
    run = terminal(salt_run_cli.cmdline("hecate.rollback"))
    result = json.loads(run.wait())
    assert result["status"] == "success" and run.line(f"rolling back to {result['rolled_back_to']}"), (result, run.lines)
    as_yaml = terminal([*without_out(salt_run_cli.cmdline("hecate.deploy")), "--out=yaml"])
    (document,) = yaml.safe_load_all(as_yaml.wait())  # --out=yaml: one document too
    assert document["status"] == "success" and as_yaml.line("routes: applying hecate.routes"), (document, as_yaml.lines)


def moved_cloud(edge_tree, edge_backends):
    """The seed with cloud.cybermonkey.dev sent to jenkins' backend: one changed route."""
    changed = copy.deepcopy(edge_tree)
    plain, _ = edge_backends
    changed["reverse_proxy"]["caddy"]["routes"][1]["backend"] = f"127.0.0.1:{plain['jenkins'].port}"
    return changed


def orchestrate(salt_run_cli, terminal, *args):
    """``state.orchestrate hecate.orchestrate`` as an operator runs it: the highstate outputter on stdout."""
    run = terminal(without_out(salt_run_cli.cmdline("state.orchestrate", "hecate.orchestrate", *args)))
    return run, run.wait()


def test_state_orchestrate_output_is_sized_to_what_changed(fresh, salt_run_cli, edge_tree, terminal):
    """Before: every salt.runner step printed its runner's return as changes; a no-op ended ``changed=4`` in
    ~90 lines (``changed=12``, 474 lines, with every backend on); test=True had other states (salt.state)."""
    holder = ConsulLock(fresh, LOCK, ttl=15, timeout=0, info={"deployment": "manual-test"})
    holder.acquire()
    first = terminal(without_out(salt_run_cli.cmdline("state.orchestrate", "hecate.orchestrate")))
    try:
        until("a line saying the orchestration waits for the lock", lambda: first.line("waiting for the deploy lock"), 60)
        assert first.alive()
    finally:
        holder.release()
    out = first.wait()
    routes = len(edge_tree["reverse_proxy"]["caddy"]["routes"]) + 1
    assert first.process.returncode == 0 and "Succeeded: 5 (changed=1)" in out, out
    assert re.search(rf"ID: hecate_routes\n.*\n.*\n\s+Comment: {routes} changed", out), out
    assert first.line("routes: applying hecate.routes") and first.line("verify: every route answered"), first.lines

    noop, out = orchestrate(salt_run_cli, terminal)
    assert noop.process.returncode == 0 and "Succeeded: 5\n" in out and "changed=" not in out, out
    assert len(out.splitlines()) <= 50, out  # 8 lines a step, and the summary
    assert "Comment: skipped: its dry run found nothing to change" in out
    quiet, out = orchestrate(salt_run_cli, terminal, "--state-verbose=False")  # only what changed or failed
    assert quiet.process.returncode == 0 and "Succeeded: 5\n" in out and len(out.splitlines()) <= 10, out

    shape = salt_run_cli.run("state.orchestrate", "hecate.orchestrate", test=True)
    real = salt_run_cli.run("state.orchestrate", "hecate.orchestrate")
    for result in (shape, real):
        assert result.returncode == 0, result
        states = result.data["data"][next(iter(result.data["data"]))].values()
        assert sorted(s["__id__"] for s in states) == sorted(STEPS) and all(not s["changes"] for s in states), states
    assert salt_run_cli.run("hecate.history").data[-1]["changed"] == 0


def test_a_test_orchestration_shows_what_each_step_would_change(fresh, salt_run_cli, consul):
    result = salt_run_cli.run("state.orchestrate", "hecate.orchestrate", test=True)
    assert result.returncode == 0, result
    states = {s["__id__"]: s for s in result.data["data"][next(iter(result.data["data"]))].values()}
    assert sorted(states) == sorted(STEPS)
    assert states["hecate_routes"]["result"] is None and states["hecate_routes"]["changes"]["changed"] > 0
    assert states["hecate_begin"]["result"] is True and "would change routes" in states["hecate_begin"]["comment"]
    assert states["hecate_verify"]["result"] is True and not states["hecate_verify"]["changes"]
    assert consul.writes == []  # no lock, no record


def test_show_and_history_tell_the_same_status_of_a_run(fresh, salt_run_cli):
    """Before: a run left ``running`` without the lock (kill -9) was interrupted in history, running in show."""
    records = Records(fresh, "production")
    records.write({"kind": "deploy", "status": "running", "stages": {}}, "20260101T000000.000Z-dead01")
    shown = salt_run_cli.run("hecate.show", "20260101T000000.000Z-dead01").data
    listed = salt_run_cli.run("hecate.history").data[-1]
    assert shown["status"] == listed["status"] == "interrupted", (shown, listed)
    holder = ConsulLock(fresh, LOCK, ttl=15, timeout=0, info={"deployment": "20260101T000000.000Z-dead01"})
    holder.acquire()
    try:  # while its run holds the lock it is running, in both
        assert salt_run_cli.run("hecate.show", "20260101T000000.000Z-dead01").data["status"] == "running"
        assert salt_run_cli.run("hecate.history").data[-1]["status"] == "running"
        refused = salt_run_cli.run("hecate.deploy", "wait=0").data
    finally:
        holder.release()
    assert refused["status"] == "not started" and f"pid {os.getpid()}" in refused["error"], refused
    assert "its process is running on this host" in refused["error"], refused  # the lock knows it is alive


def test_rollback_after_an_undone_failure_asks_before_it_undoes_the_last_success(
    fresh, salt_run_cli, edge_tree, edge_backends, pillar_files, salt_call_cli, edge_caddy
):
    """Before: live already equalled the last success (the failed run was undone), so the rollback went one
    further back and silently removed the previous successful change."""
    assert deploy(salt_run_cli)[0] == 0
    changed = moved_cloud(edge_tree, edge_backends)
    use(pillar_files, salt_call_cli, changed)
    assert deploy(salt_run_cli)[0] == 0
    broken = copy.deepcopy(changed)
    broken["reverse_proxy"]["caddy"]["verify"] = {"enabled": False}  # the state trusts it; the deploy's verify does not
    broken["reverse_proxy"]["caddy"]["routes"][2]["backend"] = "127.0.0.1:9"
    use(pillar_files, salt_call_cli, broken)
    code, failed = deploy(salt_run_cli)
    assert code == 1 and failed["rollback"]["problems"] == [], failed
    first, success = [h["id"] for h in salt_run_cli.run("hecate.history").data if h["status"] == "success"]
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    mutations = len(edge_caddy.new_mutations())

    asked = salt_run_cli.run("hecate.rollback")
    assert asked.returncode == 1 and asked.data["status"] == "not started", asked.data
    assert success in asked.data["error"] and first in asked.data["error"] and "confirm=True" in asked.data["error"]
    assert asked.data["target"] == first and len(edge_caddy.new_mutations()) == mutations
    assert len(salt_run_cli.run("hecate.history").data) == 3 and backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "jenkins"

    done = salt_run_cli.run("hecate.rollback", confirm=True)
    assert done.returncode == 0 and done.data["rolled_back_to"] == first, done.data
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "nextcloud"
    assert lock_holder(fresh) is None


def test_with_a_broken_pillar_the_records_rollback_and_alerts_still_work(
    fresh, salt_run_cli, salt_master, event_listener, edge_tree, edge_backends, pillar_files, salt_call_cli
):
    """Before: every verb refused while the pillar did not validate ("the pillar did not render: ...")."""
    assert deploy(salt_run_cli)[0] == 0
    use(pillar_files, salt_call_cli, moved_cloud(edge_tree, edge_backends))
    code, changed = deploy(salt_run_cli)
    assert code == 0
    broken = moved_cloud(edge_tree, edge_backends)
    broken["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "127.0.0.1:99999"
    use(pillar_files, salt_call_cli, broken)  # the minions' own pillar is the broken one too
    http = edge_tree["reverse_proxy"]["caddy"]["ports"]["http"]

    refused = salt_run_cli.run("hecate.deploy")
    assert refused.returncode == 1 and refused.data["status"] == "not started", refused.data
    assert "hecate:reverse_proxy:caddy:routes[0](hera.cybermonkey.dev):backend" in refused.data["error"]
    assert "\n" not in refused.data["error"]  # one line
    history = salt_run_cli.run("hecate.history")
    assert history.returncode == 0 and [h["status"] for h in history.data] == ["success", "success"], history.data
    shown = salt_run_cli.run("hecate.show", changed["id"])
    assert shown.returncode == 0 and shown.data["stages"]["routes"]["changed"] == 1, shown.data

    since = time.time()
    alerted = salt_run_cli.run("hecate.reconcile", minion="hecate-edge")
    assert alerted.returncode == 1 and alerted.data["action"].startswith("alert (not healed: the pillar does not validate"), alerted.data
    alert = event_listener.wait_for_events([(salt_master.id, "hecate/alert/drift")], timeout=30, after_time=since)
    assert alert.found_all_events
    reports = salt_run_cli.run("hecate.drift", history="1h").data["reports"]  # recorded, read from the records too
    (kept,) = [r for r in reports if r["time"] >= since]  # (an earlier test's reports are within the hour too)
    assert kept["minion"] == "hecate-edge" and kept["action"] == alerted.data["action"]

    rolled = salt_run_cli.run("hecate.rollback")
    assert rolled.returncode == 0 and rolled.data["status"] == "success", rolled.data
    assert backend_of(get(http, "cloud.cybermonkey.dev")[2]) == "nextcloud"
    last = salt_run_cli.run("hecate.history").data[-1]
    assert last["kind"] == "rollback" and last["status"] == "success"
    assert "99999" in salt_run_cli.run("hecate.show", last["id"]).data["pillar_problem"]

    use(pillar_files, salt_call_cli, edge_tree)
    code, fixed = deploy(salt_run_cli)
    assert code == 0 and fixed["status"] == "success", fixed
    assert lock_holder(fresh) is None
