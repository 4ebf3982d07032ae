"""The engine: one run of hecate's backends, under the deploy lock, recorded whatever happens.

``Engine(tree, seams)`` owns sequencing, locking, undo and records, and names no backend: it reads each
backend's hooks (``hecatelib.engine.backend``). A run is :meth:`begin` (lock, record ``running``),
:meth:`preview` (every stage's dry run in one round of jobs; what undo needs, read before the first
write), :meth:`step` for each step (expand, switch, verify, contract), :meth:`undo` when a step failed,
and :meth:`finish` (the record, the lock released). :meth:`drive` is all of it in one process
(``salt-run hecate.deploy``); ``salt/hecate/orchestrate.sls`` calls the same methods one runner call each,
the run kept in a file between them.

Every effect goes through :class:`Seams`, so the engine runs in a unit test without Salt or Consul:

- ``call``: reaches minions (``hecatelib.engine.minions.Minions`` over Salt's LocalClient);
- ``emit(tag, data)``: progress on the event bus; ``say(line)``: progress on the operator's terminal;
- ``records``: the deployment records (``hecatelib.consul.records.Records``);
- ``locks``: the deploy lock (``take(run_id, kind, wait)``, ``check(run)``, ``release(run)``);
- ``runs``: where a run is kept between runner calls (``hecatelib.engine.run.RunFiles``);
- ``operator`` and ``commit``: who runs it, and the pillar's git commit.
"""

import dataclasses
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

from hecatelib import schema
from hecatelib.engine import results, stages
from hecatelib.engine.backend import CONTRACT, EXPAND, SWITCH, VERIFY, Outcome
from hecatelib.engine.fleet import roll_out
from hecatelib.engine.run import Run, digest, new_run_id, overlay, recorded_tree
from hecatelib.errors import LockLost, RecordError

SKIPPED = "skipped: its dry run found nothing to change"
# what a ``<kind>/<id>/waiting`` event tells of the lock's holder (its lock value: no secret in it)
WAITING_FIELDS = ("deployment", "kind", "holder", "host", "pid", "acquired_at", "alive", "state", "waited")


@dataclasses.dataclass
class Seams:
    call: object
    records: object
    locks: object
    runs: object
    emit: object = None
    say: object = None
    operator: str = "unknown"
    commit: object = None  # () -> the pillar's git commit ({"commit", "dirty", "path"}) or None
    root_prefix: str = ""  # hecate's host roots relocated (hecatelib.paths; tests), for validating a recorded tree


@dataclasses.dataclass
class Context:
    """What an undo or restore hook gets: the live tree, the minions, the run, the last success."""

    tree: dict
    call: object
    run: Run
    previous: dict = None  # the previous successful record, with its tree
    apply: object = None  # (stage, pillar) -> {ok, changes, problems, seconds}
    test: bool = False  # say what would be done, write nothing (hecate.rollback test=True)


