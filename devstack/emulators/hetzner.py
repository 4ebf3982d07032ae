"""A Hetzner Cloud DNS emulator (``/v1/zones*``, ``/v1/actions``) for tests, the benchmark and the demo.

Real state: zones (created with their SOA and apex NS sets), RRSets with labels and change protection,
actions that stay ``running`` for ``action_polls - 1`` polls and then succeed. Pagination (``per_page`` at
most 50, ``meta.pagination``), rate limiting with the real ``RateLimit-Limit/Remaining/Reset`` headers (a
bucket that refills gradually, as the Cloud API's does) and 429, 409 on a duplicate create, 423 on a
protected set, 423 ``locked`` on an RRSet while an action on it is still running, and a SOA serial that moves
on every change of the zone's records (see :meth:`HetznerDNS._touch`). Faults: ``inject()`` from the base class (429/5xx/delays), :meth:`HetznerDNS.slow_reply`
(the write is applied, its reply arrives late: a "lost" reply) and ``fail_actions`` (the next actions end in
``error`` and their change is not applied), :meth:`HetznerDNS.inject_error` (an API error with its code,
e.g. 409 ``conflict``).

Every request is checked against the vendor's OpenAPI document (JSON Schema 2020-12), and the rules the
document states only in prose are checked here: RRSet names lower-case and relative, ``@`` for the apex,
no trailing dot; record values distinct; TXT values quoted strings of at most 255 bytes each. Every
response is checked against the document too (``response_violations``), so the emulator stays honest.
"""

import functools
import ipaddress
import itertools
import json
import pathlib
import re
import threading
import time
from datetime import datetime, timezone

from devstack.emulators.base import Emulator, OpenAPIRequestChecker, Response

NAMESERVERS = ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com.", "helium.ns.hetzner.de."]
RRSET_COMMANDS = {
    "set_records": "set_rrset_records",
    "add_records": "add_rrset_records",
    "remove_records": "remove_rrset_records",
    "update_records": "update_rrset_records",
    "change_ttl": "change_rrset_ttl",
    "change_protection": "change_rrset_protection",
}
# Zone ids are never reused, across resets too: the Cloud API's ids are unique for good, and hecate tells a
# zone deleted and created again from the one it converged by the id next to the SOA serial.
_ZONE_IDS = itertools.count(1)
_NAME = re.compile(r"^(\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$")


def spec_path(specs_dir=None):
    """The Hetzner OpenAPI document: ``<specs>/hetzner/*.json`` (devstack/fixtures/specs, or ``HECATE_SPECS``)."""
    if specs_dir is None:
        from devstack import SPECS

        specs_dir = SPECS
    directory = pathlib.Path(specs_dir) / "hetzner"
    found = sorted(directory.glob("*.json"))
    if not found:
        raise FileNotFoundError(f"no Hetzner OpenAPI document in {directory}")
    return str(found[-1])


@functools.lru_cache(maxsize=4)
def _checker(path):
    return OpenAPIRequestChecker.from_file(path)


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status, code, message, details=None):
    return Response(status, {"error": {"code": code, "message": message, "details": details}})


def _txt_problem(value):
    """Why a TXT value is not a sequence of quoted strings of at most 255 bytes, or None."""
    i, n, count = 0, len(value), 0
    while i < n:
        if value[i] == " ":
            i += 1
            continue
        if value[i] != '"':
            return "TXT values must be quoted strings"
        i += 1
        size = 0
        while True:
            if i >= n:
                return "unterminated quoted string"
            if value[i] == '"':
                i += 1
                break
            if value[i] == "\\":
                if value[i + 1 : i + 4].isdigit():
                    size, i = size + 1, i + 4
                    continue
                size += len(value[i + 1 : i + 2].encode())
                i += 2
                continue
            size += len(value[i].encode())
            i += 1
        if size > 255:
            return f"a quoted string is {size} bytes (at most 255)"
        count += 1
    return None if count else "empty TXT value"


