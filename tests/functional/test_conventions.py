"""Conventions every execution module keeps: its API client is built once and cached in ``__context__``;
the ``hecate`` tree comes from pillar, whatever the minion config holds."""

import pytest

from devstack import host
from devstack.emulators.nomad import start_nomad
from devstack.stack import NULL_MODULE
from tests.conftest import assert_no_violations
from tests.functional.test_nomad_job import TOKEN, nomad_pillar
from tests.functional.test_terraform import host_opts as terraform_host
from tests.functional.test_terraform import pillar_for as terraform_pillar
from tests.functional.test_terraform import tf_env  # noqa: F401 - the fixture, shared


@pytest.fixture
def nomad():
    emulator = start_nomad(token=TOKEN)
    yield emulator
    emulator.stop()
    assert_no_violations(emulator)


def test_nomad_job_builds_its_client_once(make_loaders, nomad):
    loaders = make_loaders(nomad_pillar(nomad))
    assert loaders.modules.nomad_job.inspect("absent-job") is None
    key, client = loaders.context["nomad_job.client"]
    assert loaders.modules.nomad_job.inspect("absent-job") is None
    assert loaders.context["nomad_job.client"][1] is client  # the same session, connections kept alive
    assert str(TOKEN) not in repr(key)
    assert [r.path for r in nomad.requests] == ["/v1/job/absent-job"] * 2


def test_hecate_terraform_reads_the_pillar_not_a_minion_config_key(make_loaders, tf_env):  # noqa: F811
    """Issue 15: ``config.get("hecate")`` answered with the minion config's ``hecate`` key, so the module
    said ``pillar hecate:terraform is not set`` with the pillar right there."""
    workdir = host.below("lib", "conventions")
    (workdir / "main.tf").write_text(NULL_MODULE)
    pillar = terraform_pillar(workdir, nodes={"edge-1": "192.0.2.10"})
    loaders = make_loaders(pillar, {"hecate": {"dns": {"token": "a-token-kept-in-the-minion-config"}}, **terraform_host(tf_env)})
    planned = loaders.modules.hecate_terraform.run(test=True)
    assert planned["test"] is True and planned["changes"] is True
    assert planned["summary"]["create"] == ['null_resource.edge["edge-1"]']
