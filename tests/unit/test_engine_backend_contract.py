"""The backend contract is true: a toy backend defined in this one file plugs into the engine, health and
backup (which name no backend) and goes through deploy, plan, a failed deploy undone, rollback, drift,
health and backup/restore, with nothing else changed. The engine runs on its seams, without Salt or Consul
(tests/support/engine.py)."""

import copy
import dataclasses

import pytest

from hecatelib import backups, schema
from hecatelib import health as health_report
from hecatelib.engine.backend import CONTROLLER, EDGE, EXPAND, Backend, Outcome, Read, Stage, first_ok
from hecatelib.engine.engine import Engine
from hecatelib.engine.run import Run
from hecatelib.spec import MapOf, Str
from tests.support import engine as fake

# -- the toy: lamps, each with a colour; "black" is a colour the lamp refuses ---------------------------------
COLOURS = ["red", "green", "blue", "black"]
STAGE = Stage("lamps", CONTROLLER, "toy.lamps", EXPAND)


def lamps_state(world, tree, test, pillar):
    """The toy's state: converge ``world["lamps"]`` to the pillar's, deletions only when pruning."""
    wanted, have = tree.get("lamps") or {}, world["lamps"]
    prune = pillar.get("hecate_prune", True)
    changes = {name: {"old": have.get(name), "new": colour} for name, colour in wanted.items() if have.get(name) != colour}
    if prune:
        changes.update({name: {"old": colour, "new": None} for name, colour in have.items() if name not in wanted})
    refused = [name for name, change in changes.items() if change["new"] == "black"]
    if not test and not refused:
        for name, change in changes.items():
            world["writes"] += 1
            if change["new"] is None:
                del have[name]
            else:
                have[name] = change["new"]
    result = False if refused else (None if test and changes else True)
    comment = f"refused: {', '.join(refused)}" if refused else ""
    return {
        "toy_|-lamps": {
            "name": "lamps",
            "result": result,
            "changes": {} if refused else changes,
            "comment": comment,
            "__sls__": "toy.lamps",
        }
    }


FUNCTIONS = {
    "lamps.all": lambda world: dict(world["lamps"]),
    "lamps.put": lambda world, lamps: world.update(lamps=dict(lamps)) or True,
}


def keep(tree, answers):
    return first_ok(answers[0])[1]


def undo(ctx, kept, only=None):
    answers = ctx.call(CONTROLLER, "lamps.put", kept)
    outcome = Outcome()
    outcome.add(first_ok(answers)[0] is not None, "lamps: put back as before the run", "no answer")
    return outcome


def health(tree, call):
    _, have = first_ok(call(CONTROLLER, "lamps.all"))
    return [{"lamp": name, "colour": have.get(name), "ok": have.get(name) == colour} for name, colour in sorted(tree["lamps"].items())]


def backup(tree, call):
    _, have = first_ok(call(CONTROLLER, "lamps.all"))
    return {"state": "saved", "lamps": len(have)}, {"lamps.json": have}


def restore_backup(directory, manifest, call, test):
    saved = backups.load(directory, "lamps.json")
    if not test:
        call(CONTROLLER, "lamps.put", saved)
    return [f"lamps: {len(saved)} {'would be' if test else ''} restored"], []


TOY = Backend(
    name="lamps",
    section="lamps",
    stages=(STAGE,),
    schema=MapOf(Str(choices=COLOURS)),
    prunes=True,
    prune_default=True,
    before=lambda tree, run_id: [Read(CONTROLLER, "lamps.all")],
    keep=keep,
    undo=undo,
    drift=True,
    health=(("lamps", health),),
    backup=backup,
    restore_backup=restore_backup,
)


# -- the run of an edge's life, with only the toy plugged in ----------------------------------------------------
@pytest.fixture
def world():
    """The toy's live state, and the Consul KV and lock every engine of the test shares."""
    return {"lamps": {}, "writes": 0, "kv": fake.MemoryKV(), "locks": fake.MemoryLocks()}


def pillar(**lamps):
    """A pillar with only the toy's section (and the core's defaults)."""
    return schema.validate({"global": {"domain": "example.org"}, "lamps": lamps}, [TOY])


def engine_for(world, tree, tmp_path):
    minions = fake.Minions(world, {"toy.lamps": lamps_state}, FUNCTIONS, tree)
    return Engine(tree, fake.seams(minions, tmp_path, world["kv"], world["locks"]), [TOY]), minions


