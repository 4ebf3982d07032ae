"""The edge between Salt runs, against a real Caddy: the drift beacon, a restart, certificates.

- drift: after a good run, the beacon costs one GET per interval and fires nothing; a hand edit through
  the admin API fires ``hecate/drift/<minion>/caddy`` once, naming the route; the next run heals it; the
  same edit after that repair is reported again; while a state run is in progress the beacon sleeps.
- restart: Caddy started the way hecate's Nomad job starts it (``caddy run --resume --config <bootstrap>``)
  serves every route again after a kill -9, with no Salt run in between.
"""

import copy
import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from hecatelib.caddy import config as caddy_config
from tests.emulators.nomad import hcl_to_job
from tests.support.caddy import Caddy, caddy_binary
from tests.support.http import backend_of, get
from tests.support.pillars import local_seed_tree
from tests.support.stack import until
from tests.unit.test_nomad_templates import render


def converge(loaders):
    return loaders.states.caddy.routes_managed(name="hecate_routes")


@pytest.fixture
def beacon(make_beacon, local_tree):
    """The hecate_drift beacon of a minion whose pillar is ``local_tree``."""
    return make_beacon(local_tree)


def test_nothing_applied_yet_means_no_read_and_no_event(beacon, caddy):
    assert beacon([{"interval": 60}]) == []
    assert beacon.events == [] and caddy.admin_requests() == []


def test_no_drift_costs_one_get_and_fires_nothing(beacon, caddy):
    assert converge(beacon.loaders).result is True
    caddy.mark()
    before = len(caddy.admin_requests())
    for _ in range(3):
        beacon([{"interval": 60}])
    assert caddy.admin_requests()[before:] == [("GET", "/config/")] * 3
    assert caddy.new_mutations() == [] and beacon.events == []


def test_hand_edit_fires_once_and_a_run_heals_it(beacon, caddy, local_tree, backends):
    assert converge(beacon.loaders).result is True
    plain, _ = backends
    grafana = f"{caddy_config.ROUTE_PREFIX}grafana"
    live = json.loads(caddy.config_bytes())
    routes = live["apps"]["http"]["servers"][caddy_config.SERVER]["routes"]
    edited = next(r for r in routes if r["@id"] == grafana)
    edited["match"][0]["host"] = ["hijacked.example.net"]  # what a hand edit through the admin API does
    beacon.loaders.modules.caddy.load(live)

    beacon([{"interval": 60}])
    beacon([{"interval": 60}])  # the same drift is reported once
    assert len(beacon.events) == 1
    tag, data = beacon.events[0]
    assert tag == f"hecate/drift/{beacon.loaders.opts['id']}/caddy"
    assert list(data["drift"]["changed"]) == [grafana] and data["drift"]["count"] == 1

    healed = converge(beacon.loaders)
    assert healed.result is True and grafana in healed.changes["changed"]
    beacon([{"interval": 60}])
    assert len(beacon.events) == 1  # healed: nothing new to report
    port = local_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    domain = next(r["domain"] for r in local_tree["reverse_proxy"]["caddy"]["routes"] if r["service"] == "grafana")
    status, _, body = get(port, domain)
    assert (status, backend_of(body)) == (200, "grafana") and plain["grafana"].hits


def test_the_same_drift_after_a_repair_is_reported_again(beacon, caddy):
    """Issue 27: the beacon remembered the last drift it reported and forgot it only when one of its reads
    found none. A repair by ``state.apply hecate.routes`` followed by the same hand edit before the next read
    left the same fingerprint: no second event, ever. A write by hecate is a new start."""
    grafana = f"{caddy_config.ROUTE_PREFIX}grafana"

    def delete_grafana():  # a hand edit through the admin API
        live = json.loads(caddy.config_bytes())
        server = live["apps"]["http"]["servers"][caddy_config.SERVER]
        server["routes"] = [r for r in server["routes"] if r.get("@id") != grafana]
        caddy.load(live)

    def apply_routes():
        [result] = beacon.loaders.modules.state.apply("hecate.routes")
        assert result.result is True, result.comment
        return result

    apply_routes()
    delete_grafana()
    beacon([{"interval": 60}])
    assert [list(data["drift"]["removed"]) for _, data in beacon.events] == [[grafana]]

    assert grafana in apply_routes().changes["added"]  # the repair, then the same edit within one interval
    delete_grafana()
    beacon([{"interval": 60}])
    beacon([{"interval": 60}])  # still reported once per occurrence
    assert [list(data["drift"]["removed"]) for _, data in beacon.events] == [[grafana], [grafana]]

    assert apply_routes().changes["added"]  # a repair with no read in between and no edit after it: nothing
    beacon([{"interval": 60}])
    assert len(beacon.events) == 2


