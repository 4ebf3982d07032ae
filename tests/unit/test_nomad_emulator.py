"""The Nomad emulator itself: the request contract it enforces, CAS, versions, diffs and blocking
queries. If these drift, every functional test of nomad_job would be checked against the wrong thing."""

import threading
import time

import pytest
import requests

from devstack.emulators.nomad import hcl_to_job, start_nomad

JOB = """
job "web" {
  datacenters = ["dc1"]
  group "web" {
    count = 2
    task "app" {
      driver = "docker"
      config {
        image = "web:1"
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def server():
    emulator = start_nomad(token="t0ken")
    yield emulator
    emulator.stop()


@pytest.fixture
def nomad(server):
    server.reset()
    return server


def call(nomad, method, path, body=None, params=None, token="t0ken"):
    headers = {"X-Nomad-Token": token} if token else {}
    return requests.request(method, nomad.url + path, json=body, params=params, headers=headers, timeout=10)


def register(nomad, job, index=None):
    body = {"Job": job}
    if index is not None:
        body.update(EnforceIndex=True, JobModifyIndex=index)
    return call(nomad, "POST", "/v1/jobs", body)


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "violation"),
    [
        ("POST", "/v1/jobs", {"Job": {"ID": "x"}, "Enforce": True}, None, "JobRegisterRequest has no field 'Enforce'"),
        ("POST", "/v1/jobs", {"Job": {"ID": "x"}, "EnforceIndex": "yes"}, None, "EnforceIndex must be boolean"),
        ("POST", "/v1/jobs", {"Job": {"ID": "x", "Datacentres": []}}, None, "Job has no field 'Datacentres'"),
        ("POST", "/v1/jobs", {"Job": {"ID": "x", "Update": {"Canaries": 1}}}, None, "UpdateStrategy has no field 'Canaries'"),
        ("POST", "/v1/jobs", {"EnforceIndex": True}, None, "JobRegisterRequest.Job is required"),
        ("POST", "/v1/jobs", {"Job": {"ID": "x"}, "Submission": {"Source": "x"}}, None, "JobSubmission.Format is required"),
        ("POST", "/v1/job/a/plan", {"Job": {"ID": "b"}, "Diff": True}, None, "the body names job 'b', the path 'a'"),
        ("POST", "/v1/jobs/parse", {"HCL": "job"}, None, "JobsParseRequest has no field 'HCL'"),
        ("POST", "/v1/deployment/fail/d1", {"x": 1}, None, "takes no request body"),
        ("POST", "/v1/deployment/promote/d1", {"DeploymentID": "d1"}, None, "promote needs All=true or Groups"),
        ("GET", "/v1/job/a", None, {"index": "abc"}, "index must be an unsigned integer"),
        ("GET", "/v1/job/a", None, {"index": "3", "wait": "5 seconds"}, "wait must be a duration"),
        ("GET", "/v1/job/a", None, {"namespaces": "x"}, "query parameter 'namespaces' is not accepted"),
        ("PUT", "/v1/job/a/scale", {}, None, "no such endpoint"),
    ],
)
def test_requests_outside_the_contract_are_violations(nomad, method, path, body, params, violation):
    response = call(nomad, method, path, body, params)
    assert response.status_code == 400
    assert any(violation in v for v in nomad.violations), nomad.violations


def test_the_documented_extras_are_accepted(nomad):
    parse = call(nomad, "POST", "/v1/jobs/parse", {"JobHCL": JOB, "Canonicalize": True, "Variables": ""})
    assert parse.status_code == 200
    job = parse.json()
    body = {"Job": job, "EnforceIndex": True, "JobModifyIndex": 0, "Submission": {"Source": JOB, "Format": "hcl2"}}
    assert call(nomad, "POST", "/v1/jobs", body).status_code == 200
    assert call(nomad, "GET", "/v1/job/web", params={"index": "1", "wait": "10ms", "namespace": "default"}).status_code == 200
    assert nomad.violations == []


def test_the_token_is_required(nomad):
    response = call(nomad, "GET", "/v1/job/web", token=None)
    assert response.status_code == 403 and response.text == "Permission denied"


def test_check_and_set_and_versions(nomad):
    job = hcl_to_job(JOB)
    assert register(nomad, job, 0).status_code == 200
    again = register(nomad, job, 0)
    assert again.status_code == 500 and again.text == "Enforcing job modify index 0: job already exists"
    current = nomad.job("web")
    changed = {**job, "Meta": {"v": "2"}}
    stale = register(nomad, changed, current["JobModifyIndex"] - 1)
    assert stale.text.startswith("Enforcing job modify index") and "conflicting job modify index" in stale.text
    assert register(nomad, changed, current["JobModifyIndex"]).status_code == 200
    assert [v["Version"] for v in nomad.versions_of("web")] == [0, 1]
    # an identical spec registers no new version
    assert register(nomad, changed).status_code == 200 and len(nomad.versions_of("web")) == 2


def test_plan_diff_types(nomad):
    job = hcl_to_job(JOB)
    plan = call(nomad, "POST", "/v1/job/web/plan", {"Job": job, "Diff": True}).json()
    assert plan["Diff"]["Type"] == "Added" and plan["JobModifyIndex"] == 0
    assert plan["Annotations"]["DesiredTGUpdates"]["web"]["Place"] == 2
    register(nomad, job, 0)
    plan = call(nomad, "POST", "/v1/job/web/plan", {"Job": job, "Diff": True}).json()
    assert plan["Diff"]["Type"] == "None" and plan["JobModifyIndex"] == nomad.job("web")["JobModifyIndex"]
    assert plan["Annotations"]["DesiredTGUpdates"]["web"]["Ignore"] == 2
    edited = hcl_to_job(JOB.replace("web:1", "web:2").replace("count = 2", "count = 3"))
    plan = call(nomad, "POST", "/v1/job/web/plan", {"Job": edited, "Diff": True}).json()
    assert plan["Diff"]["Type"] == "Edited"
    (group,) = plan["Diff"]["TaskGroups"]
    assert {(f["Name"], f["Old"], f["New"]) for f in group["Fields"]} == {("Count", "2", "3")}
    (task,) = group["Tasks"]
    assert task["Type"] == "Edited" and task["Annotations"] == ["forces create/destroy update"]
    assert plan["Annotations"]["DesiredTGUpdates"]["web"] == {
        "Place": 1, "Canary": 0, "DestructiveUpdate": 2, "InPlaceUpdate": 0, "Stop": 0, "Migrate": 0, "Preemptions": 0, "Ignore": 0,
    }  # fmt: skip


def test_a_blocking_query_holds_until_the_index_moves(nomad):
    register(nomad, hcl_to_job(JOB), 0)
    first = call(nomad, "GET", "/v1/job/web/deployment")
    index = int(first.headers["X-Nomad-Index"])
    deployment = first.json()
    while deployment["Status"] == "running":  # let the scripted deployment finish
        answer = call(nomad, "GET", f"/v1/deployment/{deployment['ID']}", params={"index": str(index), "wait": "2s"})
        index, deployment = int(answer.headers["X-Nomad-Index"]), answer.json()
    started = time.monotonic()
    idle = call(nomad, "GET", f"/v1/deployment/{deployment['ID']}", params={"index": str(index), "wait": "300ms"})
    assert 0.3 <= time.monotonic() - started < 2 and idle.headers["X-Nomad-Index"] == str(index)

    def change():
        time.sleep(0.2)
        register(nomad, hcl_to_job(JOB.replace("web:1", "web:2")))

    threading.Thread(target=change).start()
    started = time.monotonic()
    woke = call(nomad, "GET", "/v1/job/web/deployment", params={"index": str(index), "wait": "5s"})
    assert 0.15 <= time.monotonic() - started < 2  # answered by the change, not by the 5 s wait
    assert int(woke.headers["X-Nomad-Index"]) > index and woke.json()["JobVersion"] == 1


def test_scripted_failure_reverts_to_the_last_stable_version(nomad):
    register(nomad, hcl_to_job(JOB), 0)
    deadline = time.monotonic() + 5
    while not nomad.job("web")["Stable"] and time.monotonic() < deadline:
        time.sleep(0.01)
    nomad.script("web", "fail")
    reverting = JOB.replace('datacenters = ["dc1"]', 'datacenters = ["dc1"]\n  update {\n    auto_revert = true\n  }')
    register(nomad, hcl_to_job(reverting.replace("web:1", "web:bad")))
    while len(nomad.versions_of("web")) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    failed, rollback = nomad.deployments_of("web")[1:]
    assert failed["Status"] == "failed"
    assert failed["StatusDescription"] == "Failed due to unhealthy allocations - rolling back to job version 0"
    assert rollback["JobVersion"] == 2
    assert nomad.job("web")["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "web:1"


def _version(image):
    return hcl_to_job(JOB.replace("web:1", image))


def _wait_stable(nomad, version):
    deadline = time.monotonic() + 5
    while not any(v["Version"] == version and v["Stable"] for v in nomad.versions_of("web")) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_six_versions_are_kept_counting_registers_reverts_and_stops(nomad):
    """nomad/structs/structs.go JobDefaultTrackedVersions = 6; nomad/state/state_store.go upsertJobVersion drops
    the oldest past six on every new version, whatever made it."""
    nomad.script("web", "pending", times=10)  # no version gets stable (a stable one would be kept: the next test)
    for n in range(5):
        assert register(nomad, _version(f"web:{n}")).status_code == 200  # versions 0..4
    assert call(nomad, "POST", "/v1/job/web/revert", {"JobID": "web", "JobVersion": 0}).status_code == 200  # 5
    assert call(nomad, "DELETE", "/v1/job/web").status_code == 200  # 6: the stop is a version too
    assert register(nomad, _version("web:7")).status_code == 200  # 7
    kept = nomad.versions_of("web")
    assert [v["Version"] for v in kept] == [2, 3, 4, 5, 6, 7] and kept[4]["Stop"] is True
    answer = call(nomad, "GET", "/v1/job/web/versions").json()
    assert [v["Version"] for v in answer["Versions"]] == [7, 6, 5, 4, 3, 2]
    gone = call(nomad, "POST", "/v1/job/web/revert", {"JobID": "web", "JobVersion": 1})
    assert gone.status_code == 500 and gone.text == 'job "web" in namespace "default" at version 1 not found'
    assert call(nomad, "POST", "/v1/job/web/revert", {"JobID": "web", "JobVersion": 7}).text == "can't revert to current version"


def test_the_newest_stable_version_outlives_the_six(nomad):
    """upsertJobVersion: when the version to drop is the newest stable one, the one after it goes instead."""
    register(nomad, _version("web:0"))
    _wait_stable(nomad, 0)
    nomad.script("web", "pending", times=10)  # none of the next deployments gets healthy: no other stable version
    for n in range(1, 8):
        register(nomad, _version(f"web:{n}"))
    assert [(v["Version"], v["Stable"]) for v in nomad.versions_of("web")] == [(0, True)] + [(n, False) for n in range(3, 8)]
    assert call(nomad, "POST", "/v1/job/web/revert", {"JobID": "web", "JobVersion": 0}).status_code == 200


def test_a_revert_to_the_current_spec_makes_no_version(nomad):
    """nomad/job_endpoint.go Revert registers through doRegister, which writes nothing when !SpecChanged."""
    register(nomad, _version("web:a"))
    register(nomad, _version("web:b"))
    register(nomad, _version("web:a"))  # version 2, the spec of version 0
    current = nomad.job("web")
    answer = call(nomad, "POST", "/v1/job/web/revert", {"JobID": "web", "JobVersion": 0, "EnforcePriorVersion": 2})
    assert answer.status_code == 200 and answer.json()["JobModifyIndex"] == current["ModifyIndex"] and answer.json()["EvalID"]
    assert [v["Version"] for v in nomad.versions_of("web")] == [0, 1, 2] and nomad.job("web")["Version"] == 2
    moved = call(nomad, "POST", "/v1/job/web/revert", {"JobID": "web", "JobVersion": 1, "EnforcePriorVersion": 2})
    assert moved.status_code == 200 and nomad.job("web")["Version"] == 3
