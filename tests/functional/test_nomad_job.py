"""nomad_job module and states through Salt's loader against the Nomad emulator: seed jobs deployed from
pillar, idempotency counted in requests, test mode, canary policies, auto-revert, rollback, check-and-set
races, removal, and the request contract (token, namespace, region, blocking waits)."""

import copy
import json
import time

import pytest
from salt.exceptions import CommandExecutionError

from devstack.emulators.nomad import start_nomad
from devstack.pillars import seed_tree
from hecatelib.nomad import jobs as nomad_jobs
from tests.conftest import assert_no_violations, loaders_for

TOKEN = "nomad-acl-0123456789"
STAGE_ORDER = ["postgresql", "redis", "reverse-proxy", "authentik", "helen-bridge"]


def nomad_pillar(nomad, tree=None, **section):
    tree = copy.deepcopy(tree or seed_tree())
    tree["nomad"] = {"address": nomad.url, "token": TOKEN, "allow_insecure_endpoint": True, "blocking_wait": 1, **section}
    return {"hecate": tree}


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


@pytest.fixture(scope="module")
def loaders(nomad, short_tmp):
    """One loader for the module (building one costs seconds): the seed pillar plus hecate:nomad."""
    # "__cli: salt-call": state runs reuse the loaded pillar, as salt-call does (no recompile per state call)
    made = loaders_for(short_tmp / "nomadfn", nomad_pillar(nomad), extra={"__cli": "salt-call"})
    yield made
    made.reset_state()


@pytest.fixture
def onfail_loaders(nomad, make_loaders, short_tmp):
    """A loader whose file_roots has a second directory for a test's own sls."""
    from tests.conftest import REPO

    extra_root = short_tmp / "nomad-sls"
    extra_root.mkdir(exist_ok=True)
    return make_loaders(nomad_pillar(nomad), {"__cli": "salt-call", "file_roots": {"base": [str(REPO / "salt"), str(extra_root)]}})


def present(loaders, job, **kwargs):
    return loaders.states.nomad_job.present(name=f"hecate-{job}", source=f"salt://hecate/nomad/{job}.nomad.j2", **kwargs)


def web_job(canary=0, auto_revert=True, progress_deadline="10m", count=2):
    """A small job for the deployment scenarios; its image is an HCL2 input variable."""
    return f"""
variable "image" {{
  type = string
}}

job "web" {{
  datacenters = ["dc1"]

  update {{
    max_parallel      = 1
    canary            = {canary}
    min_healthy_time  = "1s"
    healthy_deadline  = "1m"
    progress_deadline = "{progress_deadline}"
    auto_revert       = {"true" if auto_revert else "false"}
  }}

  group "web" {{
    count = {count}

    task "app" {{
      driver = "docker"

      config {{
        image = var.image
      }}
    }}
  }}
}}
"""


def deploy_web(loaders, image, **kwargs):
    hcl = kwargs.pop("hcl", None) or web_job(**{k: kwargs.pop(k) for k in ("canary", "auto_revert", "progress_deadline") if k in kwargs})
    return loaders.states.nomad_job.present(name="web", hcl=hcl, variables={"image": image}, **kwargs)


def paths(requests):
    return [(r.method, r.path) for r in requests]


# -- the seed's jobs ---------------------------------------------------------------------------------
def test_every_seed_job_deploys_from_pillar_and_a_rerun_registers_nothing(loaders, nomad):
    per_job = {}
    for job in STAGE_ORDER:
        before = len(nomad.requests)
        result = present(loaders, job)
        assert result.result is True, result.comment
        assert result.changes["plan"]["diff"] == "Added"
        assert result.changes["deployment"]["status"] == "successful"
        per_job[job] = len(nomad.requests) - before
        current = nomad.job(f"hecate-{job}")
        assert (current["Version"], current["Stable"]) == (0, True)
        assert nomad.versions_of(f"hecate-{job}")[0]["Constraints"][0]["LTarget"] == "${attr.unique.hostname}"
    assert [r.body["Job"]["ID"] for r in nomad.registers] == [f"hecate-{j}" for j in STAGE_ORDER]
    # parse, plan, register, the deployment lookup, and one or two blocking reads of the deployment
    assert all(5 <= n <= 7 for n in per_job.values()), per_job
    assert all(r.body["EnforceIndex"] is True and r.body["JobModifyIndex"] == 0 for r in nomad.registers)
    assert all(r.body["Submission"]["Format"] == "hcl2" and r.body["Submission"]["Source"].startswith("#") for r in nomad.registers)

    nomad.reset_counts()
    for job in STAGE_ORDER:
        result = present(loaders, job)
        assert (result.result, result.changes) == (True, {}), result.comment
        assert result.comment == f"Job hecate-{job} is up to date"
    assert nomad.writes == []
    assert len(nomad.requests) == 3 * len(STAGE_ORDER)  # parse, plan, latest deployment
    print(f"\nrequests per changed deploy: {per_job}; per no-op deploy: {len(nomad.requests) / len(STAGE_ORDER):g}")