def _beacon_config(loaders):
    """``hecate_drift``'s entry as ``state.apply hecate.drift`` installs it: the arguments beacon.present gets
    but ``name`` and ``save``, one mapping each (``beacon_data`` in salt/states/beacon.py ``present``)."""
    from salt.state import STATE_INTERNAL_KEYWORDS

    [state] = loaders.modules.state.show_sls("hecate.drift").values()
    args = {k: v for arg in state["beacon"] if isinstance(arg, dict) for k, v in arg.items() if k not in STATE_INTERNAL_KEYWORDS}
    return {args.pop("name"): [{k: v} for k, v in sorted(args.items()) if k != "save"]}


def test_an_undone_run_is_no_drift(beacon, local_tree, caddy):
    """A deploy whose later step failed is undone on the edge: its snapshot (``caddy.snapshot keep=<run>``)
    is loaded back. The beacon's baseline goes back with it: the restored config is not drift, so a heal
    never re-applies the run that was undone. (Before: one drift event naming the restored route.)"""
    state, caddy_module = beacon.loaders.modules.state, beacon.loaders.modules.caddy
    assert state.apply("hecate.routes")[0].result is True
    kept = caddy_module.snapshot(keep="run-1")  # what the engine reads before the run's first write
    changed = copy.deepcopy(local_tree)
    changed["reverse_proxy"]["caddy"]["routes"] = changed["reverse_proxy"]["caddy"]["routes"][1:]
    [run] = state.apply("hecate.routes", pillar={"hecate": changed})  # the run's routes step (a recorded tree)
    assert run.result is True and run.changes["removed"]
    assert caddy_module.restore(kept["path"]) is True  # its undo
    beacon([{"interval": 60}])
    assert beacon.events == []


