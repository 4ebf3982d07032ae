"""A Nomad HTTP API emulator: HCL2 parsing, plans with real diffs, check-and-set registration, job
versions, blocking queries, and deployments whose outcome the test scripts.

- ``POST /v1/jobs/parse`` turns HCL2 (python-hcl2) with ``Variables`` into the API's JSON job, with the
  canonical defaults Nomad fills in (group ``Update`` merged from the job's, durations in nanoseconds).
- ``POST /v1/job/:id/plan`` diffs against the registered version (``Diff.Type`` None/Added/Edited) and
  annotates ``DesiredTGUpdates`` (Place/Canary/DestructiveUpdate/Ignore/Stop).
- Registration enforces ``EnforceIndex``/``JobModifyIndex`` with Nomad's error text
  (``Enforcing job modify index ...``), creates an evaluation and a deployment, and keeps the versions
  Nomad keeps: the newest ``JobDefaultTrackedVersions`` (6; nomad/structs/structs.go), counting every
  register, revert, auto-revert and stop, keeping the newest stable one (nomad/state/state_store.go
  ``upsertJobVersion``). A spec equal to the current one, registered or reverted to, makes no version
  (nomad/job_endpoint.go ``doRegister``: ``SpecChanged``; ``Revert`` registers through it).
- Deployments play the outcome the test scripted with :meth:`NomadEmulator.script`: ``healthy`` (canaries
  wait for promotion unless ``AutoPromote``), ``fail`` (unhealthy allocations with task events; with
  ``AutoRevert`` Nomad re-registers the last stable version) or ``pending`` (nothing gets healthy: the
  progress deadline fails it).
- Blocking queries (``?index=&wait=``) hold until the table index passes ``index`` or ``wait`` expires.

Every request is checked against the field names of ``specs/nomad/nomad-deploy-subset.json`` (plus the
documented fields the old spec lacks: ``Variables``/``VariableFlags`` on parse, ``Submission`` on
register, ``index`` as a query parameter). Violations land in ``emulator.violations``.

``emulator.writes`` counts only requests that change state (register, revert, promote, fail, stop...):
parse, plan and validate are POSTs that write nothing.
"""

import copy
import fnmatch
import heapq
import itertools
import json
import re
import threading
import time
import uuid

import hcl2
from hcl2.utils import SerializationOptions

from devstack import SPECS
from devstack.emulators.base import Emulator, Response

NS = 1_000_000_000
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))+$")
MAX_WAIT = 600.0
DEFAULT_WAIT = 300.0
JOB_TRACKED_VERSIONS = 6  # nomad/structs/structs.go JobDefaultTrackedVersions (server option job_tracked_versions)


def parse_duration(text):
    if not isinstance(text, str) or not _DURATION.match(text):
        return None
    return sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text))


class HCLError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------------
# HCL2 -> API JSON
# ---------------------------------------------------------------------------------------------------
LABELED = {"job", "group", "task", "port", "volume", "variable"}
RENAME = {
    "job": {
        "datacenters": "Datacenters", "type": "Type", "priority": "Priority", "region": "Region",
        "namespace": "Namespace", "all_at_once": "AllAtOnce", "meta": "Meta", "name": "Name",
        "constraint": "Constraints", "affinity": "Affinities", "spread": "Spreads", "update": "Update",
        "migrate": "Migrate", "reschedule": "Reschedule", "periodic": "Periodic",
        "parameterized": "ParameterizedJob", "group": "TaskGroups", "vault_token": "VaultToken",
        "consul_token": "ConsulToken",
    },
    "group": {
        "count": "Count", "network": "Networks", "task": "Tasks", "volume": "Volumes",
        "ephemeral_disk": "EphemeralDisk", "restart": "RestartPolicy", "update": "Update", "migrate": "Migrate",
        "reschedule": "ReschedulePolicy", "constraint": "Constraints", "affinity": "Affinities",
        "spread": "Spreads", "service": "Services", "meta": "Meta", "shutdown_delay": "ShutdownDelay",
    },
    "task": {
        "driver": "Driver", "user": "User", "config": "Config", "env": "Env", "template": "Templates",
        "resources": "Resources", "service": "Services", "vault": "Vault", "volume_mount": "VolumeMounts",
        "artifact": "Artifacts", "restart": "RestartPolicy", "logs": "LogConfig", "meta": "Meta",
        "kill_timeout": "KillTimeout", "kill_signal": "KillSignal", "leader": "Leader", "lifecycle": "Lifecycle",
        "constraint": "Constraints", "shutdown_delay": "ShutdownDelay",
    },
    "resources": {"cpu": "CPU", "cores": "Cores", "memory": "MemoryMB", "memory_max": "MemoryMaxMB", "disk": "DiskMB"},
    "template": {
        "data": "EmbeddedTmpl", "destination": "DestPath", "source": "SourcePath", "change_mode": "ChangeMode",
        "change_signal": "ChangeSignal", "env": "Envvars", "left_delimiter": "LeftDelim",
        "right_delimiter": "RightDelim", "perms": "Perms", "splay": "Splay", "error_on_missing_key": "ErrMissingKey",
    },
    "service": {
        "name": "Name", "port": "PortLabel", "tags": "Tags", "provider": "Provider", "address_mode": "AddressMode",
        "check": "Checks", "meta": "Meta", "task": "TaskName",
    },
    "check": {
        "name": "Name", "type": "Type", "port": "PortLabel", "path": "Path", "interval": "Interval",
        "timeout": "Timeout", "command": "Command", "args": "Args", "protocol": "Protocol", "method": "Method",
        "header": "Header", "check_restart": "CheckRestart", "task": "TaskName",
    },
    "check_restart": {"limit": "Limit", "grace": "Grace", "ignore_warnings": "IgnoreWarnings"},
    "update": {
        "max_parallel": "MaxParallel", "min_healthy_time": "MinHealthyTime", "healthy_deadline": "HealthyDeadline",
        "progress_deadline": "ProgressDeadline", "auto_revert": "AutoRevert", "auto_promote": "AutoPromote",
        "canary": "Canary", "stagger": "Stagger", "health_check": "HealthCheck",
    },
    "migrate": {
        "max_parallel": "MaxParallel", "health_check": "HealthCheck", "min_healthy_time": "MinHealthyTime",
        "healthy_deadline": "HealthyDeadline",
    },
    "ephemeral_disk": {"size": "SizeMB", "migrate": "Migrate", "sticky": "Sticky"},
    "restart": {"attempts": "Attempts", "interval": "Interval", "delay": "Delay", "mode": "Mode"},
    "volume": {
        "type": "Type", "source": "Source", "read_only": "ReadOnly", "access_mode": "AccessMode",
        "attachment_mode": "AttachmentMode",
    },
    "volume_mount": {"volume": "Volume", "destination": "Destination", "read_only": "ReadOnly"},
    "vault": {
        "role": "Role", "policies": "Policies", "change_mode": "ChangeMode", "change_signal": "ChangeSignal",
        "env": "Env", "namespace": "Namespace", "cluster": "Cluster",
    },
    "constraint": {"attribute": "LTarget", "value": "RTarget", "operator": "Operand"},
    "spread": {"attribute": "Attribute", "weight": "Weight", "target": "SpreadTarget"},
    "network": {"mode": "Mode", "port": "Ports"},
    "port": {"static": "Value", "to": "To", "host_network": "HostNetwork"},
}  # fmt: skip
DURATIONS = {
    "MinHealthyTime", "HealthyDeadline", "ProgressDeadline", "Stagger", "Interval", "Timeout", "Delay", "Grace",
    "KillTimeout", "Splay", "ShutdownDelay", "MaxDelay",
}  # fmt: skip
RAW_BLOCKS = {"config", "env", "meta", "header"}  # keys kept as written


