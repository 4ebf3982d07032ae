"""hecatelib.dns.zones: names, values, TXT chunking, the pillar section's checks, compile and diff (pure, no I/O)."""

import copy

import pytest

from devstack.pillars import seed_tree
from hecatelib.dns import hetzner
from hecatelib.dns import zones as dns_zones
from hecatelib.dns.zones import chunk_txt, normalise_value, parse_txt, relative_name, txt_value
from hecatelib.spec import PillarError

ZONE = "cybermonkey.dev"
V4, V6 = ["203.0.113.7"], ["2001:db8::7"]
LABELS = {"managed-by": "hecate", "hecate-owner": "production"}


def dns_tree(**dns):
    """The seed pillar plus a DNS section for its zone."""
    tree = copy.deepcopy(seed_tree())
    tree["dns"] = {"zone": ZONE, "token": "t0ken-value", "targets": {"ipv4": list(V4), "ipv6": list(V6)}, **dns}
    return tree


def errors_of(tree):
    _, report = dns_zones.check(tree)
    return report.errors


def paths(errors):
    return [path for path, _ in errors]


# -- TXT ---------------------------------------------------------------------------------------------


def test_txt_chunks_count_bytes_not_characters():
    text = "é" * 200  # 400 bytes, 200 characters
    chunks = chunk_txt(text)
    assert [len(c.encode()) for c in chunks] == [254, 146]  # 255 would split a 2-byte character
    assert "".join(chunks) == text


def test_txt_ascii_chunks_are_255_bytes():
    text = "v=DKIM1; k=rsa; p=" + "A" * 600
    chunks = chunk_txt(text)
    assert [len(c) for c in chunks] == [255, 255, 108]
    value = txt_value(text)
    assert value == " ".join(f'"{c}"' for c in chunks)
    assert parse_txt(value) == chunks


def test_txt_quotes_and_backslashes_are_escaped_and_round_trip():
    text = 'say "hi" \\ bye'
    value = txt_value(text)
    assert value == '"say \\"hi\\" \\\\ bye"'
    assert parse_txt(value) == [text]
    assert txt_value(value) == value  # already quoted: canonical, unchanged


def test_txt_prequoted_value_keeps_its_chunks():
    assert txt_value('"v=spf1"   "-all"') == '"v=spf1" "-all"'
    assert parse_txt('"a\\065b"') == ["aAb"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('"unterminated', "unterminated"),
        ('"a" b', "outside quotes"),
        ('"' + "x" * 256 + '"', "256 bytes"),
        ('"a""b"', "separated by spaces"),
        ("line\nbreak", "newline"),
    ],
)
def test_txt_malformed(value, reason):
    with pytest.raises(ValueError, match=reason):
        txt_value(value)


# -- names and values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cybermonkey.dev", "@"),
        ("CyberMonkey.dev.", "@"),
        ("@", "@"),
        ("hera.cybermonkey.dev", "hera"),
        ("*.cybermonkey.dev", "*"),
        ("_dmarc.cybermonkey.dev", "_dmarc"),
        ("www", "www"),
        ("bücher.cybermonkey.dev", "xn--bcher-kva"),
    ],
)
def test_relative_name(name, expected):
    assert relative_name(name, ZONE) == expected


@pytest.mark.parametrize("name", ["a.*.cybermonkey.dev", "a*.cybermonkey.dev", "example.org.", "-bad.cybermonkey.dev"])
def test_relative_name_refuses(name):
    with pytest.raises(ValueError):
        relative_name(name, ZONE)


