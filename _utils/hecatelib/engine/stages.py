"""A run's steps, from the backends a pillar turns on (pure, no I/O).

A run is expand, switch, contract (docs/architecture.md):

1. expand: every backend that creates what the new pillar needs (terraform, the Nomad jobs, authentik
   objects, DNS records) converges with deletions held back (``hecate_prune: False``);
2. switch: Caddy's routes move traffic in one reload; then every route is verified through every edge;
3. contract: the backends that prune re-converge with their pillar's ``prune`` setting, removing what the
   pillar no longer has. Only a run that reached this point can delete anything.

The engine (``hecatelib.engine.engine``) loops over :func:`steps`; ``salt/hecate/orchestrate.sls`` renders
one ``salt.runner`` step per entry of the same list (``salt-run hecate.stages``).
"""

from dataclasses import dataclass

from hecatelib.engine.backend import CONTRACT, EXPAND, SWITCH, VERIFY, Backend, Stage


@dataclass(frozen=True)
class Step:
    """One step of a run: a backend's stage in a phase, or the verification (``stage`` None)."""

    name: str  # unique within a run: the stage's name, "verify", or "<stage>_contract"
    phase: str
    backend: Backend = None
    stage: Stage = None

    @property
    def prune(self):
        """The ``hecate_prune`` pillar flag the step's SLS gets: False holds deletions back; None leaves
        the backend's own pillar setting (contract steps, and backends that never prune)."""
        return False if self.phase == EXPAND and self.backend.prunes else None


def stages_of(backends):
    """``[(backend, stage)]`` in run order."""
    return [(backend, stage) for backend in backends for stage in backend.stages]


def stage_names(backends):
    return [stage.name for _, stage in stages_of(backends)]


def choose(tree, backends, only=None):
    """The enabled ``[(backend, stage)]`` in run order; ``only`` (stage names, or a ``[a, b]`` string)
    narrows them. An unknown name is refused with a one-line reason naming the valid ones."""
    if isinstance(only, str):
        only = [n.strip() for n in only.strip("[]").split(",") if n.strip()]
    if only:
        unknown = sorted(set(only) - set(stage_names(backends)))
        if unknown:
            raise ValueError(f"unknown stage {', '.join(map(repr, unknown))}; the stages are: {', '.join(stage_names(backends))}")
    return [(b, s) for b, s in stages_of(backends) if b.is_enabled(tree) and (not only or s.name in only)]


def steps(tree, backends, only=None, verify=None):
    """The run's steps in order: expand, switch, verify (``hecate:deployment:verify``), contract."""
    chosen = choose(tree, backends, only)
    verify = tree["deployment"]["verify"] if verify is None else verify
    out = [Step(s.name, s.phase, b, s) for b, s in chosen if s.phase == EXPAND]
    out += [Step(s.name, s.phase, b, s) for b, s in chosen if s.phase == SWITCH]
    if verify and any(s.phase == SWITCH for _, s in chosen):
        out.append(Step("verify", VERIFY))
    out += [Step(f"{s.name}_contract", CONTRACT, b, s) for b, s in chosen if b.may_prune(tree)]
    return out


def skippable(steps, unchanged):
    """The steps a run can leave out, given the stages whose dry run found nothing to change: all of
    them when no stage would change anything (then nothing needs verifying either); otherwise the
    leading expand steps that change nothing (so nothing they feed changes) and their contract steps.
    Once a stage changes, every step after it runs: a later stage may read what it wrote."""
    if all(step.stage is None or step.stage.name in unchanged for step in steps):
        return [step.name for step in steps]
    leading = set()
    for step in steps:
        if step.phase != EXPAND or step.stage.name not in unchanged:
            break
        leading.add(step.stage.name)
    return [step.name for step in steps if step.stage and step.stage.name in leading]


def owner(chosen, sls):
    """The first ``(backend, stage)`` of ``chosen`` (in run order) whose SLS is or includes ``sls``, or None."""
    return next((pair for pair in chosen if sls == pair[1].sls or sls in pair[1].parts), None)


def backend_of(backends, name):
    """The backend with this name, or the one that has a stage of this name."""
    for backend in backends:
        if name == backend.name or name in {s.name for s in backend.stages}:
            return backend
    raise ValueError(f"unknown backend {name!r}; the backends are: {', '.join(b.name for b in backends)}")


def target(tree, role):
    targets = tree["deployment"]["targets"]
    return targets[role], targets["tgt_type"]


__all__ = ["CONTRACT", "EXPAND", "SWITCH", "VERIFY", "Step", "backend_of", "choose", "owner", "skippable", "stage_names", "steps"]
