"""A Consul lock so two deploys never interleave.

The lock follows Consul's documented leader-election recipe: a session with a TTL, ``PUT
/v1/kv/<key>?acquire=<session>``, the session renewed every TTL/2 by a background thread, the key
released (``?release=``) and the session destroyed in ``finally``. A second holder waits on the key with
blocking queries (``?index=&wait=``) up to its timeout, then fails with an error that names the
current holder. A holder that dies stops renewing: Consul invalidates its session after the TTL and
the key is free again after the session's lock-delay.

    client = hecatelib.consul.client(cfg)
    with ConsulLock(client, "hecate/locks/production", ttl=30, timeout=600, info={"deployment": dep_id}) as lock:
        ...                    # stages; call lock.check() between them: raises LockLost if the session died

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

from hecatelib.api import redact
from hecatelib.consul import DEFAULT_LOCK_DELAY, DEFAULT_TTL, DEFAULT_WAIT
from hecatelib.errors import LockError, LockLost, LockTimeout

log = logging.getLogger(__name__)

__all__ = ["ConsulLock", "LockError", "LockLost", "LockTimeout"]


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


class ConsulLock:
    """A Consul session lock on ``key``; a context manager.

    ``ttl``: session TTL in seconds (10..86400); renewed every ``renew_interval`` (default ttl/2).
    ``timeout``: seconds :meth:`acquire` waits for another holder (0: fail at once; None: forever).
    ``lock_delay``: seconds Consul keeps the key after a holder's session is invalidated (not after a
    clean release). ``info``: extra JSON-able fields stored in the key (e.g. the deployment id), shown
    to whoever waits.
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
        """Take the lock, waiting up to ``timeout`` seconds (default: the constructor's). Returns True
        or raises :class:`LockTimeout` naming the holder; any other failure raises :class:`LockError`."""
        if self.held:
            return True
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        errors = _consul_errors()
        try:
            self._create_session()
            free_refusals = 0
            while True:
                self.info["acquired_at"] = _iso()
                if self.client.kv.put(self.key, json.dumps(self.info, sort_keys=True), acquire=self.session):
                    self.held = True
                    log.info("hecate: took the Consul lock %s (session %s)", self.key, self.session)
                    return True
                if self.lost.is_set():
                    raise LockLost(f"Consul lock {self.key}: our session ended while waiting for the lock")
                index, entry = self.client.kv.get(self.key)
                left = None if deadline is None else deadline - time.monotonic()
                if entry is not None and entry.get("Session"):
                    free_refusals = 0
                    holder = _describe(entry)
                    if left is not None and left <= 0:
                        raise LockTimeout(self._busy_message(holder, timeout), holder)
                    wait = 60.0 if left is None else min(60.0, max(left, 0.001))
                    self.client.kv.get(self.key, index=index, wait=_go_duration(wait))
                else:
                    # free but refused: released between our PUT and GET (retry at once), or the lock-delay
                    # of a holder whose session was invalidated (retry every retry_interval)
                    free_refusals += 1
                    if free_refusals == 1:
                        continue
                    if left is not None and left <= 0:
                        raise LockTimeout(
                            f"Consul lock {self.key} is in its lock-delay (a previous holder's session ended without "
                            f"releasing it); gave up after {timeout:g}s",
                            _describe(entry) if entry else {},
                        )
                    time.sleep(self.retry_interval if left is None else min(self.retry_interval, max(left, 0)))
        except LockError:
            self._destroy_session()
            raise
        except errors as exc:
            self._destroy_session()
            raise LockError(f"Consul lock {self.key}: {_why(exc, self.client)}") from None

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
    def _busy_message(self, holder, timeout):
        who = holder.get("holder") or f"session {holder.get('session', '?')}"
        details = [f"pid {holder['pid']}" if holder.get("pid") else None]
        details.append(f"since {holder['acquired_at']}" if holder.get("acquired_at") else None)
        details.append(f"deployment {holder['deployment']}" if holder.get("deployment") else None)
        extra = ", ".join(d for d in details if d)
        waited = "did not wait" if not timeout else f"waited {timeout:g}s"
        return f"another deploy holds the Consul lock {self.key}: {who}" + (f" ({extra})" if extra else "") + f"; {waited}"

    def _create_session(self):
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
        while not self._stop.wait(self.renew_interval):
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
