"""A Vault emulator: the KV version 2 secrets engine, token auth, ``sys/health``, ``auth/token/lookup-self``.

Vault publishes no OpenAPI document for a KV v2 mount, so :class:`VaultRequestChecker` encodes the
request shapes of the API documentation (https://developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2)
as hvac 2.x sends them: ``GET/POST/DELETE /v1/<mount>/data/<path>`` (body ``{"data": {...},
"options": {"cas": n}}``), ``POST /v1/<mount>/{delete,undelete,destroy}/<path>`` (body
``{"versions": [...]}``), ``GET/POST/DELETE/LIST /v1/<mount>/metadata/<path>``, ``/v1/<mount>/config``.
Anything else lands in ``emulator.violations``.

State: ``mounts`` (``{"secret": {path: Secret}}``), ``tokens`` (``{token: {"policies": [...],
"read": [globs], "write": [globs]}}``; the policy ``root`` may do anything), ``sealed``.

    with VaultEmulator(tokens={"root-token": ROOT}) as vault_emu:
        vault_emu.put("secret", "hecate/authentik/token", {"value": "s3cr3t"})
        client = hvac.Client(url=vault_emu.url, token="root-token")
"""

import fnmatch
import re
import time
import uuid
from datetime import datetime, timezone

from devstack.emulators.base import READ_METHODS, Emulator, Response

ROOT = {"policies": ["root"]}
_DURATION = re.compile(r"^(\d+(ns|us|µs|ms|s|m|h))+$|^\d+$")

# operation -> method -> accepted query parameters
OPERATIONS = {
    "data": {"GET": {"version"}, "POST": set(), "PUT": set(), "DELETE": set()},
    "metadata": {"GET": {"list"}, "LIST": set(), "POST": set(), "PUT": set(), "DELETE": set()},
    "delete": {"POST": set(), "PUT": set()},
    "undelete": {"POST": set(), "PUT": set()},
    "destroy": {"POST": set(), "PUT": set()},
    "config": {"GET": set(), "POST": set(), "PUT": set()},
}
HEALTH_PARAMS = {
    "standbyok",
    "perfstandbyok",
    "activecode",
    "standbycode",
    "drsecondarycode",
    "performancestandbycode",
    "sealedcode",
    "uninitcode",
}
METADATA_FIELDS = {"max_versions", "cas_required", "delete_version_after", "custom_metadata"}


def now_rfc3339():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _split(path, mounts):
    """``/v1/secret/data/a/b`` -> ("secret", "data", "a/b"); mounts may contain slashes."""
    rest = path[len("/v1/") :]
    for mount in sorted(mounts, key=len, reverse=True):
        if rest == mount or rest.startswith(mount + "/"):
            tail = rest[len(mount) + 1 :]
            operation, _, sub = tail.partition("/")
            return mount, operation, sub
    return None, None, None


