"""External services in Consul as a state: ``hecate:consul:external_services`` registered on the
agent with their checks and tags, idempotent, pruning only what hecate registered.

.. code-block:: yaml

    hecate_external_services:
      hecate_consul.external_services:
        - prune: true
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "hecate_consul"


def __virtual__():
    if "hecate_consul.converge" not in __salt__:
        return False, "hecate_consul: the hecate_consul execution module is not available"
    return __virtualname__


def external_services(name, prune=True):
    """Ensure the agent has exactly the pillar's external services (one read; writes only the
    differences; ``test=True`` reports them and writes nothing).

    name
        An ID for the state (not used otherwise).
    prune
        Deregister services hecate registered that the pillar no longer lists (default). Services
        without hecate's ``hecate-managed`` Meta are never touched.
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    test = bool(__opts__.get("test"))
    try:
        outcome = __salt__["hecate_consul.converge"](test=test, prune=prune)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = str(exc)
        return ret
    plan, changes = outcome["plan"], outcome["changes"]
    kept = len(plan["unchanged"])
    if not changes:
        ret.update(result=True, comment=f"{kept} external service(s) registered as in pillar")
        return ret
    counts = ", ".join(f"{len(plan[k])} to {k}" for k in ("register", "adopt", "deregister") if plan[k])
    ret["changes"] = {"services": changes}
    if test:
        ret.update(result=None, comment=f"External services: {counts}; {kept} unchanged (test mode: nothing written)")
        return ret
    done = counts.replace(" to register", " registered").replace(" to adopt", " adopted").replace(" to deregister", " deregistered")
    ret.update(result=True, comment=f"External services: {done}; {kept} unchanged")
    return ret
