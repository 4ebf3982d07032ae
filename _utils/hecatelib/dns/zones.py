"""DNS for hecate: the ``hecate:dns`` pillar section, its checks, and the pure compile and diff.

No I/O here. Three layers, each usable on its own:

- **values and names**: :func:`normalise_value` turns a record value into the one canonical
  presentation form the diff compares (IPv6 compressed, host names absolute and lower-case, TXT as
  quoted chunks of at most 255 *bytes*, CAA/MX/SRV/TLSA/DS fields re-spaced), :func:`relative_name`
  maps a host name to the zone-relative RRSet name the Hetzner Cloud API wants (``@`` for the apex).
- **pillar**: :data:`PILLAR_SCHEMA` (``hecate:dns``), :data:`ROUTE_DNS_SCHEMA` (a route's ``dns``) and
  :func:`check_pillar` (the checks that span keys); :func:`compile_zones` derives every managed zone's
  desired RRSets from the validated ``hecate`` tree: each route domain inside a managed zone gets A/AAAA
  to the edge targets (or its own CNAME), plus the extra records of ``hecate:dns:records``.
- **wildcard**: with ``hecate:dns:wildcard``, :func:`fold_wildcard` lets one ``*`` set per type answer for
  the routes that resolve to the edge targets, wherever DNS would answer them from it (RFC 4592), so a
  zone of thousands of routes holds a handful of sets;
- **diff**: :func:`plan` compares desired RRSets with what one read of the zone returned and lists the
  minimum writes (create, set_records, change_ttl, labels, delete), the failures (change-protected sets,
  conflicts with sets hecate does not own) and nothing else. SOA and the apex NS set are never touched;
  pruning only ever deletes sets carrying hecate's labels.
"""

import ipaddress
import re

import dns.exception
import dns.name
import dns.rdata

from hecatelib import api, spec
from hecatelib.spec import (
    Bool,
    Const,
    Either,
    Field,
    Int,
    ListOf,
    Map,
    Report,
    Secret,
    Str,
    index,
    is_hostname,
    key,
    quote,
)

__all__ = [
    "PILLAR_SCHEMA",
    "ROUTE_DNS_SCHEMA",
    "check",
    "check_pillar",
    "compile_zones",
    "fold_wildcard",
    "normalise_value",
    "plan",
    "relative_name",
]

TYPES = ("A", "AAAA", "CAA", "CNAME", "DS", "HINFO", "HTTPS", "MX", "NS", "PTR", "RP", "SOA", "SRV", "SVCB", "TLSA", "TXT")
PILLAR_TYPES = tuple(t for t in TYPES if t != "SOA")
TTL_MIN, TTL_MAX = 60, 2**31 - 1
MAX_RECORDS = 50  # values per record set (Hetzner's set_records takes at most 50)
TXT_CHUNK = 255  # bytes per TXT character-string
DEFAULT_TTL = 300
MANAGED_BY = "managed-by"
OWNER = "hecate-owner"

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
# RFC 8659 section 4.2: parameter = tag *WSP "=" *WSP value; tag = (ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT));
# value = *(%x21-3A / %x3C-7E)
_CAA_PARAMETER = re.compile(r"[A-Za-z0-9](?:-*[A-Za-z0-9])*[ \t]*=[ \t]*[\x21-\x3a\x3c-\x7e]*")
_URL = re.compile(r"^(https?)://([^/?#\s]+)(/[^?#\s]*)?$")


# -- names -------------------------------------------------------------------------------------------


def to_ascii(name):
    """``name`` without surrounding blanks, through :func:`hecatelib.spec.to_ascii` (lower-case, one trailing
    dot dropped, international labels as A-labels by IDNA 2008 + UTS 46). Raises ValueError(reason)."""
    return spec.to_ascii(str(name).strip())


def name_problem(name, wildcard=True):
    """Why ``name`` (absolute, already :func:`to_ascii`) is not a valid owner name, or None."""
    if not name:
        return "is empty"
    if len(name) > 253:
        return "is longer than 253 characters"
    labels = name.split(".")
    for i, label in enumerate(labels):
        if label == "*":
            if not wildcard:
                return "may not be a wildcard"
            if i != 0:
                return "has a wildcard '*' that is not the whole leftmost label"
            continue
        if "*" in label:
            return "has a '*' inside a label; a wildcard must be the whole leftmost label (*.example.org)"
        if not _LABEL.match(label):
            return f"has an invalid label {label!r} (letters, digits, '-' and '_', 1..63, no leading/trailing '-')"
    return None


def host_problem(name):
    """Why ``name`` is not a valid target host name (no wildcard), or None."""
    return name_problem(name, wildcard=False)


def relative_name(name, zone):
    """The RRSet name of ``name`` inside ``zone``: ``@`` for the apex, ``www`` for ``www.<zone>``.

    ``name`` may already be relative (``www``, ``@``). Raises ValueError when it is not a valid name.
    """
    zone = to_ascii(zone)
    raw = str(name).strip()
    if raw == "@":
        return "@"
    absolute = raw.endswith(".")
    name = to_ascii(raw)
    if name == zone:
        return "@"
    if name.endswith("." + zone):
        rel = name[: -len(zone) - 1]
    elif absolute:
        raise ValueError(f"{raw!r} is outside zone {zone}")
    else:
        rel = name
    problem = name_problem(f"{rel}.{zone}")
    if problem:
        raise ValueError(f"{raw!r} {problem}")
    return rel


def absolute_name(rel, zone):
    return zone if rel == "@" else f"{rel}.{zone}"


