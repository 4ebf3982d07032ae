"""hecate's runner: the operator's entry points on the master.

``deploy`` takes the stack from the committed pillar to production under a Consul lock: expand (Nomad
jobs, authentik objects, DNS records created and updated, nothing deleted), switch (Caddy's routes,
then every route verified through every edge), contract (what the pillar no longer has is removed).
A failure before the contract rolls back every applied stage; every run is recorded in Consul KV.
``salt/hecate/orchestrate.sls`` drives the same engine one step at a time (``begin``, ``stage``,
``undo``, ``finish``). ``plan`` shows every stage's diff and writes nothing; ``status`` is that diff as
drift; ``history``, ``show``, ``rollback`` and ``promote`` work from the records. The backends, their
order, phase and undo: ``_utils/hecatelib/engine/stages.py``. See docs/orchestration.md, docs/architecture.md.
"""

import contextlib
import functools
import json
import logging
import os
import re
import signal
import threading
import time

import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

hecate_fresh.drop_stale()
import salt.client
import salt.utils.event
import salt.utils.minions
from salt.exceptions import CommandExecutionError, SaltInvocationError

from hecatelib import backups, cli, paths, schema, secret_refs
from hecatelib import health as health_report
from hecatelib.caddy import caddyfile
from hecatelib.consul import lock as consul_lock
from hecatelib.engine import fleet, runs
from hecatelib.engine import stages as engine_stages
from hecatelib.nomad import jobs as nomad_jobs

try:
    import consul  # noqa: F401 - py-consul: deploy's lock and records (hecatelib.consul.lock, hecatelib.secret_refs)
except ImportError as exc:  # pragma: no cover - only where py-consul is missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

log = logging.getLogger(__name__)

__virtualname__ = "hecate"

# Locks taken by this process, by run id: state.orchestrate's steps are runner calls in one process,
# so the lock taken by ``begin`` (and its renewal thread) is still here for ``finish`` to release.
# A step in another process finds the lock by its session instead (the run's file).
_HELD = hecate_fresh.kept("held_locks")
# The validated tree of each state.orchestrate run, by run id, for the same reason: its steps use the
# pillar ``hecate.stages`` rendered the run from (one consistent pillar per run, compiled once, not
# once per step). A step in another process compiles it again.
_TREES = hecate_fresh.kept("run_trees")


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return __virtualname__


# -- the one outcome rule ----------------------------------------------------------------------------


