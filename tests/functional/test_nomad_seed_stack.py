"""The seed pillar deployed end to end through the emulators with the issue 16 checks on: the Hetzner
module rendered by the terraform stage names the Nomad clients; HashiCorp's HCL rules, the scheduler's
feasibility and the vendors' request rules are enforced by the emulators; the external services of the
seed's script land in Consul; Caddy is started from the bootstrap in the job Nomad accepted, with its
admin API where the job opens it, and the routes stage reaches it there. Then every job is placed and
healthy, every route answers through Caddy, and a second run writes nothing anywhere."""

import copy
import json

import hcl2
import pytest

from devstack import host
from devstack.caddy import Backend, Caddy, free_port
from devstack.emulators.consul import ConsulEmulator
from devstack.emulators.nomad import start_nomad
from devstack.http import backend_of, get
from devstack.pillars import local_seed_tree, seed_tree
from devstack.stack import CONSUL_TOKEN, NOMAD_TOKEN, terraform_binary
from tests.conftest import assert_no_violations
from tests.functional.test_hecate_consul import SEED_SERVICES

ROLES = {"hecate-postgresql": "db", "hecate-redis": "db", "hecate-reverse-proxy": "edge", "hecate-authentik": "app",
         "hecate-helen-bridge": "edge"}  # fmt: skip


@pytest.fixture
def stack(short_tmp):
    nomad = start_nomad(token=NOMAD_TOKEN)
    agent = ConsulEmulator(tokens={CONSUL_TOKEN: "write"}).start()
    plain = {r["service"]: Backend(r["service"]).start() for r in seed_tree()["reverse_proxy"]["caddy"]["routes"]}
    secure = Backend("wazuh-https", tls_dir=short_tmp / "seedtls").start()
    yield {"nomad": nomad, "consul": agent, "plain": plain, "secure": secure}
    for backend in [*plain.values(), secure]:
        backend.stop()
    for emulator in (nomad, agent):
        emulator.stop()
        assert_no_violations(emulator)


def test_the_seed_stack_deploys_places_every_job_and_serves_every_route(stack, make_loaders, short_tmp):
    nomad, agent = stack["nomad"], stack["consul"]
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    admin = f"127.0.0.1:{ports['admin']}"  # the seed's form: a loopback admin
    tree = local_seed_tree({k: b.port for k, b in stack["plain"].items()}, stack["secure"].port, ports, admin)
    tree["nomad"] = {"address": nomad.url, "token": NOMAD_TOKEN, "allow_insecure_endpoint": True, "blocking_wait": 1}
    tree["consul"] = {"address": agent.url, "token": CONSUL_TOKEN, "external_services": copy.deepcopy(SEED_SERVICES)}
    workdir = host.below("lib", "seed-tf", make=False)
    tree["terraform"] = {"workdir": str(workdir), "token": "hcloud-token-seed-stack"}
    loaders = make_loaders({"hecate": tree}, {"__cli": "salt-call", "hecate_terraform_binary": str(terraform_binary())})

    # terraform stage (rendering; the hcloud provider is not reachable offline): the servers it creates
    rendered = loaders.modules.hecate_terraform.render()
    assert "hecate_servers.tf" in rendered["changed"]
    servers = hcl2.loads((workdir / "hecate_servers.tf").read_text())["locals"][0]
    roles = {}
    for table in ("hecate_edge_nodes", "hecate_role_nodes"):
        for name, node in servers[table].items():
            roles[name.strip('"')] = {k.strip('"'): v.strip('"') for k, v in node["labels"].items()}["role"]
    nomad.add_nodes(sorted(roles))  # the Nomad clients are those servers, by host name

    # Nomad stage: external services, then stateful -> core -> apps
    first = loaders.modules.state.sls("hecate.nomad")
    assert all(r.result is True for r in first), [(r.name, r.comment) for r in first if r.result is not True]
    for job_id, role in ROLES.items():
        allocs = [a for a in nomad.allocations.values() if a["JobID"] == job_id and a["DesiredStatus"] == "run"]
        assert allocs and all(roles[a["NodeName"]] == role for a in allocs), (job_id, [a["NodeName"] for a in allocs])
        assert all(a["ClientStatus"] == "running" and a["DeploymentStatus"]["Healthy"] is True for a in allocs), job_id
        assert [d["Status"] for d in nomad.deployments_of(job_id)] == ["successful"], job_id
    edge = sorted(n for n, r in roles.items() if r == "edge")
    proxies = sorted(
        a["NodeName"] for a in nomad.allocations.values() if a["JobID"] == "hecate-reverse-proxy" and a["TaskGroup"] == "proxy-stack"
    )
    assert proxies == edge  # one per edge node: static ports 80/443
    assert sorted(agent.agent_services) == ["jenkins-master", "wazuh-master"]

    # Caddy as Nomad starts it: the bootstrap from the registered job, admin on the pillar's loopback
    job = nomad.job("hecate-reverse-proxy")
    caddy_task = next(t for g in job["TaskGroups"] if g["Name"] == "proxy-stack" for t in g["Tasks"] if t["Name"] == "caddy")
    bootstrap = json.loads(caddy_task["Templates"][0]["EmbeddedTmpl"])
    assert bootstrap["admin"]["listen"] == admin
    caddy = Caddy(short_tmp / "seed-caddy", admin=admin).start(config=bootstrap)
    try:
        routes = loaders.modules.state.sls("hecate.routes")
        assert all(r.result is True for r in routes), [(r.name, r.comment) for r in routes]
        for route in tree["reverse_proxy"]["caddy"]["routes"]:
            status, _, body = get(ports["http"], route["domain"])
            expected = "wazuh-https" if route["backend"].startswith("https://") else route["service"]
            assert (status, backend_of(body)) == (200, expected), route["domain"]

        # a second run: nothing written anywhere
        nomad.reset_counts()
        agent.requests.clear()
        again = loaders.modules.state.sls("hecate.nomad")
        assert all(r.result is True and not r.changes for r in again), [(r.name, r.comment) for r in again]
        assert nomad.writes == [] and agent.writes == []
        assert all(r.result is True and not r.changes for r in loaders.modules.state.sls("hecate.routes"))
    finally:
        caddy.stop()
