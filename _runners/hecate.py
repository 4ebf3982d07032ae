"""hecate's runner: the operator's entry points on the master, thin over the engine.

``deploy`` takes the stack from the committed pillar to production under a Consul lock: expand (Nomad
jobs, authentik objects, DNS records created and updated, nothing deleted), switch (Caddy's routes,
then every route verified through every edge), contract (what the pillar no longer has is removed).
A failure before the contract rolls back every applied stage; every run is recorded in Consul KV.
``salt/hecate/orchestrate.sls`` drives the same engine one step at a time (``begin``, ``stage``,
``undo``, ``finish``). ``plan`` shows every stage's diff and writes nothing; ``status`` is that diff as
drift; ``history``, ``show``, ``rollback`` and ``promote`` work from the records. The engine:
``hecatelib.engine`` (its seams on a master: ``hecatelib.engine.master``); the backends, their stages
and hooks: ``hecatelib.backends``. See docs/orchestration.md, docs/architecture.md.
"""

import contextlib
import datetime
import functools
import json
import logging
import os
import re
import signal
import sys
import threading
import time

import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

hecate_fresh.drop_stale()
from salt.exceptions import CommandExecutionError, SaltInvocationError

from hecatelib import backups, bulk, cli, paths, schema
from hecatelib import health as health_report
from hecatelib import report as report_view
from hecatelib.backends import BACKENDS
from hecatelib.caddy import caddyfile
from hecatelib.consul.records import Records, rollback_choice, shown_status
from hecatelib.engine import master, results
from hecatelib.engine import stages as engine_stages
from hecatelib.engine.engine import Engine
from hecatelib.engine.run import Run, new_run_id, pillar_commit, recorded_tree

try:
    import consul  # noqa: F401 - py-consul: deploy's lock and records (hecatelib.consul)
except ImportError as exc:  # pragma: no cover - only where py-consul is missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

log = logging.getLogger(__name__)

__virtualname__ = "hecate"

# The validated tree of each state.orchestrate run, by run id: its steps are runner calls in one process and
# use the pillar ``hecate.stages`` rendered the run from (one consistent pillar per run, compiled once, not
# once per step). A step in another process compiles it again.
_TREES = hecate_fresh.kept("run_trees")
# The dry run of each ``state.orchestrate ... test=True`` run, by run id: ``hecate.begin test=True`` makes it
# (one round of jobs for every stage), each step's ``hecate.stage test=True`` reports its stage's part.
_PLANS = hecate_fresh.kept("run_plans")


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return __virtualname__


# -- the one outcome rule ----------------------------------------------------------------------------


def _outcome(func):
    """Every entry point answers with a dict and sets the exit code from it: ``retcode`` in the result
    is what ``salt-run`` exits with, ``__context__["retcode"]`` is what makes a ``salt.runner`` step of an
    orchestration fail. A refusal before anything was touched (bad argument, unknown stage, invalid
    pillar, unreachable backend, lock held) is one line of reason, never Salt's "Passed invalid
    arguments" and the docstring. A run that began reports its own outcome (the engine never lets a run
    that wrote anything say "not started")."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            result = func(*args, **kwargs)
        except (SaltInvocationError, CommandExecutionError, ValueError) as exc:
            log.warning("hecate.%s refused: %s", func.__name__, exc)
            result = {"status": "not started", "error": str(exc), "retcode": 1}
        if isinstance(result, dict) and result.get("retcode"):
            __context__["retcode"] = result["retcode"]
        return result

    return wrapper


def _tree(minion=None):
    """The validated ``hecate`` tree as ``minion`` (default: the master itself) gets it."""
    with bulk.gc_paused():  # rendering and checking a pillar of thousands of routes (hecatelib.bulk)
        pillar = __salt__["pillar.show_pillar"](minion or __opts__["id"]) or {}
    if pillar.get("_errors"):
        raise SaltInvocationError("the pillar did not render: " + "; ".join(_one_line(_explain(str(e))) for e in pillar["_errors"]))
    tree, prefix = pillar.get("hecate"), paths.prefix(__opts__)
    try:
        return schema.validate_on_host(tree, __opts__["cachedir"], prefix)
    except schema.PillarError as exc:
        raise SaltInvocationError(_one_line(str(exc))) from exc


def _one_line(text):
    """A refusal is one line: ``invalid pillar (2 problems): a: why; b: why`` (PillarError lists one per line)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {'; '.join(lines[1:])}"
    return "; ".join(lines)


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


