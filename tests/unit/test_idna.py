"""International domains: one conversion (IDNA 2008 + UTS 46, ``hecatelib.spec.to_ascii``) wherever a domain
goes: the validator, the DNS zone, Caddy's host matchers and certificate subjects, authentik's
external_host, the probe's Host header; and the operator sees both forms."""

import copy
import re

import pytest

from devstack.pillars import seed_tree
from hecatelib import schema, spec
from hecatelib.authentik import objects as authentik_objects
from hecatelib.caddy import config as caddy_config
from hecatelib.caddy import probe as caddy_probe
from hecatelib.dns import zones as dns_zones
from hecatelib.spec import PillarError

ZONE = "cybermonkey.dev"
STRASSE = "stra\u00dfe.cybermonkey.dev"
STRASSE_A = "xn--strae-oqa.cybermonkey.dev"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("stra\u00dfe.example", "xn--strae-oqa.example"),  # IDNA 2003 gave strasse.example: another domain
        ("Stra\u00dfe.Example.", "xn--strae-oqa.example"),  # UTS 46 maps case; one trailing dot dropped
        ("xn--strae-oqa.de", "xn--strae-oqa.de"),  # an A-label is kept
        ("\u03b2\u03cc\u03bb\u03bf\u03c2.com", "xn--nxasmm1c.com"),  # final sigma kept (IDNA 2003: xn--nxasmq6b)
        ("\u4f8b\u3048\u3002\u30c6\u30b9\u30c8", "xn--r8jz45g.xn--zckzah"),  # ideographic full stop separates labels
        ("_dmarc.stra\u00dfe.example", "_dmarc.xn--strae-oqa.example"),  # ASCII labels are the caller's to check
        ("r4---sn-4g5e6nzz.googlevideo.com", "r4---sn-4g5e6nzz.googlevideo.com"),  # hyphens 3-4 in an ASCII label
    ],
)
def test_to_ascii_is_idna_2008_with_uts46(name, expected):
    assert spec.to_ascii(name) == expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("\u2603.example", "Codepoint U+2603"),  # IDNA 2003 gave xn--n3h.example
        ("a\u200db.example", "Joiner U+200D"),  # IDNA 2003 silently dropped it: ab.example
        ("xn--n3h.example", "Codepoint U+2603"),  # an A-label of a disallowed U-label
        ("xn---bbk.example", "canonical"),  # a fake A-label (RFC 5890 2.3.2.1)
        ("\u017fecret.example", "reads as another name than it is"),  # long s: UTS 46 maps it to secret
        ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "reads as another name than it is"),  # full-width example
    ],
)
def test_to_ascii_refuses_with_the_label_and_the_reason(name, reason):
    with pytest.raises(ValueError, match=re.escape(reason)) as info:
        spec.to_ascii(name)
    assert repr(name) in str(info.value)


def test_shown_gives_both_forms_of_an_international_name_only():
    assert spec.shown(STRASSE_A) == f"{STRASSE} ({STRASSE_A})"
    assert spec.shown("app.cybermonkey.dev") == "app.cybermonkey.dev"
    assert spec.to_unicode("xn--nxasmm1c.com") == "\u03b2\u03cc\u03bb\u03bf\u03c2.com"


def international_tree():
    """The seed plus a protected route on ``straße.cybermonkey.dev``, its DNS and a CNAME to it."""
    tree = copy.deepcopy(seed_tree())
    tree["reverse_proxy"]["caddy"]["tls"] = {"mode": "internal"}
    tree["reverse_proxy"]["caddy"]["routes"].append(
        {"domain": STRASSE, "backend": "10.0.0.5:8080", "service": "strasse", "auth": {"groups": ["ops"]}}
    )
    tree["authentik"]["url"] = "https://auth.cybermonkey.dev"
    tree["authentik"]["outpost"] = {"upstream": "10.0.0.9:9000"}
    tree["dns"] = {
        "zone": ZONE,
        "token": "t0ken-value",
        "targets": {"ipv4": ["203.0.113.7"]},
        "records": [{"name": "alias.cybermonkey.dev", "type": "CNAME", "values": STRASSE}],
    }
    return tree