class VaultRequestChecker:
    """Request shapes from Vault's KV v2 / sys / token API documentation."""

    def __init__(self, emulator):
        self.emulator = emulator

    def check(self, request, base_path=""):
        path = request.path
        method = request.method
        if not path.startswith("/v1/"):
            return [f"{method} {path}: Vault's API lives under /v1/"]
        if path == "/v1/sys/health":
            if method not in ("GET", "HEAD"):
                return [f"{method} /v1/sys/health: method not allowed"]
            return [f"{method} /v1/sys/health: unknown query parameter {n!r}" for n in request.query if n not in HEALTH_PARAMS]
        if path.startswith("/v1/auth/token/"):
            if path == "/v1/auth/token/lookup-self" and method != "GET":
                return [f"{method} {path}: lookup-self is a GET"]
            return []
        mount, operation, sub = _split(path, self.emulator.mounts)
        if mount is None:
            return []  # unknown mounts are a 404 from the router, not a malformed request
        if operation not in OPERATIONS:
            return [f"{method} {path}: {operation!r} is not a KV v2 operation (a KV v1 path on a v2 mount?)"]
        methods = OPERATIONS[operation]
        if method not in methods:
            return [f"{method} /v1/{mount}/{operation}: method not allowed"]
        problems = [f"{method} /v1/{mount}/{operation}: unknown query parameter {n!r}" for n in request.query if n not in methods[method]]
        if operation != "config" and not sub and not (operation == "metadata" and self._listing(request)):
            problems.append(f"{method} /v1/{mount}/{operation}/: missing secret path")
        if "version" in request.query and not (request.arg("version") or "").isdigit():
            problems.append(f"GET /v1/{mount}/data: version={request.arg('version')!r} is not an integer")
        if method in ("POST", "PUT"):
            problems.extend(self._body(request, mount, operation))
        return problems

    @staticmethod
    def _listing(request):
        return request.method == "LIST" or _go_bool(request.arg("list"))

    @staticmethod
    def _body(request, mount, operation):
        where = f"{request.method} /v1/{mount}/{operation}"
        body = request.body
        if not isinstance(body, dict):
            return [f"{where}: body must be a JSON object"]
        problems = []
        if operation == "data":
            if "data" not in body:
                problems.append(f"{where}: body needs 'data'")
            elif not isinstance(body["data"], dict):
                problems.append(f"{where}: 'data' must be an object")
            options = body.get("options", {})
            if not isinstance(options, dict):
                problems.append(f"{where}: 'options' must be an object")
            elif "cas" in options and (isinstance(options["cas"], bool) or not isinstance(options["cas"], int)):
                problems.append(f"{where}: options.cas must be an integer")
            problems.extend(f"{where}: unknown field {k!r}" for k in body if k not in ("data", "options"))
        elif operation in ("delete", "undelete", "destroy"):
            versions = body.get("versions")
            if not isinstance(versions, list) or not versions or not all(isinstance(v, int) for v in versions):
                problems.append(f"{where}: 'versions' must be a non-empty list of integers")
        elif operation == "metadata":
            problems.extend(f"{where}: unknown field {k!r}" for k in body if k not in METADATA_FIELDS)
        elif operation == "config":
            known = {"max_versions", "cas_required", "delete_version_after"}
            problems.extend(f"{where}: unknown field {k!r}" for k in body if k not in known)
        return problems


class Secret:
    """One KV v2 secret: its versions and metadata."""

    def __init__(self):
        self.versions = {}  # int -> {"data", "created_time", "deletion_time", "destroyed"}
        self.current = 0
        self.created_time = now_rfc3339()
        self.updated_time = self.created_time
        self.max_versions = 0
        self.cas_required = False
        self.custom_metadata = None

    def version_meta(self, number):
        item = self.versions[number]
        return {
            "created_time": item["created_time"],
            "custom_metadata": self.custom_metadata,
            "deletion_time": item["deletion_time"],
            "destroyed": item["destroyed"],
            "version": number,
        }

    def metadata(self):
        return {
            "cas_required": self.cas_required,
            "created_time": self.created_time,
            "current_version": self.current,
            "custom_metadata": self.custom_metadata,
            "delete_version_after": "0s",
            "max_versions": self.max_versions,
            "oldest_version": min(self.versions) if self.versions else 0,
            "updated_time": self.updated_time,
            "versions": {
                str(n): {k: v for k, v in self.version_meta(n).items() if k in ("created_time", "deletion_time", "destroyed")}
                for n in sorted(self.versions)
            },
        }


