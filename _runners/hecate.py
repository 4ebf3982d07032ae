"""hecate's runner: the operator's entry points on the master.

``deploy`` takes the stack from the committed pillar to production under a Consul lock, stage by
stage (terraform -> Nomad -> authentik -> routes -> DNS -> apps -> verify), firing progress events,
rolling back the applied stages on failure, and writing a deployment record to Consul KV. ``plan``
shows every stage's diff and writes nothing; ``status`` is that diff as drift per backend;
``history``, ``rollback`` and ``promote`` work from the records. See docs/orchestration.md.

The stages themselves are the state files (``salt/hecate/*.sls``) applied on the targets of
``hecate:deployment:targets``; ``salt/hecate/orchestrate.sls`` runs the same stages natively.
"""

import functools
import logging
import time

import hecate_lock
import hecate_nomad
import hecate_orchestrate
import hecate_schema
import hecate_secrets
import salt.client
import salt.utils.event
from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import consul  # noqa: F401 - py-consul: deploy's lock and records (hecate_lock, hecate_secrets)
except ImportError as exc:  # pragma: no cover - only where py-consul is missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

log = logging.getLogger(__name__)

__virtualname__ = "hecate"


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
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


# -- orchestration (issue 6) -------------------------------------------------------------------------


def _reports_refusals(func):
    """A runner that cannot start (invalid pillar, Consul unreachable) answers with the reason and a
    non-zero exit, not with Salt's "Passed invalid arguments" and the docstring."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (SaltInvocationError, CommandExecutionError) as exc:
            __context__["retcode"] = 1
            return {"status": "not started", "error": str(exc), "retcode": 1}

    return wrapper


def _tree(minion=None):
    """The validated ``hecate`` tree as ``minion`` (default: the master itself) gets it."""
    pillar = __salt__["pillar.show_pillar"](minion or __opts__["id"]) or {}
    if pillar.get("_errors"):
        raise SaltInvocationError("the pillar did not render: " + "; ".join(map(str, pillar["_errors"])))
    try:
        return hecate_schema.validate(pillar.get("hecate"))
    except hecate_schema.PillarError as exc:
        raise SaltInvocationError(str(exc)) from exc


def _event(tag, data):
    """Progress on the master's event bus: ``salt-run state.event 'hecate/*'`` shows a deploy live."""
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as bus:
        bus.fire_event(data, f"hecate/{tag}")


def _client():
    return salt.client.LocalClient(mopts=__opts__)


def _cmd(tree, tgt, tgt_type, fun, arg=(), kwarg=None):
    with _client() as client:
        return (
            client.cmd(
                tgt, fun, list(arg), tgt_type=tgt_type, kwarg=kwarg or {}, timeout=tree["deployment"]["stage_timeout"], full_return=True
            )
            or {}
        )


def _call(tree, role, fun, arg=(), kwarg=None):
    """Run an execution function on the targets of ``role``: minion -> return."""
    tgt, tgt_type = hecate_orchestrate.target(tree, role)
    return {minion: answer.get("ret") for minion, answer in _cmd(tree, tgt, tgt_type, fun, arg, kwarg).items()}


def _apply(tree, stage, test, pillar=None):
    """Apply one stage's SLS on its targets. Returns ``{ok, changes, problems, seconds}``."""
    tgt, tgt_type = hecate_orchestrate.target(tree, stage.role)
    kwarg = {"test": bool(test), **({"pillar": pillar} if pillar else {})}
    started = time.monotonic()
    returns = _cmd(tree, tgt, tgt_type, "state.apply", [stage.sls], kwarg)
    ok, changes, problems = hecate_orchestrate.read_state_returns(returns)
    if not returns:
        problems = [f"no minion matched {tgt_type} target {tgt!r} for stage {stage.name}"]
    return {"ok": ok, "changes": changes, "problems": problems, "seconds": round(time.monotonic() - started, 2)}


@_reports_refusals
def plan(only=None, minion=None):
    """Every enabled stage's diff (``state.apply ... test=True`` on its targets). Writes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.plan
        salt-run hecate.plan only='[routes, dns]'
    """
    tree = _tree(minion)
    stages = {}
    for stage in hecate_orchestrate.enabled_stages(tree, only):
        result = _apply(tree, stage, test=True)
        stages[stage.name] = {"ok": result["ok"], "changes": result["changes"], "problems": result["problems"]}
    would_change = sum(hecate_orchestrate.count_changes(s["changes"]) for s in stages.values())
    return {"stages": stages, "would_change": would_change, "retcode": 0 if all(s["ok"] for s in stages.values()) else 1}


@_reports_refusals
def status(minion=None):
    """Drift per backend: desired (pillar) against live, from a dry run of every stage. Writes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.status
    """
    planned = plan(minion=minion)
    if "stages" not in planned:  # refused (see _reports_refusals)
        return planned
    drift = {}
    for name, stage in planned["stages"].items():
        if not stage["ok"]:
            drift[name] = {"state": "error", "problems": stage["problems"]}
        elif stage["changes"]:
            drift[name] = {"state": "drift", "changes": stage["changes"]}
        else:
            drift[name] = {"state": "in sync"}
    return {"backends": drift, "in_sync": all(d["state"] == "in sync" for d in drift.values()), "retcode": planned["retcode"]}


def _consul(tree):
    settings = hecate_lock.consul_settings(tree, __opts__)
    try:
        return settings, hecate_secrets.consul_client(settings)
    except CommandExecutionError as exc:
        raise CommandExecutionError(f"deploy needs Consul for its lock and records: {exc}") from exc


def _nomad_versions(tree):
    """Current version of every hecate Nomad job (for reverting), or {} without Nomad."""
    if not hecate_orchestrate.backend_enabled(tree, "nomad"):
        return {}
    versions = {}
    for name in hecate_nomad.JOBS:
        job_id = hecate_nomad.job_settings(tree, name)["id"]
        answers = _call(tree, "controller", "nomad_job.status", [job_id])
        status_ = next(iter(answers.values()), None)
        if isinstance(status_, dict):
            versions[job_id] = status_.get("Version")
    return versions


def _snapshots(tree):
    """Caddy's config on every edge before a deploy (one GET each): the exact state to restore."""
    return {m: snap for m, snap in _call(tree, "edge", "caddy.snapshot").items() if isinstance(snap, dict) and "config" in snap}


def _roll_back(tree, applied, before, previous):
    """Undo the applied stages: Caddy back to its snapshot, Nomad jobs reverted to their versions from
    before, authentik and DNS re-converged to the previous successful deployment's tree."""
    done, problems = [], []
    for stage in reversed(applied):
        if stage.name == "routes":
            for minion, snap in before["caddy"].items():
                answer = _cmd(tree, minion, "glob", "caddy.restore", [snap]).get(minion) or {}
                (done if answer.get("ret") is True else problems).append(f"routes on {minion}: restored the snapshot")
        elif stage.name.startswith("nomad_") or stage.name == "terraform":
            continue  # Nomad: below, once; terraform: never destroyed automatically
        elif previous:
            result = _apply(tree, stage, test=False, pillar={"hecate": previous["tree"]})  # its secrets come from the live pillar
            (done if result["ok"] else problems).append(f"{stage.name}: re-applied deployment {previous['id']}")
        else:
            problems.append(f"{stage.name}: no previous successful deployment to return to")
    if any(s.name.startswith("nomad_") for s in applied):
        after = _nomad_versions(tree)
        for job, version in before["nomad"].items():
            if version is not None and after.get(job) not in (None, version):
                answer = _call(tree, "controller", "nomad_job.revert", [job, version])
                ok = all(not isinstance(r, str) for r in answer.values())
                (done if ok else problems).append(f"nomad job {job}: reverted to version {version}")
    return done, problems


def _last_success(client, settings):
    found = hecate_lock.list_records(client, settings["environment"], settings["deployments"]["prefix"], status="success", limit=1)
    return found[-1] if found else None


def _verify(tree):
    """Every pillar route requested through every edge (one ``caddy.check`` per edge); the failures."""
    failures = []
    domains = [route["domain"] for route in tree["reverse_proxy"]["caddy"]["routes"]]
    for minion, answer in _call(tree, "edge", "caddy.check", [domains]).items():
        if not isinstance(answer, list):
            failures.append(f"{minion}: {answer}")
            continue
        failures.extend(f"{probe['domain']} via {minion}: {probe['reason']}" for probe in answer)
    return failures


def _run(tree, kind, only=None, recorded=None, record_extra=None, wait=None):
    """Apply the enabled stages under the lock; roll back on failure; record the outcome.

    ``recorded``: a (secret-free) tree from a deployment record to apply instead of the pillar's own
    (rollback, promote); each stage gets it as ``pillar={"hecate": recorded}`` over the live pillar."""
    pillar = {"hecate": recorded} if recorded else None
    effective = hecate_schema.validate(hecate_orchestrate.overlay(tree, recorded)) if recorded else tree
    settings, consul_client = _consul(tree)
    deployment_id = hecate_lock.new_deployment_id()
    lock = hecate_lock.ConsulLock(
        consul_client,
        settings["lock"]["key"],
        ttl=settings["lock"]["ttl"],
        timeout=settings["lock"]["wait"] if wait is None else wait,
        lock_delay=settings["lock"]["lock_delay"],
        info={"deployment": deployment_id, "kind": kind},
    )
    started = time.time()
    record = {"kind": kind, "status": "running", "deployed_by": hecate_lock.whoami(), "stages": {}, **(record_extra or {})}
    with lock:
        previous = _last_success(consul_client, settings)
        before = {"caddy": _snapshots(tree), "nomad": _nomad_versions(tree)}
        applied, failure = [], None
        _event(
            f"{kind}/{deployment_id}/start",
            {"id": deployment_id, "stages": [s.name for s in hecate_orchestrate.enabled_stages(tree, only)]},
        )
        for stage in hecate_orchestrate.enabled_stages(tree, only):
            lock.check()
            _event(f"{kind}/{deployment_id}/{stage.name}/start", {"stage": stage.name})
            result = _apply(tree, stage, test=False, pillar=pillar)
            record["stages"][stage.name] = {
                "ok": result["ok"],
                "seconds": result["seconds"],
                "changed": hecate_orchestrate.count_changes(result["changes"]),
                "problems": result["problems"],
            }
            _event(
                f"{kind}/{deployment_id}/{stage.name}/{'done' if result['ok'] else 'fail'}",
                {"stage": stage.name, **record["stages"][stage.name]},
            )
            applied.append(stage)
            if not result["ok"]:
                failure = f"stage {stage.name} failed: " + "; ".join(result["problems"])
                break
        if failure is None and tree["deployment"]["verify"]:
            failed_routes = _verify(effective)
            record["stages"]["verify"] = {"ok": not failed_routes, "problems": failed_routes}
            if failed_routes:
                failure = "verify failed: " + "; ".join(failed_routes)
        if failure and tree["deployment"]["auto_rollback"]:
            undone, undo_problems = _roll_back(tree, applied, before, previous)
            record["rollback"] = {"done": undone, "problems": undo_problems}
        record.update(
            status="failed" if failure else "success",
            error=failure,
            seconds=round(time.time() - started, 2),
            tree=hecate_orchestrate.strip_secrets(effective),
            nomad_versions=_nomad_versions(tree) if not failure else before["nomad"],
        )
        stored = hecate_lock.write_record(consul_client, settings["environment"], record, deployment_id, settings["deployments"]["prefix"])
    _event(
        f"{kind}/{deployment_id}/{'done' if not failure else 'fail'}", {"id": deployment_id, "status": stored["status"], "error": failure}
    )
    summary = {k: stored[k] for k in ("id", "environment", "status", "error", "seconds", "stages") if k in stored}
    if "rollback" in stored:
        summary["rollback"] = stored["rollback"]
    summary["retcode"] = 0 if not failure else 1
    return summary


@_reports_refusals
def deploy(test=False, only=None, minion=None, wait=None):
    """Take the stack from the committed pillar to production: every enabled stage in order, under a
    Consul lock, with progress events, rollback of the applied stages on failure (when
    ``hecate:deployment:auto_rollback``) and a deployment record in Consul KV. ``test=True`` is
    :py:func:`plan`: every stage's diff, zero writes.

    A second deploy waits for the lock up to ``wait`` seconds (default ``hecate:consul:lock:wait``)
    and then fails, naming the holder.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.deploy
        salt-run hecate.deploy test=True
        salt-run hecate.deploy only='[routes]' wait=0
    """
    if test:
        return plan(only=only, minion=minion)
    tree = _tree(minion)
    try:
        return _run(tree, "deploy", only=only, wait=wait)
    except hecate_lock.LockTimeout as exc:
        return {"status": "not started", "error": str(exc), "retcode": 1}


@_reports_refusals
def history(limit=20, minion=None):
    """Deployment records of this environment, newest last.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.history
        salt-run hecate.history limit=5
    """
    tree = _tree(minion)
    settings, consul_client = _consul(tree)
    records = hecate_lock.list_records(consul_client, settings["environment"], settings["deployments"]["prefix"], limit=limit)
    keep = ("id", "kind", "status", "recorded_at", "deployed_by", "seconds", "error", "rolled_back_to")
    return [{k: r[k] for k in keep if k in r} for r in records]


@_reports_refusals
def rollback(id=None, minion=None, wait=None):
    """Return to a previous successful deployment (default: the one before the latest success):
    Nomad jobs reverted to their recorded versions; Caddy, authentik and DNS re-converged to the
    recorded desired state. Recorded as a deployment of kind ``rollback``.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.rollback
        salt-run hecate.rollback id=20261127T101500Z-1a2b3c
    """
    tree = _tree(minion)
    settings, consul_client = _consul(tree)
    successes = hecate_lock.list_records(consul_client, settings["environment"], settings["deployments"]["prefix"], status="success")
    if id is None:
        if len(successes) < 2:
            return {"status": "not started", "error": "no earlier successful deployment to roll back to", "retcode": 1}
        target_record = successes[-2]
    else:
        target_record = hecate_lock.read_record(consul_client, settings["environment"], id, settings["deployments"]["prefix"])
        if not target_record or target_record.get("status") != "success":
            return {"status": "not started", "error": f"deployment {id} is unknown or was not successful", "retcode": 1}
    stages = [s.name for s in hecate_orchestrate.enabled_stages(tree) if s.name in hecate_orchestrate.DECLARATIVE]
    try:
        summary = _run(
            tree,
            "rollback",
            only=stages,
            recorded=target_record["tree"],
            record_extra={"rolled_back_to": target_record["id"]},
            wait=wait,
        )
    except hecate_lock.LockTimeout as exc:
        return {"status": "not started", "error": str(exc), "retcode": 1}
    reverted = []
    for job, version in (target_record.get("nomad_versions") or {}).items():
        if version is not None:
            _call(tree, "controller", "nomad_job.revert", [job, version])
            reverted.append(f"{job} -> version {version}")
    summary.update(rolled_back_to=target_record["id"], nomad_reverted=reverted)
    return summary


@_reports_refusals
def promote(approve=False, source="staging", minion=None, wait=None):
    """Deploy here what last succeeded in the ``source`` environment (its recorded pillar, with this
    environment's name and secrets). Without ``approve=True`` it only shows the plan.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.promote
        salt-run hecate.promote approve=True
    """
    tree = _tree(minion)
    settings, consul_client = _consul(tree)
    found = hecate_lock.list_records(consul_client, source, settings["deployments"]["prefix"], status="success", limit=1)
    if not found:
        return {"status": "not started", "error": f"no successful deployment in {source} to promote", "retcode": 1}
    candidate = found[-1]
    promoted = {**candidate["tree"], "global": {**candidate["tree"].get("global", {}), "environment": settings["environment"]}}
    if not approve:
        return {"status": "needs approval", "from": candidate["id"], "to": settings["environment"],
                "hint": "salt-run hecate.promote approve=True", "retcode": 1}  # fmt: skip
    try:
        summary = _run(tree, "promote", recorded=promoted, record_extra={"promoted_from": f"{source}/{candidate['id']}"}, wait=wait)
    except hecate_lock.LockTimeout as exc:
        return {"status": "not started", "error": str(exc), "retcode": 1}
    summary["promoted_from"] = f"{source}/{candidate['id']}"
    return summary


def stages(minion=None):
    """The stages this pillar turns on, in order, with their SLS and targets (orchestrate.sls reads this).

    CLI Example:

    .. code-block:: bash

        salt-run hecate.stages
    """
    tree = _tree(minion)
    out = []
    for stage in hecate_orchestrate.enabled_stages(tree):
        tgt, tgt_type = hecate_orchestrate.target(tree, stage.role)
        out.append({"name": stage.name, "sls": stage.sls, "tgt": tgt, "tgt_type": tgt_type})
    return out


@_reports_refusals
def verify(minion=None):
    """Request every pillar route through every edge (``caddy.probe``); fails when one does not answer.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.verify
    """
    tree = _tree(minion)
    failures = _verify(tree)
    if failures:
        __context__["retcode"] = 1
    return {
        "ok": not failures,
        "routes": len(tree["reverse_proxy"]["caddy"]["routes"]),
        "failures": failures,
        "retcode": 1 if failures else 0,
    }


@_reports_refusals
def record(status="success", minion=None):
    """Write a deployment record for what the pillar describes now (``state.orchestrate`` ends with it).

    CLI Example:

    .. code-block:: bash

        salt-run hecate.record
    """
    tree = _tree(minion)
    settings, consul_client = _consul(tree)
    stored = hecate_lock.write_record(
        consul_client,
        settings["environment"],
        {
            "kind": "orchestrate",
            "status": status,
            "deployed_by": hecate_lock.whoami(),
            "tree": hecate_orchestrate.strip_secrets(tree),
            "nomad_versions": _nomad_versions(tree),
        },
        prefix=settings["deployments"]["prefix"],
    )
    return {"id": stored["id"], "environment": stored["environment"], "status": stored["status"]}


# -- operate: import, health, backup (issue 7) --
# Helpers live in _utils (hecate_import, hecate_health, hecate_backup); the functions here are thin:
# read the validated tree, reach the minions (edges: Caddy; the controller: authentik, DNS, Nomad), format.
# Imported at module level like every helper (tests/unit/test_import_rule.py), here to keep the section whole.
import hecate_backup  # noqa: E402
import hecate_health  # noqa: E402
import hecate_import  # noqa: E402


def _operate_tree(minion=None):
    pillar = __salt__["pillar.show_pillar"](minion or __opts__["id"]) or {}
    if pillar.get("_errors"):
        raise SaltInvocationError("the pillar did not render: " + "; ".join(map(str, pillar["_errors"])))
    try:
        return hecate_schema.validate(pillar.get("hecate"))
    except hecate_schema.PillarError as exc:
        raise SaltInvocationError(str(exc)) from exc


class _OperateCaller:
    """``call(target, fun, *args, **kwargs) -> {minion: {"ok", "ret"}}`` over one LocalClient.

    ``target``: ``edge`` (``tgt`` or ``hecate:deployment:targets:edge``, default grain ``roles:hecate-proxy``),
    ``controller`` (``controller`` or ``hecate:deployment:targets:controller``, default grain
    ``roles:hecate-controller``), or ``minion:<id>``."""

    def __init__(self, tree, tgt=None, tgt_type=None, controller=None, timeout=None):
        import salt.client as salt_client

        targets = (tree.get("deployment") or {}).get("targets") or {}
        default_type = targets.get("tgt_type", "grain")
        self.roles = {
            "edge": (tgt, tgt_type or "glob") if tgt else (targets.get("edge", "roles:hecate-proxy"), default_type),
            "controller": (controller, tgt_type or "glob")
            if controller
            else (targets.get("controller", "roles:hecate-controller"), default_type),
        }
        self.timeout = int(timeout or 30)
        self.client = salt_client.LocalClient(mopts=__opts__)

    def _target(self, target):
        return (target[len("minion:") :], "glob") if target.startswith("minion:") else self.roles[target]

    @staticmethod
    def _answers(answers):
        out = {}
        for minion, answer in (answers or {}).items():
            if not isinstance(answer, dict) or answer.get("failed") or "ret" not in answer:  # did not return in time
                out[minion] = {"ok": False, "ret": "no answer from the minion (down, or slower than timeout=)"}
            else:
                out[minion] = {"ok": answer.get("retcode", 0) == 0, "ret": answer["ret"]}
        return out

    def __call__(self, target, fun, *args, **kwargs):
        tgt, tgt_type = self._target(target)
        return self._answers(
            self.client.cmd(tgt, fun, list(args), tgt_type=tgt_type, kwarg=kwargs or None, timeout=self.timeout, full_return=True)
        )

    def many(self, calls):
        """Several calls published at once, then gathered: ``[(target, fun, args, kwargs)] -> [answers]``.
        One round trip for all of them instead of one each (a probe per route adds up)."""
        self.client.event.subscribe("salt/job/")  # cache every job return until its turn to be read
        published = []
        for target, fun, args, kwargs in calls:
            tgt, tgt_type = self._target(target)
            pub = self.client.run_job(tgt, fun, list(args), tgt_type=tgt_type, kwarg=kwargs or None, timeout=self.timeout, listen=True)
            published.append((pub, tgt, tgt_type))
        out = []
        for pub, tgt, tgt_type in published:
            answers = {}
            if pub and pub.get("jid"):
                for found in self.client.get_cli_event_returns(pub["jid"], pub["minions"], self.timeout, tgt, tgt_type):
                    answers.update(found or {})
            out.append(self._answers(answers))
        return out

    def close(self):
        self.client.destroy()


def import_caddyfile(path, dest=None, caddy=None, force=False):
    """Turn a Caddyfile into hecate pillar with the real ``caddy adapt``: routes (domain, backend(s),
    service from the comment above each site or its first label, ``tls_skip_verify``, https backends),
    and the security/header snippets as a profile. Everything it cannot map (log blocks, global options,
    handlers hecate does not model, sites that are not a reverse proxy) is listed in ``unmapped``;
    changes of meaning (the seed's ANDed matchers, ``respond 444``) in ``notes``.

    path
        The Caddyfile (on the master).
    dest
        Write the pillar there as YAML, with ``unmapped`` and ``notes`` as comments on top
        (refused if the file exists, unless ``force=True``).
    caddy
        The caddy binary (default: next to Salt's Python, else on PATH).

    CLI Example:

    .. code-block:: bash

        salt-run hecate.import_caddyfile path=/etc/caddy/Caddyfile
        salt-run hecate.import_caddyfile path=/etc/caddy/Caddyfile dest=/srv/pillar/hecate-imported.sls
        salt-run hecate.import_caddyfile path=/etc/caddy/Caddyfile --out=yaml
    """
    import os

    try:
        result = hecate_import.import_file(path, binary=caddy)
    except hecate_import.CaddyfileError as exc:
        __context__["retcode"] = 1
        return {"error": str(exc), "retcode": 1}
    written = None
    if dest:
        if os.path.exists(dest) and not force:
            __context__["retcode"] = 1
            return {"error": f"{dest} exists; pass force=True to overwrite it", "retcode": 1}
        with open(dest, "w", encoding="utf-8") as handle:
            handle.write(result["yaml"])
        written = dest
    return {
        "routes": result["routes"],
        "profiles": sorted(result["pillar"]["hecate"]["reverse_proxy"]["caddy"].get("profiles", {})),
        "written": written,
        "unmapped": result["unmapped"],
        "notes": result["notes"],
        "warnings": result["warnings"],
        "pillar": result["pillar"],
        "retcode": 0,
    }


def health(tgt=None, tgt_type=None, controller=None, minion=None, only=None, timeout=30):
    """Is every route answering through every edge, and do the backends agree? Routes (``caddy.probe``
    on each edge), Caddy's upstreams (``caddy.upstreams``), authentik (``authentik.health``), Nomad
    allocations (``nomad_job.status``/``allocations``) and DNS record sets against the pillar's targets
    (``hetzner_dns.rrsets``). A backend that is not configured shows as such; one that fails shows its
    error; neither hides the others. Tables by default; ``--out=json`` for scripts. Exits 1 when
    anything is unhealthy.

    tgt, tgt_type
        The edge minions (default ``hecate:deployment:targets:edge``, grain ``roles:hecate-proxy``).
    controller
        The minion that talks to authentik, DNS and Nomad (default ``hecate:deployment:targets:controller``).
    minion
        Whose pillar to read (default the master's own id).
    only
        A list of sections: routes, upstreams, authentik, nomad, dns.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.health
        salt-run hecate.health tgt=edge-1 controller=ctl-1
        salt-run hecate.health only='[routes, dns]' --out=json
    """
    tree = _operate_tree(minion)
    call = _OperateCaller(tree, tgt, tgt_type, controller, timeout)
    try:
        report = hecate_health.collect(tree, call, only=[only] if isinstance(only, str) else only)
    finally:
        call.close()
    if report["retcode"]:
        __context__["retcode"] = 1
    return {"data": report, "outputter": "table"}


def backup(dir, tgt=None, tgt_type=None, controller=None, minion=None, only=None, timeout=60):
    """Save what hecate manages into a new directory on the master: each edge's Caddy config
    (``caddy.snapshot``), the authentik objects hecate owns, the DNS zones' record sets, the Nomad jobs'
    versions and specs; plus ``manifest.json`` and ``SHA256SUMS``. Sections that are not configured
    are recorded as such in the manifest. Exits 1 if a configured section could not be read.

    dir
        A directory that does not exist yet (or is empty); created mode 0700, files 0600.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.backup dir=/var/backups/hecate/$(date +%F)
        salt-run hecate.backup dir=/var/backups/hecate/now only='[caddy]' tgt=edge-1
    """
    tree = _operate_tree(minion)
    call = _OperateCaller(tree, tgt, tgt_type, controller, timeout)
    try:
        sections, files = hecate_backup.collect(tree, call, only=[only] if isinstance(only, str) else only)
    finally:
        call.close()
    try:
        manifest = hecate_backup.write(dir, sections, files, environment=tree["global"].get("environment"))
    except (OSError, hecate_backup.BackupError) as exc:
        __context__["retcode"] = 1
        return {"error": str(exc), "retcode": 1}
    failed = sorted(n for n, s in sections.items() if s.get("state") == "failed")
    if failed:
        __context__["retcode"] = 1
    return {"dir": dir, "files": len(manifest["files"]), "sections": sections, "failed": failed, "retcode": 1 if failed else 0}


def restore(dir, tgt=None, tgt_type=None, controller=None, minion=None, only=None, test=False, timeout=120):
    """Put a backup back. First every checksum is verified (manifest.json, SHA256SUMS, every file; an
    extra or missing file counts): on any mismatch nothing is changed and it exits 1. Then Caddy on each
    saved edge (``caddy.restore``; skipped when already identical), authentik's objects, the DNS record
    sets hecate owned, and the Nomad jobs' versions. ``test=True`` shows what would change.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.restore dir=/var/backups/hecate/2026-05-01 test=True
        salt-run hecate.restore dir=/var/backups/hecate/2026-05-01
        salt-run hecate.restore dir=/var/backups/hecate/2026-05-01 only='[caddy]'
    """
    _, problems = hecate_backup.verify(dir)
    if problems:
        __context__["retcode"] = 1
        return {"restored": False, "refused": True, "problems": problems, "comment": "the backup failed verification: nothing was changed",
                "retcode": 1}  # fmt: skip
    tree = _operate_tree(minion)
    call = _OperateCaller(tree, tgt, tgt_type, controller, timeout)
    try:
        result = hecate_backup.restore(dir, call, only=[only] if isinstance(only, str) else only, test=test)
    finally:
        call.close()
    result["retcode"] = 1 if result["problems"] or result["refused"] else 0
    if result["retcode"]:
        __context__["retcode"] = 1
    return result
