"""The steps of ``salt-run state.orchestrate hecate.orchestrate`` (salt/hecate/orchestrate.sls): one state
per engine step, each calling its runner function on the master (``hecate.begin``, ``hecate.stage``,
``hecate.undo``, ``hecate.finish``) the way Salt's ``salt.runner`` state does (``saltutil.runner``).

Why not ``salt.runner``: it reports the runner's whole return as the step's ``changes``
(salt/states/saltmod.py ``runner``: ``{"return": ...}``), so every step of a run that changed nothing
counted as changed and printed its return (a no-op printed ~470 lines and ``changed=12``), and in
``test=True`` it runs nothing. Here a step's ``changes`` are what it changed (none when it changed
nothing), its comment is one line, and ``test=True`` runs the same steps as dry runs: ``begin`` makes
the one dry run of every stage (no lock, no record), each step reports its stage's part of it with
``result: None`` when that stage would change something.

.. code-block:: yaml

    hecate_begin:
      hecate_run.begin:
        - run: 20261202T101500.000Z-1a2b3c
    hecate_routes:
      hecate_run.step:
        - run: 20261202T101500.000Z-1a2b3c
        - step: routes
        - require:
          - hecate_run: hecate_begin
"""

__virtualname__ = "hecate_run"


def __virtual__():
    if __opts__.get("__role") != "master" or "saltutil.runner" not in __salt__:
        return False, "hecate_run: the steps of hecate.orchestrate run on the master (salt-run state.orchestrate)"
    return __virtualname__


def _call(fun, **kwargs):
    """The runner function's return, and whether it succeeded (its retcode, as ``salt.runner`` reads it)."""
    test = bool(__opts__.get("test"))
    out = __salt__["saltutil.runner"](fun, full_return=True, **kwargs, **({"test": True} if test else {}))
    answer = out.get("return")
    if not isinstance(answer, dict):  # the runner raised: Salt's "Exception occurred ..." text
        return {"error": str(answer)[-2000:]}, False, test
    return answer, bool(out.get("success", True)) and not answer.get("retcode"), test


def _ret(name, ok, comment, changes=None, test=False):
    result = ok if not (ok and test and changes) else None  # test=True: None only when it would change something
    return {"name": name, "result": result, "changes": changes or {}, "comment": comment}


def begin(name, run):
    """Take the deploy lock, record run ``run`` as running, and make the run's dry run (``hecate.begin``).
    With ``test=True``: the dry run only.

    name
        The state's ID.
    run
        The run id ``hecate.stages`` handed out when the orchestration was rendered.
    """
    answer, ok, test = _call("hecate.begin", run=run)
    if not ok:
        return _ret(name, False, answer.get("error") or f"run {run} did not begin")
    would = answer.get("would_change") or {}
    plan = "would change " + ", ".join(f"{stage} {count}" for stage, count in would.items()) if would else "nothing to change"
    steps = len(answer.get("steps") or [])
    if test:
        return _ret(name, True, f"run {run} (test): {steps} steps; {plan}; no lock taken, nothing recorded")
    return _ret(name, True, f"run {run}: the deploy lock taken, recorded as running; {steps} steps; {plan}")


def step(name, run, step):
    """Apply one step of run ``run`` (``hecate.stage``): a stage, ``verify`` or ``<stage>_contract``. Its
    changes are what the step changed; it fails when the step did (then ``hecate_undo`` runs).

    name
        The state's ID.
    run
        The run id.
    step
        The step's name (``salt-run hecate.stages`` lists them).
    """
    answer, ok, test = _call("hecate.stage", run=run, step=step)
    if "error" in answer:
        return _ret(name, False, answer["error"])
    if answer.get("skipped"):
        return _ret(name, ok, "skipped: its dry run found nothing to change")
    changed = answer.get("changed", 0)
    changes = {"changed": changed, "changes": answer.get("changes") or []} if changed else {}
    if answer.get("note"):
        comment = answer["note"]
    elif test:
        comment = f"would change {changed}" if changed else "nothing to change"
    else:
        comment = f"{changed} changed ({answer.get('seconds', 0)} s)"
    if answer.get("problems"):
        comment += ": " + "; ".join(answer["problems"])
    return _ret(name, ok, comment, changes, test)


def undo(name, run):
    """Roll back every stage run ``run`` applied (``hecate.undo``; ``onfail`` of every step). Its changes
    are what the rollback did.

    name
        The state's ID.
    run
        The run id.
    """
    answer, ok, test = _call("hecate.undo", run=run)
    rollback = answer.get("rollback")
    if not isinstance(rollback, dict):
        return _ret(name, ok, str(rollback or answer.get("error") or ""))
    done, problems = rollback.get("done") or [], rollback.get("problems") or []
    comment = "; ".join(done + problems) or "nothing to roll back"
    return _ret(name, ok, comment, {"rolled_back": done} if done else None, test)


def finish(name, run):
    """Record run ``run`` (success, or failed with the step and the reason) and release the deploy lock
    (``hecate.finish``; ``order: last``, so it runs whatever happened before).

    name
        The state's ID.
    run
        The run id.
    """
    answer, ok, test = _call("hecate.finish", run=run)
    if test:
        return _ret(name, ok, f"run {run} (test): nothing recorded")
    error = answer.get("error")
    return _ret(name, ok, f"run {run}: {answer.get('status', 'not recorded')}" + (f": {error}" if error else ""))
