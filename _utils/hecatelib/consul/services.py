"""Services Nomad does not run, registered in Consul so that routes and templates find them by name:
the seed's ``register-external-services.sh`` as pillar ``hecate:consul:external_services``.

Pure: the schema of one service, and :func:`compile_services` / :func:`plan`, which the
``hecate_consul`` module and state share. Every service hecate registers carries two ``Meta`` keys:
``hecate-managed`` (pruning only ever touches services with it) and ``hecate-spec`` (a digest of the
definition, so a re-run compares one string per service instead of reading checks back).

.. code-block:: yaml

    hecate:
      consul:
        external_services:
          - id: wazuh-master
            name: wazuh-registration
            tags: [wazuh, security, external]
            address: 100.88.163.85
            port: 1515
            check: {tcp: "100.88.163.85:1515", interval: 30s, timeout: 5s}
"""

import hashlib
import json
import re
from urllib.parse import urlsplit

from hecatelib.spec import (
    LINK_LOCAL,
    Duration,
    Field,
    Hostname,
    Int,
    ListOf,
    Map,
    MapOf,
    Str,
    index,
    is_link_local,
    key,
    parse_hostport,
    quote,
)

__all__ = ["MARKER", "RESERVED", "SERVICES", "SPEC_META", "compile_services", "plan"]

MARKER = "hecate-managed"
SPEC_META = "hecate-spec"
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# agent/structs ValidateServiceMetadata: keys of at most 128 of [A-Za-z0-9_-], not "consul-"-prefixed
_META_KEY = r"^(?!consul-)(?!hecate-)[A-Za-z0-9_-]{1,128}$"
_TAG = r"^[A-Za-z0-9][A-Za-z0-9_.:=/-]{0,127}$"
# Names an external service may not take: an instance registered under one of them joins the answers for the
# stack's own service (Consul indexes service names lower-cased: servicesTableSchema, index "service",
# StringFieldIndex{Field: "ServiceName", Lowercase: true} in agent/consul/state/catalog_schema.go), so Caddy's forward_auth could ask
# another server who the user is, authentik could hand its database password to another PostgreSQL, or the
# deploy could send its Nomad or Vault token elsewhere. The services hecate's Nomad jobs register
# (salt/hecate/nomad/*.nomad.j2; tests/unit/test_consul_services.py renders every job and checks this list
# covers them), and the cluster's own (nomad.service.consul is hecate:nomad:address's default).
RESERVED = frozenset(
    {
        "authentik-server", "authentik-worker", "helen-bridge", "postgres-authentik", "redis-authentik",
        "caddy", "nginx-stream", "coturn",
        "consul", "nomad", "nomad-client", "vault",
    }
)  # fmt: skip

CHECK = Map(
    {
        "tcp": Str(pattern=r"^[A-Za-z0-9.\[\]:-]+:[0-9]{1,5}$", what="host:port"),
        "http": Str(pattern=r"^https?://[A-Za-z0-9.\[\]:_-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%?&=+-]*)?$", what="http(s) URL"),
        "interval": Field(Duration(), default="30s"),
        "timeout": Field(Duration(), default="5s"),
        "tls_skip_verify": Field(Str(choices=["true", "false"]), default="false"),
    }
)

SERVICE = Map(
    {
        "id": Field(Str(pattern=_ID, what="service ID"), required=True),
        "name": Field(Str(pattern=_ID, what="service name"), required=True),
        "address": Field(Hostname(ip=True), required=True),
        "port": Field(Int(1, 65535), required=True),
        "tags": ListOf(Str(pattern=_TAG, what="tag"), unique=True),
        "meta": MapOf(Str(max_len=512), key_spec=Str(pattern=_META_KEY, what="meta key (no consul-/hecate- prefix)")),
        "check": CHECK,
    }
)


