"""A Consul lock so two deploys never interleave.

The lock follows Consul's documented leader-election recipe: a session with a TTL, ``PUT
/v1/kv/<key>?acquire=<session>``, the session renewed every TTL/2 by a background thread, the key
released (``?release=``) and the session destroyed in ``finally``. A second holder waits on the key with
blocking queries (``?index=&wait=``) up to its timeout, then fails with an error that names the
current holder and says whether its process is alive.

A holder killed with ``kill -9`` frees the lock quickly by design:

- The key's value names the holder's process: host, PID, the process's start time, the kernel's boot id
  and the PID namespace (:func:`process_identity`). A waiter that shares the boot id and PID namespace
  sees whether that process still runs (:func:`holder_alive`); when it is gone, the waiter destroys the
  dead session at once and takes the lock.
- Elsewhere (another host, or no ``/proc``) Consul frees the key when the session's TTL runs out, which
  Consul's servers do at ``SessionTTLMultiplier`` (2) times the TTL after the last renewal
  (hashicorp/consul agent/consul/session_ttl.go), then after the session's lock-delay
  (agent/consul/state/session.go). The TTL is 15 s (Consul's own lock helper's, api/lock.go
  ``DefaultLockSessionTTL``): at most 30 s.
- The lock-delay is 0 (Consul allows it: "clients are able to disable this mechanism by providing a zero
  delay value", Consul's sessions documentation). Consul applies it to *any* invalidation, a destroy
  included, so any other value is paid on every takeover. It exists to give a holder that is still alive
  but lost its session time to stop; hecate's holder needs none: it counts its lock lost once it has not
  renewed for one TTL (before Consul's 2x), checks it before every step, and a step in flight is not
  stopped by any lock-delay (Consul caps it at 60 s; a step can take longer).

While it waits, :meth:`ConsulLock.acquire` calls ``on_wait(holder)`` every ``WAIT_REPORT`` seconds or
sooner, and its answer (:class:`Acquired`) names a previous holder that ended without releasing the lock,
so the caller can mark that run's record with :func:`mark_interrupted`.

    client = hecatelib.consul.client(cfg)
    lock = ConsulLock(client, "hecate/locks/production", timeout=600, info={"deployment": run_id}, on_wait=show)
    acquired = lock.acquire()
    if acquired.dead_holder:   # a run that died holding the lock: its record says interrupted
        Records(client, "production").mark_interrupted(acquired.dead_holder["deployment"], by=run_id, holder=acquired.dead_holder)
    try:
        ...                    # stages; call lock.check() between them: raises LockLost if the session died
    finally:
        lock.release()

The deployment records are ``hecatelib.consul.records``.
"""

import datetime
import getpass
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from hecatelib.api import redact
from hecatelib.consul import DEFAULT_LOCK_DELAY, DEFAULT_TTL, DEFAULT_WAIT
from hecatelib.errors import LockError, LockLost, LockTimeout

log = logging.getLogger(__name__)

__all__ = ["Acquired", "ConsulLock", "LockError", "LockLost", "LockTimeout", "holder_alive", "process_identity"]

WAIT_REPORT = 2.0  # seconds: a waiter looks at the holder (and calls on_wait) at least this often


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(moment=None):
    return (moment or _now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def whoami():
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = os.environ.get("USER", "unknown")
    return f"{user}@{socket.gethostname()}"


def _consul_errors():
    import consul.exceptions
    import requests

    return consul.exceptions.ConsulException, requests.exceptions.RequestException


def _why(exc, client):
    """A failed Consul call in words: a timeout says how long we waited (``hecate:consul:timeout``, enforced by
    ``hecatelib.consul.TimeoutSession``), anything else its type and scrubbed text."""
    import requests

    if isinstance(exc, requests.exceptions.Timeout):
        seconds = getattr(getattr(getattr(client, "http", None), "session", None), "default_timeout", None)
        return f"Consul did not answer within {seconds:g}s (timeout)" if seconds else "Consul did not answer in time (timeout)"
    return f"{type(exc).__name__}: {_scrub(exc, client)}"


def _go_duration(seconds):
    return f"{max(1, int(seconds * 1000))}ms"


# -- who holds the lock, and is it alive -----------------------------------------------------------
def _read(path):
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip() or None
    except (OSError, ValueError):
        return None


def _proc_stat(pid):
    """``(start time, state)`` of a process from ``/proc/<pid>/stat``, or None when unreadable. The start
    time is field 22 (clock ticks since boot), the state field 3; fields are counted after the command
    name, which is in parentheses and may itself hold spaces and parentheses (proc(5))."""
    text = _read(f"/proc/{int(pid)}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    try:
        return int(fields[19]), fields[0]
    except (IndexError, ValueError):
        return None


def process_identity():
    """What tells this process apart from any other, now and later: ``host``, ``pid``, ``pid_start`` (its
    start time: a reused PID has another), ``boot_id`` (the running kernel: another machine or another
    boot has another) and ``pid_ns`` (a container in its own PID namespace sees other PIDs). Values this
    system does not give (no ``/proc``) are None."""
    pid = os.getpid()
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = None
    stat = _proc_stat(pid)
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": stat[0] if stat else None,
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),
        "pid_ns": pid_ns,
    }


