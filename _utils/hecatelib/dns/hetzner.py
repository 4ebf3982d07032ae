"""Hetzner Cloud DNS as a provider of the record-set engine (``hecatelib.dns.converge``): the Cloud API's
endpoint and page size, and :class:`HetznerZones`, the engine's ``ZoneApi`` over the ``hetzner_dns``
execution module (every write answers an action; :meth:`HetznerZones.settle` waits for all of them in one
batch of polls)."""

import math

from hecatelib.dns.converge import ZoneApi

API_ENDPOINT = "https://api.hetzner.cloud/v1"
PAGE_SIZE = 50  # the Cloud API's maximum per_page


def read_requests(count):
    """Requests to read a zone of ``count`` RRSets: ``ceil(count / 50)``, at least one."""
    return max(1, math.ceil(count / PAGE_SIZE))


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