def _progress(line):
    """A line the operator sees as it happens (the engine's ``say`` seam): on ``salt-run``'s stderr, so that
    stdout stays the one result document (``--out=json``/``--out=yaml`` included), and in the master log.
    Salt prints a runner's ``__jid_event__`` progress events with the result's outputter on stdout (one
    JSON document per event before the result: salt/client/mixins.py ``print_async_event``), so none is
    fired. Only in the main thread, where ``salt-run`` runs a runner (``state.orchestrate``'s steps too);
    the reactor runs runners in a thread pool of the master and says nothing on its stderr."""
    log.info("hecate: %s", line)
    if threading.current_thread() is threading.main_thread() and not __opts__.get("quiet") and sys.stderr:
        try:
            sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] hecate: {line}\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed or broken terminal never stops a run
            pass


@contextlib.contextmanager
def _engine(tree, broken=None, **targets):
    """The engine over this master's seams (minions, event bus, Consul), closed afterwards. ``broken``: the
    live pillar's problem while it does not validate (see :func:`_settings`): the state runs skip Salt's
    refusal of a pillar with errors, and there is no verify step (its probes would read the minions' broken
    pillar); each edge's routes state still checks the routes it wrote against the tree it was given."""
    seams = master.seams(__opts__, tree, say=_progress, force=bool(broken), **targets)
    try:
        yield Engine(tree, seams, BACKENDS, verify=False if broken else None)
    finally:
        master.close(seams)


def _records(tree, prefix=None):
    return master.records(tree, __opts__, prefix)


# -- while the pillar does not validate ----------------------------------------------------------------


def _last_good_path(minion=None):
    return os.path.join(__opts__["cachedir"], "hecate", "last_good", f"{minion or __opts__['id']}.json")


def _remember(tree, minion=None):
    """After a successful run: where its records are (the environment and the secret-free ``hecate:consul``
    section), for the verbs that work from the records while the pillar does not validate (:func:`_settings`)."""
    path = _last_good_path(minion)
    kept = {"global": {"environment": tree["global"]["environment"]}, "consul": recorded_tree(tree).get("consul") or {}}
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(kept, handle)
        os.replace(path + ".tmp", path)
    except OSError as exc:  # never fails the run that succeeded
        log.warning("hecate: could not keep the last good settings in %s: %s", path, exc)


def _settings(minion=None):
    """``(tree, problem)``: the validated live pillar and None; or, while the pillar does not validate, the
    tree of the last successful deployment and the pillar's problem. Then the records are found where this
    master's last successful run left them (:func:`_remember`), Consul is reached with the master's
    ``hecate_ext_pillar:consul`` (the token) over that run's ``hecate:consul`` (address, lock and record
    settings), and everything else (targets, deployment settings) is the last success's recorded tree
    (secret-free). For the verbs that work from the records: history, show, rollback, reconcile."""
    try:
        return _tree(minion), None
    except SaltInvocationError as exc:
        problem = str(exc)
    try:
        with open(_last_good_path(minion) if os.path.exists(_last_good_path(minion)) else _last_good_path(), encoding="utf-8") as handle:
            where = json.load(handle)
    except (OSError, ValueError):
        raise SaltInvocationError(f"{problem} (and no successful run of this master says where the records are)") from None
    records = _records(where)
    last = records.last_success()
    found = records.read(last["id"], full=("tree",)) if last else None
    if not found or not found.get("tree"):
        raise SaltInvocationError(f"{problem} (and {records.environment} has no successful deployment to take settings from)")
    try:
        tree = schema.validate(found["tree"], root_prefix=paths.prefix(__opts__))
    except schema.PillarError as exc:
        raise SaltInvocationError(f"{problem} (and the last successful deployment's tree does not validate either: {exc})") from exc
    _progress(f"the pillar does not validate ({problem}): working from the records, with the settings of the last success {last['id']}")
    return tree, problem


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
    with _engine(_tree(minion)) as engine:
        stages_ = engine.plan(only)
    return {
        "stages": stages_,
        "order": results.timeline(stages_),
        "would_change": sum(s["would_change"] for s in stages_.values()),
        "retcode": 0 if all(s["ok"] for s in stages_.values()) else 1,
    }


@_outcome
def status(minion=None):
    """Drift per stage: desired (pillar) against live, from a dry run of every stage. Writes nothing.
    Exits 1 on drift or error, so cron and alerting can use it.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.status
    """
    with _engine(_tree(minion)) as engine:
        planned = engine.plan()
    drift_ = {}
    for name, stage_ in planned.items():
        if not stage_["ok"]:
            drift_[name] = {"state": "error", "problems": stage_["problems"]}
        elif stage_["would_change"] or stage_["changes"]:
            drift_[name] = {"state": "drift", "changes": stage_["changes"]}
        else:
            drift_[name] = {"state": "in sync"}
    in_sync = all(d["state"] == "in sync" for d in drift_.values())
    return {"backends": drift_, "in_sync": in_sync, "retcode": 0 if in_sync else 1}


