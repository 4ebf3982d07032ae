"""Which API holds a zone: the DNS providers hecate can converge through, chosen by ``hecate:dns:provider``.

The record-set engine is neutral: names, values, the compiled zone and the plan (``hecatelib.dns.zones``),
and the converge loop (``hecatelib.dns.converge``). A provider brings its API client (an execution module),
a ``ZoneApi`` over it (``hecatelib.dns.<provider>``) and a state module of the same name whose
``rrsets_managed`` hands the engine that ``ZoneApi``; here it is named for the SLS, the drift, health and
backup hooks. Hetzner Cloud DNS is the first (``hetzner_dns``)."""

from dataclasses import dataclass

from hecatelib.dns import zones as dns_zones


@dataclass(frozen=True)
class Provider:
    name: str  # the value of hecate:dns:provider
    reserved: object = dns_zones.is_providers  # rrset -> bool: a record set the provider owns in every zone

    @property
    def module(self):
        """Its execution and state module, ``<name>_dns`` (``salt/hecate/dns.sls`` names it the same way)."""
        return f"{self.name}_dns"

    def function(self, fun):
        return f"{self.module}.{fun}"


HETZNER = Provider("hetzner")
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
