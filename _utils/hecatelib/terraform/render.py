"""Terraform for hecate, the pure half: the pillar schema of ``hecate:terraform`` and ``hecate:consul``,
the renderer of the Hetzner Cloud module (``salt/hecate/terraform/*.tf.j2``), and the readers of
``terraform show -json`` (the delete/replace gate) and ``terraform output -json``.

No I/O here except :func:`load_templates`; ``_modules/hecate_terraform.py`` runs the binary.

Values reach HCL only through the ``hcl`` filter (``hecatelib.hcl.expression``: ``${``/``%{`` made literal, so a pillar
value can never become an interpolation or break out of its string), after the schema has refused
CR/LF, quotes and control characters.
"""

import ipaddress
import json
import os
import re

import jinja2

from hecatelib import hcl
from hecatelib.api import check_token
from hecatelib.paths import HostPath
from hecatelib.spec import (
    Anything,
    Bool,
    Duration,
    Field,
    Hostname,
    Int,
    ListOf,
    Map,
    MapOf,
    Report,
    Secret,
    Str,
    index,
    key,
)

__all__ = [
    "PILLAR_SCHEMA",
    "TEMPLATES",
    "check_pillar",
    "dns_targets",
    "environment",
    "firewall_rules",
    "gate",
    "load_templates",
    "parse_outputs",
    "render",
    "secret_environment",
    "settings",
    "summarize_plan",
    "template_context",
]

TEMPLATES = ("hecate_versions.tf.j2", "hecate_network.tf.j2", "hecate_firewall.tf.j2", "hecate_servers.tf.j2", "hecate_outputs.tf.j2")
TFVARS_FILE = "hecate.auto.tfvars.json"
PLANFILE = "tfplan"
DEFAULT_PROVIDER_VERSION = "~> 1.52"
DEFAULT_SERVER_TYPE = "cx22"
DEFAULT_IMAGE = "debian-12"
ANY = ["0.0.0.0/0", "::/0"]
# The node roles hecate's Nomad jobs are placed on, and how many of each terraform creates unless the
# pillar says otherwise: two edge nodes (the reverse proxy runs twice, one per node: static ports
# 80/443), one app node (authentik), one db node (PostgreSQL, and Redis unless there is a cache role).
DEFAULT_ROLES = {"edge": 2, "app": 1, "db": 1}
# Hetzner Cloud network zones per location (https://docs.hetzner.com/cloud/general/locations/)
NETWORK_ZONES = {
    "nbg1": "eu-central",
    "fsn1": "eu-central",
    "hel1": "eu-central",
    "ash": "us-east",
    "hil": "us-west",
    "sin": "ap-southeast",
}
_NAME = r"^[a-z0-9]([a-z0-9_-]{0,62})$"
_ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
# What a pillar may put into terraform's environment (it runs as root on the controller): Terraform's input
# variables and workspace, registry timeouts; and, as secrets, credentials by their name (a backend's
# CONSUL_HTTP_TOKEN, AWS_SECRET_ACCESS_KEY, TF_TOKEN_<host>). Everything else (PATH, HOME, LD_PRELOAD,
# TF_CLI_CONFIG_FILE, TF_CLI_ARGS*, TF_PLUGIN_CACHE_DIR, TF_DATA_DIR, TF_REATTACH_PROVIDERS, TF_LOG_PATH,
# SSL_CERT_FILE, proxies, endpoints) picks the program, what it loads, where it writes or where a token goes:
# a host setting, in the minion config's hecate_terraform_env.
_PILLAR_ENV = r"^(TF_VAR_[A-Za-z0-9_]+|TF_WORKSPACE|TF_REGISTRY_CLIENT_TIMEOUT|TF_REGISTRY_DISCOVERY_RETRY)$"
_PILLAR_SECRET_ENV = (
    r"^(TF_VAR_[A-Za-z0-9_]+|TF_TOKEN_[A-Za-z0-9_]+"
    r"|[A-Z][A-Z0-9_]*_(TOKEN|PASSWORD|SECRET|SECRET_ACCESS_KEY|ACCESS_KEY_ID|ACCESS_KEY|CLIENT_SECRET))$"
)
_HOST_SETTING = "a host setting: put it into the minion config's hecate_terraform_env (docs/security.md)"
_VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_-]*$"
_LABEL_KEY = re.compile(r"^([a-z0-9A-Z]((?:[\-_.]|[a-z0-9A-Z]){0,61}[a-z0-9A-Z])?/)?[a-z0-9A-Z]((?:[\-_.]|[a-z0-9A-Z]){0,61}[a-z0-9A-Z])?$")
_LABEL_VALUE = re.compile(r"^(([a-z0-9A-Z]((?:[\-_.]|[a-z0-9A-Z]){0,61}[a-z0-9A-Z])?)?)$")
_PORT_RANGE = re.compile(r"^(\d{1,5})(-(\d{1,5}))?$")