@pytest.mark.parametrize(
    ("rtype", "value", "origin", "expected"),
    [
        ("A", " 192.0.2.1 ", None, "192.0.2.1"),
        ("AAAA", "2001:DB8:0:0:0:0:0:1", None, "2001:db8::1"),
        ("CNAME", "Edge.Example.NET", None, "edge.example.net."),
        ("CNAME", "edge", "cybermonkey.dev", "edge.cybermonkey.dev."),  # zone-file form from the API
        ("CNAME", "edge.example.net.", "cybermonkey.dev", "edge.example.net."),
        ("MX", "10   Mail.Example.org", None, "10 mail.example.org."),
        ("MX", "0 .", None, "0 ."),
        ("SRV", "10 5 5060 sip.example.org", None, "10 5 5060 sip.example.org."),
        ("CAA", "0 issue letsencrypt.org", None, '0 issue "letsencrypt.org"'),
        ("CAA", '128 ISSUEWILD ";"', None, '128 issuewild ";"'),
        ("CAA", '0 iodef "mailto:ops@example.org"', None, '0 iodef "mailto:ops@example.org"'),
        ("TLSA", "3 1 1 " + "AB" * 16 + " " + "CD" * 16, None, "3 1 1 " + "ab" * 16 + "cd" * 16),  # SHA-256: 32 bytes
        ("TXT", "hello", None, '"hello"'),
        ("HINFO", "PC  Linux", None, '"PC" "Linux"'),  # RFC 1035 3.3.2: two character-strings
        ("RP", "Admin.example.org. .", None, "admin.example.org. ."),  # RFC 1183 2.2: no TXT name is the root
        ("HTTPS", '1 . alpn="h2,h3"', None, '1 . alpn="h2,h3"'),
        ("SVCB", "1 Svc alpn=h2 port=443", "cybermonkey.dev", '1 svc.cybermonkey.dev. alpn="h2" port="443"'),
        ("SVCB", "1 stra\u00dfe.example. alpn=h2", None, '1 xn--strae-oqa.example. alpn="h2"'),  # the one IDNA conversion
    ],
)
def test_normalise_value(rtype, value, origin, expected):
    assert normalise_value(rtype, value, origin) == expected


@pytest.mark.parametrize(
    ("rtype", "value"),
    [
        ("TXT", 'a "quoted" text ' + "x" * 300),
        ("TXT", "ü" * 200),
        ("CAA", '0 issue "letsencrypt.org; validationmethods=dns-01"'),
        ("MX", "10 Mail.Example.org"),
        ("SRV", "0 5 443 Edge.Example.net."),
        ("AAAA", "2001:0db8::0:1"),
        ("DS", "12345 13 2 " + "ABCDEF01" * 8),  # SHA-256 digest: 32 bytes (RFC 4509 2.2)
        ("HTTPS", "1 Svc.Example.org. alpn=h2,h3 port=443"),
        ("HINFO", "x86_64 Linux"),
    ],
)
def test_normalising_twice_changes_nothing(rtype, value):
    once = normalise_value(rtype, value)
    assert normalise_value(rtype, once) == once
    assert normalise_value(rtype, once, origin=ZONE) == once  # read back from the API: same form


@pytest.mark.parametrize(
    ("rtype", "value", "reason"),
    [
        ("A", "2001:db8::1", "IPv4"),
        ("A", "192.0.2.256", "IPv4"),
        ("AAAA", "192.0.2.1", "IPv6"),
        ("MX", "mail.example.org", "preference host"),
        ("MX", "70000 mail.example.org", "0..65535"),
        ("SRV", "10 5 sip.example.org", "priority weight port target"),
        ("SRV", "10 5 99999 sip.example.org", "SRV port"),
        ("CAA", "issue letsencrypt.org", "flags tag"),
        ("CAA", "256 issue letsencrypt.org", "0..255"),
        ("CAA", "0 iodef ops@example.org", "mailto"),
        ("CAA", '0 issue "lets"encrypt"', "malformed"),
        ("CNAME", "bad_host!.example.org", "invalid label"),
        ("TLSA", "3 1 1 xyz", "hex"),
        ("DS", "12345 13 2 ABCDEF01", "digest length inconsistent"),  # 4 bytes; SHA-256 has 32 (RFC 4509 2.2)
        ("DS", "12345 13 1 " + "ab" * 32, "digest length inconsistent"),  # SHA-1 has 20 (RFC 3658)
        ("TLSA", "3 1 1 abcd", "length inconsistent with matching type"),  # RFC 6698 2.1.3
        ("TLSA", "3 1 2 " + "ab" * 32, "length inconsistent with matching type"),  # SHA-512 has 64
        ("HTTPS", "garbage here", "expecting an integer"),
        ("SVCB", "1 svc.example.org. foo=bar", "Unknown SVCB ParamKey"),  # RFC 9460 14.3: registered keys or keyNNNNN
        ("SVCB", "1 . mandatory=alpn", "declared mandatory but not present"),  # RFC 9460 8
        ("HTTPS", "0 . alpn=h2", "AliasMode"),  # RFC 9460 2.4.2: no params in AliasMode
        ("HINFO", "PC", "expecting a string"),
        ("RP", "admin.example.org.", "expecting an identifier"),
        ("CAA", '0 issue "ca.example.net; account"', "tag=value"),  # RFC 8659 4.2
    ],
)
def test_normalise_value_refuses(rtype, value, reason):
    with pytest.raises(ValueError, match=reason):
        normalise_value(rtype, value)


