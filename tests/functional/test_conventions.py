"""Conventions every execution module keeps: its API client is built once and cached in ``__context__``."""

import pytest

from tests.conftest import SPECS, assert_no_violations
from tests.emulators.nomad import NomadEmulator
from tests.functional.test_nomad_job import TOKEN, nomad_pillar


@pytest.fixture
def nomad():
    emulator = NomadEmulator(str(SPECS / "nomad" / "nomad-deploy-subset.json"), token=TOKEN, delay=0.01).start()
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
