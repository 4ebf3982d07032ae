"""A Consul HTTP API v1 emulator: KV (cas, acquire/release, blocking queries), sessions (TTL, renew,
destroy, invalidation with lock-delay), ACL tokens, ``X-Consul-Index``.

Consul publishes no OpenAPI document, so :class:`ConsulRequestChecker` encodes the request shapes of
the HTTP API documentation (https://developer.hashicorp.com/consul/api-docs/kv and .../session) as used
by py-consul (``import consul``): the method of each endpoint, the query parameters it takes, their
types, and the session-create body. Anything else lands in ``emulator.violations``.

Faults: ``inject()`` from the base class (status, delay), and :meth:`ConsulEmulator.stall`: matching
requests get no answer at all (a hung agent, a half-open connection) until :meth:`ConsulEmulator.unstall`
or ``stop()``; a stalled request is never applied and its connection is closed without an answer.

Time: the emulator has its own clock (``clock()``), running ``speed`` times faster than the wall clock
and movable with :meth:`ConsulEmulator.advance`, so a 10 s session TTL (Consul's minimum) can expire in
half a second of a test. Blocking queries (``?index=&wait=``) wait in wall time.

Sessions end as Consul ends them (hashicorp/consul):

- A TTL session is invalidated ``SessionTTLMultiplier`` (2) times its TTL after its creation or last
  renewal: agent/consul/session_ttl.go ``createSessionTimer`` (``ttl = ttl * structs.SessionTTLMultiplier``,
  reset by every renew), the constant in agent/structs/structs.go. Consul's documented contract is only
  "not before the TTL"; ``ttl_multiplier`` sets the factor (1.0 models that earliest expiry).
- Any invalidation (TTL, ``session/destroy``, a failed check) releases or deletes the session's keys and
  puts each under the session's lock-delay, capped at ``structs.MaxLockDelay`` (60 s):
  agent/consul/state/session.go ``deleteSessionTxn`` (``s.lockDelay.SetExpiration``). A clean
  ``?release=`` sets none. During the delay ``?acquire=`` answers false: agent/consul/kvs_endpoint.go
  ``kvsPreApply`` ("Rejecting lock of key due to lock-delay").
- ``LockDelay`` defaults to 15 s and "0s" disables it: agent/session_endpoint.go ``SessionCreate`` and
  ``FixupLockDelay`` (a duration below 1000 ns is read as seconds).

    with ConsulEmulator(tokens={"root": "write"}) as consul_emu:
        client = consul.Consul(host="127.0.0.1", port=consul_emu.port, token="root")
"""

import base64
import io
import json
import re
import threading
import time
import uuid
from urllib.parse import urlsplit

import consul

from devstack.emulators.base import Emulator, Response

MAX_VALUE = 512 * 1024  # Consul's default kv_max_value_size
MAX_WAIT = 600.0  # Consul caps a blocking query's wait at 10 minutes
TTL_MIN, TTL_MAX = 10.0, 86400.0
SESSION_TTL_MULTIPLIER = 2.0  # agent/structs/structs.go SessionTTLMultiplier
MAX_LOCK_DELAY = 60.0  # agent/structs/structs.go MaxLockDelay (seconds)
DEFAULT_LOCK_DELAY = "15s"  # agent/session_endpoint.go SessionCreate
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))+$")
_UINT = re.compile(r"^\d+$")

_COMMON = {"dc", "ns", "partition"}
_READ = _COMMON | {"index", "wait", "consistent", "stale", "cached"}
# endpoint kind -> method -> accepted query parameters (documented ones)
ENDPOINTS = {
    "kv": {
        "GET": _READ | {"recurse", "keys", "separator", "raw"},
        "PUT": _COMMON | {"cas", "flags", "acquire", "release"},
        "DELETE": _COMMON | {"recurse", "cas"},
    },
    "session/create": {"PUT": _COMMON},
    "session/destroy": {"PUT": _COMMON},
    "session/renew": {"PUT": _COMMON},
    "session/info": {"GET": _READ},
    "session/node": {"GET": _READ},
    "session/list": {"GET": _READ},
    "status/leader": {"GET": set()},
    "agent/self": {"GET": set()},
}
SESSION_FIELDS = {"lockdelay", "name", "node", "checks", "nodechecks", "servicechecks", "behavior", "ttl", "namespace"}