# -- pillar --------------------------------------------------------------------------------------------


def test_seed_without_dns_section_is_valid_and_dns_is_off():
    tree = seed_tree()
    assert "dns" not in tree
    out, report = dns_zones.check(tree)
    assert report.errors == []
    assert not dns_zones.enabled(out)
    assert dns_zones.compile_zones(out) == {}


def test_defaults_only_dns_section_is_off():
    tree = seed_tree()
    tree["dns"] = {"ttl": 300, "prune": False}
    out, report = dns_zones.check(tree)
    assert report.errors == [] and not dns_zones.enabled(out)


def test_seed_zone_compiles_every_route_to_a_and_aaaa():
    tree, report = dns_zones.check(dns_tree())
    assert report.errors == []
    zones = dns_zones.compile_zones(tree)
    assert list(zones) == [ZONE]
    names = {r["domain"] for r in seed_tree()["reverse_proxy"]["caddy"]["routes"]}
    expected = {(relative_name(n, ZONE), t) for n in names for t in ("A", "AAAA")}
    assert set(zones[ZONE]) == expected
    assert ("@", "A") in zones[ZONE]  # the seed's apex route (helen)
    assert zones[ZONE][("hera", "A")]["records"] == V4
    assert zones[ZONE][("hera", "AAAA")]["ttl"] == 300


def test_route_dns_options_and_extra_records():
    tree = dns_tree(
        ttl=600,
        records=[
            {"name": "cybermonkey.dev", "type": "mx", "values": ["10 mail.cybermonkey.dev"], "ttl": 3600},
            {"name": "_dmarc.cybermonkey.dev", "type": "TXT", "values": "v=DMARC1; p=reject"},
            {"name": "*.lab.cybermonkey.dev", "type": "A", "values": ["192.0.2.50"]},
        ],
    )
    routes = tree["reverse_proxy"]["caddy"]["routes"]
    routes[0]["dns"] = False  # hera: leave alone
    routes[1]["dns"] = {"ttl": 120}  # cloud
    routes[2]["dns"] = {"cname": "edge.example.net"}  # observe
    tree, report = dns_zones.check(tree)
    assert report.errors == []
    zone = dns_zones.compile_zones(tree)[ZONE]
    assert ("hera", "A") not in zone and ("hera", "AAAA") not in zone
    assert zone[("cloud", "A")]["ttl"] == 120
    assert zone[("observe", "CNAME")]["records"] == ["edge.example.net."]
    assert ("observe", "A") not in zone
    assert zone[("jenkins", "A")]["ttl"] == 600
    assert zone[("@", "MX")] | {"path": None} == {
        "name": "@",
        "type": "MX",
        "ttl": 3600,
        "shared": False,
        "records": ["10 mail.cybermonkey.dev."],
        "path": None,
    }
    assert zone[("_dmarc", "TXT")]["records"] == ['"v=DMARC1; p=reject"']
    assert zone[("*.lab", "A")]["records"] == ["192.0.2.50"]


