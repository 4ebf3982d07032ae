"""Which API holds a zone: the DNS providers hecate can converge through, chosen by ``hecate:dns:provider``.

The record-set engine (``hecatelib.dns.zones``: names, values, the compiled zone and the plan) is neutral;
a provider is the execution module that talks to its API (read a zone's record sets, create, update, delete,
poll) and the state module of the same name whose ``rrsets_managed`` converges one zone through it, plus what
the provider itself owns in a zone (never touched). Hetzner Cloud DNS is the first (``hetzner_dns``)."""

from dataclasses import dataclass

from hecatelib.dns import zones as dns_zones


@dataclass(frozen=True)
class Provider:
    name: str  # the value of hecate:dns:provider
    module: str  # its execution and state module (``<module>.rrsets``, ``<module>.rrsets_managed``)
    reserved: object  # rrset -> bool: a record set the provider owns in every zone (SOA, apex NS)

    def function(self, fun):
        return f"{self.module}.{fun}"


HETZNER = Provider("hetzner", "hetzner_dns", dns_zones.is_hetzners)
PROVIDERS = {p.name: p for p in (HETZNER,)}
DEFAULT = HETZNER.name


def named(name):
    try:
        return PROVIDERS[name or DEFAULT]
    except KeyError:
        raise ValueError(f"unknown DNS provider {name!r}; the providers are: {', '.join(PROVIDERS)}") from None


def of(tree):
    """The provider of the pillar's zones (``hecate:dns:provider``, default hetzner)."""
    return named((tree.get("dns") or {}).get("provider"))