def zone_for(name, zones):
    """The longest managed zone that contains host name ``name``, or None."""
    name = to_ascii(name)
    best = None
    for zone in zones:
        if (name == zone or name.endswith("." + zone)) and (best is None or len(zone) > len(best)):
            best = zone
    return best


# -- values ------------------------------------------------------------------------------------------


def _int_field(text, low, high, what):
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{what} must be an integer {low}..{high}, got {text!r}")
    return int(text)


def _host(value, origin=None, null_ok=False):
    """An absolute, lower-case host name with a trailing dot. Without a trailing dot, ``value`` is
    absolute (pillar and CLI form) unless ``origin`` is given (zone-file form: relative to the zone)."""
    if value == "." and null_ok:
        return "."
    if value == "@" and origin:
        return origin + "."
    absolute = value.endswith(".")
    name = to_ascii(value)
    if origin and not absolute:
        name = f"{name}.{origin}"
    problem = host_problem(name)
    if problem:
        raise ValueError(f"host name {value!r} {problem}")
    return name + "."


def chunk_txt(text):
    """Split ``text`` into chunks of at most 255 UTF-8 bytes, never inside a character."""
    chunks, current, size = [], [], 0
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > TXT_CHUNK:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    chunks.append("".join(current))
    return chunks


def parse_txt(value):
    """Parse a TXT value of quoted character-strings (``"a" "b"``) into its chunks.

    Understands ``\\"``, ``\\\\`` and ``\\DDD`` escapes. Raises ValueError on anything else outside quotes,
    an unterminated string, or a chunk over 255 bytes.
    """
    chunks, i, n = [], 0, len(value)
    while i < n:
        if value[i] in " \t":
            i += 1
            continue
        if value[i] != '"':
            raise ValueError(f"TXT value has text outside quotes at position {i}: {value!r}")
        i += 1
        out = bytearray()
        while True:
            if i >= n:
                raise ValueError(f"TXT value has an unterminated quoted string: {value!r}")
            char = value[i]
            if char == '"':
                i += 1
                break
            if char == "\\":
                if value[i + 1 : i + 4].isdigit() and len(value[i + 1 : i + 4]) == 3:
                    code = int(value[i + 1 : i + 4])
                    if code > 255:
                        raise ValueError(f"TXT escape \\{value[i + 1 : i + 4]} is over 255")
                    out.append(code)
                    i += 4
                    continue
                if i + 1 >= n:
                    raise ValueError(f"TXT value ends in a lone backslash: {value!r}")
                out.extend(value[i + 1].encode("utf-8"))
                i += 2
                continue
            out.extend(char.encode("utf-8"))
            i += 1
        if len(out) > TXT_CHUNK:
            raise ValueError(f"TXT chunk {len(chunks) + 1} is {len(out)} bytes; a chunk holds at most {TXT_CHUNK}")
        if i < n and value[i] not in " \t":
            raise ValueError(f"TXT quoted strings must be separated by spaces: {value!r}")
        try:
            chunks.append(out.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(f"TXT chunk {len(chunks) + 1} is not valid UTF-8") from exc
    if not chunks:
        raise ValueError("TXT value is empty")
    return chunks


def quote_txt(chunks):
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def txt_value(text):
    """The canonical TXT value: ``text`` as quoted chunks of at most 255 bytes. Text that already starts
    with a quote is taken as quoted character-strings and re-quoted canonically."""
    if _CONTROL.search(text):
        raise ValueError("TXT value contains a newline or control character")
    if text.lstrip().startswith('"'):
        return quote_txt(parse_txt(text.strip()))
    return quote_txt(chunk_txt(text))


def _caa(value):
    match = re.match(r"^(\d+)\s+([A-Za-z0-9]+)\s+(.+)$", value)
    if not match:
        raise ValueError(f'CAA value must be: flags tag "value" (like 0 issue "letsencrypt.org"), got {value!r}')
    flags = _int_field(match.group(1), 0, 255, "CAA flags")
    tag = match.group(2).lower()
    rest = match.group(3).strip()
    if rest.startswith('"'):
        if len(rest) < 2 or not rest.endswith('"') or '"' in rest[1:-1].replace('\\"', ""):
            raise ValueError(f"CAA value has a malformed quoted string: {rest!r}")
        rest = rest[1:-1].replace('\\"', '"')
    if '"' in rest:
        raise ValueError(f"CAA value may not contain a quote: {rest!r}")
    if tag in ("issue", "issuewild"):
        domain, _, parameters = rest.partition(";")
        domain = domain.strip()
        if domain and host_problem(to_ascii(domain)):
            raise ValueError(f"CAA {tag} names an invalid CA domain {domain!r}")
        for parameter in filter(None, (p.strip() for p in parameters.split(";"))):
            if not _CAA_PARAMETER.fullmatch(parameter):
                raise ValueError(f"CAA {tag} parameter {parameter!r} is not tag=value (RFC 8659 section 4.2)")
    elif tag == "iodef" and not re.match(r"^(mailto:\S+@\S+|https?://\S+)$", rest):
        raise ValueError(f"CAA iodef must be a mailto: or http(s):// URL, got {rest!r}")
    return f'{flags} {tag} "{rest}"'


class _Idna(dns.name.IDNACodec):
    """dnspython's label codec through :func:`hecatelib.spec.to_ascii`: names inside record values follow
    the one conversion (dnspython's own default is IDNA 2003)."""

    def encode(self, label):
        return spec.to_ascii(label).encode("ascii")


_IDNA = _Idna()
# Types whose canonical form is dnspython's presentation form, with these name fields lower-cased.
_PARSER_CANONICAL = {"HINFO": (), "RP": ("mbox", "txt"), "SVCB": ("target",), "HTTPS": ("target",), "SOA": ("mname", "rname")}
FORMATS = {
    "HINFO": 'cpu os, two character-strings (like "x86_64" "Linux")',
    "RP": "mailbox-name txt-name (like admin.example.org. . or admin.example.org. info.example.org.)",
    "SVCB": "priority target params (like 1 svc.example.org. alpn=h2,h3 port=443; 0 target. with no params)",
    "HTTPS": "priority target params (like 1 . alpn=h2,h3; 0 target. with no params)",
    "DS": "key-tag algorithm digest-type digest; a digest of type 1 (SHA-1) has 20 bytes, 2 (SHA-256) 32, 4 (SHA-384) 48",
    "TLSA": "usage selector matching-type data; data of matching type 1 (SHA-256) has 32 bytes, 2 (SHA-512) 64",
}


def parse_rdata(rtype, text, origin=None):
    """``text`` parsed as a resolver parses a record value of type ``rtype``: dnspython's rdata parser, which
    follows each type's RFC grammar (SVCB/HTTPS keys and their values, RFC 9460; DS and TLSA digest
    lengths for their digest types, RFC 4509/6605/6698; HINFO and RP field counts, RFC 1035/1183). A
    name without a trailing dot is relative to ``origin`` (the root when None). Returns the rdata;
    raises ValueError(reason)."""
    try:
        base = dns.name.from_text(origin, idna_codec=_IDNA) if origin else dns.name.root
        return dns.rdata.from_text("IN", rtype, text, origin=base, relativize=False, idna_codec=_IDNA)
    except (dns.exception.DNSException, ValueError) as exc:
        hint = f"; the form is {FORMATS[rtype]}" if rtype in FORMATS else ""
        raise ValueError(f"{rtype} value {quote(text)} is not one a resolver reads: {exc}{hint}") from None


def _parser_canonical(rtype, text, origin):
    rdata = parse_rdata(rtype, text, origin)
    names = {field: getattr(rdata, field).canonicalize() for field in _PARSER_CANONICAL[rtype]}
    return (rdata.replace(**names) if names else rdata).to_text()


def normalise_value(rtype, value, origin=None):
    """The canonical presentation form of one record ``value`` of type ``rtype``, checked the way a resolver
    parses it (:func:`parse_rdata`).

    Host names become absolute, lower-case, with a trailing dot. Without ``origin`` a host name without a
    trailing dot is read as absolute (the pillar/CLI form: ``mail.example.org``); with ``origin`` it is read
    the zone-file way, relative to that zone (how values come back from the API). Raises ValueError(reason).
    """
    canonical = _canonical(rtype, value, origin)
    if rtype not in ("A", "AAAA") and rtype not in _PARSER_CANONICAL:  # addresses: ipaddress is the parser
        parse_rdata(rtype, canonical)
    return canonical


def _canonical(rtype, value, origin):
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    if rtype != "TXT" and _CONTROL.search(value):
        raise ValueError("contains a newline or control character")
    text = value.strip()
    if not text:
        raise ValueError("is empty")
    origin = to_ascii(origin) if origin else None
    if rtype == "A":
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise ValueError(f"A value must be an IPv4 address, got {text!r}") from None
    if rtype == "AAAA":
        try:
            return ipaddress.IPv6Address(text).compressed
        except ValueError:
            raise ValueError(f"AAAA value must be an IPv6 address, got {text!r}") from None
    if rtype in ("CNAME", "NS", "PTR"):
        return _host(text, origin)
    if rtype == "TXT":
        return txt_value(value)
    fields = text.split()
    if rtype == "MX":
        if len(fields) != 2:
            raise ValueError(f"MX value must be: preference host (like 10 mail.example.org), got {text!r}")
        return f"{_int_field(fields[0], 0, 65535, 'MX preference')} {_host(fields[1], origin, null_ok=True)}"
    if rtype == "SRV":
        if len(fields) != 4:
            raise ValueError(f"SRV value must be: priority weight port target (like 10 5 5060 sip.example.org), got {text!r}")
        numbers = [_int_field(f, 0, 65535, what) for f, what in zip(fields[:3], ("SRV priority", "SRV weight", "SRV port"), strict=True)]
        return " ".join(map(str, numbers)) + " " + _host(fields[3], origin, null_ok=True)
    if rtype == "CAA":
        return _caa(text)
    if rtype == "TLSA":
        if len(fields) < 4:
            raise ValueError(f"TLSA value must be: usage selector type hex-data, got {text!r}")
        usage = _int_field(fields[0], 0, 3, "TLSA usage")
        selector = _int_field(fields[1], 0, 1, "TLSA selector")
        mtype = _int_field(fields[2], 0, 2, "TLSA matching type")
        data = "".join(fields[3:]).lower()
        if not re.fullmatch(r"[0-9a-f]+", data) or len(data) % 2:
            raise ValueError("TLSA data must be an even number of hex digits")
        return f"{usage} {selector} {mtype} {data}"
    if rtype == "DS":
        if len(fields) < 4:
            raise ValueError(f"DS value must be: key-tag algorithm digest-type hex-digest, got {text!r}")
        tag = _int_field(fields[0], 0, 65535, "DS key tag")
        alg = _int_field(fields[1], 0, 255, "DS algorithm")
        dtype = _int_field(fields[2], 0, 255, "DS digest type")
        digest = "".join(fields[3:]).lower()
        if not re.fullmatch(r"[0-9a-f]+", digest) or len(digest) % 2:
            raise ValueError("DS digest must be an even number of hex digits")
        return f"{tag} {alg} {dtype} {digest}"
    if rtype in _PARSER_CANONICAL:
        return _parser_canonical(rtype, text, origin)
    raise ValueError(f"unknown record type {rtype!r}")


def normalise_records(rtype, values, origin=None):
    """Canonical, sorted, de-duplicated values. Raises ValueError naming the first bad value."""
    out = set()
    for i, value in enumerate(values):
        try:
            out.add(normalise_value(rtype, value, origin))
        except ValueError as exc:
            raise ValueError(f"value {i} ({value!r}): {exc}") from None
    return sorted(out)


def rrset_problems(rel, rtype, values, ttl):
    """Reasons a single desired RRSet is invalid (its values already normalised)."""
    problems = []
    if rtype not in TYPES:
        problems.append(f"unknown record type {rtype!r}; one of {', '.join(PILLAR_TYPES)}")
    elif rtype == "SOA":
        problems.append("SOA belongs to the DNS provider; hecate never writes it")
    elif rtype == "NS" and rel == "@":
        problems.append("the apex NS set belongs to the DNS provider; hecate never touches it")
    if rtype == "CNAME" and rel == "@":
        problems.append("a CNAME cannot be at the zone apex (it would sit next to SOA and NS)")
    if rtype == "CNAME" and len(values) > 1:
        problems.append(f"a CNAME has exactly one value, got {len(values)}")
    if not values:
        problems.append("needs at least one value")
    if len(values) > MAX_RECORDS:
        problems.append(f"has {len(values)} values; at most {MAX_RECORDS} per record set")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not TTL_MIN <= ttl <= TTL_MAX):
        problems.append(f"ttl {ttl!r} is out of range {TTL_MIN}..{TTL_MAX}")
    return problems


