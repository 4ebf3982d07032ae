"""Hetzner Cloud DNS as a provider of the record-set engine (``hecatelib.dns.converge``): the Cloud API's
endpoint and page size, and :class:`HetznerZones`, the engine's ``ZoneApi`` over the ``hetzner_dns``
execution module (every write answers an action; :meth:`HetznerZones.settle` waits for all of them in one
batch of polls; :meth:`HetznerZones.version` is the zone's SOA serial, one request)."""

import math
import time

from hecatelib.dns.converge import ZoneApi

API_ENDPOINT = "https://api.hetzner.cloud/v1"
PAGE_SIZE = 50  # the Cloud API's maximum per_page


def read_requests(count):
    """Requests to read a zone of ``count`` RRSets: ``ceil(count / 50)``, at least one."""
    return max(1, math.ceil(count / PAGE_SIZE))


def pacing_line(writes, limit, remaining, reset, now):
    """What ``writes`` writes cost against the Cloud API's rate limit as its last answer left it
    (``RateLimit-Limit/Remaining/Reset``): None when they fit in what remains, else how long the run will
    wait. The bucket refills gradually: one request every ``(Reset - now) / (Limit - Remaining)`` seconds
    (``Limit`` an hour when it is full)."""
    needed = writes + read_requests(writes)  # each write, and polling its action (50 a poll)
    if not limit or remaining is None or needed <= remaining:
        return None
    every = (reset - now) / (limit - remaining) if reset and reset > now and limit > remaining else 3600 / limit
    wait = (needed - remaining) * every
    shown = f"{wait / 60:.0f} min" if wait >= 120 else f"{wait:.0f} s"
    return (
        f"pacing: {writes} writes need about {needed} requests and the Cloud API's rate limit has {remaining} of {limit} left: "
        f"about {shown} of waiting (hecate:dns:wildcard lets routes share one set)"
    )


def _action(result):
    return result.get("action") if isinstance(result, dict) else None


class HetznerZones(ZoneApi):
    """``HetznerZones(__salt__)``: the engine's writes as ``hetzner_dns`` calls, none waiting on its own."""

    def __init__(self, functions):
        self.call = functions

    def check(self):
        self.call["hetzner_dns.check_config"]()

    def rrsets(self, zone):
        return self.call["hetzner_dns.rrsets"](zone)

    def version(self, zone):
        """``[zone id, SOA serial]``: the serial moves on every change of the zone's records (the Cloud API
        increases it itself), the id tells a zone deleted and created again. One request."""
        soa = self.call["hetzner_dns.rrset"](zone, "@", "SOA") or {}
        values = [r.get("value", "") for r in soa.get("records") or []]
        fields = values[0].split() if values else []
        return [soa.get("zone"), int(fields[2])] if len(fields) > 2 and fields[2].isdigit() else None

    def pacing(self, writes):
        seen = self.call["hetzner_dns.rate_limit"]()
        return pacing_line(writes, seen["limit"], seen["remaining"], seen["reset"], time.time())

    def create(self, zone, name, rtype, records, ttl, labels):
        return _action(self.call["hetzner_dns.create_rrset"](zone, name, rtype, records, ttl=ttl, labels=labels, wait=False))

    def set_records(self, zone, name, rtype, records):
        return _action(self.call["hetzner_dns.set_records"](zone, name, rtype, records, wait=False))

    def change_ttl(self, zone, name, rtype, ttl):
        return _action(self.call["hetzner_dns.change_ttl"](zone, name, rtype, ttl, wait=False))

    def set_labels(self, zone, name, rtype, labels):
        self.call["hetzner_dns.set_labels"](zone, name, rtype, labels)  # a plain update: no action

    def delete(self, zone, name, rtype):
        return _action(self.call["hetzner_dns.delete_rrset"](zone, name, rtype, wait=False))

    def settle(self, pending):
        """Wait for every running action at once (``hetzner_dns.wait_actions``: 50 ids a poll)."""
        final = {a["id"]: a for a in pending if a}
        running = [a["id"] for a in pending if a and a.get("status") == "running"]
        if running:
            final.update({a["id"]: a for a in self.call["hetzner_dns.wait_actions"](running)})
        out = []
        for action in pending:
            done = final.get(action["id"]) if action else None
            failed = done and done.get("status") == "error"
            out.append(f"action {done['id']} ({done.get('command')}) failed: {done.get('error')}" if failed else None)
        return out