# -- deploy, and the steps orchestrate.sls calls -------------------------------------------------------


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
        _progress("Ctrl-C: stopping after the current step (again to stop now)")

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _drive(tree, kind, minion=None, broken=None, targets=None, **kwargs):
    """One whole run in this process (the engine's ``drive``), Ctrl-C acted on between steps. The handler
    comes before the lock: a first Ctrl-C anywhere only sets the flag, acted on at the next step boundary,
    so it is never raised inside (and lost in) a library call while the run begins. ``broken``: see
    :func:`_engine`; ``targets``: the engine's (``tgt``: one edge). A success is remembered for :func:`_settings`."""
    with _CtrlC() as ctrl_c, _engine(tree, broken=broken, **(targets or {})) as engine:
        summary = engine.drive(kind, stop=lambda: ctrl_c.hit, **kwargs)
    if summary.get("status") == "success" and not broken:
        _remember(tree, minion)
    return summary


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
    return _drive(_tree(minion), "deploy", minion=minion, only=only, wait=wait)


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
    for step in engine_stages.steps(tree, BACKENDS):
        entry = {"name": step.name, "phase": step.phase}
        if step.stage:
            tgt, tgt_type = engine_stages.target(tree, step.stage.role)
            entry.update(sls=step.stage.sls, tgt=tgt, tgt_type=tgt_type)
        out.append(entry)
    run = new_run_id()
    _keep(_TREES, run, tree)
    return {"run": run, "stages": out, "retcode": 0}


@_outcome
def begin(run, kind="orchestrate", wait=None, minion=None, test=False):
    """Step 1 of ``state.orchestrate hecate.orchestrate``: take the deploy lock, record run ``run`` as
    running, make the dry run of every stage (``would_change``), snapshot what a rollback needs.
    ``test=True``: the dry run only (no lock, no record), kept for the run's steps with ``test=True``.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.begin run=20261202T101500Z-1a2b3c
    """
    with _engine(_run_tree(run, minion)) as engine:
        if test:
            planned = engine.plan()
            _keep(_PLANS, run, planned)
            steps_ = [s.name for s in engine.steps(engine.tree)]
            would = {name: s["would_change"] for name, s in planned.items() if s["would_change"]}
            return {"id": run, "test": True, "steps": steps_, "would_change": would, "retcode": 0}
        began = engine.begin(kind, run_id=run, wait=wait)
        would = engine.preview(began)
    return {"id": began.id, "status": "running", "steps": began.steps, "would_change": would, "retcode": 0}


def _keep(store, run, value):
    """Keep ``value`` for run ``run`` in a process-wide store of at most 8 runs (runs rendered or planned
    but never finished must not pile up)."""
    while len(store) >= 8:
        store.pop(next(iter(store)))
    store[run] = value


def _load(engine, run_id):
    run = engine.seams.runs.load(run_id)
    if run is None:
        raise SaltInvocationError(f"run {run_id} has not begun on this master (or has finished)")
    return run


def _planned_step(run, step):
    """A step of a ``test=True`` orchestration: its stage's part of the dry run ``begin`` made."""
    planned = _PLANS.get(run)
    if planned is None:
        raise SaltInvocationError(f"run {run} has no dry run on this master (its begin step with test=True)")
    answer = {"id": run, "step": step, "test": True, "ok": True, "changed": 0, "changes": [], "problems": [], "retcode": 0}
    if step == "verify":
        return {**answer, "note": "would request every route through every edge"}
    if step.endswith("_contract"):
        stage_ = step.removesuffix("_contract")
        return {**answer, "note": f"would remove what {stage_} no longer has (its removals are in the hecate_{stage_} step's changes)"}
    if step not in planned:
        raise SaltInvocationError(f"run {run} has no step {step!r}; its steps are: {', '.join(planned)}")
    entry = planned[step]
    answer.update(ok=entry["ok"], changed=entry["would_change"], changes=entry["changes"], problems=entry["problems"])
    return {**answer, "retcode": 0 if entry["ok"] else 1}