class Engine:
    def __init__(self, tree, seams, backends, verify=None):
        self.tree = tree
        self.seams = seams
        self.call = seams.call
        self.backends = tuple(backends)
        self.verify_step = verify  # None: the tree's hecate:deployment:verify; False: no verify step
        self._effective = self._recorded = (None, None)  # (what it was made from, the tree): once per run

    # -- progress ---------------------------------------------------------------------------------------
    def emit(self, tag, data):
        if self.seams.emit:
            self.seams.emit(tag, data)

    def say(self, line):
        if self.seams.say:
            self.seams.say(line)

    # -- what a run deploys -----------------------------------------------------------------------------
    def effective(self, run):
        """The tree the run deploys: the pillar's, or a recorded one over it (rollback, promote)."""
        if not run.recorded:
            return self.tree
        if self._effective[0] is not run.recorded:
            self._effective = (run.recorded, schema.validate(overlay(self.tree, run.recorded), self.backends, self.seams.root_prefix))
        return self._effective[1]

    def recorded(self, effective):
        """``effective`` as the run's record keeps it (begin compares its digest, finish stores it)."""
        if self._recorded[0] is not effective:
            self._recorded = (effective, recorded_tree(effective))
        return self._recorded[1]

    def steps(self, tree, only=None, verify=None):
        return stages.steps(tree, self.backends, only, self.verify_step if verify is None else verify)

    def stage_pillar(self, step, recorded=None):
        """The pillar override a step's ``state.apply`` gets: a recorded tree (rollback, promote) over the
        live pillar, which still supplies the secrets; ``hecate_prune: False`` while expanding."""
        pillar = {"hecate": recorded} if recorded else {}
        if step.prune is not None:
            pillar["hecate_prune"] = step.prune
        return pillar or None

    def apply(self, stage, test=False, pillar=None, target=None):
        """``state.apply`` of one stage's SLS on its targets: ``{ok, changes, problems, seconds}``."""
        started = time.monotonic()
        kwargs = {"test": bool(test), **({"pillar": pillar} if pillar else {})}
        answers = self.call.state_apply(target or stage.role, stage.sls, **kwargs)
        ok, changes, problems = results.read_state_returns(answers)
        if not answers:
            problems = [self.no_minion(stage)]
        return {"ok": ok, "changes": changes, "problems": problems, "seconds": round(time.monotonic() - started, 2)}

    def no_minion(self, stage):
        tgt, tgt_type = self.call.roles[stage.role]
        return f"no minion matched {tgt_type} target {tgt!r} for stage {stage.name}"

    # -- dry runs ---------------------------------------------------------------------------------------
    def dry_run(self, tree, only=None, recorded=None):
        """Every chosen stage's dry run in ONE round of jobs published at once: one ``state.apply <every
        SLS> test=True`` per distinct target (one when edge and controller match the same minions); each
        state's result goes to the stage whose SLS holds it (``__sls__``).
        Returns ``{stage: {ok, changes, problems, seconds}}`` in run order."""
        shared = self.call.shared()
        target_of = {role: shared or (role if self.call.roles[role] != self.call.roles["edge"] else "edge") for role in self.call.roles}
        groups = {}
        for backend, stage in stages.choose(tree, self.backends, only):
            groups.setdefault(target_of[stage.role], []).append((backend, stage))
        # concurrent: edge and controller may be one minion, and Salt refuses a second state run there while
        # the first runs; two read-only dry runs cannot disturb each other (nor a real run: they write nothing)
        kwargs = {"test": True, "concurrent": True, **({"pillar": {"hecate": recorded}} if recorded else {})}
        jobs = [(target, "state.apply", [",".join(s.sls for _, s in group)], kwargs) for target, group in groups.items()]
        names = [s.name for group in groups.values() for _, s in group]
        self.say(f"dry run of {', '.join(names) or 'no stage'}: {len(jobs)} state.apply test=True job(s)")
        started = time.monotonic()
        answers = {target: answer for (target, _, _, _), answer in zip(jobs, self.call.many(jobs), strict=True)}
        seconds = round(time.monotonic() - started, 2)
        out = {}
        for target, group in groups.items():
            answer = answers[target]
            split = {s.name: {} for _, s in group}
            for minion, returned in answer.items():
                parts = {s.name: {} for _, s in group}
                if isinstance(returned["ret"], dict):
                    for state_id, state in returned["ret"].items():
                        sls = state.get("__sls__") if isinstance(state, dict) else None
                        parts[(stages.owner(group, sls) or group[0])[1].name][state_id] = state
                    for name, states in parts.items():
                        split[name][minion] = {"ok": returned["ok"], "ret": states}
                else:  # a render error or no answer: every stage of the job shares it
                    for name in split:
                        split[name][minion] = returned
            for _, stage in group:
                ok, changes, problems = results.read_state_returns(split[stage.name])
                if not answer:
                    problems = [self.no_minion(stage)]
                out[stage.name] = {"ok": ok, "changes": changes, "problems": problems, "seconds": seconds,
                                   "warnings": results.warnings(split[stage.name]),
                                   "answered": sorted(m for m, a in answer.items() if not a.get("silent"))}  # fmt: skip
        ordered = {name: out[name] for name in stages.stage_names(self.backends) if name in out}
        self.say(_dry_run_line(ordered, seconds))
        return ordered

    def plan(self, only=None):
        """Every enabled stage's dry run, as the operator reads it; verify is left out (it sends requests,
        not writes, and tests the live state, not the plan)."""
        planned = {
            name: {
                "ok": dry["ok"],
                "would_change": results.count_changes(dry["changes"]),
                "changes": results.summarize(dry["changes"]),
                "problems": dry["problems"],
                **({"warnings": dry["warnings"]} if dry.get("warnings") else {}),
                "raw": dry["changes"],
            }
            for name, dry in self.dry_run(self.tree, only).items()
        }
        for backend in self.backends:
            notes = backend.notes(self.tree, planned) if backend.notes and backend.is_enabled(self.tree) else []
            if notes:
                name = backend.stages[0].name
                planned.setdefault(name, {"ok": True, "would_change": 0, "changes": [], "problems": []})["notes"] = notes
        for entry in planned.values():
            entry.pop("raw", None)
        return planned

    def verify(self, tree, run=None):
        """Every route requested through every edge: the failures (the switch backends' ``verify`` hook). In a
        run where only the switch changed something, the hook gets the switch's changes and checks what they
        touched (the rest serves as before: its config, backends and auth did not change); else everything."""
        switched = run.switched if run is not None and not run.widened else None
        self.say("verify: requesting " + ("the routes this run changed" if switched else "every route") + " through every edge")
        started, failures = time.monotonic(), []
        for backend in self.backends:
            if backend.verify and backend.is_enabled(tree):
                failures += backend.verify(tree, self.call, switched)
        seconds = round(time.monotonic() - started, 2)
        self.say(f"verify: {len(failures)} failure(s) ({seconds:g} s)" if failures else f"verify: every route answered ({seconds:g} s)")
        for failure in failures:
            self.say(f"  {failure}")
        return failures

    # -- reads for undo and for the record ----------------------------------------------------------------
    def read_round(self, tree, hook, argument, only=None):
        """Each enabled backend's reads (``hook``: ``before`` or ``record``) in one round of jobs:
        ``{backend: [answers of each read]}``."""
        chosen = [b for b in (only or self.backends) if getattr(b, hook) and b.is_enabled(tree)]
        wanted = [(b, getattr(b, hook)(tree, *argument)) for b in chosen]
        jobs = [(read.target, read.fun, list(read.args), dict(read.kwargs)) for _, reads in wanted for read in reads]
        answers = iter(self.call.many(jobs) if jobs else [])
        return {b: [next(answers) for _ in reads] for b, reads in wanted}

    def undo_reads(self, tree, run):
        """What undo needs, read once a run knows it will write, before its first write."""
        return {b.name: b.keep(tree, answers) for b, answers in self.read_round(tree, "before", (run.id,)).items()}

    def recorded_state(self, tree, run):
        """What a record keeps so that a rollback can return to it (backends' ``record`` hook). A backend
        the run did not write keeps what was read before the run, or what the last success recorded when
        the run deployed its very tree; only the others are read, in one round."""
        state, wanted = {}, []
        for backend in self.backends:
            if not (backend.record and backend.is_enabled(tree)):
                continue
            names = {s.name for s in backend.stages}
            touched = any(step.removesuffix("_contract") in names for step in run.applied)
            touched = touched or run.results.get(f"{backend.name}_restore", {}).get("changed")
            if not touched and backend.name in run.before:
                state[backend.name] = run.before[backend.name]
            elif not touched and backend.name in (run.carried or {}):
                state[backend.name] = run.carried[backend.name]
            else:
                wanted.append(backend)
        if wanted:
            read = self.read_round(tree, "record", (), only=wanted)
            state.update({b.name: b.recorded(tree, answers) for b, answers in read.items()})
        return state

    # -- the run ----------------------------------------------------------------------------------------
    def begin(self, kind, run_id=None, only=None, wait=None, recorded=None, restore_to=None, extra=None):
        """Take the deploy lock and record the run as running (``cas=0``): from here on the run is recorded
        whatever happens (success, failed, interrupted)."""
        run = Run(id=run_id or new_run_id(), kind=kind, only=only, recorded=recorded, restore_to=restore_to, extra=extra or {})
        effective = self.effective(run)
        run.steps = [s.name for s in self.steps(effective, only)]  # refuses an unknown stage before the lock
        lock = self.seams.locks.take(run, wait=wait, on_wait=lambda holder: self.waiting(run, holder))
        try:
            run.session, run.lock_key = lock.session, lock.key
            run.dead_holder = lock.dead_holder
            self.mark_interrupted(run)
            last = self.seams.records.last_success()
            run.previous = last["id"] if last else None
            # a run that writes nothing deploys what the last success deployed when their trees are equal:
            # what a rollback returns to is then that record's, so a no-op need not read it (see finish)
            if last is not None and last.get("tree_digest") == digest(self.recorded(effective)):
                run.carried = self.seams.records.read(last["id"], full=("state",)).get("state") or {}
            record = {
                "kind": kind,
                "status": "running",
                "deployed_by": self.seams.operator,
                "stages": {},
                "pillar": self.seams.commit() if self.seams.commit else None,
            }
            self.seams.records.write({**record, **run.extra}, run.id)
            self.seams.runs.save(run)
            self.emit(f"{kind}/{run.id}/start", {"id": run.id, "stages": run.steps})
            self.say(f"{kind} {run.id}: {len(run.steps)} steps ({', '.join(run.steps) or 'none'})")
        except BaseException:  # Ctrl-C included: a recorded run left "running" without its lock shows as interrupted
            self.seams.locks.release(run)
            raise
        return run

    def waiting(self, run, holder):
        """While another run holds the deploy lock: a line for the operator, an event for the bus."""
        self.emit(f"{run.kind}/{run.id}/waiting", {k: holder[k] for k in WAITING_FIELDS if k in holder})
        self.say(waiting_line(holder))

    def mark_interrupted(self, run):
        """The lock's previous holder died holding it: its record, still ``running``, says interrupted."""
        deployment = (run.dead_holder or {}).get("deployment")
        if not deployment:
            return
        try:
            if self.seams.records.mark_interrupted(deployment, by=run.id, holder=run.dead_holder):
                self.say(f"run {deployment} died holding the deploy lock: recorded as interrupted")
        except RecordError as exc:  # not ours to fail on: the new run goes on
            self.say(f"run {deployment} died holding the deploy lock; marking it interrupted failed: {exc}")

    def preview(self, run, dry=None):
        """Before the first write, every stage's dry run in one round of jobs. Steps that cannot change
        anything are skipped: the leading expand steps whose dry run found nothing to change (so nothing
        they feed changed either), and their contract steps. When no stage would change anything the whole
        run is skipped: no write, no probe, and nothing for undo to read. Otherwise a second round reads
        what undo needs. Returns what each stage's dry run would change: ``{stage: count}``.

        ``dry``: the dry run (:meth:`dry_run`) of the run's stages that its caller made just before it took
        the lock, used instead of a second one (a heal: the drift it read; a second dry run costs a
        ``state.apply`` job on every target). Should the live state move in between, the step converges
        to the pillar anyway: a dry run decides only what may be skipped."""
        effective = self.effective(run)
        dry = dry if dry is not None else self.dry_run(effective, run.only, run.recorded)
        unchanged = {name for name, stage in dry.items() if stage["ok"] and not stage["changes"]}
        run.answered = {name: stage["answered"] for name, stage in dry.items() if "answered" in stage}
        run.skip = stages.skippable(self.steps(effective, run.only), unchanged)
        if set(run.steps) - set(run.skip):
            if run.skip:
                self.say(f"skipping {', '.join(run.skip)}: their dry run found nothing to change")
            for name, stage in dry.items():  # before the writes: e.g. how long a rate limit will make them wait
                for line in stage.get("warnings") or ():
                    self.say(f"{name}: {line}")
            run.before = self.undo_reads(effective, run)
        elif run.steps:
            self.say("nothing to change: every step is skipped")
        self.seams.runs.save(run)
        return {name: results.count_changes(stage["changes"]) for name, stage in dry.items() if stage["changes"]}

    def check_lock(self, run):
        self.seams.locks.check(run)

    def step(self, run, name):
        """Apply one step of the run (or verify); the outcome goes into the run."""
        effective = self.effective(run)
        step = next((s for s in self.steps(effective, run.only) if s.name == name), None)
        if step is None:
            raise SaltInvocationError(f"run {run.id} has no step {name!r}; its steps are: {', '.join(run.steps)}")
        tag = f"{run.kind}/{run.id}/{name}"
        if name in run.skip:
            result = run.result(name, True, skipped=True)
            self.seams.runs.save(run)
            self.emit(f"{tag}/done", {"stage": name, **result})
            return result
        self.emit(f"{tag}/start", {"stage": name})
        if step.phase != VERIFY:  # verify says its own lines
            self.say(f"{name}: applying {step.stage.sls}")
        try:
            self.check_lock(run)
            if step.phase == VERIFY:
                started = time.monotonic()
                failures = self.verify(effective, run)
                outcome = {"ok": not failures, "changes": {}, "problems": failures, "seconds": round(time.monotonic() - started, 2)}
            elif step.stage.role == "edge":
                run.applied.append(name)
                outcome = self.roll_out(effective, step, run)
            else:
                run.applied.append(name)
                outcome = self.apply(step.stage, pillar=self.stage_pillar(step, run.recorded))
        except (CommandExecutionError, SaltInvocationError) as exc:
            outcome = {"ok": False, "changes": {}, "problems": [str(exc)], "seconds": 0}
        if step.phase == SWITCH:
            switched = run.switched or {}
            run.switched = {**switched, **{m: {**switched.get(m, {}), **states} for m, states in outcome["changes"].items()}}
        elif step.phase != VERIFY and (outcome["changes"] or not outcome["ok"]):
            run.widened = True
        result = run.result(
            name,
            outcome["ok"],
            outcome["seconds"],
            results.count_changes(outcome["changes"]),
            results.summarize(outcome["changes"]),
            outcome["problems"],
        )
        if not outcome["ok"] and not run.failure:
            run.failure = ("verify failed: " if step.phase == VERIFY else f"stage {name} failed: ") + "; ".join(outcome["problems"])
        self.seams.runs.save(run)
        self.emit(f"{tag}/{'done' if outcome['ok'] else 'fail'}", {"stage": name, **result})
        self.say(_result_line(name, result))
        return result

    def roll_out(self, tree, step, run):
        """An edge stage over the fleet (``hecatelib.engine.fleet``): one canary edge, then batches of
        ``hecate:deployment:edge_batch`` (the edges: those that answered the run's dry run, else a
        ``test.ping``); each edge's own state verifies its routes and restores its own
        snapshot when they fail; a failed batch's other edges are undone and the rollout stops there, so a
        bad change never reaches the edges after it. Progress: ``<kind>/<id>/<step>/<minion>``."""
        started = time.monotonic()
        # the edges that answered the run's dry run a moment ago (one job round less than a test.ping)
        answered = (run.answered or {}).get(step.stage.name)
        edges = answered if answered is not None else sorted(self.call(step.stage.role, "test.ping"))
        pillar = self.stage_pillar(step, run.recorded)
        changes, problems = {}, []

        def apply(batch):
            answers = self.call.state_apply("minions:" + ",".join(batch), step.stage.sls, **({"pillar": pillar} if pillar else {}))
            out = {}
            for minion in batch:
                ok, changed, found = results.read_state_returns({minion: answers[minion]} if minion in answers else {})
                changes.update(changed)
                problems.extend(found if minion in answers else [f"{minion}: no answer from the minion"])
                out[minion] = {"result": ok}
            return out

        def roll_back(batch):
            restored = []
            for minion in batch if step.backend.undo else ():
                outcome = step.backend.undo(self.context(run), run.before.get(step.backend.name), only=[minion])
                problems.extend(outcome.problems)
                restored += [] if outcome.problems else [minion]
            return restored

        def progress(minion, status):
            self.emit(f"{run.kind}/{run.id}/{step.name}/{minion}", {"edge": minion, "status": status})
            self.say(f"{step.name} on {minion}: {status}")

        outcome = roll_out(edges, tree["deployment"]["edge_batch"], apply, roll_back, progress)
        if not edges:
            problems.append(f"no edge minion answered (hecate:deployment:targets:{step.stage.role})")
        elif not outcome["ok"]:
            stopped = [m for m, s in outcome["edges"].items() if s == "not reached"]
            problems.append(
                f"stopped at batch {outcome['failed_batch']}: " + (f"{', '.join(stopped)} not reached" if stopped else "every edge reached")
            )
        run.edges = outcome["edges"]
        return {
            "ok": bool(edges) and outcome["ok"],
            "changes": changes,
            "problems": problems,
            "seconds": round(time.monotonic() - started, 2),
        }

    def context(self, run, previous=None, test=False):
        return Context(self.tree, self.call, run, previous, apply=lambda stage, pillar: self.apply(stage, pillar=pillar), test=test)

    def undo(self, run):
        """Undo every backend the run applied, last first, each with its own hook; every undo is checked:
        a backend that answered an error is a problem, not "done"."""
        self.check_lock(run)
        touched = []
        for name in reversed(run.applied):
            backend = stages.backend_of(self.backends, name.removesuffix("_contract"))
            if backend not in touched:
                touched.append(backend)
        previous = self.seams.records.read(run.previous, full=True) if run.previous else None
        outcome = Outcome()
        self.say("undoing: " + ", ".join(b.name for b in touched))
        reached = [m for m, status in run.edges.items() if status != "not reached"] if run.edges else None
        for backend in touched:
            if backend.undo is None:
                outcome.problems.append(f"{backend.name}: {backend.undo_note}")
                continue
            # an edge stage is undone on the edges its rollout reached (the others never changed)
            only = reached if any(s.role == "edge" for s in backend.stages) else None
            outcome.extend(backend.undo(self.context(run, previous), run.before.get(backend.name), only=only))
        run.rollback = {"done": outcome.done, "problems": outcome.problems}
        self.seams.runs.save(run)
        for line in outcome.done + outcome.problems:
            self.say(f"  {line}")
        return run.rollback

    def restore(self, run):
        """After a rollback's steps: the backends whose recorded state is not a tree (Nomad job versions)
        return to the target record's, each checked; one result per backend, ``<backend>_restore``."""
        for name, recorded in (run.restore_to or {}).items():
            backend = next((b for b in self.backends if b.name == name and b.restore), None)
            if backend is None or not recorded:
                continue
            outcome = backend.restore(self.context(run), recorded)
            run.result(f"{name}_restore", not outcome.problems, changed=len(outcome.done), changes=outcome.done, problems=outcome.problems)
            if outcome.problems and not run.failure:
                run.failure = f"{name} restore failed: " + "; ".join(outcome.problems)
        self.seams.runs.save(run)

    def finish(self, run, status=None):
        """Write the run's record (success, failed with stage and reason, interrupted) and release the
        lock. A record that cannot be written is said, with what the run applied: never "not started"."""
        missing = [name for name in run.steps if name not in run.results]
        if not run.failure and missing and status != "interrupted":  # a step that never ran is not a success
            run.failure = f"step(s) {', '.join(missing)} did not run"
        status = status or ("failed" if run.failure else "success")
        effective = self.effective(run)
        error = run.failure if status != "interrupted" else "interrupted (Ctrl-C) after: " + (", ".join(run.results) or "nothing")
        changes = {
            "status": status,
            "error": error,
            "seconds": round(time.time() - run.started, 2),
            "stages": run.results,
            "order": list(run.results),  # records are stored with sorted keys: the execution order
            "tree": self.recorded(effective),
        }
        if run.rollback is not None:
            changes["rollback"] = run.rollback
        problem = None
        try:
            # what a rollback to this run returns to (only successes are returned to): carried over from the
            # last success when the run deployed its very tree and wrote nothing, else read now
            if status == "success":
                changes["state"] = self.recorded_state(effective, run)
            self.seams.records.update(run.id, changes)
        except (RecordError, CommandExecutionError) as exc:
            problem = f"recording the run failed: {exc}"
        finally:
            self.seams.locks.release(run)
            self.seams.runs.drop(run.id)
        ok = status == "success" and problem is None
        self.emit(f"{run.kind}/{run.id}/{'done' if ok else 'fail'}", {"id": run.id, "status": status})
        summary = {
            "id": run.id,
            "kind": run.kind,
            "status": status,
            "error": "; ".join(filter(None, [error, problem])) or None,
            "seconds": changes["seconds"],
            "stages": {name: {k: v for k, v in s.items() if k != "changes" or v} for name, s in run.results.items()},
            "order": results.timeline(run.results),
            "retcode": 0 if ok else 1,
        }
        if run.rollback is not None:
            summary["rollback"] = run.rollback
        if problem:
            summary["applied"] = list(run.applied)
        self.say(f"{run.kind} {run.id}: {status}" + (f" ({summary['error']})" if summary["error"] else ""))
        return summary

    def drive(self, kind, only=None, wait=None, recorded=None, restore_to=None, extra=None, stop=None, dry=None):
        """One whole run in this process: the same steps ``orchestrate.sls`` calls one by one. ``stop()``
        says a Ctrl-C came: the step in flight finishes, then the run is recorded as interrupted. ``dry``:
        see :meth:`preview`."""
        stop = stop or (lambda: False)
        try:
            run = self.begin(kind, only=only, wait=wait, recorded=recorded, restore_to=restore_to, extra=extra)
        except (KeyboardInterrupt, SystemExit):  # a second Ctrl-C while waiting for the lock: begin released it
            return {"status": "interrupted", "error": "interrupted (Ctrl-C) before the run began: nothing was changed", "retcode": 1}
        try:
            if not stop():
                self.preview(run, dry)
            for name in run.steps:
                if stop():
                    break
                self.step(run, name)
                if run.failure:
                    break
            if not run.failure and not stop():
                self.restore(run)
            if run.failure and self.tree["deployment"]["auto_rollback"] and not stop():
                self.undo(run)
        except (KeyboardInterrupt, SystemExit):  # a second Ctrl-C: one line, the lock released, the run recorded
            return self.finish(run, status="interrupted")
        except LockLost as exc:
            run.failure = run.failure or f"the run lost the deploy lock: {exc}"
            return self.finish(run)
        except BaseException:
            run.failure = run.failure or "the run stopped on an internal error (see the master log)"
            self.finish(run)
            raise
        return self.finish(run, status="interrupted" if stop() else None)


