"""Deployment records (and drift reports) in Consul KV, of any size.

A record lives at ``<prefix>/<environment>/<id>`` (JSON), created with ``cas=0`` so it is never
overwritten, and updated with ``cas=<ModifyIndex>`` (read-modify-write). Consul refuses a value over 512 KiB
(``kv_max_value_size``), and a record holds the whole deployed tree (5000 routes: ~700 KB of JSON), so its
large fields are stored apart as blobs: zlib-compressed JSON at ``<prefix>/<environment>.blobs/<sha256>/<n>``,
in chunks under the limit, addressed by their content. The record keeps ``{"$blob": <sha256>, "bytes": n}``
in their place. Equal trees share one blob: a no-op deploy writes no tree again (one ``cas=0`` put that
Consul declines), and comparing two runs' trees compares two digests. Blobs live beside the records'
prefix, not under it, so listing the records never reads them.

``tree`` and ``state`` (what a rollback returns to) are always blobs; ``stages`` becomes one only when the
record would still be too large (a first deploy of thousands of routes lists every route it added).
Reading resolves ``stages``; ``tree`` and ``state`` only when asked (:meth:`Records.read` ``full=True``).
Records written before blobs (schema 1) hold their tree inline and read the same way.
"""

import datetime
import hashlib
import json
import re
import zlib

from hecatelib.consul.lock import _consul_errors, _why
from hecatelib.engine.run import canonical as _canonical
from hecatelib.engine.run import digest, new_run_id
from hecatelib.errors import RecordError

RECORD_PREFIX = "hecate/deployments"
MAX_VALUE = 512 * 1024  # Consul's default kv_max_value_size
ALWAYS_BLOBS = ("tree", "state")
SCHEMA = 2
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment=None):
    return (moment or _now()).strftime("%Y-%m-%dT%H:%M:%SZ")


new_deployment_id = new_run_id


def record_key(environment, deployment_id, prefix=RECORD_PREFIX):
    for what, value in (("environment", environment), ("deployment id", deployment_id)):
        if not isinstance(value, str) or not _NAME.match(value):
            raise RecordError(f"{what} {value!r} is not a valid key segment (letters, digits, '_', '.', '-')")
    return f"{prefix.strip('/')}/{environment}/{deployment_id}"


def canonical(value):
    try:
        return _canonical(value)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"the deployment record is not JSON-serialisable: {exc}") from None


def is_blob(value):
    return isinstance(value, dict) and set(value) == {"$blob", "bytes"}


def shown_status(record, holder):
    """The one status an operator is shown for a record, wherever it is shown (``hecate.history``,
    ``hecate.show``): ``running`` only while its run holds the deploy lock (``holder``: the run id in the
    lock now, or None). A record left ``running`` without the lock is ``interrupted`` (Ctrl-C, ``kill -9``,
    a crashed master), before the next run that takes the lock marks it so (:meth:`Records.mark_interrupted`)."""
    status = record.get("status")
    return "interrupted" if status == "running" and record.get("id") != holder else status


def left_in_place(record):
    """Whether a run that did not succeed may have left changes live: not when its undo finished without a
    problem, nor when it changed nothing; yes when it changed something and was not fully undone, and when
    its record cannot say (a run killed before it recorded its steps: still ``running``, or marked
    interrupted by the run that took the lock over)."""
    rollback = record.get("rollback")
    if isinstance(rollback, dict) and not rollback.get("problems"):
        return False
    stages = record.get("stages") or {}
    if not stages:
        return record.get("status") == "running" or bool(record.get("interrupted_by"))
    return any(stage.get("changed") for stage in stages.values() if isinstance(stage, dict))


def rollback_choice(records):
    """What ``hecate.rollback`` without ``id`` returns to, from the records oldest first: ``(target, undone)``.

    Live, as the records say, is the last success's tree, unless a run after it may have left changes in
    place (:func:`left_in_place`): then live is partly that run's, and the target is the last success
    itself. Otherwise the target is the newest success whose tree differs from the last success's (a no-op
    deploy is no point to return to), which undoes the last success. ``undone`` lists the runs after the
    last success when there are any (they failed and left nothing: live is already the last success's
    tree, so the operator most likely meant to undo them, which already happened): confirm first. Runs of
    kind ``rollback`` after the last success are left out: a rollback again is their retry.
    Raises ValueError when there is nothing to return to."""
    successes = [r for r in records if r.get("status") == "success"]
    if not successes:
        raise ValueError("no successful deployment recorded: nothing to roll back to")
    last = successes[-1]
    # a rollback that did not succeed only tried to return to an earlier record: running it again is
    # what it meant, so it neither makes live another tree nor needs a confirmation
    after = [r for r in records[records.index(last) + 1 :] if r.get("kind") != "rollback"]
    if any(left_in_place(r) for r in after):
        return last, []
    target = next((r for r in reversed(successes[:-1]) if r.get("tree_digest") != last.get("tree_digest")), None)
    if target is None:
        raise ValueError("every successful deployment recorded deploys what is live now: nothing to roll back to")
    return target, after


