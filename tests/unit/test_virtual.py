"""``__virtual__`` in one shape in every loader module: ``__virtualname__``, or ``(False, "<name>: <reason>")``
when something it needs is missing, never an ImportError at load time."""

import ast
import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
LOADER_MODULES = sorted(p for d in ("_modules", "_states", "_runners", "_pillar") for p in (REPO / d).glob("*.py"))


def virtual_returns(path):
    tree = ast.parse(path.read_text())
    names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert "__virtualname__" in names, f"{path.name}: no __virtualname__"
    (function,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__virtual__"]
    return [n.value for n in ast.walk(function) if isinstance(n, ast.Return)]


def shape(value):
    if isinstance(value, ast.Name) and value.id == "__virtualname__":
        return "name"
    if isinstance(value, ast.Tuple) and len(value.elts) == 2 and getattr(value.elts[0], "value", None) is False:
        return "refusal"
    if isinstance(value, ast.Call) and ast.unparse(value.func) == "salt_state.virtual":
        return "state helper"
    return ast.unparse(value)


@pytest.mark.parametrize("path", LOADER_MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_virtual_returns_the_name_or_false_and_a_reason(path):
    shapes = {shape(v) for v in virtual_returns(path)}
    assert shapes <= {"name", "refusal", "state helper"}, shapes
    assert shapes & {"name", "state helper"}  # it can load


# A module whose helpers or library are missing loads and says why, with its virtual name first.
# Not yet: _runners/hecate.py and _pillar/hecate.py (helper f's) still import their helpers unguarded.
UNGUARDED = {"_runners/hecate.py", "_pillar/hecate.py"}
UNSYNCED = [p for p in LOADER_MODULES if p.relative_to(REPO).as_posix() not in UNGUARDED]
LIBRARIES = {"_runners/hecate.py": "consul", "_pillar/hecate.py": "hvac"}

PROBE = """
import importlib.util, json, sys
blocked, path, utils = sys.argv[1], sys.argv[2], sys.argv[3]

class Block:
    def find_spec(self, name, target=None, *args):
        if name == blocked or name.startswith(blocked + "."):
            raise ImportError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Block())
if utils:
    sys.path.insert(0, utils)
spec = importlib.util.spec_from_file_location("probe", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.__opts__, module.__salt__ = {}, {}
print(json.dumps([module.__virtualname__, module.__virtual__()]))
"""


def probe(path, blocked, utils):
    out = subprocess.run([sys.executable, "-c", PROBE, blocked, str(path), utils], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("path", UNSYNCED, ids=lambda p: str(p.relative_to(REPO)))
def test_unsynced_utils_are_a_reason_not_an_import_error(path):
    """``saltutil.sync_modules`` without ``sync_utils``: hecate's helpers are not importable."""
    name, virtual = probe(path, "hecate_", "")
    assert virtual[0] is False and virtual[1].startswith(f"{name}: ") and "hecate_" in virtual[1], virtual


@pytest.mark.parametrize("relative", sorted(LIBRARIES))
def test_a_missing_library_is_a_reason_not_an_import_error(relative):
    library = LIBRARIES[relative]
    name, virtual = probe(REPO / relative, library, str(REPO / "_utils"))
    assert virtual == [False, f"{name}: cannot import {library}"]
