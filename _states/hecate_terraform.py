"""The terraform stage as a state: render the module from pillar, init, plan, gate, apply, outputs.

.. code-block:: yaml

    hecate_terraform:
      hecate_terraform.applied: []

``test=True`` plans in a scratch copy of the workdir (nothing written, no state lock taken) and
reports the plan summary; a plan that deletes or replaces a resource is refused unless
``hecate:terraform`` (or the arguments) allow it.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

    hecate_fresh.drop_stale()
    from hecatelib import salt_state
except ImportError as exc:  # pragma: no cover - hecate's _utils not synced, or a library missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

__virtualname__ = "hecate_terraform"


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return salt_state.virtual(__virtualname__, __salt__, "hecate_terraform.run")


def applied(name, workdir=None, allow_delete=None, allow_replace=None, refresh=False):
    """Make the infrastructure match the pillar's terraform module; outputs are in ``changes``.

    name
        A label for the state.
    workdir
        Override ``hecate:terraform:workdir``.
    allow_delete / allow_replace
        Let the plan delete / replace resources (refused by default).
    refresh
        Plan even when nothing changed since the last plan that found nothing to do (finds drift).
    """
    ret = salt_state.ret(name)
    test = salt_state.test(__opts__)
    try:
        result = __salt__["hecate_terraform.run"](
            workdir=workdir, test=test, allow_delete=allow_delete, allow_replace=allow_replace, refresh=refresh
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        return salt_state.fail(ret, f"terraform: {exc}")
    if test:
        if result.get("refused"):
            return salt_state.fail(ret, "the plan would be refused: " + "; ".join(result["refused"]))
        if result["changes"]:
            return salt_state.pending(ret, {"plan": result["summary"], "files": result["files"]}, "terraform would apply this plan")
        ret["comment"] = "infrastructure matches the pillar"
        return ret
    if result["applied"] or result["files"]:
        ret["changes"] = {"plan": result["summary"], "files": result["files"], "outputs": sorted(result.get("outputs") or {})}
    ret["comment"] = "applied the plan" if result["applied"] else "infrastructure matches the pillar"
    return ret
