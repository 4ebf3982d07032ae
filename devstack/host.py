"""A scratch host for hecate's roots in tests, never the real /etc: ``ROOT`` is ``hecate_root_prefix`` for every
minion and master the tests configure (tests/conftest.py ``minion_opts_for``, devstack/stack.py), so the
roots are ``ROOT/etc/hecate``, ``ROOT/var/lib/hecate`` and ``ROOT/run/hecate`` (hecatelib.paths). One per test
process; removed at exit. Unix socket paths stay short (under 108 bytes): ROOT lives in /tmp."""

import atexit
import itertools
import pathlib
import shutil
import tempfile

ROOT = pathlib.Path(tempfile.mkdtemp(prefix="hh", dir="/tmp"))
PREFIX = str(ROOT)  # schema.check(tree, root_prefix=PREFIX): validate as the test minions do
ROOTS = [ROOT / "etc/hecate", ROOT / "var/lib/hecate", ROOT / "run/hecate"]  # hecatelib.paths.ROOTS on this host
for _system_dir in ("etc", "var/lib", "run"):
    (ROOT / _system_dir).mkdir(parents=True, exist_ok=True)
atexit.register(shutil.rmtree, ROOT, ignore_errors=True)

_numbers = itertools.count()


def opts():
    """The minion/master option that relocates hecate's roots onto this scratch host."""
    return {"hecate_root_prefix": PREFIX}


def below(kind, name, make=True):
    """A fresh path ``name-<n>`` below root ``kind`` (``etc``, ``lib``, ``run``): a directory made as an operator
    would (0755, owned by the test's user), or with ``make=False`` only its name (hecate makes it)."""
    top = dict(zip(("etc", "lib", "run"), ROOTS, strict=True))[kind]
    path = top / f"{name}-{next(_numbers)}"
    if make:
        path.mkdir(parents=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path
