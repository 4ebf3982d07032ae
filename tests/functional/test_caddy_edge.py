"""The edge between Salt runs, against a real Caddy: the drift beacon, a restart, certificates.

- drift: after a good run, the beacon costs one GET per interval and fires nothing; a hand edit through
  the admin API fires ``hecate/drift/<minion>/caddy`` once, naming the route; the next run heals it.
- restart: Caddy started the way hecate's Nomad job starts it (``caddy run --resume --config <bootstrap>``)
  serves every route again after a kill -9, with no Salt run in between.
"""

import json
import os
import signal
import subprocess

import pytest

from hecatelib.caddy import config as caddy_config
from tests.emulators.nomad import hcl_to_job
from tests.support.caddy import Caddy, caddy_binary
from tests.support.http import backend_of, get
from tests.support.pillars import local_seed_tree
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
