"""Nomad durations in the pillar are read as Nomad reads them, with Go's time.ParseDuration
(src/time/format.go): the ``d`` unit Caddy accepts is refused, with the key path and the units Go knows
(issue 15)."""

import copy

import pytest

from devstack.pillars import seed_tree
from hecatelib.nomad import jobs as nomad_jobs
from hecatelib.spec import Report


def errors(nomad):
    report = Report("hecate")
    tree = copy.deepcopy(seed_tree())
    tree["nomad"] = nomad_jobs.PILLAR_SCHEMA(nomad, "hecate:nomad", report)
    if not report.errors:
        nomad_jobs.check_pillar(tree, report)
    return [(path, reason) for path, reason in report.errors]


@pytest.mark.parametrize(
    ("nomad", "path"),
    [
        ({"jobs": {"authentik": {"update": {"min_healthy_time": "1d"}}}}, "hecate:nomad:jobs:authentik:update:min_healthy_time"),
        ({"jobs": {"authentik": {"update": {"progress_deadline": "1d2h"}}}}, "hecate:nomad:jobs:authentik:update:progress_deadline"),
        ({"deploy_timeout": "2d"}, "hecate:nomad:deploy_timeout"),
        ({"promote": {"healthy_seconds": "1d"}}, "hecate:nomad:promote:healthy_seconds"),
    ],
)
def test_the_d_unit_is_refused_with_the_key_path_and_go_units(nomad, path):
    [(where, reason)] = errors(nomad)
    assert where == path and "ns, us, ms, s, m, h" in reason, (where, reason)


def test_what_go_accepts_is_accepted_and_read_as_go_reads_it():
    assert errors({"deploy_timeout": "1.5h", "jobs": {"authentik": {"update": {"progress_deadline": "1h0m30s"}}}}) == []
    assert nomad_jobs.seconds("1.5h") == 5400 and nomad_jobs.seconds("1h0m30s") == 3630
    assert nomad_jobs.seconds("1500us") == 0.0015
    for text in ("1d", "1 s", "\uff11s", "s", ""):
        with pytest.raises(ValueError):
            nomad_jobs.seconds(text)