def test_the_schema_takes_the_toy_section_from_its_backend():
    assert pillar(hall="red")["lamps"] == {"hall": "red"}
    with pytest.raises(schema.PillarError, match="hecate:lamps:hall"):
        pillar(hall="purple")


def test_a_toy_backend_deploys_plans_undoes_rolls_back_drifts_and_is_backed_up(world, tmp_path):
    first = pillar(hall="red", porch="green")
    engine, _ = engine_for(world, first, tmp_path)
    done = engine.drive("deploy")
    assert done["status"] == "success" and world["lamps"] == {"hall": "red", "porch": "green"}
    assert list(done["stages"]) == ["lamps", "lamps_contract"]  # expand, then the contract (prune defaults on)

    engine, _ = engine_for(world, first, tmp_path)
    assert engine.plan()["lamps"]["would_change"] == 0
    writes = world["writes"]
    assert engine.drive("deploy")["status"] == "success" and world["writes"] == writes  # a no-op writes nothing

    second = pillar(hall="blue")  # porch dropped: removed only by the contract step
    engine, _ = engine_for(world, second, tmp_path)
    changed = engine.drive("deploy")
    assert changed["status"] == "success" and world["lamps"] == {"hall": "blue"}

    broken = pillar(hall="red", cellar="black")  # the lamp refuses black: the run fails and is undone
    engine, _ = engine_for(world, broken, tmp_path)
    failed = engine.drive("deploy")
    assert failed["status"] == "failed" and failed["retcode"] == 1
    assert failed["rollback"] == {"done": ["lamps: put back as before the run"], "problems": []}
    assert world["lamps"] == {"hall": "blue"}

    records = engine.seams.records
    history = records.list()
    assert [r["status"] for r in history] == ["success", "success", "success", "failed"]
    target = records.read(history[0]["id"], full=True)
    engine, _ = engine_for(world, second, tmp_path)
    back = engine.drive("rollback", recorded=target["tree"], extra={"rolled_back_to": target["id"]})
    assert back["status"] == "success" and world["lamps"] == {"hall": "red", "porch": "green"}
    assert records.read(back["id"])["rolled_back_to"] == target["id"]

    world["lamps"]["hall"] = "blue"  # a hand edit: drift
    engine, minions = engine_for(world, first, tmp_path)
    drifted = engine.plan([s.name for s in TOY.stages if TOY.drift])
    assert drifted["lamps"]["would_change"] == 1 and drifted["lamps"]["changes"] == ["hall"]

    report = health_report.collect(first, minions, [TOY])
    assert report["lamps"] == [{"lamp": "hall", "colour": "blue", "ok": False}, {"lamp": "porch", "colour": "green", "ok": True}]
    assert report["retcode"] == 1

    sections, files = backups.collect(first, minions, [TOY])
    backups.write(tmp_path / "backup", sections, files)
    world["lamps"] = {}
    restored = backups.restore(tmp_path / "backup", minions, [TOY])
    assert restored["problems"] == [] and world["lamps"] == {"hall": "blue", "porch": "green"}


def test_a_run_that_wrote_and_cannot_record_says_what_it_applied(world, tmp_path):
    """The record store failing after the steps applied never turns the run into "not started"."""
    tree = pillar(hall="red")
    engine, _ = engine_for(world, tree, tmp_path)
    records = engine.seams.records
    real_update = records.update

    def refuse(deployment_id, changes, attempts=5):
        if isinstance(changes, dict) and changes.get("status") in ("success", "failed"):
            from hecatelib.errors import RecordError

            raise RecordError("the deployment record is 736847 bytes")
        return real_update(deployment_id, changes, attempts)

    records.update = refuse
    done = engine.drive("deploy")
    assert world["lamps"] == {"hall": "red"}  # applied
    assert done["status"] == "success" and done["retcode"] == 1
    assert "recording the run failed" in done["error"] and done["applied"] == ["lamps", "lamps_contract"]
    assert engine.seams.locks.holder is None  # the lock is released whatever happened