# -- schema ----------------------------------------------------------------------------------------
class Cidr(Str):
    def __init__(self, version=None):
        super().__init__()
        self.version = version

    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str):
            try:
                net = ipaddress.ip_network(value, strict=True)
            except ValueError as exc:
                report.error(path, f"is not a network in CIDR form: {exc}")
            else:
                if self.version and net.version != self.version:
                    report.error(path, f"must be an IPv{self.version} network")
        return value


class EnvName(Str):
    """An environment variable name a pillar may set for terraform: ``allowed``, else a host setting."""

    def __init__(self, allowed, what):
        super().__init__(pattern=_ENV_NAME, what="environment variable name")
        self.allowed, self.allowed_what = re.compile(allowed), what

    def __call__(self, value, path, report):
        before = len(report.errors)
        value = super().__call__(value, path, report)
        if len(report.errors) == before and isinstance(value, str) and not self.allowed.match(value):
            report.error(path, f"{value[:60]!r} is not {self.allowed_what}: {_HOST_SETTING}")
        return value


class IPv4(Str):
    def __call__(self, value, path, report):
        value = super().__call__(value, path, report)
        if isinstance(value, str):
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                report.error(path, f"is not an IPv4 address: {value!r}")
        return value


class PortRange(Str):
    """``"443"`` or ``"49160-49200"`` (an int is accepted)."""

    def __call__(self, value, path, report):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        value = super().__call__(value, path, report)
        if isinstance(value, str):
            match = _PORT_RANGE.match(value)
            low, high = (int(match.group(1)), int(match.group(3) or match.group(1))) if match else (0, 0)
            if not match or not 1 <= low <= high <= 65535:
                report.error(path, f"must be a port or a range like 49160-49200 (1..65535), got {value!r}")
        return value


class Labels(MapOf):
    """Hetzner Cloud labels: keys and values per https://docs.hetzner.cloud/#labels."""

    def __init__(self):
        super().__init__(Str(min_len=0, max_len=63))

    def __call__(self, value, path, report):
        out = super().__call__(value, path, report)
        for name, item in out.items():
            if not _LABEL_KEY.match(str(name)):
                report.error(key(path, name), "is not a valid Hetzner label key")
            if isinstance(item, bool) or not isinstance(item, (str, int)) or not _LABEL_VALUE.match(str(item)):
                report.error(key(path, name), "is not a valid Hetzner label value (up to 63 of [a-zA-Z0-9._-])")
        return {str(k): str(v) for k, v in out.items()}


LOCATION = Str(pattern=r"^[a-z]{3}[0-9]?$", what="Hetzner location (nbg1, fsn1, hel1, ash, hil, sin)")

RULE = Map(
    {
        "direction": Field(Str(choices=["in", "out"]), default="in"),
        "protocol": Field(Str(choices=["tcp", "udp", "icmp", "esp", "gre"]), required=True),
        "port": PortRange(),
        "sources": ListOf(Cidr()),
        "destinations": ListOf(Cidr()),
        "description": Str(pattern=r"^[A-Za-z0-9 _.:/()-]{1,255}$", what="description"),
    }
)

NODE = Map(
    {
        "name": Field(Hostname(), required=True),
        "server_type": Str(pattern=r"^[a-z0-9-]+$", what="server type (like cx22, cpx31)"),
        "image": Str(pattern=r"^[a-z0-9._-]+$", what="image name (like debian-12)"),
        "location": LOCATION,
        "private_ip": IPv4(),
        "labels": Labels(),
    }
)

