"""The engine's seams as they are on a Salt master: minions through Salt's LocalClient, progress on the
master's event bus, records and the deploy lock in Consul, runs kept in the master's cache. The runner
(``_runners/hecate.py``) builds an :class:`~hecatelib.engine.engine.Engine` with :func:`seams`."""

import contextlib
import logging

import salt.utils.event

import hecate_fresh
from hecatelib import consul, paths
from hecatelib.consul.lock import ConsulLock
from hecatelib.consul.records import Records
from hecatelib.engine.engine import Seams
from hecatelib.engine.minions import Minions
from hecatelib.engine.run import operator, pillar_commit, run_files
from hecatelib.errors import LockLost

log = logging.getLogger(__name__)

# Locks taken by this process, by run id: state.orchestrate's steps are runner calls in one process, so the
# lock taken by ``begin`` (and its renewal thread) is still here for ``finish`` to release. Kept where a
# sync's reload of hecatelib cannot forget it. A step in another process finds the lock by its session.
HELD = hecate_fresh.kept("held_locks")


def consul_client(tree, opts):
    """The Consul client and settings of this pillar (``hecate:consul`` over the master's config)."""
    settings = consul.settings(tree, opts)
    try:
        return settings, consul.client(settings)
    except Exception as exc:
        raise type(exc)(f"the deploy needs Consul for its lock and records: {exc}") from exc


def records(tree, opts, prefix=None):
    settings, client = consul_client(tree, opts)
    return Records(client, settings["environment"], prefix or settings["deployments"]["prefix"])


class ConsulLocks:
    """The deploy lock seam over :class:`ConsulLock`: ``take`` (waits, with ``on_wait`` progress), ``check``
    before every write, ``release`` whatever happened (by session when another process took it)."""

    def __init__(self, client, settings):
        self.client = client
        self.settings = settings["lock"]

    def take(self, run, wait=None, on_wait=None):
        """Take the lock for ``run`` (``on_wait(holder)`` while another holds it). The lock's
        ``dead_holder`` names a previous holder that died holding it (its run is marked interrupted)."""
        lock = ConsulLock(
            self.client,
            self.settings["key"],
            ttl=self.settings["ttl"],
            timeout=self.settings["wait"] if wait is None else wait,
            lock_delay=self.settings["lock_delay"],
            info={"deployment": run.id, "kind": run.kind},
            on_wait=on_wait,
        )
        lock.dead_holder = lock.acquire().dead_holder
        HELD[run.id] = lock
        return lock

    def check(self, run):
        """Stop before a write unless the run still holds the deploy lock (renewing the session once)."""
        lock = HELD.get(run.id)
        if lock is not None:
            lock.check()
            return
        _, entry = self.client.kv.get(run.lock_key)
        if not entry or entry.get("Session") != run.session or not self.client.session.renew(run.session):
            raise LockLost(f"run {run.id} no longer holds the Consul lock {run.lock_key}; it stops here")

    def release(self, run):
        lock = HELD.pop(run.id, None)
        if lock is not None:
            lock.release()
            return
        if not run.session:
            return
        try:  # the lock was taken by another process (its renewal stopped with it): release by session
            self.client.kv.put(run.lock_key, None, release=run.session)
            self.client.session.destroy(run.session)
        except Exception as exc:  # releasing must never hide the run's outcome; the TTL frees it
            log.warning("hecate: releasing the lock of run %s failed (%s); its session TTL will free it", run.id, type(exc).__name__)

    def holder(self):
        """The deploy lock's KV entry while a session holds it, or None."""
        _, entry = self.client.kv.get(self.settings["key"])
        return entry if entry and entry.get("Session") else None


class EventBus:
    """Progress on the master's event bus (``salt-run state.event 'hecate/*'`` shows a run live): one
    connection for a whole run (a dozen events), opened at the first event."""

    def __init__(self, opts):
        self.opts = opts
        self.stack = contextlib.ExitStack()
        self.bus = None

    def __call__(self, tag, data):
        if self.bus is None:
            self.bus = self.stack.enter_context(salt.utils.event.get_master_event(self.opts, self.opts["sock_dir"], listen=False))
        self.bus.fire_event(data, f"hecate/{tag}")

    def close(self):
        self.stack.close()
        self.bus = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def seams(opts, tree, say=None, tgt=None, tgt_type=None, controller=None, timeout=None, force=False):
    """Every seam the engine needs, for this pillar on this master (``force``: see :class:`Minions`)."""
    settings, client = consul_client(tree, opts)
    return Seams(
        call=Minions(opts, tree, tgt=tgt, tgt_type=tgt_type, controller=controller, timeout=timeout, say=say, force=force),
        records=Records(client, settings["environment"], settings["deployments"]["prefix"]),
        locks=ConsulLocks(client, settings),
        runs=run_files(opts),
        emit=EventBus(opts),
        say=say,
        operator=operator(opts),
        commit=lambda: pillar_commit(opts),  # a git call: only a run that begins asks
        root_prefix=paths.prefix(opts),
    )


def close(seams):
    seams.call.close()
    seams.emit.close()
