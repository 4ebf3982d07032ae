"""Shipped code imports hecate's helpers at module level only.

Synced (saltutil.sync_all), Salt puts extmods/utils on sys.path only while it loads a module: an
``import hecate_x`` inside a function runs later, finds nothing, and fails on a real minion (it did:
``No module named 'hecatelib.nomad.nginx'`` in a Nomad stage). Cycles between helpers are fine with plain
``import hecate_x`` at the top: attributes are used at call time, not import time."""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for d in ("_modules", "_states", "_runners", "_pillar", "_utils") for p in (REPO / d).glob("*.py"))


def late_helper_imports(path):
    tree = ast.parse(path.read_text(), str(path))
    late = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for inner in ast.walk(node):
                names = []
                if isinstance(inner, ast.Import):
                    names = [a.name for a in inner.names]
                elif isinstance(inner, ast.ImportFrom) and inner.module:
                    names = [inner.module]
                late.extend(f"{path.relative_to(REPO)}:{inner.lineno} {n}" for n in names if n.startswith("hecate_"))
    return late


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_helpers_are_imported_at_module_level(path):
    assert late_helper_imports(path) == []
