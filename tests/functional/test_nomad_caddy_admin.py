"""Reachability of Caddy's admin API as the reverse-proxy job exposes it (issue 16 item 3): the real
Caddy binary started from the bootstrap embedded in the rendered job answers the job's own health
check (GET /config/ on the admin address, the seed's check) and the edge minion's caddy module, which
dials the pillar's hecate:reverse_proxy:caddy:admin. Both for the seed's loopback default and a unix
socket."""

import copy
import json
import urllib.request

import pytest

from devstack import host
from devstack.caddy import Caddy, free_port
from devstack.emulators.nomad import hcl_to_job
from devstack.pillars import seed_tree
from hecatelib import schema
from tests.unit.test_nomad_templates import render, task


def job_bootstrap(tree):
    job = hcl_to_job(render(tree, "reverse-proxy"))
    caddy = task(job, "proxy-stack", "caddy")
    return caddy, json.loads(caddy["Templates"][0]["EmbeddedTmpl"])


@pytest.mark.parametrize("kind", ["loopback", "unix"])
def test_the_routes_stage_reaches_the_admin_api_the_job_opens(kind, make_loaders):
    raw = copy.deepcopy(seed_tree())
    workdir = host.below("run", f"adm-{kind}")  # a unix socket's directory lies below /run/hecate
    admin = f"127.0.0.1:{free_port()}" if kind == "loopback" else f"unix/{workdir}/admin.sock"
    caddy_cfg = raw["reverse_proxy"]["caddy"]
    caddy_cfg.update(admin=admin, tls={"mode": "off"}, bind=["127.0.0.1"])
    caddy_cfg["ports"] = {"http": free_port(), "https": free_port(), "admin": 2019}
    tree = schema.validate(raw, root_prefix=host.PREFIX)
    caddy_task, bootstrap = job_bootstrap(tree)
    assert bootstrap["admin"]["listen"] == admin  # the job's Caddy listens where the pillar says
    server = Caddy(workdir, admin=admin).start(config=bootstrap)
    try:
        if kind == "loopback":
            (check,) = caddy_task["Services"][0]["Checks"]
            url = check["Args"][-1]
            assert check["Command"] == "wget" and url == f"http://{admin}/config/"
            # what busybox wget sends: Host is the URL's host:port; Caddy's admin accepts it on loopback
            with urllib.request.urlopen(url, timeout=10) as answer:
                assert answer.status == 200 and json.loads(answer.read())["admin"]["listen"] == admin
        loaders = make_loaders({"hecate": raw}, {"__cli": "salt-call"})
        assert loaders.modules.caddy.admin_address() == admin
        assert loaders.modules.caddy.config("admin/listen") == admin  # the routes stage reads the job's Caddy
    finally:
        server.stop()
