"""The verify step checks what a run could have broken: every route when any step besides the switch changed
something, only the routes the switch added or changed when it was all the run changed (a one-route change at
5000 routes probes one route per edge, not 5000). The engine on memory seams with two toy backends (one
expand, one switch), and the Caddy backend's reading of its routes stage's changes."""

import copy

import pytest

from devstack.pillars import seed_tree
from hecatelib import schema
from hecatelib.caddy import backend as caddy_backend
from hecatelib.caddy import config as caddy_config
from hecatelib.engine.backend import CONTROLLER, EDGE, EXPAND, SWITCH, Backend, Stage
from hecatelib.engine.engine import Engine
from hecatelib.spec import MapOf, Str
from tests.support import engine as fake


def toy_state(section, sls):
    def state(world, tree, test, pillar):
        wanted, have = tree.get(section) or {}, world[section]
        changes = {k: {"old": have.get(k), "new": v} for k, v in wanted.items() if have.get(k) != v}
        if not test:
            have.update(wanted)
        result = None if test and changes else True
        return {f"toy_|-{section}": {"name": section, "result": result, "changes": changes, "comment": "", "__sls__": sls}}

    return state


def backends(verified):
    def verify(tree, call, switched=None):
        verified.append(copy.deepcopy(switched))
        return []

    lamps = Backend(name="lamps", section="lamps", stages=(Stage("lamps", CONTROLLER, "toy.lamps", EXPAND),), schema=MapOf(Str()))
    signs = Backend(name="signs", section="signs", stages=(Stage("signs", EDGE, "toy.signs", SWITCH),), schema=MapOf(Str()),
                    verify=verify)  # fmt: skip
    return [lamps, signs]


@pytest.fixture
def run_with(tmp_path):
    world = {"lamps": {}, "signs": {}, "kv": fake.MemoryKV(), "locks": fake.MemoryLocks()}
    verified = []

    def deploy(lamps, signs):
        chosen = backends(verified)
        tree = schema.validate({"global": {"domain": "example.org"}, "lamps": lamps, "signs": signs}, chosen)
        states = {"toy.lamps": toy_state("lamps", "toy.lamps"), "toy.signs": toy_state("signs", "toy.signs")}
        minions = fake.Minions(world, states, {}, tree)
        summary = Engine(tree, fake.seams(minions, tmp_path, world["kv"], world["locks"]), chosen).drive("deploy")
        assert summary["status"] == "success", summary
        return verified.pop()

    return deploy


def test_verify_gets_the_switch_changes_when_nothing_else_changed_and_none_otherwise(run_with):
    assert run_with({"a": "red"}, {"x": "on"}) is None  # the first deploy changes both: check everything
    assert run_with({"a": "red"}, {"x": "off"}) == {"edge-1": {"signs": {"x": {"old": "on", "new": "off"}}}}
    assert run_with({"a": "blue"}, {"x": "on"}) is None  # an expand step changed too


def _tree(routes=5):
    tree = copy.deepcopy(seed_tree())
    tree["reverse_proxy"]["caddy"]["routes"] = tree["reverse_proxy"]["caddy"]["routes"][:routes]
    return schema.validate(tree)


def test_caddy_verifies_only_the_routes_its_stage_added_or_changed():
    tree = _tree()
    routes = tree["reverse_proxy"]["caddy"]["routes"]
    first, second, protected = (caddy_config.route_id(r) for r in (routes[0], routes[1], routes[2]))
    switched = {"edge-1": {"hecate_routes": {"added": {first: {}}, "removed": {"hecate_route_gone": {}}}},
                "edge-2": {"hecate_routes": {"changed": {second: "settings", f"{protected}.outpost": {}}}}}  # fmt: skip
    assert caddy_backend.switched_domains(tree, switched) == sorted(r["domain"] for r in routes[:3])
    asked = []

    def call(target, fun, domains):
        asked.append(domains)
        return {"edge-1": {"ok": True, "ret": {"failed": [], "comment": "every route answered"}}}

    assert caddy_backend.verify(tree, call, switched) == [] and asked == [[r["domain"] for r in routes[:3]]]
    assert caddy_backend.verify(tree, call, None) == [] and asked[-1] == [r["domain"] for r in routes]  # everything
    assert caddy_backend.verify(tree, call, {"edge-1": {"hecate_routes": {"removed": {first: {}}}}}) == [] and len(asked) == 2


@pytest.mark.parametrize(
    "diff",
    [
        {"server": "settings"},  # a server setting reaches every route
        {"certificates": {"added": ["corp"]}},
        {"certificate files": {"written": ["corp.pem"]}},
        {"added": {"hecate_route_not_in_the_pillar": {}}},
        "a comment instead of changes",
    ],
)
def test_changes_beyond_routes_verify_every_route(diff):
    assert caddy_backend.switched_domains(_tree(), {"edge-1": {"hecate_routes": diff}}) is None