def _camel(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


class _Values:
    """Decodes python-hcl2's serialized values: quoted strings (escapes, ``${var.x}`` interpolation,
    ``$${`` literals), heredocs, bare expressions (only ``var.x``). Like Nomad, references to anything
    but input variables (``${attr...}``, ``${NOMAD_...}``, an env var) stay as written for runtime."""

    def __init__(self, variables):
        self.variables = variables

    def __call__(self, value):
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {self.key(k): self(v) for k, v in value.items() if not k.startswith("__")}
        if not isinstance(value, str):
            return value
        heredoc = re.match(r'^"<<(-?)([A-Za-z_][A-Za-z0-9_]*)\n(.*)\n[ \t]*\2"$', value, re.S)
        if heredoc:
            body = heredoc.group(3) + "\n"
            if heredoc.group(1):
                lines = body.splitlines(keepends=True)
                indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
                body = "".join(x[indent:] for x in lines)
            return self.template(body)
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            return self.template(value[1:-1], literal=self.unescape)
        expr = re.match(r"^\$\{(.*)\}$", value, re.S)
        text = expr.group(1).strip() if expr else value
        return self.expression(text)

    def key(self, k):
        return k[1:-1] if len(k) >= 2 and k[0] == '"' and k[-1] == '"' else k

    def expression(self, text):
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        match = re.match(r"^var\.([A-Za-z_][A-Za-z0-9_-]*)$", text)
        if match:
            if match.group(1) not in self.variables:
                raise HCLError(f"Unknown variable: There is no variable named {match.group(1)!r}.")
            return self.variables[match.group(1)]
        raise HCLError(f"unsupported expression in this emulator: {text!r}")

    @staticmethod
    def unescape(text):
        out, i = [], 0
        simple = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
        while i < len(text):
            char = text[i]
            if char == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                if nxt in simple:
                    out.append(simple[nxt])
                    i += 2
                    continue
                if nxt == "u":
                    out.append(chr(int(text[i + 2 : i + 6], 16)))
                    i += 6
                    continue
                if nxt == "U":
                    out.append(chr(int(text[i + 2 : i + 10], 16)))
                    i += 10
                    continue
                raise HCLError(f"invalid escape sequence \\{nxt}")
            out.append(char)
            i += 1
        return "".join(out)

    def template(self, text, literal=str):
        """HCL2 template sequences: ``$${`` / ``%%{`` are literals, ``${var.x}`` interpolates, other
        references stay as written. Sequences are found in the raw text and only the literal parts are
        unescaped (``literal``: a quoted string's escapes), as hclsyntax scans them (scan_tokens.rl
        ``TemplateStringLiteral``): ``"$\\u007b"`` is the literal ``${``, not an interpolation."""
        out, run, i = [], [], 0

        def flush():
            out.append(literal("".join(run)))
            run.clear()

        while i < len(text):
            if text.startswith("$${", i) or text.startswith("%%{", i):
                run.append(text[i] + "{")
                i += 3
                continue
            if text.startswith("${", i):
                end = text.find("}", i)
                if end < 0:
                    raise HCLError("unterminated template interpolation")
                flush()
                inner = text[i + 2 : end].strip()
                if not inner.startswith(("var.", "local.")):  # Nomad keeps unknown roots for runtime
                    out.append(text[i : end + 1])
                else:
                    value = self.expression(inner)
                    out.append(value if isinstance(value, str) else json.dumps(value))
                i = end + 1
                continue
            if text.startswith("%{", i):
                raise HCLError("template directives (%{...}) are not supported by this emulator")
            run.append(text[i])
            i += 1
        flush()
        return "".join(out)


def _blocks(items):
    """python-hcl2's block list -> [(label or None, body dict)]."""
    out = []
    for item in items if isinstance(items, list) else [items]:
        if not isinstance(item, dict):
            raise HCLError("expected a block")
        if "__is_block__" in item:
            out.append((None, item))
        else:
            ((label, body),) = item.items()
            out.append((label, body))
    return out


def _is_block_list(raw):
    if not (isinstance(raw, list) and raw and isinstance(raw[0], dict)):
        return False
    first = raw[0]
    if "__is_block__" in first:
        return True
    inner = next(iter(first.values())) if len(first) == 1 else None
    return isinstance(inner, dict) and "__is_block__" in inner


def _convert(kind, body, values):
    """One HCL block body -> the API dict for ``kind`` (job, group, task, ...)."""
    out = {}
    names = RENAME.get(kind, {})
    for name, raw in body.items():
        if name.startswith("__"):
            continue
        api = names.get(name, _camel(name))
        is_block = _is_block_list(raw)
        if name in RAW_BLOCKS and is_block:
            merged = {}
            for _, block in _blocks(raw):
                merged.update(_raw(block, values))
            out[api] = merged
            continue
        if not is_block:
            value = values(raw)
            if api in DURATIONS and isinstance(value, str):
                secs = parse_duration(value)
                if secs is None:
                    raise HCLError(f"{name}: invalid duration {value!r}")
                value = int(secs * NS)
            out[api] = value
            continue
        blocks = _blocks(raw)
        if name in ("group", "task"):
            out[api] = [{"Name": values.key(label), **_convert(name, block, values)} for label, block in blocks]
        elif name == "volume" and kind == "group":
            out[api] = {values.key(label): {"Name": values.key(label), **_convert(name, block, values)} for label, block in blocks}
        elif name == "network":
            out[api] = [_network(block, values) for _, block in blocks]
        elif name in ("constraint", "affinity", "spread", "service", "check", "template", "volume_mount", "artifact"):
            out[api] = [_convert(name, block, values) for _, block in blocks]
        else:
            converted = [_convert(name, block, values) for _, block in blocks]
            out[api] = converted[0] if len(converted) == 1 else converted
    if kind == "constraint":
        out.setdefault("Operand", "=")
    return out


def _raw(body, values):
    out = {}
    for name, raw in body.items():
        if name.startswith("__"):
            continue
        if isinstance(raw, list) and raw and isinstance(raw[0], dict) and "__is_block__" in raw[0]:
            out[name] = [_raw(block, values) for _, block in _blocks(raw)]
        else:
            out[values.key(name)] = values(raw)
    return out


def _network(body, values):
    out = {"Mode": values(body.get("mode", '"host"')), "ReservedPorts": None, "DynamicPorts": None}
    for label, block in _blocks(body.get("port", [])) if "port" in body else []:
        port = {"Label": values.key(label), **_convert("port", block, values)}
        port.setdefault("Value", 0)
        port.setdefault("To", 0)
        key = "ReservedPorts" if port["Value"] else "DynamicPorts"
        out[key] = (out[key] or []) + [port]
    return out


DEFAULT_UPDATE = {
    "Stagger": 30 * NS, "MaxParallel": 1, "HealthCheck": "checks", "MinHealthyTime": 10 * NS,
    "HealthyDeadline": 300 * NS, "ProgressDeadline": 600 * NS, "AutoRevert": False, "AutoPromote": False, "Canary": 0,
}  # fmt: skip


def canonicalize(job):
    job.setdefault("Name", job["ID"])
    job.setdefault("Type", "service")
    job.setdefault("Priority", 50)
    job.setdefault("Namespace", "default")
    job.setdefault("Region", "global")
    job.setdefault("AllAtOnce", False)
    job.setdefault("Datacenters", ["*"])
    job.setdefault("Constraints", None)
    job.setdefault("Meta", None)
    job.setdefault("TaskGroups", [])
    job_update = job.get("Update")
    if job["Type"] == "service":
        job["Update"] = {**DEFAULT_UPDATE, **(job_update or {})}
    for group in job["TaskGroups"]:
        group.setdefault("Count", 1)
        if job["Type"] == "service":
            group["Update"] = {**DEFAULT_UPDATE, **(job_update or {}), **(group.get("Update") or {})}
        group.setdefault("EphemeralDisk", {"SizeMB": 300, "Migrate": False, "Sticky": False})
        for task in group.get("Tasks") or []:
            task.setdefault("Resources", {"CPU": 100, "MemoryMB": 300})
            task.setdefault("Config", {})
    return job


def check_newlines(text):
    """The newline rules of HashiCorp's native HCL2 syntax, which python-hcl2 does not enforce.

    Mirrors hashicorp/hcl ``hclsyntax/parser.go``: ``finishParsingBodyAttribute`` ("Missing newline
    after argument": an argument ends with a newline, except the one argument of a block written on
    one line) and ``finishParsingBodyBlock`` ("Missing newline after block definition"). So a block
    opened on one line closes with a ``}`` that starts its own line, and nothing follows a block's ``}``
    on its line. Strings, heredocs, comments and brackets of expressions are skipped."""
    lines = text.split("\n")
    stack = []  # ("body", line) for block bodies, ("expr", char) for (, [ and object braces
    row = 0
    while row < len(lines):
        line, col, assigned = lines[row], 0, False
        while col < len(line):
            char = line[col]
            body = not stack or stack[-1][0] == "body"
            if char == "#" or line.startswith("//", col):
                break
            if line.startswith("/*", col):
                end = line.find("*/", col + 2)
                while end < 0 and row + 1 < len(lines):
                    row, line = row + 1, lines[row + 1]
                    end = line.find("*/")
                col = (end + 2) if end >= 0 else len(line)
                continue
            if line.startswith("<<", col):
                match = re.match(r"<<-?([A-Za-z_][A-Za-z0-9_-]*)\s*$", line[col:])
                if match:
                    marker = match.group(1)
                    row += 1
                    while row < len(lines) and lines[row].strip() != marker:
                        row += 1
                    line, col = lines[row] if row < len(lines) else "", len(lines[row].rstrip()) if row < len(lines) else 0
                    continue
            if char == '"':
                col += 1
                depth = 0
                while col < len(line) and (line[col] != '"' or depth):
                    if line[col] == "\\":
                        col += 1
                    elif line.startswith("${", col) or line.startswith("%{", col):
                        depth += 1
                        col += 1
                    elif line[col] == "}" and depth:
                        depth -= 1
                    col += 1
                col += 1
                continue
            if char == "=" and body and not line.startswith("==", col):
                assigned = True
            elif char in "([" or (char == "{" and not body):
                stack.append(("expr", char))
            elif char == "{" and assigned:
                stack.append(("expr", char))
            elif char == "{":
                stack.append(("body", row))
            elif char in ")]" or (char == "}" and stack and stack[-1][0] == "expr"):
                if stack:
                    stack.pop()
            elif char == "}" and stack:
                _, opened = stack.pop()
                if opened != row and line[:col].strip():
                    what = "argument" if assigned else "block definition"
                    raise HCLError(f"line {row + 1}: Missing newline after {what}: {line.strip()[:80]}")
                rest = line[col + 1 :].strip()
                if rest and not rest.startswith(("#", "//")) and (opened != row or not stack or rest[0] != "}"):
                    raise HCLError(f"line {row + 1}: Missing newline after block definition: {line.strip()[:80]}")
                assigned = False
            col += 1
        row += 1


def hcl_to_job(text, variables_text=""):
    """Parse a jobspec (HCL2) with an HCL variables file into the API's canonical JSON job."""
    options = SerializationOptions(with_comments=False, preserve_heredocs=True)
    check_newlines(text)
    try:
        doc = hcl2.loads(text, serialization_options=options)
        given = hcl2.loads(variables_text, serialization_options=options) if variables_text else {}
    except Exception as exc:  # python-hcl2 raises lark errors of several kinds
        raise HCLError(f"error parsing: {str(exc).splitlines()[0]}") from exc
    declared = {}
    for label, block in _blocks(doc.get("variable", [])) if doc.get("variable") else []:
        name = label.strip('"')
        declared[name] = _Values({})(block["default"]) if "default" in block else None
    variables = dict(declared)
    for name, raw in given.items():
        if name.startswith("__"):
            continue
        if name not in declared:
            raise HCLError(f"Undefined variable: A variable named {name!r} was assigned a value, but not declared")
        variables[name] = _Values({})(raw)
    missing = [name for name, value in variables.items() if value is None]
    if missing:
        raise HCLError(f"Unset variable: variable {missing[0]!r} has no default and no value")
    jobs = _blocks(doc.get("job", [])) if doc.get("job") else []
    if len(jobs) != 1:
        raise HCLError(f"expected exactly one job block, found {len(jobs)}")
    label, body = jobs[0]
    values = _Values(variables)
    job = {"ID": values.key(label), **_convert("job", body, values)}
    return canonicalize(job)


# ---------------------------------------------------------------------------------------------------
# Diffs
# ---------------------------------------------------------------------------------------------------
SERVER_FIELDS = {"Status", "StatusDescription", "Stable", "Version", "SubmitTime", "CreateIndex", "ModifyIndex", "JobModifyIndex"}


def _scalar(value):
    return value is None or isinstance(value, (str, int, float, bool))


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _object_diff(name, old, new):
    """Generic ObjectDiff of two dicts (either may be None)."""
    fields, objects = [], []
    keys = sorted(set(old or {}) | set(new or {}))
    for k in keys:
        a, b = (old or {}).get(k), (new or {}).get(k)
        if _scalar(a) and _scalar(b):
            kind = "None" if a == b else ("Added" if a is None else "Deleted" if b is None else "Edited")
            if kind != "None":
                fields.append({"Type": kind, "Name": k, "Old": _fmt(a), "New": _fmt(b), "Annotations": None})
            continue
        if isinstance(a, list) or isinstance(b, list):
            a_list, b_list = a or [], b or []
            if all(_scalar(x) for x in a_list + b_list):
                for x in [x for x in a_list if x not in b_list]:
                    fields.append({"Type": "Deleted", "Name": k, "Old": _fmt(x), "New": "", "Annotations": None})
                for x in [x for x in b_list if x not in a_list]:
                    fields.append({"Type": "Added", "Name": k, "Old": "", "New": _fmt(x), "Annotations": None})
                continue
            for i in range(max(len(a_list), len(b_list))):
                sub = _object_diff(k, a_list[i] if i < len(a_list) else None, b_list[i] if i < len(b_list) else None)
                if sub["Type"] != "None":
                    objects.append(sub)
            continue
        sub = _object_diff(k, a if isinstance(a, dict) else None, b if isinstance(b, dict) else None)
        if sub["Type"] != "None":
            objects.append(sub)
    if old is None and new is not None:
        kind = "Added"
    elif new is None and old is not None:
        kind = "Deleted"
    else:
        kind = "Edited" if fields or objects else "None"
    return {"Type": kind, "Name": name, "Fields": fields, "Objects": objects}


def _named_diffs(old_items, new_items, differ):
    old = {i["Name"]: i for i in old_items or []}
    new = {i["Name"]: i for i in new_items or []}
    return [differ(name, old.get(name), new.get(name)) for name in sorted(set(old) | set(new))]


def _task_diff(name, old, new):
    body = _object_diff(name, old and {k: v for k, v in old.items() if k != "Name"}, new and {k: v for k, v in new.items() if k != "Name"})
    annotations = ["forces create/destroy update"] if body["Type"] == "Edited" else None
    return {**body, "Annotations": annotations}


def _group_diff(name, old, new):
    strip = lambda g: g and {k: v for k, v in g.items() if k not in ("Name", "Tasks")}  # noqa: E731
    body = _object_diff(name, strip(old), strip(new))
    tasks = _named_diffs((old or {}).get("Tasks"), (new or {}).get("Tasks"), _task_diff)
    kind = body["Type"]
    if kind == "None" and any(t["Type"] != "None" for t in tasks):
        kind = "Edited"
    return {"Type": kind, "Name": name, "Fields": body["Fields"], "Objects": body["Objects"], "Tasks": tasks, "Updates": None}


def job_diff(old, new):
    """A JobDiff of two jobs (old None when the job is new)."""
    strip = lambda j: j and {k: v for k, v in j.items() if k not in SERVER_FIELDS and k != "TaskGroups"}  # noqa: E731
    body = _object_diff("Job", strip(old), strip(new))
    groups = _named_diffs((old or {}).get("TaskGroups"), (new or {}).get("TaskGroups"), _group_diff)
    kind = "Added" if old is None else body["Type"]
    if kind == "None" and any(g["Type"] != "None" for g in groups):
        kind = "Edited"
    return {"Type": kind, "ID": new["ID"], "Fields": body["Fields"], "Objects": body["Objects"], "TaskGroups": groups}


def _destructive(old_group, new_group):
    strip = lambda g: {k: v for k, v in (g or {}).items() if k not in ("Count", "Update")}  # noqa: E731
    return json.dumps(strip(old_group), sort_keys=True) != json.dumps(strip(new_group), sort_keys=True)


def desired_updates(old, new):
    """DesiredTGUpdates of registering ``new`` over ``old`` (old None or stopped: everything is placed)."""
    out = {}
    old_groups = {g["Name"]: g for g in (old or {}).get("TaskGroups") or []} if old and not old.get("Stop") else {}
    for group in new.get("TaskGroups") or []:
        counts = dict.fromkeys(("Place", "Canary", "DestructiveUpdate", "InPlaceUpdate", "Stop", "Migrate", "Preemptions", "Ignore"), 0)
        prev = old_groups.get(group["Name"])
        count = group.get("Count", 1)
        if new.get("Stop"):
            counts["Stop"] = prev.get("Count", 0) if prev else 0
        elif prev is None:
            counts["Place"] = count
        else:
            before = prev.get("Count", 1)
            keep = min(before, count)
            counts["Place"] = max(0, count - before)
            counts["Stop"] = max(0, before - count)
            canary = (group.get("Update") or {}).get("Canary") or 0
            if _destructive(prev, group) and keep:
                if canary:
                    counts["Canary"] = canary
                    counts["Ignore"] = keep
                else:
                    counts["DestructiveUpdate"] = keep
            else:
                counts["Ignore"] = keep
        out[group["Name"]] = counts
    for name, prev in old_groups.items():
        if name not in out:
            out[name] = {
                **dict.fromkeys(("Place", "Canary", "DestructiveUpdate", "InPlaceUpdate", "Migrate", "Preemptions", "Ignore"), 0),
                "Stop": prev.get("Count", 1),
            }
    return out


def same_spec(a, b):
    strip = lambda j: {k: v for k, v in (j or {}).items() if k not in SERVER_FIELDS}  # noqa: E731
    return json.dumps(strip(a), sort_keys=True) == json.dumps(strip(b), sort_keys=True)


# ---------------------------------------------------------------------------------------------------
# Request checking against the field dictionary
# ---------------------------------------------------------------------------------------------------
_TYPES = {"boolean": (bool,), "integer": (int,), "string": (str,), "array": (list,), "object": (dict,)}
EXTRA_BODY_FIELDS = {
    "JobsParseRequest": {"Variables": "string", "VariableFlags": "object"},
    "JobRegisterRequest": {"Submission": "JobSubmission"},
}
EXTRA_SCHEMAS = {"JobSubmission": {"Source": "string", "Format": "string", "VariableFlags": "object", "Variables": "string"}}
# The old spec lists no parameters for parse, but Nomad's handler reads them like every other one:
# ``parseNamespace``/``parseRegion`` in command/agent/http.go, called by ``JobsParseRequest`` in
# command/agent/job_endpoint.go, which authorises the parse against that namespace.
EXTRA_QUERY = {"/v1/jobs/parse": {"namespace", "region"}}
REQUIRED = {
    "JobsParseRequest": ["JobHCL"],
    "JobPlanRequest": ["Job"],
    "JobRegisterRequest": ["Job"],
    "JobRevertRequest": ["JobID", "JobVersion"],
    "DeploymentPromoteRequest": ["DeploymentID"],
    "JobSubmission": ["Source", "Format"],
}


class NomadSubsetChecker:
    """Checks requests against ``nomad-deploy-subset.json``: the endpoint exists, query parameters are
    declared, body fields exist with the declared type (recursively for named schemas), required fields
    are present, and path parameters agree with the body."""

    def __init__(self, subset):
        self.schemas = {**subset["schemas"], **EXTRA_SCHEMAS}
        self.endpoints = []
        for signature, spec in subset["endpoints"].items():
            method, template = signature.split(" ", 1)
            regex = "^" + re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
            self.endpoints.append((method, re.compile(regex), template, spec))

    @classmethod
    def from_file(cls, path):
        with open(path, encoding="utf-8") as handle:
            return cls(json.load(handle))

    def check(self, request, base_path=""):
        from urllib.parse import unquote

        for method, regex, template, spec in self.endpoints:
            found = regex.match(request.raw_path)
            if not found:
                continue
            if method != request.method:
                continue
            params = {k: unquote(v) for k, v in found.groupdict().items()}
            return self._check(request, template, spec, params)
        return [f"{request.method} {request.path}: no such endpoint in the spec"]

    def _check(self, request, template, spec, params):
        problems = []
        where = f"{request.method} {template}"
        allowed = {p["name"] for p in spec["params"] if p["in"] == "query"} | EXTRA_QUERY.get(template, set())
        if any(p["name"] == "index" for p in spec["params"]):
            allowed.add("index")  # the spec says header; Nomad reads the query parameter
        for name in request.query:
            if name not in allowed:
                problems.append(f"{where}: query parameter {name!r} is not accepted here")
        if "index" in request.query and not re.match(r"^\d+$", request.arg("index") or ""):
            problems.append(f"{where}: index must be an unsigned integer")
        if "wait" in request.query and parse_duration(request.arg("wait")) is None:
            problems.append(f"{where}: wait must be a duration like 5s or 500ms")
        body_schema = spec.get("body")
        if body_schema is None:
            if request.body not in (None, "", {}):
                problems.append(f"{where}: takes no request body")
            return problems
        if not isinstance(request.body, dict):
            return [*problems, f"{where}: body must be a JSON object"]
        problems += self.fields(request.body, body_schema, where, EXTRA_BODY_FIELDS.get(body_schema, {}))
        body = request.body
        if "jobName" in params:
            job_id = (body.get("Job") or {}).get("ID") if "Job" in body else body.get("JobID")
            if job_id is not None and job_id != params["jobName"]:
                problems.append(f"{where}: the body names job {job_id!r}, the path {params['jobName']!r}")
        if "deploymentID" in params and body.get("DeploymentID") not in (None, params["deploymentID"]):
            problems.append(f"{where}: DeploymentID differs from the path")
        if body_schema == "DeploymentPromoteRequest" and not body.get("All") and not body.get("Groups"):
            problems.append(f"{where}: promote needs All=true or Groups")
        return problems

    def check_response(self, request, status, body):
        """The emulator's own answer against the spec's response schema: declared fields only, each of
        its declared type (``array<X>``: every item). Error answers (text) are not checked."""
        if status != 200 or body is None or isinstance(body, (str, bytes)):
            return []
        found = next((e for e in self.endpoints if e[0] == request.method and e[1].match(request.raw_path)), None)
        if found is None:
            return []
        schema = found[3].get("response")
        where = f"response of {request.method} {found[2]}"
        if schema and schema.startswith("array<"):
            if not isinstance(body, list):
                return [f"{where}: must be an array"]
            return [p for item in body for p in self.fields(item, schema[6:-1], where, strict_required=False)]
        if schema in self.schemas:
            if not isinstance(body, dict):
                return [f"{where}: must be an object ({schema})"]
            return self.fields(body, schema, where, strict_required=False)
        return []

    def fields(self, body, schema_name, where, extra=None, strict_required=True):
        schema = {**self.schemas.get(schema_name, {}), **(extra or {})}
        required = REQUIRED.get(schema_name, []) if strict_required else []
        problems = [f"{where}: {schema_name}.{name} is required" for name in required if body.get(name) is None]
        for name, value in body.items():
            if name not in schema:
                problems.append(f"{where}: {schema_name} has no field {name!r}")
                continue
            if value is None:
                continue
            declared = schema[name]
            if declared in _TYPES:
                if not isinstance(value, _TYPES[declared]) or (declared == "integer" and isinstance(value, bool)):
                    problems.append(f"{where}: {schema_name}.{name} must be {declared}, got {type(value).__name__}")
            elif declared in self.schemas:
                if not isinstance(value, dict):
                    problems.append(f"{where}: {schema_name}.{name} must be an object ({declared})")
                else:
                    problems += self.fields(value, declared, where, strict_required=strict_required)
        return problems


# ---------------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------------
MUTATIONS = (
    ("POST", r"^/v1/jobs$"),
    ("POST", r"^/v1/job/[^/]+$"),
    ("POST", r"^/v1/job/[^/]+/(revert|stable)$"),
    ("POST", r"^/v1/deployment/(promote|fail|pause)/[^/]+$"),
    ("DELETE", r"^/v1/job/[^/]+$"),
)


# ---------------------------------------------------------------------------------------------------
# Placement: the feasibility checks of Nomad's scheduler for what hecate's jobs use
# ---------------------------------------------------------------------------------------------------
def resolve_target(target, node):
    """scheduler/feasible.go ``resolveTarget``: ``${node.unique.id}``, ``${node.unique.name}``,
    ``${node.datacenter}``, ``${node.class}``, ``${attr.<name>}``, ``${meta.<name>}``; anything else is a
    literal. Returns ``(value, found)``."""
    if not (target.startswith("${") and target.endswith("}")):
        return target, True
    name = target[2:-1]
    fixed = {"node.unique.id": node["ID"], "node.unique.name": node["Name"], "node.datacenter": node["Datacenter"],
             "node.class": node["NodeClass"]}  # fmt: skip
    if name in fixed:
        return fixed[name], True
    for prefix, table in (("attr.", node["Attributes"]), ("meta.", node["Meta"])):
        if name.startswith(prefix):
            return table.get(name[len(prefix) :]), name[len(prefix) :] in table
    return None, False


def check_constraint(constraint, node):
    """scheduler/feasible.go ``checkConstraint`` for the operands hecate writes: ``=``/``==``/``is``,
    ``!=``/``not``, ``regexp`` (Go's MatchString: a search, not a full match), ``is_set``, ``is_not_set``.
    ``distinct_hosts`` is decided at placement."""
    operand = constraint.get("Operand") or "="
    if operand in ("distinct_hosts", "distinct_property"):
        return True
    left, left_found = resolve_target(constraint.get("LTarget") or "", node)
    right, right_found = resolve_target(constraint.get("RTarget") or "", node)
    if operand in ("=", "==", "is"):
        return left_found and right_found and left == right
    if operand in ("!=", "not"):
        return left != right
    if operand == "regexp":
        return left_found and right_found and re.search(str(right), str(left)) is not None
    if operand == "is_set":
        return left_found
    if operand == "is_not_set":
        return not left_found
    raise ValueError(f"constraint operand {operand!r} is not modelled by this emulator")


def constraint_text(constraint):
    """structs.Constraint.String(): the key of AllocMetric.ConstraintFiltered."""
    return f"{constraint.get('LTarget')} {constraint.get('Operand')} {constraint.get('RTarget')}"


def reserved_ports(group):
    """The static ports a group reserves on its node (ReservedPorts of its networks)."""
    return {(p["Label"], p["Value"]) for net in group.get("Networks") or [] for p in net.get("ReservedPorts") or []}


# nomad/structs/deployment.go: DeploymentStatus* and DeploymentStatusDescription* of the statuses a
# deployment can rest in without progressing (paused by an operator; blocked/pending/unblocking are
# multiregion; initializing is the moment before the first placement)
STATUS_DESCRIPTIONS = {
    "paused": "Deployment is paused",
    "blocked": "Deployment is complete but waiting for peer region",
    "pending": "Deployment is pending, waiting for peer region",
    "initializing": "Deployment is initializing",
    "unblocking": "Deployment is unblocking remaining regions",
}


def _stub(alloc):
    """An allocation as the list endpoints return it (api.AllocationListStub has no DeploymentID)."""
    return {k: copy.deepcopy(v) for k, v in alloc.items() if k != "DeploymentID" and not k.startswith("_")}


def _task_state():
    received = {"Type": "Received", "Time": time.time_ns(), "DisplayMessage": "Task received by client"}
    return {"State": "pending", "Failed": False, "Restarts": 0, "Events": [received]}


class NomadEmulator(Emulator):
    name = "nomad"

    def __init__(self, spec_path, token=None, delay=0.05, tokens=None):
        super().__init__()
        self.checker = NomadSubsetChecker.from_file(str(spec_path))
        self.token = token
        # secret -> namespaces the token may use (None: all), like an ACL policy's namespace rules
        self.tokens = dict(tokens or {})
        self.delay = delay  # default time for a scripted step (allocations placed -> healthy)
        self.cond = threading.Condition(self.lock)
        self.index = 10
        self.tables = {"jobs": 1, "deployment": 1, "allocs": 1, "evals": 1}
        self.jobs = {}  # (namespace, id) -> {"current": job, "versions": [job...], "submissions": {version: sub}}
        self.deployments = {}
        self.allocations = {}
        self.evaluations = {}
        self.outcomes = {}  # job id -> [outcome dict, ...] consumed one per deployment
        self.blocking = []  # (path, index, wait seconds asked, seconds held)
        self.enforce_deadlines = True  # False: a deployment that makes no progress runs forever
        self.deploy_without_changes = True  # False: a version that moves no allocation gets no deployment
        self.nodes = []  # client nodes (add_nodes); none: every allocation fits somewhere, no checks
        self.tracked_versions = JOB_TRACKED_VERSIONS  # versions kept per job
        self.hooks = []  # [method, path regex, fn(request), times]: run before a matching request is handled
        self._timeline = []
        self._seq = itertools.count()
        self._ticker = None
        self._stopping = threading.Event()
        r = self.route
        r("POST", r"/v1/jobs/parse", self.parse)
        r("POST", r"/v1/validate/job", self.validate)
        r("GET", r"/v1/jobs", self.list_jobs)
        r("POST", r"/v1/jobs", self.register)
        r("POST", r"/v1/job/(?P<job>[^/]+)/plan", self.plan)
        r("POST", r"/v1/job/(?P<job>[^/]+)/revert", self.revert)
        r("POST", r"/v1/job/(?P<job>[^/]+)/stable", self.stable)
        r("GET", r"/v1/job/(?P<job>[^/]+)/versions", self.versions)
        r("GET", r"/v1/job/(?P<job>[^/]+)/allocations", self.job_allocations)
        r("GET", r"/v1/job/(?P<job>[^/]+)/deployments", self.job_deployments)
        r("GET", r"/v1/job/(?P<job>[^/]+)/deployment", self.job_deployment)
        r("GET", r"/v1/job/(?P<job>[^/]+)/evaluations", self.job_evaluations)
        r("GET", r"/v1/job/(?P<job>[^/]+)", self.get_job)
        r("POST", r"/v1/job/(?P<job>[^/]+)", self.register)
        r("DELETE", r"/v1/job/(?P<job>[^/]+)", self.deregister)
        r("GET", r"/v1/deployment/allocations/(?P<dep>[^/]+)", self.deployment_allocations)
        r("GET", r"/v1/deployment/(?P<dep>[^/]+)", self.get_deployment)
        r("POST", r"/v1/deployment/promote/(?P<dep>[^/]+)", self.promote)
        r("POST", r"/v1/deployment/fail/(?P<dep>[^/]+)", self.fail)

    # -- lifecycle and test controls --------------------------------------------------------------
    def start(self, port=0):
        super().start(port)
        self._stopping.clear()
        self._ticker = threading.Thread(target=self._tick, name="nomad-ticker", daemon=True)
        self._ticker.start()
        return self

    def stop(self):
        self._stopping.set()
        with self.cond:
            self.cond.notify_all()
        if self._ticker:
            self._ticker.join(timeout=2)
        super().stop()

    @property
    def writes(self):
        """Requests that change state (parse/plan/validate are POSTs that write nothing)."""
        return [r for r in self.requests if any(r.method == m and re.match(p, r.path) for m, p in MUTATIONS)]

    @property
    def registers(self):
        return [r for r in self.requests if r.method == "POST" and re.match(r"^/v1/(jobs|job/[^/]+)$", r.path)]

    def script(self, job_id, kind="healthy", delay=None, events=None, times=1, status=None):
        """Script the next ``times`` deployments of ``job_id``: ``healthy``, ``fail``, ``pending`` (nothing
        gets healthy) or ``status`` (the deployment moves to ``status``, one of STATUS_DESCRIPTIONS)."""
        assert kind in ("healthy", "fail", "pending", "status"), kind
        assert kind != "status" or status in STATUS_DESCRIPTIONS, status
        with self.lock:
            for _ in range(times):
                self.outcomes.setdefault(job_id, []).append(
                    {"kind": kind, "delay": self.delay if delay is None else delay, "events": events, "status": status}
                )

    def reset(self):
        """Forget every job, deployment, scripted outcome, hook and recorded request (the server keeps
        running: one emulator can serve a whole test module)."""
        with self.lock:
            for table in (self.jobs, self.deployments, self.allocations, self.evaluations, self.outcomes):
                table.clear()
            self.hooks.clear()
            self.requests.clear()
            self.violations.clear()
            self.blocking.clear()
            self.faults.clear()
            self._timeline.clear()
            self.enforce_deadlines = True
            self.deploy_without_changes = True
            self.tracked_versions = JOB_TRACKED_VERSIONS
            self.nodes.clear()

    def add_nodes(self, names, datacenter="dc1", node_class="", meta=None):
        """Client nodes that allocations must fit on: ``attr.unique.hostname`` and the node name are
        ``name`` (a Nomad client's default). From then on placement checks feasibility."""
        with self.lock:
            for name in names:
                self.nodes.append({"ID": str(uuid.uuid4()), "Name": name, "Datacenter": datacenter, "NodeClass": node_class,
                                   "Attributes": {"unique.hostname": name}, "Meta": dict(meta or {})})  # fmt: skip

    def _ports_in_use(self, node_name, job_id):
        """Static ports held on a node by running allocations of other jobs (the job's own old allocations
        are replaced by the same plan)."""
        used = set()
        for alloc in self.allocations.values():
            if alloc["NodeName"] == node_name and alloc["DesiredStatus"] == "run" and alloc["JobID"] != job_id:
                used |= {value for _, value in alloc["_ports"]}
        return used

    def _placements(self, job, group, wanted, taken=None):
        """Choose nodes for ``wanted`` allocations of ``group``, as the scheduler decides feasibility:
        datacenter, job/group/task constraints (scheduler/feasible.go), static port collisions
        (structs/network.go NetworkIndex: a reserved port is one allocation's per node), distinct_hosts.
        Returns ``(node names, AllocMetric of the failures or None)``. ``taken``: node -> ports this
        plan already placed there."""
        taken = taken if taken is not None else {}
        constraints = [*(job.get("Constraints") or []), *(group.get("Constraints") or [])]
        constraints += [c for task in group.get("Tasks") or [] for c in task.get("Constraints") or []]
        distinct = any(c.get("Operand") == "distinct_hosts" for c in constraints)
        ports = reserved_ports(group)
        chosen, failures = [], None
        for _ in range(wanted):
            metric = {"NodesEvaluated": 0, "NodesFiltered": 0, "NodesAvailable": {}, "ClassFiltered": None,
                      "ConstraintFiltered": None, "NodesExhausted": 0, "ClassExhausted": None, "DimensionExhausted": None,
                      "QuotaExhausted": None, "CoalescedFailures": 0, "AllocationTime": 0, "Scores": None}  # fmt: skip
            fits = []
            for node in self.nodes:
                if not any(fnmatch.fnmatchcase(node["Datacenter"], dc) for dc in job.get("Datacenters") or ["*"]):
                    continue
                metric["NodesEvaluated"] += 1
                metric["NodesAvailable"][node["Datacenter"]] = metric["NodesAvailable"].get(node["Datacenter"], 0) + 1
                failed = next((c for c in constraints if not check_constraint(c, node)), None)
                if failed is not None:
                    metric["NodesFiltered"] += 1
                    metric["ConstraintFiltered"] = metric["ConstraintFiltered"] or {}
                    text = constraint_text(failed)
                    metric["ConstraintFiltered"][text] = metric["ConstraintFiltered"].get(text, 0) + 1
                    continue
                held = self._ports_in_use(node["Name"], job["ID"]) | taken.get(node["Name"], set())
                collision = next(((label, value) for label, value in sorted(ports) if value in held), None)
                if collision is None and distinct and node["Name"] in chosen:
                    collision = ("distinct_hosts", 0)
                if collision is not None:
                    metric["NodesExhausted"] += 1
                    metric["DimensionExhausted"] = metric["DimensionExhausted"] or {}
                    text = f"network: reserved port collision {collision[0]}={collision[1]}"
                    metric["DimensionExhausted"][text] = metric["DimensionExhausted"].get(text, 0) + 1
                    continue
                fits.append(node["Name"])
            if not fits:
                if failures is None:
                    failures = metric
                else:
                    failures["CoalescedFailures"] += 1
                continue
            load = {
                name: sum(1 for a in self.allocations.values() if a["NodeName"] == name and a["DesiredStatus"] == "run") for name in fits
            }
            best = min(fits, key=lambda name: (load[name] + chosen.count(name), fits.index(name)))
            chosen.append(best)
            taken.setdefault(best, set()).update(value for _, value in ports)
        return chosen, failures

    def _placement_failures(self, job, updates):
        """FailedTGAllocs of a plan: the groups whose new allocations do not all fit."""
        if not self.nodes or job.get("Stop"):
            return None
        failed, taken = {}, {}
        for group in job.get("TaskGroups") or []:
            counts = updates.get(group["Name"]) or {}
            wanted = (counts.get("Canary") or 0) or (counts.get("Place") or 0) + (counts.get("DestructiveUpdate") or 0)
            _, metric = self._placements(job, group, wanted, taken)
            if metric is not None:
                failed[group["Name"]] = metric
        return failed or None

    def before(self, method, path, fn, times=1):
        """Run ``fn(request)`` (under the state lock) before the next ``times`` matching requests are
        handled: e.g. another operator's change landing between a client's plan and its register."""
        with self.lock:
            self.hooks.append([method, re.compile(path), fn, times])

    def _handle(self, request):
        with self.lock:
            for hook in self.hooks:
                if hook[3] > 0 and hook[0] == request.method and hook[1].search(request.path):
                    hook[3] -= 1
                    hook[2](request)
        return super()._handle(request)

    def job(self, job_id, namespace="default"):
        with self.lock:
            entry = self.jobs.get((namespace, job_id))
            return copy.deepcopy(entry["current"]) if entry else None

    def versions_of(self, job_id, namespace="default"):
        with self.lock:
            entry = self.jobs.get((namespace, job_id))
            return copy.deepcopy(entry["versions"]) if entry else []

    def deployments_of(self, job_id):
        with self.lock:
            return sorted((copy.deepcopy(d) for d in self.deployments.values() if d["JobID"] == job_id), key=lambda d: d["CreateIndex"])

    def bump_job(self, job_id, namespace="default", **meta):
        """Change a registered job behind the client's back (another operator): a new version."""
        with self.lock:
            entry = self.jobs[(namespace, job_id)]
            job = copy.deepcopy(entry["current"])
            job["Meta"] = {**(job.get("Meta") or {}), **meta}
            self._store_version(entry, job)

    # -- plumbing -----------------------------------------------------------------------------------
    def authenticate(self, request):
        known = {**self.tokens, **({self.token: None} if self.token else {})}
        if not known:
            return None
        secret = request.headers.get("x-nomad-token")
        if secret not in known:
            return Response(403, "Permission denied", {"Content-Type": "text/plain"})
        allowed = known[secret]
        if allowed is not None and self.namespace_of(request) not in allowed:
            # every endpoint authorises against the request's namespace (aclObj.AllowNsOp)
            return Response(403, "Permission denied", {"Content-Type": "text/plain"})
        return None

    @staticmethod
    def namespace_of(request):
        """The namespace a request acts in. Registration: ``namespaceForJob`` in
        command/agent/job_endpoint.go (the query parameter wins, then the request body's, then the
        job's); everything else: ``parseNamespace`` in command/agent/http.go (query, else default)."""
        query = request.arg("namespace", "")
        body = request.body if isinstance(request.body, dict) else {}
        if request.method in ("POST", "PUT") and re.match(r"^/v1/(jobs|job/[^/]+)$", request.path):
            job = body.get("Job") if isinstance(body.get("Job"), dict) else {}
            return query or body.get("Namespace") or job.get("Namespace") or "default"
        return query or "default"

    def response_problems(self, request, response):
        return self.checker.check_response(request, response.status, response.body)

    def _next(self, *tables):
        self.index += 1
        for table in tables:
            self.tables[table] = self.index
        self.cond.notify_all()
        return self.index

    def _reply(self, body, table=None, status=200):
        index = self.tables[table] if table else self.index
        return Response(status, body, {"X-Nomad-Index": str(index), "X-Nomad-KnownLeader": "true", "X-Nomad-LastContact": "0"})

    def _error(self, status, text):
        return Response(status, text, {"Content-Type": "text/plain; charset=utf-8"})

    def _block(self, request, table):
        index = int(request.arg("index", "0") or 0)
        if not index:
            return
        wait = min(parse_duration(request.arg("wait", "")) or DEFAULT_WAIT, MAX_WAIT)
        started = time.monotonic()
        self.cond.wait_for(lambda: self.tables[table] > index or self._stopping.is_set(), timeout=wait)
        self.blocking.append((request.path, index, wait, time.monotonic() - started))

    def _entry(self, request, job_id=None):
        namespace = request.arg("namespace", "default")
        return self.jobs.get((namespace, job_id or request.params["job"]))

    def _at(self, delay, fn):
        heapq.heappush(self._timeline, (time.monotonic() + delay, next(self._seq), fn))

    def _tick(self):
        while not self._stopping.is_set():
            due = []
            with self.lock:
                now = time.monotonic()
                while self._timeline and self._timeline[0][0] <= now:
                    due.append(heapq.heappop(self._timeline)[2])
                for fn in due:
                    fn()
                self._check_deadlines(now)
            time.sleep(0.005)

    # -- parse / validate / plan --------------------------------------------------------------------
    def parse(self, request):
        body = request.body or {}
        try:
            variables = body.get("Variables") or ""
            flags = body.get("VariableFlags") or {}
            if flags:
                variables += "".join(f"{k} = {json.dumps(v)}\n" for k, v in flags.items())
            job = hcl_to_job(body.get("JobHCL") or "", variables)
        except HCLError as exc:
            return self._error(400, str(exc))
        if not body.get("Canonicalize"):
            pass  # the canonical form is a superset; clients here always ask for it
        return job

    def validate(self, request):
        return {"DriverConfigValidated": True, "ValidationErrors": None, "Error": "", "Warnings": ""}

    def plan(self, request):
        body = request.body or {}
        job = body.get("Job") or {}
        entry = self._entry(request, job.get("ID"))
        current = entry["current"] if entry else None
        new = {**job, "Stop": False}
        diff = job_diff(current, new)
        updates = desired_updates(current, job)
        return self._reply(
            {
                "JobModifyIndex": current["JobModifyIndex"] if current else 0,
                "Diff": diff if body.get("Diff") else None,
                "Annotations": {"DesiredTGUpdates": updates, "PreemptedAllocs": None},
                "FailedTGAllocs": self._placement_failures(
                    {**job, "Namespace": entry["current"]["Namespace"] if entry else job.get("Namespace")}, updates
                ),
                "CreatedEvals": None,
                "Warnings": "",
                "NextPeriodicLaunch": "0001-01-01T00:00:00Z",
            },
            "jobs",
        )

    # -- jobs ---------------------------------------------------------------------------------------
    def list_jobs(self, request):
        self._block(request, "jobs")
        prefix = request.arg("prefix", "")
        namespace = request.arg("namespace", "default")
        out = []
        for (ns, job_id), entry in sorted(self.jobs.items()):
            if ns == namespace and job_id.startswith(prefix):
                job = entry["current"]
                out.append(
                    {
                        k: job.get(k)
                        for k in (
                            "ID",
                            "Name",
                            "Namespace",
                            "Type",
                            "Priority",
                            "Status",
                            "StatusDescription",
                            "Stop",
                            "JobModifyIndex",
                            "ModifyIndex",
                            "CreateIndex",
                            "SubmitTime",
                            "Datacenters",
                        )
                    }
                )
        return self._reply(out, "jobs")

    def get_job(self, request):
        self._block(request, "jobs")
        entry = self._entry(request)
        if not entry:
            return self._error(404, "job not found")
        return self._reply(copy.deepcopy(entry["current"]), "jobs")

    def versions(self, request):
        self._block(request, "jobs")
        entry = self._entry(request)
        if not entry:
            return self._error(404, "job versions not found")
        versions = [copy.deepcopy(v) for v in reversed(entry["versions"])]
        return self._reply(
            {
                "Versions": versions,
                "Diffs": None,
                "KnownLeader": True,
                "LastContact": 0,
                "LastIndex": self.tables["jobs"],
                "NextToken": "",
                "RequestTime": 0,
            },
            "jobs",
        )

    def register(self, request):
        body = request.body or {}
        job = copy.deepcopy(body.get("Job") or {})
        if "job" in request.params and job.get("ID") != request.params["job"]:
            return self._error(400, "Job ID does not match name")
        namespace = self.namespace_of(request)  # namespaceForJob: the query parameter wins
        job["Namespace"] = namespace
        entry = self.jobs.get((namespace, job["ID"]))
        current = entry["current"] if entry else None
        if body.get("EnforceIndex"):
            given = body.get("JobModifyIndex") or 0
            if given == 0 and current is not None:
                return self._error(500, "Enforcing job modify index 0: job already exists")
            if given and current is None:
                return self._error(500, f"Enforcing job modify index {given}: job does not exist")
            if given and current["JobModifyIndex"] != given:
                return self._error(
                    500, f"Enforcing job modify index {given}: job exists with conflicting job modify index: {current['JobModifyIndex']}"
                )
        job["Stop"] = False
        if entry and same_spec(current, job) and not current.get("Stop"):
            return self._reply(self._unchanged(current))
        if entry is None:
            entry = self.jobs[(namespace, job["ID"])] = {"current": None, "versions": [], "submissions": {}}
        job, evaluation = self._store_version(entry, job)
        if body.get("Submission"):
            entry["submissions"][job["Version"]] = body["Submission"]
        return self._reply(self._job_write_response(evaluation, job["JobModifyIndex"]))

    def _unchanged(self, current):
        """nomad/job_endpoint.go doRegister when ``!specChanged``: nothing written, an evaluation still
        created, the reply carries the job's ModifyIndex."""
        return self._job_write_response(self._evaluate(current, "job-register"), current["ModifyIndex"])

    def _job_write_response(self, evaluation, modify_index, warnings=True):
        """nomad/structs/structs.go JobRegisterResponse (``Warnings``; JobDeregisterResponse has none): the
        evaluation the write created, the job's modify index, and the QueryMeta."""
        out = {"EvalID": evaluation["ID"], "EvalCreateIndex": evaluation["CreateIndex"], "JobModifyIndex": modify_index}
        if warnings:
            out["Warnings"] = ""
        return {**out, "KnownLeader": True, "LastContact": 0, "LastIndex": self.index, "NextToken": "", "RequestTime": 0}

    def _keep_tracked_versions(self, entry):
        """nomad/state/state_store.go upsertJobVersion, after inserting a version: past the limit, delete the
        oldest of the newest ``tracked_versions + 1``, unless it is the newest stable version: then the one
        before it goes (so a job always keeps a stable version to revert to). Submissions are pruned to the
        same number (pruneJobSubmissions)."""
        newest_first = sorted(entry["versions"], key=lambda v: -v["Version"])
        limit = self.tracked_versions
        if len(newest_first) <= limit:
            return
        stable = next((i for i, v in enumerate(newest_first) if v["Stable"]), -1)
        if stable == limit:
            newest_first[limit - 1], newest_first[limit] = newest_first[limit], newest_first[limit - 1]
        dropped = newest_first[limit]
        entry["versions"] = [v for v in entry["versions"] if v is not dropped]
        for version in sorted(entry["submissions"])[: max(0, len(entry["submissions"]) - limit)]:
            del entry["submissions"][version]

    def _store_version(self, entry, job, rollback=False):
        """Register ``job`` as the next version: indexes, an evaluation, a deployment, allocations.
        Returns ``(job, evaluation)``."""
        previous = entry["current"]
        index = self._next("jobs")
        job = copy.deepcopy(job)
        job.setdefault("Stop", False)
        job.update(
            Version=(previous["Version"] + 1) if previous else 0,
            JobModifyIndex=index,
            ModifyIndex=index,
            CreateIndex=previous["CreateIndex"] if previous else index,
            SubmitTime=time.time_ns(),
            Stable=False,
            Status="dead" if job.get("Stop") else "pending",
            StatusDescription="",
        )
        entry["versions"].append(copy.deepcopy(job))
        self._keep_tracked_versions(entry)
        entry["current"] = job
        evaluation = self._evaluate(job, "rollback" if rollback else "job-register")
        self._deploy(previous, job, evaluation, rollback=rollback)
        return job, evaluation

    def _evaluate(self, job, trigger):
        index = self._next("evals")
        evaluation = {
            "ID": str(uuid.uuid4()),
            "JobID": job["ID"],
            "Namespace": job["Namespace"],
            "Type": job["Type"],
            "TriggeredBy": trigger,
            "Status": "complete",
            "JobModifyIndex": job["JobModifyIndex"],
            "CreateIndex": index,
            "ModifyIndex": index,
            "Priority": job.get("Priority", 50),
        }
        self.evaluations[evaluation["ID"]] = evaluation
        return evaluation

    # -- deployments --------------------------------------------------------------------------------
    def _outcome(self, job_id):
        queue = self.outcomes.get(job_id) or []
        return queue.pop(0) if queue else {"kind": "healthy", "delay": self.delay, "events": None, "status": None}

    def _deploy(self, previous, job, evaluation, rollback=False):
        for dep in self.deployments.values():
            if dep["JobID"] == job["ID"] and dep["Status"] in ("running", "paused", "pending"):
                dep.update(
                    Status="cancelled", StatusDescription="Cancelled due to newer version of job", ModifyIndex=self._next("deployment")
                )
        if job.get("Stop"):
            self._stop_allocs(job["ID"], lambda a: True)
            return None
        if job.get("Type") != "service":
            return None
        updates = desired_updates(previous, job)
        moving = ("Place", "Canary", "DestructiveUpdate", "InPlaceUpdate", "Stop", "Migrate")
        if not self.deploy_without_changes and not any(u[k] for u in updates.values() for k in moving):
            return None
        now = time.monotonic()
        index = self._next("deployment")
        dep = {
            "ID": str(uuid.uuid4()), "Namespace": job["Namespace"], "JobID": job["ID"], "JobVersion": job["Version"],
            "JobModifyIndex": job["ModifyIndex"], "JobSpecModifyIndex": job["JobModifyIndex"], "JobCreateIndex": job["CreateIndex"],
            "IsMultiregion": False, "Status": "running", "StatusDescription": "Deployment is running",
            "TaskGroups": {}, "CreateIndex": index, "ModifyIndex": index,
        }  # fmt: skip
        outcome = self._outcome(job["ID"])
        dep["_outcome"] = outcome
        dep["_progress"] = {}
        dep["_unplaced"] = {}
        taken = {}
        for group in job["TaskGroups"]:
            update = group.get("Update") or {}
            counts = updates[group["Name"]]
            canaries = 0 if rollback else counts["Canary"]
            if rollback and counts["Canary"]:
                counts["DestructiveUpdate"] += counts["Canary"]
            state = {
                "AutoRevert": bool(update.get("AutoRevert")), "AutoPromote": bool(update.get("AutoPromote")),
                "ProgressDeadline": update.get("ProgressDeadline", 600 * NS), "Promoted": False,
                "PlacedCanaries": [], "DesiredCanaries": canaries, "DesiredTotal": group.get("Count", 1),
                "PlacedAllocs": 0, "HealthyAllocs": 0, "UnhealthyAllocs": 0, "RequireProgressBy": None,
            }  # fmt: skip
            dep["TaskGroups"][group["Name"]] = state
            dep["_progress"][group["Name"]] = now
            to_place = canaries if canaries else counts["Place"] + counts["DestructiveUpdate"]
            nodes = self._placements(job, group, to_place, taken)[0] if self.nodes else [None] * to_place
            dep["_unplaced"][group["Name"]] = to_place - len(nodes)  # a blocked evaluation: the deadline decides
            for node in nodes:
                alloc = self._alloc(job, group, dep, evaluation, canary=bool(canaries), node=node)
                state["PlacedAllocs"] += 1
                if canaries:
                    state["PlacedCanaries"].append(alloc["ID"])
            if not to_place:
                state["HealthyAllocs"] = state["DesiredTotal"]
        self.deployments[dep["ID"]] = dep
        self._schedule(dep)
        return dep

    def _alloc(self, job, group, dep, evaluation, canary=False, node=None):
        index = self._next("allocs")
        number = sum(1 for a in self.allocations.values() if a["JobID"] == job["ID"] and a["TaskGroup"] == group["Name"])
        node = next((n for n in self.nodes if n["Name"] == node), None) or {"ID": str(uuid.uuid4()), "Name": f"node-{number % 3}"}
        alloc = {
            "ID": str(uuid.uuid4()), "EvalID": evaluation["ID"], "Name": f"{job['ID']}.{group['Name']}[{number}]",
            "Namespace": job["Namespace"], "NodeID": node["ID"], "NodeName": node["Name"], "_ports": reserved_ports(group),
            "JobID": job["ID"], "JobType": job["Type"], "JobVersion": job["Version"], "TaskGroup": group["Name"],
            "DesiredStatus": "run", "DesiredDescription": "", "ClientStatus": "pending", "ClientDescription": "",
            "DeploymentID": dep["ID"], "DeploymentStatus": {"Canary": canary, "Healthy": None, "Timestamp": "", "ModifyIndex": index},
            "TaskStates": {t["Name"]: _task_state() for t in group.get("Tasks") or []},
            "CreateIndex": index, "ModifyIndex": index, "CreateTime": time.time_ns(), "ModifyTime": time.time_ns(),
        }  # fmt: skip
        self.allocations[alloc["ID"]] = alloc
        return alloc

    def _dep_allocs(self, dep, group=None, canary=None):
        return [
            a
            for a in self.allocations.values()
            if a["DeploymentID"] == dep["ID"]
            and (group is None or a["TaskGroup"] == group)
            and (canary is None or a["DeploymentStatus"]["Canary"] == canary)
        ]

    def _schedule(self, dep):
        outcome = dep["_outcome"]
        if outcome["kind"] == "healthy":
            self._at(outcome["delay"], lambda: self._make_healthy(dep["ID"]))
        elif outcome["kind"] == "fail":
            self._at(outcome["delay"], lambda: self._make_unhealthy(dep["ID"]))
        elif outcome["kind"] == "status":
            self._at(outcome["delay"], lambda: self._set_status(dep["ID"], outcome["status"]))
        # pending: nothing happens; the progress deadline decides

    def _set_running(self, alloc, healthy):
        alloc["ClientStatus"] = "running"
        alloc["DeploymentStatus"].update(Healthy=healthy, Timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ"))
        for state in alloc["TaskStates"].values():
            state["State"] = "running"
            state["Events"].append({"Type": "Started", "Time": time.time_ns(), "DisplayMessage": "Task started by client"})
        alloc["ModifyIndex"] = alloc["DeploymentStatus"]["ModifyIndex"] = self._next("allocs")

    def _make_healthy(self, dep_id):
        dep = self.deployments[dep_id]
        if dep["Status"] != "running":
            return
        for name, state in dep["TaskGroups"].items():
            for alloc in self._dep_allocs(dep, name):
                if alloc["DeploymentStatus"]["Healthy"] is None:
                    self._set_running(alloc, True)
            state["HealthyAllocs"] = max(
                state["HealthyAllocs"], len([a for a in self._dep_allocs(dep, name) if a["DeploymentStatus"]["Healthy"]])
            )
            dep["_progress"][name] = time.monotonic()
        if any(dep["_unplaced"].values()):
            return  # allocations that found no node never get healthy
        waiting = [n for n, s in dep["TaskGroups"].items() if s["DesiredCanaries"] and not s["Promoted"]]
        if waiting:
            if all(dep["TaskGroups"][n]["AutoPromote"] for n in waiting):
                self._promote(dep, waiting)
            else:
                dep.update(StatusDescription="Deployment is running but requires manual promotion", ModifyIndex=self._next("deployment"))
            return
        self._succeed(dep)

    def _promote(self, dep, groups):
        job = self.jobs[(dep["Namespace"], dep["JobID"])]["current"]
        for name in groups:
            state = dep["TaskGroups"][name]
            state["Promoted"] = True
            group = next(g for g in job["TaskGroups"] if g["Name"] == name)
            evaluation = self._evaluate(job, "deployment-watcher")
            wanted = max(0, state["DesiredTotal"] - state["DesiredCanaries"])
            nodes = self._placements(job, group, wanted)[0] if self.nodes else [None] * wanted
            dep["_unplaced"][name] = wanted - len(nodes)
            for node in nodes:
                self._alloc(job, group, dep, evaluation, node=node)
                state["PlacedAllocs"] += 1
            dep["_progress"][name] = time.monotonic()
        dep.update(StatusDescription="Deployment is running", ModifyIndex=self._next("deployment"))
        self._schedule(dep)

    def _set_status(self, dep_id, status):
        dep = self.deployments[dep_id]
        if dep["Status"] == "running":
            dep.update(Status=status, StatusDescription=STATUS_DESCRIPTIONS[status], ModifyIndex=self._next("deployment"))

    def _succeed(self, dep):
        dep.update(Status="successful", StatusDescription="Deployment completed successfully", ModifyIndex=self._next("deployment"))
        entry = self.jobs[(dep["Namespace"], dep["JobID"])]
        for version in entry["versions"]:
            if version["Version"] == dep["JobVersion"]:
                version["Stable"] = True
        if entry["current"]["Version"] == dep["JobVersion"]:
            entry["current"].update(Stable=True, Status="running")
        self._next("jobs")
        self._stop_allocs(dep["JobID"], lambda a: a["DeploymentID"] != dep["ID"] and a["DesiredStatus"] == "run")

    def _stop_allocs(self, job_id, which):
        for alloc in self.allocations.values():
            if alloc["JobID"] == job_id and which(alloc) and alloc["DesiredStatus"] == "run":
                alloc.update(DesiredStatus="stop", ClientStatus="complete", ModifyIndex=self._next("allocs"))

    def _make_unhealthy(self, dep_id):
        dep = self.deployments[dep_id]
        if dep["Status"] != "running":
            return
        events = dep["_outcome"]["events"] or [
            {"Type": "Driver Failure", "DisplayMessage": "failed to pull image: manifest unknown"},
            {"Type": "Not Restarting", "DisplayMessage": "Error was unrecoverable"},
        ]
        for name, state in dep["TaskGroups"].items():
            for alloc in self._dep_allocs(dep, name):
                alloc.update(ClientStatus="failed")
                alloc["DeploymentStatus"].update(Healthy=False)
                for task in alloc["TaskStates"].values():
                    task.update(State="dead", Failed=True)
                    task["Events"] += [{"Type": e["Type"], "Time": time.time_ns(), "DisplayMessage": e["DisplayMessage"]} for e in events]
                alloc["ModifyIndex"] = self._next("allocs")
                state["UnhealthyAllocs"] += 1
        self._fail(dep, "Failed due to unhealthy allocations")

    def _fail(self, dep, description):
        entry = self.jobs[(dep["Namespace"], dep["JobID"])]
        current = entry["current"]
        revert_to = None
        if any(s["AutoRevert"] for s in dep["TaskGroups"].values()) and current["Version"] == dep["JobVersion"]:
            stable = [v for v in entry["versions"] if v["Stable"] and v["Version"] < dep["JobVersion"]]
            if stable and not same_spec(stable[-1], current):
                revert_to = stable[-1]
        if revert_to is not None:
            description += f" - rolling back to job version {revert_to['Version']}"
        dep.update(Status="failed", StatusDescription=description, ModifyIndex=self._next("deployment"))
        if revert_to is not None:
            self._store_version(entry, copy.deepcopy(revert_to), rollback=True)

    def _check_deadlines(self, now):
        if not self.enforce_deadlines:
            return
        for dep in list(self.deployments.values()):
            if dep["Status"] != "running":
                continue
            for name, state in dep["TaskGroups"].items():
                waiting_promotion = (
                    state["DesiredCanaries"] and not state["Promoted"] and dep["StatusDescription"].endswith("manual promotion")
                )
                done = state["HealthyAllocs"] >= state["DesiredTotal"] and (state["Promoted"] or not state["DesiredCanaries"])
                if waiting_promotion or done:
                    continue
                if now - dep["_progress"][name] > state["ProgressDeadline"] / NS:
                    self._fail(dep, "Failed due to progress deadline")
                    break

    def _public(self, dep):
        return {k: copy.deepcopy(v) for k, v in dep.items() if not k.startswith("_")}

    def job_deployments(self, request):
        self._block(request, "deployment")
        deps = [self._public(d) for d in self.deployments.values() if d["JobID"] == request.params["job"]]
        return self._reply(sorted(deps, key=lambda d: -d["CreateIndex"]), "deployment")

    def job_deployment(self, request):
        self._block(request, "deployment")
        deps = [d for d in self.deployments.values() if d["JobID"] == request.params["job"]]
        latest = max(deps, key=lambda d: d["CreateIndex"]) if deps else None
        return self._reply(self._public(latest) if latest else None, "deployment")

    def get_deployment(self, request):
        self._block(request, "deployment")
        dep = self.deployments.get(request.params["dep"])
        if dep is None:
            return self._error(404, "deployment not found")
        return self._reply(self._public(dep), "deployment")

    def deployment_allocations(self, request):
        self._block(request, "allocs")
        dep = self.deployments.get(request.params["dep"])
        if dep is None:
            return self._error(404, "deployment not found")
        return self._reply([_stub(a) for a in self._dep_allocs(dep)], "allocs")

    def job_allocations(self, request):
        self._block(request, "allocs")
        allocs = [_stub(a) for a in self.allocations.values() if a["JobID"] == request.params["job"]]
        if request.arg("all") not in ("true", "1"):
            latest = (self._entry(request) or {}).get("current") or {}
            allocs = [a for a in allocs if a["DesiredStatus"] == "run" or a["JobVersion"] == latest.get("Version")]
        return self._reply(sorted(allocs, key=lambda a: a["CreateIndex"]), "allocs")

    def job_evaluations(self, request):
        self._block(request, "evals")
        return self._reply([copy.deepcopy(e) for e in self.evaluations.values() if e["JobID"] == request.params["job"]], "evals")

    def promote(self, request):
        dep = self.deployments.get(request.params["dep"])
        if dep is None:
            return self._error(404, "deployment not found")
        if dep["Status"] != "running":
            return self._error(500, f"can't promote terminal deployment {dep['ID']!r}")
        body = request.body or {}
        groups = [n for n, s in dep["TaskGroups"].items() if s["DesiredCanaries"] and not s["Promoted"]]
        if not body.get("All"):
            groups = [g for g in groups if g in (body.get("Groups") or [])]
        if not groups:
            return self._error(500, "no canaries to promote")
        for name in groups:
            state = dep["TaskGroups"][name]
            healthy = [a for a in self._dep_allocs(dep, name, canary=True) if a["DeploymentStatus"]["Healthy"]]
            if len(healthy) < state["DesiredCanaries"]:
                return self._error(500, f'Task group "{name}" has {len(healthy)}/{state["DesiredCanaries"]} healthy allocations')
        self._promote(dep, groups)
        return self._update_response(dep)

    def _update_response(self, dep, reverted=None):
        evaluation = self._evaluate(self.jobs[(dep["Namespace"], dep["JobID"])]["current"], "deployment-watcher")
        out = {
            "EvalID": evaluation["ID"],
            "EvalCreateIndex": evaluation["CreateIndex"],
            "DeploymentModifyIndex": dep["ModifyIndex"],
            "LastIndex": self.index,
            "RequestTime": 0,
        }
        if reverted is not None:
            out["RevertedJobVersion"] = reverted
        return out

    def fail(self, request):
        dep = self.deployments.get(request.params["dep"])
        if dep is None:
            return self._error(404, "deployment not found")
        if dep["Status"] != "running":
            return self._error(500, f"can't fail terminal deployment {dep['ID']!r}")
        self._fail(dep, "Deployment marked as failed")
        return self._update_response(dep, reverted=None)

    def revert(self, request):
        body = request.body or {}
        entry = self._entry(request, body.get("JobID"))
        if entry is None:
            return self._error(404, "job not found")
        # Job.Revert in nomad/job_endpoint.go, in its order and words
        current = entry["current"]
        if body.get("JobVersion") == current["Version"]:
            return self._error(500, "can't revert to current version")
        target = next((v for v in entry["versions"] if v["Version"] == body.get("JobVersion")), None)
        if target is None:
            namespace = self.namespace_of(request)
            return self._error(500, f'job "{current["ID"]}" in namespace "{namespace}" at version {body.get("JobVersion")} not found')
        prior = body.get("EnforcePriorVersion")
        if prior is not None and prior != current["Version"]:
            return self._error(500, f"Current job has version {current['Version']}; enforcing version {prior}")
        if same_spec(current, {**target, "Stable": False}):  # registered through doRegister: an equal spec is no version
            return self._unchanged(current)
        job, evaluation = self._store_version(entry, copy.deepcopy(target))
        return self._job_write_response(evaluation, job["JobModifyIndex"])

    def stable(self, request):
        body = request.body or {}
        entry = self._entry(request, body.get("JobID"))
        if entry is None:
            return self._error(404, "job not found")
        for version in entry["versions"]:
            if version["Version"] == body.get("JobVersion"):
                version["Stable"] = bool(body.get("Stable"))
        return {"Index": self._next("jobs")}

    def deregister(self, request):
        entry = self._entry(request)
        if entry is None:
            return self._error(404, "job not found")
        job_id = request.params["job"]
        purge = request.arg("purge") in ("true", "1")
        if purge:
            self._stop_allocs(job_id, lambda a: True)
            for dep in self.deployments.values():
                if dep["JobID"] == job_id and dep["Status"] == "running":
                    dep.update(
                        Status="cancelled", StatusDescription="Cancelled because job is stopped", ModifyIndex=self._next("deployment")
                    )
            del self.jobs[(request.arg("namespace", "default"), job_id)]
            index = self._next("jobs")
            return {
                "EvalID": "",
                "EvalCreateIndex": 0,
                "JobModifyIndex": index,
                "KnownLeader": True,
                "LastContact": 0,
                "LastIndex": index,
                "NextToken": "",
                "RequestTime": 0,
            }
        job = copy.deepcopy(entry["current"])
        job["Stop"] = True
        job, evaluation = self._store_version(entry, job)
        return self._job_write_response(evaluation, job["JobModifyIndex"], warnings=False)


DEPLOY_SPEC = SPECS / "nomad" / "nomad-deploy-subset.json"  # hecate's subset of Nomad's API


def start_nomad(**auth):
    """A running emulator on hecate's Nomad API subset, answering fast (``token=`` or ``tokens=``)."""
    return NomadEmulator(str(DEPLOY_SPEC), delay=0.01, **auth).start()