class Records:
    """The records of one environment: ``Records(client, "production")``; ``prefix`` for drift reports."""

    def __init__(self, client, environment, prefix=RECORD_PREFIX, max_value=MAX_VALUE):
        self.client = client
        self.environment = environment
        self.prefix = prefix.strip("/")
        self.max_value = max_value
        self.base = f"{self.prefix}/{environment}/"
        self.blobs = f"{self.prefix}/{environment}.blobs/"

    def key(self, deployment_id):
        return record_key(self.environment, deployment_id, self.prefix)

    def _kv(self, what, key, call):
        try:
            return call()
        except _consul_errors() as exc:
            raise RecordError(f"{what} {key}: {_why(exc, self.client)}") from None

    # -- blobs ------------------------------------------------------------------------------------------
    def put_blob(self, value):
        """Store ``value`` by its content (once: ``cas=0`` never overwrites); returns the reference."""
        text = canonical(value).encode()
        sha = hashlib.sha256(text).hexdigest()
        packed = zlib.compress(text, 6)
        size = self.max_value - 1024  # a chunk stays under Consul's value limit
        chunks = [packed[i : i + size] for i in range(0, len(packed), size)] or [b""]
        for n, chunk in enumerate(chunks):
            key = f"{self.blobs}{sha}/{n:04d}"
            self._kv("writing blob", key, lambda k=key, c=chunk: self.client.kv.put(k, c, cas=0))
        return {"$blob": sha, "bytes": len(text)}

    def get_blob(self, ref):
        sha = ref["$blob"]
        key = f"{self.blobs}{sha}/"
        _, entries = self._kv("reading blob", key, lambda: self.client.kv.get(key, recurse=True))
        packed = b"".join(e["Value"] or b"" for e in sorted(entries or [], key=lambda e: e["Key"]))
        try:
            text = zlib.decompress(packed)
        except zlib.error:
            raise RecordError(f"blob {sha} is missing or damaged") from None
        if hashlib.sha256(text).hexdigest() != sha:
            raise RecordError(f"blob {sha} does not match its digest")
        return json.loads(text)

    def _encode(self, record):
        """The record's JSON, its large fields stored as blobs first (before the record that names them)."""
        stored = dict(record)
        for name in ALWAYS_BLOBS:
            if stored.get(name) is not None and not is_blob(stored[name]):
                stored[name] = self.put_blob(stored[name])
        text = canonical(stored)
        if len(text.encode()) > self.max_value and stored.get("stages") and not is_blob(stored["stages"]):
            stored["stages"] = self.put_blob(stored["stages"])
            text = canonical(stored)
        if len(text.encode()) > self.max_value:
            raise RecordError(f"the deployment record is {len(text.encode())} bytes even with its tree and stages apart")
        return text

    def resolve(self, record, *names):
        """``record`` with the blobs of ``names`` read in place."""
        for name in names:
            if is_blob(record.get(name)):
                record[name] = self.get_blob(record[name])
        return record

    def _decode(self, entry, full=False):
        """``full``: True for every blob, or the names of the blobs to read (``("state",)``)."""
        try:
            record = json.loads((entry.get("Value") or b"null").decode("utf-8"))
        except ValueError:
            raise RecordError(f"deployment record {entry['Key']} is not JSON") from None
        if not isinstance(record, dict):
            raise RecordError(f"deployment record {entry['Key']} is not a JSON object")
        record["_modify_index"] = entry["ModifyIndex"]
        if "nomad_versions" in record and "state" not in record:  # schema 1 kept only Nomad's job versions
            record["state"] = {"nomad": {"versions": record.pop("nomad_versions")}}
        if record.get("tree") is not None and "tree_digest" not in record:
            record["tree_digest"] = record["tree"]["$blob"] if is_blob(record["tree"]) else digest(record["tree"])
        return self.resolve(record, "stages", *(ALWAYS_BLOBS if full is True else full or ()))

    # -- records ----------------------------------------------------------------------------------------
    def write(self, record, deployment_id=None):
        """Create the record with ``cas=0`` (never overwrites). Returns it as stored (``id``,
        ``environment``, ``recorded_at`` and ``schema`` filled in)."""
        if not isinstance(record, dict):
            raise RecordError("a deployment record must be a mapping")
        deployment_id = deployment_id or record.get("id") or new_deployment_id()
        key = self.key(deployment_id)
        stored = {"schema": SCHEMA, "recorded_at": iso(), **record, "id": deployment_id, "environment": self.environment}
        if not self._kv("writing deployment record", key, lambda: self.client.kv.put(key, self._encode(stored), cas=0)):
            raise RecordError(f"deployment record {key} already exists; records are never overwritten")
        return stored

    def read(self, deployment_id, full=False):
        """The record, or None; ``full``: with its tree and state (or the names of the blobs to read).
        Adds ``_modify_index``."""
        key = self.key(deployment_id)
        _, entry = self._kv("reading deployment record", key, lambda: self.client.kv.get(key))
        return None if entry is None else self._decode(entry, full)

    def update(self, deployment_id, changes, attempts=5):
        """Merge ``changes`` (a dict, or a function record -> record, or None for no change) into an existing
        record with ``cas=<ModifyIndex>``, re-reading on a conflict up to ``attempts`` times. Returns the new
        record (None when the function changed nothing)."""
        key = self.key(deployment_id)
        for _ in range(attempts):
            current = self.read(deployment_id)
            if current is None:
                raise RecordError(f"deployment record {key} does not exist")
            index = current.pop("_modify_index")
            current.pop("tree_digest", None)
            updated = changes(dict(current)) if callable(changes) else {**current, **changes}
            if updated is None:  # the function found nothing to change
                return None
            updated.update(id=deployment_id, environment=self.environment)
            if self._kv("updating deployment record", key, lambda u=updated, i=index: self.client.kv.put(key, self._encode(u), cas=i)):
                return updated
        raise RecordError(f"deployment record {key} kept changing under us ({attempts} check-and-set conflicts)")

    def mark_interrupted(self, deployment_id, by=None, holder=None):
        """A run whose process ended while it held the deploy lock (``kill -9``, a crashed master) becomes
        ``interrupted``: what the lock's ``dead_holder`` names. Only a record still ``running`` changes (a run
        that finished meanwhile keeps its outcome). ``by``: the run that took the lock; ``holder``: the dead
        holder as the lock named it. Returns the updated record, or None when there was none to change."""
        if self.read(deployment_id) is None:  # it died before writing its record
            return None
        how = (holder or {}).get("how") or "its process ended without releasing the deploy lock"
        where = ", ".join(f"{k} {holder[k]}" for k in ("host", "pid") if (holder or {}).get(k))

        def interrupted(record):
            if record.get("status") != "running":
                return None
            error = f"interrupted: {how}" + (f" ({where})" if where else "") + (f"; run {by} took the lock over" if by else "")
            return {**record, "status": "interrupted", "error": error, "interrupted_at": iso(), "interrupted_by": by}

        return self.update(deployment_id, interrupted)

    def list(self, status=None, limit=None):
        """Records, oldest first (ids sort by time), without their trees; ``status`` filters; ``limit``
        keeps the newest N, reading newest first until N match (every deploy asks for the last success:
        a key listing and a read or two, not the whole history)."""
        if limit:
            _, keys = self._kv("listing deployment records", self.base, lambda: self.client.kv.get(self.base, keys=True, separator="/"))
            found = []
            for key in sorted((k for k in keys or [] if not k.endswith("/")), reverse=True):
                _, entry = self._kv("reading deployment record", key, lambda k=key: self.client.kv.get(k))
                record = self._decode(entry) if entry else None
                if record is not None and status in (None, record.get("status")):
                    found.append(record)
                    if len(found) == int(limit):
                        break
            return found[::-1]
        _, entries = self._kv("listing deployment records", self.base, lambda: self.client.kv.get(self.base, recurse=True))
        records = [self._decode(e) for e in sorted(entries or [], key=lambda e: e["Key"]) if "/" not in e["Key"][len(self.base) :]]
        return [r for r in records if status is None or r.get("status") == status]

    def last_success(self):
        found = self.list(status="success", limit=1)
        return found[-1] if found else None

    def delete(self, deployment_id):
        key = self.key(deployment_id)
        self._kv("deleting record", key, lambda: self.client.kv.delete(key))
