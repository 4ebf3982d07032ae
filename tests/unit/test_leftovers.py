"""Nothing is left behind: temp directories are removed by the code that made them, the authentik emulator
caches its parsed specs in the checkout (not one 1.4 MB file per clone in /tmp), and the demo's directory is
per user, removed by ``make demo-stop``, with its pillar in git so every record names a commit."""

import ast
import getpass
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading

from hecatelib.engine import run as engine_run
from tests.conftest import REPO

MAKERS = {"mkdtemp", "mkstemp"}
CLEANERS = {"rmtree", "remove", "unlink", "cleanup"}


def _calls(node):
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            yield func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def test_every_temp_directory_is_removed_by_the_function_that_made_it():
    """A function (a fixture, a bench run) that makes a temp dir with ``mkdtemp``/``mkstemp`` also removes it
    (``TemporaryDirectory`` as a context removes itself)."""
    leaks = []
    for folder in ("tests", "bench", "demo", "_modules", "_runners", "_utils", "_states"):
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            outermost = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            outermost += [m for c in tree.body if isinstance(c, ast.ClassDef) for m in c.body if isinstance(m, ast.FunctionDef)]
            for node in outermost:  # a nested function's temp dir may be removed by the function around it
                called = set(_calls(node))
                if called & MAKERS and not called & CLEANERS:
                    leaks.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert leaks == []


def test_the_authentik_emulator_caches_its_specs_in_the_checkout(tmp_path, monkeypatch):
    from devstack.emulators import authentik

    empty = tmp_path / "tmp"
    empty.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(empty))
    monkeypatch.setattr(authentik, "SPEC_CACHE", tmp_path / "checkout-cache", raising=False)
    path = authentik.spec_path(authentik.SPEC_VERSIONS[-1])
    first = authentik._load_spec(path)
    assert list(empty.iterdir()) == []  # nothing in the temp dir
    [cached] = (tmp_path / "checkout-cache").iterdir()
    assert cached.name.startswith(os.path.basename(path)) and authentik._load_spec(path) == first  # read back


def _demo():
    spec = importlib.util.spec_from_file_location("hecate_demo_run", REPO / "demo" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_directory_is_per_user_and_stop_removes_it(tmp_path, monkeypatch):
    demo = _demo()
    monkeypatch.delenv("HECATE_DEMO_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert demo.demo_dir() == tmp_path / f"hecate-demo-{getpass.getuser()}"
    monkeypatch.setenv("HECATE_DEMO_DIR", str(tmp_path / "mine"))
    assert demo.demo_dir() == tmp_path / "mine"

    run = tmp_path / "hecate-demo-test"
    run.mkdir()
    (run / sys.modules["stack"].MARKER).touch()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    reaper = threading.Thread(target=sleeper.wait)  # reaped as it ends, as init reaps the demo's daemons
    reaper.start()
    (run / "pids.json").write_text(f'{{"sleeper": {sleeper.pid}}}')
    try:
        assert demo.stop(run, remove=True) == ["sleeper"]
        reaper.join(timeout=30)
        assert sleeper.returncode == -signal.SIGTERM
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
    assert not run.exists()

    foreign = tmp_path / "not-a-demo"  # a --dir the demo did not make is never deleted
    foreign.mkdir()
    demo.stop(foreign, remove=True)
    assert foreign.exists()


def test_the_demo_pillar_is_a_git_repository_so_records_name_its_commit(tmp_path):
    _demo()  # demo/run.py imports demo/stack.py as ``stack``
    pillar = tmp_path / "pillar"
    pillar.mkdir()
    (pillar / "hecate.sls").write_text("hecate: {}\n")
    sys.modules["stack"].commit_pillar(pillar)
    found = engine_run.pillar_commit({"pillar_roots": {"base": [str(pillar)]}})
    assert found is not None and len(found["commit"]) == 40 and found["dirty"] is False