class VaultEmulator(Emulator):
    name = "vault"

    def __init__(self, tokens=None, mounts=("secret",), version="1.17.6"):
        super().__init__()
        self.tokens = dict(tokens if tokens is not None else {"root-token": ROOT})
        self.mounts = {m: {} for m in mounts}
        self.config = {m: {"max_versions": 0, "cas_required": False, "delete_version_after": "0s"} for m in mounts}
        self.sealed = False
        self.standby = False
        self.version = version
        self.denied = []  # (token-or-None, method, path) refused with 403
        self.checker = VaultRequestChecker(self)
        self.route("GET", r"/v1/sys/health", self.health)
        self.route("HEAD", r"/v1/sys/health", self.health)
        self.route("GET", r"/v1/auth/token/lookup-self", self.lookup_self)
        for method in ("GET", "POST", "PUT", "DELETE", "LIST"):
            self.route(method, r"/v1/(?P<rest>.+)", self.kv)

    # -- plumbing ----------------------------------------------------------------------------------
    def start(self, port=0):
        super().start(port)
        handler = self.server.RequestHandlerClass
        handler.do_LIST = handler.do_GET  # hvac sends the LIST verb for list_secrets
        return self

    @property
    def writes(self):
        return [r for r in self.requests if r.method not in READ_METHODS and r.method != "LIST"]

    def not_found(self, request):
        return _error(404, f"no handler for route {request.path[4:]!r}. route entry not found.")

    def authenticate(self, request):
        if request.path == "/v1/sys/health":
            return None
        if self.sealed:
            return _error(503, "Vault is sealed")
        token = request.headers.get("x-vault-token")
        auth = request.headers.get("authorization", "")
        if token is None and auth.lower().startswith("bearer "):
            token = auth[7:]
        info = self.tokens.get(token) if token else None
        if info is None or not self._permits(info, request):
            self.denied.append((token, request.method, request.path))
            return _error(403, "permission denied")
        return None

    def _permits(self, info, request):
        if "root" in info.get("policies", []):
            return True
        if request.path == "/v1/auth/token/lookup-self":
            return True
        target = request.path[len("/v1/") :]
        reading = request.method in ("GET", "HEAD", "LIST")
        globs = info.get("read", []) + info.get("write", []) if reading else info.get("write", [])
        return any(fnmatch.fnmatchcase(target, g) for g in globs)

    # -- sys / auth --------------------------------------------------------------------------------
    def health(self, request):
        body = {
            "initialized": True,
            "sealed": self.sealed,
            "standby": self.standby,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(time.time()),
            "version": self.version,
            "cluster_name": "vault-cluster-hecate-emu",
            "cluster_id": "00000000-0000-0000-0000-000000000000",
        }
        if self.sealed:
            status = int(request.arg("sealedcode", "503"))
        elif self.standby and not _go_bool(request.arg("standbyok")):
            status = int(request.arg("standbycode", "429"))
        else:
            status = int(request.arg("activecode", "200"))
        return Response(status, body)

    def lookup_self(self, request):
        token = request.headers.get("x-vault-token") or request.headers.get("authorization", "")[7:]
        info = self.tokens[token]
        return _envelope(
            {
                "accessor": info.get("accessor", "acc-" + token[-4:]),
                "creation_time": 1700000000,
                "creation_ttl": 0,
                "display_name": info.get("display_name", "token"),
                "entity_id": "",
                "expire_time": None,
                "explicit_max_ttl": 0,
                "id": token,
                "issue_time": "2023-11-14T22:13:20Z",
                "meta": None,
                "num_uses": 0,
                "orphan": True,
                "path": "auth/token/create",
                "policies": info.get("policies", ["default"]),
                "renewable": False,
                "ttl": 0,
                "type": "service",
            }
        )

    # -- KV v2 -------------------------------------------------------------------------------------
    def kv(self, request):
        mount, operation, sub = _split(request.path, self.mounts)
        if mount is None or operation not in OPERATIONS:
            return self.not_found(request)
        store = self.mounts[mount]
        handler = getattr(self, f"_op_{operation}")
        return handler(request, mount, store, sub)

    def _op_config(self, request, mount, store, sub):
        if request.method == "GET":
            return _envelope(dict(self.config[mount]))
        self.config[mount].update(request.body)
        return Response(204, None)

    def _op_data(self, request, mount, store, sub):
        secret = store.get(sub)
        if request.method == "GET":
            if secret is None or not secret.versions:
                return _error(404)
            number = int(request.arg("version", "0") or 0) or secret.current
            if number not in secret.versions:
                return _error(404)
            item = secret.versions[number]
            meta = secret.version_meta(number)
            if item["deletion_time"] or item["destroyed"]:
                return Response(404, {"data": {"data": None, "metadata": meta}})  # what Vault answers
            return _envelope({"data": dict(item["data"]), "metadata": meta})
        if request.method == "DELETE":
            if secret is not None and secret.current in secret.versions:
                secret.versions[secret.current]["deletion_time"] = now_rfc3339()
            return Response(204, None)
        # POST / PUT: a new version
        cas = (request.body.get("options") or {}).get("cas")
        current = secret.current if secret else 0
        required = self.config[mount]["cas_required"] or (secret is not None and secret.cas_required)
        if required and cas is None:
            return _error(400, "check-and-set parameter required for this call")
        if cas is not None and cas != current:
            return _error(400, "check-and-set parameter did not match the current version")
        if secret is None:
            secret = store[sub] = Secret()
        secret.current += 1
        secret.versions[secret.current] = {
            "data": dict(request.body["data"]),
            "created_time": now_rfc3339(),
            "deletion_time": "",
            "destroyed": False,
        }
        secret.updated_time = secret.versions[secret.current]["created_time"]
        limit = secret.max_versions or self.config[mount]["max_versions"] or 10
        for old in sorted(secret.versions)[:-limit]:
            del secret.versions[old]
        return _envelope(secret.version_meta(secret.current))

    def _op_delete(self, request, mount, store, sub):
        return self._mark(store.get(sub), request.body["versions"], deletion_time=now_rfc3339())

    def _op_undelete(self, request, mount, store, sub):
        return self._mark(store.get(sub), request.body["versions"], deletion_time="")

    def _op_destroy(self, request, mount, store, sub):
        secret = store.get(sub)
        for number in request.body["versions"]:
            if secret is not None and number in secret.versions:
                secret.versions[number].update(destroyed=True, data=None)
        return Response(204, None)

    @staticmethod
    def _mark(secret, versions, deletion_time):
        for number in versions:
            if secret is not None and number in secret.versions and not secret.versions[number]["destroyed"]:
                secret.versions[number]["deletion_time"] = deletion_time
        return Response(204, None)

    def _op_metadata(self, request, mount, store, sub):
        if request.method == "LIST" or (request.method == "GET" and _go_bool(request.arg("list"))):
            prefix = sub.rstrip("/") + "/" if sub else ""
            keys = sorted(
                {k[len(prefix) :].split("/", 1)[0] + ("/" if "/" in k[len(prefix) :] else "") for k in store if k.startswith(prefix)}
            )
            return _envelope({"keys": keys}) if keys else _error(404)
        secret = store.get(sub)
        if request.method == "GET":
            return _envelope(secret.metadata()) if secret else _error(404)
        if request.method == "DELETE":
            store.pop(sub, None)
            return Response(204, None)
        if secret is None:
            secret = store[sub] = Secret()
        for name in ("max_versions", "cas_required", "custom_metadata"):
            if name in request.body:
                setattr(secret, name, request.body[name])
        return Response(204, None)

    # -- test conveniences -------------------------------------------------------------------------
    def put(self, mount, path, data):
        """Write a new version directly (no HTTP); returns its version number."""
        with self.lock:
            secret = self.mounts[mount].setdefault(path, Secret())
            secret.current += 1
            secret.versions[secret.current] = {
                "data": dict(data),
                "created_time": now_rfc3339(),
                "deletion_time": "",
                "destroyed": False,
            }
            return secret.current

    def soft_delete(self, mount, path, version=None):
        with self.lock:
            secret = self.mounts[mount][path]
            secret.versions[version or secret.current]["deletion_time"] = now_rfc3339()


def _go_bool(text):
    """Vault parses flags with Go's strconv.ParseBool."""
    return text in ("1", "t", "T", "TRUE", "true", "True")


def _error(status, *messages):
    return Response(status, {"errors": list(messages)})


def _envelope(data):
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": None,
        "mount_type": "kv",
    }
