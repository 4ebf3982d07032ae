"""Pillar validation combinators: small, declarative, and every error names its key path.

A spec is a callable ``spec(value, path, report) -> normalised value``. Specs never raise: they add
``(path, reason)`` to the report and return something usable so one run lists every problem.
``Map`` rejects unknown keys with a did-you-mean. Values that reach config files (Caddy JSON, nginx
conf, HCL) are refused when they carry CR/LF, quotes or other control characters.

    SCHEMA = Map({"name": Field(Str(), required=True), "port": Field(Port(), default=80)})
    report = Report("hecate")
    tree = SCHEMA(pillar, report.root, report)
    report.raise_if_errors()
"""

import difflib
import ipaddress
import re

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
_UNSAFE = re.compile(r"[\r\n\"'`\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d))+$")


class PillarError(ValueError):
    """The pillar is invalid. ``errors`` is a list of ``(path, reason)``; ``str()`` lists them all."""

    def __init__(self, errors):
        self.errors = list(errors)
        lines = [f"{path}: {reason}" for path, reason in self.errors]
        super().__init__(f"invalid pillar ({len(lines)} problem{'s' if len(lines) != 1 else ''}):\n  " + "\n  ".join(lines))


class Report:
    def __init__(self, root="hecate"):
        self.root = root
        self.errors = []
        self.warnings = []

    def error(self, path, reason):
        self.errors.append((path, reason))

    def warn(self, path, reason):
        self.warnings.append((path, reason))

    def raise_if_errors(self):
        if self.errors:
            raise PillarError(self.errors)


def key(path, name):
    return f"{path}:{name}"


def index(path, i):
    return f"{path}[{i}]"


class Field:
    def __init__(self, spec, required=False, default=None, doc=""):
        self.spec, self.required, self.default, self.doc = spec, required, default, doc


class Map:
    """A mapping with known keys. ``fields``: name -> Field (or a bare spec: optional, no default)."""

    def __init__(self, fields, allow_null=True):
        self.fields = {k: v if isinstance(v, Field) else Field(v) for k, v in fields.items()}
        self.allow_null = allow_null

    def __call__(self, value, path, report):
        if value is None and self.allow_null:
            value = {}
        if not isinstance(value, dict):
            report.error(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        out = {}
        for name, item in value.items():
            if name not in self.fields:
                close = difflib.get_close_matches(str(name), list(self.fields), n=1, cutoff=0.6) or [
                    known for known in self.fields if str(name).startswith(known) or known.startswith(str(name))
                ]
                hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(self.fields))}"
                report.error(key(path, name), "unknown key" + hint)
                continue
            out[name] = self.fields[name].spec(item, key(path, name), report)
        for name, field in self.fields.items():
            if name in out:
                continue
            if field.required:
                report.error(key(path, name), "required")
            elif field.default is not None:
                default = field.default() if callable(field.default) else field.default
                out[name] = field.spec(default, key(path, name), report)
        return out


class MapOf:
    """A mapping with free keys (checked by ``key_spec``) and uniform values."""

    def __init__(self, value_spec, key_spec=None):
        self.value_spec, self.key_spec = value_spec, key_spec

    def __call__(self, value, path, report):
        if value is None:
            return {}
        if not isinstance(value, dict):
            report.error(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        out = {}
        for name, item in value.items():
            if self.key_spec:
                name = self.key_spec(name, key(path, name), report)
            out[name] = self.value_spec(item, key(path, name), report)
        return out


class ListOf:
    def __init__(self, spec, min_items=0, unique=False):
        self.spec, self.min_items, self.unique = spec, min_items, unique

    def __call__(self, value, path, report):
        if value is None:
            value = []
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            report.error(path, f"must be a list, got {type(value).__name__}")
            return []
        if len(value) < self.min_items:
            report.error(path, f"needs at least {self.min_items} item(s)")
        out = [self.spec(item, index(path, i), report) for i, item in enumerate(value)]
        if self.unique:
            seen = set()
            for i, item in enumerate(out):
                marker = repr(item)
                if marker in seen:
                    report.error(index(path, i), f"duplicate value {item!r}")
                seen.add(marker)
        return out


class Str:
    """A string. ``safe`` (default) refuses characters that could break out of a config file."""

    def __init__(self, choices=None, pattern=None, safe=True, min_len=1, max_len=4096, what=None):
        self.choices = choices
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        self.safe, self.min_len, self.max_len, self.what = safe, min_len, max_len, what

    def __call__(self, value, path, report):
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            report.error(path, f"must be a string, got {type(value).__name__ if value is not None else 'null'}")
            return value
        value = str(value)
        if self.safe and _UNSAFE.search(value):
            report.error(path, "contains a newline, quote or control character (not allowed in config values)")
            return value
        if not self.min_len <= len(value) <= self.max_len:
            report.error(path, f"length must be {self.min_len}..{self.max_len}")
        if self.choices is not None and value not in self.choices:
            close = difflib.get_close_matches(value, list(self.choices), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            report.error(path, f"must be one of {', '.join(self.choices)}{hint}")
        elif self.pattern is not None and not self.pattern.search(value):
            report.error(path, f"is not a valid {self.what or 'value'}: {value!r}")
        return value


class Secret(Str):
    """A secret string: a literal, or a ``vault:path[#key]`` / ``consul:key`` reference. Never echoed."""

    def __init__(self):
        super().__init__(safe=True)

    def __call__(self, value, path, report):
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            report.error(path, "must be a string (a secret or a vault:/consul: reference)")
            return value
        value = str(value)
        if _UNSAFE.search(value):
            report.error(path, "contains a newline, quote or control character (value not shown: it is a secret)")
        return value


class Int:
    def __init__(self, minimum=None, maximum=None, what="integer"):
        self.minimum, self.maximum, self.what = minimum, maximum, what

    def __call__(self, value, path, report):
        if isinstance(value, bool):
            report.error(path, f"must be an {self.what}, got a boolean")
            return value
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int):
            report.error(path, f"must be an {self.what}, got {value!r}")
            return value
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            report.error(path, f"{value} is out of range {self.minimum}..{self.maximum}")
        return value


def Port():
    return Int(1, 65535, "integer port")


class Bool:
    def __call__(self, value, path, report):
        if not isinstance(value, bool):
            report.error(path, f"must be true or false, got {value!r}")
        return value


class Duration(Str):
    def __init__(self):
        super().__init__(pattern=_DURATION, what="duration (like 10s, 5m, 1h30m)")

    def __call__(self, value, path, report):
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"{value}s"
        return super().__call__(value, path, report)


def is_hostname(value, wildcard=False):
    value = value[:-1] if value.endswith(".") else value
    if not value or len(value) > 253:
        return False
    labels = value.split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
    return bool(labels) and all(_HOST_LABEL.match(label) for label in labels)


def is_ip(value):
    try:
        ipaddress.ip_address(value.strip("[]"))
        return True
    except ValueError:
        return False


class Hostname(Str):
    """A DNS name (``wildcard``: ``*.example.org`` allowed) or, with ``ip``, an IP address too."""

    def __init__(self, wildcard=False, ip=False):
        super().__init__()
        self.wildcard, self.ip = wildcard, ip

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str) and not _UNSAFE.search(value):
            if not (is_hostname(value, self.wildcard) or (self.ip and is_ip(value))):
                report.error(path, f"is not a valid hostname: {value!r}")
            value = value.lower().rstrip(".")
        return value