# -- pillar schema -----------------------------------------------------------------------------------


class DnsName(Str):
    """An absolute DNS name: lower-cased, punycode, one trailing dot dropped; underscores allowed
    (``_dmarc``), ``*`` only as the whole leftmost label when ``wildcard``."""

    def __init__(self, wildcard=True, what="DNS name"):
        super().__init__(what=what)
        self.wildcard = wildcard

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str) and not _CONTROL.search(value):
            try:
                name = to_ascii(value)
            except ValueError as exc:
                report.error(path, str(exc))
                return value
            problem = name_problem(name, self.wildcard)
            if problem:
                report.error(path, f"{value!r} {problem}")
            return name
        return value


class ZoneName(DnsName):
    """A managed zone: a host name by the rule route domains follow (``hecatelib.spec.is_hostname``), so
    ``12345`` or ``999.999.999.999`` (a last label all digits, not a name) is refused; no wildcard."""

    def __init__(self):
        super().__init__(wildcard=False, what="zone name")

    def __call__(self, value, path, report):
        known = len(report.errors)
        value = super().__call__(value, path, report)
        if len(report.errors) == known and isinstance(value, str) and not is_hostname(value):  # one reason each
            report.error(path, f"is not a valid hostname: {quote(value)}")
        return value


class RecordType(Str):
    def __init__(self):
        super().__init__(choices=list(PILLAR_TYPES))

    def __call__(self, value, path, report):
        if isinstance(value, str):
            value = value.strip().upper()
            if value == "SOA":
                report.error(path, "SOA belongs to the DNS provider; hecate never writes it")
                return value
        return super().__call__(value, path, report)