def test_targets_argument_overrides_pillar_targets():
    tree, _ = dns_zones.check(dns_tree())
    zone = dns_zones.compile_zones(tree, targets={"ipv4": ["198.51.100.1", "198.51.100.2"]})[ZONE]
    assert zone[("hera", "A")]["records"] == ["198.51.100.1", "198.51.100.2"]
    assert ("hera", "AAAA") not in zone


def test_targets_can_come_later_but_compile_needs_them():
    tree = dns_tree()
    del tree["dns"]["targets"]
    tree, report = dns_zones.check(tree)
    assert report.errors == []  # validation: terraform may provide them
    with pytest.raises(PillarError) as info:
        dns_zones.compile_zones(tree)
    assert "hecate:dns:targets" in str(info.value)


def test_check_is_idempotent():
    tree, report = dns_zones.check(dns_tree(zones=["example.net"], records=[{"name": "x.example.net", "type": "A", "values": "192.0.2.9"}]))
    assert report.errors == []
    again, report = dns_zones.check(copy.deepcopy(tree))
    assert report.errors == []
    assert again["dns"] == tree["dns"]
    assert tree["dns"]["zones"] == [ZONE, "example.net"]


def _record(**fields):
    return {"name": "x.cybermonkey.dev", "type": "A", "values": ["192.0.2.1"], **fields}


@pytest.mark.parametrize(
    ("dns", "path", "reason"),
    [
        (
            {"records": [_record(), _record(name="y.cybermonkey.dev"), _record(ttl=30)]},
            "hecate:dns:records[2]:ttl",
            "out of range 60..2147483647",
        ),
        ({"records": [_record(ttl=2**31)]}, "hecate:dns:records[0]:ttl", "out of range"),
        ({"records": [_record(name="a.*.cybermonkey.dev")]}, "hecate:dns:records[0]:name", "wildcard"),
        ({"records": [_record(name="a b.cybermonkey.dev")]}, "hecate:dns:records[0]:name", "invalid label"),
        ({"records": [_record(type="SPF")]}, "hecate:dns:records[0]:type", "must be one of"),
        ({"records": [_record(type="SOA", values=["x"])]}, "hecate:dns:records[0]:type", "SOA belongs to the DNS provider"),
        ({"records": [_record(name="cybermonkey.dev", type="NS", values=["ns1.example.net"])]}, "hecate:dns:records[0]", "apex NS"),
        ({"records": [_record(name="cybermonkey.dev", type="CNAME", values=["x.example.net"])]}, "hecate:dns:records[0]", "apex"),
        ({"records": [_record(type="CNAME", values=["a.example.net", "b.example.net"])]}, "hecate:dns:records[0]", "exactly one value"),
        (
            {"records": [_record(type="CNAME", values=["a.example.net"]), _record(type="TXT", values=["x"])]},
            "hecate:dns:records[0]",
            "CNAME stands alone",
        ),
        ({"records": [_record(), _record(values=["192.0.2.2"])]}, "hecate:dns:records[1]", "also defined at hecate:dns:records[0]"),
        ({"records": [_record(type="TXT", values=['"open'])]}, "hecate:dns:records[0]:values", "unterminated"),
        ({"records": [_record(type="MX", values=["mail.cybermonkey.dev"])]}, "hecate:dns:records[0]:values", "preference host"),
        (
            {"records": [_record(type="SRV", values=["1 2 sip.cybermonkey.dev"])]},
            "hecate:dns:records[0]:values",
            "priority weight port target",
        ),
        ({"records": [_record(type="CAA", values=["0 issue"])]}, "hecate:dns:records[0]:values", "flags tag"),
        ({"records": [_record(name="x.example.org")]}, "hecate:dns:records[0]:name", "outside every managed DNS zone"),
        ({"records": [_record(values=[])]}, "hecate:dns:records[0]:values", "at least 1"),
        ({"records": [_record(values=["192.0.2.1\n"])]}, "hecate:dns:records[0]:values[0]", "newline"),
        ({"endpoint": "http://dns.example.org/v1"}, "hecate:dns:endpoint", "not HTTPS"),
        ({"endpoint": "ftp://dns.example.org"}, "hecate:dns:endpoint", "not a valid URL"),
        ({"targets": {"ipv4": ["2001:db8::1"]}}, "hecate:dns:targets:ipv4[0]", "IPv6 address"),
        ({"tll": 300}, "hecate:dns:tll", "did you mean 'ttl'"),
        ({"ttl": 59}, "hecate:dns:ttl", "out of range"),
        ({"zone": "exa mple.org"}, "hecate:dns:zone", "invalid label"),
        ({"zone": None}, "hecate:dns:zone", "must be a string"),
    ],
)
def test_invalid_dns_pillar_names_key_path(dns, path, reason):
    errors = errors_of(dns_tree(**dns))
    assert any(p == path and reason in r for p, r in errors), errors


