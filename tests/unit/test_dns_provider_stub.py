"""A second DNS provider, defined here, converges a zone through the neutral record-set engine
(hecatelib.dns.converge): a synchronous API in memory that keeps labels, owns its SOA and apex NS, and
counts its writes. Nothing of Hetzner is involved."""

import pytest

from hecatelib import schema
from hecatelib.dns import providers
from hecatelib.dns import zones as dns_zones
from hecatelib.dns.converge import ZoneApi, converge

ZONE = "example.org"


class MemoryZones(ZoneApi):
    """A provider whose zone is a dict and whose writes are done when they return (nothing to settle)."""

    def __init__(self):
        self.sets = {("@", "SOA"): {"ttl": 3600, "records": ["ns1.provider.test. hostmaster.provider.test. 1 7200 900 1209600 86400"]},
                     ("@", "NS"): {"ttl": 3600, "records": ["ns1.provider.test."]}}  # fmt: skip
        self.writes = []

    def rrsets(self, zone):
        return [
            {"name": name, "type": rtype, "ttl": s["ttl"], "records": [{"value": v} for v in s["records"]], "labels": s.get("labels", {})}
            for (name, rtype), s in sorted(self.sets.items())
        ]

    def create(self, zone, name, rtype, records, ttl, labels):
        self.writes.append(("create", name, rtype))
        self.sets[(name, rtype)] = {"ttl": ttl, "records": list(records), "labels": dict(labels)}

    def set_records(self, zone, name, rtype, records):
        self.writes.append(("set_records", name, rtype))
        self.sets[(name, rtype)]["records"] = list(records)

    def change_ttl(self, zone, name, rtype, ttl):
        self.writes.append(("change_ttl", name, rtype))
        self.sets[(name, rtype)]["ttl"] = ttl

    def set_labels(self, zone, name, rtype, labels):
        self.writes.append(("set_labels", name, rtype))
        self.sets[(name, rtype)]["labels"] = dict(labels)

    def delete(self, zone, name, rtype):
        self.writes.append(("delete", name, rtype))
        del self.sets[(name, rtype)]


def desired_for(routes, records=()):
    tree = schema.validate(
        {
            "global": {"domain": ZONE},
            "reverse_proxy": {"caddy": {"routes": [{"domain": f"{r}.{ZONE}", "backend": "10.0.0.5:80", "service": r} for r in routes]}},
            "dns": {"zone": ZONE, "provider": "hetzner", "targets": {"ipv4": ["192.0.2.10"]}, "records": list(records)},
        }
    )
    return dns_zones.compile_zones(tree)[ZONE], dns_zones.owner_labels(tree)


@pytest.fixture
def api():
    return MemoryZones()


def test_a_second_provider_converges_a_zone_then_writes_nothing(api):
    desired, labels = desired_for(["app", "wiki"], [{"name": "example.org", "type": "MX", "values": ["10 mail.example.org"]}])
    dry = converge(api, ZONE, desired, labels, test=True)
    assert (
        dry["result"] is None and api.writes == [] and set(dry["changes"]) == {"app.example.org A", "wiki.example.org A", "example.org MX"}
    )
    done = converge(api, ZONE, desired, labels)
    assert done["result"] is True and sorted(api.writes) == [("create", "@", "MX"), ("create", "app", "A"), ("create", "wiki", "A")]
    assert api.sets[("app", "A")] == {"ttl": 300, "records": ["192.0.2.10"], "labels": labels}
    api.writes.clear()
    again = converge(api, ZONE, desired, labels)
    assert again["result"] is True and again["changes"] == {} and api.writes == []  # a no-op writes nothing
    assert converge(api, ZONE, desired, labels, test=True)["result"] is True


def test_it_prunes_only_what_hecate_owns_and_never_what_the_provider_owns(api):
    desired, labels = desired_for(["app", "wiki"])
    converge(api, ZONE, desired, labels)
    api.sets[("legacy", "A")] = {"ttl": 60, "records": ["192.0.2.99"], "labels": {}}  # someone else's set
    fewer, _ = desired_for(["app"])
    api.writes.clear()
    kept = converge(api, ZONE, fewer, labels)  # without prune: nothing is deleted
    assert kept["result"] is True and api.writes == []
    pruned = converge(api, ZONE, fewer, labels, prune=True)
    assert pruned["result"] is True and api.writes == [("delete", "wiki", "A")]
    assert ("legacy", "A") in api.sets and ("@", "SOA") in api.sets and ("@", "NS") in api.sets


def test_a_provider_error_is_a_failed_state_not_a_traceback(api):
    class Refusing(MemoryZones):
        def create(self, zone, name, rtype, records, ttl, labels):
            raise RuntimeError(f"{name}: quota exceeded")

    desired, labels = desired_for(["app"])
    failed = converge(Refusing(), ZONE, desired, labels, errors=(RuntimeError,))
    assert failed["result"] is False and "app.example.org A: create: app: quota exceeded" in failed["comment"]
    assert failed["changes"] == {}  # nothing was applied


def test_the_pillar_names_the_providers_the_registry_has():
    assert set(dns_zones.PROVIDER_NAMES) == set(providers.PROVIDERS)
    assert providers.of({"dns": {"zone": ZONE}}).module == "hetzner_dns"  # the default
    with pytest.raises(schema.PillarError, match="hecate:dns:provider"):
        schema.validate({"global": {"domain": ZONE}, "dns": {"zone": ZONE, "provider": "route53"}})
