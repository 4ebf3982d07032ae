"""Placement (issue 16 item 2): the seed's jobs land on the servers the terraform module of the same
pillar creates, because the constraints and the server names come from one naming scheme
(hecatelib.terraform.render.node_roles). The Nomad emulator decides feasibility as Nomad's scheduler does for
what hecate uses (constraints, datacenters, static port collisions, count vs nodes), with client
nodes named from the rendered terraform module."""

import copy

import hcl2
import pytest
import requests

from devstack import host
from devstack.emulators.nomad import hcl_to_job, start_nomad
from devstack.pillars import seed_tree
from hecatelib import schema
from hecatelib.nomad import jobs as nomad_jobs
from hecatelib.terraform import render as terraform_render
from tests.conftest import REPO, assert_no_violations

TOKEN = "nomad-placement-token"
TEMPLATES = terraform_render.load_templates(REPO / "salt" / "hecate" / "terraform")
TF = {"workdir": str(host.below("lib", "terraform", make=False)), "token": "vault:secret/hecate/hetzner#token"}


def terraform_servers(raw):
    """The server names of the terraform module rendered from this pillar (hecate_servers.tf locals)."""
    tree = schema.validate(copy.deepcopy(raw), root_prefix=host.PREFIX)
    tree["terraform"] = terraform_render.settings(tree)
    servers = hcl2.loads(terraform_render.render(tree, TEMPLATES)["hecate_servers.tf"])["locals"][0]
    return [name.strip('"') for table in ("hecate_edge_nodes", "hecate_role_nodes") for name in servers[table]]


@pytest.fixture(scope="module")
def nomad():
    emulator = start_nomad(token=TOKEN)
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def fresh(nomad):
    nomad.reset()
    yield
    assert_no_violations(nomad)


def seed_with_terraform():
    raw = copy.deepcopy(seed_tree())
    raw["terraform"] = dict(TF)
    return raw


def placed_loaders(make_loaders, nomad, raw):
    tree = copy.deepcopy(raw)
    tree["nomad"] = {"address": nomad.url, "token": TOKEN, "allow_insecure_endpoint": True, "blocking_wait": 1}
    return make_loaders({"hecate": tree}, {"__cli": "salt-call"})


def deploy(loaders, job):
    return loaders.states.nomad_job.present(name=f"hecate-{job}", source=f"salt://hecate/nomad/{job}.nomad.j2")


def test_every_seed_job_is_placed_on_the_servers_terraform_creates(make_loaders, nomad):
    raw = seed_with_terraform()
    servers = terraform_servers(raw)
    assert servers == ["hecate-production-edge-1", "hecate-production-edge-2", "hecate-production-app-1", "hecate-production-db-1"]
    nomad.add_nodes(servers)
    loaders = placed_loaders(make_loaders, nomad, raw)
    for job in ("postgresql", "redis", "reverse-proxy", "authentik", "helen-bridge"):
        result = deploy(loaders, job)
        assert result.result is True, result.comment
    placed = {}
    for alloc in nomad.allocations.values():
        if alloc["DesiredStatus"] == "run":
            placed.setdefault(f"{alloc['JobID']}/{alloc['TaskGroup']}", []).append(alloc["NodeName"])
    assert {k: sorted(v) for k, v in placed.items()} == {
        "hecate-postgresql/postgresql": ["hecate-production-db-1"],
        "hecate-redis/redis": ["hecate-production-db-1"],
        "hecate-reverse-proxy/proxy-stack": ["hecate-production-edge-1", "hecate-production-edge-2"],  # one per node: 80/443
        "hecate-reverse-proxy/turn": ["hecate-production-edge-1", "hecate-production-edge-2"],
        "hecate-authentik/authentik": ["hecate-production-app-1"],
        "hecate-helen-bridge/bridge": ["hecate-production-edge-1"],
    }
    assert all(d["Status"] == "successful" for d in nomad.deployments.values())


def test_a_naming_mismatch_is_refused_before_anything_is_registered(make_loaders, nomad):
    """Nodes named as the seed's constraints expected (hecate-edge-1) while the servers are
    hecate-production-*: Nomad's plan has FailedTGAllocs and the state registers nothing."""
    nomad.add_nodes(["hecate-edge-1", "hecate-edge-2", "hecate-app-1", "hecate-db-1"])
    loaders = placed_loaders(make_loaders, nomad, seed_with_terraform())
    result = deploy(loaders, "reverse-proxy")
    assert result.result is False
    assert "cannot be placed, nothing registered" in result.comment
    assert "4 node(s) filtered by constraint ${attr.unique.hostname} regexp ^hecate-production-edge-[0-9]+$" in result.comment
    assert nomad.registers == [] and nomad.job("hecate-reverse-proxy") is None


def test_static_ports_allow_one_instance_per_node(nomad):
    """structs/network.go: a reserved port belongs to one allocation per node; three instances with
    static port 80 on two feasible nodes leave one unplaced (plan FailedTGAllocs, a blocked deploy)."""
    nomad.add_nodes(["edge-a", "edge-b"])
    text = (
        'job "web" {\n  datacenters = ["dc1"]\n  group "web" {\n    count = 3\n    network {\n      port "http" {\n'
        '        static = 80\n      }\n    }\n    task "t" {\n      driver = "docker"\n    }\n  }\n}\n'
    )
    job = hcl_to_job(text)
    headers = {"X-Nomad-Token": TOKEN}
    plan = requests.post(f"{nomad.url}/v1/job/web/plan", json={"Job": job, "Diff": True}, headers=headers, timeout=5).json()
    metric = plan["FailedTGAllocs"]["web"]
    assert metric["DimensionExhausted"] == {"network: reserved port collision http=80": 2}
    assert metric["NodesEvaluated"] == 2 and metric["CoalescedFailures"] == 0
    assert nomad_jobs.plan_summary(plan)["placement_failures"] == {
        "web": ["1 allocation(s) cannot be placed", "2 node(s) exhausted: network: reserved port collision http=80"]
    }
    requests.post(f"{nomad.url}/v1/jobs", json={"Job": job}, headers=headers, timeout=5).raise_for_status()
    running = sorted(a["NodeName"] for a in nomad.allocations.values() if a["JobID"] == "web")
    assert running == ["edge-a", "edge-b"]
    assert nomad.deployments_of("web")[-1]["Status"] == "running"  # never successful: one is missing


def test_count_above_the_edge_nodes_is_refused_by_validation():
    raw = seed_with_terraform()
    raw["nomad"] = {"jobs": {"reverse-proxy": {"count": 3}}}
    with pytest.raises(Exception, match=r"hecate:nomad:jobs:reverse-proxy:count.*need as many edge nodes; terraform creates 2"):
        schema.validate(raw, root_prefix=host.PREFIX)
    raw["terraform"]["hcloud"] = {"nodes": {"edge": {"count": 3}}}
    assert nomad_jobs.job_settings(schema.validate(raw, root_prefix=host.PREFIX), "reverse-proxy")["count"] == 3


def test_edge_nodes_with_names_of_your_own_are_matched_exactly():
    raw = seed_with_terraform()
    raw["terraform"]["hcloud"] = {"edge_nodes": [{"name": "fra.edge-a"}, {"name": "fra.edge-b"}]}
    tree = schema.validate(raw, root_prefix=host.PREFIX)
    (constraint,) = nomad_jobs.job_settings(tree, "reverse-proxy")["constraints"]
    assert constraint["value"] == r"^(fra\.edge-a|fra\.edge-b)$"
    assert nomad_jobs.job_settings(tree, "helen-bridge")["constraints"][0]["value"] == "fra.edge-a"