def test_a_killed_run_found_holding_the_lock_is_marked_interrupted(world, tmp_path):
    tree = pillar(hall="red")
    engine, _ = engine_for(world, tree, tmp_path)
    records = engine.seams.records
    records.write({"kind": "deploy", "status": "running"}, "20261207T000000Z-dead00")
    take = engine.seams.locks.take

    def from_a_dead_holder(run, wait=None, on_wait=None):
        lock = take(run, wait, on_wait)
        lock.dead_holder = {"deployment": "20261207T000000Z-dead00", "pid": 4242}
        return lock

    engine.seams.locks.take = from_a_dead_holder
    assert engine.drive("deploy")["status"] == "success"
    assert records.read("20261207T000000Z-dead00")["status"] == "interrupted"


def test_runs_survive_between_runner_calls_as_typed_objects(tmp_path):
    files = fake.RunFiles(str(tmp_path))
    run = Run(id="20261207T000000Z-abc123", kind="orchestrate", steps=["lamps"], before={"lamps": {"hall": "red"}})
    files.save(run)
    again = files.load(run.id)
    assert again == run and isinstance(again, Run)
    assert copy.deepcopy(again).before == {"lamps": {"hall": "red"}}


def test_what_a_dry_run_warns_of_is_shown_in_the_plan_and_said_before_the_first_write(world, tmp_path):
    def lamps_with_warnings(world, tree, test, pillar):  # a state that knows its writes will wait (a rate limit)
        out = lamps_state(world, tree, test, pillar)
        out["toy_|-lamps"]["warnings"] = ["pacing: 2 writes wait about 5 s"] if out["toy_|-lamps"]["changes"] else []
        return out

    tree = pillar(a="red", b="blue")
    minions = fake.Minions(world, {"toy.lamps": lamps_with_warnings}, FUNCTIONS, tree)
    engine = Engine(tree, fake.seams(minions, tmp_path, world["kv"], world["locks"]), [TOY])
    assert engine.plan()["lamps"]["warnings"] == ["pacing: 2 writes wait about 5 s"]
    said = []
    engine.seams.say = lambda line: said.append((line, world["writes"]))  # each line with the writes made by then
    assert engine.drive("deploy")["status"] == "success" and world["writes"] == 2
    assert ("lamps: pacing: 2 writes wait about 5 s", 0) in said
    assert "warnings" not in engine.plan()["lamps"]  # nothing left to write: nothing to warn of


def test_a_run_given_its_callers_dry_run_makes_no_second_one(world, tmp_path):
    """A heal takes the dry run its drift was read with (hecate.reconcile): its run publishes no second
    ``state.apply test=True``, and still applies and records; without it, the run makes its own."""
    tree = pillar(hall="red")
    engine, minions = engine_for(world, tree, tmp_path)
    dry_runs, real = [], minions.state_apply
    minions.state_apply = lambda target, sls, **kwargs: (
        (dry_runs.append(sls) if kwargs.get("test") else None) or real(target, sls, **kwargs)
    )
    read = engine.dry_run(tree, ["lamps"])
    assert dry_runs == ["toy.lamps"] and read["lamps"]["changes"]
    healed = engine.drive("heal", only=["lamps"], dry=read)
    assert healed["status"] == "success" and world["lamps"] == {"hall": "red"}
    assert dry_runs == ["toy.lamps"]  # none besides the caller's
    world["lamps"]["hall"] = "blue"
    assert engine.drive("heal", only=["lamps"])["status"] == "success" and world["lamps"] == {"hall": "red"}
    assert dry_runs == ["toy.lamps", "toy.lamps"]


def test_an_edge_stage_rolls_out_to_the_edges_that_answered_its_dry_run(world, tmp_path):
    """The rollout's edges are those that answered the run's dry run moments before: no test.ping job
    round before the first write (a test.ping is sent only when the run has no dry run of that stage)."""
    edge_toy = dataclasses.replace(TOY, stages=(Stage("lamps", EDGE, "toy.lamps", EXPAND),))
    tree = schema.validate({"global": {"domain": "example.org"}, "lamps": {"hall": "red"}}, [edge_toy])
    minions = fake.Minions(world, {"toy.lamps": lamps_state}, FUNCTIONS, tree)
    engine = Engine(tree, fake.seams(minions, tmp_path, world["kv"], world["locks"]), [edge_toy])
    done = engine.drive("deploy", only=["lamps"])
    assert done["status"] == "success" and world["lamps"] == {"hall": "red"}
    assert "test.ping" not in minions.published
    run = engine.begin("deploy", only=["lamps"])
    world["lamps"]["hall"] = "blue"
    assert engine.step(run, "lamps")["ok"] and "test.ping" in minions.published  # no dry run: asked who is there
    engine.finish(run)
