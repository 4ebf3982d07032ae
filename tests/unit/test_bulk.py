"""hecatelib.bulk: big trees are built with the cyclic garbage collector paused, and it comes back on."""

import gc

from devstack.pillars import seed_tree
from hecatelib import bulk, schema


def test_gc_paused_turns_the_collector_off_for_the_block_and_back_on():
    assert gc.isenabled()
    with bulk.gc_paused():
        assert not gc.isenabled()
        with bulk.gc_paused():  # nested: the outer block turns it back on
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_gc_paused_leaves_a_collector_that_was_off_off():
    gc.disable()
    try:
        with bulk.gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_gc_paused_turns_it_back_on_after_an_error():
    try:
        with bulk.gc_paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()


def test_validation_runs_with_the_collector_paused(monkeypatch):
    seen = []
    real = schema.shape_problem
    monkeypatch.setattr(schema, "shape_problem", lambda tree: seen.append(gc.isenabled()) or real(tree))
    schema.validate(seed_tree())
    assert seen == [False] and gc.isenabled()
