"""Bulk work on big trees with Python's cyclic garbage collector paused.

At thousands of routes a run holds hundreds of thousands of small objects at once (Caddy's config of 5000
routes is 8 MB of JSON). While they are alive, every few hundred allocations start a collection and
every few of those walk all of them: measured at 5000 routes, decoding Caddy's config took 0.34 s of CPU
with the collector on and 0.08 s with it paused; compiling the desired config from it 0.28 s and 0.03 s.
Reference counting still frees everything at once; the cycles made meanwhile (few) are collected when
the collector is back on."""

import contextlib
import gc


@contextlib.contextmanager
def gc_paused():
    """The cyclic garbage collector off for the block, then on again (only if it was on: nested blocks and
    a process that turned it off keep theirs)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