class Ttl(Int):
    def __init__(self):
        super().__init__(TTL_MIN, TTL_MAX, "integer TTL in seconds")


class Values:
    """A list of record values (a single string is taken as a one-item list). Values reach the API as
    JSON, not a config file: quotes are fine (TXT), newlines and control characters are not."""

    def __call__(self, value, path, report):
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = [str(value)]
        out = ListOf(Str(safe=False, max_len=8192), min_items=1)(value, path, report)
        for i, item in enumerate(out):
            if isinstance(item, str) and _CONTROL.search(item):
                report.error(index(path, i), "contains a newline or control character")
        return out


class Address(Str):
    def __init__(self, version):
        super().__init__(what=f"IPv{version} address")
        self.version = version

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str):
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                report.error(path, f"is not a valid IPv{self.version} address: {value!r}")
                return value
            if address.version != self.version:
                report.error(path, f"is an IPv{address.version} address; this list takes IPv{self.version}")
            return address.compressed
        return value


class Endpoint(Str):
    def __init__(self):
        super().__init__(pattern=_URL, what="URL (https://host[:port][/path])")


class LabelValue(Str):
    def __init__(self):
        super().__init__(pattern=_LABEL_VALUE, max_len=63, what="label value (letters, digits, - _ .; at most 63)")


RECORD_SCHEMA = Map(
    {
        "name": Field(DnsName(), required=True, doc="absolute name inside a managed zone (the apex is the zone name)"),
        "type": Field(RecordType(), required=True),
        "values": Field(Values(), required=True),
        "ttl": Ttl(),
    }
)

ROUTE_DNS_SCHEMA = Either(
    "must be false (leave this name's DNS alone), true, or a mapping {ttl, cname}",
    Const(False),
    Const(True),
    Map({"ttl": Ttl(), "cname": DnsName(wildcard=False, what="CNAME target")}),
)

PROVIDER_NAMES = ("hetzner",)
TARGETS_SCHEMA = Map({"ipv4": ListOf(Address(4), unique=True), "ipv6": ListOf(Address(6), unique=True)})