def parse_duration(text):
    """A Go duration ("10s", "1m30s", "150ms") -> seconds; None when malformed."""
    if not isinstance(text, str) or not _DURATION.match(text):
        return None
    return sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text))


def endpoint_of(path):
    """``/v1/kv/a/b`` -> ("kv", "a/b"); ``/v1/session/info/<id>`` -> ("session/info", "<id>")."""
    if path.startswith("/v1/kv/") or path == "/v1/kv":
        return "kv", path[len("/v1/kv/") :]
    for kind in ENDPOINTS:
        prefix = f"/v1/{kind}"
        if path == prefix or path.startswith(prefix + "/"):
            return kind, path[len(prefix) + 1 :]
    return None, None


class Consul17(consul.Consul):
    """py-consul as it was up to 1.7.1, for tests on the installed one: ``base.Consul.__init__`` takes no
    ``connections_timeout`` and ``std.HTTPClient`` calls requests without a timeout (criteo/py-consul
    consul/base.py, consul/std.py). On 1.8.0, ``connections_timeout=None`` ("disables the timeout") is
    exactly that behaviour."""

    def __init__(self, *args, **kwargs):
        if "connections_timeout" in kwargs:
            raise TypeError("__init__() got an unexpected keyword argument 'connections_timeout'")
        super().__init__(*args, connections_timeout=None, **kwargs)


class ConsulRequestChecker:
    """Request shapes from Consul's HTTP API documentation (no vendor OpenAPI exists)."""

    def check(self, request, base_path=""):
        kind, rest = endpoint_of(request.path)
        if kind is None:
            return [f"{request.method} {request.path}: not a Consul API endpoint this emulator knows"]
        methods = ENDPOINTS[kind]
        if request.method not in methods:
            return [f"{request.method} /v1/{kind}: method not allowed (Consul answers 405)"]
        problems = []
        allowed = methods[request.method]
        for name in request.query:
            if name == "token":
                problems.append(f"{request.method} /v1/{kind}: token in the query string (use X-Consul-Token)")
            elif name not in allowed:
                problems.append(f"{request.method} /v1/{kind}: unknown query parameter {name!r}")
        for name in ("index", "cas", "flags"):
            if name in request.query and not _UINT.match(request.arg(name) or ""):
                problems.append(f"{request.method} /v1/{kind}: {name}={request.arg(name)!r} is not an unsigned integer")
        if "wait" in request.query:
            if parse_duration(request.arg("wait")) is None:
                problems.append(f"{request.method} /v1/{kind}: wait={request.arg('wait')!r} is not a duration")
            if "index" not in request.query:
                problems.append(f"{request.method} /v1/{kind}: wait without index (ignored by Consul)")
        if kind == "kv":
            if rest.startswith("/"):
                problems.append(f"{request.method} /v1/kv/{rest}: key starts with a slash")
            if request.method == "PUT" and not rest:
                problems.append("PUT /v1/kv/: missing key name")
            if "acquire" in request.query and "release" in request.query:
                problems.append("PUT /v1/kv: conflicting flags acquire and release")
        elif kind in ("session/destroy", "session/renew", "session/info", "session/node") and not rest:
            problems.append(f"{request.method} /v1/{kind}: missing path parameter")
        elif kind == "session/create":
            problems.extend(self._session_body(request.body))
        return problems

    @staticmethod
    def _session_body(body):
        if body in (None, ""):
            return []
        if not isinstance(body, dict):
            return ["PUT /v1/session/create: body must be a JSON object"]
        problems = []
        for name, value in body.items():
            low = name.lower()
            if low not in SESSION_FIELDS:
                problems.append(f"PUT /v1/session/create: unknown field {name!r}")
            elif low == "behavior" and value not in ("release", "delete"):
                problems.append(f"PUT /v1/session/create: Behavior must be release or delete, got {value!r}")
            elif low == "ttl" and (not isinstance(value, str) or parse_duration(value) is None):
                problems.append(f"PUT /v1/session/create: TTL must be a duration string, got {value!r}")
            elif low == "lockdelay" and not (
                (isinstance(value, str) and parse_duration(value) is not None)
                or (isinstance(value, (int, float)) and not isinstance(value, bool))
            ):
                problems.append(f"PUT /v1/session/create: LockDelay must be a duration, got {value!r}")
        return problems