def test_dns_settings_without_a_zone_are_refused():
    tree = dns_tree()
    del tree["dns"]["zone"]
    assert errors_of(tree) == [("hecate:dns:zone", "required when hecate:dns sets token, targets: the zone hecate manages")]


def test_insecure_endpoint_allowed_only_explicitly():
    assert errors_of(dns_tree(endpoint="http://127.0.0.1:8080/v1", allow_insecure_endpoint=True)) == []


def test_route_outside_managed_zones_names_the_route():
    tree = dns_tree(zone="example.org")
    errors = errors_of(tree)
    assert "hecate:reverse_proxy:caddy:routes[0]:domain" in paths(errors)
    assert any("set dns: false on this route" in r for _, r in errors)
    for route in tree["reverse_proxy"]["caddy"]["routes"]:
        route["dns"] = False
    assert errors_of(tree) == []


def test_route_dns_value_is_checked():
    tree = dns_tree()
    tree["reverse_proxy"]["caddy"]["routes"][3]["dns"] = "yes"
    tree["reverse_proxy"]["caddy"]["routes"][4]["dns"] = {"ttl": 5}
    errors = errors_of(tree)
    assert "hecate:reverse_proxy:caddy:routes[3]:dns" in paths(errors)
    assert "hecate:reverse_proxy:caddy:routes[4]:dns" in paths(errors)


def test_route_cname_next_to_extra_record_is_refused():
    tree = dns_tree(records=[{"name": "hera.cybermonkey.dev", "type": "TXT", "values": ["x"]}])
    tree["reverse_proxy"]["caddy"]["routes"][0]["dns"] = {"cname": "edge.example.net"}
    errors = errors_of(tree)
    assert any(p == "hecate:reverse_proxy:caddy:routes[0]:dns" and "CNAME stands alone" in r for p, r in errors), errors


def test_same_values_from_route_and_record_merge_quietly():
    tree = dns_tree(records=[{"name": "hera.cybermonkey.dev", "type": "A", "values": V4, "ttl": 300}])
    assert errors_of(tree) == []


def test_owner_labels_are_valid_label_values():
    assert dns_zones.owner_labels({"global": {"environment": "production"}}) == LABELS
    assert dns_zones.owner_labels({}, owner="Staging #2")["hecate-owner"] == "Staging--2"


# -- diff ----------------------------------------------------------------------------------------------


def api(name, rtype, values, ttl=300, labels=LABELS, protected=False):
    return {
        "id": f"{name}/{rtype}",
        "name": name,
        "type": rtype,
        "ttl": ttl,
        "labels": dict(labels or {}),
        "protection": {"change": protected},
        "records": [{"value": v} for v in values],
        "zone": 1,
    }


HETZNER = [
    api("@", "SOA", ["hydrogen.ns.hetzner.com. dns.hetzner.com. 1 2 3 4 5"], None, {}),
    api("@", "NS", ["a.ns.hetzner.com."], None, {}),
]


def want(name, rtype, values, ttl=300):
    return {(name, rtype): {"name": name, "type": rtype, "ttl": ttl, "records": sorted(values), "path": "x"}}


