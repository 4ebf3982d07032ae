"""Converge one zone's record sets through any DNS provider: read once, diff, write the minimum, settle.

The record-set engine is neutral: names and values (``hecatelib.dns.zones``: normalised, compiled from the
pillar, planned) know no API. A provider brings a :class:`ZoneApi`: read a zone's record sets, create, set
records, change the TTL, set labels, delete, and settle what it sent (wait for asynchronous actions, all at
once). hecate owns the record sets that carry its labels (``managed-by: hecate``, ``hecate-owner``): only
those are pruned, never what the provider itself owns in a zone (SOA, the apex NS set).

``converge`` is what a provider's ``rrsets_managed`` state calls; it answers Salt's ``{result, changes,
comment}`` (without ``name``). ``test=True`` sends no write and its result is ``None`` only when something
would change.
"""

from hecatelib import spec
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


def converge(api, zone, desired, labels, prune=False, test=False, errors=(Exception,)):
    """Take ``zone`` to ``desired`` (``{(name, type): {"records", "ttl"}}``) through ``api``. ``errors``: what
    a provider call may raise that is reported, not raised (Salt's errors, from the state)."""
    try:
        api.check()
        actual = api.rrsets(zone)
    except errors as exc:
        return {"result": False, "changes": {}, "comment": f"zone {zone}: {exc}"}
    plan = dns_zones.plan(desired, actual, zone, labels, prune=prune, reserved=api.reserved)
    changes = dns_zones.describe(plan, zone)
    writes = dns_zones.write_count(plan)
    failures = [f"{_key(item, zone)}: {item['reason']}" for item in plan["failures"]]
    summary = f"{len(plan['create'])} to create, {dns_zones.updates_line(plan)}{len(plan['delete'])} to delete"
    summary += f", {plan['unchanged']} unchanged"
    if test:
        comment = f"zone {zone}: " + (f"would write: {summary}" if writes else "nothing to write" if failures else "in the desired state")
        if failures:
            return {"result": False, "changes": changes, "comment": comment + "\nwould fail:\n  " + "\n  ".join(failures)}
        return {"result": None if writes else True, "changes": changes, "comment": comment}
    if not writes:
        if failures:
            return {"result": False, "changes": {}, "comment": f"zone {zone}: nothing written\nfailures:\n  " + "\n  ".join(failures)}
        return {"result": True, "changes": {}, "comment": f"zone {zone}: in the desired state ({plan['unchanged']} record sets)"}
    applied, problems = apply(api, zone, plan, errors)
    failures.extend(problems)
    applied_changes = {k: v for k, v in changes.items() if k in applied}
    comment = f"zone {zone}: {summary}"
    if failures:
        return {"result": False, "changes": applied_changes, "comment": comment + "\nfailures:\n  " + "\n  ".join(failures)}
    return {"result": True, "changes": applied_changes, "comment": comment}


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
