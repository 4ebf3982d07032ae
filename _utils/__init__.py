"""hecate's shared helpers, and the ``salt.loader`` entry point for ``pip install .``.

The helpers are the ``hecatelib`` package next to this file (and ``hecate_fresh``, which refreshes it
after a sync). Loader modules import them by their top-level name (``from hecatelib.caddy import
config``):

- synced: ``saltutil.sync_all`` copies ``_utils`` (sub-directories included) to ``extmods/utils``, which
  Salt puts on ``sys.path`` while it loads modules, states, runners and pillars;
- pip-installed: Salt 3008 reads no ``utils`` directory from entry points, so importing this package
  (which Salt does to call :func:`loader_dirs`, before it loads any module) appends this directory to
  ``sys.path``. Only ``hecatelib`` and ``hecate_fresh`` are found there, so nothing else can be shadowed.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)


def loader_dirs():
    """Directories Salt's loader reads, keyed by loader type (new-style entry point)."""
    return {
        "modules": [os.path.join(_HERE, "modules")],
        "states": [os.path.join(_HERE, "states")],
        "runners": [os.path.join(_HERE, "runners")],
        "pillar": [os.path.join(_HERE, "pillar")],
        "beacons": [os.path.join(_HERE, "beacons")],
        "utils": [_HERE],
    }


def validate_main():
    """``hecate-validate``: the console script (this package first puts ``hecatelib`` on ``sys.path``)."""
    from hecatelib import cli

    return cli.main()
