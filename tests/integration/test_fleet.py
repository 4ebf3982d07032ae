"""Three edges, each its own minion with its own real Caddy, one master: the routes stage rolls out to
one canary edge first, then the rest in batches (hecate:deployment:edge_batch), and a change that fails
on the canary never reaches the other two. The master runs hecate's drift reactor as operators enable
it; edges get the drift beacon only where a test applies hecate.drift."""

import copy
import json
import time

import pytest
import yaml

from devstack import host
from devstack.caddy import Caddy, free_port
from devstack.http import backend_of, get
from devstack.pillars import local_seed_tree
from devstack.stack import all_at_once, master_overrides, until

pytestmark = pytest.mark.integration

EDGES = ("fleet-edge-1", "fleet-edge-2", "fleet-edge-3")


@pytest.fixture(scope="module")
def fleet_caddies(integration_dir):
    caddies = {edge: Caddy(integration_dir / f"f{n}").start() for n, edge in enumerate(EDGES)}
    yield caddies
    for caddy in caddies.values():
        caddy.stop()


@pytest.fixture(scope="module")
def fleet_trees(fleet_caddies, edge_backends):
    plain, secure = edge_backends
    trees = {}
    for edge, caddy in fleet_caddies.items():
        ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
        tree = local_seed_tree({k: b.port for k, b in plain.items()}, secure.port, ports, caddy.admin)
        tree["deployment"] = {"edge_batch": 2, "targets": {"controller": "fleet-edge-1", "edge": "fleet-edge-*", "tgt_type": "glob"}}
        trees[edge] = tree
    return trees


class FleetPillar:
    """One pillar file per edge (each edge has its own Caddy and ports), the same routes."""

    def __init__(self, root):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        top = {"base": {edge: [edge.replace("-", "_")] for edge in EDGES}}
        (root / "top.sls").write_text(yaml.safe_dump(top))

    def write(self, trees):
        for edge, tree in trees.items():
            (self.root / f"{edge.replace('-', '_')}.sls").write_text(yaml.safe_dump({"hecate": tree}, sort_keys=False))


@pytest.fixture(scope="module")
def fleet_pillar(integration_dir, fleet_trees):
    pillar = FleetPillar(integration_dir / "fleet-pillar")
    pillar.write(fleet_trees)
    return pillar