PILLAR_SCHEMA = Map(
    {
        "zone": Field(ZoneName(), doc="the managed zone (or zones: [...])"),
        "zones": ListOf(ZoneName(), unique=True),
        # which API holds the zones (hecatelib.dns.providers: PROVIDER_NAMES is checked against it in a test)
        "provider": Field(Str(choices=list(PROVIDER_NAMES)), default="hetzner"),
        "token": Secret(),
        "endpoint": Endpoint(),
        "allow_insecure_endpoint": Field(Bool(), default=False),
        "targets": Field(TARGETS_SCHEMA, default=dict),
        "ttl": Field(Ttl(), default=DEFAULT_TTL),
        "records": ListOf(RECORD_SCHEMA),
        "prune": Field(Bool(), default=False),
        # routes resolving to the targets share *.<zone> (fold_wildcard): a few sets, not one per route
        "wildcard": Field(Bool(), default=False),
        "owner": LabelValue(),
        "timeout": Field(Int(1, 300, "integer number of seconds"), default=15),
        "max_wait": Field(Int(1, 3600, "integer number of seconds"), default=120),
    }
)

_EXPLICIT = ("token", "records", "endpoint", "targets")


def managed_zones(dns):
    """The zones of a ``hecate:dns`` section, ``zone`` first, de-duplicated."""
    if not isinstance(dns, dict):
        return []
    zones = ([dns["zone"]] if dns.get("zone") else []) + list(dns.get("zones") or [])
    return [z for z in dict.fromkeys(to_ascii(z) for z in zones if isinstance(z, str))]


def enabled(tree):
    """True when the ``hecate`` tree turns the DNS stage on (a ``hecate:dns`` section with a zone)."""
    return bool(managed_zones((tree or {}).get("dns")))


def _routes(tree):
    caddy = ((tree or {}).get("reverse_proxy") or {}).get("caddy") or {}
    routes = caddy.get("routes") or []
    return routes if isinstance(routes, list) else []


def check_pillar(tree, report):
    """The checks that span keys, on a tree whose ``dns`` section passed :data:`PILLAR_SCHEMA`.

    Normalises in place (``zones`` lists every managed zone; each route's ``dns`` is checked with
    :data:`ROUTE_DNS_SCHEMA` unless that already happened) and reports every problem with its key path.
    Idempotent: running it again on its own output reports nothing new.
    """
    dns = tree.get("dns")
    if not dns:
        return
    seen = set(report.errors)
    for i, route in enumerate(_routes(tree)):
        if isinstance(route, dict) and "dns" in route:
            path = key(index("hecate:reverse_proxy:caddy:routes", i), "dns")
            scratch = Report(report.root)
            route["dns"] = ROUTE_DNS_SCHEMA(route["dns"], path, scratch)
            for error in scratch.errors:
                if error not in seen:
                    report.error(*error)
    zones = managed_zones(dns)
    if not zones:
        given = [k for k in _EXPLICIT if dns.get(k)]
        if given:
            report.error("hecate:dns:zone", f"required when hecate:dns sets {', '.join(given)}: the zone hecate manages")
        return
    dns["zones"] = zones
    if dns.get("endpoint"):
        problem = api.endpoint_problem(dns["endpoint"], dns.get("allow_insecure_endpoint"), "hecate:dns:allow_insecure_endpoint")
        if problem:
            report.error("hecate:dns:endpoint", problem)
    for i, zone in enumerate(zones):
        for other in zones[i + 1 :]:
            if other.endswith("." + zone) or zone.endswith("." + other):
                report.warn("hecate:dns:zones", f"{zone} and {other} nest; names go to the longest matching zone")
    compile_zones(tree, report=report, require_targets=False)


def check(tree):
    """Validate and normalise the DNS part of a ``hecate`` tree on its own.

    Returns ``(tree, report)``; the states call it after ``hecatelib.schema.validate`` so the DNS checks hold
    even where the whole-tree schema does not (yet) include this section. Never raises.
    """
    report = Report("hecate")
    tree = dict(tree or {})
    if tree.get("dns") is not None:
        tree["dns"] = PILLAR_SCHEMA(tree["dns"], "hecate:dns", report)
    if not report.errors:
        check_pillar(tree, report)
    return tree, report


# -- compile -----------------------------------------------------------------------------------------


def owner_labels(tree=None, owner=None):
    """The labels that mark an RRSet as hecate's: ``managed-by: hecate`` and ``hecate-owner: <owner>``.

    ``owner`` defaults to ``hecate:dns:owner``, else ``hecate:global:environment``, else ``default``; two
    deployments sharing a zone (production, staging) never prune each other's sets."""
    tree = tree or {}
    owner = owner or (tree.get("dns") or {}).get("owner") or (tree.get("global") or {}).get("environment") or "default"
    owner = re.sub(r"[^A-Za-z0-9_.-]", "-", str(owner))[:63].strip("-_.") or "default"
    return {MANAGED_BY: "hecate", OWNER: owner}


def _targets(dns, targets, report):
    source = dns.get("targets") if targets is None else targets
    if targets is not None:
        source = TARGETS_SCHEMA(targets, "targets", report)
    source = source or {}
    return list(source.get("ipv4") or []), list(source.get("ipv6") or [])


