"""hecate's helpers as they are on disk now, not as a long-running process first imported them.

Loader modules import the helpers by name (``import hecate_schema``), and Python keeps a module it
imported once in ``sys.modules``. A minion or master that runs on after ``saltutil.sync_all`` (or a
``pip install -U``) reloads its loader modules, but their ``import hecate_*`` would hand back the helpers
of the old version: new states validating with the old schema ("unknown key" for a key the new version
has). Every loader module calls :func:`drop_stale` before its imports: when any helper's file changed
since it was seen, every ``hecate_*`` helper is dropped (they import each other, so all go together)
and the imports that follow load the files as they are now. Costs a ``stat`` per helper per module load.

Keep this file small and stable: it is the one helper that cannot refresh itself.
"""

import os
import sys

_SEEN = {}  # helper name -> (file, mtime_ns, size) when first seen


def _signature(module):
    path = getattr(module, "__file__", None)
    try:
        stat = os.stat(path)
    except (TypeError, OSError):  # no file (a namespace, a test double) or the file is gone
        return (path, None, None)
    return (path, stat.st_mtime_ns, stat.st_size)


def drop_stale(prefix="hecate_"):
    """Forget every ``prefix*`` module when one of their files changed since it was first seen.
    Returns the names dropped (empty when nothing changed)."""
    names = [n for n in list(sys.modules) if n.startswith(prefix) and n != __name__]
    now = {n: _signature(sys.modules[n]) for n in names}
    if any(n in _SEEN and _SEEN[n] != signature for n, signature in now.items()):
        for name in names:
            sys.modules.pop(name, None)
            _SEEN.pop(name, None)
        return names
    for name, signature in now.items():
        _SEEN.setdefault(name, signature)
    return []
