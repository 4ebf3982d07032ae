"""A Consul lock so two deploys never interleave, and the deployment record in Consul KV.

The lock follows Consul's documented leader-election recipe: a session with a TTL, ``PUT
/v1/kv/<key>?acquire=<session>``, the session renewed every TTL/2 by a background thread, the key
released (``?release=``) and the session destroyed in ``finally``. A second holder waits on the key with
blocking queries (``?index=&wait=``) up to its timeout, then fails with an error that names the
current holder. A holder that dies stops renewing: Consul invalidates its session after the TTL and
the key is free again after the session's lock-delay.

    client = hecatelib.secret_refs.consul_client(cfg)
    with ConsulLock(client, "hecate/locks/production", ttl=30, timeout=600, info={"deployment": dep_id}) as lock:
        ...                    # stages; call lock.check() between them: raises LockLost if the session died
    write_record(client, "production", {"status": "success", ...}, deployment_id=dep_id)

Deployment records live at ``hecate/deployments/<environment>/<id>`` (JSON), written with ``cas=0`` so
a record is never overwritten, and updated with ``cas=<ModifyIndex>`` (read-modify-write).
"""

import datetime
import getpass
import json
import logging
import os
import re
import secrets
import socket
import threading
import time

from salt.exceptions import CommandExecutionError

from hecatelib.api import redact
from hecatelib.consul import services as consul_services
from hecatelib.spec import AbsPath, Bool, Either, Field, Int, Map, Secret, Str

log = logging.getLogger(__name__)

__all__ = [
    "CONSUL_SCHEMA",
    "ConsulLock",
    "LockError",
    "LockLost",
    "LockTimeout",
    "RecordError",
    "consul_settings",
    "list_records",
    "new_deployment_id",
    "read_record",
    "record_key",
    "update_record",
    "write_record",
]

DEFAULT_TTL = 30  # seconds; Consul accepts 10..86400
DEFAULT_WAIT = 600  # seconds a second deploy waits for the lock
DEFAULT_LOCK_DELAY = 15  # seconds; Consul's default
LOCK_KEY = "hecate/locks/{environment}"
RECORD_PREFIX = "hecate/deployments"
MAX_RECORD = 512 * 1024  # Consul's default kv_max_value_size
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class LockError(CommandExecutionError):
    """The lock could not be taken or kept."""


class LockTimeout(LockError):
    """Another holder kept the lock past our timeout. ``holder`` describes it (a dict, may be empty)."""

    def __init__(self, message, holder=None):
        super().__init__(message)
        self.holder = holder or {}


class LockLost(LockError):
    """Our session ended (not renewed in time, destroyed by an operator): stop writing."""


