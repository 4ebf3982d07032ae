"""hecate's runner: the operator's entry points on the master.

``validate`` is here now; ``deploy``, ``plan``, ``status``, ``history``, ``rollback`` and ``promote``
sequence the stages (see docs/orchestration.md).
"""

import hecate_schema

__virtualname__ = "hecate"


def __virtual__():
    return __virtualname__


def validate(minion=None, saltenv=None):
    """Compile the pillar of ``minion`` (default: the master's own id) as the minion would get it,
    ext_pillar included, and check the ``hecate`` tree. Exits non-zero when invalid.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.validate
        salt-run hecate.validate minion=edge-1
    """
    minion = minion or __opts__["id"]
    pillar = __salt__["pillar.show_pillar"](minion, saltenv=saltenv) or {}
    errors = [("pillar", e) for e in pillar.get("_errors", [])]
    warnings = []
    routes = 0
    if not errors:
        tree, report = hecate_schema.check(pillar.get("hecate"))
        errors, warnings = report.errors, report.warnings
        routes = len(tree.get("reverse_proxy", {}).get("caddy", {}).get("routes", [])) if not errors else 0
    if errors:
        __context__["retcode"] = 1  # marks the job failed on the event bus
    return {
        "valid": not errors,
        "retcode": 1 if errors else 0,  # salt-run exits with this
        "minion": minion,
        "routes": routes,
        "errors": [f"{path}: {reason}" for path, reason in errors],
        "warnings": [f"{path}: {reason}" for path, reason in warnings],
    }