ROLE = Map(
    {
        "count": Int(1, 100),
        "server_type": Str(pattern=r"^[a-z0-9-]+$", what="server type (like cx22, cpx31)"),
        "image": Str(pattern=r"^[a-z0-9._-]+$", what="image name (like debian-12)"),
        "location": LOCATION,
        "labels": Labels(),
    }
)

HCLOUD = Map(
    {
        "nodes": MapOf(ROLE, key_spec=Str(pattern=r"^[a-z][a-z0-9]{0,15}$", what="node role (like edge, app, db, cache)")),
        "provider_version": Field(Str(pattern=r"^[~>=<!0-9. ,]+$", what="version constraint"), default=DEFAULT_PROVIDER_VERSION),
        "name_prefix": Str(pattern=_NAME, what="name prefix"),
        "location": LOCATION,
        "server_type": Field(Str(pattern=r"^[a-z0-9-]+$", what="server type"), default=DEFAULT_SERVER_TYPE),
        "image": Field(Str(pattern=r"^[a-z0-9._-]+$", what="image name"), default=DEFAULT_IMAGE),
        "ssh_keys": ListOf(Str(pattern=r"^[A-Za-z0-9@._ -]{1,64}$", what="SSH key name"), unique=True),
        "labels": Labels(),
        "network": Field(
            Map(
                {
                    "ip_range": Field(Cidr(4), default="10.0.0.0/16"),
                    "subnet": Field(Cidr(4), default="10.0.1.0/24"),
                    "zone": Str(choices=sorted(set(NETWORK_ZONES.values()))),
                }
            ),
            default=dict,
        ),
        "edge_nodes": ListOf(NODE, min_items=1),
        "firewall": Field(
            Map(
                {
                    "ssh_sources": ListOf(Cidr()),
                    "icmp": Field(Bool(), default=True),
                    "http3": Field(Bool(), default=True),
                    "proxy_sources": Field(ListOf(Cidr(), min_items=1), default=lambda: list(ANY)),
                    "rules": ListOf(RULE),
                }
            ),
            default=dict,
        ),
    }
)

PILLAR_SCHEMA = Map(
    {
        "workdir": Field(HostPath("absolute directory path"), required=True),  # below /var/lib/hecate (hecatelib.paths)
        # a command on the minion's PATH; a path is the minion config's hecate_terraform_binary
        "binary": Str(
            pattern=r"^(terraform|tofu)[A-Za-z0-9._-]{0,40}$",
            what="command name (terraform or tofu; a path goes into the minion config's hecate_terraform_binary)",
        ),
        "render": Field(Bool(), default=True),
        "lockfile": Field(Str(choices=["auto", "readonly", "update"]), default="auto"),
        "lock_file_source": Str(pattern=r"^salt://[A-Za-z0-9_./-]+$", what="salt:// URL of a committed lock file"),
        "lock_timeout": Field(Duration(days=False), default="60s"),  # Go time.ParseDuration: no "d"
        "timeout": Field(Int(10, 86400), default=1800),
        "allow_delete": Field(Bool(), default=False),
        "allow_replace": Field(Bool(), default=False),
        "token": Secret(),  # the Hetzner Cloud API token -> TF_VAR_hcloud_token
        "secret_vars": MapOf(Secret(), key_spec=Str(pattern=_VAR_NAME, what="variable name")),
        "secret_env": MapOf(
            Secret(), key_spec=EnvName(_PILLAR_SECRET_ENV, "a credential's name (..._TOKEN, ..._PASSWORD, ..._SECRET, ...)")
        ),
        "vars": MapOf(Anything(), key_spec=Str(pattern=_VAR_NAME, what="variable name")),
        "env": MapOf(Str(), key_spec=EnvName(_PILLAR_ENV, "TF_VAR_*, TF_WORKSPACE or a TF_REGISTRY_* timeout")),
        "hcloud": Field(HCLOUD, default=dict),
    }
)