def compile_zones(tree, targets=None, report=None, require_targets=True):
    """Desired RRSets per managed zone, from the validated ``hecate`` tree.

    ``targets`` (``{ipv4: [...], ipv6: [...]}``) overrides ``hecate:dns:targets`` (the orchestration passes
    terraform's outputs here). Returns ``{zone: {(name, type): rrset}}`` where ``rrset`` is
    ``{name, type, ttl, records: [canonical values], path}``. Problems go to ``report`` (a new one is made
    and raised when none is given); with ``require_targets`` a route that needs A/AAAA and has no target
    is a problem.
    """
    own_report = report is None
    report = report or Report("hecate")
    dns = tree.get("dns") or {}
    zones = managed_zones(dns)
    if not zones:
        return {}
    desired = _DesiredSets(zones, dns.get("ttl") or DEFAULT_TTL, report)
    _route_sets(desired, _routes(tree), _targets(dns, targets, report), require_targets)
    _record_sets(desired, dns.get("records") or [])
    for zone, rrsets in desired.sets.items():
        _check_zone_sets(zone, rrsets, bool(dns.get("wildcard")), report)
    if own_report:
        report.raise_if_errors()
    return desired.sets


class _DesiredSets:
    """The RRSets being compiled, ``sets = {zone: {(name, type): rrset}}``; a set defined twice must agree."""

    def __init__(self, zones, default_ttl, report):
        self.zones, self.default_ttl, self.report = zones, default_ttl, report
        self.sets = {zone: {} for zone in zones}

    def zone_of(self, name, path, hint=""):
        """The managed zone ``name`` is in, or None with the problem said at ``path``."""
        zone = zone_for(name, self.zones)
        if zone is None:
            self.report.error(path, f"{name} is outside every managed DNS zone ({', '.join(self.zones)}){hint}")
        return zone

    def add(self, zone, rel, rtype, values, ttl, path, value_path, shared=False):
        try:
            records = normalise_records(rtype, values)
        except ValueError as exc:
            self.report.error(value_path, str(exc))
            return
        for problem in rrset_problems(rel, rtype, records, ttl):
            self.report.error(path, f"{absolute_name(rel, zone)} {rtype}: {problem}")
        old = self.sets[zone].get((rel, rtype))
        if old is None:
            self.sets[zone][(rel, rtype)] = {"name": rel, "type": rtype, "ttl": ttl, "records": records, "path": path, "shared": shared}
            return
        old["shared"] = False  # defined twice (a route and a record): it keeps a set of its own
        if (old["records"], old["ttl"]) != (records, ttl):
            self.report.error(
                path,
                f"{absolute_name(rel, zone)} {rtype} is also defined at {old['path']} with different "
                f"values or TTL ({old['records']} ttl {old['ttl']} vs {records} ttl {ttl})",
            )


def _route_sets(desired, routes, targets, require_targets):
    """Each route's set: a CNAME when its ``dns: {cname}`` says so, else A/AAAA to the edge addresses."""
    ipv4, ipv6 = targets
    missing_targets = []
    for i, route in enumerate(routes):
        if not isinstance(route, dict) or not isinstance(route.get("domain"), str):
            continue
        where = index("hecate:reverse_proxy:caddy:routes", i)
        options = route.get("dns", True)
        if options is False:
            continue
        options = options if isinstance(options, dict) else {}
        domain = to_ascii(route["domain"])
        zone = desired.zone_of(domain, key(where, "domain"), "; add its zone to hecate:dns:zones or set dns: false on this route")
        if zone is None:
            continue
        rel = relative_name(domain, zone)
        ttl = options.get("ttl") or desired.default_ttl
        if options.get("cname"):
            desired.add(zone, rel, "CNAME", [options["cname"]], ttl, key(where, "dns"), key(where, "dns:cname"))
            continue
        if not ipv4 and not ipv6:
            missing_targets.append(domain)
            continue
        shared = ttl == desired.default_ttl  # the edge targets at the zone's TTL: what a wildcard set answers
        for rtype, values, source in (("A", ipv4, "ipv4"), ("AAAA", ipv6, "ipv6")):
            if values:
                desired.add(zone, rel, rtype, values, ttl, key(where, "domain"), f"hecate:dns:targets:{source}", shared)
    if missing_targets and require_targets:
        desired.report.error(
            "hecate:dns:targets",
            f"no ipv4/ipv6 edge address for {', '.join(missing_targets)}: set hecate:dns:targets or pass targets (terraform outputs)",
        )


def _record_sets(desired, records):
    """``hecate:dns:records``: sets hecate manages beside the routes'."""
    for j, record in enumerate(records):
        where = index("hecate:dns:records", j)
        if not isinstance(record, dict) or not record.get("name") or not record.get("type"):
            continue
        name = to_ascii(record["name"])
        zone = desired.zone_of(name, key(where, "name"))
        if zone is None:
            continue
        values = record.get("values")
        values = [values] if isinstance(values, str) else list(values or [])
        ttl = record.get("ttl") or desired.default_ttl
        desired.add(zone, relative_name(name, zone), str(record["type"]).upper(), values, ttl, where, key(where, "values"))


def _check_zone_sets(zone, rrsets, wildcard, report):
    """Rules across a zone's sets: the wildcard is hecate's own when on; a CNAME stands alone."""
    if wildcard and any(rel == WILDCARD for rel, _ in rrsets):
        path = next(r["path"] for (rel, _), r in rrsets.items() if rel == WILDCARD)
        report.error(path, f"{WILDCARD}.{zone} is hecate's own with hecate:dns:wildcard on; drop this record or the wildcard")
    by_name = {}
    for rel, rtype in rrsets:
        by_name.setdefault(rel, []).append(rtype)
    for rel, types in by_name.items():
        if "CNAME" in types and len(types) > 1:
            others = sorted(t for t in types if t != "CNAME")
            report.error(
                rrsets[(rel, "CNAME")]["path"],
                f"{absolute_name(rel, zone)} has a CNAME and also {', '.join(others)} "
                f"(from {', '.join(rrsets[(rel, t)]['path'] for t in others)}): a CNAME stands alone",
            )


