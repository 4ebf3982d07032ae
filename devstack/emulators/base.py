"""Shared plumbing for the vendor emulators: an HTTP server on 127.0.0.1 that records every request,
checks it against the vendor's OpenAPI document, keeps its own state and can inject faults.

An emulator subclasses :class:`Emulator`, registers routes with :meth:`Emulator.route` and keeps its
state in plain attributes. Tests read ``emulator.requests`` (every request, in order),
``emulator.writes`` (the non-GET ones) and ``emulator.violations`` (contract violations; a fixture
asserts it is empty at teardown, so a request the vendor would reject fails the test).
"""

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
import yaml

from devstack.http import serve

READ_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass
class Request:
    method: str
    path: str  # decoded path, without query string
    raw_path: str  # as sent, still percent-encoded
    query: dict  # name -> list of values
    headers: dict  # lower-cased names
    body: object  # parsed JSON, raw text, or None
    params: dict = field(default_factory=dict)  # path template parameters

    def arg(self, name, default=None):
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass
class Response:
    status: int = 200
    body: object = None
    headers: dict = field(default_factory=dict)


class Fault:
    """One injected fault: answer ``status`` (or sleep ``delay`` seconds first) for the next ``times``
    requests whose method and path match."""

    def __init__(self, status=None, times=1, method=None, path=None, delay=0.0, body=None, headers=None, after=False):
        self.status, self.times, self.method = status, times, method
        self.path = re.compile(path) if path else None
        self.delay, self.body, self.headers = delay, body, headers or {}
        self.after = after  # apply the request to the state first, then answer the fault (a "lost" reply)

    def matches(self, request):
        return (
            self.times > 0
            and (self.method is None or self.method == request.method)
            and (self.path is None or self.path.search(request.path))
        )