def holder_alive(holder, here=None):
    """Whether the process that holds the lock still runs: True, False, or None when this process cannot
    know (another boot id or PID namespace: another host or container; a holder that did not say).
    ``here``: this process's :func:`process_identity`."""
    here = here or process_identity()
    same_place = holder.get("boot_id") and holder.get("boot_id") == here.get("boot_id") and holder.get("pid_ns") == here.get("pid_ns")
    if not same_place or not holder.get("pid") or holder.get("pid_start") is None:
        return None
    try:
        os.kill(int(holder["pid"]), 0)  # signal 0: is there such a process (hidepid cannot hide it)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    except (OSError, ValueError, OverflowError):
        return None
    stat = _proc_stat(holder["pid"])
    if stat is None:  # there, but unreadable: alive as far as we can tell
        return True
    start, state = stat
    return start == holder["pid_start"] and state not in ("Z", "X")  # not a reused PID, not a zombie


@dataclass(frozen=True)
class Acquired:
    """The answer of :meth:`ConsulLock.acquire` (true, like the True it used to be). ``waited``: seconds.
    ``dead_holder``: the previous holder (its lock value: ``deployment``, ``kind``, ``holder``, ``host``,
    ``pid``, ``acquired_at``, ...) when it ended without releasing the lock, with ``how`` in words; else None."""

    waited: float
    dead_holder: dict = None

    def __bool__(self):
        return True