def desired_from_list(rrsets, zone, default_ttl=None):
    """Desired RRSets for ``zone`` from an explicit list of ``{name, type, values, ttl}`` (the state's
    ``rrsets`` argument). Returns ``({(name, type): rrset}, problems)`` with ``problems`` as (path, reason)."""
    report = Report("rrsets")
    out = {}
    zone = to_ascii(zone)
    for i, item in enumerate(rrsets or []):
        path = index("rrsets", i)
        if not isinstance(item, dict):
            report.error(path, "must be a mapping {name, type, values, ttl}")
            continue
        unknown = set(item) - {"name", "type", "values", "records", "ttl"}
        if unknown:
            report.error(path, f"unknown keys {', '.join(sorted(unknown))}")
        rtype = str(item.get("type", "")).upper()
        try:
            rel = relative_name(item.get("name", ""), zone)
        except ValueError as exc:
            report.error(key(path, "name"), str(exc))
            continue
        values = item.get("values", item.get("records"))
        values = [values] if isinstance(values, str) else list(values or [])
        values = [v["value"] if isinstance(v, dict) and "value" in v else v for v in values]
        try:
            records = normalise_records(rtype, values) if rtype in TYPES else []
        except ValueError as exc:
            report.error(key(path, "values"), str(exc))
            continue
        ttl = item.get("ttl", default_ttl)
        for problem in rrset_problems(rel, rtype, records, ttl):
            report.error(path, f"{absolute_name(rel, zone)} {rtype}: {problem}")
        if (rel, rtype) in out and (out[(rel, rtype)]["records"], out[(rel, rtype)]["ttl"]) != (records, ttl):
            report.error(path, f"{absolute_name(rel, zone)} {rtype} is listed twice with different values or TTL")
        out[(rel, rtype)] = {"name": rel, "type": rtype, "ttl": ttl, "records": records, "path": path}
    names = {}
    for rel, rtype in out:
        names.setdefault(rel, set()).add(rtype)
    for rel, types in names.items():
        if "CNAME" in types and len(types) > 1:
            report.error("rrsets", f"{absolute_name(rel, zone)}: a CNAME stands alone, not next to {sorted(types - {'CNAME'})}")
    return out, report.errors


# -- wildcard ----------------------------------------------------------------------------------------

WILDCARD = "*"


def occupied_names(names):
    """Every name that exists in a zone holding sets at ``names`` (relative): the names and, label by label,
    every name above them inside the zone (empty non-terminals exist too, RFC 4592 2.2.2)."""
    out = set()
    for name in names:
        if name == "@":
            continue
        labels = name.split(".")
        out.update(".".join(labels[i:]) for i in range(len(labels)))
    return out


def fold_wildcard(desired, actual, labels):
    """``(desired, folded)``: the route sets one ``*`` set per type answers as well, folded into it.

    A wildcard answers a query only for a name that does not exist in the zone and sits right below the
    name that holds it (RFC 4592 2.2 and 3.3.1: the closest encloser's ``*``). So a route's A/AAAA set
    (the edge targets at the zone's TTL: ``shared``) folds into ``*`` only when its name is one label below
    the zone and nothing else exists at it or below it, in the desired sets or in the zone now (``actual``:
    a set someone else keeps there, or the route's own set from before the wildcard, which then stays as it
    is). Everything else keeps its own set. A ``*`` set in the zone that hecate does not own (``labels``)
    stays its owner's: nothing folds. ``folded``: the names answered by the wildcard."""
    if any(r["name"] == WILDCARD and not is_ours(r, labels) for r in actual):
        return desired, []
    alone = {name for name, _ in desired if "." not in name and name not in ("@", WILDCARD)}
    alone -= {name for (name, _), v in desired.items() if not v.get("shared")}  # every set at the name shared
    staying = [r["name"] for r in actual] + [name for name, _ in desired if name not in alone]
    folds = alone - occupied_names(staying)
    if not folds:
        return desired, []
    out = {k: v for k, v in desired.items() if k[0] not in folds}
    for (name, rtype), entry in sorted(desired.items()):
        if name in folds and (WILDCARD, rtype) not in out:
            out[(WILDCARD, rtype)] = {**entry, "name": WILDCARD, "path": "hecate:dns:wildcard", "shared": False}
    return out, sorted(folds)


# -- diff --------------------------------------------------------------------------------------------


def actual_records(rrset, zone):
    """Canonical sorted values of an RRSet as the API returned it (zone-file semantics)."""
    out = set()
    for record in rrset.get("records") or []:
        value = record.get("value", "") if isinstance(record, dict) else str(record)
        try:
            out.add(normalise_value(rrset["type"], value, origin=zone))
        except ValueError:
            out.add(value.strip())
    return sorted(out)


def is_providers(rrset):
    """SOA and the apex NS set: the provider's own in every zone; never written, never pruned."""
    return rrset["type"] == "SOA" or (rrset["type"] == "NS" and rrset["name"] == "@")


def is_ours(rrset, labels):
    current = rrset.get("labels") or {}
    return all(current.get(k) == v for k, v in labels.items())


