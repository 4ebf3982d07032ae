"""hecate_fresh: after a sync replaced hecate's helpers, a long-running minion or master loads the new
files instead of the helpers it imported first (seen: a reused minion validating a new pillar key with
the old schema, "unknown key")."""

import importlib
import sys

import hecate_fresh
import pytest


@pytest.fixture
def helpers(tmp_path, monkeypatch):
    (tmp_path / "hecate_zzfresh_schema.py").write_text("KEYS = ('mode', 'email')\n")
    (tmp_path / "hecate_zzfresh_state.py").write_text(
        "import hecate_zzfresh_schema\n\ndef keys():\n    return hecate_zzfresh_schema.KEYS\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("hecate_zzfresh_schema", "hecate_zzfresh_state"):
        sys.modules.pop(name, None)
        hecate_fresh._SEEN.pop(name, None)


def load_state():
    hecate_fresh.drop_stale("hecate_zzfresh_")  # what every loader module does before its imports
    return importlib.import_module("hecate_zzfresh_state")


def test_a_synced_helper_replaces_the_one_imported_first_and_its_importers_with_it(helpers):
    assert load_state().keys() == ("mode", "email")
    first = sys.modules["hecate_zzfresh_state"]
    assert load_state() is first  # nothing changed on disk: nothing is dropped, nothing re-imported
    (helpers / "hecate_zzfresh_schema.py").write_text("KEYS = ('mode', 'email', 'certificates')\n")  # the sync
    importlib.invalidate_caches()
    state = load_state()
    assert state is not first and state.keys() == ("mode", "email", "certificates")  # the unchanged importer too


def test_a_helper_whose_file_is_gone_counts_as_changed(helpers):
    load_state()
    hecate_fresh.drop_stale("hecate_zzfresh_")  # seen
    (helpers / "hecate_zzfresh_state.py").unlink()
    assert sorted(hecate_fresh.drop_stale("hecate_zzfresh_")) == ["hecate_zzfresh_schema", "hecate_zzfresh_state"]