class ConsulEmulator(Emulator):
    """Consul agent + server in one: state lives in ``kv``, ``sessions``, ``index``.

    ``tokens``: None disables ACLs; otherwise ``{token: policy}`` where policy is ``"write"``,
    ``"read"`` or ``{key_prefix: "read"|"write"|"deny", ..., "session": "read"|"write"}``.
    """

    name = "consul"

    def __init__(self, tokens=None, node="hecate-emu", datacenter="dc1", speed=1.0, ttl_multiplier=SESSION_TTL_MULTIPLIER):
        super().__init__()
        self.checker = ConsulRequestChecker()
        self.tokens = tokens
        self.node = node
        self.datacenter = datacenter
        self.speed = speed
        self.ttl_multiplier = ttl_multiplier  # a session ends this many TTLs after its last renewal
        self._t0 = time.monotonic()
        self._offset = 0.0
        self.index = 10  # Raft index; every write bumps it
        self.kv_index = 1
        self.kv = {}  # key -> entry dict (Value as bytes or None)
        self.tombstones = {}  # deleted key -> index of the delete
        self.sessions = {}  # id -> session dict (+ "_expires")
        self.lock_delays = {}  # key -> clock() until which acquire is refused
        self.invalidated = []  # (session id, reason) in order
        self.renew_counts = {}  # session id -> successful renewals
        self.changed = threading.Condition(self.lock)
        self._raw = threading.local()
        self.stalls = []  # [{"method", "path", "times"}]: requests that get no answer
        self.stalled = []  # (method, path) of every request held without an answer
        self._unstalled = threading.Event()
        self.route("GET", r"/v1/kv/(?P<key>.*)", self.kv_get)
        self.route("PUT", r"/v1/kv/(?P<key>.*)", self.kv_put)
        self.route("DELETE", r"/v1/kv/(?P<key>.*)", self.kv_delete)
        self.route("PUT", r"/v1/session/create", self.session_create)
        self.route("PUT", r"/v1/session/destroy/(?P<sid>[^/]+)", self.session_destroy)
        self.route("PUT", r"/v1/session/renew/(?P<sid>[^/]+)", self.session_renew)
        self.route("GET", r"/v1/session/info/(?P<sid>[^/]+)", self.session_info)
        self.route("GET", r"/v1/session/node/(?P<node>[^/]+)", self.session_node)
        self.route("GET", r"/v1/session/list", self.session_list)
        self.route("GET", r"/v1/status/leader", lambda r: '"127.0.0.1:8300"')
        self.route("GET", r"/v1/agent/self", self.agent_self)
        add_agent_services(self)  # the agent's service catalog (block at the end of this file)

    # -- clock -----------------------------------------------------------------------------------
    def clock(self):
        return (time.monotonic() - self._t0) * self.speed + self._offset

    def advance(self, seconds):
        """Move the emulator's clock forward (sessions expire, lock-delays end)."""
        with self.lock:
            self._offset += seconds
            self._expire()
            self.changed.notify_all()

    # -- faults ----------------------------------------------------------------------------------
    def stall(self, path=None, method=None, times=1):
        """Hold the next ``times`` requests whose path matches the regex ``path`` (and ``method``) without
        an answer until :meth:`unstall` (or ``stop()``); then close their connections, unapplied."""
        with self.lock:
            self._unstalled.clear()
            self.stalls.append({"method": method, "path": re.compile(path) if path else None, "times": times})

    def unstall(self):
        with self.lock:
            self.stalls.clear()
        self._unstalled.set()

    def stop(self):
        self.unstall()
        super().stop()

    def _stalls(self, http):
        path = urlsplit(http.path).path
        with self.lock:
            for stall in self.stalls:
                if stall["times"] > 0 and stall["method"] in (None, http.command) and (stall["path"] is None or stall["path"].search(path)):
                    stall["times"] -= 1
                    self.stalled.append((http.command, path))
                    return True
        return False

    # -- plumbing --------------------------------------------------------------------------------
    def _dispatch(self, http):
        if self._stalls(http):
            self._unstalled.wait(120)  # bounded, so a forgotten stall cannot keep a thread for ever
            http.close_connection = True
            return
        # Keep the raw body: a KV value is bytes, not JSON (the base class decodes JSON bodies).
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        self._raw.body = raw
        original, http.rfile = http.rfile, io.BytesIO(raw)
        try:
            super()._dispatch(http)
        finally:
            http.rfile = original  # the connection is kept alive: later requests read the socket again

    def _send(self, http, response):
        # Every answer carries the agent headers; 4xx/5xx bodies are plain text as in Consul.
        response.headers.setdefault("X-Consul-Knownleader", "true")
        response.headers.setdefault("X-Consul-Lastcontact", "0")
        if response.status >= 400 and isinstance(response.body, (dict, list)):
            body = response.body.get("error") if isinstance(response.body, dict) else None
            response.body = body if isinstance(body, str) else json.dumps(response.body)
        if response.status >= 400:
            response.headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        super()._send(http, response)

    def not_found(self, request):
        return Response(404, f"no route for {request.method} {request.path}", {"Content-Type": "text/plain"})

    def _bump(self):
        self.index += 1
        return self.index

    def _notify(self):
        self.changed.notify_all()

    def _expire(self):
        now = self.clock()
        for sid, session in list(self.sessions.items()):
            expires = session.get("_expires")
            if expires is not None and now >= expires:
                self._invalidate(sid, "ttl expired")

    def _invalidate(self, sid, reason):
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        self.invalidated.append((sid, reason))
        idx = self._bump()
        delay_until = self.clock() + min(session["LockDelay"] / 1e9, MAX_LOCK_DELAY)
        for key, entry in list(self.kv.items()):
            if entry.get("Session") != sid:
                continue
            if session["LockDelay"]:
                self.lock_delays[key] = delay_until
            if session["Behavior"] == "delete":
                del self.kv[key]
                self.tombstones[key] = idx
            else:
                entry.pop("Session", None)
                entry["ModifyIndex"] = idx
            self.kv_index = idx
        self._notify()

    # -- ACL -------------------------------------------------------------------------------------
    def authenticate(self, request):
        with self.lock:
            self._expire()
        if self.tokens is None:
            return None
        kind, rest = endpoint_of(request.path)
        if kind == "status/leader":
            return None
        token = request.headers.get("x-consul-token")
        auth = request.headers.get("authorization", "")
        if token is None and auth.lower().startswith("bearer "):
            token = auth[7:]
        if not token:
            return self._denied("anonymous token", kind, rest, request)
        if token not in self.tokens:
            return Response(403, "ACL not found")
        return self._allowed(self.tokens[token], kind, rest, request)

    def _allowed(self, policy, kind, rest, request):
        need = "read" if request.method == "GET" else "write"
        if kind == "kv":
            level = self._level(policy, rest)
            resource = f'key:{need} on "{rest}"'
        elif kind.startswith("session"):
            level = policy if isinstance(policy, str) else policy.get("session", "deny")
            resource = f'session:{need} on "{self.node}"'
        else:
            level = policy if isinstance(policy, str) else policy.get("agent", "deny")
            resource = f'agent:{need} on "{self.node}"'
        rank = {"deny": 0, "read": 1, "write": 2}
        if rank.get(level, 0) >= rank[need]:
            return None
        return Response(403, f"Permission denied: token lacks permission '{resource}'")

    @staticmethod
    def _level(policy, key):
        if isinstance(policy, str):
            return policy
        best, level = -1, "deny"
        for prefix, value in policy.items():
            if prefix in ("session", "agent"):
                continue
            if key.startswith(prefix) and len(prefix) > best:
                best, level = len(prefix), value
        return level

    def _denied(self, who, kind, rest, request):
        if self.tokens and "" in self.tokens:  # an explicit anonymous policy
            return self._allowed(self.tokens[""], kind, rest, request)
        return Response(403, f"Permission denied: {who} lacks permission")

    # -- helpers ---------------------------------------------------------------------------------
    def _dc_error(self, request):
        dc = request.arg("dc")
        if dc and dc != self.datacenter:
            return Response(500, "No path to datacenter")
        return None

    def _block(self, request, current):
        """Blocking query: wait until ``current()`` passes ``?index=`` or ``wait`` elapses (wall time)."""
        if "index" not in request.query:
            return current()
        wanted = int(request.arg("index"))
        wait = parse_duration(request.arg("wait")) if "wait" in request.query else 300.0
        deadline = time.monotonic() + min(wait or 0.0, MAX_WAIT)
        while True:
            self._expire()
            idx = current()
            if idx > wanted:
                return idx
            left = deadline - time.monotonic()
            if left <= 0:
                return idx
            self.changed.wait(min(left, 0.05))

    def _answer(self, status, body, idx, content_type="application/json"):
        return Response(status, body, {"X-Consul-Index": str(max(1, idx)), "Content-Type": content_type})

    @staticmethod
    def _public(entry):
        out = {k: v for k, v in entry.items() if k != "Value"}
        value = entry.get("Value")
        out["Value"] = base64.b64encode(value).decode() if value is not None else None
        return out

    # -- KV ----------------------------------------------------------------------------------------
    def _matching(self, key, recurse):
        if recurse:
            return [self.kv[k] for k in sorted(self.kv) if k.startswith(key)]
        return [self.kv[key]] if key in self.kv else []

    def _kv_index(self, key, recurse):
        if recurse:
            found = [e["ModifyIndex"] for k, e in self.kv.items() if k.startswith(key)]
            found += [i for k, i in self.tombstones.items() if k.startswith(key)]
            return max(found) if found else self.kv_index
        entry = self.kv.get(key)
        return entry["ModifyIndex"] if entry else self.kv_index

    def kv_get(self, request):
        error = self._dc_error(request)
        if error:
            return error
        key = request.params["key"]
        recurse = "recurse" in request.query or "keys" in request.query
        idx = self._block(request, lambda: self._kv_index(key, recurse))
        entries = self._matching(key, recurse)
        if not entries:
            return self._answer(404, None, idx)
        if "keys" in request.query:
            separator = request.arg("separator")
            keys = []
            for entry in entries:
                name = entry["Key"]
                if separator:
                    cut = name.find(separator, len(key))
                    if cut >= 0:
                        name = name[: cut + len(separator)]
                if name not in keys:
                    keys.append(name)
            return self._answer(200, keys, idx)
        if "raw" in request.query:
            return self._answer(200, entries[0].get("Value") or b"", idx, "application/octet-stream")
        return self._answer(200, [self._public(e) for e in entries], idx)

    def kv_put(self, request):
        error = self._dc_error(request)
        if error:
            return error
        key = request.params["key"]
        if not key:
            return Response(400, "Missing key name")
        value = getattr(self._raw, "body", b"")
        if len(value) > MAX_VALUE:
            return Response(413, f"Value exceeds {MAX_VALUE} byte limit")
        acquire, release = request.arg("acquire"), request.arg("release")
        if acquire and release:
            return Response(400, "Conflicting flags: acquire&release")
        entry = self.kv.get(key)
        if "cas" in request.query:
            cas = int(request.arg("cas"))
            if (cas == 0 and entry is not None) or (cas and (entry is None or entry["ModifyIndex"] != cas)):
                return self._answer(200, False, self.index)
        flags = int(request.arg("flags", "0") or 0)
        if acquire:
            if acquire not in self.sessions:
                return Response(500, f'invalid session "{acquire}"')
            if entry is not None and entry.get("Session") and entry["Session"] != acquire:
                return self._answer(200, False, self.index)
            if self.lock_delays.get(key, -1) > self.clock():
                return self._answer(200, False, self.index)
        if release and (entry is None or entry.get("Session") != release):
            return self._answer(200, False, self.index)
        idx = self._bump()
        if entry is None:
            entry = {"LockIndex": 0, "Key": key, "Flags": flags, "Value": None, "CreateIndex": idx}
            self.kv[key] = entry
            self.tombstones.pop(key, None)
        entry["Flags"] = flags
        entry["Value"] = value if value else None
        entry["ModifyIndex"] = idx
        if acquire:
            if entry.get("Session") != acquire:
                entry["LockIndex"] += 1
            entry["Session"] = acquire
        if release:
            entry.pop("Session", None)
        self.kv_index = idx
        self._notify()
        return self._answer(200, True, idx)

    def kv_delete(self, request):
        error = self._dc_error(request)
        if error:
            return error
        key = request.params["key"]
        recurse = "recurse" in request.query
        if "cas" in request.query:
            cas = int(request.arg("cas"))
            entry = self.kv.get(key)
            if recurse or cas == 0 or entry is None or entry["ModifyIndex"] != cas:
                return self._answer(200, False, self.index)
        targets = [k for k in self.kv if k.startswith(key)] if recurse else [key]
        idx = self._bump()
        for name in targets:
            if self.kv.pop(name, None) is not None:
                self.tombstones[name] = idx
        self.kv_index = idx
        self._notify()
        return self._answer(200, True, idx)

    # -- sessions ----------------------------------------------------------------------------------
    def session_create(self, request):
        error = self._dc_error(request)
        if error:
            return error
        body = request.body if isinstance(request.body, dict) else {}
        fields = {k.lower(): v for k, v in body.items()}
        node = fields.get("node") or self.node
        if node != self.node:
            return Response(500, f"Missing node registration for '{node}'")
        checks = fields.get("checks", fields.get("nodechecks", ["serfHealth"]))
        for check in checks or []:
            if check != "serfHealth":
                return Response(500, f"Missing check '{check}' registration")
        ttl = fields.get("ttl")
        if ttl:
            seconds = parse_duration(ttl)
            if seconds is None or not TTL_MIN <= seconds <= TTL_MAX:
                return Response(400, f"Invalid Session TTL '{ttl}', must be between [10s=24h0m0s]")
        delay = fields.get("lockdelay", DEFAULT_LOCK_DELAY)
        # FixupLockDelay: a value below 1000 (ns) is taken as seconds, a string as a Go duration
        if isinstance(delay, str):
            delay_ns = int((parse_duration(delay) or 0) * 1e9)
        else:
            delay_ns = int(delay * 1e9) if delay < 1000 else int(delay)
        behavior = fields.get("behavior") or "release"
        idx = self._bump()
        sid = str(uuid.uuid4())
        session = {
            "ID": sid,
            "Name": fields.get("name", ""),
            "Node": node,
            "LockDelay": delay_ns,
            "Behavior": behavior,
            "TTL": ttl or "",
            "NodeChecks": list(checks or []),
            "ServiceChecks": None,
            "CreateIndex": idx,
            "ModifyIndex": idx,
        }
        session["_expires"] = self._expiry(ttl)
        self.sessions[sid] = session
        self._notify()
        return self._answer(200, {"ID": sid}, idx)

    def _expiry(self, ttl):
        """When a session created or renewed now is invalidated: ``ttl_multiplier`` TTLs from now
        (session_ttl.go createSessionTimer), never without a TTL."""
        return self.clock() + parse_duration(ttl) * self.ttl_multiplier if ttl else None

    @staticmethod
    def _session_public(session):
        return {k: v for k, v in session.items() if not k.startswith("_")}

    def session_destroy(self, request):
        error = self._dc_error(request)
        if error:
            return error
        self._invalidate(request.params["sid"], "destroyed")
        return self._answer(200, True, self.index)

    def session_renew(self, request):
        error = self._dc_error(request)
        if error:
            return error
        sid = request.params["sid"]
        session = self.sessions.get(sid)
        if session is None:
            return Response(404, f"Session id '{sid}' not found")
        session["_expires"] = self._expiry(session["TTL"])
        self.renew_counts[sid] = self.renew_counts.get(sid, 0) + 1
        return self._answer(200, [self._session_public(session)], self.index)

    def _session_index(self):
        return self.index

    def session_info(self, request):
        error = self._dc_error(request)
        if error:
            return error
        sid = request.params["sid"]
        idx = self._block(request, self._session_index)
        session = self.sessions.get(sid)
        return self._answer(200, [self._session_public(session)] if session else [], idx)

    def session_node(self, request):
        idx = self._block(request, self._session_index)
        found = [self._session_public(s) for s in self.sessions.values() if s["Node"] == request.params["node"]]
        return self._answer(200, found, idx)

    def session_list(self, request):
        idx = self._block(request, self._session_index)
        return self._answer(200, [self._session_public(s) for s in self.sessions.values()], idx)

    def agent_self(self, request):
        return {"Config": {"Datacenter": self.datacenter, "NodeName": self.node}, "Member": {"Name": self.node}}

    # -- test conveniences -------------------------------------------------------------------------
    def value(self, key):
        """The stored value of ``key`` as bytes (None when missing or null)."""
        with self.lock:
            entry = self.kv.get(key)
            return entry.get("Value") if entry else None

    def keys(self):
        """Every key stored now, sorted."""
        with self.lock:
            return sorted(self.kv)

    def holder(self, key):
        with self.lock:
            entry = self.kv.get(key)
            return entry.get("Session") if entry else None

    def renewals(self, sid):
        with self.lock:
            return self.renew_counts.get(sid, 0)


