"""hecate_fresh: after a sync replaced hecate's helpers, a long-running minion or master loads the new
files instead of the helpers it imported first (seen: a reused minion validating a new pillar key with
the old schema, "unknown key")."""

import importlib
import sys

import pytest

import hecate_fresh

PACKAGE = "zzfresh_pkg"


@pytest.fixture
def helpers(tmp_path, monkeypatch):
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "schema.py").write_text("KEYS = ('mode', 'email')\n")
    (package / "state.py").write_text(f"from {PACKAGE} import schema\n\ndef keys():\n    return schema.KEYS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
        sys.modules.pop(name, None)
        hecate_fresh._SEEN.pop(name, None)


def load_state():
    hecate_fresh.drop_stale(PACKAGE)  # what every loader module does before its imports
    return importlib.import_module(f"{PACKAGE}.state")


def test_a_synced_helper_replaces_the_one_imported_first_and_its_importers_with_it(helpers):
    assert load_state().keys() == ("mode", "email")
    first = sys.modules[f"{PACKAGE}.state"]
    assert load_state() is first  # nothing changed on disk: nothing is dropped, nothing re-imported
    (helpers / "schema.py").write_text("KEYS = ('mode', 'email', 'certificates')\n")  # the sync
    importlib.invalidate_caches()
    state = load_state()
    assert state is not first and state.keys() == ("mode", "email", "certificates")  # the unchanged importer too


def test_a_helper_whose_file_is_gone_counts_as_changed(helpers):
    load_state()
    hecate_fresh.drop_stale(PACKAGE)  # seen
    (helpers / "state.py").unlink()
    assert sorted(hecate_fresh.drop_stale(PACKAGE)) == [PACKAGE, f"{PACKAGE}.schema", f"{PACKAGE}.state"]


def test_what_a_process_keeps_survives_a_drop(helpers):
    held = hecate_fresh.kept("zzfresh-locks")
    held["run-1"] = "lock"
    load_state()
    (helpers / "schema.py").write_text("KEYS = ()\n")
    importlib.invalidate_caches()
    load_state()
    assert hecate_fresh.kept("zzfresh-locks") is held and held == {"run-1": "lock"}