def check_pillar(tree, report):
    """Cross-key checks of a ``hecate`` tree whose ``terraform`` section went through PILLAR_SCHEMA."""
    section = tree.get("terraform")
    if not section:
        return
    where = "hecate:terraform"
    hcloud = section.get("hcloud") or {}
    if section.get("render", True):
        if not section.get("token"):
            report.error(key(where, "token"), "required to render the Hetzner Cloud module (the hcloud API token)")
        location = hcloud.get("location") or (tree.get("global") or {}).get("hetzner_location")
        if not location:
            report.error(key(key(where, "hcloud"), "location"), "set it, or hecate:global:hetzner_location")
    if "hcloud_token" in (section.get("secret_vars") or {}) and section.get("token"):
        report.error(key(where, "secret_vars"), "hcloud_token is set by hecate:terraform:token; give it once")
    _check_network(tree, section, report)


def _check_network(tree, section, report):
    where = "hecate:terraform:hcloud"
    hcloud = section.get("hcloud") or {}
    network = hcloud.get("network") or {}
    try:
        ip_range = ipaddress.ip_network(network.get("ip_range", "10.0.0.0/16"))
        subnet = ipaddress.ip_network(network.get("subnet", "10.0.1.0/24"))
    except ValueError:
        return  # already reported by the schema
    if not subnet.subnet_of(ip_range):
        report.error(key(key(where, "network"), "subnet"), f"{subnet} is not inside ip_range {ip_range}")
        return
    default_location = hcloud.get("location") or (tree.get("global") or {}).get("hetzner_location")
    zone = network.get("zone") or NETWORK_ZONES.get(default_location or "")
    names, ips = {}, {}
    for i, node in enumerate(hcloud.get("edge_nodes") or []):
        at = index(key(where, "edge_nodes"), i)
        name = node.get("name")
        if name in names:
            report.error(key(at, "name"), f"duplicate node name {name!r} (also edge_nodes[{names[name]}])")
        names.setdefault(name, i)
        location = node.get("location") or default_location
        node_zone = NETWORK_ZONES.get(location or "")
        if zone and node_zone and node_zone != zone:
            report.error(key(at, "location"), f"{location} is in network zone {node_zone}, the subnet is in {zone}")
        if node.get("private_ip"):
            address = ipaddress.ip_address(node["private_ip"])
            if address not in subnet:
                report.error(key(at, "private_ip"), f"{address} is not inside the subnet {subnet}")
            elif address in (subnet.network_address, subnet.broadcast_address, next(subnet.hosts())):
                report.error(key(at, "private_ip"), f"{address} is reserved (network, gateway or broadcast)")
            elif str(address) in ips:
                report.error(key(at, "private_ip"), f"{address} is already edge_nodes[{ips[str(address)]}]'s")
            ips.setdefault(str(address), i)
    if default_location and default_location not in NETWORK_ZONES:
        report.warn(key(where, "location"), f"{default_location} is not a location hecate knows; check it exists")


def settings(tree):
    """The ``hecate:terraform`` section with defaults, through PILLAR_SCHEMA (raises PillarError)."""
    report = Report("hecate")
    section = PILLAR_SCHEMA((tree or {}).get("terraform"), "hecate:terraform", report)
    if not report.errors:
        check_pillar({**(tree or {}), "terraform": section}, report)
    report.raise_if_errors()
    return section


