"""Converge one zone's record sets through any DNS provider: read once, diff, write the minimum, settle.

The record-set engine is neutral: names and values (``hecatelib.dns.zones``: normalised, compiled from the
pillar, planned) know no API. A provider brings a :class:`ZoneApi`: read a zone's record sets, create, set
records, change the TTL, set labels, delete, and settle what it sent (wait for asynchronous actions, all at
once). hecate owns the record sets that carry its labels (``managed-by: hecate``, ``hecate-owner``): only
those are pruned, never what the provider itself owns in a zone (SOA, the apex NS set).

``converge`` is what a provider's ``rrsets_managed`` state calls; it answers Salt's ``{result, changes,
comment}`` (without ``name``), plus ``warnings`` when the provider's rate limit will make the writes wait.
``test=True`` sends no write and its result is ``None`` only when something would change.

A no-op costs one cheap read when the provider can say whether a zone changed (:meth:`ZoneApi.version`, the
Hetzner SOA serial): :class:`Converged` keeps, on the minion, the version at which a converge last found the
zone as desired, keyed by zone and a digest of everything the plan depends on (the desired sets, labels,
prune, wildcard); the same digest at the same version is the same plan (nothing to write), so the zone is
read in full only when it moved or the pillar did.
"""

import hashlib
import json
import os

from hecatelib import paths, spec
from hecatelib.dns import zones as dns_zones


class ZoneApi:
    """What the engine needs of a provider, for one zone (an interface: providers subclass it).

    Writes return a *pending* handle (an asynchronous action, or None when the write is already done);
    :meth:`settle` waits for many at once and answers, per handle, None (done) or why it failed. Errors a
    provider raises are Salt's ``CommandExecutionError`` / ``SaltInvocationError``."""

    def reserved(self, rrset):
        """A record set the provider owns in every zone: never written, never pruned."""
        return dns_zones.is_providers(rrset)

    def check(self):
        """Refuse before any request when the provider is not configured (token, endpoint)."""

    def version(self, zone):
        """A value that moves whenever the zone's record sets change, read in one cheap request (JSON-able),
        or None when the provider cannot tell: then every converge reads the whole zone."""
        return None

    def pacing(self, writes):
        """A line saying how long the provider's rate limit will make ``writes`` writes (and settling them)
        wait, from what its last answers said; None when they fit."""
        return None

    def rrsets(self, zone):
        raise NotImplementedError

    def create(self, zone, name, rtype, records, ttl, labels):
        raise NotImplementedError

    def set_records(self, zone, name, rtype, records):
        raise NotImplementedError

    def change_ttl(self, zone, name, rtype, ttl):
        raise NotImplementedError

    def set_labels(self, zone, name, rtype, labels):
        raise NotImplementedError

    def delete(self, zone, name, rtype):
        raise NotImplementedError

    def settle(self, pending):
        """``[handle] -> [None or failure text]`` once every asynchronous write ended."""
        return [None for _ in pending]


class Converged:
    """What converges saw on this minion: ``{zone: {"digest", "version"}}`` in one JSON file (0600), the
    version at which the zone last matched the desired sets of that digest."""

    def __init__(self, path):
        self.path = path

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                seen = json.load(handle)
            return seen if isinstance(seen, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, zone):
        return self._load().get(zone)

    def put(self, zone, entry):
        seen = self._load()
        if seen.get(zone) == entry:
            return
        seen[zone] = entry
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        paths.write_private(self.path, json.dumps(seen, sort_keys=True))


def digest(desired, labels, prune, wildcard):
    """What a plan depends on besides the zone itself, as one value."""
    sets = sorted((name, rtype, v["records"], v["ttl"], bool(v.get("shared"))) for (name, rtype), v in desired.items())
    return hashlib.sha256(json.dumps([sets, labels, bool(prune), bool(wildcard)], sort_keys=True).encode()).hexdigest()


