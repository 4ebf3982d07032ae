"""Hetzner Cloud DNS states: one RRSet (``rrset_present`` / ``rrset_absent``) and a whole zone's worth of
hecate's RRSets (``rrsets_managed``).

``rrsets_managed`` is the one the ``hecate.dns`` SLS uses: the neutral record-set engine
(``hecatelib.dns.converge``) through the Hetzner ``ZoneApi`` (``hecatelib.dns.hetzner``). For a zone it:

1. validates the whole ``hecate`` pillar (or the explicit ``rrsets`` list) and the token/endpoint
   configuration, before any request;
2. reads the zone's SOA serial (one request); when it has not moved since a converge on this minion found
   the zone as the same desired sets want it, that is all (a no-op); otherwise reads the zone once:
   ``ceil(N/50)`` requests for N RRSets;
3. with ``hecate:dns:wildcard``, lets one ``*`` set answer for the routes DNS would answer from it;
4. diffs on normalised values (IPv6 compressed, host names absolute, TXT chunks re-quoted...);
5. writes the minimum: one request per RRSet that differs (create, set_records, change_ttl, labels),
   deletes only sets labelled as hecate's (and only with ``prune``), never SOA or the apex NS set;
   when the rate limit will make them wait, the return's ``warnings`` say how long;
6. waits for all actions together, 50 per poll.

A change-protected set that differs is reported as a failure (the rest still converges). ``test=True``
shows the diff and sends no write; its result is ``None`` only when something would change.

.. code-block:: yaml

    hecate-dns-example.org:
      hetzner_dns.rrsets_managed:
        - name: example.org          # the zone; desired sets come from the hecate pillar

    legacy-mail:
      hetzner_dns.rrset_present:
        - name: "@"
        - zone: example.org
        - type: MX
        - values: ["10 mail.example.org"]
        - ttl: 3600
"""

import logging
import os

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

    hecate_fresh.drop_stale()
    from hecatelib import salt_state
    from hecatelib.dns import zones as dns_zones
    from hecatelib.dns.converge import Converged, converge
    from hecatelib.dns.hetzner import HetznerZones
except ImportError as exc:  # pragma: no cover - hecate's _utils not synced, or a library missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

log = logging.getLogger(__name__)

__virtualname__ = "hetzner_dns"


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return salt_state.virtual(__virtualname__, __salt__, "hetzner_dns.rrsets")


def _key(name, rtype):
    return f"{name} {rtype}"