# ---------------------------------------------------------------------------------------------------
# The agent's services (hecate_consul: external services). Mirrors hashicorp/consul
# agent/agent_endpoint.go (AgentRegisterService, AgentDeregisterService, AgentServices) and the checks
# of agent/structs (ServiceDefinition.Validate, ValidateServiceMetadata, CheckType.Validate).
# ---------------------------------------------------------------------------------------------------
ENDPOINTS.update(
    {
        "agent/services": {"GET": _COMMON | {"filter"}},
        "agent/service/register": {"PUT": _COMMON | {"replace-existing-checks"}},
        "agent/service/deregister": {"PUT": _COMMON},
    }
)
_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")
_SERVICE_FIELDS = {"id", "name", "tags", "address", "port", "meta", "check", "checks", "weights", "enabletagoverride",
                   "kind", "taggedaddresses", "connect", "proxy", "socketpath", "locality", "namespace", "partition"}  # fmt: skip
_CHECK_KINDS = ("http", "tcp", "udp", "grpc", "h2ping", "ttl", "args", "aliasservice", "dockercontainerid")


def _lower(body):
    """Consul decodes request bodies case-insensitively (decodeBody with lib.TranslateKeys)."""
    return {str(k).lower(): v for k, v in body.items()} if isinstance(body, dict) else body


