"""Trees this host has validated before, so that a reader skips validating the same tree again.

``schema.validate`` returns a normalised tree, and a normalised tree validates to itself. When a tree a
reader gets is such a fixed point (the ext_pillar's output, as every minion and the runner read it), this
host notes it: the tree's digest, the root prefix it was validated for, and the digest of the helpers'
code that validated it, as an empty file below its own cache directory. A later reader with the same three
uses the tree as it is. The note is the host's own (only hecate's user writes its cache directory), never a
mark in the pillar: pillar comes from pull requests and cannot vouch for itself.
"""

import contextlib
import hashlib
import os
import pathlib

KEEP = 20  # notes kept per host: one per pillar version in use (the live one, a rollback's, a canary's)
_CODE = {}


def code_digest():
    """The digest of the helpers' source (every ``hecatelib`` file): a new version validates anew."""
    if "digest" not in _CODE:
        root = pathlib.Path(__file__).resolve().parent
        sha = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            sha.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        _CODE["digest"] = sha.hexdigest()
    return _CODE["digest"]


def _note(cachedir, tree_digest, root_prefix):
    name = hashlib.sha256(f"{tree_digest}\0{root_prefix}\0{code_digest()}".encode()).hexdigest()
    return os.path.join(cachedir, "hecate", "validated", name)


def known(cachedir, tree_digest, root_prefix=""):
    """Whether this host validated the tree of ``tree_digest`` to itself, with this code and prefix."""
    return bool(cachedir) and os.path.exists(_note(cachedir, tree_digest, root_prefix))


def remember(cachedir, tree_digest, root_prefix=""):
    """Note that the tree of ``tree_digest`` validated to itself; keep the newest :data:`KEEP` notes."""
    if not cachedir:
        return
    path = _note(cachedir, tree_digest, root_prefix)
    folder = os.path.dirname(path)
    with contextlib.suppress(OSError):  # a note is an optimisation: failing to write it costs a validation
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        os.utime(path)
        notes = sorted((os.path.join(folder, n) for n in os.listdir(folder)), key=os.path.getmtime)
        for old in notes[:-KEEP]:
            os.remove(old)
