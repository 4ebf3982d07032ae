"""The orchestration's plan, pure: which stages run, in which order, on which minions, and how to read
their results. The runner (``_runners/hecate.py``) does the I/O; ``salt/hecate/orchestrate.sls`` lists the
same stages for ``salt-run state.orchestrate hecate.orchestrate``.

The order is the seed's orchestrate.sls, corrected (see docs/orchestration.md): terraform -> Nomad
stateful -> Nomad core (the reverse proxy) -> Nomad authentik -> authentik objects -> Caddy routes -> DNS
-> Nomad apps -> verify -> record.
"""

import copy
from dataclasses import dataclass

import hecate_schema
from hecate_spec import ListOf, Map, MapOf, Secret


@dataclass(frozen=True)
class Stage:
    name: str
    role: str  # "controller" or "edge": which target of hecate:deployment:targets applies it
    sls: str
    backend: str  # the pillar section that turns the stage on


STAGES = (
    Stage("terraform", "controller", "hecate.terraform", "terraform"),
    Stage("nomad_stateful", "controller", "hecate.nomad.stateful", "nomad"),
    Stage("nomad_core", "controller", "hecate.nomad.core", "nomad"),
    Stage("nomad_authentik", "controller", "hecate.nomad.authentik", "nomad"),
    Stage("authentik", "controller", "hecate.authentik", "authentik"),
    Stage("routes", "edge", "hecate.routes", "caddy"),
    Stage("dns", "controller", "hecate.dns", "dns"),
    Stage("nomad_apps", "controller", "hecate.nomad.apps", "nomad"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
# Stages that converge to a declared state: rolled back by re-applying the previous deployment's tree.
DECLARATIVE = {"authentik", "routes", "dns"}


def backend_enabled(tree, backend):
    if backend == "caddy":
        return True
    if backend == "authentik":
        routes = tree["reverse_proxy"]["caddy"]["routes"]
        return bool((tree.get("authentik") or {}).get("url")) and any(r.get("auth") for r in routes)
    if backend == "dns":
        dns = tree.get("dns") or {}
        return bool(dns.get("zone") or dns.get("zones"))
    return bool(tree.get(backend))


def enabled_stages(tree, only=None):
    """The stages this pillar turns on, in order; ``only`` (names) narrows them."""
    chosen = [s for s in STAGES if backend_enabled(tree, s.backend)]
    if only:
        unknown = set(only) - set(STAGE_NAMES)
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(sorted(unknown))}; stages: {', '.join(STAGE_NAMES)}")
        chosen = [s for s in chosen if s.name in only]
    return chosen


def target(tree, role):
    targets = tree["deployment"]["targets"]
    return targets[role], targets["tgt_type"]


def read_state_returns(returns):
    """``LocalClient.cmd(..., "state.apply", full_return=True)`` -> ``(ok, changes, problems)``.

    ``changes``: minion -> state id -> changes (only states that changed or would change).
    ``problems``: readable lines for every failed state or render error."""
    if not returns:
        return False, {}, ["no minion answered (is the target right and the minion up?)"]
    ok, changes, problems = True, {}, []
    for minion, answer in sorted(returns.items()):
        ret = answer.get("ret") if isinstance(answer, dict) and "ret" in answer else answer
        if not isinstance(ret, dict):
            ok = False
            problems.append(f"{minion}: {ret if isinstance(ret, str) else '; '.join(map(str, ret or ['no return']))}")
            continue
        for state_id, state in sorted(ret.items(), key=lambda kv: kv[1].get("__run_num__", 0) if isinstance(kv[1], dict) else 0):
            if not isinstance(state, dict):
                continue
            if state.get("result") is False:
                ok = False
                problems.append(f"{minion}: {state.get('name', state_id)}: {state.get('comment', '')}")
            if state.get("changes") or state.get("result") is None:
                changes.setdefault(minion, {})[state.get("name", state_id)] = state.get("changes") or state.get("comment")
    return ok, changes, problems


def strip_secrets(tree, spec=None):
    """A copy of ``tree`` without the values the schema marks as secrets (tokens, passwords): what a
    deployment record may keep. Rolling back re-applies it over the live pillar, which supplies them."""
    spec = spec or hecate_schema.SCHEMA
    return _strip(copy.deepcopy(tree), spec)


def _strip(value, spec):
    if isinstance(spec, Secret):
        return _SECRET
    if isinstance(spec, Map) and isinstance(value, dict):
        out = {}
        for name, item in value.items():
            field = spec.fields.get(name)
            stripped = _strip(item, field.spec) if field else item
            if stripped is not _SECRET:
                out[name] = stripped
        return out
    if isinstance(spec, MapOf) and isinstance(value, dict):
        return {k: v for k, v in ((k, _strip(v, spec.value_spec)) for k, v in value.items()) if v is not _SECRET}
    if isinstance(spec, ListOf) and isinstance(value, list):
        return [_strip(v, spec.spec) for v in value]
    return value


_SECRET = object()


def count_changes(changes):
    return sum(len(states) for states in changes.values())


def overlay(live, recorded):
    """The ``hecate`` tree a minion sees when a stage runs with ``pillar={"hecate": recorded}``: Salt
    merges mappings key by key and replaces lists, so the live pillar still supplies the secrets."""
    if not isinstance(live, dict) or not isinstance(recorded, dict):
        return copy.deepcopy(recorded)
    out = copy.deepcopy(live)
    for key, value in recorded.items():
        out[key] = overlay(live.get(key), value) if isinstance(value, dict) else copy.deepcopy(value)
    return out
