"""Nomad jobs as Salt states: plan-diff deploys with check-and-set, a deployment watch that promotes
canaries by policy and reports auto-reverts as failures, rollback, and removal.

.. code-block:: yaml

    hecate-reverse-proxy:
      nomad_job.present:
        - source: salt://hecate/nomad/reverse-proxy.nomad.j2

    hecate-authentik:
      nomad_job.present:
        - source: salt://hecate/nomad/authentik.nomad.j2
        - promote: after          # auto | after | manual (default: hecate:nomad:promote:mode)
        - healthy_seconds: 120

    rollback-authentik:
      nomad_job.rolled_back:
        - name: hecate-authentik
        - onfail:
          - nomad_job: hecate-authentik

``present`` renders the template from the validated ``hecate`` pillar, has Nomad parse it (HCL2), plans
it (``Diff: true``) and registers only when ``Diff.Type`` is not ``None``, with ``EnforceIndex`` and the
plan's ``JobModifyIndex``; a check-and-set conflict re-plans once. ``test=True`` returns the plan
(DesiredTGUpdates per group) and writes nothing.
"""

import posixpath
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

    hecate_fresh.drop_stale()
    from hecatelib import salt_state, schema
    from hecatelib.nomad import jobs as nomad_jobs
except ImportError as exc:  # pragma: no cover - hecate's _utils not synced, or a library missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

__virtualname__ = "nomad_job"


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return salt_state.virtual(__virtualname__, __salt__, "nomad_job.plan")


def _short(dep_id):
    return (dep_id or "")[:8]


def _tree(required=True):
    """The validated ``hecate`` tree, from pillar only. Without ``required`` (an inline ``hcl`` job, or a
    rollback: the tree only adds the canary policy) ``None`` when pillar has no ``hecate`` key."""
    if not required and __pillar__.get("hecate") is None:
        return None
    return salt_state.tree(__pillar__, __opts__, __context__)


