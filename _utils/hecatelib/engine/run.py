"""One run of the engine as data: what it deploys, what it read before writing, what each step did, and how
it ended. A run driven by ``state.orchestrate`` is several runner calls, so a :class:`Run` is also kept in a
file on the master between them (:class:`RunFiles`, mode 0600). Plus the run's provenance: the operator,
the pillar's git commit, and the tree a record keeps (secrets left out)."""

import copy
import dataclasses
import datetime
import glob
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import time

from hecatelib import paths, schema
from hecatelib.spec import without_secrets


def new_run_id(moment=None):
    """A unique id that sorts by time, to the millisecond (two runs in one second keep their order):
    ``20250131T120000.123Z-1a2b3c``."""
    moment = moment or datetime.datetime.now(datetime.timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%S") + f".{moment.microsecond // 1000:03d}Z-" + secrets.token_hex(3)


def canonical(value):
    """The JSON a digest is taken of: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def digest(value):
    """The content address of a JSON value: two runs deployed the same tree when their digests are equal."""
    return hashlib.sha256(canonical(value).encode()).hexdigest()


@dataclasses.dataclass
class Run:
    id: str
    kind: str  # deploy, orchestrate, rollback, promote, heal
    only: list = None  # the stages asked for (None: every enabled one)
    recorded: dict = None  # a recorded tree deployed over the live pillar (rollback, promote)
    restore_to: dict = None  # backend -> recorded state a rollback returns to after its steps (Nomad versions)
    extra: dict = dataclasses.field(default_factory=dict)  # fields added to the record (rolled_back_to...)
    started: float = dataclasses.field(default_factory=time.time)
    session: str = None  # the deploy lock's Consul session
    lock_key: str = None
    steps: list = dataclasses.field(default_factory=list)
    skip: list = dataclasses.field(default_factory=list)  # steps whose dry run found nothing to change
    answered: dict = None  # stage -> the minions that answered its dry run (where an edge stage rolls out)
    previous: str = None  # the last successful run's id when this one began
    carried: dict = None  # the previous success's recorded backend state, when it deployed this very tree
    before: dict = dataclasses.field(default_factory=dict)  # backend -> what undo needs, read before the first write
    results: dict = dataclasses.field(default_factory=dict)  # step -> {ok, seconds, changed, changes, problems, skipped}
    applied: list = dataclasses.field(default_factory=list)  # steps that wrote (or may have)
    edges: dict = dataclasses.field(default_factory=dict)  # minion -> rollout status of the edge stage
    switched: dict = None  # the switch steps' changes, {minion: {state: changes}}: what verify may narrow to
    widened: bool = False  # a step besides the switch changed something: verify checks everything
    failure: str = None  # the first failure, one line
    rollback: dict = None  # what undo did: {done, problems}
    dead_holder: dict = None  # the lock's previous holder, dead when this run took the lock

    def to_json(self):
        return json.dumps(dataclasses.asdict(self))  # dumps: C encoder (dump() encodes in Python)

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def result(self, name, ok, seconds=0, changed=0, changes=(), problems=(), **extra):
        self.results[name] = {
            "ok": ok,
            "seconds": seconds,
            "changed": changed,
            "changes": list(changes),
            "problems": list(problems),
            **extra,
        }
        return self.results[name]

    @property
    def applied_anything(self):
        return bool(self.applied)


class RunFiles:
    """Runs between the runner calls of one ``state.orchestrate``: ``<dir>/<run id>.json``, mode 0600."""

    def __init__(self, directory):
        self.directory = directory

    def path(self, run_id):
        if not run_id or not all(c.isalnum() or c in "-_." for c in str(run_id)):
            raise ValueError(f"run id {run_id!r} is not valid (letters, digits, '-', '_', '.')")
        return os.path.join(self.directory, f"{run_id}.json")

    def save(self, run):
        path = self.path(run.id)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        paths.write_private(path, run.to_json())

    def load(self, run_id):
        """The run, or None when it never began here (or already finished)."""
        try:
            with open(self.path(run_id), encoding="utf-8") as handle:
                return Run.from_json(handle.read())
        except FileNotFoundError:
            return None

    def drop(self, run_id):
        try:
            os.remove(self.path(run_id))
        except FileNotFoundError:
            pass


def run_files(opts):
    return RunFiles(os.path.join(opts["cachedir"], "hecate", "runs"))


def strip_secrets(tree, spec=None):
    """A copy of ``tree`` without the values the schema marks as secrets (tokens, passwords): what a
    deployment record may keep. Rolling back re-applies it over the live pillar, which supplies them."""
    return without_secrets(copy.deepcopy(tree), spec or schema.SCHEMA)


def recorded_tree(tree):
    """A run's tree as its record stores it (secrets left out, as JSON has it): a copy, through JSON."""
    return json.loads(json.dumps(without_secrets(tree, schema.SCHEMA)))


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
    checkouts = sorted(glob.glob(os.path.join(root, "*", "*")))
    return [(names[path.split(os.sep)[-2]], path) for path in checkouts if path.split(os.sep)[-2] in names]


def _git(root, *args):
    if not os.path.isdir(root):
        return None
    try:
        done = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):  # no git binary, or a hung filesystem
        return None
    return done.stdout.strip() if done.returncode == 0 else None