# -- rendering -------------------------------------------------------------------------------------
def firewall_rules(tree, firewall=None):
    """The inbound rules the edge needs, derived from the pillar: HTTP(S) (+ HTTP/3), the nginx stream
    proxies, coturn, SSH from ``ssh_sources`` only, ICMP, then the pillar's own ``rules``."""
    firewall = firewall if firewall is not None else ((tree.get("terraform") or {}).get("hcloud") or {}).get("firewall") or {}
    anywhere = list(firewall.get("proxy_sources") or ANY)
    rules = [
        {"direction": "in", "protocol": "tcp", "port": "80", "sources": list(ANY), "description": "http"},
        {"direction": "in", "protocol": "tcp", "port": "443", "sources": list(ANY), "description": "https"},
    ]
    if firewall.get("http3", True):
        rules.append({"direction": "in", "protocol": "udp", "port": "443", "sources": list(ANY), "description": "http3"})
    proxy = tree.get("reverse_proxy") or {}
    for item in (proxy.get("nginx") or {}).get("tcp_proxies") or []:
        rules.append(
            {
                "direction": "in",
                "protocol": item.get("protocol", "tcp"),
                "port": str(item["listen_port"]),
                "sources": anywhere,
                "description": f"stream {item['name']}",
            }
        )
    coturn = (proxy.get("coturn") or {}).get("ports") or {}
    if coturn.get("listening"):
        for protocol in ("tcp", "udp"):
            rules.append(
                {"direction": "in", "protocol": protocol, "port": str(coturn["listening"]), "sources": anywhere, "description": "turn"}
            )
    if coturn.get("tls_listening"):
        rules.append(
            {"direction": "in", "protocol": "tcp", "port": str(coturn["tls_listening"]), "sources": anywhere, "description": "turns"}
        )
    if coturn.get("relay_min") and coturn.get("relay_max"):
        rules.append(
            {
                "direction": "in",
                "protocol": "udp",
                "port": f"{coturn['relay_min']}-{coturn['relay_max']}",
                "sources": anywhere,
                "description": "turn relay",
            }
        )
    if firewall.get("ssh_sources"):
        rules.append({"direction": "in", "protocol": "tcp", "port": "22", "sources": list(firewall["ssh_sources"]), "description": "ssh"})
    if firewall.get("icmp", True):
        rules.append({"direction": "in", "protocol": "icmp", "sources": list(ANY), "description": "icmp"})
    for rule in firewall.get("rules") or []:
        rules.append({"direction": rule.get("direction", "in"), **{k: v for k, v in rule.items() if k != "direction"}})
    seen, unique = set(), []
    for rule in rules:  # Hetzner refuses identical rules twice
        marker = json.dumps(rule, sort_keys=True)
        if marker not in seen:
            seen.add(marker)
            unique.append(rule)
    return unique


# -- node names: one scheme for terraform's servers and Nomad's constraints ------------------------------
def name_prefix(tree):
    """``hecate:terraform:hcloud:name_prefix``, default ``hecate-<environment>``."""
    hcloud = ((tree or {}).get("terraform") or {}).get("hcloud") or {}
    return hcloud.get("name_prefix") or f"hecate-{((tree or {}).get('global') or {}).get('environment') or 'production'}"


def node_roles(tree):
    """``{role: [server name, ...]}``: ``<prefix>-<role>-<n>`` for ``DEFAULT_ROLES`` and
    ``hcloud:nodes``, the edge role from ``hcloud:edge_nodes`` when that list is given. Terraform creates
    exactly these servers; the Nomad jobs' constraints are derived from the same names."""
    hcloud = ((tree or {}).get("terraform") or {}).get("hcloud") or {}
    prefix = name_prefix(tree)
    counts = {
        **DEFAULT_ROLES,
        **{role: (spec or {}).get("count", DEFAULT_ROLES.get(role, 1)) for role, spec in (hcloud.get("nodes") or {}).items()},
    }
    out = {role: [f"{prefix}-{role}-{n}" for n in range(1, count + 1)] for role, count in counts.items()}
    if hcloud.get("edge_nodes"):
        out["edge"] = [node["name"] for node in hcloud["edge_nodes"]]
    return out


def role_constraint(tree, roles):
    """The Nomad constraint that places a job on the servers of ``roles``: ``^<prefix>-(<roles>)-[0-9]+$``
    when their names follow the scheme, else the exact names (``edge_nodes`` with names of your own)."""
    by_role = node_roles(tree)
    names = [name for role in roles for name in by_role.get(role, [])]
    prefix = name_prefix(tree).replace(".", r"\.")
    scheme = f"^{prefix}-({'|'.join(roles)})-[0-9]+$" if len(roles) > 1 else f"^{prefix}-{roles[0]}-[0-9]+$"
    if not names or not all(re.match(scheme, name) for name in names):
        scheme = "^(" + "|".join(name.replace(".", r"\.") for name in names) + ")$"
    return {"attribute": "${attr.unique.hostname}", "operator": "regexp", "value": scheme}