def _template_key(source, job):
    if job:
        return job
    base = posixpath.basename(source)
    for suffix in (".nomad.j2", ".hcl.j2", ".j2"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _render(source, tree, key, context):
    saltenv = __env__ if isinstance(__env__, str) and __env__ else "base"
    text = __salt__["cp.get_file_str"](source, saltenv=saltenv)
    if not text:
        raise SaltInvocationError(f"template {source} not found")
    base = source.rsplit("/", 1)[0]

    def include(name):
        found = __salt__["cp.get_file_str"](f"{base}/{name}", saltenv=saltenv)
        return found if found else None

    try:
        return nomad_jobs.render_job(text, tree, key, extra=context, include=include, spec=schema.SCHEMA)
    except ValueError as exc:
        raise SaltInvocationError(f"{source}: {exc}") from None


def _policy(tree, key, promote, healthy_seconds):
    job = nomad_jobs.job_settings(tree, key) if tree is not None else None
    settings = nomad_jobs.settings(tree or {})
    policy = dict((job or {}).get("promote") or settings["promote"])
    if promote:
        if promote not in nomad_jobs.PROMOTE_MODES:
            raise SaltInvocationError(f"promote must be one of {', '.join(nomad_jobs.PROMOTE_MODES)}")
        policy["mode"] = promote
    if healthy_seconds is not None:
        policy["healthy_seconds"] = float(healthy_seconds)
    configured = (job or {}).get("deploy_timeout") or settings.get("deploy_timeout")
    return policy, configured


def _is_cas_conflict(exc):
    return nomad_jobs.CAS_PREFIX in str(exc)


def _plan_comment(name, summary):
    parts = []
    for group, updates in sorted(summary["desired_tg_updates"].items()):
        said = ", ".join(f"{k} {v}" for k, v in sorted(updates.items()) if k != "Ignore")
        if said:
            parts.append(f"{group}: {said}")
    verb = "created" if summary["diff"] == "Added" else "updated"
    return f"Job {name} would be {verb}" + (f" ({'; '.join(parts)})" if parts else "")


def present(
    name,
    source=None,
    hcl=None,
    job=None,
    variables=None,
    context=None,
    promote=None,
    healthy_seconds=None,
    deploy_timeout=None,
    wait=True,
):
    """Ensure a Nomad job runs the spec rendered from ``source`` (or given as ``hcl``).

    name
        The job ID; the rendered job must carry it.
    source
        A ``salt://`` Jinja template (``salt://hecate/nomad/<job>.nomad.j2``), rendered from the validated
        ``hecate`` pillar with :func:`hecatelib.nomad.jobs.job_context` of ``job``.
    hcl
        A jobspec given inline instead of ``source`` (no pillar needed).
    job
        The template's job key for its context (default: the template's file name without
        ``.nomad.j2``, e.g. ``reverse-proxy``).
    variables
        HCL2 input variables passed to Nomad's parser.
    context
        Extra template variables.
    promote / healthy_seconds
        The canary policy (``auto``, ``after``, ``manual``); default ``hecate:nomad:jobs:<job>:promote``,
        then ``hecate:nomad:promote``.
    deploy_timeout
        Seconds to watch the deployment; never shorter than the job's progress deadline plus a margin.
    wait
        Watch the deployment (default). False returns after the registration.
    """
    ret = salt_state.ret(name)
    if bool(source) == bool(hcl):
        return salt_state.fail(ret, "give exactly one of source (a salt:// template) or hcl")
    test = salt_state.test(__opts__)
    try:
        tree = _tree(required=bool(source))
        if source:
            key = _template_key(source, job)
            text = _render(source, tree, key, context)
        else:
            key = job or name
            text = hcl
        policy, configured = _policy(tree, key, promote, healthy_seconds)
        if deploy_timeout is not None:
            configured = float(deploy_timeout)
        parsed = __salt__["nomad_job.parse"](text, variables=variables)
        if parsed.get("ID") != name:
            return salt_state.fail(ret, f"the rendered job is {parsed.get('ID')!r}, not {name!r}")
        plan = __salt__["nomad_job.plan"](parsed)
        summary = nomad_jobs.plan_summary(plan)
        if summary["diff"] == "None":
            return _unchanged(ret, name, parsed, policy, configured, test)
        if summary.get("placement_failures"):
            # Nomad would accept the job and block its evaluation until the progress deadline fails it:
            # refuse before writing, the running version keeps serving
            reasons = "; ".join(f"group {g}: {', '.join(r)}" for g, r in summary["placement_failures"].items())
            return salt_state.fail(ret, f"Job {name} cannot be placed, nothing registered: {reasons}")
        if test:
            return salt_state.pending(ret, {"plan": summary}, _plan_comment(name, summary) + " (test mode: nothing written)")
        registered, summary, replanned = _register(name, parsed, plan, summary, text, variables)
        if registered is None:  # the conflicting writer registered this very spec
            ret["comment"] = f"Job {name} was registered with this spec meanwhile (re-planned after a check-and-set conflict)"
            return ret
    except (CommandExecutionError, SaltInvocationError, salt_state.PillarError) as exc:
        return salt_state.fail(ret, str(exc))

    ret["changes"] = {"plan": summary, "job_modify_index": registered["JobModifyIndex"]}
    if replanned:
        ret["changes"]["replanned_after_conflict"] = True
    verb = "created" if summary["diff"] == "Added" else "updated"
    if not wait or not nomad_jobs.has_deployments(parsed):
        ret["comment"] = f"Job {name} {verb} (eval {_short(registered.get('EvalID'))}); deployment not watched"
        return ret
    return _watch(ret, name, parsed, registered["JobModifyIndex"], policy, configured, verb, nomad_jobs.moves_allocations(summary))


def _register(name, parsed, plan, summary, text, variables):
    """Register with check-and-set; on a conflict re-plan once and retry. Returns
    ``(response or None when the re-plan shows no change, summary, replanned)``."""
    try:
        return (
            __salt__["nomad_job.register"](parsed, job_modify_index=plan.get("JobModifyIndex", 0), variables=variables, source=text),
            summary,
            False,
        )
    except CommandExecutionError as exc:
        if not _is_cas_conflict(exc):
            raise
    plan = __salt__["nomad_job.plan"](parsed)
    summary = nomad_jobs.plan_summary(plan)
    if summary["diff"] == "None":
        return None, summary, True
    try:
        response = __salt__["nomad_job.register"](parsed, job_modify_index=plan.get("JobModifyIndex", 0), variables=variables, source=text)
    except CommandExecutionError as exc:
        if _is_cas_conflict(exc):
            raise CommandExecutionError(f"Job {name} keeps changing under us (check-and-set conflict twice): {exc}") from None
        raise
    return response, summary, True


def _unchanged(ret, name, parsed, policy, configured, test):
    """The spec is registered already. A deployment of it that is still running is watched (a previous
    run may have been interrupted); one that failed fails the state."""
    latest = __salt__["nomad_job.deployment"](name=name) if nomad_jobs.has_deployments(parsed) else None
    if not latest or latest.get("Status") in ("successful", "cancelled"):
        ret["comment"] = f"Job {name} is up to date"
        return ret
    if latest.get("Status") == "failed":
        return salt_state.fail(
            ret,
            f"Job {name} is up to date, but its deployment {_short(latest['ID'])} of version {latest.get('JobVersion')} "
            f"failed: {latest.get('StatusDescription')}",
        )
    if test:
        ret["comment"] = f"Job {name} is up to date; its deployment {_short(latest['ID'])} is {latest['Status']}"
        return ret
    return _follow(ret, name, parsed, latest, policy, configured, "is up to date; deployment")


def _watch(ret, name, parsed, job_modify_index, policy, configured, verb, places=True):
    timeout = nomad_jobs.deploy_timeout(parsed, configured, policy)
    started = time.monotonic()
    find = min(timeout, 60.0) if places else min(timeout, 2.0)
    try:
        dep = __salt__["nomad_job.find_deployment"](name, job_modify_index, timeout=find)
    except CommandExecutionError as exc:
        return _failed(ret, f"Job {name} {verb}, but its deployment could not be read: {exc}")
    if dep is None:
        if not places:
            ret["comment"] = f"Job {name} {verb}: no allocation changes, no deployment"
            return ret
        return _failed(ret, f"Job {name} {verb}, but Nomad created no deployment for it within {find:g}s")
    remaining = max(1.0, timeout - (time.monotonic() - started))
    return _follow(ret, name, parsed, dep, policy, remaining, verb, absolute=True)


def _failed(ret, comment):
    """Fail, keeping what was done (the registration, the deployment) in ``changes``."""
    return salt_state.fail(ret, comment, ret["changes"])


def _follow(ret, name, parsed, dep, policy, timeout, verb, absolute=False):
    if not absolute:
        timeout = nomad_jobs.deploy_timeout(parsed, timeout, policy)
    try:
        outcome = __salt__["nomad_job.wait_deployment"](
            dep["ID"], timeout=timeout, promote=policy["mode"], healthy_seconds=policy.get("healthy_seconds")
        )
    except CommandExecutionError as exc:
        return _failed(ret, f"Job {name} {verb}; watching deployment {_short(dep['ID'])} failed: {exc}")
    deployment = {"id": outcome["deployment_id"], "status": outcome["status"], "version": outcome["job_version"]}
    if outcome["promoted"]:
        deployment["promoted"] = outcome["promoted"]
    ret["changes"]["deployment"] = deployment
    head = f"Job {name} {verb} (version {outcome['job_version']})"
    short = _short(outcome["deployment_id"])
    if outcome["status"] == "successful":
        promoted = f", canaries of {', '.join(outcome['promoted'])} promoted" if outcome["promoted"] else ""
        ret["comment"] = f"{head}: deployment {short} successful{promoted}"
        return ret
    if outcome["awaiting_promotion"]:
        deployment["status"] = "awaiting promotion"
        ret["comment"] = (
            f"{head}: canaries are healthy; deployment {short} awaits manual promotion "
            f"(salt-call nomad_job.promote {outcome['deployment_id']})"
        )
        ret["warnings"] = [f"{name}: deployment {outcome['deployment_id']} awaits manual promotion"]
        return ret
    if outcome.get("stalled"):
        return _failed(ret, f"{head}: deployment {short} is {outcome['status']} ({outcome['description']}): {outcome['stalled']}")
    if outcome["timed_out"]:
        return _failed(ret, f"{head}: deployment {short} still {outcome['status']} after {timeout:g}s ({outcome['description']})")
    comment = f"{head}: deployment {short} {outcome['status']}: {outcome['description']}"
    if outcome["failing_allocations"]:
        ret["changes"]["failing_allocations"] = outcome["failing_allocations"]
        events = []
        for alloc in outcome["failing_allocations"][:3]:
            for task, state in alloc["tasks"].items():
                if state["events"]:
                    events.append(f"{alloc['name']} {task}: {' / '.join(state['events'][-2:])}")
        if events:
            comment += "; " + "; ".join(events)
    if outcome["reverted_to"] is not None:
        revert = outcome.get("revert") or {}
        ret["changes"]["auto_revert"] = {"to_version": outcome["reverted_to"], **revert}
        comment += f". Nomad auto-reverted {name} to the spec of version {outcome['reverted_to']}" + (
            f" (rollback deployment {_short(revert.get('deployment_id'))}: {revert.get('status')})" if revert.get("deployment_id") else ""
        )
    return _failed(ret, comment)


def absent(name, purge=False):
    """Ensure a Nomad job is stopped (``purge=True``: removed with its history).

    name
        The job ID.
    purge
        Remove the job from Nomad entirely (``nomad job stop -purge``).
    """
    ret = salt_state.ret(name)
    try:
        job = __salt__["nomad_job.inspect"](name)
        if job is None:
            ret["comment"] = f"Job {name} is absent"
            return ret
        if job.get("Stop") and not purge:
            ret["comment"] = f"Job {name} is stopped"
            return ret
        action = "purged" if purge else "stopped"
        change = {"old": {"version": job.get("Version"), "status": job.get("Status")}, "new": action}
        if salt_state.test(__opts__):
            return salt_state.pending(ret, {"job": change}, f"Job {name} would be {action}")
        __salt__["nomad_job.stop"](name, purge=purge)
    except (CommandExecutionError, SaltInvocationError) as exc:
        return salt_state.fail(ret, str(exc))
    ret.update(changes={"job": change}, comment=f"Job {name} {action}")
    return ret


ROLLED_BACK_UNDER_WATCH = (
    "rolled_back without a version under watch/listen would revert on every state run (Salt calls a watching "
    "state each time, then mod_watch), flipping the job between two specs: use onfail or onchanges, or give version"
)


def _runs_on_every_state_run():
    """Whether the state engine runs this state with ``watch``/``watch_any``/``listen`` (``watch_in`` lands as
    ``watch``): Salt calls such a state on every run, whatever its requisites did (``call_chunk`` in
    salt/state.py), unlike ``onfail``/``onchanges``. ``__low__`` is the chunk the engine injects for the call;
    a direct call has none."""
    low = globals().get("__low__") or {}
    return any(low.get(requisite) for requisite in ("watch", "watch_any", "listen"))


def rolled_back(name, version=None, promote=None, healthy_seconds=None, deploy_timeout=None, wait=True):
    """Revert a job to a named version, or to its previous stable version, and watch the deployment.

    With ``version`` the state is idempotent: nothing happens when the job already runs that version's
    spec. Without it, it reverts to the newest stable version older than the current one whose spec
    differs: an action, for ``onfail`` or ``onchanges`` only. Without ``version`` under ``watch`` (or
    ``listen``) it is refused: Salt calls a watching state on every run, so each highstate would flip the
    job between two specs.

    name
        The job ID.
    version
        The version to return to (an integer); default the previous stable version.
    """
    ret = salt_state.ret(name)
    if version is None and _runs_on_every_state_run():
        return salt_state.fail(ret, f"nothing was changed: {ROLLED_BACK_UNDER_WATCH}")
    try:
        current = __salt__["nomad_job.inspect"](name)
        if current is None:
            return salt_state.fail(ret, f"Job {name} does not exist: nothing to roll back")
        history = __salt__["nomad_job.versions"](name, full=True)
        if version is not None:
            target = next((v for v in history if v.get("Version") == int(version)), None)
            if target is None:
                versions = ", ".join(str(v["Version"]) for v in history)
                return salt_state.fail(ret, f"Job {name} has no version {version} (versions: {versions})")
            if nomad_jobs.same_spec(target, current):
                ret["comment"] = f"Job {name} already runs the spec of version {version} (version {current['Version']})"
                return ret
        else:
            older = [v for v in history if v.get("Version", -1) < current["Version"] and v.get("Stable")]
            older = [v for v in sorted(older, key=lambda v: -v["Version"]) if not nomad_jobs.same_spec(v, current)]
            if not older:
                return salt_state.fail(ret, f"Job {name} has no stable version before {current['Version']} with a different spec")
            target = older[0]
        # The watch policy is read before the revert: an invalid pillar or argument refuses without writing.
        key = name[len("hecate-") :] if name.startswith("hecate-") else name
        policy, configured = _policy(_tree(required=False), key, promote, healthy_seconds)
        if deploy_timeout is not None:
            configured = float(deploy_timeout)
        change = {"old_version": current["Version"], "reverted_to": target["Version"]}
        if salt_state.test(__opts__):
            comment = f"Job {name} would be reverted from version {current['Version']} to {target['Version']}"
            return salt_state.pending(ret, {"rollback": change}, comment)
        response = __salt__["nomad_job.revert"](name, target["Version"], enforce_prior_version=current["Version"])
    except (CommandExecutionError, SaltInvocationError, salt_state.PillarError) as exc:
        return salt_state.fail(ret, str(exc))
    ret["changes"] = {"rollback": {**change, "new_version": current["Version"] + 1}}
    if not wait or not nomad_jobs.has_deployments(target):
        ret["comment"] = f"Job {name} reverted to the spec of version {target['Version']}"
        return ret
    return _watch(ret, name, target, response["JobModifyIndex"], policy, configured, f"reverted to the spec of version {target['Version']}")


def mod_watch(name, sfun=None, **kwargs):
    """``watch``: re-converge ``present``, re-check ``rolled_back`` (with a ``version``; refused without one),
    re-check ``absent``; with the state's own arguments only."""
    return salt_state.mod_watch({"present": present, "rolled_back": rolled_back, "absent": absent}, name, sfun, kwargs)
