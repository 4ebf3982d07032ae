"""The ``hecate`` ext_pillar: resolve ``vault:`` / ``consul:`` references, then validate the tree.

Master config::

    ext_pillar:
      - hecate: {}
    hecate_ext_pillar:            # only when the pillar holds vault:/consul: references
      vault: {url: https://vault.example.org:8200, token_file: /etc/salt/hecate-vault-token}
      consul: {host: 127.0.0.1, port: 8500, token_file: /etc/salt/hecate-consul-token}

It reads ``hecate`` from the pillar rendered so far (pillar_roots, git_pillar), so the operator's
files stay the single source. A bad pillar raises: Salt then puts the error (every key path and
reason, never a secret) in ``_errors`` and refuses to run states, so nothing is touched.
"""

import logging

import hecate_schema
import hecate_secrets

log = logging.getLogger(__name__)

__virtualname__ = "hecate"

try:
    # The clients behind vault: and consul: references (hecate_secrets uses them).
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
    resolved = hecate_secrets.resolve(tree, __opts__)
    validated = hecate_schema.validate(resolved)
    log.debug("hecate ext_pillar: %d route(s) valid for %s", len(validated["reverse_proxy"]["caddy"]["routes"]), minion_id)
    return {"hecate": validated}
