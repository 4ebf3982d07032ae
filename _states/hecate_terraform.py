"""The terraform stage as a state: render the module from pillar, init, plan, gate, apply, outputs.

.. code-block:: yaml

    hecate_terraform:
      hecate_terraform.applied: []

``test=True`` plans in a scratch copy of the workdir (nothing written, no state lock taken) and
reports the plan summary; a plan that deletes or replaces a resource is refused unless
``hecate:terraform`` (or the arguments) allow it.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "hecate_terraform"


def __virtual__():
    if "hecate_terraform.run" in __salt__:
        return __virtualname__
    return (False, "the hecate_terraform execution module is not available (no terraform binary?)")


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
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        result = __salt__["hecate_terraform.run"](
            workdir=workdir, test=__opts__["test"], allow_delete=allow_delete, allow_replace=allow_replace, refresh=refresh
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"terraform: {exc}"
        return ret
    if __opts__["test"]:
        if result.get("refused"):
            ret["comment"] = "the plan would be refused: " + "; ".join(result["refused"])
            return ret
        if result["changes"]:
            ret.update(
                result=None, changes={"plan": result["summary"], "files": result["files"]}, comment="terraform would apply this plan"
            )
        else:
            ret.update(result=True, comment="infrastructure matches the pillar")
        return ret
    if result["applied"] or result["files"]:
        ret["changes"] = {"plan": result["summary"], "files": result["files"], "outputs": sorted(result.get("outputs") or {})}
    ret.update(result=True, comment="applied the plan" if result["applied"] else "infrastructure matches the pillar")
    return ret
