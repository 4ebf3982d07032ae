"""The ``hecate`` ext_pillar: resolve ``vault:`` / ``consul:`` references, then validate the tree.

Master config::

    ext_pillar:
      - hecate: {}
    hecate_ext_pillar:            # only when the pillar holds vault:/consul: references
      vault: {url: https://vault.example.org:8200, token_file: /etc/salt/hecate-vault-token}
      consul: {host: 127.0.0.1, port: 8500, token_file: /etc/salt/hecate-consul-token}

It reads ``hecate`` from the pillar rendered so far (pillar_roots, git_pillar), so the operator's
files stay the single source. A bad pillar becomes ``_errors`` (every key path and reason, never a
secret): Salt refuses to run states with it, so nothing is touched, and ``salt-run hecate.deploy``
answers with those lines. It is not raised: Salt would log a traceback of this module first.
"""

import logging

import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

hecate_fresh.drop_stale()
from salt.exceptions import CommandExecutionError, SaltInvocationError

from hecatelib import paths, schema, secret_refs

log = logging.getLogger(__name__)

__virtualname__ = "hecate"

try:
    # The clients behind vault: and consul: references (hecatelib.secret_refs uses them).
    import consul  # noqa: F401
    import hvac  # noqa: F401
except ImportError as exc:  # pragma: no cover - only where hvac or py-consul is missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return __virtualname__


def ext_pillar(minion_id, pillar, **kwargs):
    """Return ``{"hecate": <resolved and validated tree>}``, or nothing when the pillar has no ``hecate``."""
    tree = pillar.get("hecate")
    if tree is None:
        return {}
    try:
        validated = schema.validate(secret_refs.resolve(tree, __opts__), root_prefix=paths.prefix(__opts__))
    except (schema.PillarError, CommandExecutionError, SaltInvocationError) as exc:
        log.error("hecate ext_pillar: the hecate pillar of %s is refused: %s", minion_id, exc)
        return {"_errors": [f"hecate: {exc}"]}
    log.debug("hecate ext_pillar: %d route(s) valid for %s", len(validated["reverse_proxy"]["caddy"]["routes"]), minion_id)
    return {"hecate": validated}  # a fixed point of validate: its readers validate it once per host (hecatelib.validated)
