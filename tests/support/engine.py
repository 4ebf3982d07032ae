"""The engine's seams without Salt or Consul, for unit tests of the engine itself: minions that apply a
backend's states in memory, Consul KV in a dict (behind the real ``Records``), a lock that is a flag."""

import dataclasses
import json

from hecatelib.consul.records import Records
from hecatelib.engine.engine import Seams
from hecatelib.engine.run import RunFiles
from hecatelib.errors import LockTimeout


class MemoryKV:
    """The part of py-consul's ``client.kv`` the records use: get (keys, recurse), put (cas), delete."""

    def __init__(self):
        self.data = {}  # key -> (value bytes, modify index)
        self.index = 0
        self.writes = []

    @property
    def kv(self):
        return self

    def get(self, key, keys=False, separator=None, recurse=False):
        if keys:
            found = sorted(k for k in self.data if k.startswith(key))
            if separator:
                found = sorted(
                    {key + k[len(key) :].split(separator, 1)[0] + (separator if separator in k[len(key) :] else "") for k in found}
                )
            return self.index, found or None
        if recurse:
            entries = [self._entry(k) for k in sorted(self.data) if k.startswith(key)]
            return self.index, entries or None
        return self.index, self._entry(key) if key in self.data else None

    def _entry(self, key):
        value, index = self.data[key]
        return {"Key": key, "Value": value, "ModifyIndex": index}

    def put(self, key, value, cas=None):
        self.writes.append(key)
        if cas is not None and (cas == 0) != (key not in self.data):
            return False
        if cas and self.data[key][1] != cas:
            return False
        self.index += 1
        self.data[key] = (value.encode() if isinstance(value, str) else value, self.index)
        return True

    def delete(self, key, recurse=False):
        for k in [k for k in self.data if k == key or (recurse and k.startswith(key))]:
            del self.data[k]
        return True


@dataclasses.dataclass
class FlagLock:
    session: str = "s-1"
    key: str = "hecate/locks/test"
    dead_holder: dict = None


class MemoryLocks:
    """The deploy lock seam: one holder at a time; ``held_by`` makes the next take time out."""

    def __init__(self):
        self.holder = None
        self.held_by = None
        self.checks = 0

    def take(self, run, wait=None, on_wait=None):
        if self.held_by:
            raise LockTimeout(f"the deploy lock is held by {self.held_by}", {"deployment": self.held_by})
        self.holder = run.id
        return FlagLock()

    def check(self, run):
        self.checks += 1

    def release(self, run):
        if self.holder == run.id:
            self.holder = None


class Minions:
    """``call`` for the engine over backends whose states are Python functions: ``states[sls](world, tree,
    test, pillar) -> {state id: {"name", "result", "changes", "comment", "__sls__"}}``; ``functions[fun](world,
    *args, **kwargs) -> ret``. Two minions: ``edge-1`` (edge) and ``ctl`` (controller)."""

    def __init__(self, world, states, functions, tree):
        self.world = world
        self.states = states
        self.functions = functions
        self.tree = tree
        self.roles = {"edge": ("edge-*", "glob"), "controller": ("ctl", "glob")}
        self.published = []

    def minions(self, target):
        if target.startswith("minions:"):
            return target[len("minions:") :].split(",")
        if target.startswith("minion:"):
            return [target[len("minion:") :]]
        return ["edge-1"] if target == "edge" else ["ctl"]

    def __call__(self, target, fun, *args, **kwargs):
        self.published.append(fun)
        if fun == "state.apply":
            return self.state_apply(target, *args, **kwargs)
        if fun == "test.ping":
            return {m: {"ok": True, "ret": True} for m in self.minions(target)}
        return {m: {"ok": True, "ret": self.functions[fun](self.world, *args, **kwargs)} for m in self.minions(target)}

    def state_apply(self, target, sls, test=False, pillar=None, concurrent=False):
        tree = self.tree
        if pillar and pillar.get("hecate"):
            tree = {**tree, **pillar["hecate"]}
        ret = {}
        for name in sls.split(","):
            ret.update(self.states[name](self.world, tree, test, pillar or {}))
        ok = all(state["result"] is not False for state in ret.values())
        return {m: {"ok": ok, "ret": json.loads(json.dumps(ret))} for m in self.minions(target)}

    def many(self, jobs):
        return [self(target, fun, *args, **kwargs) for target, fun, args, kwargs in jobs]

    def shared(self):
        return None

    def close(self):
        pass


def seams(minions, tmp_path, kv=None, locks=None, environment="test"):
    """Seams over ``minions`` with records in memory (``kv``: shared by several engines) and runs kept under
    ``tmp_path``."""
    return Seams(
        call=minions,
        records=Records(kv or MemoryKV(), environment),
        locks=locks or MemoryLocks(),
        runs=RunFiles(str(tmp_path / "runs")),
        emit=lambda tag, data: minions.world.setdefault("events", []).append(tag),
        say=lambda line: minions.world.setdefault("said", []).append(line),
        operator="tester@test",
        commit=lambda: None,
    )