def validate_service(body):
    """ServiceDefinition.Validate + ValidateServiceMetadata + CheckType.Validate: the first problem, or None."""
    if not isinstance(body, dict):
        return "Request decode failed: body must be a JSON object"
    unknown = sorted(set(body) - _SERVICE_FIELDS)
    if unknown:
        return f"Request decode failed: json: unknown field {unknown[0]!r}"
    if not body.get("name"):
        return "Missing service name"
    port = body.get("port", 0)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        return f"Request decode failed: invalid port {port!r}"
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return "Request decode failed: Tags must be a list of strings"
    meta = body.get("meta") or {}
    if not isinstance(meta, dict):
        return "Request decode failed: Meta must be an object"
    if len(meta) > 64:
        return "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs"
    for k, v in meta.items():
        if not _META_KEY.match(k):
            return f"Invalid Service Meta: Key contains invalid characters: {k!r}"
        if len(k) > 128:
            return "Invalid Service Meta: Key is too long (limit: 128 characters)"
        if k.startswith("consul-"):
            return "Invalid Service Meta: Key prefix 'consul-' is reserved for internal use"
        if not isinstance(v, str) or len(v) > 512:
            return "Invalid Service Meta: Value is too long (limit: 512 characters)"
    checks = ([body["check"]] if body.get("check") else []) + list(body.get("checks") or [])
    for check in checks:
        check = _lower(check)
        kinds = [k for k in _CHECK_KINDS if check.get(k)]
        if len(kinds) != 1:
            return "Invalid check: exactly one check type (HTTP, TCP, TTL, ...) is required"
        if kinds[0] in ("http", "tcp", "udp", "grpc", "h2ping", "args"):
            if parse_duration(check.get("interval") or "") in (None, 0):
                return "Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks"
        if check.get("timeout") is not None and parse_duration(check["timeout"]) is None:
            return f"Invalid check: timeout {check['timeout']!r} is not a duration"
    return None