def test_test_mode_returns_the_plan_and_writes_nothing(loaders, nomad):
    result = present(loaders, "reverse-proxy", test=True)
    assert result.result is None
    assert result.changes["plan"]["desired_tg_updates"] == {"proxy-stack": {"Place": 2}, "turn": {"Place": 2}}
    assert "would be created" in result.comment and "proxy-stack: Place 2" in result.comment
    assert nomad.writes == [] and nomad.job("hecate-reverse-proxy") is None
    assert present(loaders, "reverse-proxy").result is True
    nomad.reset_counts()
    result = present(loaders, "reverse-proxy", test=True)
    assert (result.result, result.changes) == (True, {})
    assert nomad.writes == []


def test_a_pillar_change_is_one_register_and_test_mode_shows_it_first(loaders, nomad, make_loaders):
    for job in ("reverse-proxy", "authentik"):
        assert present(loaders, job).result is True
    tree = copy.deepcopy(seed_tree())
    tree["reverse_proxy"]["caddy"]["version"] = "2.11.2"
    tree["authentik"]["version"] = "2025.6.4"
    changed = make_loaders(nomad_pillar(nomad, tree), {"__cli": "salt-call"})
    nomad.reset_counts()
    dry = present(changed, "reverse-proxy", test=True)
    assert dry.result is None and dry.changes["plan"]["desired_tg_updates"]["proxy-stack"] == {"DestructiveUpdate": 2}
    assert any(f"caddy:{nomad_jobs.CADDY_TESTED} -> caddy:2.11.2" in line for line in dry.changes["plan"]["fields"])
    assert nomad.writes == []

    result = present(changed, "reverse-proxy")
    assert result.result is True, result.comment
    assert result.changes["plan"]["diff"] == "Edited" and result.changes["deployment"]["version"] == 1
    assert len(nomad.registers) == 1
    assert nomad.registers[0].body["JobModifyIndex"] == nomad.versions_of("hecate-reverse-proxy")[0]["JobModifyIndex"]

    # authentik has a canary (the seed's blue-green): promoted by the default policy (auto), never left hanging
    started = time.monotonic()
    result = present(changed, "authentik")
    assert result.result is True, result.comment
    assert result.changes["deployment"]["promoted"] == ["authentik"]
    assert time.monotonic() - started < 10  # the job's progress deadline is 15 minutes
    promotes = [r for r in nomad.writes if "/promote/" in r.path]
    assert len(promotes) == 1 and promotes[0].body["All"] is True


def test_state_sls_runs_the_stages_in_order_and_a_failed_stage_stops_the_rest(loaders, nomad):
    result = loaders.modules.state.sls("hecate.nomad")
    assert all(r.result is True for r in result), [(r.name, r.comment) for r in result]
    assert [r.body["Job"]["ID"] for r in nomad.registers] == [f"hecate-{j}" for j in STAGE_ORDER]

    nomad.reset()
    nomad.script("hecate-postgresql", "fail")
    result = loaders.modules.state.sls("hecate.nomad")
    by_name = {r.name: r for r in result}
    assert by_name["hecate-postgresql"].result is False
    assert "Failed due to unhealthy allocations" in by_name["hecate-postgresql"].comment
    assert by_name["hecate-redis"].result is True  # same stage
    for job in ("hecate-reverse-proxy", "hecate-authentik", "hecate-helen-bridge"):
        assert by_name[job].result is False and "requisite" in by_name[job].comment.lower()
    assert [r.body["Job"]["ID"] for r in nomad.registers] == ["hecate-postgresql", "hecate-redis"]


