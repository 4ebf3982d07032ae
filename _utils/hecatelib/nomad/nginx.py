"""Pure nginx config renderers (no I/O): the TCP/UDP stream proxy of the reverse-proxy job, and the
small HTTP proxy of the helen-bridge job.

The stream block comes from ``hecate:reverse_proxy:nginx:tcp_proxies`` (the seed hard-coded it, with
consul-template ranges that rendered an empty ``upstream {}`` - which nginx refuses - whenever the
service was missing). Every value that reaches the file is checked: names are identifiers, backends are
``host:port``, and nothing may carry whitespace, quotes, ``;``, braces or CR/LF (config injection).

Tests run the output through Debian's ``nginx -t`` (tests/unit/test_nginx_render.py).
"""

import re

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$")
FORBIDDEN = re.compile(r"[\s\"';{}\\$#`]")
DURATION_RE = re.compile(r"^[0-9]+(ms|s|m|h|d)?$")
PROTOCOLS = ("tcp", "udp")

DEFAULT_TIMEOUTS = {"tcp": "10m", "udp": "1m"}


class NginxConfigError(ValueError):
    """A value cannot be rendered into an nginx config safely; ``path`` names the pillar key."""

    def __init__(self, path, message):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _clean(value, path):
    text = str(value)
    if not text or FORBIDDEN.search(text):
        raise NginxConfigError(path, f"{text!r} is empty or contains whitespace, quotes, ';', braces, '$' or '#'")
    return text


def parse_backend(value, path="backend"):
    """``host:port`` (IPv6 as ``[addr]:port``) -> (host, port). Raises :class:`NginxConfigError`."""
    text = _clean(value, path)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or not HOST_RE.match(host):
        raise NginxConfigError(path, f"{text!r} is not host:port")
    return host, int(port)