def test_plan_noop_compares_normalised_forms():
    desired = {**want("www", "AAAA", ["2001:db8::1"]), **want("alias", "CNAME", ["edge.cybermonkey.dev."])}
    actual = [*HETZNER, api("www", "AAAA", ["2001:0DB8:0:0::1"]), api("alias", "CNAME", ["edge"])]
    result = dns_zones.plan(desired, actual, ZONE, LABELS, prune=True)
    assert dns_zones.write_count(result) == 0 and result["failures"] == [] and result["unchanged"] == 2


def test_plan_writes_only_what_differs():
    desired = {
        **want("a", "A", ["192.0.2.1"]),
        **want("b", "A", ["192.0.2.2"], 600),
        **want("c", "A", ["192.0.2.3"]),
        **want("d", "A", ["192.0.2.4"]),
    }
    actual = [api("a", "A", ["192.0.2.9"]), api("b", "A", ["192.0.2.2"]), api("c", "A", ["192.0.2.3"], labels={"team": "x"})]
    result = dns_zones.plan(desired, actual, ZONE, LABELS, prune=True)
    assert [(i["name"], i["new"]) for i in result["set_records"]] == [("a", ["192.0.2.1"])]
    assert [(i["name"], i["old"], i["new"]) for i in result["change_ttl"]] == [("b", 300, 600)]
    assert [(i["name"], i["new"]) for i in result["set_labels"]] == [("c", {"team": "x", **LABELS})]
    assert [i["name"] for i in result["create"]] == ["d"]
    assert dns_zones.write_count(result) == 4
    assert dns_zones.updates_line(result) == "2 to update, 1 to adopt (1 label writes, for prune), "
    assert dns_zones.write_count(dns_zones.plan(desired, actual, ZONE, LABELS)) == 3  # without prune c is left as it is


def test_plan_adopts_unlabelled_sets_only_with_prune():
    # First contact with a zone hecate did not create: labels matter only for pruning, so without prune a
    # matching unlabelled set costs nothing; with prune each one is adopted (one label PUT), shown in the plan.
    desired, actual = {}, list(HETZNER)
    for i in range(1000):
        desired.update(want(f"h{i:04d}", "A", [f"10.0.{i // 250}.{i % 250 + 1}"]))
        actual.append(api(f"h{i:04d}", "A", [f"10.0.{i // 250}.{i % 250 + 1}"], labels={}))
    quiet = dns_zones.plan(desired, actual, ZONE, LABELS)
    assert dns_zones.write_count(quiet) == 0 and quiet["unchanged"] == 1000
    assert dns_zones.updates_line(quiet) == "0 to update, "
    adopting = dns_zones.plan(desired, actual, ZONE, LABELS, prune=True)
    assert dns_zones.write_count(adopting) == len(adopting["set_labels"]) == 1000
    assert dns_zones.updates_line(adopting) == "0 to update, 1000 to adopt (1000 label writes, for prune), "
    assert dns_zones.describe(adopting, ZONE)["h0007.cybermonkey.dev A"] == {"labels": {"old": {}, "new": LABELS}}


def test_plan_prunes_only_labelled_sets_of_this_owner_and_never_soa_or_apex_ns():
    ours = api("gone", "A", ["192.0.2.1"])
    theirs = api("manual", "A", ["192.0.2.2"], labels={})
    staging = api("stage", "A", ["192.0.2.3"], labels={"managed-by": "hecate", "hecate-owner": "staging"})
    labelled_ns = api("@", "NS", ["a.ns.hetzner.com."], None, LABELS)
    actual = [ours, theirs, staging, labelled_ns, HETZNER[0]]
    assert dns_zones.plan({}, actual, ZONE, LABELS, prune=False)["delete"] == []
    result = dns_zones.plan({}, actual, ZONE, LABELS, prune=True)
    assert [(d["name"], d["type"]) for d in result["delete"]] == [("gone", "A")]


def test_plan_reports_protected_sets_as_failures():
    desired = {**want("a", "A", ["192.0.2.1"]), **want("b", "A", ["192.0.2.2"])}
    actual = [api("a", "A", ["192.0.2.9"], protected=True), api("b", "A", ["192.0.2.8"]), api("old", "A", ["192.0.2.7"], protected=True)]
    result = dns_zones.plan(desired, actual, ZONE, LABELS, prune=True)
    assert {(f["name"], "protected" in f["reason"]) for f in result["failures"]} == {("a", True), ("old", True)}
    assert [i["name"] for i in result["set_records"]] == ["b"]
    assert result["delete"] == []