class ServiceList(ListOf):
    """The list, plus what spans its items: unique IDs, exactly one kind of check per service."""

    def __init__(self):
        super().__init__(SERVICE)

    def __call__(self, value, path, report):
        out = super().__call__(value, path, report)
        seen = {}
        for i, service in enumerate(out if isinstance(out, list) else []):
            if not isinstance(service, dict):
                continue
            where = index(path, i)
            if service.get("id") in seen:
                report.error(key(where, "id"), f"{service['id']!r} is also external_services[{seen[service['id']]}]")
            seen.setdefault(service.get("id"), i)
            name = service.get("name")
            if isinstance(name, str) and name.lower() in RESERVED:
                report.error(
                    key(where, "name"),
                    f"{name!r} is a name of the stack's own services ({', '.join(sorted(RESERVED))}): an instance "
                    "registered under it would receive their traffic (docs/security.md)",
                )
            address = service.get("address")
            if isinstance(address, str) and is_link_local(address):
                report.error(key(where, "address"), f"{quote(address)} {LINK_LOCAL}")
            check = service.get("check")
            if check is not None and ("tcp" in check) == ("http" in check):
                report.error(key(where, "check"), "give exactly one of tcp or http")
            elif isinstance(check, dict) and isinstance(address, str):
                _check_probes_its_service(check, address, key(where, "check"), report)
        return out


def _check_probes_its_service(check, address, where, report):
    """A check probes the service it registers: its host is the service's address. Consul's agent dials any
    URL it is given and keeps the answer as the check's output, readable through Consul's API, so a check
    aimed elsewhere would turn pillar into a way to read from inside the network (server-side request forgery)."""
    kind = "tcp" if "tcp" in check else "http"
    target = check.get(kind)
    if not isinstance(target, str):
        return
    if kind == "tcp":
        host = (parse_hostport(target) or (None, None))[0]
    else:
        try:
            host = urlsplit(target).hostname
        except ValueError:
            host = None
    if host is None or host.strip("[]").lower() != address.strip("[]").lower():
        reason = f"probes {quote(host or target)}, not the service's address {quote(address)}"
        report.error(key(where, kind), f"{reason}: a check probes the service it registers (Consul fetches whatever it names)")


SERVICES = ServiceList()


def _definition(service):
    """One pillar service -> Consul's agent service definition (api.AgentServiceRegistration)."""
    body = {"ID": service["id"], "Name": service["name"], "Address": service["address"], "Port": int(service["port"])}
    body["Tags"] = list(service.get("tags") or [])
    body["Meta"] = {str(k): str(v) for k, v in (service.get("meta") or {}).items()}
    check = service.get("check")
    if check:
        kind = "TCP" if "tcp" in check else "HTTP"
        body["Check"] = {
            "Name": f"{service['id']}-{kind.lower()}",
            kind: check["tcp" if kind == "TCP" else "http"],
            "Interval": check.get("interval") or "30s",
            "Timeout": check.get("timeout") or "5s",
        }
        if kind == "HTTP" and check.get("tls_skip_verify") == "true":
            body["Check"]["TLSSkipVerify"] = True
    return body


def digest(body):
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def compile_services(services):
    """``[service, ...]`` (validated) -> ``{id: registration body}`` with the two hecate Meta keys."""
    out = {}
    for service in services or []:
        body = _definition(service)
        body["Meta"].update({MARKER: "true", SPEC_META: digest(body)})
        out[body["ID"]] = body
    return out


def managed(registered):
    """The agent's services (``GET /v1/agent/services``: id -> service) that hecate registered."""
    return {sid: svc for sid, svc in (registered or {}).items() if (svc.get("Meta") or {}).get(MARKER) == "true"}


def plan(desired, registered, prune=True):
    """What to write: ``register`` (missing, or registered with another definition), ``deregister``
    (hecate's, no longer in pillar; only with ``prune``), ``unchanged``. A service of the same ID that
    hecate did not register is ``adopt``-ed only by registering it (reported as such)."""
    ours = managed(registered)
    out = {"register": [], "adopt": [], "deregister": [], "unchanged": []}
    for sid, body in sorted(desired.items()):
        current = (registered or {}).get(sid)
        if current is None:
            out["register"].append(sid)
        elif sid not in ours:
            out["adopt"].append(sid)
        elif (current.get("Meta") or {}).get(SPEC_META) != body["Meta"][SPEC_META]:
            out["register"].append(sid)
        else:
            out["unchanged"].append(sid)
    if prune:
        out["deregister"] = sorted(sid for sid in ours if sid not in desired)
    return out


def summary(body):
    """A short, secret-free line for ``changes``: name, address:port, check."""
    check = body.get("Check") or {}
    probe = check.get("TCP") or check.get("HTTP") or "none"
    text = f"{body['Name']} at {body['Address']}:{body['Port']}, check {probe}"
    return re.sub(r"//[^/@]*@", "//", text)  # never echo credentials in a check URL