@_outcome
def stage(run, step, minion=None, test=False):
    """Apply one step of run ``run`` (a stage, ``verify`` or a ``<stage>_contract``) under its lock.
    Exits 1 when the step failed: ``orchestrate.sls``'s ``onfail`` requisites then roll back.
    ``test=True``: what the step would change, from the dry run of ``hecate.begin test=True``.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.stage run=20261202T101500Z-1a2b3c step=routes
    """
    if test:
        return _planned_step(run, step)
    with _engine(_run_tree(run, minion)) as engine:
        result = engine.step(_load(engine, run), step)
    return {"id": run, "step": step, **result, "retcode": 0 if result["ok"] else 1}


@_outcome
def undo(run, minion=None, test=False):
    """Roll back every stage run ``run`` applied (``orchestrate.sls`` calls it ``onfail``), under its
    lock, each backend's revert checked. Nothing when ``hecate:deployment:auto_rollback`` is false.
    ``test=True`` (a step's dry run failed): says so, changes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.undo run=20261202T101500Z-1a2b3c
    """
    if test:
        return {"id": run, "test": True, "rollback": "would roll back every stage the run applied", "retcode": 0}
    tree = _run_tree(run, minion)
    if not tree["deployment"]["auto_rollback"]:
        return {"id": run, "rollback": "off (hecate:deployment:auto_rollback is false)", "retcode": 0}
    with _engine(tree) as engine:
        try:
            rolled = engine.undo(_load(engine, run))
        except CommandExecutionError as exc:  # the lock lost: nothing may be written any more
            return {"id": run, "status": "failed", "rollback": f"not done: {exc}", "retcode": 1}
    return {"id": run, "rollback": rolled, "retcode": 1 if rolled["problems"] else 0}


@_outcome
def finish(run, minion=None, test=False):
    """The last step of every ``state.orchestrate`` run, whatever happened before: write the run's record
    (success, or failed with the stage and reason) and release the lock. ``test=True``: forgets the
    run's dry run.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.finish run=20261202T101500Z-1a2b3c
    """
    try:
        if test:
            return {"id": run, "test": True, "status": "test", "retcode": 0}
        with _engine(_run_tree(run, minion)) as engine:
            began = engine.seams.runs.load(run)
            if began is None:
                return {"id": run, "status": "not started", "error": f"run {run} did not begin (see its begin step)", "retcode": 1}
            summary = engine.finish(began)
        if summary["status"] == "success":
            _remember(engine.tree, minion)
        return summary
    finally:
        _TREES.pop(run, None)
        _PLANS.pop(run, None)


@_outcome
def verify(minion=None):
    """Request every pillar route through every edge (``caddy.check``); fails when one does not answer.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.verify
    """
    tree = _tree(minion)
    with _engine(tree) as engine:
        failures = engine.verify(tree)
    routes = len(tree["reverse_proxy"]["caddy"]["routes"])
    return {"ok": not failures, "routes": routes, "failures": failures, "retcode": 1 if failures else 0}


# -- between deploys: drift, reconcile, follow ---------------------------------------------------------

DRIFT_PREFIX = "hecate/drift"
_WINDOW = {"m": 60, "h": 3600, "d": 86400}
_MINION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _drift_stages(tree):
    """The stages whose drift the master reads (a dry run): the backends with ``drift``, enabled."""
    enabled = {step.name for step in engine_stages.steps(tree, BACKENDS, verify=False)}
    return [s.name for b in BACKENDS if b.drift for s in b.stages if s.name in enabled]


def _keep_drift(tree, report):
    """Append a drift report to the bounded history in Consul KV (``hecate:reconcile:history`` newest)."""
    reports = _records(tree, DRIFT_PREFIX)
    reports.write({"time": time.time(), **report})
    kept = reports.list()
    for old in kept[: max(0, len(kept) - tree["reconcile"]["history"])]:
        reports.delete(old["id"])


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
    tree = _settings(minion)[0] if history else _tree(minion)  # the kept reports are records: readable while the pillar is broken
    if history:
        text = str(history).strip()
        if len(text) < 2 or text[-1] not in _WINDOW or not text[:-1].isdigit():
            raise SaltInvocationError(f"history={history!r}: use a number of minutes, hours or days, e.g. 30m, 24h, 7d")
        since = time.time() - int(text[:-1]) * _WINDOW[text[-1]]
        reports = [r for r in _records(tree, DRIFT_PREFIX).list() if r.get("time", 0) >= since]
        return {"window": text, "reports": reports, "count": len(reports), "retcode": 0}
    only = _drift_stages(tree)
    counts = {}
    if only:
        with _engine(tree) as engine:
            counts = {name: stage_["would_change"] for name, stage_ in engine.plan(only).items()}
    drifted = {name: count for name, count in counts.items() if count}
    if drifted:
        _keep_drift(
            tree, {"minion": __opts__["id"], "backend": "master", "count": sum(drifted.values()), "drift": drifted, "action": "alert"}
        )
    return {"backends": counts, "drifted": sorted(drifted), "retcode": 1 if drifted else 0}


