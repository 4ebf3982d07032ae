"""The backends a run drives, in run order, and what the engine needs from each (pure, no I/O).

A run is expand, switch, contract (docs/architecture.md):

1. expand: every backend that creates what the new pillar needs (terraform, the Nomad jobs, authentik
   objects, DNS records) converges with deletions held back (``prune=False`` for authentik and DNS);
2. switch: Caddy's routes move traffic in one reload; then every route is verified through every edge;
3. contract: the backends that prune re-converge with their pillar's ``prune`` setting, removing what the
   pillar no longer has. Only a run that reached this point can delete anything.

Each backend names how the engine undoes it (under the deploy lock):

- ``snapshot``: Caddy's config from before the run is loaded back on every edge (``caddy.restore``);
- ``reapply``: the previous successful deployment's recorded tree is converged again (with pruning);
- ``revert``: Nomad jobs whose version moved go back to the version from before (``nomad_job.revert``);
- ``keep``: never undone automatically (terraform: destroying machines is not a rollback).

The runner (``_runners/hecate.py``) loops over :func:`steps`; ``salt/hecate/orchestrate.sls`` renders
one ``salt.runner`` step per entry of the same list.
"""

from dataclasses import dataclass

EXPAND, SWITCH, VERIFY, CONTRACT = "expand", "switch", "verify", "contract"


@dataclass(frozen=True)
class Backend:
    name: str  # the stage name operators type (only='[routes]')
    section: str  # the pillar section that turns it on
    role: str  # "controller" or "edge": which of hecate:deployment:targets applies it
    sls: str
    phase: str  # EXPAND or SWITCH
    undo: str  # "snapshot", "reapply", "revert" or "keep"
    prunes: bool = False  # expand holds deletions back; a contract step applies them after the switch
    prune_default: bool = False  # the section's own ``prune`` when the pillar does not say
    parts: tuple = ()  # the SLS files ``sls`` includes (their states report these as ``__sls__``)


def _nomad_sls(*jobs):
    return tuple(f"hecate.nomad.{job}" for job in jobs)


BACKENDS = (
    Backend("terraform", "terraform", "controller", "hecate.terraform", EXPAND, "keep"),
    Backend("nomad_stateful", "nomad", "controller", "hecate.nomad.stateful", EXPAND, "revert", parts=_nomad_sls("postgresql", "redis")),
    Backend("nomad_core", "nomad", "controller", "hecate.nomad.core", EXPAND, "revert", parts=_nomad_sls("reverse-proxy")),
    Backend("nomad_authentik", "nomad", "controller", "hecate.nomad.authentik", EXPAND, "revert"),
    # apps includes the authentik job too: in a dry run of every stage at once its state counts once, for nomad_authentik
    Backend("nomad_apps", "nomad", "controller", "hecate.nomad.apps", EXPAND, "revert", parts=_nomad_sls("authentik", "helen-bridge")),
    # providers exist before Caddy sends users to the outpost; records exist before Caddy asks ACME for them
    Backend("authentik", "authentik", "controller", "hecate.authentik", EXPAND, "reapply", prunes=True, prune_default=True),
    Backend("dns", "dns", "controller", "hecate.dns", EXPAND, "reapply", prunes=True),
    Backend("routes", "caddy", "edge", "hecate.routes", SWITCH, "snapshot"),
)
BY_NAME = {b.name: b for b in BACKENDS}


@dataclass(frozen=True)
class Step:
    """One step of a run: a backend in a phase, or the verification (``backend`` None)."""

    name: str  # unique within a run: the backend's name, "verify", or "<backend>_contract"
    phase: str
    backend: Backend = None

    @property
    def prune(self):
        """The ``hecate_prune`` pillar flag the step's SLS gets: False holds deletions back; None leaves
        the backend's own pillar setting (contract steps, and backends that never prune)."""
        return False if self.phase == EXPAND and self.backend.prunes else None


def enabled(tree, backend):
    """Does this pillar turn ``backend`` on?"""
    if backend.section == "caddy":
        return True
    if backend.section == "authentik":
        routes = tree["reverse_proxy"]["caddy"]["routes"]
        return bool((tree.get("authentik") or {}).get("url")) and any(r.get("auth") for r in routes)
    if backend.section == "dns":
        dns = tree.get("dns") or {}
        return bool(dns.get("zone") or dns.get("zones"))
    return bool(tree.get(backend.section))


def choose(tree, only=None):
    """The enabled backends in run order; ``only`` (names) narrows them. An unknown name is refused
    with a one-line reason naming the valid ones."""
    if isinstance(only, str):
        only = [n.strip() for n in only.strip("[]").split(",") if n.strip()]
    if only:
        unknown = sorted(set(only) - set(BY_NAME))
        if unknown:
            raise ValueError(f"unknown stage {', '.join(map(repr, unknown))}; the stages are: {', '.join(BY_NAME)}")
    return [b for b in BACKENDS if enabled(tree, b) and (not only or b.name in only)]


def steps(tree, only=None, verify=None):
    """The run's steps in order: expand, switch, verify (``hecate:deployment:verify``), contract."""
    chosen = choose(tree, only)
    verify = tree["deployment"]["verify"] if verify is None else verify
    out = [Step(b.name, b.phase, b) for b in chosen if b.phase == EXPAND]
    out += [Step(b.name, b.phase, b) for b in chosen if b.phase == SWITCH]
    if verify and any(b.phase == SWITCH for b in chosen):
        out.append(Step("verify", VERIFY))
    out += [Step(f"{b.name}_contract", CONTRACT, b) for b in chosen if b.prunes and prunes(tree, b)]
    return out


def skippable(steps, unchanged):
    """The steps a run can leave out, given the stages whose dry run found nothing to change: all of
    them when no stage would change anything (then nothing needs verifying either); otherwise the
    leading expand steps that change nothing (so nothing they feed changes) and their contract steps.
    Once a stage changes, every step after it runs: a later stage may read what it wrote."""
    if all(step.backend is None or step.backend.name in unchanged for step in steps):
        return [step.name for step in steps]
    leading = set()
    for step in steps:
        if step.phase != EXPAND or step.backend.name not in unchanged:
            break
        leading.add(step.backend.name)
    return [step.name for step in steps if step.backend and step.backend.name in leading]


def prunes(tree, backend):
    """Does the pillar let ``backend`` delete (``hecate:<section>:prune``)? Without it there is no
    contract step: expand already wrote everything."""
    return bool((tree.get(backend.section) or {}).get("prune", backend.prune_default))


def step_named(tree, name):
    for step in steps(tree):
        if step.name == name:
            return step
    raise ValueError(f"unknown or disabled step {name!r}; this pillar's steps are: {', '.join(s.name for s in steps(tree))}")


def owner(backends, sls):
    """The first of ``backends`` (in run order) whose SLS is or includes ``sls``, or None."""
    return next((b for b in backends if sls == b.sls or sls in b.parts), None)


def target(tree, role):
    targets = tree["deployment"]["targets"]
    return targets[role], targets["tgt_type"]
