"""hecate:nomad: schema, cross-key checks, defaults, and the pure deployment helpers."""

import copy

import pytest

from devstack.pillars import seed_tree
from hecatelib import schema
from hecatelib.nomad import jobs as nomad_jobs
from hecatelib.spec import Report


def check(nomad, tree=None):
    """Run the nomad section through PILLAR_SCHEMA and check_pillar as the hecate schema does."""
    report = Report("hecate")
    full = copy.deepcopy(tree or seed_tree())
    full["nomad"] = nomad_jobs.PILLAR_SCHEMA(nomad, "hecate:nomad", report)
    if not report.errors:
        nomad_jobs.check_pillar(full, report)
    return report


def test_the_seed_has_no_nomad_section_and_stays_valid():
    tree = schema.validate(seed_tree())
    assert "nomad" not in seed_tree()
    report = check(None, tree)
    assert report.errors == []
    settings = nomad_jobs.settings(tree)
    assert settings["address"] == "https://nomad.service.consul:4646"
    assert (settings["namespace"], settings["region"], settings["datacenters"]) == ("default", "global", ["dc1"])
    assert settings["promote"] == {"mode": "auto", "healthy_seconds": 30}
    assert settings["allow_insecure_endpoint"] is False and "token" not in settings


def test_a_full_section_validates_and_normalises_durations():
    report = Report("hecate")
    out = nomad_jobs.PILLAR_SCHEMA(
        {
            "address": "https://nomad.example.org:4646",
            "token": "vault:secret/hecate/nomad#token",
            "promote": {"mode": "after", "healthy_seconds": "2m"},
            "deploy_timeout": "30m",
            "blocking_wait": 10,
            "jobs": {"authentik": {"count": 2, "update": {"canary": 2, "progress_deadline": "20m"}, "promote": {"mode": "manual"}}},
        },
        "hecate:nomad",
        report,
    )
    assert report.errors == []
    assert out["promote"] == {"mode": "after", "healthy_seconds": 120.0}
    assert out["deploy_timeout"] == 1800.0


@pytest.mark.parametrize(
    ("nomad", "path", "reason"),
    [
        ({"adress": "https://x:4646"}, "hecate:nomad:adress", "did you mean 'address'"),
        ({"promote": {"mode": "yolo"}}, "hecate:nomad:promote:mode", "must be one of auto, after, manual"),
        ({"promote": {"healthy_seconds": -1}}, "hecate:nomad:promote:healthy_seconds", "seconds >= 0"),
        ({"address": "nomad:4646"}, "hecate:nomad:address", "URL"),
        ({"address": "http://10.0.0.1:4646"}, "hecate:nomad:address", "is not HTTPS"),
        ({"jobs": {"redis": {"update": {"canary": 1}}}}, "hecate:nomad:jobs:redis:update:canary", "cannot run canaries"),
        (
            {"jobs": {"authentik": {"deploy_timeout": 60}}},
            "hecate:nomad:jobs:authentik:deploy_timeout",
            "not longer than the progress deadline",
        ),
        ({"deploy_timeout": 300}, "hecate:nomad:deploy_timeout", "not longer than the progress deadline"),
        ({"jobs": {"redis": {"id": "hecate-postgresql"}}}, "hecate:nomad:jobs:redis:id", "also the ID of jobs:postgresql"),
        (
            {"jobs": {"authentik": {"update": {"min_healthy_time": "soon"}}}},
            "hecate:nomad:jobs:authentik:update:min_healthy_time",
            "duration",
        ),
        (
            {"jobs": {"reverse-proxy": {"constraints": [{"attribute": "attr.x"}]}}},
            "hecate:nomad:jobs:reverse-proxy:constraints[0]:attribute",
            "Nomad attribute",
        ),
        (
            {"jobs": {"reverse-proxy": {"constraints": [{"attribute": "${attr.x}", "value": 'a"b'}]}}},
            "hecate:nomad:jobs:reverse-proxy:constraints[0]:value",
            "quote",
        ),
        (
            {"secrets": {"authentik_secret_key": "secret/hecate/authentik/secret_key"}},
            "hecate:nomad:secrets:authentik_secret_key",
            "path#key",
        ),
        ({"token": "abc\ndef"}, "hecate:nomad:token", "value not shown"),
        (
            {"jobs": {"redis": {"constraints": [{"attribute": "${attr.x}", "operator": "regexp", "value": "(["}]}}},
            "hecate:nomad:jobs:redis:constraints[0]:value",
            "bad regexp",
        ),
    ],
)
def test_bad_values_are_reported_with_their_key_path(nomad, path, reason):
    report = check(nomad)
    assert any(p == path and reason in r for p, r in report.errors), report.errors


def test_insecure_address_is_allowed_when_asked_for():
    assert check({"address": "http://127.0.0.1:4646", "allow_insecure_endpoint": True}).errors == []


def test_a_secret_value_never_appears_in_an_error():
    report = check({"token": "s3cr3t-t0ken\n"})
    assert report.errors and "s3cr3t" not in str(report.errors)


def test_canary_on_the_reverse_proxy_warns_about_static_ports():
    report = check({"jobs": {"reverse-proxy": {"update": {"canary": 1}}}})
    assert report.errors == []
    assert any("spare edge node" in reason for _, reason in report.warnings)


def test_job_settings_merge_order():
    tree = schema.validate(seed_tree())
    tree["nomad"] = {"promote": {"mode": "after", "healthy_seconds": 5}, "jobs": {"authentik": {"count": 3, "promote": {"mode": "manual"}}}}
    job = nomad_jobs.job_settings(tree, "authentik")
    assert job["id"] == "hecate-authentik" and job["count"] == 3
    assert job["update"]["canary"] == 3  # blue-green: as many canaries as instances
    assert job["promote"] == {"mode": "manual", "healthy_seconds": 5}
    assert nomad_jobs.job_settings(tree, "redis")["promote"]["mode"] == "after"


