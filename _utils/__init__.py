"""hecate's shared helpers, and the ``salt.loader`` entry point for ``pip install .``.

The files next to this one are Salt ``utils`` modules (synced by ``saltutil.sync_all``) and plain
Python modules at the same time. Loader modules import them by their top-level name
(``import hecate_schema``): Salt puts the utils directories on ``sys.path`` while it loads
modules, states, runners and pillars, both for synced extmods and for entry-point directories.
"""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def loader_dirs():
    """Directories Salt's loader reads, keyed by loader type (new-style entry point)."""
    return {
        "modules": [os.path.join(_HERE, "modules")],
        "states": [os.path.join(_HERE, "states")],
        "runners": [os.path.join(_HERE, "runners")],
        "pillar": [os.path.join(_HERE, "pillar")],
        "utils": [_HERE],
    }
