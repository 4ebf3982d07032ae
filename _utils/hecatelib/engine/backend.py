"""What a backend is to the engine: one object per backend package, carrying every hook the engine, the
drift report, health and backup need. The engine, health and backup read these hooks and name no backend;
``hecatelib.backends`` lists the objects in run order.

A backend is a package under ``hecatelib`` (``caddy``, ``authentik``, ``dns``, ``nomad``, ``terraform``)
whose ``backend.py`` builds one :class:`Backend`. Every hook is optional except the stages:

- ``stages``: the SLS files the engine applies (``state.apply <sls>`` on the role's targets), each a stage
  an operator can name (``only='[routes]'``), in run order, with its phase (expand or switch);
- ``schema`` and ``check(tree, report)``: its pillar section's spec and the checks that span keys
  (``hecatelib.schema`` assembles the contract from them);
- ``enabled(tree)``: does this pillar turn the backend on (default: its pillar section is set);
- ``prunes``: expand holds deletions back (``hecate_prune: False``); a contract step applies them once the
  switch is verified, when the section's ``prune`` (default ``prune_default``) allows;
- undo of a failed run: ``before(tree, run_id)`` names the reads to make before the run's first write (one
  round of jobs for every backend), ``keep(tree, answers)`` turns their answers into data kept in the run,
  and ``undo(ctx, kept, only=None)`` puts the backend back (``only``: on these minions); a backend without
  ``undo`` is never undone automatically and ``undo_note`` says why;
- return to a recorded success (``hecate.rollback``): ``rolls_back`` says whether its stages converge from
  the recorded tree; ``record(tree)`` names the reads whose answers (``recorded(tree, answers)``) a record
  keeps so a rollback can return to it, and ``restore(ctx, recorded)`` returns there;
- ``verify(tree, call, switched=None)``: the failures of the verify step that follows the switch (every route
  through every edge); ``switched``: the switch steps' changes (``{minion: {state: changes}}``) when nothing
  else in the run changed, so the backend may check only what they touched (None: check everything);
- ``drift``: its drift is read on the master (``hecate.drift``, a dry run of its stages);
- ``notes(tree, planned)``: lines ``hecate.plan`` adds to the backend's entry;
- ``health``: named sections ``(name, function(tree, call) -> rows)`` of ``hecate.health``;
- ``backup(tree, call) -> (section, files)`` and ``restore_backup(loaded, call, test) -> section``:
  ``hecate.backup`` / ``hecate.restore``.

``call`` is the engine's one way to reach minions: ``call(target, fun, *args, **kwargs) -> {minion: {"ok",
"ret"}}`` with ``target`` ``edge``, ``controller``, ``minion:<id>`` or ``minions:<id>,<id>``.
"""

from dataclasses import dataclass, field

EXPAND, SWITCH, VERIFY, CONTRACT = "expand", "switch", "verify", "contract"
EDGE, CONTROLLER = "edge", "controller"


@dataclass(frozen=True)
class Stage:
    """One SLS the engine applies, on the targets of ``role``."""

    name: str  # what an operator types (only='[routes]'); unique over all backends
    role: str  # EDGE or CONTROLLER: which of hecate:deployment:targets applies it
    sls: str
    phase: str  # EXPAND or SWITCH
    parts: tuple = ()  # the SLS files ``sls`` includes (their states report these as ``__sls__``)


@dataclass(frozen=True)
class Read:
    """A read the engine publishes for a backend: ``call(target, fun, *args, **kwargs)``."""

    target: str
    fun: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Backend:
    name: str
    section: str  # the pillar section that configures it (``hecate:<section>``)
    stages: tuple
    schema: object = None  # the spec of ``hecate:<section>`` (``hecatelib.spec``); None: part of the core schema
    check: object = None  # (tree, report): the checks that span keys, on the normalised tree
    enabled: object = None  # tree -> bool; None: the section is set
    prunes: bool = False
    prune_default: bool = False
    before: object = None  # (tree, run_id) -> [Read]
    keep: object = None  # (tree, [answers of each Read]) -> data kept in the run
    undo: object = None  # (Context, kept, only=None) -> Outcome; ``only``: these minions (an edge rollout's batch)
    undo_note: str = "never undone automatically"
    rolls_back: bool = True  # hecate.rollback converges its stages from the recorded tree
    record: object = None  # tree -> [Read], read when a run succeeded
    recorded: object = None  # (tree, [answers]) -> data the record keeps
    restore: object = None  # (Context, recorded data) -> Outcome
    verify: object = None  # (tree, call, switched=None) -> [failure line]: the verify step after the switch
    drift: bool = False
    notes: object = None  # (tree, planned) -> [line]
    health: tuple = ()  # ((section, function(tree, call) -> rows), ...)
    backup: object = None  # (tree, call) -> (section, files)
    restore_backup: object = None  # (loaded backup, call, test) -> section

    def is_enabled(self, tree):
        return self.enabled(tree) if self.enabled else bool(tree.get(self.section))

    def may_prune(self, tree):
        """Does the pillar let it delete (``hecate:<section>:prune``)? Without it there is no contract step."""
        return self.prunes and bool((tree.get(self.section) or {}).get("prune", self.prune_default))


@dataclass
class Outcome:
    """What an undo or a restore did: lines for the operator, and the problems (a problem is not "done")."""

    done: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def add(self, ok, line, why=""):
        (self.done if ok else self.problems).append(line if ok else f"{line} FAILED: {why}")

    def extend(self, other):
        self.done += other.done
        self.problems += other.problems
        return self


def reapply_previous(*stages):
    """An undo that converges the previous successful deployment's recorded tree again, with pruning: what
    the failed run created is removed, what it changed is put back (authentik objects, DNS records)."""

    def undo(ctx, kept, only=None):
        outcome = Outcome()
        for stage in stages:
            if not ctx.previous:
                outcome.problems.append(f"{stage.name}: no previous successful deployment to return to; left as applied")
                continue
            result = ctx.apply(stage, {"hecate": ctx.previous["tree"]})
            outcome.add(result["ok"], f"{stage.name}: re-applied deployment {ctx.previous['id']}", "; ".join(result["problems"]))
        return outcome

    return undo


def first_ok(answers):
    """The first minion (by id) whose call worked, and its answer: ``(minion, ret)``, or ``(None, None)``."""
    for minion, answer in sorted((answers or {}).items()):
        if answer.get("ok"):
            return minion, answer.get("ret")
    return None, None


def answered(answers):
    """``{minion: {"ok", "ret"}}`` -> ``{minion: ret}`` of the minions whose call worked."""
    return {minion: answer["ret"] for minion, answer in (answers or {}).items() if answer.get("ok")}


def failures(answers, what):
    """One line naming every minion whose call failed (or that none answered)."""
    if not answers:
        return f"no minion answered {what}"
    return "; ".join(f"{m}: {str(a.get('ret'))[:300]}" for m, a in sorted(answers.items()) if not a.get("ok"))