def test_plan_replaces_own_a_by_cname_but_not_someone_elses():
    desired = {**want("x", "CNAME", ["edge.example.net."]), **want("y", "CNAME", ["edge.example.net."])}
    actual = [api("x", "A", ["192.0.2.1"]), api("x", "AAAA", ["2001:db8::1"]), api("y", "A", ["192.0.2.1"], labels={})]
    result = dns_zones.plan(desired, actual, ZONE, LABELS)
    assert sorted((d["name"], d["type"]) for d in result["delete"]) == [("x", "A"), ("x", "AAAA")]
    assert [c["name"] for c in result["create"]] == ["x"]
    assert [(f["name"], f["type"]) for f in result["failures"]] == [("y", "CNAME")]


def test_describe_is_readable():
    result = dns_zones.plan(want("a", "A", ["192.0.2.1"]), [api("a", "A", ["192.0.2.9"], 60)], ZONE, LABELS)
    assert dns_zones.describe(result, ZONE) == {
        "a.cybermonkey.dev A": {"records": {"old": ["192.0.2.9"], "new": ["192.0.2.1"]}, "ttl": {"old": 60, "new": 300}}
    }


def test_read_requests_is_pages_of_fifty():
    assert [hetzner.read_requests(n) for n in (0, 2, 50, 51, 1000)] == [1, 1, 1, 2, 20]


def test_desired_from_list_validates():
    desired, problems = dns_zones.desired_from_list(
        [{"name": "www", "type": "a", "values": ["192.0.2.1"]}, {"name": "@", "type": "CNAME", "values": ["x.example.net"]}], ZONE
    )
    assert ("www", "A") in desired
    assert any("apex" in reason for _, reason in problems)


# -- as part of the whole contract (hecatelib.schema) ---------------------------------------------------------


def test_whole_schema_accepts_the_seed_with_a_dns_section_and_normalises_it():
    from hecatelib import schema

    tree = dns_tree(records=[{"name": "cybermonkey.dev", "type": "txt", "values": ['"v=spf1" "-all"']}])
    tree["reverse_proxy"]["caddy"]["routes"][0]["dns"] = {"ttl": 120}
    out, report = schema.check(tree)
    assert report.errors == []
    assert out["dns"]["zones"] == [ZONE] and out["dns"]["ttl"] == 300 and out["dns"]["prune"] is False
    assert out["dns"]["records"][0]["type"] == "TXT"
    zone = dns_zones.compile_zones(out)[ZONE]
    assert zone[("@", "TXT")]["records"] == ['"v=spf1" "-all"'] and zone[("hera", "A")]["ttl"] == 120


def test_whole_schema_reports_dns_problems_with_key_paths():
    from hecatelib import schema

    tree = dns_tree(records=[_record(), _record(name="y.cybermonkey.dev"), _record(ttl=30)])
    tree["reverse_proxy"]["caddy"]["routes"][5]["dns"] = {"cname": "a.*.example.net"}
    _, report = schema.check(tree)
    assert ("hecate:dns:records[2]:ttl", "30 is out of range 60..2147483647") in report.errors
    assert "hecate:reverse_proxy:caddy:routes[5](s3api.cybermonkey.dev):dns" in paths(report.errors)


# -- wildcard (hecate:dns:wildcard) ---------------------------------------------------------------------


def _routes_tree(names, **dns):
    tree = dns_tree(wildcard=True, **dns)
    helen = tree["reverse_proxy"]["caddy"]["routes"][0]["backend"]
    tree["reverse_proxy"]["caddy"]["routes"] = [{"domain": f"{n}.{ZONE}", "backend": helen, "service": n.replace(".", "-")} for n in names]
    tree, report = dns_zones.check(tree)
    assert report.errors == []
    return tree


