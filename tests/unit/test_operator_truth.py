"""The rules behind what an operator is told (issue 22 items 1, 2 and 4), without Salt or Consul: one status
per record, what "live" is for a rollback, and the engine's progress while it waits for the lock and makes
its dry run. Through the real salt-run: tests/integration/test_operator.py."""

import pytest

from hecatelib.consul.records import left_in_place, rollback_choice, shown_status
from hecatelib.engine.engine import Engine
from tests.support import engine as fake
from tests.unit.test_engine_backend_contract import FUNCTIONS, TOY, lamps_state, pillar


def test_a_record_is_running_only_while_its_run_holds_the_lock():
    running = {"id": "r1", "status": "running"}
    assert shown_status(running, holder="r1") == "running"
    assert shown_status(running, holder=None) == shown_status(running, holder="r2") == "interrupted"
    assert shown_status({"id": "r1", "status": "failed"}, holder=None) == "failed"


@pytest.mark.parametrize(
    ("record", "left"),
    [
        ({"status": "failed", "stages": {"routes": {"changed": 1}}, "rollback": {"done": ["caddy: restored"], "problems": []}}, False),
        ({"status": "failed", "stages": {"routes": {"changed": 1}}, "rollback": {"done": [], "problems": ["caddy: 500"]}}, True),
        ({"status": "failed", "stages": {"routes": {"changed": 1}}}, True),  # auto_rollback off
        ({"status": "failed", "stages": {"routes": {"changed": 0}}}, False),  # changed nothing
        ({"status": "interrupted", "stages": {}, "interrupted_by": "r9"}, True),  # killed: its record cannot say
        ({"status": "interrupted", "stages": {}}, False),  # Ctrl-C before any step
        ({"status": "running", "stages": {}}, True),
    ],
)
def test_what_a_run_that_did_not_succeed_may_have_left_live(record, left):
    assert left_in_place(record) is left


def success(id, digest):
    return {"id": id, "status": "success", "tree_digest": digest}


def test_a_rollback_returns_to_the_newest_success_that_differs_from_the_last():
    records = [success("a", "A"), success("b", "B"), success("c", "B")]  # c: a no-op deploy after b
    assert rollback_choice(records) == (records[0], [])


def test_after_an_undone_failure_live_is_the_last_success_and_a_rollback_asks_first():
    undone = {"id": "c", "status": "failed", "stages": {"routes": {"changed": 1}}, "rollback": {"done": ["x"], "problems": []}}
    records = [success("a", "A"), success("b", "B"), undone]
    assert rollback_choice(records) == (records[0], [undone])  # it would undo b: the operator confirms


def test_after_a_failure_left_in_place_a_rollback_returns_to_the_last_success():
    kept = {"id": "c", "status": "failed", "stages": {"routes": {"changed": 1}}}
    records = [success("a", "A"), success("b", "B"), kept]
    assert rollback_choice(records) == (records[1], [])


def test_a_failed_rollback_is_retried_without_a_question():
    failed = {"id": "c", "kind": "rollback", "status": "failed", "stages": {"routes": {"changed": 1}}, "rolled_back_to": "a"}
    records = [success("a", "A"), success("b", "B"), failed]
    assert rollback_choice(records) == (records[0], [])


def test_nothing_to_roll_back_to_is_said():
    with pytest.raises(ValueError, match="nothing to roll back to"):
        rollback_choice([{"id": "a", "status": "failed"}])
    with pytest.raises(ValueError, match="deploys what is live now"):
        rollback_choice([success("a", "A"), success("b", "A")])


class WaitingLocks(fake.MemoryLocks):
    """The deploy lock held by another run for one report of the waiter (``on_wait``), then free."""

    def take(self, run, wait=None, on_wait=None):
        on_wait({"deployment": "r0", "kind": "deploy", "host": "edge", "pid": 42, "alive": False, "state": "held",
                 "waited": 2.0, "session": "s-0", "boot_id": "b-0", "pid_ns": "pid:[1]"})  # fmt: skip
        return super().take(run, wait, on_wait)


def test_a_waiting_run_says_who_holds_the_lock_and_puts_it_on_the_bus(tmp_path):
    world = {"lamps": {}, "writes": 0}
    tree = pillar(hall="red")
    minions = fake.Minions(world, {"toy.lamps": lamps_state}, FUNCTIONS, tree)
    seams = fake.seams(minions, tmp_path, locks=WaitingLocks())
    events = []
    seams.emit = lambda tag, data: events.append((tag, data))
    done = Engine(tree, seams, [TOY]).drive("deploy")
    assert done["status"] == "success"
    tag, data = events[0]
    assert tag == f"deploy/{done['id']}/waiting"
    assert data == {"deployment": "r0", "kind": "deploy", "host": "edge", "pid": 42, "alive": False, "state": "held", "waited": 2.0}
    said = world["said"]
    assert said[0] == "waiting for the deploy lock (2 s): held by run r0 (deploy) on host edge, pid 42; its process is gone"
    assert any(line.startswith("dry run done (") and line.endswith("would change lamps 1") for line in said), said
    assert f"deploy {done['id']}: success" in said