def converge(api, zone, desired, labels, prune=False, test=False, errors=(Exception,), seen=None, wildcard=False):
    """Take ``zone`` to ``desired`` (``{(name, type): {"records", "ttl"}}``) through ``api``. ``errors``: what
    a provider call may raise that is reported, not raised (Salt's errors, from the state). ``seen``: a
    :class:`Converged` (a no-op reads only the zone's version); ``wildcard``: fold the routes a ``*`` set
    answers into it (:func:`hecatelib.dns.zones.fold_wildcard`)."""
    key = digest(desired, labels, prune, wildcard)
    try:
        api.check()
        version = api.version(zone) if seen is not None else None
        if version is not None and seen.get(zone) == {"digest": key, "version": version}:
            return {"result": True, "changes": {}, "comment": f"zone {zone}: in the desired state (unchanged since it was read in full)"}
        actual = api.rrsets(zone)
    except errors as exc:
        return {"result": False, "changes": {}, "comment": f"zone {zone}: {exc}"}
    folded = []
    if wildcard:
        desired, folded = dns_zones.fold_wildcard(desired, actual, labels)
    plan = dns_zones.plan(desired, actual, zone, labels, prune=prune, reserved=api.reserved)
    changes = dns_zones.describe(plan, zone)
    writes = dns_zones.write_count(plan)
    failures = [f"{_key(item, zone)}: {item['reason']}" for item in plan["failures"]]
    summary = f"{len(plan['create'])} to create, {dns_zones.updates_line(plan)}{len(plan['delete'])} to delete"
    summary += f", {plan['unchanged']} unchanged"
    if folded:
        summary += f"; {len(folded)} routes answered by {dns_zones.WILDCARD}.{zone}"
    if not writes and not failures and version is not None:
        seen.put(zone, {"digest": key, "version": version})
    pacing = api.pacing(writes) if writes else None
    out = {"warnings": [f"zone {zone}: {pacing}"]} if pacing else {}
    if test:
        comment = f"zone {zone}: " + (f"would write: {summary}" if writes else "nothing to write" if failures else "in the desired state")
        if failures:
            return {**out, "result": False, "changes": changes, "comment": comment + "\nwould fail:\n  " + "\n  ".join(failures)}
        return {**out, "result": None if writes else True, "changes": changes, "comment": comment}
    if not writes:
        if failures:
            return {"result": False, "changes": {}, "comment": f"zone {zone}: nothing written\nfailures:\n  " + "\n  ".join(failures)}
        return {"result": True, "changes": {}, "comment": f"zone {zone}: in the desired state ({plan['unchanged']} record sets)"}
    applied, problems = apply(api, zone, plan, errors)
    failures.extend(problems)
    applied_changes = {k: v for k, v in changes.items() if k in applied}
    comment = f"zone {zone}: {summary}" + (f" ({pacing})" if pacing else "")
    if failures:
        return {**out, "result": False, "changes": applied_changes, "comment": comment + "\nfailures:\n  " + "\n  ".join(failures)}
    return {**out, "result": True, "changes": applied_changes, "comment": comment}


def _key(item, zone):
    return f"{spec.shown(dns_zones.absolute_name(item['name'], zone))} {item['type']}"


def apply(api, zone, plan, errors=(Exception,)):
    """Send the plan's writes, settle them together. Returns ``(applied change keys, failure lines)``.

    Deletes that make room for a desired set (A -> CNAME) go first and are settled first; everything else is
    sent in one go and settled together."""
    applied, problems, pending = set(), [], []  # pending: (change key, handle)

    def send(item, write, *args):
        try:
            pending.append((_key(item, zone), getattr(api, write)(zone, item["name"], item["type"], *args)))
        except errors as exc:
            problems.append(f"{_key(item, zone)}: {write}: {exc}")

    def settle():
        try:
            outcomes = api.settle([handle for _, handle in pending])
        except errors as exc:
            problems.append(str(exc))
            pending.clear()
            return
        for (key, _), failed in zip(pending, outcomes, strict=True):
            (problems.append(f"{key}: {failed}") if failed else applied.add(key))
        pending.clear()

    replacing = [d for d in plan["delete"] if d["why"].startswith("replaced by")]
    for item in replacing:
        send(item, "delete")
    if replacing:
        settle()
    for item in plan["delete"]:
        if item not in replacing:
            send(item, "delete")
    for item in plan["create"]:
        send(item, "create", item["records"], item["ttl"], plan["labels"])
    for item in plan["set_records"]:
        send(item, "set_records", item["new"])
    for item in plan["change_ttl"]:
        send(item, "change_ttl", item["new"])
    for item in plan["set_labels"]:
        send(item, "set_labels", item["new"])
    settle()
    failed = {p.split(":", 1)[0] for p in problems}  # a change is applied only when every write for it went through
    return applied - failed, problems