def rrset_present(name, zone, type, values, ttl=None, labels=None, **kwargs):
    """Ensure one RRSet exists with exactly ``values`` (and ``ttl``; ``None`` is the zone default).

    name
        Relative name (``www``, ``@``, ``*``) or a name inside ``zone``.
    zone
        Zone name or id.
    type
        Record type.
    values
        List of values (presentation form; TXT text is chunked, host names are absolute).
    ttl
        Seconds, 60..2147483647, or ``None`` for the zone's default.
    labels
        Labels to ensure on the set (other labels are kept).

    .. code-block:: yaml

        www:
          hetzner_dns.rrset_present:
            - zone: example.org
            - type: A
            - values: [192.0.2.10]
            - ttl: 300
    """
    ret = salt_state.ret(name)
    zone_key = str(zone).strip()
    try:
        zone_name = dns_zones.to_ascii(zone_key)
        rel = dns_zones.relative_name(name, zone_name)
        rtype = str(type).upper()
        records = dns_zones.normalise_records(rtype, [values] if isinstance(values, str) else list(values or []))
        problems = dns_zones.rrset_problems(rel, rtype, records, ttl)
        if problems:
            raise ValueError("; ".join(problems))
        __salt__["hetzner_dns.check_config"]()
    except (ValueError, CommandExecutionError, SaltInvocationError) as exc:
        return salt_state.ret(name, False, comment=f"{name} {type}: {exc}")
    labels = {str(k): str(v) for k, v in dict(labels or {}).items()}
    try:
        current = __salt__["hetzner_dns.rrset"](zone_name, rel, rtype)
    except CommandExecutionError as exc:
        return salt_state.ret(name, False, comment=str(exc))
    label = _key(dns_zones.absolute_name(rel, zone_name), rtype)
    if current is None:
        ret["changes"] = {label: {"old": None, "new": {"records": records, "ttl": ttl}}}
        if salt_state.test(__opts__):
            return salt_state.pending(ret, ret["changes"], f"{label} would be created")
        try:
            result = __salt__["hetzner_dns.create_rrset"](zone_name, rel, rtype, records, ttl=ttl, labels=labels or None)
        except CommandExecutionError as exc:
            return salt_state.ret(name, False, comment=str(exc))
        return {**ret, "comment": f"{label} created" + (" (confirmed by re-read)" if result.get("reread") else "")}

    old_records = dns_zones.actual_records(current, zone_name)
    diff = {}
    if old_records != records:
        diff["records"] = {"old": old_records, "new": records}
    if current.get("ttl") != ttl:
        diff["ttl"] = {"old": current.get("ttl"), "new": ttl}
    have_labels = current.get("labels") or {}
    if any(have_labels.get(k) != v for k, v in labels.items()):
        diff["labels"] = {"old": have_labels, "new": {**have_labels, **labels}}
    if not diff:
        return {**ret, "comment": f"{label} is in the desired state"}
    if (current.get("protection") or {}).get("change") and ("records" in diff or "ttl" in diff):
        return salt_state.ret(name, False, {}, f"{label} is change-protected; it differs from the desired state: {diff}")
    if salt_state.test(__opts__):
        return salt_state.pending(ret, {label: diff}, f"{label} would be updated")
    try:
        actions = []
        if "records" in diff:
            actions.append(__salt__["hetzner_dns.set_records"](zone_name, rel, rtype, records, wait=False).get("action"))
        if "ttl" in diff:
            actions.append(__salt__["hetzner_dns.change_ttl"](zone_name, rel, rtype, ttl, wait=False).get("action"))
        if "labels" in diff:
            __salt__["hetzner_dns.set_labels"](zone_name, rel, rtype, diff["labels"]["new"])
        failed = _wait(actions)
    except CommandExecutionError as exc:
        return salt_state.ret(name, False, comment=str(exc))
    if failed:
        return salt_state.ret(name, False, {label: diff}, "; ".join(failed))
    return {**ret, "changes": {label: diff}, "comment": f"{label} updated"}


def rrset_absent(name, zone, type, **kwargs):
    """Ensure an RRSet does not exist. SOA and the apex NS set are never deleted.

    .. code-block:: yaml

        old-host:
          hetzner_dns.rrset_absent:
            - zone: example.org
            - type: A
    """
    try:
        zone_name = dns_zones.to_ascii(str(zone))
        rel = dns_zones.relative_name(name, zone_name)
        rtype = str(type).upper()
        if rtype not in dns_zones.TYPES:
            raise ValueError(f"unknown record type {type!r}")
        if dns_zones.is_providers({"name": rel, "type": rtype}):
            raise ValueError("SOA and the apex NS set belong to Hetzner; hecate never deletes them")
        __salt__["hetzner_dns.check_config"]()
        current = __salt__["hetzner_dns.rrset"](zone_name, rel, rtype)
    except (ValueError, CommandExecutionError, SaltInvocationError) as exc:
        return salt_state.ret(name, False, comment=f"{name} {type}: {exc}")
    label = _key(dns_zones.absolute_name(rel, zone_name), rtype)
    if current is None:
        return salt_state.ret(name, True, comment=f"{label} is already absent")
    if (current.get("protection") or {}).get("change"):
        return salt_state.ret(name, False, comment=f"{label} is change-protected; not deleting it")
    changes = {label: {"old": {"records": dns_zones.actual_records(current, zone_name), "ttl": current.get("ttl")}, "new": None}}
    if salt_state.test(__opts__):
        return salt_state.ret(name, None, changes, f"{label} would be deleted")
    try:
        failed = _wait([__salt__["hetzner_dns.delete_rrset"](zone_name, rel, rtype, wait=False).get("action")])
    except CommandExecutionError as exc:
        return salt_state.ret(name, False, comment=str(exc))
    if failed:
        return salt_state.ret(name, False, changes, "; ".join(failed))
    return salt_state.ret(name, True, changes, f"{label} deleted")


def _wait(actions):
    """Wait for all running actions together; return failure texts of actions that ended in error."""
    ids = [a["id"] for a in actions if a and a.get("status") == "running"]
    final = {a["id"]: a for a in actions if a}
    if ids:
        final.update({a["id"]: a for a in __salt__["hetzner_dns.wait_actions"](ids)})
    return [
        f"action {a['id']} ({a.get('command')}) failed: {(a.get('error') or {}).get('message', a.get('error'))}"
        for a in final.values()
        if a.get("status") == "error"
    ]


