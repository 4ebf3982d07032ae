"""hecatelib.backups records a section that a backend or Salt refused, and lets a bug in hecate raise."""

import pytest
from salt.exceptions import CommandExecutionError, SaltClientError

from hecatelib import backups
from hecatelib.backends import BACKENDS

TREE = {"global": {"environment": "production"}}


def refusing(error):
    def call(target, fun, *args, **kwargs):
        raise error

    return call


@pytest.mark.parametrize("error", [CommandExecutionError("authentik said 503"), SaltClientError("master unreachable")])
def test_a_refusing_backend_is_a_failed_section(error):
    sections, files = backups.collect(TREE, refusing(error), BACKENDS, only=["caddy"])
    assert sections["caddy"] == {"state": "failed", "problems": [f"{type(error).__name__}: {error}"]}
    assert files == {} and sections["nomad"]["state"] == "skipped"


def test_a_bug_in_a_collector_raises_with_its_traceback():
    with pytest.raises(TypeError):
        backups.collect(TREE, refusing(TypeError("collect_caddy() got an unexpected keyword")), BACKENDS, only=["caddy"])


def saved_caddy(tmp_path):
    snap = {"minion": "edge-1", "config": {"apps": {}}, "etag": '"1"'}
    sections = {"caddy": {"state": "saved", "edges": ["edge-1"]}}
    backups.write(tmp_path / "b", sections, {"caddy/edge-1.json": snap}, environment="production")
    return tmp_path / "b"


def test_a_refusing_backend_during_restore_is_a_problem_not_a_crash(tmp_path):
    result = backups.restore(saved_caddy(tmp_path), refusing(CommandExecutionError("caddy admin down")), BACKENDS)
    assert result["restored"] is False and result["problems"] == ["caddy: CommandExecutionError: caddy admin down"]


def test_a_bug_during_restore_raises_with_its_traceback(tmp_path):
    with pytest.raises(AttributeError):
        backups.restore(saved_caddy(tmp_path), refusing(AttributeError("'NoneType' object has no attribute 'get'")), BACKENDS)