class ConsulLock:
    """A Consul session lock on ``key``; a context manager.

    ``ttl``: session TTL in seconds (10..86400); renewed every ``renew_interval`` (default ttl/2).
    ``timeout``: seconds :meth:`acquire` waits for another holder (0: fail at once; None: forever).
    ``lock_delay``: seconds Consul keeps the key after a holder's session is invalidated (not after a
    clean release). ``info``: extra JSON-able fields stored in the key (e.g. the deployment id), shown
    to whoever waits. ``on_wait``: called while :meth:`acquire` waits, at least every ``WAIT_REPORT``
    seconds, with the holder (see :meth:`acquire`). ``identity``: this process as the key names it
    (default :func:`process_identity`; tests give another host's).
    """

    def __init__(
        self,
        client,
        key,
        ttl=DEFAULT_TTL,
        timeout=DEFAULT_WAIT,
        lock_delay=DEFAULT_LOCK_DELAY,
        renew_interval=None,
        retry_interval=1.0,
        info=None,
        behavior="release",
        on_wait=None,
        identity=None,
    ):
        if not 10 <= ttl <= 86400:
            raise LockError(f"lock ttl must be 10..86400 seconds (Consul's range), got {ttl}")
        self.client = client
        self.key = key.strip("/")
        self.ttl = ttl
        self.timeout = timeout
        self.lock_delay = lock_delay
        self.renew_interval = renew_interval or ttl / 2.0
        self.retry_interval = retry_interval
        self.behavior = behavior
        self.on_wait = on_wait
        self.identity = identity
        self.info = {"holder": whoami(), "pid": os.getpid(), **(info or {})}
        self.session = None
        self.held = False
        self.lost = threading.Event()
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = None
        self._last_renewal = None

    # -- public ------------------------------------------------------------------------------------
    def acquire(self, timeout=None):
        """Take the lock, waiting up to ``timeout`` seconds (default: the constructor's). Returns an
        :class:`Acquired` (true) or raises :class:`LockTimeout` naming the holder; any other failure
        raises :class:`LockError`.

        While another process holds the key, ``on_wait`` gets a dict at least every ``WAIT_REPORT``
        seconds: the holder's lock value (``holder``, ``host``, ``pid``, ``acquired_at``, ``deployment``,
        ``kind``, ``session``) plus ``alive`` (True, False or None: unknown), ``waited`` (seconds) and
        ``state`` (``held``; ``taking over``: its process is gone and its session is being destroyed;
        ``lock-delay``: the key is free but Consul refuses it for a while)."""
        if self.held:
            return Acquired(0.0)
        timeout = self.timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        here = self.identity or process_identity()
        errors = _consul_errors()
        dead, reported = None, None
        try:
            self._create_session(here)
            index, entry = self.client.kv.get(self.key)
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if entry is not None and entry.get("Session"):
                    holder = _describe(entry)
                    alive = holder_alive(holder, here)
                    state = "taking over" if alive is False else "held"
                    reported = self._report(holder, alive, state, started, reported)
                    if alive is False and self._destroy_dead(holder):
                        dead = {**holder, "how": f"its process {holder['pid']} on {holder.get('host')} is gone; its session was destroyed"}
                        index, entry = self.client.kv.get(self.key)
                        continue
                    if left is not None and left <= 0:
                        raise LockTimeout(self._busy_message(holder, alive, timeout), holder)
                    wait = WAIT_REPORT if left is None else min(WAIT_REPORT, max(left, 0.001))
                    index, entry = self.client.kv.get(self.key, index=index, wait=_go_duration(wait))
                    continue
                previous = _describe(entry) if entry is not None else {}
                self.info["acquired_at"] = _iso()
                if self.client.kv.put(self.key, json.dumps(self.info, sort_keys=True), acquire=self.session):
                    self.held = True
                    if dead is None and previous.get("session") and "released_at" not in previous:
                        dead = {**previous, "how": "its session ended without releasing the lock (not renewed in time, or destroyed)"}
                    if dead:
                        who = dead.get("deployment") or dead.get("holder")
                        # info: the caller says it (Acquired.dead); a warning would print it twice on salt-run's terminal
                        log.info("hecate: took the Consul lock %s over from %s (%s)", self.key, who, dead["how"])
                    log.info("hecate: took the Consul lock %s (session %s)", self.key, self.session)
                    return Acquired(round(time.monotonic() - started, 3), dead)
                if self.lost.is_set():
                    raise LockLost(f"Consul lock {self.key}: our session ended while waiting for the lock")
                index, entry = self.client.kv.get(self.key)
                if entry is not None and entry.get("Session"):
                    continue  # taken between our read and our acquire
                # free but refused: the lock-delay of a holder whose session was invalidated
                reported = self._report(previous, None, "lock-delay", started, reported)
                if left is not None and left <= 0:
                    raise LockTimeout(
                        f"Consul lock {self.key} is in its lock-delay (a previous holder's session ended without "
                        f"releasing it); gave up after {timeout:g}s",
                        previous,
                    )
                time.sleep(self.retry_interval if left is None else min(self.retry_interval, max(left, 0)))
        except errors as exc:
            self._destroy_session()
            raise LockError(f"Consul lock {self.key}: {_why(exc, self.client)}") from None
        except BaseException:  # LockError, Ctrl-C, an on_wait that raised: never leave our session behind
            self._destroy_session()
            raise

    def release(self):
        """Release the key and destroy the session. Never raises (it runs in ``finally``); returns True
        when the key was released cleanly."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        released = False
        errors = _consul_errors()
        if self.held and self.session:
            info = {**self.info, "released_at": _iso()}
            try:
                released = bool(self.client.kv.put(self.key, json.dumps(info, sort_keys=True), release=self.session))
            except errors as exc:
                log.warning("hecate: releasing the Consul lock %s failed: %s", self.key, _why(exc, self.client))
            if released:
                log.info("hecate: released the Consul lock %s", self.key)
        self.held = False
        self._destroy_session()
        return released

    def check(self):
        """Raise :class:`LockLost` if the lock is not (or no longer) ours."""
        if self.lost.is_set():
            raise LockLost(
                f"lost the Consul lock {self.key}: session {self.session} ended (not renewed within {self.ttl}s, "
                "or destroyed); another deploy may run now, so this one stops"
            )
        if not self.held:
            raise LockLost(f"the Consul lock {self.key} is not held")

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    # -- internals ---------------------------------------------------------------------------------
    def _report(self, holder, alive, state, started, reported):
        """Call ``on_wait`` when the holder or its state changed, or ``WAIT_REPORT`` seconds after the last
        call. Returns what was last reported: ``(session, state, when)``."""
        now = time.monotonic()
        if self.on_wait is None:
            return reported
        if reported and reported[:2] == (holder.get("session"), state) and now - reported[2] < WAIT_REPORT:
            return reported
        self.on_wait({**holder, "alive": alive, "state": state, "waited": round(now - started, 1)})
        return holder.get("session"), state, now

    def _destroy_dead(self, holder):
        """Destroy the session of a holder whose process is gone (Consul then releases its keys, under
        that session's own lock-delay). False when Consul refused."""
        try:
            self.client.session.destroy(holder["session"])
        except _consul_errors() as exc:
            log.warning("hecate: could not destroy the dead holder's session %s: %s", holder["session"], _why(exc, self.client))
            return False
        return True

    def _busy_message(self, holder, alive, timeout):
        who = holder.get("holder") or f"session {holder.get('session', '?')}"
        details = [f"pid {holder['pid']}" if holder.get("pid") else None]
        details.append(f"since {holder['acquired_at']}" if holder.get("acquired_at") else None)
        details.append(f"deployment {holder['deployment']}" if holder.get("deployment") else None)
        extra = ", ".join(d for d in details if d)
        waited = "did not wait" if not timeout else f"waited {timeout:g}s"
        if alive:
            state = "its process is running on this host"
        elif alive is False:
            state = "its process is gone, but Consul refused to destroy its session"
        else:
            ttl = holder.get("ttl")
            bound = f" within {2 * ttl:g}s of its last renewal" if isinstance(ttl, (int, float)) else ""
            state = f"it runs elsewhere (alive or not is unknown here); if it died, Consul frees the lock{bound}"
        return f"another deploy holds the Consul lock {self.key}: {who}" + (f" ({extra})" if extra else "") + f"; {state}; {waited}"

    def _create_session(self, identity):
        self.info.update(identity)
        self.info.update(ttl=self.ttl, lock_delay=self.lock_delay)
        name = f"hecate lock {self.key} by {self.info['holder']} pid {self.info['pid']}"
        self.session = self.client.session.create(
            name=name[:128], ttl=int(self.ttl), lock_delay=int(self.lock_delay), behavior=self.behavior
        )
        self.info["session"] = self.session
        self._last_renewal = time.monotonic()
        self._stop.clear()
        self.lost.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"hecate-lock-renew-{self.key}", daemon=True)
        self._thread.start()

    def _destroy_session(self):
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        if self.session:
            try:
                self.client.session.destroy(self.session)
            except _consul_errors() as exc:
                log.warning("hecate: destroying Consul session %s failed: %s", self.session, _why(exc, self.client))
        self.session = None

    def _renew_loop(self):
        import consul.exceptions

        errors = _consul_errors()
        wait = self.renew_interval
        while not self._stop.wait(wait):
            wait = self.renew_interval
            try:
                self.client.session.renew(self.session)
                self.renewals += 1
                self._last_renewal = time.monotonic()
            except consul.exceptions.NotFound:
                log.error("hecate: Consul session %s for lock %s is gone: the lock is lost", self.session, self.key)
                self.lost.set()
                return
            except errors as exc:
                log.warning("hecate: renewing Consul session %s failed: %s", self.session, _why(exc, self.client))
                if time.monotonic() - self._last_renewal >= self.ttl:
                    log.error("hecate: no renewal of %s for %ss: treating the lock as lost", self.session, self.ttl)
                    self.lost.set()
                    return
                wait = min(1.0, self.renew_interval)  # a transient error: try again soon, not a whole interval later


def _describe(entry):
    """What we know of the holder of a KV entry: the JSON stored by ConsulLock, plus the session id."""
    holder = {}
    try:
        value = json.loads((entry.get("Value") or b"{}").decode("utf-8", "replace"))
        if isinstance(value, dict):
            holder.update({k: v for k, v in value.items() if isinstance(v, (str, int, float))})
    except ValueError:
        pass
    if entry.get("Session"):
        holder["session"] = entry["Session"]
    return holder


def _scrub(exc, client):
    return redact(str(exc)[:300], [getattr(client, "token", None)])