# -- canaries ----------------------------------------------------------------------------------------
def test_a_canary_awaiting_manual_promotion_never_hangs(loaders, nomad):
    assert deploy_web(loaders, "web:1", canary=1).result is True
    started = time.monotonic()
    result = deploy_web(loaders, "web:2", canary=1, promote="manual")
    assert time.monotonic() - started < 5  # progress deadline 10 minutes: the state does not wait for it
    assert result.result is True, result.comment
    assert result.changes["deployment"]["status"] == "awaiting promotion"
    assert "awaits manual promotion" in result.comment and result.warnings
    (dep,) = [d for d in nomad.deployments_of("web") if d["JobVersion"] == 1]
    assert dep["Status"] == "running" and dep["TaskGroups"]["web"]["PlacedCanaries"]
    assert not [r for r in nomad.writes if "/promote/" in r.path]

    # a later run with an automatic policy picks the waiting deployment up and promotes it
    nomad.reset_counts()
    result = deploy_web(loaders, "web:2", canary=1, promote="auto")
    assert result.result is True, result.comment
    assert result.changes["deployment"] == {"id": dep["ID"], "status": "successful", "version": 1, "promoted": ["web"]}
    assert [r.path for r in nomad.writes] == [f"/v1/deployment/promote/{dep['ID']}"]


def test_promote_after_the_canaries_stayed_healthy(loaders, nomad):
    assert deploy_web(loaders, "web:1", canary=1).result is True
    started = time.monotonic()
    result = deploy_web(loaders, "web:2", canary=1, promote="after", healthy_seconds=0.6)
    elapsed = time.monotonic() - started
    assert result.result is True, result.comment
    assert result.changes["deployment"]["promoted"] == ["web"]
    assert 0.6 <= elapsed < 5
    assert len([r for r in nomad.requests if "/promote/" in r.path]) == 1
    healthy_seen = [r for r in nomad.requests if r.path.startswith("/v1/deployment/") and r.arg("index")]
    assert healthy_seen  # the soak was spent in blocking queries, not a sleep loop
    assert nomad.deployments_of("web")[-1]["Status"] == "successful"