def _holder(tree):
    """The deploy lock's holder now: ``(entry, run id or None)``, or ``(None, None)`` when free."""
    settings, client = master.consul_client(tree, __opts__)
    entry = master.ConsulLocks(client, settings).holder()
    if entry is None:
        return None, None
    try:
        return entry, json.loads(entry["Value"] or b"{}").get("deployment")
    except (ValueError, AttributeError):  # not ConsulLock's JSON: someone else's holder
        return entry, None


def _alert(tree, report):
    """A drift not healed: kept in the drift history and fired as ``hecate/alert/drift``."""
    _keep_drift(tree, report)
    with master.EventBus(__opts__) as bus:
        bus("alert/drift", report)
    return {**report, "retcode": 1}


def _running_holder(tree, records):
    """The run id in the deploy lock now, asked only when one of ``records`` says ``running``."""
    return _holder(tree)[1] if any(r.get("status") == "running" for r in records) else None


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
    tree, broken = _settings(minion)  # the drifted edge's own pillar (its Caddy, its ports)
    settings = tree["reconcile"]
    try:
        owner = engine_stages.backend_of(BACKENDS, backend)
    except ValueError as exc:
        raise SaltInvocationError(f"backend {backend!r}: one of {', '.join(b.name for b in BACKENDS)}") from exc
    stage_ = backend if backend in {s.name for s in owner.stages} else owner.stages[0].name
    edge = next(s for s in owner.stages if s.name == stage_).role == "edge"
    report = {"minion": minion, "backend": backend, "count": 0, "drift": []}
    entry, holder = _holder(tree)
    if entry is not None:  # a run is changing things: Salt would refuse its next stage beside our dry run
        return {**report, "action": f"none (the deploy lock is held by {holder or 'a session that is not a hecate run'}; "
                "its own dry run saw this edge)", "retcode": 0}  # fmt: skip
    if broken:  # nothing to heal towards, and no dry run to count with: the drift is recorded and alerted
        report.update(count=None, action=f"alert (not healed: the pillar does not validate: {broken})")
        return _alert(tree, report)
    # a dry run of the stage, on that minion alone for an edge stage: state.apply compiles the pillar afresh
    # (after a git_pillar update a minion's in-memory pillar is the old commit's: caddy.plan there would
    # count the new commit's routes as drift). The heal runs on the same target and takes this dry run as its
    # own (no second state.apply test=True): the drifted edge alone is re-applied and verified.
    targets = {"tgt": minion} if edge else {}
    with _engine(tree, **targets) as engine:
        dry = engine.dry_run(tree, [stage_])
    planned = dry[stage_]
    if not planned["ok"]:
        raise CommandExecutionError(f"{minion}: reading the drift of {stage_} failed: {'; '.join(planned['problems'])}")
    changes, count = results.summarize(planned["changes"]), results.count_changes(planned["changes"])
    report.update(count=count, drift=changes)
    if not count:
        return {**report, "action": "none (no drift now)", "retcode": 0}
    if settings["policy"] != "heal" or count > settings["max_changes"]:
        why = "policy alert" if settings["policy"] != "heal" else f"{count} changes > max_changes {settings['max_changes']}"
        report["action"] = f"alert ({why})"
        return _alert(tree, report)
    drifted = {"drift": {"minion": minion, "backend": backend, "count": count}}
    healed = _drive(tree, "heal", minion=minion, targets=targets, only=[stage_], wait=wait, extra=drifted, dry=dry)
    report.update(action="healed" if healed.get("status") == "success" else f"heal {healed.get('status')}", run=healed.get("id"))
    _keep_drift(tree, report)
    return {**report, "heal": healed, "retcode": healed.get("retcode", 1)}