class HetznerDNS(Emulator):
    name = "hetzner"
    base_path = "/v1"

    def __init__(
        self,
        token="hetzner-test-token",
        rate_limit=3600,
        refill_per_second=None,
        action_polls=1,
        check_responses=True,
        specs_dir=None,
    ):
        super().__init__()
        self.checker = _checker(spec_path(specs_dir))
        self.token = token
        self.check_responses = check_responses
        self._defaults = {"rate_limit": rate_limit, "refill_per_second": refill_per_second, "action_polls": action_polls}
        self._slow_lock = threading.Lock()
        self.reset()
        z = r"/v1/zones/(?P<zone>[^/]+)"
        rr = z + r"/rrsets/(?P<name>[^/]+)/(?P<type>[^/]+)"
        self.route("GET", r"/v1/zones", self.list_zones)
        self.route("POST", r"/v1/zones", self.create_zone_request)
        self.route("GET", z, self.get_zone)
        self.route("DELETE", z, self.delete_zone)
        self.route("GET", z + r"/rrsets", self.list_rrsets)
        self.route("POST", z + r"/rrsets", self.create_rrset)
        self.route("GET", rr, self.get_rrset)
        self.route("PUT", rr, self.update_rrset)
        self.route("DELETE", rr, self.delete_rrset)
        self.route("POST", rr + r"/actions/(?P<command>[a-z_]+)", self.rrset_action)
        self.route("GET", z + r"/actions", self.list_zone_actions)
        self.route("GET", r"/v1/actions", self.list_actions)
        self.route("GET", r"/v1/actions/(?P<id>\d+)", self.get_action)

    def start(self, port=0):
        super().start(port)
        # Headers and body leave in two writes; with Nagle on, the body waits for the client's delayed ACK
        # (~20-40 ms a request). The real API is not that slow, and the benchmark counts requests, not waits.
        self.server.RequestHandlerClass.disable_nagle_algorithm = True
        return self

    def reset(self, rate_limit=None, refill_per_second=None, action_polls=None):
        """Back to an empty project (no zones), fresh counters, no faults; the server keeps running.
        Arguments override the constructor's settings until the next reset."""
        settings = dict(self._defaults)
        settings.update({k: v for k, v in (("rate_limit", rate_limit), ("refill_per_second", refill_per_second),
                                           ("action_polls", action_polls)) if v is not None})  # fmt: skip
        with self.lock:
            self.zones = {}  # id -> zone dict (API shape, record_count computed on read)
            self.serials = {}  # zone id -> the SOA serial (YYYYMMDDnn), moved by every change (_touch)
            self.rrsets = {}  # zone id -> {(name, type): rrset dict}
            self.actions = {}  # id -> action dict, plus "_polls_left"
            self.ids = _ZONE_IDS
            self.action_ids = itertools.count(1)
            self.action_polls = settings["action_polls"]
            self.fail_actions = 0  # the next N actions end in error (their change is not applied)
            self.response_violations = []
            self.rate_limit = settings["rate_limit"]
            refill = settings["refill_per_second"]
            self.refill = refill if refill is not None else self.rate_limit / 3600.0
            self.tokens = float(self.rate_limit)
            self.tokens_at = time.monotonic()
            self.rate_limited = 0  # 429s answered by the limiter
            self.requests.clear()
            self.violations.clear()
            self.faults.clear()
        with self._slow_lock:
            self.slow = []  # [{"method", "path", "delay", "times"}]: apply, then answer late

    # -- test helpers --------------------------------------------------------------------------
    def add_zone(self, name, ttl=3600, labels=None):
        """Create a zone directly (as the console would), with SOA and apex NS. Returns the zone."""
        with self.lock:
            zone_id = next(self.ids)
            zone = {
                "id": zone_id,
                "name": name,
                "created": _now(),
                "mode": "primary",
                "ttl": ttl,
                "labels": dict(labels or {}),
                "protection": {"delete": False},
                "status": "ok",
                "record_count": 0,
                "authoritative_nameservers": {
                    "assigned": [ns.rstrip(".") for ns in NAMESERVERS],
                    "delegated": [],
                    "delegation_last_check": None,
                    "delegation_status": "unknown",
                },
                "registrar": "other",
            }
            self.zones[zone_id] = zone
            self.rrsets[zone_id] = {}
            self.serials[zone_id] = 0
            self._put(zone_id, "@", "SOA", [], None)
            self._put(zone_id, "@", "NS", NAMESERVERS, None)
            return zone

    def put_rrset(self, zone, name, rtype, values, ttl=None, labels=None, protected=False):
        """Create or replace an RRSet directly (no request, no action): test set-up."""
        with self.lock:
            zone_id = self._find_zone(zone)["id"]
            return self._put(zone_id, name, rtype, values, ttl, labels, protected)

    def rrset(self, zone, name, rtype):
        with self.lock:
            return self.rrsets[self._find_zone(zone)["id"]].get((name, rtype))

    def records(self, zone):
        """``{(name, type): (sorted values, ttl)}`` of a zone: what tests compare."""
        with self.lock:
            sets = self.rrsets[self._find_zone(zone)["id"]]
            return {k: (sorted(r["value"] for r in v["records"]), v["ttl"]) for k, v in sets.items()}

    def slow_reply(self, path, delay, method="POST", times=1):
        """Apply the next matching write, then answer only after ``delay`` seconds (a client with a
        shorter timeout sees a timeout although the write happened)."""
        with self._slow_lock:
            self.slow.append({"method": method, "path": re.compile(path), "delay": delay, "times": times})

    def inject_error(self, status, code, times=1, method=None, path=None):
        """Answer the next ``times`` matching requests with the API's error body for ``code``
        (``409 conflict``: "The resource has changed during the request, please retry")."""
        body = {"error": {"code": code, "message": f"{code} (injected)", "details": None}}
        return self.inject(status=status, times=times, method=method, path=path, body=body)

    def writes_to(self, pattern):
        regex = re.compile(pattern)
        return [r for r in self.writes if regex.search(r.path)]

    # -- state ---------------------------------------------------------------------------------
    def _touch(self, zone_id):
        """A change of the zone's records (a set created, deleted, its records or TTL changed): the SOA serial
        moves. The Cloud API's zone docs (specs/hetzner, tag Zones, "SOA Serial"): "For zones in primary mode,
        Hetzner automatically increases the SOA record serial number. As convention, a YYYYMMDDnn format with
        incrementing nn is used." terraform-provider-hcloud zeroes it before saving state for that reason
        (internal/zonerrset/resource.go, OverrideRecordsSOASerial: "this value is automatically incremented by
        the API", its example 2025102142). Labels and protection are the API's metadata, not zone data: they
        leave it alone here (hecate's no-op check never relies on them moving it)."""
        today = int(datetime.now(timezone.utc).strftime("%Y%m%d00"))
        self.serials[zone_id] = max(today, self.serials[zone_id] + 1)
        soa = self.rrsets[zone_id].get(("@", "SOA"))
        if soa is not None:
            soa["records"] = [{"value": self._soa_value(zone_id)}]

    def _soa_value(self, zone_id):
        return f"{NAMESERVERS[0]} dns.hetzner.com. {self.serials[zone_id]} 86400 10800 3600000 3600"

    def _put(self, zone_id, name, rtype, values, ttl, labels=None, protected=False):
        if rtype == "SOA":
            values = [self._soa_value(zone_id)]
        rrset = {
            "id": f"{name}/{rtype}",
            "name": name,
            "type": rtype,
            "ttl": ttl,
            "labels": dict(labels or {}),
            "protection": {"change": bool(protected)},
            "records": [{"value": v} for v in values],
            "zone": zone_id,
        }
        self.rrsets[zone_id][(name, rtype)] = rrset
        self._touch(zone_id)
        return rrset

    def _find_zone(self, key):
        key = str(key)
        for zone in self.zones.values():
            if str(zone["id"]) == key or zone["name"] == key.lower():
                return zone
        return None

    def _zone_out(self, zone):
        return {**zone, "record_count": sum(len(r["records"]) for r in self.rrsets[zone["id"]].values())}

    def _action(self, command, zone_id, fail=False, rrset=None):
        action = {
            "id": next(self.action_ids),
            "command": command,
            "status": "running",
            "progress": 0,
            "started": _now(),
            "finished": None,
            "resources": [{"id": zone_id, "type": "zone"}],
            "error": None,
            "_polls_left": self.action_polls,
            "_fail": fail,
            "_rrset": (zone_id, *rrset) if rrset else None,
        }
        self.actions[action["id"]] = action
        return self._action_out(action)

    def _locked(self, zone_id, key):
        """423 ``locked`` while an action on this RRSet is still running. The API's error table: "423 locked:
        The item you are trying to access is locked (there is already an Action running)"; hcloud-go names it
        ``ErrorCodeLocked`` "Item is locked (Another action is running)" (hcloud/error.go)."""
        for action in self.actions.values():
            if action["status"] == "running" and action["_rrset"] == (zone_id, *key):
                return _error(423, "locked", f"rrset {key[0]}/{key[1]} is locked: action {action['id']} is running")
        return None

    def _take_failure(self):
        if self.fail_actions > 0:
            self.fail_actions -= 1
            return True
        return False

    @staticmethod
    def _action_out(action):
        return {k: v for k, v in action.items() if not k.startswith("_")}

    def _poll(self, action):
        if action["status"] == "running":
            action["_polls_left"] -= 1
            if action["_polls_left"] <= 0:
                action["status"] = "error" if action["_fail"] else "success"
                action["progress"] = 100
                action["finished"] = _now()
                if action["_fail"]:
                    action["error"] = {"code": "action_failed", "message": "Action failed (injected)"}
        return self._action_out(action)

    # -- contract rules stated in prose ---------------------------------------------------------
    def _violation(self, request, message):
        self.violations.append(f"{request.method} {request.raw_path}: {message}")
        return _error(422, "invalid_input", message)

    def _name_problem(self, name, zone):
        if name == "@":
            return None
        if name != name.lower():
            return f"RRSet name {name!r} must be lower case"
        if name.endswith("."):
            return f"RRSet name {name!r} must not end with a dot"
        if name == zone["name"] or name.endswith("." + zone["name"]):
            return f"RRSet name {name!r} must be relative to the zone (use @ for the apex)"
        if not _NAME.match(name) or "*" in name.lstrip("*"):
            return f"RRSet name {name!r} is not a valid relative name"
        return None

    def _values_problem(self, rtype, records):
        values = [r["value"] for r in records]
        if len(set(values)) != len(values):
            return "record values must be distinct"
        if not values:
            return "records must not be empty"
        for value in values:
            if rtype == "TXT":
                problem = _txt_problem(value)
                if problem:
                    return f"TXT value {value!r}: {problem}"
            elif rtype in ("A", "AAAA"):
                try:
                    address = ipaddress.ip_address(value)
                except ValueError:
                    return f"{rtype} value {value!r} is not an IP address"
                if (address.version == 4) != (rtype == "A"):
                    return f"{rtype} value {value!r} has the wrong address family"
        if rtype == "CNAME" and len(values) != 1:
            return "a CNAME RRSet has exactly one record"
        return None

    # -- handlers ------------------------------------------------------------------------------
    def _page(self, request, items, key):
        try:
            page = int(request.arg("page", 1))
            per_page = int(request.arg("per_page", 25))
        except ValueError:
            return _error(400, "invalid_input", "page and per_page must be integers")
        if per_page > 50 or per_page < 1:
            return self._violation(request, f"per_page {per_page}: the maximum is 50")
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        pagination = {
            "page": page,
            "per_page": per_page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None,
            "last_page": last,
            "total_entries": len(items),
        }
        return {key: chunk, "meta": {"pagination": pagination}}

    def list_zones(self, request):
        zones = [self._zone_out(z) for z in self.zones.values()]
        name = request.arg("name")
        if name:
            zones = [z for z in zones if z["name"] == name]
        return self._page(request, zones, "zones")

    def create_zone_request(self, request):
        body = request.body or {}
        if self._find_zone(body.get("name", "")):
            return _error(409, "uniqueness_error", "zone name is already used")
        zone = self.add_zone(body["name"], body.get("ttl", 3600), body.get("labels"))
        action = self._action("create_zone", zone["id"])
        return Response(201, {"zone": self._zone_out(zone), "action": action})

    def get_zone(self, request):
        zone = self._find_zone(request.params["zone"])
        if zone is None:
            return _error(404, "not_found", "zone not found")
        return {"zone": self._zone_out(zone)}

    def delete_zone(self, request):
        zone = self._find_zone(request.params["zone"])
        if zone is None:
            return _error(404, "not_found", "zone not found")
        del self.zones[zone["id"]], self.rrsets[zone["id"]]
        return Response(201, {"action": self._action("delete_zone", zone["id"])})

    def list_rrsets(self, request):
        zone = self._find_zone(request.params["zone"])
        if zone is None:
            return _error(404, "not_found", "zone not found")
        items = list(self.rrsets[zone["id"]].values())
        if request.arg("name") is not None:
            items = [r for r in items if r["name"] == request.arg("name")]
        types = request.query.get("type")
        if types:
            items = [r for r in items if r["type"] in types]
        selector = request.arg("label_selector")
        if selector:
            items = [r for r in items if _selects(selector, r["labels"])]
        return self._page(request, items, "rrsets")

    def _lookup(self, request):
        zone = self._find_zone(request.params["zone"])
        if zone is None:
            return None, None, _error(404, "not_found", "zone not found")
        key = (request.params["name"], request.params["type"])
        rrset = self.rrsets[zone["id"]].get(key)
        if rrset is None:
            return zone, None, _error(404, "not_found", f"rrset {key[0]}/{key[1]} not found")
        return zone, rrset, None

    def create_rrset(self, request):
        zone = self._find_zone(request.params["zone"])
        if zone is None:
            return _error(404, "not_found", "zone not found")
        body = request.body
        name, rtype = body["name"], body["type"]
        problem = self._name_problem(name, zone) or self._values_problem(rtype, body["records"])
        if problem:
            return self._violation(request, problem)
        if rtype == "SOA":
            return _error(422, "invalid_input", "SOA records are managed by Hetzner")
        sets = self.rrsets[zone["id"]]
        locked = self._locked(zone["id"], (name, rtype))
        if locked:
            return locked
        if (name, rtype) in sets:
            return _error(409, "uniqueness_error", f"rrset {name}/{rtype} already exists")
        others = [t for (n, t) in sets if n == name and t != rtype]
        if (rtype == "CNAME" and others) or (rtype != "CNAME" and "CNAME" in others):
            return _error(422, "invalid_input", f"a CNAME cannot coexist with other records at {name}")
        fail = self._take_failure()
        values = [r["value"] for r in body["records"]]
        rrset = {
            "id": f"{name}/{rtype}",
            "name": name,
            "type": rtype,
            "ttl": body.get("ttl"),
            "labels": dict(body.get("labels") or {}),
            "protection": {"change": False},
            "records": [{"value": v} for v in values],
            "zone": zone["id"],
        }
        if not fail:
            sets[(name, rtype)] = rrset
            self._touch(zone["id"])
        return Response(201, {"rrset": rrset, "action": self._action("create_rrset", zone["id"], fail, (name, rtype))})

    def get_rrset(self, request):
        _, rrset, error = self._lookup(request)
        return error or {"rrset": rrset}

    def update_rrset(self, request):
        _, rrset, error = self._lookup(request)
        if error:
            return error
        if "labels" in request.body:
            rrset["labels"] = dict(request.body["labels"])
        return {"rrset": rrset}

    def delete_rrset(self, request):
        zone, rrset, error = self._lookup(request)
        if error:
            return error
        if rrset["type"] == "SOA":
            return _error(422, "invalid_input", "the SOA record cannot be deleted")
        if rrset["protection"]["change"]:
            return _error(423, "protected", "rrset is protected")
        key = (rrset["name"], rrset["type"])
        locked = self._locked(zone["id"], key)
        if locked:
            return locked
        fail = self._take_failure()
        if not fail:
            del self.rrsets[zone["id"]][key]
            self._touch(zone["id"])
        return Response(201, {"action": self._action("delete_rrset", zone["id"], fail, key)})

    def rrset_action(self, request):
        command = request.params["command"]
        if command not in RRSET_COMMANDS:
            return _error(404, "not_found", f"no action {command}")
        zone = self._find_zone(request.params["zone"])
        if zone is None:
            return _error(404, "not_found", "zone not found")
        key = (request.params["name"], request.params["type"])
        problem = self._name_problem(key[0], zone)
        if problem:
            return self._violation(request, problem)
        sets = self.rrsets[zone["id"]]
        rrset = sets.get(key)
        body = request.body or {}
        if "records" in body:
            problem = self._values_problem(key[1], body["records"])
            if problem:
                return self._violation(request, problem)
        if rrset is None and command != "add_records":
            return _error(404, "not_found", f"rrset {key[0]}/{key[1]} not found")
        if key[1] == "SOA" and command != "change_protection":
            return _error(422, "invalid_input", "SOA records are managed by Hetzner")
        if rrset is not None and rrset["protection"]["change"] and command != "change_protection":
            return _error(423, "protected", "rrset is protected against changes")
        locked = self._locked(zone["id"], key)
        if locked:
            return locked
        fail = self._take_failure()
        if not fail:
            values = [r["value"] for r in body.get("records", [])]
            if command == "set_records":
                rrset["records"] = [{"value": v} for v in values]
            elif command == "add_records":
                if rrset is None:
                    rrset = self._put(zone["id"], key[0], key[1], [], body.get("ttl"))
                have = [r["value"] for r in rrset["records"]]
                rrset["records"] += [{"value": v} for v in values if v not in have]
            elif command == "remove_records":
                rrset["records"] = [r for r in rrset["records"] if r["value"] not in values]
                if not rrset["records"]:
                    del sets[key]
            elif command == "update_records":
                comments = {r["value"]: r["comment"] for r in body["records"]}
                for record in rrset["records"]:
                    if record["value"] in comments:
                        record["comment"] = comments[record["value"]]
            elif command == "change_ttl":
                rrset["ttl"] = body["ttl"]
            elif command == "change_protection":
                rrset["protection"]["change"] = bool(body["change"])
            if command not in ("change_protection", "update_records"):  # metadata and comments: not zone data
                self._touch(zone["id"])
        return Response(201, {"action": self._action(RRSET_COMMANDS[command], zone["id"], fail, key)})

    def list_zone_actions(self, request):
        """``GET /zones/{id_or_name}/actions``: the zone's actions, ``status`` filter, paged. Listing is not a
        poll: actions move on only when asked for by id (``GET /actions``)."""
        zone = self._find_zone(request.params["zone"])
        if zone is None:
            return _error(404, "not_found", "zone not found")
        statuses = request.query.get("status")
        mine = [a for a in self.actions.values() if any(r["id"] == zone["id"] for r in a["resources"])]
        mine = [a for a in mine if not statuses or a["status"] in statuses]
        return self._page(request, [self._action_out(a) for a in mine], "actions")

    def list_actions(self, request):
        try:
            ids = [int(i) for i in request.query.get("id", [])]
        except ValueError:
            return _error(400, "invalid_input", "id must be an integer")
        return {"actions": [self._poll(self.actions[i]) for i in ids if i in self.actions]}

    def get_action(self, request):
        action = self.actions.get(int(request.params["id"]))
        if action is None:
            return _error(404, "not_found", "action not found")
        return {"action": self._poll(action)}

    # -- plumbing: auth, rate limit, slow replies, response checks ------------------------------
    def _rate_headers(self):
        remaining = int(self.tokens)
        missing = self.rate_limit - self.tokens
        reset = time.time() + (missing / self.refill if self.refill > 0 else 3600)
        return {
            "RateLimit-Limit": str(self.rate_limit),
            "RateLimit-Remaining": str(max(remaining, 0)),
            "RateLimit-Reset": str(int(-(-reset // 1))),
        }

    def authenticate(self, request):
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.rate_limit, self.tokens + (now - self.tokens_at) * self.refill)
            self.tokens_at = now
            if self.tokens < 1:
                self.rate_limited += 1
                response = _error(429, "rate_limit_exceeded", "rate limit exceeded")
                response.headers.update(self._rate_headers())
                return response
            self.tokens -= 1
        if request.headers.get("authorization") != f"Bearer {self.token}":
            response = _error(401, "unauthorized", "unable to authenticate")
            response.headers.update(self._rate_headers())
            return response
        return None

    def _handle(self, request):
        response = super()._handle(request)
        with self.lock:
            response.headers.update(self._rate_headers())
        if self.check_responses:
            self._check_response(request, response)
        delay = 0.0
        with self._slow_lock:
            for slow in self.slow:
                if slow["times"] > 0 and slow["method"] == request.method and slow["path"].search(request.path):
                    slow["times"] -= 1
                    delay = slow["delay"]
                    break
        if delay:
            time.sleep(delay)
        return response

    def _check_response(self, request, response):
        path = request.raw_path[len(self.base_path) :]
        template, ops, _ = self.checker.match(path)
        op = (ops or {}).get(request.method.lower())
        if op is None:
            return
        responses = op.get("responses", {})
        spec = responses.get(str(response.status)) or responses.get(f"{str(response.status)[0]}xx")
        schema = (((spec or {}).get("content") or {}).get("application/json") or {}).get("schema")
        if spec is None:
            self.response_violations.append(f"{request.method} {template}: status {response.status} not in the spec")
            return
        if schema is not None:
            body = json.loads(json.dumps(response.body))
            for problem in self.checker.validate(body, schema):
                self.response_violations.append(f"{request.method} {template} -> {response.status}: {problem}")


def _selects(selector, labels):
    """A small label-selector evaluator: ``k``, ``!k``, ``k=v``, ``k==v``, ``k!=v``, comma = and."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True