def internal_rules(firewall):
    """The firewall of the non-edge nodes: nothing public; SSH from ``ssh_sources`` and ICMP only."""
    firewall = firewall or {}
    rules = []
    if firewall.get("ssh_sources"):
        rules.append({"direction": "in", "protocol": "tcp", "port": "22", "sources": list(firewall["ssh_sources"]), "description": "ssh"})
    if firewall.get("icmp", True):
        rules.append({"direction": "in", "protocol": "icmp", "sources": list(ANY), "description": "icmp"})
    return rules


def template_context(tree):
    """Everything the templates need, computed from a validated ``hecate`` tree (defaults applied)."""
    section = tree.get("terraform") or {}
    hcloud = section.get("hcloud") or {}
    glob = tree.get("global") or {}
    environment = glob.get("environment") or "production"
    prefix = hcloud.get("name_prefix") or f"hecate-{environment}"
    location = hcloud.get("location") or glob.get("hetzner_location") or "nbg1"
    network = hcloud.get("network") or {}
    ip_range = network.get("ip_range") or "10.0.0.0/16"
    subnet = network.get("subnet") or "10.0.1.0/24"
    zone = network.get("zone") or NETWORK_ZONES.get(location, "eu-central")
    labels = {"managed-by": "hecate", "environment": environment, **(hcloud.get("labels") or {})}
    explicit = {node["name"]: node for node in hcloud.get("edge_nodes") or []}
    roles = hcloud.get("nodes") or {}
    nodes, role_nodes = {}, {}
    for role, names in node_roles(tree).items():
        spec = roles.get(role) or {}
        for name in names:
            node = {**spec, **explicit.get(name, {})}
            (nodes if role == "edge" else role_nodes)[name] = {
                "server_type": node.get("server_type") or hcloud.get("server_type") or DEFAULT_SERVER_TYPE,
                "image": node.get("image") or hcloud.get("image") or DEFAULT_IMAGE,
                "location": node.get("location") or location,
                "private_ip": node.get("private_ip"),  # None: Hetzner assigns one (no churn when nodes are added)
                "labels": {**labels, "role": role, **(node.get("labels") or {})},
            }
    return {
        "environment": environment,
        "prefix": prefix,
        "provider_version": hcloud.get("provider_version") or DEFAULT_PROVIDER_VERSION,
        "labels": labels,
        "network": {"name": prefix, "ip_range": ip_range, "subnet": subnet, "zone": zone},
        "firewall": {"name": f"{prefix}-edge", "rules": firewall_rules(tree, hcloud.get("firewall"))},
        "nodes": nodes,
        "role_nodes": role_nodes,
        "internal_rules": internal_rules(hcloud.get("firewall")),
        "ssh_keys": list(hcloud.get("ssh_keys") or []),
        "secret_vars": sorted((section.get("secret_vars") or {}).keys()),
        "vars": sorted((section.get("vars") or {}).keys()),
    }