# -- failures ----------------------------------------------------------------------------------------
def test_a_failed_deployment_fails_the_state_and_reports_the_auto_revert(loaders, nomad):
    assert deploy_web(loaders, "web:1").result is True
    nomad.script("web", "fail", events=[{"Type": "Driver Failure", "DisplayMessage": "pull web:broken: manifest unknown"}])
    result = deploy_web(loaders, "web:broken")
    assert result.result is False
    assert "Failed due to unhealthy allocations - rolling back to job version 0" in result.comment
    assert "auto-reverted web to the spec of version 0" in result.comment
    assert "Driver Failure: pull web:broken: manifest unknown" in result.comment
    revert = result.changes["auto_revert"]
    assert revert["to_version"] == 0 and revert["status"] == "successful" and revert["job_version"] == 2
    failing = result.changes["failing_allocations"]
    assert len(failing) == 2 and failing[0]["tasks"]["app"]["failed"] is True
    assert "Driver Failure: pull web:broken: manifest unknown" in failing[0]["tasks"]["app"]["events"]
    current = nomad.job("web")
    assert current["Version"] == 2 and nomad_jobs.same_spec(current, nomad.versions_of("web")[0])
    assert current["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "web:1"


def test_an_auto_revert_faster_than_the_first_read_is_still_reported(loaders, nomad):
    assert deploy_web(loaders, "web:1").result is True
    nomad.script("web", "pending")

    def fail_and_revert_now(request):  # Nomad decided before the client looked for its deployment
        (running,) = [d for d in nomad.deployments.values() if d["Status"] == "running"]
        nomad._make_unhealthy(running["ID"])

    nomad.before("GET", r"^/v1/job/web/deployment$", fail_and_revert_now)
    result = deploy_web(loaders, "web:2")
    assert result.result is False, result.comment
    assert result.changes["deployment"]["version"] == 1 and result.changes["deployment"]["status"] == "failed"
    assert result.changes["auto_revert"]["to_version"] == 0 and result.changes["auto_revert"]["job_version"] == 2


def test_a_seed_job_that_fails_reports_the_revert_too(loaders, nomad, make_loaders):
    assert present(loaders, "helen-bridge").result is True
    tree = copy.deepcopy(seed_tree())
    tree["reverse_proxy"]["nginx"]["version"] = "1.99-broken"
    nomad.script("hecate-helen-bridge", "fail")
    result = present(make_loaders(nomad_pillar(nomad, tree), {"__cli": "salt-call"}), "helen-bridge")
    assert result.result is False
    assert result.changes["auto_revert"]["to_version"] == 0
    assert "failed to pull image" in result.comment
    assert nomad.job("hecate-helen-bridge")["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "nginx:alpine"


def test_a_deployment_that_makes_no_progress_fails_at_its_deadline_not_before(loaders, nomad):
    assert deploy_web(loaders, "web:1", progress_deadline="1s").result is True
    nomad.script("web", "pending")
    started = time.monotonic()
    result = deploy_web(loaders, "web:2", progress_deadline="1s")
    elapsed = time.monotonic() - started
    assert result.result is False
    assert "Failed due to progress deadline - rolling back to job version 0" in result.comment
    assert 1.0 <= elapsed < 6  # Nomad's verdict, seen through the blocking query (a timeout says "still running")


def test_the_watch_gives_up_after_its_timeout_when_nomad_never_decides(loaders, nomad):
    assert deploy_web(loaders, "web:1", progress_deadline="1s").result is True
    nomad.script("web", "pending")
    nomad.enforce_deadlines = False  # a Nomad that never fails the deployment
    started = time.monotonic()
    result = deploy_web(loaders, "web:2", progress_deadline="1s", deploy_timeout=0.1)
    elapsed = time.monotonic() - started
    assert result.result is False and "still running after" in result.comment
    # the timeout asked for (0.1 s) is raised above the progress deadline: Nomad gets to decide first
    assert 3.0 <= elapsed < 10
    assert nomad.deployments_of("web")[-1]["Status"] == "running"  # left alone, not failed by us


# -- rollback ------------------------------------------------------------------------------------------
def test_rollback_returns_the_previous_version(loaders, nomad):
    assert deploy_web(loaders, "web:1").result is True
    assert deploy_web(loaders, "web:2").result is True
    nomad.reset_counts()
    dry = loaders.states.nomad_job.rolled_back(name="web", test=True)
    assert dry.result is None and dry.changes == {"rollback": {"old_version": 1, "reverted_to": 0}}
    assert nomad.writes == []

    result = loaders.states.nomad_job.rolled_back(name="web")
    assert result.result is True, result.comment
    assert result.changes["rollback"] == {"old_version": 1, "reverted_to": 0, "new_version": 2}
    assert result.changes["deployment"]["status"] == "successful"
    (revert,) = nomad.writes
    assert revert.path == "/v1/job/web/revert" and revert.body == {"JobID": "web", "JobVersion": 0, "EnforcePriorVersion": 1}
    current = nomad.job("web")
    assert current["Version"] == 2 and current["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "web:1"

    nomad.reset_counts()
    again = loaders.states.nomad_job.rolled_back(name="web", version=0)
    assert (again.result, again.changes) == (True, {}) and "already runs the spec of version 0" in again.comment
    assert nomad.writes == []
    missing = loaders.states.nomad_job.rolled_back(name="web", version=9)
    assert missing.result is False and "has no version 9" in missing.comment


def test_current_versions_reads_one_job_each_and_names_the_missing(loaders, nomad):
    assert deploy_web(loaders, "web:1").result is True
    assert deploy_web(loaders, "web:2").result is True
    nomad.reset_counts()
    versions = loaders.modules.nomad_job.current_versions(["web", "nothing-here"])
    assert versions == {"web": 1, "nothing-here": None}
    assert [r.path for r in nomad.requests] == ["/v1/job/web", "/v1/job/nothing-here"] and nomad.writes == []
    assert loaders.modules.nomad_job.current_versions("[web]") == {"web": 1}  # as the CLI passes it


# -- returning to a recorded state past Nomad's six versions (issue 27 item 2) -------------------------
def test_a_record_returns_to_its_job_after_ten_registrations(loaders, nomad):
    """Nomad keeps six versions (the emulator too, now): a revert by the recorded number, what the engine did,
    fails after ten registrations; a restore from the recorded spec registers it again, with check-and-set,
    and watches its deployment. Then it is a no-op: zero writes."""
    mod = loaders.modules.nomad_job
    assert deploy_web(loaders, "web:0").result is True
    recorded = mod.current_specs(["web", "absent-job"])
    assert recorded["absent-job"] is None and recorded["web"]["version"] == 0
    assert not set(recorded["web"]["spec"]) & nomad_jobs.WRITE_FIELDS and recorded["web"]["spec"]["ID"] == "web"
    for n in range(1, 11):
        assert deploy_web(loaders, f"web:{n}").result is True
    assert [v["Version"] for v in mod.versions("web")] == [10, 9, 8, 7, 6, 5]
    with pytest.raises(Exception, match='job "web" in namespace "default" at version 0 not found'):
        mod.revert("web", 0)  # what a rollback to the first record did

    nomad.reset_counts()
    dry = mod.restore("web", version=0, spec=recorded["web"]["spec"], test=True)
    assert (dry["path"], dry["ok"]) == ("register", None) and nomad.writes == []
    restored = mod.restore("web", version=0, spec=recorded["web"]["spec"])
    assert (restored["path"], restored["ok"], restored["from_version"], restored["version"]) == ("register", True, 10, 11), restored
    assert restored["deployment"]["status"] == "successful" and "version 0 is gone" in restored["comment"]
    (register,) = nomad.writes
    assert register.path == "/v1/jobs" and register.body["EnforceIndex"] is True
    assert register.body["JobModifyIndex"] == nomad.versions_of("web")[-2]["JobModifyIndex"]  # version 10's
    assert nomad.job("web")["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "web:0"

    nomad.reset_counts()
    again = mod.restore("web", version=0, spec=recorded["web"]["spec"])
    assert (again["path"], again["ok"], again["version"]) == ("unchanged", True, 11)
    assert nomad.writes == [] and paths(nomad.requests) == [("GET", "/v1/job/web"), ("GET", "/v1/job/web/versions")]
    assert mod.restore("web", spec=recorded["web"]["spec"])["path"] == "unchanged"  # without the number too


def test_restore_reverts_by_version_while_nomad_keeps_it(loaders, nomad):
    mod = loaders.modules.nomad_job
    assert deploy_web(loaders, "web:1").result is True
    recorded = mod.current_specs(["web"])["web"]
    assert deploy_web(loaders, "web:2").result is True
    nomad.reset_counts()
    restored = mod.restore("web", version=recorded["version"], spec=recorded["spec"])
    assert (restored["path"], restored["ok"], restored["reverted_to"], restored["version"]) == ("revert", True, 0, 2)
    (revert,) = nomad.writes
    assert revert.body == {"JobID": "web", "JobVersion": 0, "EnforcePriorVersion": 1}
    by_number = mod.restore("web", version=0)  # no spec: the version's own spec is the target, already running
    assert by_number["path"] == "unchanged"
    with pytest.raises(Exception, match=r"version 9 is gone \(Nomad keeps the newest 6 versions of a job\) and no spec was recorded"):
        mod.restore("web", version=9)


def test_restore_registers_the_spec_when_the_number_now_names_another_one(loaders, nomad):
    """A purged job registered anew counts its versions from 0 again: the recorded number names another spec."""
    mod = loaders.modules.nomad_job
    assert deploy_web(loaders, "web:old").result is True
    recorded = mod.current_specs(["web"])["web"]
    mod.purge("web")
    restored_absent = mod.restore("web", version=0, spec=recorded["spec"])  # the job is gone altogether
    assert (restored_absent["path"], restored_absent["ok"], restored_absent["version"]) == ("register", True, 0)
    assert nomad.registers[-1].body["JobModifyIndex"] == 0
    mod.purge("web")
    assert deploy_web(loaders, "web:new").result is True  # version 0 again, another spec
    restored = mod.restore("web", version=0, spec=recorded["spec"])
    assert (restored["path"], restored["version"]) == ("register", 1)
    assert nomad.job("web")["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "web:old"


def test_a_restore_whose_deployment_fails_says_so_and_sets_the_retcode(loaders, nomad):
    mod = loaders.modules.nomad_job
    assert deploy_web(loaders, "web:1", auto_revert=False).result is True
    recorded = mod.current_specs(["web"])["web"]
    for n in range(2, 9):
        assert deploy_web(loaders, f"web:{n}", auto_revert=False).result is True
    nomad.script("web", "fail")
    loaders.context.pop("retcode", None)
    restored = mod.restore("web", version=recorded["version"], spec=recorded["spec"])
    assert (restored["path"], restored["ok"], restored["deployment"]["status"]) == ("register", False, "failed")
    assert "failed: Failed due to unhealthy allocations" in restored["comment"] and loaders.context["retcode"] == 1
    loaders.context.pop("retcode")


def test_the_seed_jobs_recorded_specs_are_small_enough_for_a_record(loaders, nomad):
    for job in STAGE_ORDER:
        assert present(loaders, job).result is True
    names = [f"hecate-{job}" for job in STAGE_ORDER]
    specs = loaders.modules.nomad_job.current_specs(names)
    sizes = {name: len(json.dumps(specs[name]["spec"], separators=(",", ":"))) for name in names}
    total = len(json.dumps(specs, sort_keys=True, separators=(",", ":")))
    print(f"\nrecorded specs of the seed's jobs (bytes of JSON): {sizes}; all five: {total}")
    assert total < 64 * 1024  # an eighth of Consul's 512 KiB per record, beside the tree
    nomad.reset_counts()
    for name in names:  # each is what Nomad runs: restoring them writes nothing
        assert loaders.modules.nomad_job.restore(name, version=specs[name]["version"], spec=specs[name]["spec"])["path"] == "unchanged"
    assert nomad.writes == []


def test_onfail_rollback_and_watch(onfail_loaders, nomad):
    hcl = web_job(auto_revert=False)
    sls = """
deploy-web:
  nomad_job.present:
    - name: web
    - hcl: |
{hcl}
    - variables:
        image: {image}
rollback-web:
  nomad_job.rolled_back:
    - name: web
    - onfail:
      - nomad_job: deploy-web
pinned-web:
  nomad_job.rolled_back:
    - name: web
    - version: 0
    - watch:
      - nomad_job: deploy-web
"""
    indented = "\n".join("        " + line for line in hcl.splitlines())
    sls_file = onfail_loaders.opts["file_roots"]["base"][1] + "/nomadtest.sls"
    with open(sls_file, "w", encoding="utf-8") as handle:
        handle.write(sls.format(hcl=indented, image="web:1"))
    first = onfail_loaders.modules.state.sls("nomadtest")
    by_id = {r.id: r for r in first}
    assert by_id["deploy-web"].result is True and by_id["rollback-web"].result is True  # onfail: not run
    assert "onfail" in by_id["rollback-web"].comment.lower()
    # watch: deploy-web changed, so mod_watch ran the pin again; version 0 is what runs: nothing to revert
    assert by_id["pinned-web"].result is True and "already runs the spec of version 0" in by_id["pinned-web"].comment
    assert [r.path for r in nomad.writes] == ["/v1/jobs"]
    nomad.script("web", "fail")
    with open(sls_file, "w", encoding="utf-8") as handle:
        handle.write(sls.format(hcl=indented, image="web:bad"))
    second = onfail_loaders.modules.state.sls("nomadtest")
    by_id = {r.id: r for r in second}
    assert by_id["pinned-web"].result is False and "requisite failed" in by_id["pinned-web"].comment  # watch needs success
    assert by_id["deploy-web"].result is False and "auto-reverted" not in by_id["deploy-web"].comment
    rollback = by_id["rollback-web"]
    assert rollback.result is True and rollback.changes["rollback"]["reverted_to"] == 0, rollback.comment
    assert nomad.job("web")["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "web:1"


# -- check-and-set -----------------------------------------------------------------------------------
def test_a_check_and_set_conflict_replans_once(loaders, nomad):
    assert deploy_web(loaders, "web:1").result is True
    nomad.before("POST", r"^/v1/jobs$", lambda request: nomad.bump_job("web", owner="someone-else"))
    nomad.reset_counts()
    result = deploy_web(loaders, "web:2")
    assert result.result is True, result.comment
    assert result.changes["replanned_after_conflict"] is True
    plans = [r for r in nomad.requests if r.path.endswith("/plan")]
    assert len(plans) == 2 and len(nomad.registers) == 2
    assert nomad.registers[1].body["JobModifyIndex"] > nomad.registers[0].body["JobModifyIndex"]
    assert nomad.job("web")["Meta"] is None  # our spec won, registered against the index it re-planned


def test_a_second_conflict_fails_instead_of_looping(loaders, nomad):
    assert deploy_web(loaders, "web:1").result is True
    nomad.before("POST", r"^/v1/jobs$", lambda request: nomad.bump_job("web", owner=str(time.time())), times=5)
    nomad.reset_counts()
    result = deploy_web(loaders, "web:2")
    assert result.result is False and "check-and-set conflict twice" in result.comment
    assert "Enforcing job modify index" in result.comment
    assert len(nomad.registers) == 2 and len([r for r in nomad.requests if r.path.endswith("/plan")]) == 2


def test_a_conflicting_writer_that_registered_the_same_spec_leaves_nothing_to_do(loaders, nomad):
    assert deploy_web(loaders, "web:1").result is True

    def same_change(request):
        entry = nomad.jobs[("default", "web")]
        nomad._store_version(entry, copy.deepcopy(request.body["Job"]))

    nomad.before("POST", r"^/v1/jobs$", same_change)
    nomad.reset_counts()
    result = deploy_web(loaders, "web:2")
    assert result.result is True and "re-planned after a check-and-set conflict" in result.comment
    assert len(nomad.registers) == 1


# -- absent --------------------------------------------------------------------------------------------
def test_absent_stops_then_purges(loaders, nomad):
    assert deploy_web(loaders, "web:1").result is True
    nomad.reset_counts()
    dry = loaders.states.nomad_job.absent(name="web", test=True)
    assert dry.result is None and nomad.writes == []
    result = loaders.states.nomad_job.absent(name="web")
    assert result.result is True and result.changes["job"]["new"] == "stopped"
    assert nomad.job("web")["Stop"] is True and nomad.job("web")["Status"] == "dead"
    nomad.reset_counts()
    again = loaders.states.nomad_job.absent(name="web")
    assert (again.result, again.changes) == (True, {}) and nomad.writes == []
    purged = loaders.states.nomad_job.absent(name="web", purge=True)
    assert purged.result is True and purged.changes["job"]["new"] == "purged"
    assert nomad.job("web") is None
    assert [(r.method, r.arg("purge")) for r in nomad.writes] == [("DELETE", "true")]
    assert loaders.states.nomad_job.absent(name="web").comment == "Job web is absent"


def test_a_stopped_job_is_started_again_by_present(loaders, nomad):
    assert deploy_web(loaders, "web:1").result is True
    loaders.modules.nomad_job.stop("web")
    result = deploy_web(loaders, "web:1")
    assert result.result is True and result.changes["plan"]["diff"] == "Edited"
    assert nomad.job("web")["Stop"] is False


def test_present_argument_paths(loaders, nomad):
    both = loaders.states.nomad_job.present(name="web", hcl=web_job(), source="salt://hecate/nomad/redis.nomad.j2")
    assert both.result is False and "exactly one of source" in both.comment
    wrong = loaders.states.nomad_job.present(name="hecate-web", hcl=web_job(), variables={"image": "web:1"})
    assert wrong.result is False and "the rendered job is 'web', not 'hecate-web'" in wrong.comment
    missing = loaders.states.nomad_job.present(name="web", source="salt://hecate/nomad/nope.nomad.j2")
    assert missing.result is False and "not found" in missing.comment
    assert nomad.writes == []
    nomad.reset_counts()
    nowait = deploy_web(loaders, "web:1", wait=False)
    assert nowait.result is True and "deployment not watched" in nowait.comment
    assert paths(nomad.requests) == [("POST", "/v1/jobs/parse"), ("POST", "/v1/job/web/plan"), ("POST", "/v1/jobs")]


def test_a_change_that_moves_no_allocation_does_not_wait_for_a_deployment(loaders, nomad):
    assert deploy_web(loaders, "web:1").result is True
    nomad.deploy_without_changes = False
    hcl = web_job().replace('datacenters = ["dc1"]', 'datacenters = ["dc1"]\n  meta {\n    owner = "ops"\n  }')
    started = time.monotonic()
    result = deploy_web(loaders, "web:1", hcl=hcl)
    assert result.result is True and "no allocation changes, no deployment" in result.comment, result.comment
    assert result.changes["plan"]["desired_tg_updates"] == {"web": {"Ignore": 2}}
    assert time.monotonic() - started < 6 and len(nomad.registers) == 2


# -- the module ----------------------------------------------------------------------------------------
def test_module_functions(loaders, nomad):
    mod = loaders.modules.nomad_job
    job = mod.parse(web_job(canary=1), variables={"image": "web:1"})
    assert job["ID"] == "web" and job["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "web:1"
    assert mod.plan(job)["Diff"]["Type"] == "Added"
    registered = mod.register(job, job_modify_index=0)
    dep = mod.find_deployment("web", registered["JobModifyIndex"], timeout=5)
    assert mod.wait_deployment(dep["ID"], timeout=5)["status"] == "successful"
    status = mod.status("web")
    assert status["Version"] == 0 and status["Stable"] is True and status["groups"] == {"web": 2}
    assert status["deployment"]["Status"] == "successful"
    assert mod.status("nope") is None and mod.inspect("nope") is None

    v2 = mod.parse(web_job(canary=1), variables={"image": "web:2"})
    mod.register(v2)  # the index is read first when not given
    dep = mod.find_deployment("web", nomad.job("web")["JobModifyIndex"], timeout=5)
    waited = mod.wait_deployment(dep["ID"], timeout=5, promote="manual")
    assert waited["awaiting_promotion"] is True
    assert mod.deployment(deployment_id=dep["ID"])["StatusDescription"].endswith("requires manual promotion")
    canaries = [a for a in mod.deployment_allocations(dep["ID"]) if a["Canary"]]
    assert len(canaries) == 1 and canaries[0]["Healthy"] is True
    mod.promote(dep["ID"])
    assert mod.wait_deployment(dep["ID"], timeout=5)["status"] == "successful"
    assert [v["Version"] for v in mod.versions("web")] == [1, 0] and all(v["Stable"] for v in mod.versions("web"))
    assert {a["JobVersion"] for a in mod.allocations("web") if a["DesiredStatus"] == "run"} == {1}
    assert [d["JobVersion"] for d in mod.deployments("web")] == [1, 0]
    assert mod.plan_summary(v2) == {"diff": "None", "desired_tg_updates": {"web": {"Ignore": 2}}}
    assert mod.versions("web", diffs=True)["Versions"][0]["Version"] == 1
    running = [a for a in mod.allocations("web", full=True) if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"]
    node = running[0]["NodeName"]
    dirs = mod.alloc_dirs("web", node=node)
    assert dirs == {a["ID"]: f"/opt/nomad/data/alloc/{a['ID']}/alloc" for a in running if a["NodeName"] == node}

    # fail a deployment that makes no progress: Nomad reverts to the last stable version
    nomad.script("web", "pending")
    mod.register(mod.parse(web_job(canary=1), variables={"image": "web:3"}))
    dep = mod.deployment(name="web")
    assert dep["JobVersion"] == 2 and dep["Status"] == "running"
    started = time.monotonic()
    waited = mod.wait_deployment(dep["ID"], timeout=0.3)
    assert waited["timed_out"] is True and waited["status"] == "running" and time.monotonic() - started < 2
    answer = mod.fail(dep["ID"])
    assert answer["DeploymentModifyIndex"] > 0
    assert mod.deployment(deployment_id=dep["ID"])["StatusDescription"] == "Deployment marked as failed - rolling back to job version 1"
    assert mod.inspect("web")["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "web:2"

    with pytest.raises(Exception, match="Current job has version 3; enforcing version 1"):
        mod.revert("web", 0, enforce_prior_version=1)
    mod.revert("web", 0, enforce_prior_version=3)
    assert mod.inspect("web")["Version"] == 4
    with pytest.raises(Exception, match="Enforcing job modify index 1"):
        mod.register(v2, job_modify_index=1)
    mod.purge("web")
    assert mod.inspect("web") is None


def test_every_request_carries_token_namespace_region_and_waits_block(loaders, nomad):
    nomad.script("web", "healthy", delay=0.3)  # the deployment is still running at the first read
    assert deploy_web(loaders, "web:1").result is True
    assert all(r.headers.get("x-nomad-token") == TOKEN for r in nomad.requests)
    for request in nomad.requests:
        if request.path != "/v1/jobs/parse":  # the spec lists no parameters for parse
            assert (request.arg("namespace"), request.arg("region")) == ("default", "global"), request.path
    blocking = [r for r in nomad.requests if r.method == "GET" and r.arg("index")]
    assert blocking and all(r.arg("wait") for r in blocking)
    assert nomad.blocking  # the emulator held them until the deployment changed


def test_errors_name_the_problem_and_never_carry_the_token(loaders, nomad):
    nomad.token = "another-token-entirely"
    try:
        with pytest.raises(Exception, match="HTTP 403") as exc:
            loaders.modules.nomad_job.status("web")
        assert "is the token valid" in str(exc.value) and TOKEN not in str(exc.value)
        result = deploy_web(loaders, "web:1")
        assert result.result is False and "HTTP 403" in result.comment and TOKEN not in result.comment
    finally:
        nomad.token = TOKEN


def test_a_wrong_field_name_is_a_contract_violation(nomad):
    import requests

    response = requests.post(
        f"{nomad.url}/v1/jobs",
        json={"Job": {"ID": "x"}, "EnforceIndex": True, "ModifyIndex": 3},
        headers={"X-Nomad-Token": TOKEN},
        timeout=5,
    )
    assert response.status_code == 400
    assert nomad.violations == ["POST /v1/jobs: JobRegisterRequest has no field 'ModifyIndex'"]
    nomad.violations.clear()


def test_plain_http_is_refused_and_unresolved_tokens_never_leave(nomad, make_loaders):
    insecure = make_loaders(nomad_pillar(nomad, allow_insecure_endpoint=False), {"__cli": "salt-call"})
    with pytest.raises(CommandExecutionError, match="is not HTTPS"):  # configuration: one line on salt-call, no usage
        insecure.modules.nomad_job.status("web")
    unresolved = make_loaders(nomad_pillar(nomad, token="vault:secret/hecate/nomad#token"), {"__cli": "salt-call"})
    with pytest.raises(Exception, match="unresolved vault: reference"):
        unresolved.modules.nomad_job.status("web")
    result = unresolved.states.nomad_job.present(name="hecate-redis", source="salt://hecate/nomad/redis.nomad.j2")
    assert result.result is False and "unresolved vault: reference" in result.comment
    assert nomad.requests == []
