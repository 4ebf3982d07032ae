"""External services (issue 16 item 5): the seed's register-external-services.sh as pillar
hecate:consul:external_services, registered on the Consul agent by the hecate_consul state with their
checks and tags; idempotent (a re-run writes nothing), test=True honest, pruning only what hecate
registered. Against the Consul emulator's agent endpoints (agent/agent_endpoint.go rules)."""

import copy

import consul
import pytest

from devstack.emulators.consul import ConsulEmulator
from devstack.pillars import seed_tree
from hecatelib.consul import services as consul_services
from tests.conftest import assert_no_violations, loaders_for

TOKEN = "consul-agent-token-0123"
# the two services of the seed's script, as pillar
SEED_SERVICES = [
    {"id": "wazuh-master", "name": "wazuh-registration", "tags": ["wazuh", "security", "external"],
     "address": "100.88.163.85", "port": 1515, "check": {"tcp": "100.88.163.85:1515", "interval": "30s", "timeout": "5s"}},
    {"id": "jenkins-master", "name": "jenkins-master", "tags": ["jenkins", "ci", "external"], "address": "100.65.138.128",
     "port": 8059, "meta": {"domain": "jenkins.cybermonkey.dev"},
     "check": {"http": "http://100.65.138.128:8059/login", "interval": "30s", "timeout": "5s"}},
]  # fmt: skip


@pytest.fixture(scope="module")
def agent():
    emulator = ConsulEmulator(tokens={TOKEN: "write"}).start()
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def fresh(agent):
    agent.agent_services.clear()
    agent.agent_checks.clear()
    agent.requests.clear()
    yield
    assert_no_violations(agent)


def pillar(agent, services):
    tree = copy.deepcopy(seed_tree())
    tree["consul"] = {"address": agent.url, "token": TOKEN, "external_services": copy.deepcopy(services)}
    return {"hecate": tree}


@pytest.fixture(scope="module")
def loaders(agent, short_tmp):
    made = loaders_for(short_tmp / "consulsvc", pillar(agent, SEED_SERVICES), extra={"__cli": "salt-call"})
    yield made
    made.reset_state()


def state_of(result):
    (only,) = list(result)
    return {"result": only.result, "comment": only.comment, "changes": only.changes}


def test_the_seed_script_as_pillar_registers_idempotently_through_state_sls(loaders, agent):
    dry = loaders.modules.state.sls("hecate.nomad.external-services", test=True)
    ret = state_of(dry)
    assert ret["result"] is None and "2 to register" in ret["comment"]
    assert sorted(ret["changes"]["services"]) == ["jenkins-master", "wazuh-master"]
    assert agent.writes == [] and agent.agent_services == {}

    ret = state_of(loaders.modules.state.sls("hecate.nomad.external-services"))
    assert ret["result"] is True and "2 registered" in ret["comment"], ret["comment"]
    wazuh, jenkins = agent.agent_services["wazuh-master"], agent.agent_services["jenkins-master"]
    assert (wazuh["Service"], wazuh["Address"], wazuh["Port"], wazuh["Tags"]) == ("wazuh-registration", "100.88.163.85", 1515,
                                                                                  ["wazuh", "security", "external"])  # fmt: skip
    assert jenkins["Meta"]["domain"] == "jenkins.cybermonkey.dev" and jenkins["Meta"][consul_services.MARKER] == "true"
    assert agent.agent_checks["service:wazuh-master"]["TCP"] == "100.88.163.85:1515"
    assert agent.agent_checks["service:jenkins-master"]["HTTP"] == "http://100.65.138.128:8059/login"
    assert agent.agent_checks["service:jenkins-master"]["Interval"] == "30s"
    assert all(r.arg("replace-existing-checks") == "true" for r in agent.writes)
    assert TOKEN not in str(ret)

    agent.requests.clear()
    ret = state_of(loaders.modules.state.sls("hecate.nomad.external-services"))
    assert ret["result"] is True and ret["changes"] == {} and "2 external service(s) registered as in pillar" in ret["comment"]
    assert agent.writes == [] and len(agent.reads) == 1  # one read, zero writes


