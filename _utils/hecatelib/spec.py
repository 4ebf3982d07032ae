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
import functools
import ipaddress
import re

import idna

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE | re.ASCII)
# Refused in every value that reaches a config file or a header: quotes, C0 and C1 controls (tab
# allowed), U+2028/U+2029 line and paragraph separators, and the bidi overrides that make text read
# differently than it is.
_UNSAFE = re.compile("[\r\n\"'`\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
QUOTE_LIMIT = 60  # characters of a pillar value quoted in a message
MESSAGE_LIMIT = 300  # characters of a reason (or a key path) in a report


MAX_LISTED = 100  # problems a PillarError message lists (all of them stay in ``errors``)


class PillarError(ValueError):
    """The pillar is invalid. ``errors`` is a list of ``(path, reason)``; ``str()`` lists the first
    MAX_LISTED of them."""

    def __init__(self, errors):
        self.errors = list(errors)
        lines = [f"{path}: {reason}" for path, reason in self.errors[:MAX_LISTED]]
        if len(self.errors) > MAX_LISTED:
            lines.append(f"... and {len(self.errors) - MAX_LISTED} more")
        count = len(self.errors)
        super().__init__(f"invalid pillar ({count} problem{'s' if count != 1 else ''}):\n  " + "\n  ".join(lines))


def quote(value, limit=QUOTE_LIMIT):
    """``value`` as a message may quote it: repr of at most ``limit`` characters of a string or a
    scalar, the type and size of a container (an alias bomb's value is never rendered)."""
    if isinstance(value, (dict, list, tuple, set)):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    text = value if isinstance(value, str) else str(value) if isinstance(value, (int, float, bool)) or value is None else None
    if text is None:
        return f"a {type(value).__name__}"
    if len(text) <= limit:
        return repr(value)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def _cap(text):
    text = str(text)
    return text if len(text) <= MESSAGE_LIMIT else f"{text[:MESSAGE_LIMIT]}... ({len(text)} characters)"


class Report:
    """Errors and warnings as ``(path, reason)``, each capped at MESSAGE_LIMIT characters: a hostile
    pillar cannot make a message big (keys are pillar data too)."""

    def __init__(self, root="hecate"):
        self.root = root
        self.errors = []
        self.warnings = []

    def error(self, path, reason):
        self.errors.append((_cap(path), _cap(reason)))

    def warn(self, path, reason):
        self.warnings.append((_cap(path), _cap(reason)))

    def raise_if_errors(self):
        if self.errors:
            raise PillarError(self.errors)


MAX_NODES = 1_000_000  # values in the tree, counting every use of a shared (YAML alias) value
MAX_DEPTH = 64  # levels of nesting
MAX_STRING = 1_000_000  # characters in one string
_KEY_TYPES = (str, int, float, bool, type(None))


class _Shape(Exception):
    pass


def shape_problem(tree, root="hecate"):
    """``(path, reason)`` when ``tree`` is too big, too deep, refers to itself or has a key no
    pillar can have; else None. Runs before any other check so that nothing walks a YAML alias bomb
    (795 bytes can expand to billions of values), recurses without end, or quotes a huge value.
    Shared values are measured once and counted at each use: linear in the tree as written."""
    sizes, active = {}, set()

    def size(node, path, depth):
        if isinstance(node, str):
            if len(node) > MAX_STRING:
                raise _Shape(path, f"a string of {len(node)} characters (at most {MAX_STRING})")
            return 1
        if not isinstance(node, (dict, list, tuple)):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in active:
            raise _Shape(path, "refers to itself (a YAML alias inside its own anchor)")
        if depth > MAX_DEPTH:
            raise _Shape(path, f"nested more than {MAX_DEPTH} levels deep")
        active.add(id(node))
        total = 1
        if isinstance(node, dict):
            for name, child in node.items():
                if not isinstance(name, _KEY_TYPES):
                    raise _Shape(path, f"has a key of type {type(name).__name__}: keys are strings or numbers")
                total += size(child, key(path, str(name)[:QUOTE_LIMIT]), depth + 1)
                if total > MAX_NODES:
                    break
        else:
            for i, child in enumerate(node):
                total += size(child, index(path, i), depth + 1)
                if total > MAX_NODES:
                    break
        active.discard(id(node))
        if total > MAX_NODES:
            raise _Shape(path, f"expands to more than {MAX_NODES} values (YAML aliases count at every use)")
        sizes[id(node)] = total
        return total

    try:
        size(tree, root, 0)
    except _Shape as exc:
        return exc.args
    return None


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
                text = str(name)[:QUOTE_LIMIT]
                close = difflib.get_close_matches(text, list(self.fields), n=1, cutoff=0.6) or [
                    known for known in self.fields if text.startswith(known) or known.startswith(text)
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
                    report.error(index(path, i), f"duplicate value {quote(item)}")
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
            close = difflib.get_close_matches(value[:QUOTE_LIMIT], list(self.choices), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            report.error(path, f"must be one of {', '.join(self.choices)}{hint}")
        elif self.pattern is not None and not self.pattern.search(value):
            report.error(path, f"is not a valid {self.what or 'value'}: {quote(value)}")
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


def secret_values(tree, spec, root="hecate"):
    """Every literal secret in ``tree`` (validated against ``spec``): ``[(path, value)]`` for the values
    the schema types :class:`Secret`, whatever their key is named. ``vault:``/``consul:`` references and
    values under 6 characters are left out: they are not secrets, or too short to look for in a text."""
    found = []
    _walk_secrets(tree, spec, root, found)
    return [(path, value) for path, value in found if len(value) >= 6 and not value.startswith(("vault:", "consul:"))]


def without_secrets(tree, spec):
    """A copy of ``tree`` without the values ``spec`` types :class:`Secret` (their keys removed)."""
    return _walk_secrets(tree, spec, "hecate", [])


@functools.cache
def _holds_secret(spec):
    """Does ``spec`` type a :class:`Secret` anywhere :func:`_walk_secrets` looks (a route holds none: 5000
    routes are not walked value by value)."""
    if isinstance(spec, Secret):
        return True
    if isinstance(spec, Map):
        return any(_holds_secret(field.spec) for field in spec.fields.values())
    if isinstance(spec, MapOf):
        return _holds_secret(spec.value_spec)
    return isinstance(spec, ListOf) and _holds_secret(spec.spec)


def _walk_secrets(value, spec, path, found):
    """``value`` rebuilt without its secrets (``_SECRET`` when ``value`` is one); each string secret is
    appended to ``found`` as ``(path, value)``. Secrets sit under Map, MapOf and ListOf only; a part whose
    spec holds none is kept as it is."""
    if isinstance(spec, Secret):
        if isinstance(value, str):
            found.append((path, value))
        return _SECRET
    if not _holds_secret(spec):
        return value
    if isinstance(spec, Map) and isinstance(value, dict):
        out = {}
        for name, item in value.items():
            field = spec.fields.get(name)
            kept = _walk_secrets(item, field.spec, key(path, name), found) if field else item
            if kept is not _SECRET:
                out[name] = kept
        return out
    if isinstance(spec, MapOf) and isinstance(value, dict):
        kept = {name: _walk_secrets(item, spec.value_spec, key(path, name), found) for name, item in value.items()}
        return {name: item for name, item in kept.items() if item is not _SECRET}
    if isinstance(spec, ListOf) and isinstance(value, list):
        kept = [_walk_secrets(item, spec.spec, index(path, i), found) for i, item in enumerate(value)]
        return [item for item in kept if item is not _SECRET]
    return value


_SECRET = object()


class Int:
    def __init__(self, minimum=None, maximum=None, what="integer"):
        self.minimum, self.maximum, self.what = minimum, maximum, what

    def __call__(self, value, path, report):
        if isinstance(value, bool):
            report.error(path, f"must be an {self.what}, got a boolean")
            return value
        if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):  # ASCII digits: int("²") raises
            value = int(value)
        if not isinstance(value, int):
            report.error(path, f"must be an {self.what}, got {quote(value)}")
            return value
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            report.error(path, f"{quote(value)} is out of range {self.minimum}..{self.maximum}")
        return value


def Port():
    return Int(1, 65535, "integer port")


class Bool:
    def __call__(self, value, path, report):
        if not isinstance(value, bool):
            report.error(path, f"must be true or false, got {quote(value)}")
        return value


# Go's time.ParseDuration (src/time/format.go): [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+ or "0", ASCII digits,
# these units, at most 2^63-1 ns. Caddy's caddy.ParseDuration (caddy.go) adds "d" (24h).
_GO_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)", re.ASCII)
_MAX_NS = 2**63 - 1


def parse_duration(text, days=False):
    """A Go duration string -> nanoseconds (int), or None when Go (Caddy with ``days``) refuses it."""
    if not isinstance(text, str) or len(text) > 1024:
        return None
    sign = -1 if text[:1] == "-" else 1
    rest = text[1:] if text[:1] in ("+", "-") else text
    if rest == "0":
        return 0
    if not rest:
        return None
    units = {**_GO_UNITS, "d": 86400 * 10**9} if days else _GO_UNITS
    total, pos = 0, 0
    while pos < len(rest):
        match = _DURATION_PART.match(rest, pos)
        whole, fraction, unit = match.groups()
        if (not whole and not fraction) or unit not in units:
            return None
        total += int(whole or 0) * units[unit]
        if fraction:
            total += int(fraction) * units[unit] // 10 ** len(fraction)
        if total > _MAX_NS:
            return None
        pos = match.end()
    return sign * total


class Duration(Str):
    """A duration as Caddy parses it (Go's syntax plus ``d``; ``days=False``: Go's own, for Terraform
    and Nomad). ``positive``: zero refused too (an interval of 0s). Integers mean seconds."""

    def __init__(self, positive=False, days=True):
        super().__init__(max_len=64, what="duration (like 10s, 5m, 1h30m)")
        self.positive, self.days = positive, days

    def __call__(self, value, path, report):
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"{value}s"
        value = super().__call__(value, path, report)
        if isinstance(value, str) and not _UNSAFE.search(value) and len(value) <= self.max_len:
            units = "ns, us, ms, s, m, h" + (", d" if self.days else "")
            nanoseconds = parse_duration(value, days=self.days)
            if nanoseconds is None:
                report.error(path, f"is not a valid duration (like 10s, 5m, 1h30m; ASCII digits; units {units}): {quote(value)}")
            elif nanoseconds < 0 or (self.positive and nanoseconds == 0):
                report.error(path, f"must be {'more than' if self.positive else 'at least'} 0s, got {quote(value)}")
        return value


_DOTS = re.compile("[.\u3002\uff0e\uff61]")  # the label separators UTS 46 maps to "." (its section 2.3)


def to_ascii(name):
    """The A-label form of ``name`` (:func:`_to_ascii`), remembered: a pillar of 5000 routes asks for each
    domain several times (validation, DNS, Caddy), in every process that validates it."""
    return _to_ascii(name if isinstance(name, str) else str(name))


@functools.lru_cache(maxsize=65536)
def _to_ascii(name):
    """``name`` as DNS and HTTP carry it: lower-case, one trailing dot dropped, each international label
    as its A-label by IDNA 2008 with the UTS 46 mapping, non-transitional (the ``idna`` package):
    ``Straße.example`` -> ``xn--strae-oqa.example``, ``βόλος.com`` keeps its final sigma. This is the one
    conversion every backend uses (validator, DNS, Caddy, authentik, probe).

    ASCII labels are kept as they are (DNS names have ``_`` and ``*``, hosts like ``r4---sn`` exist; each
    caller checks its own label rules); an ``xn--`` label must be the canonical A-label of a valid
    U-label. Raises ValueError naming the label and the reason: IDNA 2008 refuses it (``☃``,
    ``a<U+200D>b``), or it is non-ASCII text that UTS 46 maps to plain ASCII (``\\u017fecret``, long s, is ``secret``,
    a name that reads as another one than it is)."""
    text = str(name)
    if text.isascii():
        labels = text.lower().split(".")
    else:
        labels = []
        for label in _DOTS.split(text):
            try:  # UTS 46 section 4: map (case, compatibility forms) and NFC; "_" and "*" pass (no STD3 rules)
                mapped = idna.uts46_remap(label, std3_rules=False)
            except idna.IDNAError as exc:
                raise ValueError(f"{quote(name)} is not a valid international name: {exc}") from None
            if not label.isascii() and mapped.isascii():
                raise ValueError(
                    f"{quote(name)}: the label {quote(label)} reads as another name than it is "
                    f"(UTS 46 maps it to {quote(mapped)}); write {quote(mapped)}"
                )
            labels.extend(mapped.split("."))  # a few compatibility characters map to text with a dot (U+2488)
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    return ".".join(_alabel(label, name) for label in labels)


def _alabel(label, name):
    if label.isascii() and not label.startswith("xn--"):
        return label
    try:
        if not label.isascii():
            return idna.alabel(label).decode("ascii")
        if label.startswith("xn--") and idna.alabel(idna.ulabel(label)).decode("ascii") != label:
            raise idna.IDNAError("not the canonical A-label of its U-label")
    except idna.IDNAError as exc:
        reason = str(exc) or type(exc).__name__
        raise ValueError(f"{quote(name)} is not a valid international name (IDNA 2008): label {quote(label)}: {reason}") from None
    return label


def to_unicode(name):
    """The U-label form of an ASCII name (``xn--strae-oqa.example`` -> ``straße.example``) for display;
    labels that are not valid A-labels are shown as they are."""
    labels = []
    for label in str(name).split("."):
        try:
            labels.append(idna.ulabel(label) if label.startswith("xn--") else label)
        except idna.IDNAError:
            labels.append(label)
    return ".".join(labels)


def shown(name):
    """How a name is shown to the operator: ``straße.example (xn--strae-oqa.example)`` when it has an
    international label, else just the name."""
    unicode = to_unicode(name)
    return name if unicode == name else f"{unicode} ({name})"


def is_hostname(value, wildcard=False):
    """A DNS name as Caddy's host matcher and the public DNS can use it, after :func:`to_ascii`: ASCII
    labels of letters, digits and inner hyphens, at most 253 characters, a last label that is not all
    digits (so ``12345`` and ``999.999.999.999`` are not names); international labels must be valid
    IDNA 2008 (``straße.example`` and ``xn--strae-oqa.example`` are the same valid name)."""
    return hostname_problem(value, wildcard) is None


def hostname_problem(value, wildcard=False):
    """Why ``value`` is not a host name :func:`is_hostname` accepts, or None."""
    try:
        name = to_ascii(value)
    except ValueError as exc:
        return str(exc)
    invalid = f"is not a valid hostname: {quote(value)}"
    if not name or len(name) > 253:
        return invalid
    labels = name.split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
    if not labels or not all(_HOST_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return invalid
    return None


def is_ip(value):
    """An IP address (``[v6]`` too). IPv6 zone ids (``fe80::1%eth0``) are refused: free text in a dial."""
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value.strip("[]"))
        return True
    except ValueError:
        return False


def _address(host):
    """``host`` as an IP address (an IPv4-mapped IPv6 one as its IPv4 address), or None for a DNS name."""
    host = host.strip("[]").lower()
    if ":" not in host and not host[-1:].isdigit():  # a DNS name: not an address (the cheap common case)
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address


def is_loopback(host):
    """Does dialing ``host`` reach the machine itself? 127.0.0.0/8, ::1 (also IPv4-mapped), the
    unspecified addresses (Linux connects 0.0.0.0 and :: to the local host) and ``localhost`` names
    (RFC 6761: ``*.localhost`` too)."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost") or name == "localhost.localdomain":
        return True
    address = _address(name)
    return address is not None and (address.is_loopback or address.is_unspecified)


def is_link_local(host):
    """Is ``host`` a link-local address (169.254.0.0/16, fe80::/10, IPv4-mapped too)? The cloud's metadata
    service answers there (169.254.169.254 on Hetzner Cloud, AWS, GCP and Azure) with the machine's user data
    and credentials: pillar never sends traffic or probes to it."""
    address = _address(host)
    return address is not None and address.is_link_local


LINK_LOCAL = "is link-local, where the cloud's metadata service answers with this machine's secrets"


class Hostname(Str):
    """A DNS name (``wildcard``: ``*.example.org`` allowed) or, with ``ip``, an IP address too."""

    def __init__(self, wildcard=False, ip=False):
        super().__init__(max_len=253)
        self.wildcard, self.ip = wildcard, ip

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str) and not _UNSAFE.search(value):
            if self.ip and is_ip(value):
                return value.lower()
            problem = hostname_problem(value, self.wildcard)
            if problem:
                report.error(path, problem)
                return value
            value = to_ascii(value)  # the A-label form: what every backend writes and compares
        return value


class AbsPath(Str):
    """An absolute filesystem path without ``..``."""

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str) and (not value.startswith("/") or ".." in value.split("/")):
            report.error(path, f"must be an absolute path without '..', got {value!r}")
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
            report.error(path, f"must be {quote(self.expected)}")
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
    """``host:port`` / ``[v6]:port`` -> (host, port) or None. The port is ASCII digits only."""
    match = re.match(r"^\[([0-9a-fA-F:.]+)\]:([0-9]+)$", value) or re.match(r"^([^:\[\]/]+):([0-9]+)$", value)
    if not match:
        return None
    return match.group(1), int(match.group(2))


# -- the grammar of pillar values shared by every backend (no imports: everything may use it) ----------
def parse_backend(value):
    """Parse a backend string (see :func:`_parse_backend`); a fresh dict each call (parsing is cached:
    validation and compile of 5000 routes ask for each backend several times)."""
    return dict(_parse_backend(value)) if isinstance(value, str) else _parse_backend(value)


@functools.lru_cache(maxsize=65536)
def _parse_backend(value):
    """Parse a backend string. Returns a dict ``{scheme, host, port}`` or raises ValueError(reason).

    ``host:port`` and ``http://host[:port]`` -> scheme http; ``https://host[:port]`` -> scheme https
    (port 443 by default); ``consul://service[:port]`` -> scheme consul (Caddy dynamic upstreams: SRV
    without a port, A records with one).
    """
    if not isinstance(value, str) or not value:
        raise ValueError("must be a string like host:port or https://host[:port]")
    shown = quote(value)
    match = re.match(r"^(https?|consul)://([^/?#]+)/?$", value)
    authority = match.group(2) if match else value
    if "@" in authority:  # the value is not shown: what precedes @ is a password as often as not
        reason = "has credentials (user@ or user:password@): Caddy never sends them to a backend"
        raise ValueError(f"{reason}; give host:port or https://host[:port] (and a profile header if the backend needs one)")
    if match:
        scheme, rest = match.groups()
        hostport = parse_hostport(rest)
        if hostport is None:
            host, port = rest.strip("[]"), None
            if ":" in rest and not is_ip(host):
                raise ValueError(f"{shown}: the port must be ASCII digits")
        else:
            host, port = hostport
    else:
        if re.match(r"^(https?|consul)://", value):
            raise ValueError(f"{shown} is neither host:port nor http(s)://host[:port] (no path allowed)")
        if "://" in value:
            raise ValueError(f"{shown}: scheme must be http, https or consul")
        hostport = parse_hostport(value)
        if hostport is None:
            raise ValueError(f"{shown} is neither host:port nor http(s)://host[:port] (port in ASCII digits)")
        scheme, (host, port) = "http", hostport
    if not (is_hostname(host) or is_ip(host)):
        raise ValueError(f"{shown}: {quote(host)} is not a valid host")
    if is_link_local(host):
        raise ValueError(f"{shown}: {quote(host)} {LINK_LOCAL}: a route would publish it")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{shown}: port {port} is out of range 1..65535")
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return {"scheme": scheme, "host": host, "port": port}


def route_backends(route):
    """A route's backends in order: ``backend`` first, then ``backends``; duplicates dropped."""
    items = ([route["backend"]] if route.get("backend") else []) + list(route.get("backends") or [])
    return list(dict.fromkeys(items))


def route_service(route):
    return route.get("service") or route["domain"].replace("*", "wildcard").replace(".", "-")