def test_durations():
    assert nomad_jobs.seconds("1m30s") == 90 and nomad_jobs.seconds("250ms") == 0.25
    assert nomad_jobs.seconds(15 * 10**9) == 15  # Nomad's JSON carries nanoseconds
    with pytest.raises(ValueError):
        nomad_jobs.seconds("soon")
    assert [nomad_jobs.go_duration(s) for s in (0.0004, 0.25, 2, 120, 90)] == ["0s", "250ms", "2s", "2m", "90s"]


def deployment(**groups):
    return {"Status": "running", "TaskGroups": groups}


def test_canary_groups_need_every_canary_placed_and_healthy():
    waiting = {"DesiredCanaries": 2, "PlacedCanaries": ["a", "b"], "HealthyAllocs": 2, "Promoted": False}
    assert nomad_jobs.canaries_ready(deployment(web=waiting))
    assert not nomad_jobs.canaries_ready(deployment(web={**waiting, "HealthyAllocs": 1}))
    assert not nomad_jobs.canaries_ready(deployment(web={**waiting, "PlacedCanaries": ["a"]}))
    assert not nomad_jobs.canaries_ready(deployment(web={**waiting, "Promoted": True}))
    assert nomad_jobs.canary_groups(deployment(web={**waiting, "AutoPromote": True})) == {}  # Nomad promotes those
    assert nomad_jobs.canary_groups(deployment(web={"DesiredCanaries": 0})) == {}
    assert not nomad_jobs.canaries_ready(deployment(web=waiting, api={**waiting, "HealthyAllocs": 0}))


def test_auto_revert_version_from_the_status_description():
    failed = {"StatusDescription": "Failed due to unhealthy allocations - rolling back to job version 3"}
    assert nomad_jobs.auto_revert_version(failed) == 3
    assert nomad_jobs.auto_revert_version({"StatusDescription": "Failed due to progress deadline"}) is None


def test_failing_allocations_carry_their_task_events():
    allocs = [
        {"ID": "1", "Name": "j.g[0]", "ClientStatus": "running", "DeploymentStatus": {"Healthy": True}, "TaskStates": {}},
        {
            "ID": "2",
            "Name": "j.g[1]",
            "ClientStatus": "failed",
            "DeploymentStatus": {"Healthy": False},
            "TaskStates": {"t": {"State": "dead", "Failed": True, "Events": [{"Type": "Driver Failure", "DisplayMessage": "no image"}]}},
        },
    ]
    (bad,) = nomad_jobs.failing_allocations(allocs)
    assert bad["id"] == "2" and bad["tasks"]["t"] == {"state": "dead", "failed": True, "events": ["Driver Failure: no image"]}


def test_plan_summary_keeps_non_zero_updates_and_changed_fields():
    plan = {
        "Diff": {
            "Type": "Edited",
            "Fields": [],
            "Objects": [],
            "TaskGroups": [
                {
                    "Type": "Edited",
                    "Name": "web",
                    "Fields": [{"Type": "Edited", "Name": "Count", "Old": "1", "New": "2"}],
                    "Objects": [],
                    "Tasks": [
                        {
                            "Type": "Edited",
                            "Name": "app",
                            "Fields": [{"Type": "Edited", "Name": "Config.image", "Old": "a:1", "New": "a:2"}],
                            "Objects": [],
                        }
                    ],
                }
            ],
        },
        "Annotations": {"DesiredTGUpdates": {"web": {"Place": 1, "Canary": 1, "Ignore": 1, "Stop": 0}}},
        "FailedTGAllocs": {"web": {}},
    }
    summary = nomad_jobs.plan_summary(plan)
    assert summary["diff"] == "Edited"
    assert summary["desired_tg_updates"] == {"web": {"Place": 1, "Canary": 1, "Ignore": 1}}
    assert summary["fields"] == ["web/Count: 1 -> 2", "web/app: Config.image: a:1 -> a:2"]
    assert summary["placement_failures"] == {"web": ["1 allocation(s) cannot be placed", "no node in the job's datacenters"]}


def test_deploy_timeout_is_longer_than_the_progress_deadline():
    job = {"TaskGroups": [{"Update": {"ProgressDeadline": 600 * 10**9}}, {"Update": {"ProgressDeadline": 900 * 10**9}}]}
    assert nomad_jobs.progress_deadline(job) == 900
    assert nomad_jobs.deploy_timeout(job) > 900
    assert nomad_jobs.deploy_timeout(job, promote={"mode": "after", "healthy_seconds": 120}) > 1020
    assert nomad_jobs.deploy_timeout(job, configured=5000) == 5000
    assert nomad_jobs.deploy_timeout(job, configured=10) > 900  # never shorter than Nomad's own deadline


def test_has_deployments():
    assert nomad_jobs.has_deployments({"Type": "service", "TaskGroups": [{"Update": {"MaxParallel": 1}}]})
    assert not nomad_jobs.has_deployments({"Type": "batch", "TaskGroups": [{"Update": {"MaxParallel": 1}}]})
    assert not nomad_jobs.has_deployments({"Type": "service", "TaskGroups": [{"Update": {"MaxParallel": 0}}]})


def test_variables_file():
    assert nomad_jobs.variables_hcl({"b": 2, "a": 'x"y', "c": True}) == 'a = "x\\"y"\nb = 2\nc = true\n'
    with pytest.raises(ValueError):
        nomad_jobs.variables_hcl({"bad name": 1})
