"""Shared fixtures: repo paths, functional Salt loaders, and emulator plumbing.

Tiers (as in saltext-vault): tests/unit (pure functions, no I/O), tests/functional (Salt's loader
in-process against real Caddy or the emulators), tests/integration (a real salt-master and
salt-minion from pytest-salt-factories).
"""

import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"  # the hostile corpora, reference configs (the seed and specs: devstack/fixtures)
UTILS = REPO / "_utils"
if str(UTILS) not in sys.path:
    sys.path.insert(0, str(UTILS))  # tests import the shared helpers as Salt's loader does
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def pytest_configure(config):
    # Salt's log handlers outlive pytest's captured streams; without this every late record prints a
    # "--- Logging error ---" traceback at exit that hides the real output.
    import logging

    logging.raiseExceptions = False
    config.addinivalue_line("markers", "fault: fault-injection and bad-input suite (part of make test)")
    config.addinivalue_line("markers", "integration: needs a real salt-master + salt-minion")


# Under xdist (``make test``: ``-n 2 --dist loadfile``) workers take whole files in collection order: the
# slow tiers first, so that a long file never starts last and runs alone; unit tests fill the gaps at the end.
# Within a file the order is kept; a worker still sees the integration package in one stretch (one master).
TIER_ORDER = ("integration", "functional", "unit")
# The longest files, whose tests each start from a fresh stack (function-scoped fixtures): their tests are
# handed out one by one, so both workers share them instead of one worker running the whole file.
SPLIT_BY_TEST = ("tests/integration/test_full_stack.py", "tests/integration/test_orchestrate.py")


def pytest_collection_modifyitems(session, config, items):
    def tier(item):
        parts = item.path.relative_to(REPO).parts if item.path.is_relative_to(REPO) else ()
        return TIER_ORDER.index(parts[1]) if len(parts) > 2 and parts[1] in TIER_ORDER else len(TIER_ORDER)

    items.sort(key=tier)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` as xdist does it, except for :data:`SPLIT_BY_TEST`, and always in collection order
    (xdist's default reorders files by size, which would scatter the integration package over a worker's run
    and start its master more than once)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileOrTestScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            return nodeid if path in SPLIT_BY_TEST else path

    config.option.loadscopereorder = False
    return FileOrTestScheduling(config, log)


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def salt_factories_config():
    """A root of its own for the Salt daemons of this session (of each xdist worker): saltfactories'
    default puts them in ``$TMPDIR/<daemon id>``, shared by parallel workers and concurrent runs. Short,
    for the daemons' unix sockets. ``slow_stop`` off: salt-factories' default SIGTERMs each daemon process
    and waits for it to exit (for coverage data, which the suite does not collect), about 8 s per master;
    a SIGKILL of the daemons at the end of their scope loses nothing a test asserts."""
    import shutil
    import tempfile

    root = pathlib.Path(tempfile.mkdtemp(prefix="hsf", dir="/tmp"))
    yield {"root_dir": root, "slow_stop": False}
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def short_tmp():
    """A short temp dir: unix socket paths must stay under ~100 bytes."""
    import tempfile

    path = pathlib.Path(tempfile.mkdtemp(prefix="hc", dir="/tmp"))
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def minion_opts_for(root, pillar=None, extra=None):
    """Minion opts that load hecate's modules straight from the repo (the file_roots way of shipping), with
    hecate's roots on the scratch host (devstack.host: ``hecate_root_prefix``)."""
    import salt.config

    from devstack import host

    root = pathlib.Path(root)
    for sub in ("cache", "pki", "logs", "run", "extmods"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    opts = salt.config.minion_config(None)
    opts.update(
        {
            "id": "hecate-functional",
            "root_dir": str(root),
            "cachedir": str(root / "cache"),
            "pki_dir": str(root / "pki"),
            "sock_dir": str(root / "run"),
            "extension_modules": str(root / "extmods"),
            "file_client": "local",
            "file_roots": {"base": [str(REPO / "salt")]},
            "pillar_roots": {"base": []},
            "module_dirs": [str(REPO / "_modules")],
            "states_dirs": [str(REPO / "_states")],
            "utils_dirs": [str(REPO / "_utils")],
            "runner_dirs": [str(REPO / "_runners")],
            "pillar": pillar or {},
            "log_file": str(root / "logs" / "minion.log"),
            "features": {"enable_slsvars_fixes": True},
            **host.opts(),
        }
    )
    opts.update(extra or {})
    return opts


def loaders_for(root, pillar=None, extra=None):
    """saltfactories ``Loaders`` on :func:`minion_opts_for`. Their constructor runs ``saltutil.sync_all``,
    which then fires ``module_refresh`` on the minion's event bus and waits 1 s for a bus that no
    functional test runs; that event is dropped at once instead (hecate's modules load from
    ``module_dirs``, so the sync has nothing to copy and nobody to tell)."""
    from unittest import mock

    import salt.utils.event
    from saltfactories.utils.functional import Loaders

    with mock.patch.object(salt.utils.event.SaltEvent, "connect_pull", lambda self, timeout=None: False):
        return Loaders(minion_opts_for(root, pillar, extra))


@pytest.fixture
def make_loaders(short_tmp, request):
    """Factory: ``make_loaders(pillar)`` -> saltfactories ``Loaders`` with hecate's modules and states."""
    made = []

    def factory(pillar=None, extra=None):
        root = short_tmp / f"fn{len(made)}{abs(hash(request.node.nodeid)) % 10**6}"
        loaders = loaders_for(root, pillar, extra)
        made.append(loaders)
        return loaders

    yield factory
    for loaders in made:
        loaders.reset_state()


def assert_no_violations(emulator):
    assert not emulator.violations, f"{emulator.name}: contract violations: {emulator.violations}"
