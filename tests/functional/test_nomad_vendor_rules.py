"""The Nomad client and emulator against rules read in hashicorp/nomad (issue 10, items 5-7): the parse
is authorised in the job's namespace, a deployment that stalls ends the watch at once with its status,
registration takes the query parameter's namespace and an unchanged register still evaluates, and
the emulator's own answers follow the spec."""

import copy
import time

import pytest
import requests

from devstack.emulators.nomad import STATUS_DESCRIPTIONS, hcl_to_job, start_nomad
from devstack.pillars import seed_tree
from tests.conftest import assert_no_violations

SCOPED = "nomad-token-scoped-to-edge"
EVERYWHERE = "nomad-token-management"


@pytest.fixture(scope="module")
def nomad():
    tokens = {SCOPED: ["edge"], EVERYWHERE: None}
    emulator = start_nomad(tokens=tokens)
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def fresh(nomad):
    nomad.reset()
    yield
    assert_no_violations(nomad)


@pytest.fixture(scope="module")
def loaders(nomad, short_tmp):
    from tests.conftest import loaders_for

    tree = copy.deepcopy(seed_tree())
    tree["nomad"] = {"address": nomad.url, "token": SCOPED, "allow_insecure_endpoint": True, "blocking_wait": 1, "namespace": "edge"}
    made = loaders_for(short_tmp / "nomadrules", {"hecate": tree}, extra={"__cli": "salt-call"})
    yield made
    made.reset_state()


def present(loaders, job):
    return loaders.states.nomad_job.present(name=f"hecate-{job}", source=f"salt://hecate/nomad/{job}.nomad.j2")


def call(nomad, method, path, body=None, params=None, token=EVERYWHERE):
    return requests.request(method, nomad.url + path, json=body, params=params, headers={"X-Nomad-Token": token}, timeout=5)


def test_a_token_scoped_to_the_jobs_namespace_deploys_it(loaders, nomad):
    """parseNamespace (command/agent/http.go): without ?namespace= the parse is authorised in "default",
    where this token may do nothing (403 before the fix)."""
    result = present(loaders, "redis")
    assert result.result is True, result.comment
    parses = [r for r in nomad.requests if r.path == "/v1/jobs/parse"]
    assert parses and all(r.arg("namespace") == "edge" for r in parses)
    assert nomad.job("hecate-redis", namespace="edge")["Namespace"] == "edge"
    assert call(nomad, "POST", "/v1/jobs/parse", {"JobHCL": 'job "x" {\n}\n'}, token=SCOPED).status_code == 403


@pytest.mark.parametrize("status", ["paused", "blocked", "pending"])
def test_a_stalled_deployment_ends_the_watch_with_its_status(loaders, nomad, status):
    """nomad/structs/deployment.go: paused/blocked/pending make no progress by themselves; the state says
    so at once instead of waiting out its timeout (the progress deadline of redis is 10m)."""
    nomad.script("hecate-redis", "status", status=status)
    started = time.monotonic()
    result = present(loaders, "redis")
    elapsed = time.monotonic() - started
    assert result.result is False
    assert f"is {status} ({STATUS_DESCRIPTIONS[status]})" in result.comment, result.comment
    assert result.changes["deployment"]["status"] == status
    assert elapsed < 10, elapsed
    dep = nomad.deployments_of("hecate-redis")[-1]
    waited = loaders.modules.nomad_job.wait_deployment(dep["ID"], timeout=30)
    assert waited["status"] == status and waited["stalled"] and waited["timed_out"] is False


@pytest.mark.parametrize("status", ["initializing", "unblocking"])
def test_a_passing_status_is_watched_and_reported_by_name_on_timeout(loaders, nomad, status):
    nomad.script("hecate-redis", "status", status=status)
    loaders.states.nomad_job.present(name="hecate-redis", source="salt://hecate/nomad/redis.nomad.j2", wait=False)
    dep = nomad.deployments_of("hecate-redis")[-1]
    time.sleep(0.2)
    waited = loaders.modules.nomad_job.wait_deployment(dep["ID"], timeout=0.5)
    assert waited["status"] == status and waited["timed_out"] is True and not waited["stalled"]


JOB = 'job "web" {\n  namespace   = "default"\n  datacenters = ["dc1"]\n  group "web" {\n    task "t" {\n      driver = "docker"\n    }\n  }\n}\n'


def test_register_takes_the_query_parameters_namespace_and_an_unchanged_register_still_evaluates(nomad):
    """namespaceForJob (command/agent/job_endpoint.go): ?namespace= wins over the job's own Namespace;
    Job.Register (nomad/job_endpoint.go): an unchanged spec is not stored again, but an evaluation is
    created and the reply carries the job's JobModifyIndex."""
    job = hcl_to_job(JOB)
    first = call(nomad, "POST", "/v1/jobs", {"Job": job}, params={"namespace": "edge"}).json()
    assert nomad.job("web", namespace="edge")["Namespace"] == "edge" and nomad.job("web") is None
    again = call(nomad, "POST", "/v1/jobs", {"Job": job}, params={"namespace": "edge"}).json()
    assert again["JobModifyIndex"] == first["JobModifyIndex"] == nomad.job("web", namespace="edge")["JobModifyIndex"]
    assert again["EvalID"] and again["EvalID"] != first["EvalID"] and again["EvalCreateIndex"] > first["EvalCreateIndex"]
    assert len(nomad.versions_of("web", namespace="edge")) == 1
    evaluations = call(nomad, "GET", "/v1/job/web/evaluations", params={"namespace": "edge"}).json()
    assert len(evaluations) == 2
    denied = call(nomad, "POST", "/v1/jobs", {"Job": job}, token=SCOPED)  # the job says default: not this token's
    assert denied.status_code == 403


def test_the_emulator_checks_its_own_answers_against_the_spec(nomad):
    checker = nomad.checker

    class Probe:
        method, raw_path = "GET", "/v1/job/web/deployment"

    assert checker.check_response(Probe, 200, {"ID": "x", "Status": "running"}) == []
    problems = checker.check_response(Probe, 200, {"ID": "x", "EvalPriority": 50, "JobVersion": "1"})
    assert problems == [
        "response of GET /v1/job/{jobName}/deployment: Deployment has no field 'EvalPriority'",
        "response of GET /v1/job/{jobName}/deployment: Deployment.JobVersion must be integer, got str",
    ]