def _outcome(func):
    """Every entry point answers with a dict and sets the exit code from it: ``retcode`` in the result
    is what ``salt-run`` exits with, ``__context__["retcode"]`` is what makes a ``salt.runner`` step of an
    orchestration fail. A refusal (bad argument, unknown stage, invalid pillar, unreachable backend, lock
    held) is one line of reason, never Salt's "Passed invalid arguments" and the docstring."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            result = func(*args, **kwargs)
        except (SaltInvocationError, CommandExecutionError, ValueError) as exc:
            result = {"status": "not started", "error": str(exc), "retcode": 1}
        if isinstance(result, dict) and result.get("retcode"):
            __context__["retcode"] = result["retcode"]
        return result

    return wrapper


def _tree(minion=None):
    """The validated ``hecate`` tree as ``minion`` (default: the master itself) gets it."""
    pillar = __salt__["pillar.show_pillar"](minion or __opts__["id"]) or {}
    if pillar.get("_errors"):
        raise SaltInvocationError("the pillar did not render: " + "; ".join(_explain(str(e)) for e in pillar["_errors"]))
    try:
        return schema.validate(pillar.get("hecate"), root_prefix=paths.prefix(__opts__))
    except schema.PillarError as exc:
        raise SaltInvocationError(str(exc)) from exc


def _run_tree(run, minion=None):
    """The tree of state.orchestrate run ``run``: the one its steps were rendered from, or compiled now."""
    return _TREES.get(run) if run in _TREES and minion is None else _tree(minion)


def _explain(error):
    """Salt hides a pillar file's render error behind "Please see master log for details"; on the master
    the file is at hand, so render it again to name the line and column (as hecate-validate does)."""
    marker = "Rendering SLS '"
    if marker not in error:
        return error
    sls = error.split(marker, 1)[1].split("'", 1)[0]
    relative = sls.replace(".", os.sep)
    for roots in (__opts__.get("pillar_roots") or {}).values():
        for root in roots:
            for path in (os.path.join(root, relative + ".sls"), os.path.join(root, relative, "init.sls")):
                if os.path.isfile(path):
                    try:
                        cli.render_sls(path)
                    except (OSError, UnicodeDecodeError, cli.RenderError) as exc:  # as hecate-validate reports them
                        return f"{path}: {' '.join(str(exc).split())}"
    return error


_BUS = threading.local()  # .bus: the event bus connection of the run this thread drives (see _one_bus)


def _event(tag, data):
    """Progress on the master's event bus: ``salt-run state.event 'hecate/*'`` shows a run live."""
    bus = getattr(_BUS, "bus", None)
    if bus is not None:
        bus.fire_event(data, f"hecate/{tag}")
        return
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as bus:
        bus.fire_event(data, f"hecate/{tag}")


@contextlib.contextmanager
def _one_bus():
    """One connection to the event bus for a whole run (a dozen events) instead of one per event."""
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as bus:
        _BUS.bus = bus
        try:
            yield
        finally:
            _BUS.bus = None


class _Minions:
    """``call(target, fun, *args, **kwargs) -> {minion: {"ok", "ret"}}`` over one LocalClient: the one way
    this runner reaches minions. ``target``: ``edge`` or ``controller`` (``hecate:deployment:targets``,
    overridden by ``tgt``/``controller``), or ``minion:<id>``. ``ok`` is False when the function failed or
    the minion did not answer within ``timeout`` (default ``hecate:deployment:stage_timeout``)."""

    def __init__(self, tree, tgt=None, tgt_type=None, controller=None, timeout=None):
        targets = tree["deployment"]["targets"]
        self.roles = {
            "edge": (tgt, tgt_type or "glob") if tgt else (targets["edge"], targets["tgt_type"]),
            "controller": (controller, tgt_type or "glob") if controller else (targets["controller"], targets["tgt_type"]),
        }
        self.timeout = int(timeout or tree["deployment"]["stage_timeout"])
        self.client = salt.client.LocalClient(mopts=__opts__)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _target(self, target):
        if target.startswith("minions:"):  # a batch of the fleet rollout
            return target[len("minions:") :], "list"
        return (target[len("minion:") :], "glob") if target.startswith("minion:") else self.roles[target]

    @staticmethod
    def _answers(answers):
        out = {}
        for minion, answer in (answers or {}).items():
            if not isinstance(answer, dict) or answer.get("failed") or "ret" not in answer:  # did not return in time
                out[minion] = {"ok": False, "ret": "no answer from the minion (down, or slower than the timeout)"}
            else:
                out[minion] = {"ok": answer.get("retcode", 0) == 0, "ret": answer["ret"]}
        return out

    def __call__(self, target, fun, *args, **kwargs):
        tgt, tgt_type = self._target(target)
        return self._answers(
            self.client.cmd(tgt, fun, list(args), tgt_type=tgt_type, kwarg=kwargs or None, timeout=self.timeout, full_return=True)
        )

    def state_apply(self, target, sls, **kwargs):
        """``state.apply`` on ``target``. Salt refuses a state run while another one runs on the minion
        ("is running as PID"): a dry run of hecate.plan, status or a reconcile begun before the lock, an
        operator's highstate. A refused run applied nothing, so those minions are asked again once the
        other run ended, for up to :data:`BUSY_WAIT` seconds, instead of failing the stage."""
        answers = self(target, "state.apply", sls, **kwargs)
        deadline = time.monotonic() + BUSY_WAIT
        while True:
            busy = sorted(minion for minion, answer in answers.items() if _refused_as_busy(answer))
            if not busy or time.monotonic() > deadline:
                return answers
            time.sleep(0.5)
            answers.update(self("minions:" + ",".join(busy), "state.apply", sls, **kwargs))

    def many(self, jobs):
        """Several jobs published at once, then gathered: one round trip for all of them.
        ``[(target, fun, args, kwargs)] -> [answers of each job]``. Each is a single-function job, never
        a compound one: Salt's ``saltutil.is_running`` (behind every state run's "is another state run
        running?" check) fails with a TypeError on a running job whose ``fun`` is a list, so any
        state.apply starting on that minion meanwhile, an operator's included, would fail."""
        self.client.event.subscribe("salt/job/")  # cache every job return until its turn to be read
        published = []
        for target, fun, args, kwargs in jobs:
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

    def shared(self):
        """``minions:<ids>`` when the edge and controller targets match the very same minions (as the
        master's minion data cache has them, the list Salt waits for), so one job can carry both roles'
        work; else None."""
        matched = {
            tuple(sorted(salt.utils.minions.CkMinions(__opts__).check_minions(tgt, tgt_type).get("minions") or []))
            for tgt, tgt_type in self.roles.values()
        }
        ids = matched.pop() if len(matched) == 1 else ()
        return "minions:" + ",".join(ids) if ids else None

    def close(self):
        self.client.destroy()


BUSY_WAIT = 120  # seconds a stage waits for another state run on its minion (Minions.state_apply)
_BUSY = re.compile(r'The function "state\.\w+" is running as PID \d+')


def _refused_as_busy(answer):
    """Salt's answer to a state run while another runs there: a list of "is running as PID" lines."""
    ret = answer["ret"]
    return not answer["ok"] and isinstance(ret, list) and bool(ret) and all(isinstance(line, str) and _BUSY.match(line) for line in ret)


def _rets(answers):
    """``{minion: {"ok", "ret"}}`` -> ``{minion: ret}`` of the minions whose call worked."""
    return {minion: answer["ret"] for minion, answer in answers.items() if answer["ok"]}


# -- validate, plan, status --------------------------------------------------------------------------


@_outcome
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
    errors = [("pillar", _explain(str(e))) for e in pillar.get("_errors", [])]
    warnings = []
    routes = 0
    if not errors:
        tree, report = schema.check(pillar.get("hecate"), root_prefix=paths.prefix(__opts__))
        errors, warnings = report.errors, report.warnings
        routes = len(tree.get("reverse_proxy", {}).get("caddy", {}).get("routes", [])) if not errors else 0
    return {
        "valid": not errors,
        "retcode": 1 if errors else 0,
        "minion": minion,
        "routes": routes,
        "errors": [f"{path}: {reason}" for path, reason in errors],
        "warnings": [f"{path}: {reason}" for path, reason in warnings],
    }


def _stage_pillar(step, recorded=None):
    """The pillar override a step's ``state.apply`` gets: a recorded tree (rollback, promote) over the
    live pillar, which still supplies the secrets; ``hecate_prune: False`` while expanding."""
    pillar = {"hecate": recorded} if recorded else {}
    if step.prune is not None:
        pillar["hecate_prune"] = step.prune
    return pillar or None


def _apply(call, step, test, recorded=None, pillar=None):
    """Apply one step's SLS on its targets. Returns ``{ok, changes, problems, seconds}``."""
    pillar = pillar if pillar is not None else _stage_pillar(step, recorded)
    started = time.monotonic()
    kwargs = {"test": bool(test), **({"pillar": pillar} if pillar else {})}
    answers = call.state_apply(step.backend.role, step.backend.sls, **kwargs)
    ok, changes, problems = runs.read_state_returns(answers)
    if not answers:
        tgt, tgt_type = call.roles[step.backend.role]
        problems = [f"no minion matched {tgt_type} target {tgt!r} for stage {step.name}"]
    return {"ok": ok, "changes": changes, "problems": problems, "seconds": round(time.monotonic() - started, 2)}


def _dry_run(tree, call, only=None, recorded=None):
    """Every chosen backend's dry run in ONE round of jobs published at once: one ``state.apply <every
    SLS> test=True`` per distinct target (one when edge and controller match the same minions);
    each state's result goes to the stage whose SLS holds it (``__sls__``).
    Returns ``{stage: {ok, changes, problems, seconds}}``."""
    # one job per distinct target: both roles' work in one job when their targets are the same minions
    shared = call.shared()
    target_of = {role: shared or (role if call.roles[role] != call.roles["edge"] else "edge") for role in call.roles}
    groups = {}
    for backend in engine_stages.choose(tree, only):
        groups.setdefault(target_of[backend.role], []).append(backend)
    # concurrent: edge and controller may be one minion, and Salt refuses a second state run there while
    # the first runs; two read-only dry runs cannot disturb each other (nor a real run: they write nothing)
    kwargs = {"test": True, "concurrent": True, **({"pillar": {"hecate": recorded}} if recorded else {})}
    jobs = [(target, "state.apply", [",".join(b.sls for b in group)], kwargs) for target, group in groups.items()]
    started = time.monotonic()
    answers = {target: answer for (target, _, _, _), answer in zip(jobs, call.many(jobs), strict=True)}
    seconds = round(time.monotonic() - started, 2)
    stages = {}
    for target, group in groups.items():
        answer = answers[target]
        split = {b.name: {} for b in group}
        for minion, returned in answer.items():
            parts = {b.name: {} for b in group}
            if isinstance(returned["ret"], dict):
                for state_id, state in returned["ret"].items():
                    sls = state.get("__sls__") if isinstance(state, dict) else None
                    parts[(engine_stages.owner(group, sls) or group[0]).name][state_id] = state
                for name, states in parts.items():
                    split[name][minion] = {"ok": returned["ok"], "ret": states}
            else:  # a render error or no answer: every stage of the job shares it
                for name in split:
                    split[name][minion] = returned
        for backend in group:
            ok, changes, problems = runs.read_state_returns(split[backend.name])
            if not answer:
                tgt, tgt_type = call.roles[backend.role]
                problems = [f"no minion matched {tgt_type} target {tgt!r} for stage {backend.name}"]
            stages[backend.name] = {"ok": ok, "changes": changes, "problems": problems, "seconds": seconds}
    return {b.name: stages[b.name] for b in engine_stages.BACKENDS if b.name in stages}  # run order


def _undo_reads(tree, call, run_id):
    """What undo needs, read in one round of jobs once a run knows it will write, before its first
    write: Caddy's config on every edge (kept there: ``caddy.snapshot keep=<run id>``) and the Nomad
    job versions. ``{"caddy": {minion: path}, "nomad": {job: version}}``."""
    jobs = [("edge", "caddy.snapshot", [], {"keep": run_id})]
    job_ids = _nomad_jobs(tree)
    if job_ids:
        jobs.append(("controller", "nomad_job.current_versions", [], {"names": job_ids}))
    kept, *versions = call.many(jobs)
    snapshots = {m: snap["path"] for m, snap in _rets(kept).items() if isinstance(snap, dict) and snap.get("path")}
    return {"caddy": snapshots, "nomad": _versions(versions[0]) if versions else {}}


def _planned(tree, only=None, tgt=None):
    """Every enabled stage's dry run (:func:`_dry_run`: one round of jobs), in run order, as the operator
    reads it; verify is left out (it sends requests, not writes, and tests the live state, not the plan).
    ``tgt``: the edge stage on these minions only."""
    with _Minions(tree, tgt=tgt) as call:
        stages = _dry_run(tree, call, only)
    planned = {
        name: {
            "ok": stage["ok"],
            "would_change": runs.count_changes(stage["changes"]),
            "changes": runs.summarize(stage["changes"]),
            "problems": stage["problems"],
        }
        for name, stage in stages.items()
    }
    removed = runs.removed_hosts(stages["routes"]["changes"]) if "routes" in stages else []
    dns = engine_stages.BY_NAME["dns"]
    if removed and engine_stages.enabled(tree, dns) and not engine_stages.prunes(tree, dns):
        note = [f"{host}: its DNS record stays (hecate:dns:prune is off)" for host in removed]
        planned.setdefault("dns", {"ok": True, "would_change": 0, "changes": [], "problems": []})["notes"] = note
    return planned


@_outcome
def plan(only=None, minion=None):
    """Every enabled stage's diff in run order (``state.apply ... test=True`` on its targets), with what
    each would change; ``would_change`` counts changed things (routes, objects, record sets). Writes
    nothing.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.plan
        salt-run hecate.plan only='[routes, dns]'
    """
    stages = _planned(_tree(minion), only)
    return {
        "stages": stages,
        "order": runs.timeline(stages),
        "would_change": sum(s["would_change"] for s in stages.values()),
        "retcode": 0 if all(s["ok"] for s in stages.values()) else 1,
    }


@_outcome
def status(minion=None):
    """Drift per stage: desired (pillar) against live, from a dry run of every stage. Writes nothing.
    Exits 1 on drift or error, so cron and alerting can use it.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.status
    """
    drift = {}
    for name, stage in _planned(_tree(minion)).items():
        if not stage["ok"]:
            drift[name] = {"state": "error", "problems": stage["problems"]}
        elif stage["would_change"] or stage["changes"]:
            drift[name] = {"state": "drift", "changes": stage["changes"]}
        else:
            drift[name] = {"state": "in sync"}
    in_sync = all(d["state"] == "in sync" for d in drift.values())
    return {"backends": drift, "in_sync": in_sync, "retcode": 0 if in_sync else 1}


# -- the engine: begin, stage, undo, finish ----------------------------------------------------------


def _consul(tree):
    settings = consul_lock.consul_settings(tree, __opts__)
    try:
        return settings, secret_refs.consul_client(settings)
    except CommandExecutionError as exc:
        raise CommandExecutionError(f"the deploy needs Consul for its lock and records: {exc}") from exc


def _nomad_jobs(tree):
    """The ids of hecate's Nomad jobs, or [] without Nomad."""
    return [nomad_jobs.job_settings(tree, name)["id"] for name in nomad_jobs.JOBS] if tree.get("nomad") else []


def _versions(answers):
    """``nomad_job.current_versions`` answers -> ``{job: version}`` of the jobs that exist."""
    found = next(iter(_rets(answers).values()), None)
    return {job: version for job, version in (found or {}).items() if version is not None} if isinstance(found, dict) else {}


def _nomad_versions(tree, call):
    """Current version of every hecate Nomad job (for reverting), in one job; {} without Nomad."""
    jobs = _nomad_jobs(tree)
    return _versions(call("controller", "nomad_job.current_versions", jobs)) if jobs else {}


def _verify(tree, call):
    """Every pillar route requested through every edge (one ``caddy.check`` per edge); the failures."""
    failures = []
    domains = [route["domain"] for route in tree["reverse_proxy"]["caddy"]["routes"]]
    for minion, answer in call("edge", "caddy.check", domains).items():
        if not answer["ok"] or not isinstance(answer["ret"], list):
            failures.append(f"{minion}: {answer['ret']}")
            continue
        failures.extend(f"{probe['domain']} via {minion}: {probe['reason']}" for probe in answer["ret"])
    return failures


def _records(tree):
    settings, client = _consul(tree)
    return settings, client, settings["environment"], settings["deployments"]["prefix"]


def _effective(tree, run):
    """The tree the run deploys: the pillar's, or a recorded one over it (rollback, promote)."""
    recorded = run.get("recorded")
    return schema.validate(runs.overlay(tree, recorded), root_prefix=paths.prefix(__opts__)) if recorded else tree


def _recorded(effective):
    """A run's tree as its record stores it (secrets left out, as JSON has it)."""
    return json.loads(json.dumps(runs.strip_secrets(effective)))


def _begin(tree, kind, run_id=None, only=None, wait=None, recorded=None, extra=None):
    """Take the deploy lock and record the run as running (``cas=0``): from here on the run is recorded
    whatever happens (success, failed, interrupted)."""
    settings, client, environment, prefix = _records(tree)
    run_id = run_id or consul_lock.new_deployment_id()
    run = {"id": run_id, "kind": kind, "only": only, "recorded": recorded, "extra": extra or {}, "started": time.time()}
    effective = _effective(tree, run)
    steps = [s.name for s in engine_stages.steps(effective, only)]  # refuses an unknown stage before the lock
    lock = consul_lock.ConsulLock(
        client,
        settings["lock"]["key"],
        ttl=settings["lock"]["ttl"],
        timeout=settings["lock"]["wait"] if wait is None else wait,
        lock_delay=settings["lock"]["lock_delay"],
        info={"deployment": run_id, "kind": kind},
    )
    lock.acquire()
    try:
        last = next(iter(consul_lock.list_records(client, environment, prefix, status="success", limit=1)), None)
        # a run that writes nothing deploys what the last success deployed when their trees are equal:
        # the Nomad versions to return to are that record's, so a no-op need not read them (see _finish)
        same = last is not None and last.get("tree") == _recorded(effective)
        run.update(
            session=lock.session,
            lock_key=lock.key,
            steps=steps,
            previous=last["id"] if last else None,
            before={"caddy": {}, "nomad": last.get("nomad_versions") if same else None},
            results={},
            applied=[],
            failure=None,
        )
        record = {"kind": kind, "status": "running", "deployed_by": runs.operator(__opts__), "stages": {}}
        record.update(pillar=runs.pillar_commit(__opts__), **run["extra"])
        consul_lock.write_record(client, environment, record, run_id, prefix)
        runs.save_run(__opts__, run)
        _HELD[run_id] = lock
        _event(f"{kind}/{run_id}/start", {"id": run_id, "stages": steps})
    except BaseException:  # Ctrl-C included: a recorded run left "running" without its lock shows as interrupted
        _HELD.pop(run_id, None)
        lock.release()
        raise
    return run


def _preview(tree, run):
    """Before the first write, every stage's dry run in one round of jobs (:func:`_dry_run`). Steps that
    cannot change anything are skipped: the leading expand steps whose dry run found nothing to change
    (so nothing they feed changed either), and their contract steps. When no stage would change
    anything the whole run is skipped: no write, no probe (``hecate.verify`` probes on demand), and
    nothing for undo to read. Otherwise a second round reads what undo needs (:func:`_undo_reads`)."""
    effective = _effective(tree, run)
    with _Minions(tree) as call:
        stages = _dry_run(effective, call, run["only"], run["recorded"])
        unchanged = {name for name, dry in stages.items() if dry["ok"] and not dry["changes"]}
        run["skip"] = engine_stages.skippable(engine_stages.steps(effective, run["only"]), unchanged)
        if set(run["steps"]) - set(run["skip"]):
            run["before"] = _undo_reads(effective, call, run["id"])
    runs.save_run(__opts__, run)


def _load(run_id):
    run = runs.load_run(__opts__, run_id)
    if run is None:
        raise SaltInvocationError(f"run {run_id} has not begun on this master (or has finished)")
    return run


def _check_lock(client, run):
    """Stop before a write unless the run still holds the deploy lock (renewing the session once)."""
    lock = _HELD.get(run["id"])
    if lock is not None:
        lock.check()
        return
    _, entry = client.kv.get(run["lock_key"])
    if not entry or entry.get("Session") != run["session"] or not client.session.renew(run["session"]):
        raise consul_lock.LockLost(f"run {run['id']} no longer holds the Consul lock {run['lock_key']}; it stops here")


def _step(tree, run, name):
    """Apply one step of the run (or verify); the outcome goes into the run's file."""
    effective = _effective(tree, run)
    step = next((s for s in engine_stages.steps(effective, run["only"]) if s.name == name), None)
    if step is None:
        raise SaltInvocationError(f"run {run['id']} has no step {name!r}; its steps are: {', '.join(run['steps'])}")
    tag = f"{run['kind']}/{run['id']}/{name}"
    if name in run.get("skip", ()):
        run["results"][name] = {"ok": True, "seconds": 0, "changed": 0, "changes": [], "problems": [], "skipped": True}
        runs.save_run(__opts__, run)
        _event(f"{tag}/done", {"stage": name, **run["results"][name]})
        return run["results"][name]
    _, client, _, _ = _records(tree)
    _event(f"{tag}/start", {"stage": name})
    try:
        _check_lock(client, run)
        with _Minions(tree) as call:
            if step.phase == engine_stages.VERIFY:
                failures = _verify(effective, call)
                result = {"ok": not failures, "changes": {}, "problems": failures, "seconds": 0}
            elif step.backend.role == "edge":
                result = _roll_out(effective, call, step, run)
                run["applied"].append(name)
            else:
                result = _apply(call, step, test=False, recorded=run["recorded"])
                run["applied"].append(name)
    except (CommandExecutionError, SaltInvocationError) as exc:
        result = {"ok": False, "changes": {}, "problems": [str(exc)], "seconds": 0}
    run["results"][name] = {
        "ok": result["ok"],
        "seconds": result["seconds"],
        "changed": runs.count_changes(result["changes"]),
        "changes": runs.summarize(result["changes"]),
        "problems": result["problems"],
    }
    if not result["ok"] and not run["failure"]:
        prefix = "verify failed: " if step.phase == engine_stages.VERIFY else f"stage {name} failed: "
        run["failure"] = prefix + "; ".join(result["problems"])
    runs.save_run(__opts__, run)
    _event(f"{tag}/{'done' if result['ok'] else 'fail'}", {"stage": name, **run["results"][name]})
    return run["results"][name]


def _roll_out(tree, call, step, run):
    """The edge stage over the fleet (hecatelib.engine.fleet): one canary edge, then batches of
    ``hecate:deployment:edge_batch``; each edge's own state verifies its routes and restores its own
    snapshot when they fail; a failed batch's other edges get their snapshot back and the rollout stops
    there, so a bad change never reaches the edges after it. Progress: ``<kind>/<id>/<step>/<minion>``."""
    started = time.monotonic()
    edges = sorted(call("edge", "test.ping"))
    pillar = _stage_pillar(step, run["recorded"])
    changes, problems = {}, []

    def apply(batch):
        kwargs = {"pillar": pillar} if pillar else {}
        answers = call.state_apply("minions:" + ",".join(batch), step.backend.sls, **kwargs)
        out = {}
        for minion in batch:
            ok, changed, found = runs.read_state_returns({minion: answers[minion]} if minion in answers else {})
            changes.update(changed)
            problems.extend(found if minion in answers else [f"{minion}: no answer from the minion"])
            out[minion] = {"result": ok}
        return out

    def roll_back(batch):
        restored = []
        for minion in batch:
            snap = run["before"]["caddy"].get(minion)
            answer = call(f"minion:{minion}", "caddy.restore", snap).get(minion) if snap else None
            (restored.append(minion) if answer and answer["ok"] else problems.append(f"{minion}: restoring its snapshot failed"))
        return restored

    def progress(minion, status):
        _event(f"{run['kind']}/{run['id']}/{step.name}/{minion}", {"edge": minion, "status": status})

    outcome = fleet.roll_out(edges, tree["deployment"]["edge_batch"], apply, roll_back, progress)
    if not edges:
        problems.append("no edge minion answered (hecate:deployment:targets:edge)")
    elif not outcome["ok"]:
        stopped = [m for m, s in outcome["edges"].items() if s == "not reached"]
        problems.append(f"stopped at batch {outcome['failed_batch']}: {', '.join(stopped) or 'no edge'} not reached")
    run["edges"] = outcome["edges"]
    return {"ok": bool(edges) and outcome["ok"], "changes": changes, "problems": problems, "seconds": round(time.monotonic() - started, 2)}


def _undo(tree, run):
    """Roll back every backend the run applied, last first, each with its own undo (hecatelib.engine.stages);
    every revert is checked: a backend that answered an error is a problem, not "done"."""
    _, client, environment, prefix = _records(tree)
    _check_lock(client, run)
    touched = []
    for name in reversed(run["applied"]):
        backend = engine_stages.BY_NAME[name.removesuffix("_contract")]
        if backend not in touched:
            touched.append(backend)
    previous = consul_lock.read_record(client, environment, run["previous"], prefix) if run["previous"] else None
    done, problems = [], []
    with _Minions(tree) as call:
        for backend in touched:
            if backend.undo == "snapshot":
                for minion, snap in run["before"]["caddy"].items():
                    if run.get("edges", {}).get(minion) == "not reached":  # the fleet rollout stopped before it
                        continue
                    answer = call(f"minion:{minion}", "caddy.restore", snap).get(minion) or {"ok": False, "ret": "no answer"}
                    line = f"{backend.name} on {minion}: restored the snapshot"
                    (done if answer["ok"] and answer["ret"] is True else problems).append(
                        line if answer["ok"] and answer["ret"] is True else f"{line} FAILED: {answer['ret']}"
                    )
            elif backend.undo == "reapply":
                if not previous:
                    problems.append(f"{backend.name}: no previous successful deployment to return to; left as applied")
                    continue
                step = engine_stages.Step(backend.name, engine_stages.CONTRACT, backend)
                result = _apply(call, step, test=False, pillar={"hecate": previous["tree"]})
                line = f"{backend.name}: re-applied deployment {previous['id']}"
                (done if result["ok"] else problems).append(line if result["ok"] else f"{line} FAILED: {'; '.join(result['problems'])}")
            elif backend.undo == "keep":
                problems.append(f"{backend.name}: never undone automatically (destroying machines is not a rollback)")
        if any(b.undo == "revert" for b in touched):  # touched: applied, so _undo_reads read the versions
            _revert_nomad(tree, call, run["before"]["nomad"] or {}, done, problems)
    run["rollback"] = {"done": done, "problems": problems}
    runs.save_run(__opts__, run)
    return run["rollback"]


def _revert_nomad(tree, call, versions, done, problems):
    """Nomad jobs whose version moved go back to ``versions``; each revert's answer is checked."""
    now = _nomad_versions(tree, call)
    for job, version in versions.items():
        if version is None or now.get(job) in (None, version):
            continue
        answers = call("controller", "nomad_job.revert", job, version)
        failed = [str(a["ret"]) for a in answers.values() if not a["ok"] or isinstance(a["ret"], str)]
        line = f"nomad job {job}: reverted to version {version}"
        (problems.append(f"{line} FAILED: {'; '.join(failed)}") if failed or not answers else done.append(line))


def _release(client, run):
    lock = _HELD.pop(run["id"], None)
    if lock is not None:
        lock.release()
        return
    try:  # the lock was taken by another process (its renewal stopped with it): release by session
        client.kv.put(run["lock_key"], None, release=run["session"])
        client.session.destroy(run["session"])
    except Exception as exc:  # releasing must never hide the run's outcome; the TTL frees it
        log.warning("hecate: releasing the lock of run %s failed (%s); its session TTL will free it", run["id"], type(exc).__name__)


def _finish(tree, run, status=None):
    """Write the run's record (success, failed with stage and reason, interrupted), release the lock."""
    _, client, environment, prefix = _records(tree)
    missing = [name for name in run["steps"] if name not in run["results"]]
    if not run["failure"] and missing and status != "interrupted":  # a step that never ran is not a success
        run["failure"] = f"step(s) {', '.join(missing)} did not run"
    status = status or ("failed" if run["failure"] else "success")
    try:
        # the versions a rollback to this run returns to (only successes are returned to); None: neither
        # read before a write nor carried over from the last success
        versions = run["before"]["nomad"]
        moved = any(name.startswith("nomad") for name in run["applied"]) or run["results"].get("nomad_revert", {}).get("changed")
        if status == "success" and (versions is None or moved):
            with _Minions(tree) as call:
                versions = _nomad_versions(tree, call)
        changes = {
            "status": status,
            "error": run["failure"]
            if status != "interrupted"
            else "interrupted (Ctrl-C) after: " + (", ".join(run["results"]) or "nothing"),
            "seconds": round(time.time() - run["started"], 2),
            "stages": run["results"],
            "order": list(run["results"]),  # records are stored with sorted keys: the execution order
            "tree": _recorded(_effective(tree, run)),
            "nomad_versions": versions or {},
        }
        if "rollback" in run:
            changes["rollback"] = run["rollback"]
        stored = consul_lock.update_record(client, environment, run["id"], changes, prefix)
    finally:
        _release(client, run)
        runs.drop_run(__opts__, run["id"])
    _event(f"{run['kind']}/{run['id']}/{'done' if status == 'success' else 'fail'}", {"id": run["id"], "status": status})
    summary = {k: stored[k] for k in ("id", "kind", "environment", "status", "error", "seconds", "stages", "rollback") if k in stored}
    summary["stages"] = {name: {k: v for k, v in s.items() if k != "changes" or v} for name, s in run["results"].items()}
    summary["order"] = runs.timeline(run["results"])
    summary["retcode"] = 0 if status == "success" else 1
    return summary


class _CtrlC:
    """Ctrl-C during a run is noted and acted on between steps: the step in flight finishes (a half-sent
    state.apply helps no one), the run is recorded as interrupted and the lock released. A second
    Ctrl-C stops at once. Only in the main thread (salt-run); a salt.runner step keeps Salt's handling."""

    def __enter__(self):
        self.hit = False
        try:
            self.previous = signal.signal(signal.SIGINT, self._note)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def _note(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True
        log.warning("hecate: Ctrl-C: stopping after the current step (again to stop now)")

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _drive(tree, kind, only=None, wait=None, recorded=None, extra=None, nomad_versions=None):
    """One whole run in this process: the same steps ``orchestrate.sls`` calls one by one.
    ``nomad_versions``: jobs to revert once the steps succeeded (a rollback), each revert checked."""
    # the handler from before the lock: a first Ctrl-C anywhere only sets the flag, acted on at the next
    # step boundary, so it is never raised inside (and lost in) a library call while the run begins
    with _CtrlC() as ctrl_c, _one_bus():
        try:
            run = _begin(tree, kind, only=only, wait=wait, recorded=recorded, extra=extra)
        except (KeyboardInterrupt, SystemExit):  # a second Ctrl-C while waiting for the lock: _begin released it
            return {"status": "interrupted", "error": "interrupted (Ctrl-C) before the run began: nothing was changed", "retcode": 1}
        try:
            if not ctrl_c.hit:
                _preview(tree, run)
            for name in run["steps"]:
                if ctrl_c.hit:
                    break
                _step(tree, run, name)
                if run["failure"]:
                    break
            if not run["failure"] and nomad_versions and not ctrl_c.hit:
                done, problems = [], []
                with _Minions(tree) as call:
                    _revert_nomad(tree, call, nomad_versions, done, problems)
                run["results"]["nomad_revert"] = {"ok": not problems, "changed": len(done), "changes": done, "problems": problems}
                if problems:
                    run["failure"] = "nomad revert failed: " + "; ".join(problems)
            if run["failure"] and tree["deployment"]["auto_rollback"] and not ctrl_c.hit:
                _undo(tree, run)
        except (KeyboardInterrupt, SystemExit):  # a second Ctrl-C: one line, the lock released, the run recorded
            summary = _finish(tree, run, status="interrupted")
            return {"id": run["id"], "status": "interrupted", "error": summary["error"], "retcode": 1}
        except BaseException:
            run["failure"] = run["failure"] or "the run stopped on an internal error (see the master log)"
            _finish(tree, run)
            raise
    if ctrl_c.hit:
        summary = _finish(tree, run, status="interrupted")
        return {"id": run["id"], "status": "interrupted", "error": summary["error"], "retcode": 1}
    return _finish(tree, run)


def _say(message):
    """A line the operator sees while the runner works (``salt-run`` prints progress events)."""
    try:
        __jid_event__.fire_event({"message": message}, "progress")
    except NameError:  # called outside salt-run (tests through the loader)
        log.info("hecate: %s", message)


# -- deploy, and the steps orchestrate.sls calls -------------------------------------------------------


@_outcome
def deploy(test=False, only=None, minion=None, wait=None):
    """Take the stack from the committed pillar to production, under a Consul lock: expand (Nomad jobs,
    authentik objects and DNS records created or updated, nothing deleted), switch (Caddy's routes,
    then every route verified), contract (what the pillar no longer has is removed). A failure before
    the contract rolls back every applied stage (``hecate:deployment:auto_rollback``); every run is
    recorded, with the pillar's git commit and the operator. ``test=True`` is :py:func:`plan`.

    A second deploy waits for the lock up to ``wait`` seconds (default ``hecate:consul:lock:wait``)
    and then stops, naming the holder.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.deploy
        salt-run hecate.deploy test=True
        salt-run hecate.deploy only='[routes]' wait=0
    """
    if test:
        return plan(only=only, minion=minion)
    return _drive(_tree(minion), "deploy", only=only, wait=wait)


@_outcome
def stages(minion=None):
    """The steps this pillar turns on, in run order (expand, switch, verify, contract), with their SLS
    and targets, and a fresh run id: ``orchestrate.sls`` renders its steps from this. Writes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.stages
    """
    tree = _tree(minion)
    out = []
    for step in engine_stages.steps(tree):
        entry = {"name": step.name, "phase": step.phase}
        if step.backend:
            tgt, tgt_type = engine_stages.target(tree, step.backend.role)
            entry.update(sls=step.backend.sls, tgt=tgt, tgt_type=tgt_type)
        out.append(entry)
    run = consul_lock.new_deployment_id()
    while len(_TREES) >= 8:  # runs rendered but never begun (test=True) must not pile up
        _TREES.pop(next(iter(_TREES)))
    _TREES[run] = tree
    return {"run": run, "stages": out, "retcode": 0}


@_outcome
def begin(run, kind="orchestrate", wait=None, minion=None):
    """Step 1 of ``state.orchestrate hecate.orchestrate``: take the deploy lock, record run ``run`` as
    running, snapshot what a rollback needs.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.begin run=20261202T101500Z-1a2b3c
    """
    tree = _run_tree(run, minion)
    began = _begin(tree, kind, run_id=run, wait=wait)
    _preview(tree, began)
    return {"id": began["id"], "status": "running", "steps": began["steps"], "retcode": 0}


@_outcome
def stage(run, step, minion=None):
    """Apply one step of run ``run`` (a stage, ``verify`` or a ``<stage>_contract``) under its lock.
    Exits 1 when the step failed: ``orchestrate.sls``'s ``onfail`` requisites then roll back.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.stage run=20261202T101500Z-1a2b3c step=routes
    """
    tree = _run_tree(run, minion)
    run_ = _load(run)
    result = _step(tree, run_, step)
    return {"id": run, "step": step, **result, "retcode": 0 if result["ok"] else 1}


@_outcome
def undo(run, minion=None):
    """Roll back every stage run ``run`` applied (``orchestrate.sls`` calls it ``onfail``), under its
    lock, each backend's revert checked. Nothing when ``hecate:deployment:auto_rollback`` is false.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.undo run=20261202T101500Z-1a2b3c
    """
    tree = _run_tree(run, minion)
    run_ = _load(run)
    if not tree["deployment"]["auto_rollback"]:
        return {"id": run, "rollback": "off (hecate:deployment:auto_rollback is false)", "retcode": 0}
    rolled = _undo(tree, run_)
    return {"id": run, "rollback": rolled, "retcode": 1 if rolled["problems"] else 0}


@_outcome
def finish(run, minion=None):
    """The last step of every ``state.orchestrate`` run, whatever happened before: write the run's record
    (success, or failed with the stage and reason) and release the lock.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.finish run=20261202T101500Z-1a2b3c
    """
    run_ = runs.load_run(__opts__, run)
    if run_ is None:
        return {"id": run, "status": "not started", "error": f"run {run} did not begin (see its begin step)", "retcode": 1}
    try:
        return _finish(_run_tree(run, minion), run_)
    finally:
        _TREES.pop(run, None)


@_outcome
def verify(minion=None):
    """Request every pillar route through every edge (``caddy.check``); fails when one does not answer.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.verify
    """
    tree = _tree(minion)
    with _Minions(tree) as call:
        failures = _verify(tree, call)
    routes = len(tree["reverse_proxy"]["caddy"]["routes"])
    return {"ok": not failures, "routes": routes, "failures": failures, "retcode": 1 if failures else 0}


# -- between deploys: drift, reconcile, follow ---------------------------------------------------------

DRIFT_PREFIX = "hecate/drift"
DRIFT_STAGES = ("authentik", "dns", "nomad_stateful", "nomad_core", "nomad_authentik", "nomad_apps")
_WINDOW = {"m": 60, "h": 3600, "d": 86400}
_MINION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _keep_drift(tree, report):
    """Append a drift report to the bounded history in Consul KV (``hecate:reconcile:history`` newest)."""
    _, client, environment, _ = _records(tree)
    consul_lock.write_record(client, environment, {"time": time.time(), **report}, prefix=DRIFT_PREFIX)
    kept = consul_lock.list_records(client, environment, prefix=DRIFT_PREFIX)
    for old in kept[: max(0, len(kept) - tree["reconcile"]["history"])]:
        client.kv.delete(consul_lock.record_key(environment, old["id"], DRIFT_PREFIX))


@_outcome
def drift(history=None, minion=None):
    """Drift of authentik, DNS and the Nomad jobs from the pillar, counted per backend (a dry run of
    each stage from the master; Caddy's drift comes from each edge's ``hecate_drift`` beacon). The
    report is kept in Consul KV (bounded). ``history='24h'`` lists the kept reports of that window
    instead: what drifted, where, and whether it was healed. Exits 1 on drift.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.drift
        salt-run hecate.drift history=24h
    """
    tree = _tree(minion)
    if history:
        text = str(history).strip()
        if len(text) < 2 or text[-1] not in _WINDOW or not text[:-1].isdigit():
            raise SaltInvocationError(f"history={history!r}: use a number of minutes, hours or days, e.g. 30m, 24h, 7d")
        since = time.time() - int(text[:-1]) * _WINDOW[text[-1]]
        _, client, environment, _ = _records(tree)
        reports = [r for r in consul_lock.list_records(client, environment, prefix=DRIFT_PREFIX) if r.get("time", 0) >= since]
        return {"window": text, "reports": reports, "count": len(reports), "retcode": 0}
    enabled = {step.name for step in engine_stages.steps(tree, verify=False)}
    only = [name for name in DRIFT_STAGES if name in enabled]
    counts = {name: stage["would_change"] for name, stage in _planned(tree, only).items()} if only else {}
    drifted = {name: count for name, count in counts.items() if count}
    if drifted:
        _keep_drift(
            tree, {"minion": __opts__["id"], "backend": "master", "count": sum(drifted.values()), "drift": drifted, "action": "alert"}
        )
    return {"backends": counts, "drifted": sorted(drifted), "retcode": 1 if drifted else 0}


@_outcome
def reconcile(minion, backend="caddy", wait=0):
    """Act on a drift report (the reactor ``salt/reactor/hecate_drift.sls`` calls it for each
    ``hecate/drift/<minion>/<backend>`` event), by ``hecate:reconcile:policy``: ``alert`` records it and
    fires ``hecate/alert/drift`` (outside ``hecate/drift/*``: the reactor never mistakes an alert for a
    report); ``heal`` re-applies the drifted stage as a recorded run under the deploy lock, unless the
    drift exceeds ``max_changes`` (then it only alerts). Every report is kept.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.reconcile minion=edge-1 backend=caddy
    """
    if not _MINION_ID.fullmatch(str(minion)):  # it becomes a Salt target: one id, never a glob from an event
        raise SaltInvocationError(f"minion={str(minion)[:80]!r}: one minion id (letters, digits, '.', '_', '-')")
    tree = _tree(minion)  # the drifted edge's own pillar (its Caddy, its ports)
    settings = tree["reconcile"]
    stage = "routes" if backend == "caddy" else backend
    if stage not in engine_stages.BY_NAME:
        raise SaltInvocationError(f"backend {backend!r}: one of caddy, {', '.join(DRIFT_STAGES)}")
    report = {"minion": minion, "backend": backend, "count": 0, "drift": []}
    _, client, _, _ = _records(tree)
    if _lock_entry(client, tree):  # a run is changing things: Salt would refuse its next stage beside our dry run
        holder = _holder(client, tree) or "a session that is not a hecate run"
        return {**report, "action": f"none (the deploy lock is held by {holder}; its own dry run saw this edge)", "retcode": 0}
    # a dry run of the stage, on that minion alone for Caddy: state.apply compiles the pillar afresh
    # (after a git_pillar update a minion's in-memory pillar is the old commit's: caddy.plan there would
    # count the new commit's routes as drift)
    planned = _planned(tree, [stage], tgt=minion if backend == "caddy" else None)[stage]
    if not planned["ok"]:
        raise CommandExecutionError(f"{minion}: reading the drift of {stage} failed: {'; '.join(planned['problems'])}")
    changes, count = planned["changes"], planned["would_change"]
    report.update(count=count, drift=changes)
    if not count:
        return {**report, "action": "none (no drift now)", "retcode": 0}
    if settings["policy"] != "heal" or count > settings["max_changes"]:
        why = "policy alert" if settings["policy"] != "heal" else f"{count} changes > max_changes {settings['max_changes']}"
        report["action"] = f"alert ({why})"
        _keep_drift(tree, report)
        _event("alert/drift", report)
        return {**report, "retcode": 1}
    healed = _drive(tree, "heal", only=[stage], wait=wait, extra={"drift": {"minion": minion, "backend": backend, "count": count}})
    report.update(action="healed" if healed.get("status") == "success" else f"heal {healed.get('status')}", run=healed.get("id"))
    _keep_drift(tree, report)
    return {**report, "heal": healed, "retcode": healed.get("retcode", 1)}


@_outcome
def follow(minion=None):
    """Deploy the newest commit of the pillar's git branch (``hecate:reconcile:follow_branch``), for a
    master schedule: ``git_pillar.update``, then a deploy if the commit differs from the last successful
    deployment's. Never two at once (the deploy lock, not waited for); a commit whose pillar is invalid
    is skipped with an event ``hecate/follow/skipped`` saying why.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.follow
    """
    __salt__["git_pillar.update"]()
    try:
        tree = _tree(minion)
    except SaltInvocationError as exc:
        _event("follow/skipped", {"reason": str(exc)[:2000]})
        return {"status": "skipped", "error": f"the new commit's pillar is invalid: {exc}", "retcode": 1}
    if not tree["reconcile"].get("follow_branch"):
        return {"status": "off", "why": "hecate:reconcile:follow_branch is not set", "retcode": 0}
    commit = (runs.pillar_commit(__opts__) or {}).get("commit")
    _, client, environment, prefix = _records(tree)
    last = consul_lock.list_records(client, environment, prefix, status="success", limit=1)
    deployed = ((last[-1].get("pillar") or {}).get("commit")) if last else None
    if commit and commit == deployed:
        return {"status": "up to date", "commit": commit, "retcode": 0}
    return {"commit": commit, **_drive(tree, "deploy", wait=0, extra={"follow": tree["reconcile"]["follow_branch"]})}


# -- records: history, show, rollback, promote --------------------------------------------------------


def _lock_entry(client, tree):
    """The deploy lock's KV entry while a session holds it, or None."""
    _, entry = client.kv.get(consul_lock.consul_settings(tree, __opts__)["lock"]["key"])
    return entry if entry and entry.get("Session") else None


def _holder(client, tree):
    """The run id holding the deploy lock now, or None."""
    entry = _lock_entry(client, tree)
    if entry is None:
        return None
    try:
        return json.loads(entry["Value"] or b"{}").get("deployment")
    except (ValueError, AttributeError):  # not ConsulLock's JSON: someone else's holder
        return None


@_outcome
def history(limit=20, minion=None):
    """Deployment records of this environment, oldest first, with their change counts. A run still
    marked running whose lock is gone (Ctrl-C, a killed master) shows as interrupted.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.history
        salt-run hecate.history limit=5
    """
    tree = _tree(minion)
    _, client, environment, prefix = _records(tree)
    records = consul_lock.list_records(client, environment, prefix, limit=limit)
    holder = _holder(client, tree) if any(r.get("status") == "running" for r in records) else None
    keep = ("id", "kind", "status", "recorded_at", "deployed_by", "seconds", "error", "rolled_back_to", "promoted_from")
    out = []
    for r in records:
        row = {k: r[k] for k in keep if k in r}
        if row.get("status") == "running" and r["id"] != holder:
            row["status"] = "interrupted"
        row["changed"] = sum(s.get("changed", 0) for s in (r.get("stages") or {}).values())
        if r.get("pillar"):
            row["commit"] = r["pillar"]["commit"][:12] + ("+dirty" if r["pillar"].get("dirty") else "")
        out.append(row)
    return out


@_outcome
def show(id, tree=False, minion=None):
    """One deployment record: its stages in execution order with what each changed, the rollback, the
    pillar commit and operator; ``tree=True`` adds the deployed (secret-free) pillar tree.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.show 20261202T101500Z-1a2b3c
    """
    live = _tree(minion)
    _, client, environment, prefix = _records(live)
    found = consul_lock.read_record(client, environment, id, prefix)
    if not found:
        return {"error": f"no deployment record {id} in {environment}", "retcode": 1}
    found.pop("_modify_index", None)
    if not tree:
        found.pop("tree", None)
    stages = found.get("stages") or {}
    found["order"] = runs.timeline({name: stages[name] for name in found.get("order") or stages if name in stages})
    return found


def _rollback_target(client, environment, prefix, id):
    """The record to return to: ``id``, or the newest success whose tree differs from the newest
    success's (a no-op deploy after a change is not a point to return to)."""
    successes = consul_lock.list_records(client, environment, prefix, status="success")
    if id is not None:
        found = consul_lock.read_record(client, environment, id, prefix)
        if not found or found.get("status") != "success":
            raise SaltInvocationError(f"deployment {id} is unknown or was not successful")
        return found, successes
    if not successes:
        raise SaltInvocationError("no successful deployment recorded: nothing to roll back to")
    live = successes[-1].get("tree")
    for candidate in reversed(successes[:-1]):
        if candidate.get("tree") != live:
            return candidate, successes
    raise SaltInvocationError("every successful deployment recorded deploys what is live now: nothing to roll back to")


@_outcome
def rollback(id=None, test=False, minion=None, wait=None):
    """Return to a previous successful deployment: by default the newest one whose desired state differs
    from what is live now (shown before acting). Caddy, authentik and DNS are converged to its recorded
    tree (expand, switch, contract, as a deploy), Nomad jobs reverted to its recorded versions, each
    revert checked; all under the deploy lock, recorded as kind ``rollback``. ``test=True`` shows what
    would change and writes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.rollback test=True
        salt-run hecate.rollback
        salt-run hecate.rollback id=20261127T101500Z-1a2b3c
    """
    tree = _tree(minion)
    _, client, environment, prefix = _records(tree)
    target, _ = _rollback_target(client, environment, prefix, id)
    _say(f"rolling back to {target['id']} ({target.get('recorded_at')}, by {target.get('deployed_by')})")
    only = [b.name for b in engine_stages.BACKENDS if b.undo in ("snapshot", "reapply")]
    only = [b.name for b in engine_stages.choose(_effective(tree, {"recorded": target["tree"]})) if b.name in only]
    versions = {job: v for job, v in (target.get("nomad_versions") or {}).items() if v is not None}
    if test:
        planned = {}
        with _Minions(tree) as call:
            for step in engine_stages.steps(_effective(tree, {"recorded": target["tree"]}), only, verify=False):
                result = _apply(call, step, test=True, recorded=target["tree"])
                planned[step.name] = {"ok": result["ok"], "changes": runs.summarize(result["changes"])}
            now = _nomad_versions(tree, call)
        reverts = [f"{job}: version {now.get(job)} -> {v}" for job, v in versions.items() if now.get(job) not in (None, v)]
        return {"target": target["id"], "stages": planned, "nomad_reverts": reverts, "test": True, "retcode": 0}
    summary = _drive(
        tree, "rollback", only=only, wait=wait, recorded=target["tree"], extra={"rolled_back_to": target["id"]}, nomad_versions=versions
    )
    summary["rolled_back_to"] = target["id"]
    return summary


@_outcome
def promote(approve=False, source="staging", minion=None, wait=None):
    """Deploy here what last succeeded in the ``source`` environment (its recorded pillar, with this
    environment's name and secrets). Without ``approve=True`` it only shows the plan.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.promote
        salt-run hecate.promote approve=True
    """
    tree = _tree(minion)
    _, client, environment, prefix = _records(tree)
    found = consul_lock.list_records(client, source, prefix, status="success", limit=1)
    if not found:
        return {"status": "not started", "error": f"no successful deployment in {source} to promote", "retcode": 1}
    candidate = found[-1]
    promoted = {**candidate["tree"], "global": {**candidate["tree"].get("global", {}), "environment": environment}}
    if not approve:
        return {"status": "needs approval", "from": candidate["id"], "to": environment,
                "hint": "salt-run hecate.promote approve=True", "retcode": 1}  # fmt: skip
    summary = _drive(tree, "promote", wait=wait, recorded=promoted, extra={"promoted_from": f"{source}/{candidate['id']}"})
    summary["promoted_from"] = f"{source}/{candidate['id']}"
    return summary


# -- operate: import, health, backup, restore ----------------------------------------------------------
# Helpers live in _utils (hecatelib.caddy.caddyfile, hecatelib.health, hecatelib.backups); the functions here are thin:
# read the validated tree, reach the minions (edges: Caddy; the controller: authentik, DNS, Nomad), format.


@_outcome
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
    try:
        result = caddyfile.import_file(path, binary=caddy)
    except caddyfile.CaddyfileError as exc:
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


@_outcome
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
    tree = _tree(minion)
    call = _Minions(tree, tgt, tgt_type, controller, timeout)
    try:
        report = health_report.collect(tree, call, only=[only] if isinstance(only, str) else only)
    finally:
        call.close()
    if report["retcode"]:
        __context__["retcode"] = 1
    return {"data": report, "outputter": "table"}


@_outcome
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
    tree = _tree(minion)
    call = _Minions(tree, tgt, tgt_type, controller, timeout)
    try:
        sections, files = backups.collect(tree, call, only=[only] if isinstance(only, str) else only)
    finally:
        call.close()
    try:
        manifest = backups.write(dir, sections, files, environment=tree["global"].get("environment"))
    except (OSError, backups.BackupError) as exc:
        __context__["retcode"] = 1
        return {"error": str(exc), "retcode": 1}
    failed = sorted(n for n, s in sections.items() if s.get("state") == "failed")
    if failed:
        __context__["retcode"] = 1
    return {"dir": dir, "files": len(manifest["files"]), "sections": sections, "failed": failed, "retcode": 1 if failed else 0}


@_outcome
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
    _, problems = backups.verify(dir)
    if problems:
        __context__["retcode"] = 1
        return {"restored": False, "refused": True, "problems": problems, "comment": "the backup failed verification: nothing was changed",
                "retcode": 1}  # fmt: skip
    tree = _tree(minion)
    call = _Minions(tree, tgt, tgt_type, controller, timeout)
    try:
        result = backups.restore(dir, call, only=[only] if isinstance(only, str) else only, test=test)
    finally:
        call.close()
    result["retcode"] = 1 if result["problems"] or result["refused"] else 0
    if result["retcode"]:
        __context__["retcode"] = 1
    return result