def upstream_name(name):
    """The nginx upstream identifier for a proxy ``name`` (dashes and dots become underscores)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def normalize_proxies(tcp_proxies, path="hecate:reverse_proxy:nginx:tcp_proxies"):
    """Validate and normalize the pillar list; returns a list of dicts with every default filled in."""
    out = []
    seen_names, seen_listen = {}, {}
    for index, proxy in enumerate(tcp_proxies or []):
        where = f"{path}:{index}"
        if not isinstance(proxy, dict):
            raise NginxConfigError(where, "must be a mapping")
        name = _clean(proxy.get("name", ""), f"{where}:name")
        if not NAME_RE.match(name):
            raise NginxConfigError(f"{where}:name", f"{name!r} is not a valid name (letters, digits, '-', '_', '.')")
        protocol = str(proxy.get("protocol", "tcp")).lower()
        if protocol not in PROTOCOLS:
            raise NginxConfigError(f"{where}:protocol", f"{protocol!r} is not one of tcp, udp")
        port = proxy.get("listen_port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise NginxConfigError(f"{where}:listen_port", f"{port!r} is not a port (1-65535)")
        host, backend_port = parse_backend(proxy.get("backend", ""), f"{where}:backend")
        timeout = _clean(proxy.get("proxy_timeout", DEFAULT_TIMEOUTS[protocol]), f"{where}:proxy_timeout")
        if not DURATION_RE.match(timeout):
            raise NginxConfigError(f"{where}:proxy_timeout", f"{timeout!r} is not an nginx time (e.g. 30s, 10m)")
        ident = upstream_name(name)
        if ident in seen_names:
            raise NginxConfigError(f"{where}:name", f"duplicate of {path}:{seen_names[ident]} ({name!r})")
        if (port, protocol) in seen_listen:
            raise NginxConfigError(
                f"{where}:listen_port", f"{protocol} port {port} is already used by {path}:{seen_listen[(port, protocol)]}"
            )
        seen_names[ident] = index
        seen_listen[(port, protocol)] = index
        out.append(
            {
                "name": name,
                "upstream": ident,
                "protocol": protocol,
                "listen_port": port,
                "backend": f"{host}:{backend_port}",
                "proxy_timeout": timeout,
            }
        )
    return out


def render_stream(tcp_proxies, access_log="/dev/stdout", indent="    "):
    """The ``stream { ... }`` block for ``tcp_proxies`` (pillar list); empty string when there are none."""
    proxies = normalize_proxies(tcp_proxies)
    if not proxies:
        return ""
    access_log = _clean(access_log, "access_log")
    i1, i2 = indent, indent * 2
    lines = [
        "stream {",
        f"{i1}log_format hecate_stream '$remote_addr [$time_local] $protocol $status $bytes_sent $bytes_received '",
        f'{i1}                         \'$session_time "$upstream_addr" "$upstream_connect_time"\';',
        f"{i1}access_log {access_log} hecate_stream;",
        f"{i1}tcp_nodelay on;",
    ]
    for proxy in proxies:
        udp = proxy["protocol"] == "udp"
        failure = "" if udp else " max_fails=3 fail_timeout=30s"
        lines += [
            "",
            f"{i1}# {proxy['name']} ({proxy['protocol']} {proxy['listen_port']} -> {proxy['backend']})",
            f"{i1}upstream {proxy['upstream']} {{",
            f"{i2}server {proxy['backend']}{failure};",
            f"{i1}}}",
            f"{i1}server {{",
            f"{i2}listen {proxy['listen_port']}{' udp' if udp else ''};",
            f"{i2}proxy_pass {proxy['upstream']};",
        ]
        if not udp:
            lines.append(f"{i2}proxy_connect_timeout 30s;")
        lines += [f"{i2}proxy_timeout {proxy['proxy_timeout']};", f"{i1}}}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_main(
    body,
    user=None,
    pid="/tmp/nginx.pid",  # noqa: S108 - a path inside the container
    error_log="stderr notice",
    worker_connections=4096,
    modules=(),
):
    """A complete ``nginx.conf``: main context + ``events`` + ``body`` (a ``stream``/``http`` block).

    ``modules`` lists ``load_module`` paths (Debian builds the stream module as a dynamic module; the
    official nginx image has it built in, so the job passes none)."""
    lines = [f"load_module {_clean(m, 'modules')};" for m in modules]
    if user:
        lines.append(f"user {_clean(user, 'user')};")
    lines += [
        "worker_processes auto;",
        f"error_log {error_log};",
        f"pid {_clean(pid, 'pid')};",
        "",
        "events {",
        f"    worker_connections {int(worker_connections)};",
        "}",
        "",
    ]
    return "\n".join(lines) + "\n" + body


def render_http_proxy(upstream, listen_port, server_name="_", health_path="/health", indent="    "):
    """The ``http { ... }`` block of a plain HTTP reverse proxy with WebSocket support (helen-bridge)."""
    host, port = parse_backend(upstream, "upstream")
    server_name = _clean(server_name, "server_name")
    health_path = _clean(health_path, "health_path")
    if not health_path.startswith("/"):
        raise NginxConfigError("health_path", f"{health_path!r} must start with '/'")
    if isinstance(listen_port, bool) or not isinstance(listen_port, int) or not 0 < listen_port < 65536:
        raise NginxConfigError("listen_port", f"{listen_port!r} is not a port (1-65535)")
    i1, i2, i3 = indent, indent * 2, indent * 3
    lines = [
        "http {",
        f"{i1}access_log /dev/stdout;",
        f"{i1}map $http_upgrade $connection_upgrade {{",
        f"{i2}default upgrade;",
        f"{i2}'' close;",
        f"{i1}}}",
        f"{i1}upstream backend {{",
        f"{i2}server {host}:{port} max_fails=3 fail_timeout=30s;",
        f"{i2}keepalive 32;",
        f"{i1}}}",
        f"{i1}server {{",
        f"{i2}listen {listen_port};",
        f"{i2}server_name {server_name};",
        f"{i2}location = {health_path} {{",
        f"{i3}access_log off;",
        f"{i3}default_type text/plain;",
        f'{i3}return 200 "healthy\\n";',
        f"{i2}}}",
        f"{i2}location / {{",
        f"{i3}proxy_pass http://backend;",
        f"{i3}proxy_http_version 1.1;",
        f"{i3}proxy_set_header Host $host;",
        f"{i3}proxy_set_header X-Real-IP $remote_addr;",
        f"{i3}proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        f"{i3}proxy_set_header X-Forwarded-Proto $scheme;",
        f"{i3}proxy_set_header Upgrade $http_upgrade;",
        f"{i3}proxy_set_header Connection $connection_upgrade;",
        f"{i3}proxy_connect_timeout 30s;",
        f"{i3}proxy_send_timeout 120s;",
        f"{i3}proxy_read_timeout 120s;",
        f"{i3}proxy_buffering off;",
        f"{i3}proxy_request_buffering off;",
        f"{i2}}}",
        f"{i1}}}",
        "}",
    ]
    return "\n".join(lines) + "\n"