@pytest.fixture(scope="module")
def fleet_master(salt_factories, fleet_pillar, vault, consul, integration_dir):
    overrides = master_overrides(
        vault,
        consul,
        integration_dir / "roots",
        pillar_roots={"base": [str(fleet_pillar.root)]},
        reactor=[{"hecate/drift/*/*": ["salt://reactor/hecate_drift.sls"]}],  # as docs/reconcile.md enables it
    )
    factory = salt_factories.salt_master_daemon("fleet-master", overrides=overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def fleet(fleet_master):
    # loop_interval 1 s, Salt's default: Salt runs beacons once a second but counts their interval in
    # loop_interval ticks, so salt-factories' 0.05 s would stretch a 10 s beacon interval to 200 s
    minions = [fleet_master.salt_minion_daemon(edge, overrides={"loop_interval": 1, **host.opts()}) for edge in EDGES]
    try:
        all_at_once(lambda minion: minion.start(), minions)
        synced = fleet_master.salt_cli(timeout=120).run("saltutil.sync_all", minion_tgt="fleet-edge-*")
        assert synced.returncode == 0 and sorted(synced.data) == list(EDGES), synced
        assert all("modules.caddy" in synced.data[edge]["modules"] for edge in EDGES), synced.data
        run = fleet_master.salt_run_cli(timeout=300)
        assert "runners.hecate" in run.run("saltutil.sync_all").data["runners"]
        yield run
    finally:
        all_at_once(lambda minion: minion.terminate(), minions)


def _serves(tree, domain="cloud.cybermonkey.dev"):
    status, _, body = get(tree["reverse_proxy"]["caddy"]["ports"]["http"], domain)
    return status, (backend_of(body) if status == 200 else None)


def test_a_change_failing_on_the_canary_never_reaches_the_other_edges(fleet, fleet_caddies, fleet_trees, fleet_pillar):
    first = fleet.run("hecate.deploy", minion=EDGES[0])
    assert first.data, (first.stdout, first.stderr)
    assert first.returncode == 0 and first.data["status"] == "success", first
    for edge in EDGES:
        assert _serves(fleet_trees[edge]) == (200, "nextcloud"), edge
    before = {edge: (caddy.config_bytes(), len(caddy.mutations())) for edge, caddy in fleet_caddies.items()}

    started = time.monotonic()
    broken = copy.deepcopy(fleet_trees)
    for tree in broken.values():
        cloud = next(r for r in tree["reverse_proxy"]["caddy"]["routes"] if r["domain"] == "cloud.cybermonkey.dev")
        cloud["backend"] = "127.0.0.1:9"  # nothing listens: the canary's post-write check fails
    fleet_pillar.write(broken)
    try:
        bad = fleet.run("hecate.deploy", minion=EDGES[0])
        assert bad.returncode == 1 and bad.data["status"] == "failed", bad.data
        assert "fleet-edge-2, fleet-edge-3 not reached" in bad.data["error"], bad.data["error"]
        print(f"3-edge rollout, failing canary: {time.monotonic() - started:.1f} s, edges touched: {EDGES[0]} (restored)")
        for edge in EDGES[1:]:  # never touched: not one admin write
            assert (fleet_caddies[edge].config_bytes(), len(fleet_caddies[edge].mutations())) == before[edge], edge
        for edge in EDGES:
            assert _serves(fleet_trees[edge]) == (200, "nextcloud"), edge  # the canary restored its own snapshot
    finally:
        fleet_pillar.write(fleet_trees)


def _hand_edit(caddy, domain, new_host):
    """What an operator's curl to the admin API does: move ``domain``'s route (``hecate_route_*``) to another
    host. Not the guard route its profile shares with every exact host (hecate_guard_*): that is an edit of
    every route of the profile, which the drift counts as such."""
    config = json.loads(caddy.config_bytes())
    for route in config["apps"]["http"]["servers"]["hecate"]["routes"]:
        for match in route.get("match", []) if route.get("@id", "").startswith("hecate_route_") else ():
            if domain in match.get("host", []):
                match["host"] = [new_host]
    caddy.load(config)


def test_a_hand_edit_is_reported_with_alert_and_healed_with_heal(fleet, fleet_caddies, fleet_trees, fleet_pillar):
    assert fleet.run("hecate.deploy", minion=EDGES[0]).data["status"] == "success"
    edge, caddy = EDGES[1], fleet_caddies[EDGES[1]]
    _hand_edit(caddy, "cloud.cybermonkey.dev", "elsewhere.example.net")
    assert _serves(fleet_trees[edge])[0] == 404

    refused = fleet.run("hecate.reconcile", minion="fleet-edge-*")  # an event's text never becomes a glob target
    assert refused.returncode == 1 and "one minion id" in refused.data["error"], refused.data
    alert = fleet.run("hecate.reconcile", minion=edge)  # policy alert (the default): report only
    assert alert.returncode == 1 and alert.data["action"].startswith("alert") and alert.data["count"] == 1, alert.data
    assert _serves(fleet_trees[edge])[0] == 404

    healing = copy.deepcopy(fleet_trees)
    for tree in healing.values():
        tree["reconcile"] = {"policy": "heal", "max_changes": 5}
    fleet_pillar.write(healing)
    try:
        others = {other: len(fleet_caddies[other].admin_log()) for other in EDGES if other != edge}
        healed = fleet.run("hecate.reconcile", minion=edge)
        assert healed.returncode == 0 and healed.data["action"] == "healed", healed.data
        # the heal runs on the drifted edge alone (its dry run, write and verify): the others are not even read
        assert {other: len(fleet_caddies[other].admin_log()) for other in others} == others
        assert healed.data["heal"]["kind"] == "heal" and healed.data["heal"]["status"] == "success"
        assert _serves(fleet_trees[edge]) == (200, "nextcloud")
        history = fleet.run("hecate.drift", history="1h", minion=edge)
        actions = [(r["minion"], r["action"]) for r in history.data["reports"]][-2:]
        assert actions == [(edge, "alert (policy alert)"), (edge, "healed")], history.data
    finally:
        fleet_pillar.write(fleet_trees)


INTERVAL = 4  # seconds: short, so the three intervals this test waits for stay cheap


class AdminLog:
    """The admin requests one Caddy logs from now on: (unix seconds as Caddy logged it, method, uri)."""

    def __init__(self, caddy):
        self.caddy, self.start = caddy, len(caddy.admin_log())

    def new(self):
        return self.caddy.admin_log()[self.start :]


def test_the_live_reactor_alerts_or_heals_what_the_beacon_reports(
    fleet_master, fleet, fleet_caddies, fleet_trees, fleet_pillar, event_listener
):
    """As operators run it: hecate.drift applied on two edges (interval 10 s), the master's reactor on
    hecate/drift/*/*. Nothing drifted: one GET per interval and no write. A hand edit on the alert edge is
    reported and recorded and its Caddy is left alone; on the heal edge the route serves again by itself."""
    assert fleet.run("hecate.deploy", minion=EDGES[0]).data["status"] == "success"
    alerting, healing = EDGES[1], EDGES[2]
    trees = copy.deepcopy(fleet_trees)
    trees[alerting]["reconcile"] = {"interval": INTERVAL}  # policy alert, the default
    trees[healing]["reconcile"] = {"interval": INTERVAL, "policy": "heal"}
    fleet_pillar.write(trees)
    salt = fleet_master.salt_cli(timeout=120)
    logs = {edge: AdminLog(fleet_caddies[edge]) for edge in (alerting, healing)}
    try:
        installed = salt.run("state.apply", "hecate.drift", minion_tgt="fleet-edge-[23]")
        assert installed.returncode == 0 and sorted(installed.data) == [alerting, healing], installed

        until(f"the beacon's first read on {alerting}", logs[alerting].new, 3 * INTERVAL)
        edited = time.time()
        _hand_edit(fleet_caddies[alerting], "cloud.cybermonkey.dev", "elsewhere.example.net")
        writes = len(fleet_caddies[alerting].mutations())
        alert = event_listener.wait_for_events([(fleet_master.id, "hecate/alert/drift")], timeout=3 * INTERVAL + 60, after_time=edited)
        assert alert.found_all_events, f"no hecate/alert/drift; {alerting} logged {logs[alerting].new()}"
        sent = event_listener.get_events([(fleet_master.id, f"hecate/drift/{alerting}/caddy")], after_time=edited)
        assert [e.data["id"] for e in sent] == [alerting]  # the beacon's event, as the master authenticated it
        assert len(fleet_caddies[alerting].mutations()) == writes and _serves(trees[alerting])[0] == 404  # not touched

        reads = until(f"two beacon reads on {healing}", lambda: len(logs[healing].new()) >= 2 and logs[healing].new()[:2], 3 * INTERVAL)
        assert [(method, uri) for _, method, uri in reads] == [("GET", "/config/")] * 2  # nothing drifted: reads only
        gap = reads[1][0] - reads[0][0]
        assert 0.6 * INTERVAL <= gap <= 1.5 * INTERVAL, gap  # one GET per interval (a late read under load shortens the next gap)

        edited = time.time()
        _hand_edit(fleet_caddies[healing], "cloud.cybermonkey.dev", "elsewhere.example.net")
        assert _serves(trees[healing])[0] == 404
        reports = fleet.run("hecate.drift", history="1h", minion=alerting).data["reports"]  # while the beacon waits
        assert (reports[-1]["minion"], reports[-1]["action"], reports[-1]["count"]) == (alerting, "alert (policy alert)", 1)
        until(f"{healing} healed", lambda: _serves(trees[healing]) == (200, "nextcloud"), 3 * INTERVAL + 60)
        healed = time.time()

        def heal_recorded():  # once the heal run is verified, a moment after the route serves
            reports = fleet.run("hecate.drift", history="1h", minion=healing).data["reports"]
            return reports[-1] if (reports[-1]["minion"], reports[-1]["action"]) == (healing, "healed") else None

        report = until("the heal recorded in hecate.drift's history", heal_recorded, 60)
        heal = fleet.run("hecate.show", report["run"], minion=healing).data  # the heal is a recorded run
        assert (heal["kind"], heal["status"], heal["drift"]["minion"]) == ("heal", "success", healing), heal
        detected = next(t for t, _, _ in logs[healing].new() if t >= edited)  # the beacon read that saw the edit
        print(
            f"hand edit to healed at interval {INTERVAL} s: {healed - edited:.1f} s "
            f"(waiting for the beacon {detected - edited:.1f} s, event + reactor + heal run {healed - detected:.1f} s); "
            f"idle: {gap:.1f} s between two GETs, no write"
        )

        # the same edit after the heal is a new drift (issue 27): reported and healed again, by a new run
        _hand_edit(fleet_caddies[healing], "cloud.cybermonkey.dev", "elsewhere.example.net")
        until(f"{healing} healed again", lambda: _serves(trees[healing]) == (200, "nextcloud"), 3 * INTERVAL + 60)
        again = until("the second heal recorded", lambda: (found := heal_recorded()) and found["run"] != report["run"] and found, 60)
        assert fleet.run("hecate.show", again["run"], minion=healing).data["status"] == "success"
    finally:
        removed = salt.run("state.single", "beacon.absent", "hecate_drift", "save=True", minion_tgt="fleet-edge-[23]")
        fleet_pillar.write(fleet_trees)
        assert removed.returncode == 0, removed


def test_a_change_rolls_out_canary_then_batches_each_one_salt_job_and_a_no_op_is_one_round(
    fleet_master, fleet, fleet_caddies, fleet_trees, fleet_pillar, event_listener
):
    """bench/fleet.py with 3 edges at batch 2: the canary alone, then the other two in one batch; each batch is
    one Salt job published to a list of minions (Salt's targeting and returns do the fan-out). A no-op deploy
    then reaches every edge in one dry-run job and sends no admin write."""
    assert fleet.run("hecate.deploy", minion=EDGES[0]).data["status"] == "success"
    moved = copy.deepcopy(fleet_trees)
    for tree in moved.values():
        cloud = next(r for r in tree["reverse_proxy"]["caddy"]["routes"] if r["domain"] == "cloud.cybermonkey.dev")
        cloud["backend"] = next(r["backend"] for r in tree["reverse_proxy"]["caddy"]["routes"] if r["service"] == "grafana")
    fleet_pillar.write(moved)
    try:
        since = time.time()
        changed = fleet.run("hecate.deploy", minion=EDGES[0])
        assert changed.returncode == 0 and changed.data["status"] == "success", changed.data
        for edge in EDGES:
            assert _serves(moved[edge]) == (200, "grafana"), edge
        published = event_listener.get_events([(fleet_master.id, "salt/job/*/new")], after_time=since)
        applies = sorted((e.data for e in published if e.data["fun"] == "state.apply"), key=lambda d: d["jid"])
        rollout = [d["tgt"] for d in applies if d["tgt_type"] == "list" and "hecate.routes" in str(d["arg"][0]).split(",")]
        assert rollout == [EDGES[0], ",".join(EDGES[1:])], rollout  # the dry run before it targets the role (a glob)

        writes = {edge: len(caddy.mutations()) for edge, caddy in fleet_caddies.items()}
        since = time.time()
        noop = fleet.run("hecate.deploy", minion=EDGES[0])
        assert noop.returncode == 0 and noop.data["stages"]["routes"].get("skipped"), noop.data

        def dry_runs():  # the listener gets the master's events a moment after the run returned: wait for them
            published = event_listener.get_events([(fleet_master.id, "salt/job/*/new")], after_time=since)
            return [e.data for e in published if e.data["fun"] == "state.apply" and "hecate.routes" in str(e.data["arg"][0]).split(",")]

        dry = until("the no-op's dry-run job on the bus", dry_runs, 30)
        assert len(dry) == 1 and sorted(dry[0]["minions"]) == list(EDGES), dry  # every edge in one job
        assert {edge: len(caddy.mutations()) for edge, caddy in fleet_caddies.items()} == writes
    finally:
        fleet_pillar.write(fleet_trees)