@_outcome
def follow(minion=None, wait=0):
    """Deploy the newest commit of the pillar's git branch (``hecate:reconcile:follow_branch``), for a
    master schedule or the push reactor (``salt/reactor/hecate_push.sls``): ``git_pillar.update``, then a
    deploy if the commit differs from the last successful deployment's. Never two at once (the deploy
    lock, waited for up to ``wait`` seconds: the schedule does not wait, a push waits for the deploy before
    it); a commit whose pillar is invalid is skipped with an event ``hecate/follow/skipped`` saying why.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.follow
        salt-run hecate.follow wait=120
    """
    __salt__["git_pillar.update"]()
    try:
        tree = _tree(minion)
    except SaltInvocationError as exc:
        with master.EventBus(__opts__) as bus:
            bus("follow/skipped", {"reason": str(exc)[:2000]})
        return {"status": "skipped", "error": f"the new commit's pillar is invalid: {exc}", "retcode": 1}
    if not tree["reconcile"].get("follow_branch"):
        return {"status": "off", "why": "hecate:reconcile:follow_branch is not set", "retcode": 0}
    commit = (pillar_commit(__opts__) or {}).get("commit")
    last = _records(tree).last_success()
    deployed = (last.get("pillar") or {}).get("commit") if last else None
    if commit and commit == deployed:
        return {"status": "up to date", "commit": commit, "retcode": 0}
    return {"commit": commit, **_drive(tree, "deploy", minion=minion, wait=wait, extra={"follow": tree["reconcile"]["follow_branch"]})}


# -- records: history, show, rollback, promote --------------------------------------------------------


@_outcome
def history(limit=20, minion=None):
    """Deployment records of this environment, oldest first, with their change counts. A run still
    marked running whose lock is gone (Ctrl-C, a killed master) shows as interrupted (the same rule as
    :py:func:`show`). Works while the pillar does not validate (the settings of the last successful run).

    CLI Example:

    .. code-block:: bash

        salt-run hecate.history
        salt-run hecate.history limit=5
    """
    tree, _ = _settings(minion)
    records = _as_seen(tree, _records(tree).list(limit=limit))
    keep = ("id", "kind", "status", "recorded_at", "deployed_by", "seconds", "error", "rolled_back_to", "promoted_from")
    out = []
    for r in records:
        row = {k: r[k] for k in keep if k in r}
        row["changed"] = sum(s.get("changed", 0) for s in (r.get("stages") or {}).values())
        if r.get("pillar"):
            row["commit"] = r["pillar"]["commit"][:12] + ("+dirty" if r["pillar"].get("dirty") else "")
        out.append(row)
    return out


def _as_seen(tree, records):
    """``records`` with the status every view shows (:func:`hecatelib.consul.records.shown_status`)."""
    holder = _running_holder(tree, records)
    return [{**r, "status": shown_status(r, holder)} for r in records]


@_outcome
def show(id, tree=False, minion=None):
    """One deployment record: its stages in execution order with what each changed, the rollback, the
    pillar commit and operator; ``tree=True`` adds the deployed (secret-free) pillar tree. Its status is
    shown as :py:func:`history` shows it; it works while the pillar does not validate.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.show 20261202T101500Z-1a2b3c
    """
    settings, _ = _settings(minion)
    records = _records(settings)
    found = records.read(id, full=True if tree else ("state",))
    if not found:
        return {"error": f"no deployment record {id} in {records.environment}", "retcode": 1}
    found["status"] = shown_status(found, _running_holder(settings, [found]))
    found.pop("_modify_index", None)
    found.pop("tree_digest", None)
    if not tree:
        found.pop("tree", None)
    stages_ = found.get("stages") or {}
    found["order"] = results.timeline({name: stages_[name] for name in found.get("order") or stages_ if name in stages_})
    return found


def _rollback_target(records, id):
    """``(target, note)``: the record to return to (``id``, or :func:`hecatelib.consul.records.rollback_choice`)
    and, when the operator should confirm first, what a rollback would undo (else None)."""
    if id is not None:
        found = records.read(id, full=True)
        if not found or found.get("status") != "success":
            raise SaltInvocationError(f"deployment {id} is unknown or was not successful")
        return found, None
    everything = records.list()
    target, undone = rollback_choice(everything)
    if not undone:
        return records.read(target["id"], full=True), None
    last = [r for r in everything if r.get("status") == "success"][-1]
    runs = ", ".join(f"{r['id']} ({r.get('kind')}, {r.get('status')})" for r in undone)
    changed = [f"{name} {stage.get('changed')}" for name, stage in (last.get("stages") or {}).items() if stage.get("changed")]
    note = (
        f"the run(s) after the last success left nothing changed ({runs}: undone, or nothing applied), so what is live "
        f"is the last success {last['id']} ({last.get('deployed_by')}); a rollback now would undo it "
        f"({', '.join(changed) or 'no change counted'}) and return to {target['id']}. To do that: "
        f"salt-run hecate.rollback confirm=True (or id={target['id']})"
    )
    return records.read(target["id"], full=True), note


