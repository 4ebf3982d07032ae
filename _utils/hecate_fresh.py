"""hecate's helpers as they are on disk now, not as a long-running process first imported them.

Loader modules import the helpers from the ``hecatelib`` package, and Python keeps a module it imported
once in ``sys.modules``. A minion or master that runs on after ``saltutil.sync_all`` (or a
``pip install -U``) reloads its loader modules, but their ``from hecatelib import ...`` would hand back
the helpers of the old version: new states validating with the old schema ("unknown key" for a key the
new version has). Every loader module calls :func:`drop_stale` before its imports: when any helper's
file changed since it was seen, the whole package is dropped (its modules import each other, so all go
together) and the imports that follow load the files as they are now. Costs a ``stat`` per helper per
module load.

What a process must keep across such a reload (the deploy locks a runner process holds) lives in
:func:`kept`, here, because this module is never dropped.

Keep this file small and stable: it is the one helper that cannot refresh itself.
"""

import os
import sys

_SEEN = {}  # module name -> (file, mtime_ns, size) when first seen
_KEPT = {}  # name -> the process's dict of that name (see kept)


def _signature(module):
    path = getattr(module, "__file__", None)
    try:
        stat = os.stat(path)
    except (TypeError, OSError):  # no file (a namespace, a test double) or the file is gone
        return (path, None, None)
    return (path, stat.st_mtime_ns, stat.st_size)


def drop_stale(package="hecatelib"):
    """Forget ``package`` and every module under it when one of their files changed since it was first
    seen. Returns the names dropped (empty when nothing changed)."""
    names = [n for n in list(sys.modules) if n == package or n.startswith(package + ".")]
    now = {n: _signature(sys.modules[n]) for n in names}
    if any(n in _SEEN and _SEEN[n] != signature for n, signature in now.items()):
        for name in names:
            sys.modules.pop(name, None)
            _SEEN.pop(name, None)
        return names
    for name, signature in now.items():
        _SEEN.setdefault(name, signature)
    return []


def kept(name):
    """A dict that lives as long as the process, whatever :func:`drop_stale` drops."""
    return _KEPT.setdefault(name, {})