def _fold(tree, actual=()):
    return dns_zones.fold_wildcard(dns_zones.compile_zones(tree)[ZONE], [*HETZNER, *actual], LABELS)


def test_wildcard_answers_for_routes_at_the_targets_one_label_below_the_zone():
    desired, folded = _fold(_routes_tree([f"app{i}" for i in range(5000)]))
    assert len(folded) == 5000
    assert desired == {
        ("*", "A"): {"name": "*", "type": "A", "ttl": 300, "records": V4, "path": "hecate:dns:wildcard", "shared": False},
        ("*", "AAAA"): {"name": "*", "type": "AAAA", "ttl": 300, "records": V6, "path": "hecate:dns:wildcard", "shared": False},
    }


def test_wildcard_leaves_their_own_sets_where_dns_would_not_answer_from_it():
    # RFC 4592 2.2: a wildcard answers only names that do not exist, right below the name holding it
    tree = _routes_tree(
        ["plain", "deep.lab", "own-ttl", "cname", "txt", "ent", "here-before", "foreign", "@"][:-1],
        records=[
            {"name": f"txt.{ZONE}", "type": "TXT", "values": ["v=spf1 -all"]},  # another type at the name
            {"name": f"_acme-challenge.ent.{ZONE}", "type": "TXT", "values": ["token"]},  # ent: an empty non-terminal
        ],
    )
    routes = {r["service"]: r for r in tree["reverse_proxy"]["caddy"]["routes"]}
    routes["own-ttl"]["dns"] = {"ttl": 60}
    routes["cname"]["dns"] = {"cname": "edge.example.net"}
    actual = [api("here-before", "A", V4), api("x.foreign", "TXT", ['"kept by someone"'], labels={})]
    desired, folded = _fold(tree, actual)
    assert folded == ["plain"]
    explicit = {name for name, _ in desired}
    assert explicit == {"*", "deep.lab", "own-ttl", "cname", "txt", "_acme-challenge.ent", "ent", "here-before", "foreign"}


def test_a_wildcard_set_hecate_does_not_own_turns_folding_off():
    tree = _routes_tree(["a", "b"])
    desired, folded = _fold(tree, [api("*", "A", ["192.0.2.99"], labels={})])
    assert folded == [] and {name for name, _ in desired} == {"a", "b"}
    desired, folded = _fold(tree, [api("*", "A", ["192.0.2.99"])])  # hecate's own: its values follow the targets
    assert folded == ["a", "b"] and desired[("*", "A")]["records"] == V4


def test_wildcard_and_a_record_at_the_zone_wildcard_are_refused_together():
    tree = dns_tree(wildcard=True, records=[{"name": f"*.{ZONE}", "type": "A", "values": ["192.0.2.5"]}])
    assert ("hecate:dns:records[0]", "*.cybermonkey.dev is hecate's own with hecate:dns:wildcard on; drop this record or the wildcard") in (
        errors_of(tree)
    )
    assert errors_of(dns_tree(records=[{"name": f"*.{ZONE}", "type": "A", "values": ["192.0.2.5"]}])) == []


def test_pacing_line_says_how_long_the_rate_limit_makes_the_writes_wait():
    assert hetzner.pacing_line(100, 3600, 3000, 1_000_600, 1_000_000) is None  # 102 requests fit in 3000
    full = hetzner.pacing_line(5000, 3600, 3600, 1_000_000, 1_000_000)  # a full bucket refills 3600 an hour
    assert full.startswith("pacing: 5000 writes need about 5100 requests and the Cloud API's rate limit has 3600 of 3600 left")
    assert "about 25 min of waiting" in full  # 1500 requests at one a second
    # empty, refilling one request every (reset - now) / (limit - remaining) = 3600 / 3600 = 1 s
    assert "about 40 s of waiting" in hetzner.pacing_line(39, 3600, 0, 1_003_600, 1_000_000)
    assert "about 7 s of waiting" in hetzner.pacing_line(39, 3600, 0, 1_000_600, 1_000_000)  # full again in 10 minutes