@_outcome
def rollback(id=None, test=False, confirm=False, minion=None, wait=None):
    """Return to a previous successful deployment: ``id``, or by default the one before what is live now
    (shown before acting; docs/orchestration.md says what "live" is). When the runs after the last
    success failed and were undone (live is already the last success's tree), it names the success it
    would undo and acts only with ``confirm=True`` (or ``id=``). Caddy, authentik and DNS are converged
    to the target's recorded tree (expand, switch, contract, as a deploy), Nomad jobs reverted to its
    recorded versions, each revert checked; all under the deploy lock, recorded as kind ``rollback``.
    ``test=True`` shows what would change and writes nothing. Works while the pillar does not validate,
    with the settings of the last successful run (docs/orchestration.md).

    CLI Example:

    .. code-block:: bash

        salt-run hecate.rollback test=True
        salt-run hecate.rollback
        salt-run hecate.rollback confirm=True
        salt-run hecate.rollback id=20261127T101500Z-1a2b3c
    """
    tree, broken = _settings(minion)
    target, note = _rollback_target(_records(tree), id)
    if note and not confirm and not test:
        return {"status": "not started", "error": f"not rolled back: {note}", "target": target["id"], "retcode": 1}
    _progress(f"rolling back to {target['id']} ({target.get('recorded_at')}, by {target.get('deployed_by')})")
    if broken:
        _progress("the state runs skip Salt's pillar check (force=True) and get the target's recorded tree; no verify step "
                  "(its probes read the minions' own pillar): the routes state checks every host it changes")  # fmt: skip
    with _engine(tree, broken=broken) as engine:
        effective = engine.effective(Run(id=target["id"], kind="rollback", recorded=target["tree"]))
        only = [s.name for b, s in engine_stages.choose(effective, BACKENDS) if b.rolls_back]
        restore_to = {name: state for name, state in (target.get("state") or {}).items() if state}
        if test:
            planned = {}
            for step in engine.steps(effective, only, verify=False):
                result = engine.apply(step.stage, test=True, pillar=engine.stage_pillar(step, target["tree"]))
                planned[step.name] = {"ok": result["ok"], "changes": results.summarize(result["changes"])}
            restores = []
            for backend in BACKENDS:
                if backend.restore and restore_to.get(backend.name):
                    outcome = backend.restore(engine.context(Run(id=target["id"], kind="rollback"), test=True), restore_to[backend.name])
                    restores += outcome.done + outcome.problems
            answer = {"target": target["id"], "stages": planned, "restores": restores, "test": True, "retcode": 0}
            return {**answer, "confirm": note} if note and not confirm else answer
    extra = {"rolled_back_to": target["id"], **({"pillar_problem": broken[:500]} if broken else {})}
    summary = _drive(tree, "rollback", minion=minion, broken=broken, only=only, wait=wait, recorded=target["tree"],
                     restore_to=restore_to, extra=extra)  # fmt: skip
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
    records = _records(tree)
    found = Records(records.client, source, records.prefix).last_success()
    if not found:
        return {"status": "not started", "error": f"no successful deployment in {source} to promote", "retcode": 1}
    candidate = Records(records.client, source, records.prefix).read(found["id"], full=True)
    promoted = {**candidate["tree"], "global": {**candidate["tree"].get("global", {}), "environment": records.environment}}
    if not approve:
        return {"status": "needs approval", "from": candidate["id"], "to": records.environment,
                "hint": "salt-run hecate.promote approve=True", "retcode": 1}  # fmt: skip
    summary = _drive(tree, "promote", wait=wait, recorded=promoted, extra={"promoted_from": f"{source}/{candidate['id']}"})
    summary["promoted_from"] = f"{source}/{candidate['id']}"
    return summary


