"""hecate's shared helpers, and the ``salt.loader`` entry point for ``pip install .``.

The files next to this one are Salt ``utils`` modules (synced by ``saltutil.sync_all``) and plain
Python modules at the same time. Loader modules import them by their top-level name
(``import hecate_schema``):

- synced: Salt puts ``extmods/utils`` on ``sys.path`` while it loads modules, states, runners and pillars;
- pip-installed: Salt 3008 reads no ``utils`` directory from entry points, so importing this package
  (which Salt does to call :func:`loader_dirs`, before it loads any module) appends this directory to
  ``sys.path``. Every helper is named ``hecate_*``, so nothing else can be shadowed.
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