def plan(desired, actual, zone, labels, prune=False, reserved=None):
    """The minimum writes that take ``actual`` (the API's RRSets of ``zone``) to ``desired``.

    Returns a dict of lists: ``create`` (rrset dicts), ``set_records`` / ``change_ttl`` / ``set_labels``
    (``{name, type, old, new}``), ``delete`` (``{name, type, records, ttl, why}``), ``failures``
    (``{name, type, reason}``: change-protected sets, conflicts with sets hecate does not own) and
    ``unchanged`` (a count). A set hecate owns that blocks a desired one (A where a CNAME goes) is deleted
    first; with ``prune`` every other set carrying ``labels`` that is no longer desired is deleted too.

    Labels matter only for pruning, so a desired set that exists without them (a zone hecate did not
    create) is *adopted* (``set_labels``: one PUT each) only with ``prune``; without it, first contact with
    such a zone costs its reads and nothing else. ``reserved(rrset)``: what the provider owns in the zone
    (default: SOA and the apex NS set).
    """
    zone = to_ascii(zone)
    reserved = reserved or is_providers
    result = {"create": [], "set_records": [], "change_ttl": [], "set_labels": [], "delete": [], "failures": []}
    result["unchanged"] = 0
    result["labels"] = dict(labels)
    index_ = {(r["name"], r["type"]): r for r in actual}
    by_name = {}
    for r in actual:
        by_name.setdefault(r["name"], []).append(r)
    deleting = set()

    def protected(r):
        return bool((r.get("protection") or {}).get("change"))

    def fail(name, rtype, reason):
        result["failures"].append({"name": name, "type": rtype, "reason": reason})

    def delete(r, why):
        if (r["name"], r["type"]) in deleting:
            return True
        if reserved(r):
            fail(r["name"], r["type"], "belongs to the DNS provider (SOA / apex NS); hecate never deletes it")
            return False
        if protected(r):
            fail(r["name"], r["type"], f"is change-protected; cannot delete it ({why})")
            return False
        deleting.add((r["name"], r["type"]))
        result["delete"].append({"name": r["name"], "type": r["type"], "records": actual_records(r, zone), "ttl": r.get("ttl"), "why": why})
        return True

    for (name, rtype), want in sorted(desired.items()):
        blockers = [
            r for r in by_name.get(name, []) if r["type"] != rtype and (rtype == "CNAME" or r["type"] == "CNAME") and not reserved(r)
        ]
        foreign = [r for r in blockers if not is_ours(r, labels)]
        if foreign:  # leave everything at this name alone, ours included: half a replacement helps no one
            for r in foreign:
                fail(name, rtype, f"conflicts with an existing {r['type']} set hecate does not own (no {MANAGED_BY} label)")
            continue
        blocked = False
        for r in blockers:
            blocked |= not delete(r, f"replaced by {rtype}")
        if blocked:
            continue
        have = index_.get((name, rtype))
        if have is None:
            result["create"].append({"name": name, "type": rtype, "ttl": want["ttl"], "records": want["records"]})
            continue
        old_records = actual_records(have, zone)
        changed = False
        content_change = old_records != want["records"] or have.get("ttl") != want["ttl"]
        if content_change and protected(have):
            fail(name, rtype, "is change-protected (protection.change); its records/TTL differ from the pillar")
            continue
        if old_records != want["records"]:
            result["set_records"].append({"name": name, "type": rtype, "old": old_records, "new": want["records"]})
            changed = True
        if have.get("ttl") != want["ttl"]:
            result["change_ttl"].append({"name": name, "type": rtype, "old": have.get("ttl"), "new": want["ttl"]})
            changed = True
        if prune and not is_ours(have, labels):  # adopt: label it so a later prune may delete it
            merged = {**(have.get("labels") or {}), **labels}
            result["set_labels"].append({"name": name, "type": rtype, "old": have.get("labels") or {}, "new": merged})
            changed = True
        if not changed:
            result["unchanged"] += 1

    if prune:
        for r in actual:
            key_ = (r["name"], r["type"])
            if key_ in desired or key_ in deleting or reserved(r) or not is_ours(r, labels):
                continue
            delete(r, "no longer in the pillar (prune)")
    return result


def write_count(result):
    """How many write requests ``result`` (a :func:`plan`) costs."""
    return sum(len(result[k]) for k in ("create", "set_records", "change_ttl", "set_labels", "delete"))


def updates_line(result):
    """The middle of a plan's one-line summary: ``"U to update, "`` plus, with ``prune``, ``"A to adopt (A label
    writes, for prune), "``: sets that only get hecate's labels, one write each."""
    updated = {(i["name"], i["type"]) for k in ("set_records", "change_ttl") for i in result[k]}
    adopted = {(i["name"], i["type"]) for i in result["set_labels"]} - updated
    return f"{len(updated)} to update, " + (f"{len(adopted)} to adopt ({len(adopted)} label writes, for prune), " if adopted else "")


def describe(result, zone):
    """Salt ``changes`` for a plan: ``{"www.example.org A": {...}}``; TTL ``None`` means the zone default."""
    zone = to_ascii(zone)
    changes = {}

    def slot(name, rtype):
        return changes.setdefault(f"{spec.shown(absolute_name(name, zone))} {rtype}", {})

    for item in result["create"]:
        slot(item["name"], item["type"]).update({"old": None, "new": {"records": item["records"], "ttl": item["ttl"]}})
    for item in result["set_records"]:
        slot(item["name"], item["type"])["records"] = {"old": item["old"], "new": item["new"]}
    for item in result["change_ttl"]:
        slot(item["name"], item["type"])["ttl"] = {"old": item["old"], "new": item["new"]}
    for item in result["set_labels"]:
        slot(item["name"], item["type"])["labels"] = {"old": item["old"], "new": item["new"]}
    for item in result["delete"]:
        slot(item["name"], item["type"]).update({"old": {"records": item["records"], "ttl": item["ttl"]}, "new": None, "why": item["why"]})
    return changes