@_outcome
def report(path=None, limit=50, minion=None, timeout=30):
    """Write one self-contained HTML page to open in a browser: the runs (outcome, duration, pillar commit,
    operator), each run's stage timings, the drift reports kept in Consul and each certificate's expiry
    (``caddy.certs`` on each edge). No script, nothing loaded from anywhere; every value escaped.

    path
        The file to write (default ``hecate-report-<environment>.html`` in the current directory).
    limit
        The newest runs to show (default 50).

    CLI Example:

    .. code-block:: bash

        salt-run hecate.report
        salt-run hecate.report path=/srv/www/hecate.html limit=200
    """
    tree = _tree(minion)
    environment = tree["global"]["environment"]
    runs = _as_seen(tree, _records(tree).list(limit=int(limit)))[::-1]
    drift_reports = _records(tree, DRIFT_PREFIX).list()
    with _engine(tree, timeout=timeout) as engine:
        certs = health_report.collect(tree, engine.call, BACKENDS, only=["certs"])["certs"]
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    page = report_view.render({"environment": environment, "generated_at": generated, "runs": runs, "drift": drift_reports, "certs": certs})
    path = os.path.abspath(path or f"hecate-report-{environment}.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return {"path": path, "runs": len(runs), "drift_reports": len(drift_reports), "certificates": len(certs), "retcode": 0}


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
        return {"error": str(exc), "retcode": 1}
    written = None
    if dest:
        if os.path.exists(dest) and not force:
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
    anything is unhealthy, and a ``salt.runner`` step of it in an orchestration fails then.

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
    with _engine(tree, tgt=tgt, tgt_type=tgt_type, controller=controller, timeout=timeout) as engine:
        report = health_report.collect(tree, engine.call, BACKENDS, only=[only] if isinstance(only, str) else only)
    if report["retcode"]:
        __context__["retcode"] = 1  # a salt.runner step's result (SyncClientMixin.low, salt/client/mixins.py)
    # not {"data": ..., "outputter": ...}: Salt judges such "data" as state returns, and a report is not one
    # (an orchestration step always failed); an "outputter" key beside the report still picks salt-run's table
    # (print_async_event, same file)
    return {**report, "outputter": "table"}


@_outcome
def backup(dir=None, tgt=None, tgt_type=None, controller=None, minion=None, only=None, timeout=60, force=False):
    """Save what hecate manages into a new directory on the master: each edge's Caddy config
    (``caddy.snapshot``), the authentik objects hecate owns, the DNS zones' record sets, the Nomad jobs'
    versions and specs; plus ``manifest.json`` and ``SHA256SUMS``. Sections that are not configured
    are recorded as such in the manifest. Exits 1 if a configured section could not be read.

    dir
        A directory that does not exist yet (or is empty); created mode 0700, files 0600. Without it, the
        scheduled backup of ``hecate:backup``: only when ``enabled`` and when ``schedule`` (cron, UTC) fired
        since the newest one (``force=True``: now), into ``/var/lib/hecate/backups/<UTC time>``, of the
        ``targets``; then backups older than ``retention_days`` are removed (the newest is always kept). A
        master schedule runs it often (docs/operate.md); it writes only when one is due.

    CLI Example:

    .. code-block:: bash

        salt-run hecate.backup dir=/var/backups/hecate/$(date +%F)
        salt-run hecate.backup dir=/var/backups/hecate/now only='[caddy]' tgt=edge-1
        salt-run hecate.backup               # the scheduled backup, when hecate:backup says one is due
    """
    tree = _tree(minion)
    settings = tree.get("backup") or {}
    now = datetime.datetime.now(datetime.timezone.utc)
    scheduled = dir is None
    if scheduled:
        root = os.path.join(paths.root("lib", paths.prefix(__opts__)), "backups")
        if not settings.get("enabled"):
            return {"status": "off", "why": "hecate:backup:enabled is not true (give dir= for a backup now)", "retcode": 0}
        last = (backups.taken(root) or [(None, None)])[-1][0]
        if not force and not backups.due(settings.get("schedule") or "0 3 * * *", last, now):
            return {"status": "not due", "last": last.strftime(backups.STAMP), "schedule": settings.get("schedule"), "retcode": 0}
        dir = os.path.join(root, now.strftime(backups.STAMP))
        only = only or backups.chosen(tree, BACKENDS)
    with _engine(tree, tgt=tgt, tgt_type=tgt_type, controller=controller, timeout=timeout) as engine:
        sections, files = backups.collect(tree, engine.call, BACKENDS, only=[only] if isinstance(only, str) else only)
    try:
        if scheduled:
            os.makedirs(os.path.dirname(dir), mode=0o700, exist_ok=True)
        manifest = backups.write(dir, sections, files, environment=tree["global"].get("environment"))
    except (OSError, backups.BackupError) as exc:
        return {"error": str(exc), "retcode": 1}
    failed = sorted(n for n, s in sections.items() if s.get("state") == "failed")
    out = {"dir": dir, "files": len(manifest["files"]), "sections": sections, "failed": failed, "retcode": 1 if failed else 0}
    if scheduled and settings.get("retention_days") and not failed:
        out["expired"] = backups.expire(os.path.dirname(dir), settings["retention_days"], now)
    return out


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
        return {"restored": False, "refused": True, "problems": problems, "comment": "the backup failed verification: nothing was changed",
                "retcode": 1}  # fmt: skip
    tree = _tree(minion)
    with _engine(tree, tgt=tgt, tgt_type=tgt_type, controller=controller, timeout=timeout) as engine:
        result = backups.restore(dir, engine.call, BACKENDS, only=[only] if isinstance(only, str) else only, test=test)
    result["retcode"] = 1 if result["problems"] or result["refused"] else 0
    return result