class RecordError(CommandExecutionError):
    """A deployment record could not be written or read."""


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
    ``hecatelib.secret_refs.TimeoutSession``), anything else its type and scrubbed text."""
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


# -- configuration ---------------------------------------------------------------------------------
# The pillar section hecate:consul: the Consul connection (hecatelib.secret_refs.consul_client), the deploy lock
# and the deployment records, plus the external services the hecate_consul state registers.
CONSUL_SCHEMA = Map(
    {
        "external_services": consul_services.SERVICES,  # registered by the hecate_consul state
        "address": Str(pattern=r"^https?://[A-Za-z0-9.\[\]:_-]+(:\d+)?/?$", what="Consul address (http(s)://host:port)"),
        "token": Secret(),
        "verify": Either("must be true, false or the path of a CA bundle", Bool(), AbsPath()),
        "datacenter": Str(pattern=r"^[a-z0-9]([a-z0-9_-]{0,62})$", what="datacenter name"),
        "allow_insecure_endpoint": Field(Bool(), default=False),
        "lock": Field(
            Map(
                {
                    "key": Field(Str(pattern=r"^[A-Za-z0-9_./{}-]+$", what="KV key"), default=LOCK_KEY),
                    "ttl": Field(Int(10, 86400, "integer (seconds)"), default=DEFAULT_TTL),
                    "wait": Field(Int(0, 86400, "integer (seconds)"), default=DEFAULT_WAIT),
                    "lock_delay": Field(Int(0, 60, "integer (seconds)"), default=DEFAULT_LOCK_DELAY),
                }
            ),
            default=dict,
        ),
        "deployments": Field(
            Map({"prefix": Field(Str(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", what="KV prefix"), default=RECORD_PREFIX)}),
            default=dict,
        ),
    }
)


def consul_settings(hecate=None, opts=None):
    """Connection + lock settings: pillar ``hecate:consul`` (validated, see ``CONSUL_SCHEMA``) over the
    master's ``hecate_ext_pillar:consul``. Returns a dict for :func:`hecatelib.secret_refs.consul_client` plus
    ``lock`` (``key``, ``ttl``, ``wait``, ``lock_delay``) and ``deployments`` (``prefix``)."""
    base = dict(((opts or {}).get("hecate_ext_pillar") or {}).get("consul") or {})
    section = dict(((hecate or {}).get("consul")) or {})
    environment = ((hecate or {}).get("global") or {}).get("environment") or "production"
    out = {**base, **{k: v for k, v in section.items() if k not in ("lock", "deployments") and v is not None}}
    if section.get("datacenter"):
        out["dc"] = section["datacenter"]
    lock = {"key": LOCK_KEY, "ttl": DEFAULT_TTL, "wait": DEFAULT_WAIT, "lock_delay": DEFAULT_LOCK_DELAY}
    lock.update({k: v for k, v in (section.get("lock") or {}).items() if v is not None})
    lock["key"] = lock["key"].format(environment=environment)
    deployments = {"prefix": RECORD_PREFIX, **(section.get("deployments") or {})}
    out["lock"], out["deployments"], out["environment"] = lock, deployments, environment
    return out


# -- deployment records ----------------------------------------------------------------------------
def new_deployment_id(moment=None):
    """A sortable, unique id: ``20250131T120000Z-1a2b3c``."""
    return (moment or _now()).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def record_key(environment, deployment_id, prefix=RECORD_PREFIX):
    for what, value in (("environment", environment), ("deployment id", deployment_id)):
        if not isinstance(value, str) or not _NAME.match(value):
            raise RecordError(f"{what} {value!r} is not a valid key segment (letters, digits, '_', '.', '-')")
    return f"{prefix.strip('/')}/{environment}/{deployment_id}"


def _encode(record):
    try:
        text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise RecordError(f"the deployment record is not JSON-serialisable: {exc}") from None
    if len(text.encode()) > MAX_RECORD:
        raise RecordError(f"the deployment record is {len(text.encode())} bytes; Consul KV takes at most {MAX_RECORD}")
    return text


def write_record(client, environment, record, deployment_id=None, prefix=RECORD_PREFIX):
    """Create ``<prefix>/<environment>/<id>`` with ``cas=0`` (never overwrites). Returns the stored record
    (``id``, ``environment``, ``recorded_at`` and ``schema`` filled in)."""
    if not isinstance(record, dict):
        raise RecordError("a deployment record must be a mapping")
    deployment_id = deployment_id or record.get("id") or new_deployment_id()
    key = record_key(environment, deployment_id, prefix)
    stored = {"schema": 1, "recorded_at": _iso(), **record, "id": deployment_id, "environment": environment}
    try:
        ok = client.kv.put(key, _encode(stored), cas=0)
    except _consul_errors() as exc:
        raise RecordError(f"writing deployment record {key}: {_why(exc, client)}") from None
    if not ok:
        raise RecordError(f"deployment record {key} already exists; records are never overwritten")
    return stored


def read_record(client, environment, deployment_id, prefix=RECORD_PREFIX):
    """The record, or None. Adds ``_modify_index`` (for a check-and-set update)."""
    key = record_key(environment, deployment_id, prefix)
    try:
        _, entry = client.kv.get(key)
    except _consul_errors() as exc:
        raise RecordError(f"reading deployment record {key}: {_why(exc, client)}") from None
    if entry is None:
        return None
    return _decode(entry)


def _decode(entry):
    try:
        record = json.loads((entry.get("Value") or b"null").decode("utf-8"))
    except ValueError:
        raise RecordError(f"deployment record {entry['Key']} is not JSON") from None
    if not isinstance(record, dict):
        raise RecordError(f"deployment record {entry['Key']} is not a JSON object")
    record["_modify_index"] = entry["ModifyIndex"]
    return record


def update_record(client, environment, deployment_id, changes, prefix=RECORD_PREFIX, attempts=5):
    """Merge ``changes`` (a dict, or a function record -> record) into an existing record with
    ``cas=<ModifyIndex>``, re-reading on a conflict up to ``attempts`` times. Returns the new record."""
    key = record_key(environment, deployment_id, prefix)
    for _ in range(attempts):
        current = read_record(client, environment, deployment_id, prefix)
        if current is None:
            raise RecordError(f"deployment record {key} does not exist")
        index = current.pop("_modify_index")
        updated = changes(dict(current)) if callable(changes) else {**current, **changes}
        updated.update(id=deployment_id, environment=environment)
        try:
            if client.kv.put(key, _encode(updated), cas=index):
                return updated
        except _consul_errors() as exc:
            raise RecordError(f"updating deployment record {key}: {_why(exc, client)}") from None
    raise RecordError(f"deployment record {key} kept changing under us ({attempts} check-and-set conflicts)")


def list_records(client, environment, prefix=RECORD_PREFIX, status=None, limit=None):
    """Records of ``environment``, oldest first (ids sort by time); ``status`` filters; ``limit`` keeps
    the newest N. With ``limit`` only the keys are listed and records are read newest first until N
    match: every deploy asks for the last success, and records hold whole trees (a long history at
    1000 routes is megabytes), so that costs a key listing and a read or two, not the whole history."""
    base = f"{prefix.strip('/')}/{environment}/"
    try:
        if limit:
            _, keys = client.kv.get(base, keys=True, separator="/")
            found = []
            for key in sorted((k for k in keys or [] if not k.endswith("/")), reverse=True):
                _, entry = client.kv.get(key)
                record = _decode(entry) if entry else None
                if record is not None and status in (None, record.get("status")):
                    found.append(record)
                    if len(found) == int(limit):
                        break
            return found[::-1]
        _, entries = client.kv.get(base, recurse=True)
    except _consul_errors() as exc:
        raise RecordError(f"listing deployment records {base}: {_why(exc, client)}") from None
    records = [_decode(e) for e in sorted(entries or [], key=lambda e: e["Key"]) if "/" not in e["Key"][len(base) :]]
    if status is not None:
        records = [r for r in records if r.get("status") == status]
    return records