def _desired_from_pillar(zone, targets):
    """Validate the whole ``hecate`` pillar tree, compile this zone's desired RRSets.
    Returns ``(desired, labels, prune, wildcard, problems)``."""
    try:
        tree = salt_state.tree(__pillar__, __opts__, __context__)
    except salt_state.PillarError as exc:
        return None, None, None, False, exc.errors
    if not dns_zones.enabled(tree):
        return None, None, None, False, [("hecate:dns", "not configured (no zone): nothing to converge")]
    if zone not in dns_zones.managed_zones(tree["dns"]):
        return None, None, None, False, [("hecate:dns:zones", f"{zone} is not a managed zone ({', '.join(tree['dns']['zones'])})")]
    report = dns_zones.Report("hecate")
    compiled = dns_zones.compile_zones(tree, targets=targets, report=report)
    if report.errors:
        return None, None, None, False, report.errors
    return compiled[zone], dns_zones.owner_labels(tree), bool(tree["dns"].get("prune")), bool(tree["dns"].get("wildcard")), []


def rrsets_managed(name, rrsets=None, targets=None, prune=None, owner=None, awaiting_targets=False, **kwargs):
    """Converge hecate's RRSets in zone ``name``: read once, diff, write the minimum, wait in batches.

    name
        The zone (e.g. ``example.org``).
    rrsets
        Explicit desired sets ``[{name, type, values, ttl}]``. When omitted (the usual case) they are
        compiled from the validated ``hecate`` pillar: every route domain in the zone gets A/AAAA to the
        edge targets (or its ``dns: {cname}``), plus ``hecate:dns:records``.
    targets
        ``{ipv4: [...], ipv6: [...]}`` overriding ``hecate:dns:targets`` (terraform outputs).
    prune
        Delete RRSets labelled as this deployment's (``managed-by: hecate``, ``hecate-owner: <owner>``) that
        are no longer desired. Default: ``hecate:dns:prune`` (false). Unlabelled sets, SOA and the apex NS
        set are never deleted.
    owner
        The ``hecate-owner`` label value. Default: ``hecate:dns:owner``, else ``hecate:global:environment``.
    awaiting_targets
        The edge addresses come from a terraform apply that has not happened yet (``hecate.dns`` sets it
        when terraform has no outputs): with ``test=True`` the missing addresses are a pending change,
        not an error, so a dry run from nothing shows the whole plan.

    .. code-block:: yaml

        hecate-dns-example.org:
          hetzner_dns.rrsets_managed:
            - name: example.org
    """
    try:
        zone = dns_zones.to_ascii(str(name))
    except ValueError as exc:
        return salt_state.ret(name, False, comment=f"zone {exc}")
    wildcard = False
    if rrsets is None:
        desired, labels, pillar_prune, wildcard, problems = _desired_from_pillar(zone, targets)
        if owner:
            labels = dns_zones.owner_labels(owner=owner)
    else:
        desired, problems = dns_zones.desired_from_list(rrsets, zone)
        labels, pillar_prune = dns_zones.owner_labels(__pillar__.get("hecate") or {}, owner=owner), False
    if problems and awaiting_targets and salt_state.test(__opts__) and all(p == "hecate:dns:targets" for p, _ in problems):
        return salt_state.pending(
            salt_state.ret(name),
            {"zone": zone, "records": "created once terraform has created the edge servers (no addresses yet)"},
            "would create the route records with the edge addresses terraform outputs after its apply",
        )
    if problems:
        lines = "\n".join(f"  {path}: {reason}" for path, reason in problems)
        return salt_state.ret(name, False, comment=f"refusing to touch zone {zone}; invalid input:\n{lines}")
    prune = pillar_prune if prune is None else bool(prune)
    seen = Converged(os.path.join(__opts__["cachedir"], "hecate", "dns-converged.json"))
    errors = (CommandExecutionError, SaltInvocationError)
    outcome = converge(HetznerZones(__salt__), zone, desired, labels, prune, salt_state.test(__opts__), errors, seen, wildcard)
    ret = salt_state.ret(name, outcome["result"], outcome["changes"], outcome["comment"])
    if outcome.get("warnings"):
        ret["warnings"] = outcome["warnings"]
    return ret
