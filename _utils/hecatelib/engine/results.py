"""A stage's Salt state returns, read as the operator reads them (pure): did it work, what changed, how many
things, one line per changed thing, one line per step in execution order."""


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


def warnings(returns):
    """The ``warnings`` lines of every state in ``returns`` (as :func:`read_state_returns` takes them), once
    each: what a state says the operator should know before it runs (a DNS rate limit it will wait for)."""
    lines = []
    for _, answer in sorted((returns or {}).items()):
        ret = answer.get("ret") if isinstance(answer, dict) and "ret" in answer else answer
        for state in ret.values() if isinstance(ret, dict) else ():
            for line in (state.get("warnings") or []) if isinstance(state, dict) else ():
                if isinstance(line, str) and line not in lines:
                    lines.append(line)
    return lines


def count_changes(changes):
    """How many things changed (routes, authentik objects, record sets), not how many states did:
    ``{minion: {state: changes}}`` from :func:`read_state_returns`."""
    return sum(_items(state) for states in changes.values() for state in states.values())


def _items(value, depth=0):
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        if not value:
            return 0
        if "old" in value or "new" in value or depth >= 2:  # one object's diff
            return 1
        return sum(_items(v, depth + 1) for v in value.values())
    return 1 if value else 0


def summarize(changes):
    """``{state: changes}`` per minion -> one readable line per changed thing, for the operator:
    ``routes added: grafana.example.org``, ``providers created: hecate-grafana``, ``observe.example.org A``."""
    lines = []
    for minion, states in sorted(changes.items()):
        for diff in states.values():
            for line in _lines(diff):
                lines.append(f"{minion}: {line}" if len(changes) > 1 else line)
    return lines


def timeline(results):
    """Step results (in execution order) -> one line per step, then its changes indented: Salt's outputters
    sort mapping keys, so the order an operator reads is this list.
    ``["terraform: ok, 0 changed (2.1 s)", "routes: FAILED (1.0 s): ...", "  added: app.example.org"]``"""
    lines = []
    for name, result in results.items():
        state = "ok" if result.get("ok") else "FAILED"
        seconds = f" ({result['seconds']} s)" if result.get("seconds") else ""
        seconds = " (skipped: its dry run found nothing to change)" if result.get("skipped") else seconds
        line = f"{name}: {state}, {result.get('changed', result.get('would_change', 0))} changed{seconds}"
        if result.get("problems"):
            line += ": " + "; ".join(result["problems"])
        lines.append(line)
        lines.extend(f"  {change}" for change in result.get("changes") or [])
    return lines


def removed_hosts(changes):
    """The hosts of the routes a routes stage removes (``removed`` in ``caddy.routes_managed``'s changes)."""
    hosts = set()
    for states in changes.values():
        for diff in states.values():
            removed = diff.get("removed") if isinstance(diff, dict) else None
            for route in (removed or {}).values():
                hosts.update((route.get("hosts") or []) if isinstance(route, dict) else [])
    return sorted(hosts)


def _lines(diff, prefix=""):
    if not isinstance(diff, dict):
        return [f"{prefix}{diff}"] if diff else []
    out = []
    for key, value in diff.items():
        if isinstance(value, dict) and value and not _is_object(value):
            if all(_is_object(v) for v in value.values()):
                out.append(f"{prefix}{key}: {', '.join(_label(k, v) for k, v in value.items())}")
            else:
                out.extend(_lines(value, f"{prefix}{key} "))
        elif isinstance(value, list):
            out.append(f"{prefix}{key}: {', '.join(map(str, value))}")
        elif isinstance(value, dict):
            out.append(f"{prefix}{_label(key, value)}")
        else:
            out.append(f"{prefix}{key}: {value}")
    return out


def _is_object(value):
    """One changed thing: a scalar, an old/new diff, or a route summary (it has hosts)."""
    return not isinstance(value, (dict, list)) or (isinstance(value, dict) and bool({"old", "new", "hosts"} & set(value)))


def _label(key, value):
    """A route by its hosts (what the operator knows it by), a renamed one with its old and new id
    (``wiki.example.org (hecate_route_wiki -> hecate_route_kb)``), anything else by its name."""
    if isinstance(value, dict):
        for side in (value, value.get("new"), value.get("old")):
            if isinstance(side, dict) and side.get("hosts"):
                hosts = ", ".join(map(str, side["hosts"]))
                if side is value and isinstance(value.get("old"), str) and isinstance(value.get("new"), str):
                    return f"{hosts} ({value['old']} -> {value['new']})"
                return hosts
    return str(key)