def test_the_beacon_sleeps_while_a_hand_run_state_runs(make_beacon, local_tree, caddy, short_tmp):
    """Issue 27: drift.sls set ``enable`` (Salt's key is ``enabled``) and no ``disable_during_state_run``, so
    the beacon could report a half-applied ``state.apply``. Salt's own beacon loop (``Beacon.process``) runs
    it here while ``salt-call state.apply`` runs on the same minion (its job file in ``<cachedir>/proc``,
    which ``salt.utils.minion.running`` reads)."""
    import salt.beacons
    import salt.utils.minion

    tree = json.loads(json.dumps(local_tree))
    tree["reconcile"] = {"interval": 2}
    run = make_beacon(tree)
    opts = run.loaders.opts
    config = _beacon_config(run.loaders)
    assert config == {"hecate_drift": [{"disable_during_state_run": True}, {"enabled": True}, {"interval": 2}]}
    assert converge(run.loaders).result is True
    beacons = salt.beacons.Beacon(opts, run.functions)

    def ticks():  # the interval is counted in loop_interval ticks (1 s): two ticks, one beacon run
        for _ in range(2):
            beacons.process(copy.deepcopy(config), {})

    roots = short_tmp / f"hold{os.getpid()}"
    roots.mkdir()
    (roots / "hold.sls").write_text(f"hold:\n  cmd.run:\n    - name: while [ ! -e {roots}/release ]; do sleep 0.05; done\n")
    minion = {k: opts[k] for k in ("id", "root_dir", "cachedir", "pki_dir", "sock_dir", "log_file")}
    (roots / "minion").write_text(yaml.safe_dump({**minion, "file_client": "local", "file_roots": {"base": [str(roots)]}}))
    salt_call = os.path.join(os.path.dirname(sys.executable), "salt-call")
    held = subprocess.Popen(
        [salt_call, "--local", "-c", str(roots), "state.apply", "hold"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        until(
            "salt-call's state run listed as running", lambda: [j for j in salt.utils.minion.running(opts) if j["fun"] == "state.apply"], 60
        )
        _hand_edit_grafana(caddy)
        caddy.mark()
        before = len(caddy.admin_requests())
        ticks()
        ticks()
        assert run.events == [] and caddy.admin_requests()[before:] == []  # not one read during the state run
    finally:
        (roots / "release").touch()
        assert held.wait(60) == 0, held.stderr.read()[-2000:]
    ticks()
    assert [tag for tag, _ in run.events] == [f"hecate/drift/{opts['id']}/caddy"]


def _hand_edit_grafana(caddy):
    live = json.loads(caddy.config_bytes())
    routes = live["apps"]["http"]["servers"][caddy_config.SERVER]["routes"]
    next(r for r in routes if r["@id"] == f"{caddy_config.ROUTE_PREFIX}grafana")["match"][0]["host"] = ["hijacked.example.net"]
    caddy.load(live)


def _caddy_task(tree):
    """The caddy task of the reverse-proxy job rendered from ``tree``, as Nomad's parser reads it."""
    job = hcl_to_job(render(tree, "reverse-proxy"))
    tasks = [t for g in job["TaskGroups"] for t in g["Tasks"] if t["Name"] == "caddy"]
    return tasks[0]


def test_caddy_restarted_as_the_job_starts_it_serves_every_route(short_tmp, make_loaders, local_tree, caddy):
    """Converge, kill -9, start Caddy again the way the job does: every route serves with no Salt run."""
    workdir = short_tmp / "resume"
    edge = Caddy(workdir, admin=caddy.admin.replace(str(caddy.workdir), str(workdir)))
    tree = json.loads(json.dumps(local_tree))
    tree["reverse_proxy"]["caddy"]["admin"] = edge.admin
    task = _caddy_task(tree)
    args = task["Config"]["args"]
    assert "--resume" in args
    local = args[args.index("--config") + 1]  # the bootstrap, written by the job's template block
    template = next(t for t in task["Templates"] if t["DestPath"].lstrip("/") == local.lstrip("/"))
    bootstrap = workdir / "bootstrap.json"
    bootstrap.write_text(template["EmbeddedTmpl"])
    command = [caddy_binary(), *[str(bootstrap) if a == local else a for a in args]]

    def start():
        with open(edge.log_path, "ab") as log:
            edge.process = subprocess.Popen(command, stdout=log, stderr=log, env=edge.env(), start_new_session=True)
        for _ in range(400):
            if edge.ready():
                return
            assert edge.process.poll() is None, edge.log_path.read_text()[-2000:]
            subprocess.run(["sleep", "0.05"], check=True)
        raise AssertionError("caddy did not come back")

    start()
    try:
        assert converge(make_loaders({"hecate": tree})).result is True
        port = tree["reverse_proxy"]["caddy"]["ports"]["http"]
        domains = [r["domain"] for r in tree["reverse_proxy"]["caddy"]["routes"]]
        assert all(get(port, d)[0] == 200 for d in domains)
        os.killpg(edge.process.pid, signal.SIGKILL)
        edge.process.wait(10)
        start()  # no Salt run in between
        assert [get(port, d)[0] for d in domains] == [200] * len(domains)
    finally:
        edge.stop()


def test_certs_lists_what_caddy_serves_with_expiry(caddy, make_loaders, backends, caddy_ports):
    plain, secure = backends
    tree = local_seed_tree({k: b.port for k, b in plain.items()}, secure.port, caddy_ports, caddy.admin, tls_mode="internal")
    loaders = make_loaders({"hecate": tree})
    assert converge(loaders).result is True
    shown = loaders.modules.caddy.certs()
    found = shown["certificates"]
    domains = sorted({r["domain"] for r in tree["reverse_proxy"]["caddy"]["routes"]})
    assert [c["domain"] for c in found] == domains
    for cert in found:
        assert "error" not in cert, cert
        assert "Caddy Local Authority" in cert["issuer"]
        assert 0 < cert["days_left"] < 14 and cert["expiring"] is True  # Caddy's internal CA issues 12 h certificates
        assert cert["renewal_overdue"] is False and cert["lifetime_days"] < 1  # ... and renews them: no alarm
    assert all(c["expiring"] is False for c in loaders.modules.caddy.certs(warn_days=0)["certificates"])


def test_certs_says_so_without_tls(make_loaders, local_tree):
    assert make_loaders({"hecate": local_tree}).modules.caddy.certs() == {"certificates": [], "comment": "TLS off: no certificates"}