def waiting_line(holder):
    """What a run waiting for the deploy lock tells the operator, from the lock's ``on_wait(holder)``."""
    who = holder.get("holder") or "a session"
    if holder.get("deployment"):
        who = f"run {holder['deployment']} ({holder.get('kind', 'deploy')})"
    where = ", ".join(f"{k} {holder[k]}" for k in ("host", "pid") if holder.get(k))
    alive = {True: "alive", False: "its process is gone", None: "alive or not is unknown from here"}[holder.get("alive")]
    since = f", holding it since {holder['acquired_at']}" if holder.get("acquired_at") else ""
    where = f" on {where}" if where else ""
    return f"waiting for the deploy lock ({holder.get('waited', 0):g} s): held by {who}{where}{since}; {alive}"


def _dry_run_line(dry, seconds):
    """A dry run's outcome in one line: what each stage would change, and the stages that failed."""
    changing = [f"{name} {results.count_changes(stage['changes'])}" for name, stage in dry.items() if stage["changes"]]
    line = f"dry run done ({seconds:g} s): " + ("would change " + ", ".join(changing) if changing else "nothing would change")
    failed = [f"{name}: {'; '.join(stage['problems'])}" for name, stage in dry.items() if not stage["ok"]]
    return line + ("; FAILED " + " | ".join(failed) if failed else "")


def _result_line(name, result):
    state = "ok" if result["ok"] else "FAILED"
    line = f"{name}: {state}, {result['changed']} changed ({result['seconds']} s)"
    return line + (": " + "; ".join(result["problems"]) if result["problems"] else "")


__all__ = ["CONTRACT", "EXPAND", "Context", "Engine", "Seams"]