class OpenAPIRequestChecker:
    """Validates requests against an OpenAPI 3.x document: the path and method exist, required query
    parameters are present, and the JSON body matches the operation's request schema."""

    def __init__(self, spec, draft=jsonschema.Draft202012Validator, nullable=False):
        self.spec = spec
        self.draft = draft
        self.nullable = nullable  # OpenAPI 3.0 "nullable: true" -> allow null
        self.templates = []
        for template, ops in spec.get("paths", {}).items():
            regex = re.escape(template)
            regex = re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", regex)
            self.templates.append((re.compile("^" + regex + "$"), template, ops))
        # Most specific templates first: literal segments beat parameters.
        self.templates.sort(key=lambda t: t[1].count("{"))

    @classmethod
    def from_file(cls, path, **kwargs):
        with open(path, encoding="utf-8") as handle:
            spec = json.load(handle) if path.endswith(".json") else yaml.safe_load(handle)
        return cls(spec, **kwargs)

    def match(self, path):
        for regex, template, ops in self.templates:
            found = regex.match(path)
            if found:
                return template, ops, {k: unquote(v) for k, v in found.groupdict().items()}
        return None, None, {}

    def check(self, request, base_path=""):
        """Return a list of violations (strings); empty when the request is valid."""
        path = request.raw_path[len(base_path) :] if request.raw_path.startswith(base_path) else request.raw_path
        template, ops, _ = self.match(path)
        if template is None:
            return [f"{request.method} {path}: no such path in the spec"]
        op = ops.get(request.method.lower())
        if op is None:
            return [f"{request.method} {template}: method not in the spec"]
        problems = []
        for param in op.get("parameters", []) + ops.get("parameters", []):
            param = self.resolve(param)
            if param.get("in") == "query" and param.get("required") and param["name"] not in request.query:
                problems.append(f"{request.method} {template}: missing required query parameter {param['name']}")
        body_spec = self.resolve(op.get("requestBody", {}))
        schema = body_spec.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None and request.method not in READ_METHODS:
            if request.body is None and body_spec.get("required"):
                problems.append(f"{request.method} {template}: request body required")
            elif request.body is not None:
                problems.extend(f"{request.method} {template}: {p}" for p in self.validate(request.body, schema))
        return problems

    def validate(self, instance, schema):
        schema = self.prepare(schema)
        validator = self.draft({**schema, "components": self.spec.get("components", {})})
        return [f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}" for e in validator.iter_errors(instance)]

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = self.pointer(node["$ref"])
        return node

    def pointer(self, ref):
        node = self.spec
        for part in ref.lstrip("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def prepare(self, schema):
        """OpenAPI 3.0 quirks: ``nullable`` and read-only properties the client never sends."""
        if not self.nullable:
            return schema
        return _openapi30_to_jsonschema(schema, self)


def _openapi30_to_jsonschema(schema, checker, seen=None, response=False):
    """``response``: keep read-only properties required (a server's answer has them)."""
    seen = seen if seen is not None else {}
    if isinstance(schema, list):
        return [_openapi30_to_jsonschema(s, checker, seen, response) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref not in seen:
            seen[ref] = None
            seen[ref] = _openapi30_to_jsonschema(checker.pointer(ref), checker, seen, response)
        target = seen[ref]
        return target if target is not None else {}
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {k: _openapi30_to_jsonschema(v, checker, seen, response) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _openapi30_to_jsonschema(value, checker, seen, response)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_openapi30_to_jsonschema(v, checker, seen, response) for v in value]
        elif key in ("nullable", "readOnly", "writeOnly", "example", "discriminator", "xml", "externalDocs"):
            continue
        else:
            out[key] = value
    if schema.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    if "required" in out and isinstance(schema.get("properties"), dict) and not response:
        # readOnly properties are required in responses only.
        read_only = {k for k, v in schema["properties"].items() if isinstance(v, dict) and v.get("readOnly")}
        out["required"] = [r for r in out["required"] if r not in read_only]
    return out


class Emulator:
    """Base class: subclass, register handlers with ``self.route(method, regex, handler)``.

    A handler takes a :class:`Request` and returns a :class:`Response` (or a ``(status, body)``
    tuple, or a body for 200)."""

    name = "emulator"
    checker = None  # an OpenAPIRequestChecker, or None
    base_path = ""  # prefix stripped before matching the spec (e.g. "/v1")

    def __init__(self):
        self.routes = []
        self.requests = []
        self.violations = []
        self.faults = []
        self.lock = threading.RLock()
        self.server = None
        self.thread = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, port=0):
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: Nagle + delayed ACK cost ~40 ms each

            def log_message(self, *args):  # keep test output clean
                pass

            def _serve(self):
                emulator._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = serve(self.server)
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    # -- introspection for tests -----------------------------------------------------------------
    @property
    def writes(self):
        return [r for r in self.requests if r.method not in READ_METHODS]

    @property
    def reads(self):
        return [r for r in self.requests if r.method in READ_METHODS]

    def reset_counts(self):
        with self.lock:
            self.requests.clear()

    def inject(self, status=None, times=1, method=None, path=None, delay=0.0, body=None, headers=None, after=False):
        fault = Fault(status, times, method, path, delay, body, headers, after)
        with self.lock:
            self.faults.append(fault)
        return fault

    def route(self, method, regex, handler):
        self.routes.append((method, re.compile("^" + regex + "$"), handler))

    # -- request handling ----------------------------------------------------------------------
    def authenticate(self, request):
        """Return a Response to refuse the request, or None to let it through."""
        return None

    def _dispatch(self, http):
        split = urlsplit(http.path)
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in http.headers.items()}
        body = None
        if raw:
            text = raw.decode("utf-8", "replace")
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        request = Request(http.command, unquote(split.path), split.path, parse_qs(split.query, keep_blank_values=True), headers, body)
        with self.lock:
            self.requests.append(request)
            fault = next((f for f in self.faults if f.matches(request)), None)
            if fault:
                fault.times -= 1
        if self.checker is not None:
            problems = self.checker.check(request, self.base_path)
            if problems:
                with self.lock:
                    self.violations.extend(problems)
                return self._send(http, Response(400, {"error": {"code": "contract_violation", "message": problems}}))
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status and not fault.after:
            return self._send(http, Response(fault.status, fault.body, fault.headers))
        refusal = self.authenticate(request)
        if refusal is not None:
            return self._send(http, refusal)
        response = self._handle(request)
        problems = self.response_problems(request, response)
        if problems:
            with self.lock:
                self.violations.extend(problems)
        if fault and fault.status and fault.after:
            response = Response(fault.status, fault.body, fault.headers)
        self._send(http, response)

    def response_problems(self, request, response):
        """What is wrong with our own answer by the vendor's spec (emulators that check answers say)."""
        return []

    def _handle(self, request):
        for method, regex, handler in self.routes:
            if method != request.method:
                continue
            found = regex.match(request.path)
            if found:
                request.params = found.groupdict()
                with self.lock:
                    result = handler(request)
                return _as_response(result)
        return self.not_found(request)

    def not_found(self, request):
        return Response(404, {"error": f"no route for {request.method} {request.path}"})

    def _send(self, http, response):
        body = response.body
        if body is None:
            payload = b""
        elif isinstance(body, (bytes, bytearray)):
            payload = bytes(body)
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = json.dumps(body).encode()
        try:
            http.send_response(response.status)
            headers = {"Content-Type": "application/json", **response.headers}
            for key, value in headers.items():
                http.send_header(key, str(value))
            http.send_header("Content-Length", str(len(payload)))
            http.end_headers()
            if http.command != "HEAD":
                http.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass


def _as_response(result):
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        return Response(*result)
    return Response(200, result)