def _environment():
    env = jinja2.Environment(  # noqa: S701 - HCL output, every value goes through the hcl filter
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["hcl"] = hcl.expression
    return env


def render(tree, templates):
    """Render ``templates`` (file name -> Jinja text) for a validated ``hecate`` tree.

    Returns ``{file name without .j2: HCL text}``; a template that renders to blank is left out.
    """
    context = template_context(tree)
    env = _environment()
    out = {}
    for name, text in sorted(templates.items()):
        rendered = env.from_string(text).render(**context)
        if rendered.strip():
            out[name[: -len(".j2")] if name.endswith(".j2") else name] = rendered
    return out


def load_templates(directory):
    """The ``TEMPLATES`` found in ``directory`` (name -> text)."""
    out = {}
    for name in TEMPLATES:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                out[name] = handle.read()
    return out


def secret_environment(section):
    """The environment variables that carry secrets (name -> value): ``TF_VAR_hcloud_token`` from
    ``token``, ``TF_VAR_<name>`` from ``secret_vars``, and ``secret_env`` as is. An unresolved
    ``vault:``/``consul:`` reference is refused (the ext_pillar did not run)."""
    out = {}
    if section.get("token"):
        out["TF_VAR_hcloud_token"] = check_token(section["token"], "hecate:terraform:token")
    for name, value in (section.get("secret_vars") or {}).items():
        out[f"TF_VAR_{name}"] = check_token(value, f"hecate:terraform:secret_vars:{name}")
    for name, value in (section.get("secret_env") or {}).items():
        out[name] = check_token(value, f"hecate:terraform:secret_env:{name}")
    return {k: str(v) for k, v in out.items()}


def environment(section, base, host=None):
    """The environment of every terraform run: ``base`` (the caller's) without ``TF_LOG*`` (debug logs
    print variable values), automation settings, ``host`` (the minion config's ``hecate_terraform_env``:
    host settings such as TF_CLI_CONFIG_FILE or a proxy), ``hecate:terraform:env``, then the secrets."""
    env = {k: v for k, v in dict(base).items() if not k.startswith("TF_LOG")}
    env.update({"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"})
    env.update({str(k): str(v) for k, v in (host or {}).items()})
    env.update({k: str(v) for k, v in (section.get("env") or {}).items()})
    env.update(secret_environment(section))
    return env


def tfvars(section):
    """The non-secret variables file content (``hecate.auto.tfvars.json``), or None when there are none."""
    values = section.get("vars") or {}
    return json.dumps(values, indent=2, sort_keys=True) + "\n" if values else None


# -- plan and outputs ------------------------------------------------------------------------------
def _kind(actions):
    actions = list(actions or [])
    if actions in (["delete", "create"], ["create", "delete"]):
        return "replace"
    if actions == ["no-op"]:
        return "no-op"
    if len(actions) == 1 and actions[0] in ("create", "update", "delete", "read"):
        return actions[0]
    return "+".join(actions) or "no-op"


def summarize_plan(plan):
    """``terraform show -json <planfile>`` -> addresses per action. Values are dropped (a plan carries
    variable values, secrets included): only addresses, types and actions come out."""
    summary = {"create": [], "update": [], "delete": [], "replace": [], "read": [], "no-op": 0}
    for change in plan.get("resource_changes") or []:
        kind = _kind((change.get("change") or {}).get("actions"))
        if kind == "no-op":
            summary["no-op"] += 1
        else:
            summary.setdefault(kind, []).append(change.get("address"))
    outputs = {}
    for name, change in (plan.get("output_changes") or {}).items():
        kind = _kind(change.get("actions"))
        if kind != "no-op":
            outputs[name] = kind
    summary["outputs"] = outputs
    summary["changes"] = any(summary[k] for k in ("create", "update", "delete", "replace")) or bool(outputs)
    return summary


def gate(summary, allow_delete=False, allow_replace=False):
    """The changes a plan may not make: deletes unless ``allow_delete``, replacements (destroy and
    re-create) unless ``allow_replace``. Returns a list of human-readable refusals (empty: go)."""
    refused = []
    if summary.get("delete") and not allow_delete:
        refused.append(f"would delete {len(summary['delete'])}: {', '.join(summary['delete'])} (allow_delete=True to permit)")
    if summary.get("replace") and not allow_replace:
        refused.append(
            f"would replace (destroy and re-create) {len(summary['replace'])}: {', '.join(summary['replace'])} "
            "(allow_replace=True to permit)"
        )
    return refused


def parse_outputs(data, show_sensitive=False):
    """``terraform output -json`` -> ``{name: value}``; sensitive values are ``"<sensitive>"`` unless asked."""
    out = {}
    for name, item in (data or {}).items():
        out[name] = "<sensitive>" if item.get("sensitive") and not show_sensitive else item.get("value")
    return out


def dns_targets(outputs):
    """The edge addresses for the DNS stage: ``{"ipv4": [...], "ipv6": [...]}`` from the module's
    ``hecate_edge_ipv4`` / ``hecate_edge_ipv6`` outputs (sorted, empty values dropped)."""
    result = {}
    for family in ("ipv4", "ipv6"):
        values = outputs.get(f"hecate_edge_{family}") or []
        if isinstance(values, dict):
            values = list(values.values())
        result[family] = sorted({str(v) for v in values if v})
    return result
