"""Consul's agent service catalog for the services Nomad does not run (pillar
``hecate:consul:external_services``; the seed's ``register-external-services.sh``).

Named ``hecate_consul`` so it never shadows Salt's own ``consul`` module. The connection is pillar
``hecate:consul`` (``address``, ``token``, ``verify``, ``datacenter``) over the master's
``hecate_ext_pillar:consul``, as for hecate's deploy lock; the token is sent as ``X-Consul-Token``,
never an argument, never logged. Only services whose ``Meta`` has ``hecate-managed: "true"`` are ever
deregistered by hecate.
"""

import logging

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

    hecate_fresh.drop_stale()
    from hecatelib import api, paths, schema
    from hecatelib.consul import client as consul_client
    from hecatelib.consul import services as consul_services
    from hecatelib.consul import settings as consul_settings
    from hecatelib.spec import PillarError

    IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - hecate's utils ship with the module
    IMPORT_ERROR = str(exc)

try:
    import consul  # noqa: F401 - py-consul

    HAS_CONSUL = True
except ImportError:  # pragma: no cover
    HAS_CONSUL = False

log = logging.getLogger(__name__)

__virtualname__ = "hecate_consul"


def __virtual__():
    if IMPORT_ERROR:
        return False, f"hecate_consul: hecate's helpers are not importable ({IMPORT_ERROR}); sync _utils"
    if not HAS_CONSUL:
        return False, "hecate_consul: py-consul is not installed (pip install py-consul)"
    return __virtualname__


def _tree():
    raw = __salt__["config.get"]("hecate", None)
    if raw is None:  # configuration, not the call: CommandExecutionError is one line on salt-call, no usage block
        raise CommandExecutionError("pillar has no 'hecate' tree")
    try:
        return schema.validate(raw, root_prefix=paths.prefix(__opts__))
    except PillarError as exc:
        raise CommandExecutionError(str(exc)) from None


def _client(tree):
    settings = consul_settings(tree, __opts__)
    if settings.get("token"):
        api.check_token(settings["token"], "hecate:consul:token")
    try:
        return consul_client(settings)
    except (ValueError, TypeError) as exc:
        raise CommandExecutionError(f"hecate:consul: {exc}") from None


def _call(client, what, fn):
    import consul.exceptions
    import requests

    try:
        return fn()
    except (consul.exceptions.ConsulException, requests.exceptions.RequestException) as exc:
        text = api.redact(str(exc)[:300], [getattr(client, "token", None)])
        raise CommandExecutionError(f"Consul {what} failed: {type(exc).__name__}: {text}") from None


def desired():
    """The registrations the pillar asks for: ``{id: Consul service definition}`` (with hecate's Meta).

    CLI Example:

    .. code-block:: bash

        salt-call hecate_consul.desired
    """
    return consul_services.compile_services((_tree().get("consul") or {}).get("external_services"))


def services(managed_only=True):
    """The local agent's services (``GET /v1/agent/services``): by default only the ones hecate registered.

    CLI Example:

    .. code-block:: bash

        salt-call hecate_consul.services
        salt-call hecate_consul.services managed_only=False
    """
    client = _client(_tree())
    found = _call(client, "listing services", client.agent.services) or {}
    return consul_services.managed(found) if managed_only else found


def register(service_id):
    """Register one service of ``hecate:consul:external_services`` by its ID
    (``PUT /v1/agent/service/register?replace-existing-checks=true``).

    CLI Example:

    .. code-block:: bash

        salt-call hecate_consul.register jenkins-master
    """
    tree = _tree()
    wanted = consul_services.compile_services((tree.get("consul") or {}).get("external_services"))
    if service_id not in wanted:
        raise SaltInvocationError(f"{service_id!r} is not in hecate:consul:external_services ({', '.join(sorted(wanted)) or 'none'})")
    return _register(_client(tree), wanted[service_id])


def _register(client, body):
    check = dict(body["Check"]) if body.get("Check") else None
    return _call(
        client,
        f"registering {body['ID']}",
        lambda: client.agent.service.register(
            body["Name"],
            service_id=body["ID"],
            address=body["Address"],
            port=body["Port"],
            tags=body["Tags"],
            meta=body["Meta"],
            check=check,
            replace_existing_checks=True,  # the checks are the pillar's, none left over from an older one
        ),
    )


def deregister(service_id):
    """Deregister a service hecate registered (``PUT /v1/agent/service/deregister/:id``); refuses one
    without hecate's ``hecate-managed`` Meta.

    CLI Example:

    .. code-block:: bash

        salt-call hecate_consul.deregister jenkins-master
    """
    client = _client(_tree())
    found = _call(client, "listing services", client.agent.services) or {}
    if service_id not in consul_services.managed(found):
        raise CommandExecutionError(f"{service_id!r} was not registered by hecate (no hecate-managed meta): left alone")
    return _deregister(client, service_id)


def _deregister(client, service_id):
    return _call(client, f"deregistering {service_id}", lambda: client.agent.service.deregister(service_id))


def converge(test=False, prune=True):
    """Read the agent's services once, then register what is missing or differs and (``prune``)
    deregister hecate's services that the pillar no longer has. Returns ``{plan, changes}``; with
    ``test`` nothing is written.

    CLI Example:

    .. code-block:: bash

        salt-call hecate_consul.converge test=True
    """
    tree = _tree()
    wanted = consul_services.compile_services((tree.get("consul") or {}).get("external_services"))
    client = _client(tree)
    registered = _call(client, "listing services", client.agent.services) or {}
    plan = consul_services.plan(wanted, registered, prune=prune)
    changes = {}
    for sid in plan["register"] + plan["adopt"]:
        verb = "adopted" if sid in plan["adopt"] else ("updated" if sid in registered else "registered")
        changes[sid] = {"new": consul_services.summary(wanted[sid]), "action": verb}
        if sid in registered:
            changes[sid]["old"] = consul_services.summary(_as_body(registered[sid]))
    for sid in plan["deregister"]:
        changes[sid] = {"old": consul_services.summary(_as_body(registered[sid])), "action": "deregistered"}
    if not test:
        for sid in plan["register"] + plan["adopt"]:
            _register(client, wanted[sid])
        for sid in plan["deregister"]:
            _deregister(client, sid)
    return {"plan": plan, "changes": changes}


def _as_body(service):
    """An agent service (``GET /v1/agent/services``) in the shape of a definition, for summaries."""
    return {"Name": service.get("Service"), "Address": service.get("Address"), "Port": service.get("Port")}
