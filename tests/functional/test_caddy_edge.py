"""The edge between Salt runs, against a real Caddy: the drift beacon, a restart, certificates.

- drift: after a good run, the beacon costs one GET per interval and fires nothing; a hand edit through
  the admin API fires ``hecate/drift/<minion>/caddy`` once, naming the route; the next run heals it; the
  same edit after that repair is reported again; an undone run is no drift; while a state run is in progress the
  beacon sleeps.
- restart: Caddy started the way hecate's Nomad job starts it (its argv, env and templates: ``sh
  /local/caddy-start.sh``, then ``caddy run --resume --config /local/caddy.json`` with
  ``XDG_CONFIG_HOME=/local/caddy-config``, local/ carried over) serves every route again after a kill -9 with
  no Salt run: after a converge with a custom certificate, after its rotation, on a node without the
  certificate files (the allocation moved), and through a deploy that removes the last certificate (the new
  allocation loses the mount). Issue 27 item 1.
"""

import copy
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import types

import pytest
import yaml
from cryptography import x509

from devstack import host
from devstack.caddy import caddy_binary, free_port
from devstack.emulators.nomad import hcl_to_job
from devstack.http import backend_of, get
from devstack.pillars import local_seed_tree
from devstack.stack import until
from hecatelib.caddy import config as caddy_config
from tests.support.certs import CA
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


