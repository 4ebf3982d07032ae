"""A managed zone's name follows the rule route domains follow (hecatelib.spec.is_hostname): ``12345`` and
``999.999.999.999`` are not host names and are refused with the key path (issue 15)."""

import copy

import pytest

from devstack.pillars import seed_tree
from hecatelib import schema
from hecatelib.dns import zones as dns_zones
from hecatelib.spec import PillarError


def errors_of(**dns):
    tree = copy.deepcopy(seed_tree())
    tree["dns"] = {"token": "t0ken-value", "targets": {"ipv4": ["203.0.113.7"]}, **dns}
    return dns_zones.check(tree)[1].errors


@pytest.mark.parametrize(
    ("dns", "path", "name"),
    [
        ({"zone": "12345"}, "hecate:dns:zone", "12345"),
        ({"zone": "999.999.999.999"}, "hecate:dns:zone", "999.999.999.999"),
        ({"zone": "cybermonkey.dev", "zones": ["example.net", "0.123"]}, "hecate:dns:zones[1]", "0.123"),
    ],
)
def test_a_zone_that_is_not_a_host_name_is_refused(dns, path, name):
    assert (path, f"is not a valid hostname: {name!r}") in errors_of(**dns), errors_of(**dns)


def test_a_zone_with_an_invalid_a_label_is_refused_once_with_the_idna_reason():
    errors = errors_of(zone="xn--a.example.org")  # xn--a decodes to U+0080: not a valid U-label
    assert [p for p, _ in errors] == ["hecate:dns:zone"], errors
    assert "is not a valid international name (IDNA 2008): label 'xn--a'" in errors[0][1]


def test_a_route_domain_and_a_zone_follow_the_same_rule():
    tree = copy.deepcopy(seed_tree())
    tree["reverse_proxy"]["caddy"]["routes"][0]["domain"] = "12345"
    with pytest.raises(PillarError) as route:
        schema.validate(tree)
    assert "is not a valid hostname: '12345'" in str(route.value)
    assert errors_of(zone="cybermonkey.dev", zones=["Example.NET.", "münchen.de"]) == []  # names still normalised