class Either:
    """The first spec whose check passes wins; otherwise report ``reason``."""

    def __init__(self, reason, *specs):
        self.reason, self.specs = reason, specs

    def __call__(self, value, path, report):
        for spec in self.specs:
            trial = Report(report.root)
            out = spec(value, path, trial)
            if not trial.errors:
                report.warnings.extend(trial.warnings)
                return out
        report.error(path, self.reason)
        return value


class Const:
    """Accepts exactly one value (e.g. ``false`` for "turn this off")."""

    def __init__(self, expected):
        self.expected = expected

    def __call__(self, value, path, report):
        if value != self.expected or type(value) is not type(self.expected):
            report.error(path, f"must be {self.expected!r}")
        return value


class Anything:
    """Opaque data hecate passes through without interpreting (still no unsafe strings inside)."""

    def __call__(self, value, path, report):
        if isinstance(value, str) and _UNSAFE.search(value):
            report.error(path, "contains a newline, quote or control character")
        elif isinstance(value, dict):
            for k, v in value.items():
                self(v, key(path, k), report)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self(v, index(path, i), report)
        return value


def parse_hostport(value):
    """``host:port`` / ``[v6]:port`` -> (host, port) or None."""
    match = re.match(r"^\[([0-9a-fA-F:.]+)\]:(\d+)$", value) or re.match(r"^([^:\[\]/]+):(\d+)$", value)
    if not match:
        return None
    return match.group(1), int(match.group(2))


# -- the grammar of pillar values shared by every backend (no imports: everything may use it) ----------
def parse_backend(value):
    """Parse a backend string. Returns a dict ``{scheme, host, port}`` or raises ValueError(reason).

    ``host:port`` and ``http://host[:port]`` -> scheme http; ``https://host[:port]`` -> scheme https
    (port 443 by default); ``consul://service[:port]`` -> scheme consul (Caddy dynamic upstreams: SRV
    without a port, A records with one).
    """
    if not isinstance(value, str) or not value:
        raise ValueError("must be a string like host:port or https://host[:port]")
    match = re.match(r"^(https?|consul)://([^/?#]+)/?$", value)
    if match:
        scheme, rest = match.groups()
        hostport = parse_hostport(rest)
        if hostport is None:
            host, port = rest.strip("[]"), None
            if ":" in rest and not is_ip(host):
                raise ValueError(f"{value!r}: port must be a number")
        else:
            host, port = hostport
    else:
        if re.match(r"^(https?|consul)://", value):
            raise ValueError(f"{value!r} is neither host:port nor http(s)://host[:port] (no path allowed)")
        if "://" in value:
            raise ValueError(f"{value!r}: scheme must be http, https or consul")
        hostport = parse_hostport(value)
        if hostport is None:
            raise ValueError(f"{value!r} is neither host:port nor http(s)://host[:port]")
        scheme, (host, port) = "http", hostport
    if not (is_hostname(host) or is_ip(host)):
        raise ValueError(f"{value!r}: {host!r} is not a valid host")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{value!r}: port {port} is out of range 1..65535")
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return {"scheme": scheme, "host": host, "port": port}


def route_backends(route):
    """A route's backends in order: ``backend`` first, then ``backends``; duplicates dropped."""
    items = ([route["backend"]] if route.get("backend") else []) + list(route.get("backends") or [])
    return list(dict.fromkeys(items))


def route_service(route):
    return route.get("service") or route["domain"].replace("*", "wildcard").replace(".", "-")