def test_every_backend_gets_the_a_label():
    tree = schema.validate(international_tree())
    route = tree["reverse_proxy"]["caddy"]["routes"][-1]
    assert route["domain"] == STRASSE_A
    config = caddy_config.bootstrap_config(tree)
    compiled = caddy_config.owned_routes(config)["hecate_route_strasse"]
    assert compiled["match"] == [{"host": [STRASSE_A]}]
    assert STRASSE_A in config["apps"]["tls"]["automation"]["policies"][0]["subjects"]
    provider = authentik_objects.desired_objects(tree)["providers"]["hecate-strasse"]
    assert provider["external_host"] == f"https://{STRASSE_A}"
    zone = dns_zones.compile_zones(tree)[ZONE]
    assert zone[("xn--strae-oqa", "A")]["records"] == ["203.0.113.7"]
    assert zone[("alias", "CNAME")]["records"] == [f"{STRASSE_A}."]


def test_a_u_label_and_its_a_label_are_one_domain():
    tree = international_tree()
    tree["reverse_proxy"]["caddy"]["routes"].append({"domain": STRASSE_A, "backend": "10.0.0.6:80", "service": "other"})
    with pytest.raises(PillarError) as info:
        schema.validate(tree)
    path = f"hecate:reverse_proxy:caddy:routes[9]({STRASSE} ({STRASSE_A})):domain"
    assert [(p, r) for p, r in info.value.errors if p == path and "duplicate domain" in r], info.value.errors


@pytest.mark.parametrize(
    ("where", "value", "reason"),
    [
        ("route", "\u2603.cybermonkey.dev", "Codepoint U+2603"),
        ("route", "a\u200db.cybermonkey.dev", "Joiner U+200D"),
        ("record", "\u2603.cybermonkey.dev", "Codepoint U+2603"),
        ("cname", "a\u200db.cybermonkey.dev", "Joiner U+200D"),
    ],
)
def test_refused_names_carry_their_key_path(where, value, reason):
    tree = international_tree()
    if where == "route":
        tree["reverse_proxy"]["caddy"]["routes"][-1]["domain"] = value
        path = "hecate:reverse_proxy:caddy:routes[8]:domain"
    elif where == "record":
        tree["dns"]["records"][0]["name"] = value
        path = "hecate:dns:records[0]:name"
    else:
        tree["dns"]["records"][0]["values"] = [value]
        path = "hecate:dns:records[0]:values"
    with pytest.raises(PillarError) as info:
        schema.validate(tree)
    assert [r for p, r in info.value.errors if p == path and reason in r and repr(value) in r], info.value.errors


def test_the_operator_sees_both_forms_in_the_dns_and_caddy_changes():
    tree = schema.validate(international_tree())
    desired = dns_zones.compile_zones(tree)[ZONE]
    labels = dns_zones.owner_labels(tree)
    changes = dns_zones.describe(dns_zones.plan(desired, [], ZONE, labels), ZONE)
    assert f"{STRASSE} ({STRASSE_A}) A" in changes
    diff = caddy_config.diff({}, caddy_config.bootstrap_config(tree))
    assert diff["added"]["hecate_route_strasse"]["hosts"] == [f"{STRASSE} ({STRASSE_A})"]
    assert STRASSE_A in caddy_config.changed_domains({}, caddy_config.bootstrap_config(tree))  # what the probe requests


def test_the_probe_sends_the_a_label_as_host(monkeypatch):
    sent = []

    def exchange(connect, method, path, headers, tries, backoff):
        sent.append(headers["Host"])
        raise ConnectionRefusedError("no edge here")

    monkeypatch.setattr(caddy_probe, "_exchange", exchange)
    prober = caddy_probe.Prober({"tls": {"mode": "off"}, "ports": {"http": 9}, "verify": {"timeout": 1}})
    assert not prober.probe(STRASSE)["ok"]
    assert sent == [STRASSE_A]


def test_authentik_url_with_an_international_host_becomes_its_a_label():
    tree = international_tree()
    tree["authentik"]["url"] = f"https://{STRASSE}:8443"
    assert schema.validate(tree)["authentik"]["url"] == f"https://{STRASSE_A}:8443"