def add_agent_services(emulator):
    """Routes and state for the agent's service catalog on a ConsulEmulator."""
    emulator.agent_services = {}  # id -> AgentService as GET /v1/agent/services returns it
    emulator.agent_checks = {}  # check id -> check definition (CamelCase)

    def services(request):
        with emulator.lock:
            return emulator._answer(200, json.loads(json.dumps(emulator.agent_services)), emulator.index)

    def register(request):
        body = _lower(request.body)
        problem = validate_service(body)
        if problem:
            return Response(400, problem, {"Content-Type": "text/plain"})
        sid = body.get("id") or body["name"]
        with emulator.lock:
            emulator.agent_services[sid] = {
                "ID": sid, "Service": body["name"], "Tags": list(body.get("tags") or []), "Meta": dict(body.get("meta") or {}),
                "Port": body.get("port", 0), "Address": body.get("address") or "", "Weights": {"Passing": 1, "Warning": 1},
                "EnableTagOverride": bool(body.get("enabletagoverride")), "Datacenter": emulator.datacenter,
            }  # fmt: skip
            checks = ([body["check"]] if body.get("check") else []) + list(body.get("checks") or [])
            if request.arg("replace-existing-checks") in ("true", "1"):
                for check_id in [c for c, d in emulator.agent_checks.items() if d["ServiceID"] == sid]:
                    del emulator.agent_checks[check_id]
            for n, check in enumerate(checks, 1):
                check = {k: v for k, v in check.items()}
                check_id = check.get("CheckID") or check.get("checkid") or (f"service:{sid}" if len(checks) == 1 else f"service:{sid}:{n}")
                emulator.agent_checks[check_id] = {**check, "ServiceID": sid}
            emulator._bump()
        return Response(200, None)

    def deregister(request):
        sid = request.params["sid"]
        with emulator.lock:
            if sid not in emulator.agent_services:
                return Response(404, f'Unknown service ID "{sid}". Ensure that the service ID is passed, not the service name.')
            del emulator.agent_services[sid]
            for check_id in [c for c, d in emulator.agent_checks.items() if d["ServiceID"] == sid]:
                del emulator.agent_checks[check_id]
            emulator._bump()
        return Response(200, None)

    emulator.route("GET", r"/v1/agent/services", services)
    emulator.route("PUT", r"/v1/agent/service/register", register)
    emulator.route("PUT", r"/v1/agent/service/deregister/(?P<sid>[^/]+)", deregister)