class Allocation:
    """The reverse-proxy job's Caddy task as Nomad runs it, on the test's host: the task's own argv and env
    (``XDG_CONFIG_HOME=/local/caddy-config``, ``XDG_DATA_HOME=/alloc/data/caddy``, ``NOMAD_TASK_DIR=/local``)
    and template files, with the container paths /local and /alloc mapped onto directories of the test. A new
    allocation of the job takes over the previous one's local/ and alloc/data (``ephemeral_disk`` sticky +
    migrate), so Caddy's autosave and its data come along, to this node or another."""

    def __init__(self, task, workdir, previous=None):
        self.task, self.workdir = task, pathlib.Path(workdir)
        self.local, self.alloc = self.workdir / "local", self.workdir / "alloc"
        if previous is not None:  # Nomad migrates local/ and alloc/data into the replacement
            shutil.copytree(previous.local, self.local, symlinks=True)
            shutil.copytree(previous.alloc, self.alloc, symlinks=True)
        self.local.mkdir(parents=True, exist_ok=True)
        (self.alloc / "data").mkdir(parents=True, exist_ok=True)
        for template in task["Templates"]:  # the job's static files, rendered into the task directory
            (self.workdir / template["DestPath"]).write_text(template["EmbeddedTmpl"])
        self.log = self.workdir / "task.log"
        self.process = None

    def container_path(self, value):
        return re.sub(r"(?<![^ =])/(local|alloc)(?=/|$)", lambda m: str(self.workdir / m.group(1)), value)

    def start(self):
        """Start the task; returns once its Caddy answers on the admin socket (raises if it exits first)."""
        config = self.task["Config"]
        argv = [self.container_path(a) for a in [config["command"], *config.get("args", [])]]
        env = {**os.environ, **{k: self.container_path(v) for k, v in self.task["Env"].items()}}
        env.update(NOMAD_TASK_DIR=str(self.local), NOMAD_ALLOC_DIR=str(self.alloc), HOME=str(self.workdir))
        env["PATH"] = f"{os.path.dirname(caddy_binary())}:{env['PATH']}"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
        return self

    def kill(self):
        """kill -9 of the task (its Caddy is the process sh exec'd)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.kill()

    def exited(self):
        return self.process.poll() is not None

    def autosave(self):
        path = self.local / "caddy-config" / "caddy" / "autosave.json"
        return json.loads(path.read_text()) if path.exists() else None


def answering(tree, ca_pem, alloc, deadline=60):
    """Poll every route over HTTPS until each answers from its backend: ``{domain: issuer CN}`` of the
    certificate each was served with, and the seconds it took. Raises when the task exited or the deadline passed."""
    caddy = tree["reverse_proxy"]["caddy"]
    started, pending, served = time.monotonic(), {r["domain"]: r for r in caddy["routes"]}, {}
    while pending:
        assert not alloc.exited(), f"the task exited {alloc.process.returncode}: {alloc.log.read_text()[-1500:]}"
        assert time.monotonic() - started < deadline, f"not answering after {deadline}s: {sorted(pending)}"
        # the company CA, and Caddy's own local CA (in alloc/data, made at its first start)
        trust = ca_pem + "".join(p.read_text() for p in alloc.alloc.rglob("pki/authorities/local/root.crt"))
        for domain, route in list(pending.items()):
            try:
                status, _, body = get(caddy["ports"]["https"], domain, tls_ca=trust, timeout=3)
            except (OSError, ssl.SSLError):
                continue  # not listening yet, or its certificate is still being issued
            expected = "wazuh-https" if route["backend"].startswith("https://") else route["service"]
            if status == 200 and backend_of(body) == expected:
                served[domain] = issuer_of(caddy["ports"]["https"], domain)
                del pending[domain]
        subprocess.run(["sleep", "0.05"], check=True)  # the poll's pace; the deadline decides
    return served, time.monotonic() - started


def issuer_of(port, host):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).issuer.rfc4514_string()


CUSTOM = "cloud.cybermonkey.dev"  # the seed route the company certificate covers


@pytest.fixture(scope="module")
def company_ca():
    return CA()


@pytest.fixture
def edge(make_loaders, backends, company_ca, short_tmp, request):
    """An edge node converged with a custom certificate: Caddy started as the job starts it (a brand-new
    allocation: no autosave), then hecate.routes through the state engine. Yields (tree, allocation, apply)."""
    plain, secure = backends
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    admin = f"unix/{host.below('run', 'edge')}/admin.sock"
    tree = local_seed_tree({k: b.port for k, b in plain.items()}, secure.port, ports, admin, tls_mode="internal")
    cert, key, _ = company_ca.issue([CUSTOM])
    tree["reverse_proxy"]["caddy"]["tls"].update(
        dir=str(host.below("etc", "tls", make=False)), certificates={"corp": {"certificate": cert, "key": key}}
    )
    allocations = []

    def allocate(tree_now, previous=None):
        allocations.append(
            Allocation(_caddy_task(tree_now), short_tmp / f"alloc{abs(hash(request.node.nodeid)) % 10**6}-{len(allocations)}", previous)
        )
        return allocations[-1]

    def apply(tree_now):
        (result,) = make_loaders({"hecate": tree_now}).modules.state.sls("hecate.routes")
        assert result.result is True, result.comment
        return result

    first = allocate(tree).start()
    answering_admin(first, admin)
    apply(tree)
    served, _ = answering(tree, company_ca.pem, first)
    assert "hecate test company CA" in served[CUSTOM]
    yield types.SimpleNamespace(tree=tree, alloc=first, allocate=allocate, apply=apply)
    for allocation in allocations:
        allocation.stop()


def answering_admin(alloc, admin):
    socket_path = admin[len("unix/") :]
    for _ in range(400):
        assert not alloc.exited(), alloc.log.read_text()[-1500:]
        if os.path.exists(socket_path):
            return
        subprocess.run(["sleep", "0.05"], check=True)
    raise AssertionError("the task's Caddy opened no admin socket in 20 s")


def restart(alloc, tree, ca_pem):
    """kill -9, then start the task as Nomad restarts it (same argv, env and local/): ``{domain: issuer}``."""
    alloc.kill()
    alloc.start()
    served, seconds = answering(tree, ca_pem, alloc)
    print(f"\n{len(served)} of {len(tree['reverse_proxy']['caddy']['routes'])} routes answering {seconds:.2f}s after the start")
    return served


def test_a_restart_resumes_every_route_and_the_custom_certificate(edge, company_ca):
    """Converge, kill -9, start Caddy again the way the job does: every route serves with no Salt run."""
    served = restart(edge.alloc, edge.tree, company_ca.pem)
    assert len(served) == len(edge.tree["reverse_proxy"]["caddy"]["routes"]) and "hecate test company CA" in served[CUSTOM]


def test_after_a_rotation_a_restart_serves_the_new_certificate(edge, company_ca):
    rotated = copy.deepcopy(edge.tree)
    cert, key, fingerprint = company_ca.issue([CUSTOM], days=200)
    rotated["reverse_proxy"]["caddy"]["tls"]["certificates"]["corp"] = {"certificate": cert, "key": key}
    edge.apply(rotated)
    served = restart(edge.alloc, rotated, company_ca.pem)
    assert len(served) == len(rotated["reverse_proxy"]["caddy"]["routes"])
    named = edge.alloc.autosave()["apps"]["tls"]["certificates"]["load_files"][0]["certificate"]
    assert named.endswith(f"corp-{fingerprint[:16]}.crt")  # the autosave names the new pair, which exists


def test_an_allocation_moved_to_a_node_without_the_files_serves_every_route(edge, company_ca):
    """The migrated local/ holds an autosave naming certificate files this node does not have: Caddy 2.11
    would exit 1 on it ("loading certificates: open ..."). Every route serves (the custom host with Caddy's
    own certificate) until the routes stage writes the files there and loads them again."""
    cert_dir = edge.tree["reverse_proxy"]["caddy"]["tls"]["dir"]
    moved = edge.allocate(edge.tree, previous=edge.alloc)  # the same job, on a node without cert_dir
    edge.alloc.kill()
    os.rename(cert_dir, f"{cert_dir}.other-node")
    moved.start()
    served, seconds = answering(edge.tree, company_ca.pem, moved)
    print(f"\nmoved: {len(served)} of {len(edge.tree['reverse_proxy']['caddy']['routes'])} routes answering {seconds:.2f}s after the start")
    assert len(served) == len(edge.tree["reverse_proxy"]["caddy"]["routes"])
    assert "Caddy Local Authority" in served[CUSTOM]  # its files are not here: Caddy's own certificate
    assert "does not load here" in moved.log.read_text()
    edge.apply(edge.tree)  # the routes stage on the new node writes the files and loads them again
    served, _ = answering(edge.tree, company_ca.pem, moved)
    assert "hecate test company CA" in served[CUSTOM]
    served = restart(moved, edge.tree, company_ca.pem)  # and a restart there resumes all of it
    assert len(served) == len(edge.tree["reverse_proxy"]["caddy"]["routes"]) and "hecate test company CA" in served[CUSTOM]


def test_a_deploy_that_removes_the_certificates_comes_up_serving_at_every_step(edge, company_ca):
    """The deploy's Nomad stage runs first: the job loses the certificate mount and a new allocation resumes
    the migrated autosave, which names files the task no longer sees. It serves every route, so the routes
    stage (which reads Caddy first) converges it; afterwards a restart resumes the certificate-less config."""
    removed = copy.deepcopy(edge.tree)
    removed["reverse_proxy"]["caddy"]["tls"]["certificates"] = {}
    task = _caddy_task(removed)
    assert "volumes" not in task["Config"] or all(
        edge.tree["reverse_proxy"]["caddy"]["tls"]["dir"] not in v for v in task["Config"]["volumes"]
    )
    replacement = edge.allocate(removed, previous=edge.alloc)
    edge.alloc.kill()
    cert_dir = edge.tree["reverse_proxy"]["caddy"]["tls"]["dir"]
    os.rename(cert_dir, f"{cert_dir}.not-mounted")  # the task no longer sees the files; the host keeps them
    try:
        replacement.start()
        served, seconds = answering(removed, company_ca.pem, replacement)
    finally:
        os.rename(f"{cert_dir}.not-mounted", cert_dir)
    print(f"\nremoval deploy: {len(served)} routes answering {seconds:.2f}s after the new allocation started")
    assert len(served) == len(removed["reverse_proxy"]["caddy"]["routes"])
    result = edge.apply(removed)  # the routes stage: reads Caddy, converges, removes the files after a good run
    assert sorted(os.path.basename(p) for p in result.changes["certificate files"]["removed"])[0].startswith("corp-")
    served = restart(replacement, removed, company_ca.pem)
    assert len(served) == len(removed["reverse_proxy"]["caddy"]["routes"])
    assert (
        "load_files" not in json.dumps(replacement.autosave()["apps"]["tls"].get("certificates", {}))
        or not replacement.autosave()["apps"]["tls"]["certificates"]["load_files"]
    )


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