def test_only_what_hecate_registered_is_pruned_and_a_change_is_one_write(make_loaders, agent):
    client = consul.Consul(host="127.0.0.1", port=agent.port, token=TOKEN)
    client.agent.service.register("grafana", service_id="grafana", address="10.0.0.9", port=3000)  # not hecate's
    client.agent.service.register("old", service_id="old-hecate", port=1, meta={consul_services.MARKER: "true"})
    changed = copy.deepcopy(SEED_SERVICES[:1])
    changed[0]["port"] = 1516
    loaders = make_loaders(pillar(agent, changed), {"__cli": "salt-call"})
    agent.requests.clear()
    ret = loaders.states.hecate_consul.external_services(name="external")
    assert ret.result is True, ret.comment
    assert ret.changes["services"]["old-hecate"]["action"] == "deregistered"
    assert ret.changes["services"]["wazuh-master"]["action"] == "registered"
    assert sorted(agent.agent_services) == ["grafana", "wazuh-master"]  # grafana untouched
    assert len(agent.writes) == 2
    agent.requests.clear()
    again = loaders.states.hecate_consul.external_services(name="external")
    assert again.result is True and again.changes == {} and agent.writes == []
    with pytest.raises(Exception, match="was not registered by hecate"):
        loaders.modules.hecate_consul.deregister("grafana")


def test_a_bad_service_is_refused_before_any_request(make_loaders, agent):
    bad = copy.deepcopy(SEED_SERVICES)
    bad[1]["meta"] = {"consul-owned": "x"}
    bad[0]["check"] = {"interval": "30s"}
    loaders = make_loaders(pillar(agent, bad), {"__cli": "salt-call"})
    ret = loaders.states.hecate_consul.external_services(name="external")
    assert ret.result is False
    assert "hecate:consul:external_services[1]:meta:consul-owned" in ret.comment
    assert "hecate:consul:external_services[0]:check: give exactly one of tcp or http" in ret.comment
    assert agent.requests == []


def test_a_check_probes_its_own_service_and_never_the_metadata_service(make_loaders, agent):
    """A Consul check is a request Consul's agent makes and keeps the answer of (the check's output): one aimed
    anywhere but the service it registers would read from inside the network for whoever writes pillar."""
    bad = copy.deepcopy(SEED_SERVICES)
    bad[0]["check"] = {"tcp": "10.0.0.9:1515"}  # another host
    bad[1]["check"] = {"http": "http://169.254.169.254/latest/meta-data/"}  # the cloud's metadata service
    bad.append({"id": "meta", "name": "meta", "address": "169.254.169.254", "port": 80})
    loaders = make_loaders(pillar(agent, bad), {"__cli": "salt-call"})
    ret = loaders.states.hecate_consul.external_services(name="external")
    assert ret.result is False and agent.requests == []
    assert "external_services[0]:check:tcp: probes '10.0.0.9', not the service's address '100.88.163.85'" in ret.comment
    assert "external_services[1]:check:http: probes '169.254.169.254', not the service's address '100.65.138.128'" in ret.comment
    assert "external_services[2]:address: '169.254.169.254' is link-local" in ret.comment
    fine = copy.deepcopy(SEED_SERVICES)
    fine[1]["check"] = {"http": "http://100.65.138.128:9090/health"}  # its own host, another port: a health port
    fine[0].update(address="wazuh.example.org", check={"tcp": "WAZUH.example.org:1515"})  # a name has no case
    ret = make_loaders(pillar(agent, fine), {"__cli": "salt-call"}).states.hecate_consul.external_services(name="external")
    assert ret.result is True, ret.comment


def test_the_emulator_refuses_what_consul_refuses(agent):
    client = consul.Consul(host="127.0.0.1", port=agent.port, token=TOKEN)
    with pytest.raises(consul.ConsulException, match="Interval must be > 0"):
        client.agent.service.register("x", check={"TCP": "10.0.0.1:1"})
    with pytest.raises(consul.ConsulException, match="reserved for internal use"):
        client.agent.service.register("x", meta={"consul-x": "1"})
    assert client.agent.service.deregister("nope") is False  # 404 Unknown service ID
