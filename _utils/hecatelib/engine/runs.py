"""The orchestration's pure parts and the run's own file: how to read stage results, count their
changes, keep secrets out of records, overlay a recorded tree on the live pillar, name the pillar's git
commit and the operator. Which backends run, in which order and phase: ``hecatelib.engine.stages``. The runner
(``_runners/hecate.py``) does the I/O.
"""

import copy
import glob
import json
import os
import re
import socket
import subprocess

from hecatelib import schema
from hecatelib.spec import without_secrets


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
    return without_secrets(copy.deepcopy(tree), spec or schema.SCHEMA)


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
    """A route by its hosts (what the operator knows it by), anything else by its name."""
    if isinstance(value, dict):
        for side in (value, value.get("new"), value.get("old")):
            if isinstance(side, dict) and side.get("hosts"):
                return ", ".join(map(str, side["hosts"]))
    return str(key)


def overlay(live, recorded):
    """The ``hecate`` tree a minion sees when a stage runs with ``pillar={"hecate": recorded}``: Salt
    merges mappings key by key and replaces lists, so the live pillar still supplies the secrets."""
    if not isinstance(live, dict) or not isinstance(recorded, dict):
        return copy.deepcopy(recorded)
    out = copy.deepcopy(live)
    for key, value in recorded.items():
        out[key] = overlay(live.get(key), value) if isinstance(value, dict) else copy.deepcopy(value)
    return out


def operator(opts=None):
    """Who runs this: the user behind sudo, else the login user, else the master's user; with the host."""
    user = os.environ.get("SUDO_USER") or os.environ.get("USER") or (opts or {}).get("user") or "unknown"
    return f"{user}@{socket.gethostname()}"


def pillar_commit(opts):
    """The git commit of the pillar: of the pillar root or git_pillar remote that holds the ``hecate`` key
    (an ``.sls`` with a line ``hecate:``), else of the first that is a git checkout; pillar roots come first.
    None when none is git. ``{"commit", "dirty", "path", "source"}`` (``source``: the pillar root, or the
    git_pillar remote as configured); ``dirty`` when the checkout has uncommitted changes. With several
    checkouts, ``sources`` names each with its commit."""
    roots = [(root, root) for roots in (opts.get("pillar_roots") or {}).values() for root in roots]
    found = []
    for source, path in roots + _git_pillar_checkouts(opts):
        commit = _git(path, "rev-parse", "HEAD")
        if commit:
            found.append({"commit": commit, "dirty": bool(_git(path, "status", "--porcelain")), "path": path, "source": source})
    if not found:
        return None
    # several git_pillar remotes: their working copies sort by a hash of the remote, not by their order
    chosen = next((f for f in found if _git(f["path"], "grep", "-l", "-E", "^hecate:", "--", "*.sls")), found[0])
    if len(found) > 1:
        chosen = {**chosen, "sources": [{k: f[k] for k in ("source", "commit", "dirty")} for f in found]}
    return chosen


def _git_pillar_checkouts(opts):
    """git_pillar's working copies, ``[(remote, path)]``: ``<cachedir>/git_pillar/<hash>/<dir>``, each hash named
    in ``remote_map.txt`` (``<hash> = <remote>``; ``write_remote_map`` in salt/utils/gitfs.py). A password in
    a remote's URL is left out of the name."""
    root = os.path.join(opts.get("cachedir", ""), "git_pillar")
    names = {}
    try:
        with open(os.path.join(root, "remote_map.txt"), encoding="utf-8") as handle:
            for line in handle:
                digest, sep, remote = line.rstrip("\n").partition(" = ")
                if sep and not line.startswith("#"):
                    names[digest] = re.sub(r"://[^/@\s]*@", "://", remote)
    except OSError:
        pass
    paths = sorted(glob.glob(os.path.join(root, "*", "*")))
    return [(names[path.split(os.sep)[-2]], path) for path in paths if path.split(os.sep)[-2] in names]


def _git(root, *args):
    if not os.path.isdir(root):
        return None
    try:
        done = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):  # no git binary, or a hung filesystem
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# -- the run's own file ----------------------------------------------------------------------------
# A run driven by state.orchestrate is several runner calls: what one step learns (the lock's session,
# the snapshots, which steps applied) is kept for the next in a file on the master, mode 0600.
def run_path(opts, run_id):
    if not run_id or not all(c.isalnum() or c in "-_." for c in str(run_id)):
        raise ValueError(f"run id {run_id!r} is not valid (letters, digits, '-', '_', '.')")
    return os.path.join(opts["cachedir"], "hecate", "runs", f"{run_id}.json")


def save_run(opts, run):
    path = run_path(opts, run["id"])
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(run))  # dumps: C encoder; dump() encodes in Python (seconds at 1000 routes)
    os.replace(path + ".tmp", path)


def load_run(opts, run_id):
    """The run's file, or None when that run never began here (or already finished)."""
    try:
        with open(run_path(opts, run_id), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def drop_run(opts, run_id):
    try:
        os.remove(run_path(opts, run_id))
    except FileNotFoundError:
        pass
