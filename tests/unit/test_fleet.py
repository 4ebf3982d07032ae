"""Rolling out over several edges: canary first, then batches, stop at the first bad batch."""

from hecatelib.engine import fleet


def test_batches_put_one_canary_first_then_groups():
    assert fleet.batches(["e3", "e1", "e2", "e4"], 2) == [["e1"], ["e2", "e3"], ["e4"]]
    assert fleet.batches(["e1"], 5) == [["e1"]]
    assert fleet.batches([], 2) == []
    assert fleet.batches(["a", "b"], 0) == [["a"], ["b"]]  # a batch is never empty


def _fleet(bad=()):
    applied, rolled = [], []

    def apply(batch):
        applied.append(list(batch))
        return {m: {"result": m not in bad} for m in batch}

    def roll_back(batch):
        rolled.append(list(batch))
        return batch

    return applied, rolled, apply, roll_back


def test_a_failing_canary_never_reaches_the_others():
    applied, rolled, apply, roll_back = _fleet(bad={"e1"})
    seen = []
    out = fleet.roll_out(["e1", "e2", "e3"], 2, apply, roll_back, progress=lambda m, s: seen.append((m, s)))
    assert out["ok"] is False and out["failed_batch"] == 0 and out["failed"] == ["e1"]
    assert applied == [["e1"]] and rolled == [[]]
    assert out["edges"] == {"e1": "failed", "e2": "not reached", "e3": "not reached"}
    assert seen == [("e1", "failed")]


def test_a_bad_batch_is_rolled_back_and_the_rest_is_not_reached():
    applied, rolled, apply, roll_back = _fleet(bad={"e3"})
    out = fleet.roll_out(["e1", "e2", "e3", "e4", "e5"], 2, apply, roll_back)
    assert applied == [["e1"], ["e2", "e3"]] and rolled == [["e2"]]
    assert out["edges"] == {"e1": "applied", "e2": "rolled back", "e3": "failed", "e4": "not reached", "e5": "not reached"}


def test_a_silent_edge_counts_as_failed():
    out = fleet.roll_out(["e1", "e2"], 1, lambda batch: {}, lambda batch: [])
    assert out["ok"] is False and out["edges"]["e1"] == "failed"


def test_all_good_applies_every_batch():
    applied, rolled, apply, roll_back = _fleet()
    out = fleet.roll_out(["e1", "e2", "e3"], 1, apply, roll_back)
    assert out["ok"] is True and applied == [["e1"], ["e2"], ["e3"]] and rolled == []
