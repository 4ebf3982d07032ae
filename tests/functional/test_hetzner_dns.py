"""hetzner_dns through Salt's loader (module, states, hecate.dns SLS) against the Cloud DNS emulator.

Every request the module sends is checked against the Hetzner OpenAPI document (and the rules it states
in prose); every emulator answer is checked against it too. Performance is measured in requests:
a converged zone costs one read per 50 sets and zero writes.
"""

import copy
import json
import pathlib
import shutil
import tempfile
import time

import pytest
import requests
from salt.exceptions import CommandExecutionError, SaltInvocationError

from devstack.emulators.hetzner import HetznerDNS
from devstack.pillars import seed_tree
from tests.conftest import assert_no_violations, loaders_for

ZONE = "cybermonkey.dev"
V4, V6 = "203.0.113.7", "2001:db8::7"
SEED_DOMAINS = [r["domain"] for r in seed_tree()["reverse_proxy"]["caddy"]["routes"]]
OURS = {"managed-by": "hecate", "hecate-owner": "production"}


@pytest.fixture(scope="module")
def hetzner_server():
    emulator = HetznerDNS().start()
    yield emulator
    emulator.stop()


@pytest.fixture
def hetzner(hetzner_server):
    """The emulator, reset to a project holding one empty zone (SOA + apex NS); contract checked at the end."""
    hetzner_server.reset()
    hetzner_server.add_zone(ZONE)
    yield hetzner_server
    assert_no_violations(hetzner_server)
    assert hetzner_server.response_violations == []


@pytest.fixture(scope="module")
def salt_loaders():
    """Salt's loaders as ``make_loaders`` (tests/conftest.py) builds them, shared by this module: building
    them costs ~2 s. ``salt_loaders(pillar)``: loaders whose own pillar is ``pillar`` (module calls read
    their config through ``config.get``); states get their pillar per call as a ``pillar=`` override,
    the way ``salt-call state.apply hecate.dns pillar=...`` and the orchestration pass it."""
    cache, roots = {}, []

    def get(pillar=None):
        key = json.dumps(pillar or {}, sort_keys=True)
        if key not in cache:
            roots.append(pathlib.Path(tempfile.mkdtemp(prefix="hd", dir="/tmp")))
            cache[key] = loaders_for(roots[-1], pillar or {})
        loaders = cache[key]
        loaders.context.clear()  # no client (and its rate-limit memory) carried over between tests
        return loaders

    yield get
    for loaders in cache.values():
        loaders.reset_state()
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


def dns_pillar(emulator, tree=None, **dns):
    """The seed pillar plus a hecate:dns section pointed at the emulator."""
    tree = copy.deepcopy(tree or seed_tree())
    tree["dns"] = {
        "zone": ZONE,
        "token": emulator.token,
        "endpoint": f"{emulator.url}/v1",
        "allow_insecure_endpoint": True,
        "targets": {"ipv4": [V4], "ipv6": [V6]},
        **dns,
    }
    return {"hecate": tree}


def converge(salt_loaders, pillar, **kwargs):
    """One ``hetzner_dns.rrsets_managed`` run through ``state.single`` with ``pillar`` as the pillar."""
    return salt_loaders().states.hetzner_dns.rrsets_managed(name=ZONE, pillar=pillar, **kwargs)


def rel(domain):
    return "@" if domain == ZONE else domain[: -len(ZONE) - 1]


def seed_sets():
    return {(rel(d), t) for d in SEED_DOMAINS for t in ("A", "AAAA")}


def ours(emulator):
    zone_id = emulator._find_zone(ZONE)["id"]
    return {k for k, v in emulator.rrsets[zone_id].items() if v["labels"].get("managed-by") == "hecate"}


# -- the seed's zone -----------------------------------------------------------------------------------


# -- the seed's zone -----------------------------------------------------------------------------------


def test_seed_zone_converges_from_nothing_then_second_run_sends_zero_writes(hetzner, salt_loaders):
    pillar = dns_pillar(hetzner)
    first = converge(salt_loaders, pillar)
    assert first.result is True, first.comment
    assert len(first.changes) == 2 * len(SEED_DOMAINS) == 16
    records = hetzner.records(ZONE)
    for name, rtype in seed_sets():
        assert records[(name, rtype)] == ([V4] if rtype == "A" else [V6], 300)
    assert ours(hetzner) == seed_sets()  # every set carries hecate's labels
    assert records[("@", "SOA")][0] and len(records[("@", "NS")][0]) == 3
    writes = hetzner.writes
    assert len(writes) == 16 and all(w.method == "POST" and w.path.endswith("/rrsets") for w in writes)
    polls = [r for r in hetzner.reads if r.path == "/v1/actions"]
    assert len(polls) == 1 and len(polls[0].query["id"]) == 16  # all actions in one poll

    hetzner.reset_counts()
    second = converge(salt_loaders, pillar)
    assert second.result is True and second.changes == {}, second.comment
    assert hetzner.writes == []
    assert len(hetzner.requests) == 2  # the SOA serial moved (the first run wrote): the serial, then 18 sets in one page

    hetzner.reset_counts()
    dry = converge(salt_loaders, pillar, test=True)
    assert dry.result is True and dry.changes == {} and hetzner.writes == []
    assert [r.path for r in hetzner.requests] == ["/v1/zones/cybermonkey.dev/rrsets/@/SOA"]  # unchanged since: the serial only


def test_test_mode_shows_the_diff_and_writes_nothing(hetzner, salt_loaders):
    dry = converge(salt_loaders, dns_pillar(hetzner), test=True)
    assert dry.result is None
    assert set(dry.changes) == {f"{d} {t}" for d in SEED_DOMAINS for t in ("A", "AAAA")}
    assert dry.changes["hera.cybermonkey.dev A"] == {"old": None, "new": {"records": [V4], "ttl": 300}}
    assert "would write: 16 to create" in dry.comment
    assert hetzner.writes == [] and len(hetzner.requests) == 2  # the SOA serial, one page


def test_changed_target_and_ttl_cost_one_write_per_difference(hetzner, salt_loaders):
    assert converge(salt_loaders, dns_pillar(hetzner)).result is True
    tree = seed_tree()
    tree["reverse_proxy"]["caddy"]["routes"][1]["dns"] = {"ttl": 900}  # cloud
    hetzner.reset_counts()
    result = converge(salt_loaders, dns_pillar(hetzner, tree, targets={"ipv4": [V4, "203.0.113.8"], "ipv6": [V6]}))
    assert result.result is True, result.comment
    assert result.changes["hera.cybermonkey.dev A"] == {"records": {"old": [V4], "new": [V4, "203.0.113.8"]}}
    assert result.changes["cloud.cybermonkey.dev AAAA"] == {"ttl": {"old": 300, "new": 900}}
    commands = sorted(w.path.rsplit("/", 1)[-1] for w in hetzner.writes)
    assert commands == ["change_ttl"] * 2 + ["set_records"] * 8  # cloud A+AAAA ttl; 8 A sets get the new address
    assert hetzner.records(ZONE)[("cloud", "A")] == (sorted([V4, "203.0.113.8"]), 900)


def test_dry_run_before_terraform_made_the_edges_is_pending_not_an_error(hetzner, salt_loaders):
    pillar = dns_pillar(hetzner)
    del pillar["hecate"]["dns"]["targets"]  # the addresses come from terraform, which has not applied yet
    dry = converge(salt_loaders, pillar, test=True, awaiting_targets=True)
    assert dry.result is None and "terraform" in dry.comment
    assert hetzner.requests == []
    real = converge(salt_loaders, pillar, awaiting_targets=True)  # a real run without addresses still refuses
    assert real.result is False and "no ipv4/ipv6 edge address" in real.comment and hetzner.writes == []


def test_targets_argument_overrides_the_pillar(hetzner, salt_loaders):
    result = converge(salt_loaders, dns_pillar(hetzner), targets={"ipv4": ["198.51.100.20"]})
    assert result.result is True, result.comment
    records = hetzner.records(ZONE)
    assert records[("hera", "A")] == (["198.51.100.20"], 300) and ("hera", "AAAA") not in records


def test_hecate_dns_sls_converges_every_zone_and_is_off_without_dns(hetzner, salt_loaders):
    hetzner.add_zone("example.net")
    records = [{"name": "www.example.net", "type": "CNAME", "values": "cybermonkey.dev"}]
    pillar = dns_pillar(hetzner, zones=["example.net"], records=records)
    result = salt_loaders().modules.state.sls("hecate.dns", pillar=pillar)
    assert [r.result for r in result] == [True, True], result
    assert hetzner.records("example.net")[("www", "CNAME")] == (["cybermonkey.dev."], 300)
    assert seed_sets() <= set(hetzner.records(ZONE))

    hetzner.reset_counts()
    off = salt_loaders().modules.state.sls("hecate.dns", pillar={"hecate": seed_tree()})
    assert [r.result for r in off] == [True] and hetzner.requests == []


# -- pruning, protection, conflicts ---------------------------------------------------------------------


def test_removed_route_is_pruned_only_when_labelled_and_prune_is_on(hetzner, salt_loaders):
    assert converge(salt_loaders, dns_pillar(hetzner)).result is True
    hetzner.put_rrset(ZONE, "manual", "A", ["192.0.2.99"])  # someone's hand-made set, unlabelled
    hetzner.put_rrset(ZONE, "stage", "A", ["192.0.2.98"], labels={"managed-by": "hecate", "hecate-owner": "staging"})
    tree = seed_tree()
    routes = tree["reverse_proxy"]["caddy"]["routes"]
    tree["reverse_proxy"]["caddy"]["routes"] = [r for r in routes if r["service"] != "minio-console"]

    hetzner.reset_counts()
    kept = converge(salt_loaders, dns_pillar(hetzner, tree))
    assert kept.result is True and kept.changes == {} and hetzner.writes == []
    assert ("s3", "A") in hetzner.records(ZONE)

    pruned = converge(salt_loaders, dns_pillar(hetzner, tree, prune=True))
    assert pruned.result is True, pruned.comment
    assert set(pruned.changes) == {"s3.cybermonkey.dev A", "s3.cybermonkey.dev AAAA"}
    assert [(w.method, w.path) for w in hetzner.writes] == [
        ("DELETE", "/v1/zones/cybermonkey.dev/rrsets/s3/A"),
        ("DELETE", "/v1/zones/cybermonkey.dev/rrsets/s3/AAAA"),
    ]
    records = hetzner.records(ZONE)
    assert ("s3", "A") not in records and ("s3api", "A") in records
    assert ("manual", "A") in records and ("stage", "A") in records
    assert ("@", "SOA") in records and ("@", "NS") in records


def test_first_contact_with_a_1000_set_zone_costs_only_reads_without_prune(hetzner, salt_loaders):
    # A zone hecate did not create: 1000 sets (the seed's 16 route sets + 984 extra records), all already
    # right, none labelled. Labels matter only for pruning: without prune, first contact costs the reads
    # (the SOA serial, 21 pages of 50 for 1002 sets); with prune the plan shows the adoption and its cost first.
    extra = []
    for i in range(1000 - len(seed_sets())):
        name, address = f"h{i:04d}", f"10.1.{i // 250}.{i % 250 + 1}"
        extra.append({"name": f"{name}.{ZONE}", "type": "A", "values": [address], "ttl": 300})
        hetzner.put_rrset(ZONE, name, "A", [address], ttl=300)
    for name, rtype in seed_sets():
        hetzner.put_rrset(ZONE, name, rtype, [V4 if rtype == "A" else V6], ttl=300)
    hetzner.reset_counts()
    result = converge(salt_loaders, dns_pillar(hetzner, records=extra))
    assert result.result is True and result.changes == {}, result.comment
    assert (len(hetzner.requests), len(hetzner.writes)) == (22, 0)
    assert ours(hetzner) == set()

    hetzner.reset_counts()
    dry = converge(salt_loaders, dns_pillar(hetzner, records=extra, prune=True), test=True)
    assert dry.result is None and len(dry.changes) == 1000
    assert "would write: 0 to create, 0 to update, 1000 to adopt (1000 label writes, for prune), 0 to delete" in dry.comment
    assert dry.changes["hera.cybermonkey.dev A"] == {"labels": {"old": {}, "new": OURS}}
    assert (len(hetzner.requests), len(hetzner.writes)) == (22, 0)

    hetzner.reset_counts()
    adopted = converge(salt_loaders, dns_pillar(hetzner, records=extra, prune=True))
    assert adopted.result is True and len(adopted.changes) == 1000, adopted.comment
    assert (len(hetzner.requests), len(hetzner.writes)) == (1022, 1000)
    assert {w.method for w in hetzner.writes} == {"PUT"} and len(ours(hetzner)) == 1000
    hetzner.reset_counts()
    again = converge(salt_loaders, dns_pillar(hetzner, records=extra, prune=True))
    assert again.result is True and again.changes == {} and (len(hetzner.requests), len(hetzner.writes)) == (22, 0)
    hetzner.reset_counts()
    steady = converge(salt_loaders, dns_pillar(hetzner, records=extra, prune=True))  # found as desired at this serial
    assert steady.result is True and (len(hetzner.requests), len(hetzner.writes)) == (1, 0)


def test_protected_set_is_reported_as_failure_and_the_rest_converges(hetzner, salt_loaders):
    hetzner.put_rrset(ZONE, "hera", "A", ["192.0.2.1"], ttl=300, labels=OURS, protected=True)
    dry = converge(salt_loaders, dns_pillar(hetzner), test=True)
    assert dry.result is False and "change-protected" in dry.comment and hetzner.writes == []
    result = converge(salt_loaders, dns_pillar(hetzner))
    assert result.result is False
    assert "hera.cybermonkey.dev A: is change-protected" in result.comment
    assert hetzner.records(ZONE)[("hera", "A")] == (["192.0.2.1"], 300)
    assert seed_sets() - {("hera", "A")} <= set(hetzner.records(ZONE))
    assert "hera.cybermonkey.dev A" not in result.changes and len(result.changes) == 15
    assert not [w for w in hetzner.writes if "/hera/A" in w.raw_path]


def test_route_switched_to_cname_replaces_its_own_a_records(hetzner, salt_loaders):
    assert converge(salt_loaders, dns_pillar(hetzner)).result is True
    hetzner.put_rrset(ZONE, "jenkins", "TXT", ['"hand made"'])  # not ours: blocks a CNAME at jenkins
    tree = seed_tree()
    tree["reverse_proxy"]["caddy"]["routes"][2]["dns"] = {"cname": "edge.example.net"}  # observe
    tree["reverse_proxy"]["caddy"]["routes"][3]["dns"] = {"cname": "edge.example.net"}  # jenkins
    result = converge(salt_loaders, dns_pillar(hetzner, tree))
    assert result.result is False
    assert "jenkins.cybermonkey.dev CNAME: conflicts with an existing TXT set hecate does not own" in result.comment
    records = hetzner.records(ZONE)
    assert records[("observe", "CNAME")] == (["edge.example.net."], 300)
    assert ("observe", "A") not in records and ("observe", "AAAA") not in records
    assert ("jenkins", "A") in records and ("jenkins", "AAAA") in records and ("jenkins", "CNAME") not in records


# -- faults ------------------------------------------------------------------------------------------


@pytest.mark.fault
def test_429_storm_is_waited_out(hetzner, salt_loaders):
    reset = str(int(time.time()) + 1)
    headers = {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": reset}
    body = {"error": {"code": "rate_limit_exceeded", "message": "slow down", "details": None}}
    hetzner.inject(status=429, times=3, method="GET", path=r"/rrsets$", headers=headers, body=body)
    hetzner.inject(status=429, times=3, method="POST", path=r"/rrsets$", headers=headers, body=body)
    result = converge(salt_loaders, dns_pillar(hetzner))
    assert result.result is True, result.comment
    assert seed_sets() <= set(hetzner.records(ZONE))
    assert len([r for r in hetzner.reads if r.path.endswith("/rrsets")]) == 4  # refused 3 times, then read
    creates = [w for w in hetzner.writes if w.path.endswith("/rrsets")]
    assert len(creates) == 16 + 3  # the first create was refused 3 times (a 429 is not processed): sent again
    assert len({(w.body["name"], w.body["type"]) for w in creates}) == 16


def test_a_no_op_reads_the_soa_serial_alone_until_the_zone_moves(hetzner, salt_loaders):
    # A zone of 1000 sets. The first run writes (the serial moves), the second reads it in full (22 requests)
    # and finds nothing to do: from then on a no-op is one request, dry run or not, until the zone moves or
    # the pillar does. The Cloud API increases the SOA serial on every change (the emulator as its docs say).
    extra = [{"name": f"h{i:04d}.{ZONE}", "type": "A", "values": [f"10.1.{i // 250}.{i % 250 + 1}"]} for i in range(984)]
    pillar = dns_pillar(hetzner, records=extra)
    assert converge(salt_loaders, pillar).result is True
    hetzner.reset_counts()
    assert converge(salt_loaders, pillar).changes == {} and (len(hetzner.requests), len(hetzner.writes)) == (22, 0)
    for test in (False, True):
        hetzner.reset_counts()
        quiet = converge(salt_loaders, pillar, test=test)
        assert quiet.result is True and quiet.changes == {} and "unchanged since it was read in full" in quiet.comment
        assert [r.path for r in hetzner.requests] == [f"/v1/zones/{ZONE}/rrsets/@/SOA"]

    hetzner.put_rrset(ZONE, "h0001", "A", ["10.9.9.9"], ttl=300)  # a hand edit: the serial moves
    hetzner.reset_counts()
    repaired = converge(salt_loaders, pillar)
    assert list(repaired.changes) == [f"h0001.{ZONE} A"] and (len(hetzner.requests), len(hetzner.writes)) == (24, 1)
    assert hetzner.records(ZONE)[("h0001", "A")] == (["10.1.0.2"], 300)
    hetzner.reset_counts()
    assert converge(salt_loaders, pillar).changes == {} and len(hetzner.requests) == 22  # its own write moved it
    hetzner.reset_counts()
    assert converge(salt_loaders, dns_pillar(hetzner, records=extra, ttl=600), test=True).result is None  # another pillar
    assert len(hetzner.requests) == 22


def test_a_zone_created_again_at_the_same_serial_is_read_in_full(hetzner, salt_loaders):
    pillar = dns_pillar(hetzner)
    for _ in range(2):
        assert converge(salt_loaders, pillar).result is True
    old = hetzner._find_zone(ZONE)
    serial = hetzner.serials[old["id"]]
    hetzner.reset()  # deleted and created again, empty, with the very serial the last converge saw
    new = hetzner.add_zone(ZONE)
    hetzner.serials[new["id"]] = serial - 1
    hetzner._touch(new["id"])
    assert new["id"] != old["id"] and hetzner.serials[new["id"]] == serial
    redone = converge(salt_loaders, pillar)
    assert redone.result is True and len(redone.changes) == 16 and seed_sets() <= set(hetzner.records(ZONE))


@pytest.mark.parametrize("routes", [10, 1000, 5000])
def test_a_first_deploy_with_the_wildcard_costs_seven_requests_at_any_route_count(hetzner, salt_loaders, routes):
    # every route resolves to the edge addresses: one *.zone set per type answers them all
    tree = copy.deepcopy(seed_tree())
    backend = tree["reverse_proxy"]["caddy"]["routes"][0]["backend"]
    tree["reverse_proxy"]["caddy"]["routes"] += [
        {"domain": f"app{i}.{ZONE}", "backend": backend, "service": f"app{i}"} for i in range(routes - len(SEED_DOMAINS))
    ]
    pillar = dns_pillar(hetzner, tree, wildcard=True)
    first = converge(salt_loaders, pillar)
    assert first.result is True and set(first.changes) == {f"*.{ZONE} A", f"*.{ZONE} AAAA", f"{ZONE} A", f"{ZONE} AAAA"}
    assert f"{routes - 1} routes answered by *.{ZONE}" in first.comment  # the apex keeps its own sets
    assert len(hetzner.requests) == 7  # the SOA serial, one page, 4 creates, one poll of their actions
    assert sorted(hetzner.records(ZONE)) == [("*", "A"), ("*", "AAAA"), ("@", "A"), ("@", "AAAA"), ("@", "NS"), ("@", "SOA")]
    hetzner.reset_counts()
    assert converge(salt_loaders, pillar).changes == {} and len(hetzner.requests) == 2


def test_writes_the_rate_limit_will_make_wait_are_said_before_they_are_sent(hetzner, salt_loaders):
    hetzner.reset(rate_limit=10, refill_per_second=0.5)
    hetzner.add_zone(ZONE)
    dry = converge(salt_loaders, dns_pillar(hetzner), test=True)
    ret = dry.full_return  # the state's return as Salt keeps it, warnings included
    assert ret["result"] is None and hetzner.writes == []
    (line,) = ret["warnings"]
    prefix = f"zone {ZONE}: pacing: 16 writes need about 17 requests and the Cloud API's rate limit has 8 of 10 left: about "
    assert line.startswith(prefix) and line.endswith(" s of waiting (hecate:dns:wildcard lets routes share one set)"), line
    # 9 requests more than are left, one back every 2 s; Reset is whole seconds (rounded up): up to 2.5 s each
    assert 16 <= int(line[len(prefix) :].split()[0]) <= 23


@pytest.mark.fault
def test_rate_limit_headers_pace_the_client(hetzner, salt_loaders):
    # A bucket of 6 that refills 25/s, for 19 requests: a client that ignores RateLimit-Remaining runs into
    # a string of 429s; one that honours it waits for a request to come back and is never refused.
    hetzner.reset(rate_limit=6, refill_per_second=25)
    hetzner.add_zone(ZONE)
    result = converge(salt_loaders, dns_pillar(hetzner))
    assert result.result is True, result.comment
    assert seed_sets() <= set(hetzner.records(ZONE))
    assert len(hetzner.requests) == 19  # the SOA serial, one page, 16 creates, one poll
    assert hetzner.rate_limited == 0


@pytest.mark.fault
def test_a_post_that_timed_out_is_read_back_not_sent_again(hetzner, salt_loaders):
    hetzner.slow_reply(r"/rrsets$", delay=1.6)  # the first create is applied, its answer comes late
    result = converge(salt_loaders, dns_pillar(hetzner, timeout=1))
    assert result.result is True, result.comment
    creates = [w for w in hetzner.writes if w.path.endswith("/rrsets")]
    assert len(creates) == 16  # each set created exactly once: the timed-out one was re-read, not replayed
    assert len({(w.body["name"], w.body["type"]) for w in creates}) == 16
    assert seed_sets() <= set(hetzner.records(ZONE))


@pytest.mark.fault
def test_a_post_that_timed_out_and_did_not_land_is_reported_not_replayed(hetzner, salt_loaders):
    hetzner.inject(delay=1.6, times=1, method="POST", path=r"/rrsets$")  # applied only after 1.6s
    pillar = dns_pillar(hetzner, timeout=1)
    result = converge(salt_loaders, pillar)
    assert result.result is False
    assert "not applied" in result.comment and "Not sent again" in result.comment
    first = hetzner.writes[0].body
    assert len([w for w in hetzner.writes if w.body == first]) == 1
    time.sleep(1.0)  # the slow request lands on the server meanwhile
    hetzner.reset_counts()
    again = converge(salt_loaders, pillar)
    assert again.result is True and hetzner.writes == [] and again.changes == {}


@pytest.mark.fault
def test_reads_are_retried_on_5xx_and_an_unclear_write_is_checked(hetzner, salt_loaders):
    hetzner.inject(status=503, times=2, method="GET", path=r"/rrsets$")
    hetzner.inject(status=502, times=1, method="POST", path=r"/rrsets$", after=True)  # applied, answer lost
    result = converge(salt_loaders, dns_pillar(hetzner))
    assert result.result is True, result.comment
    assert len([r for r in hetzner.reads if r.path.endswith("/rrsets")]) == 3
    assert len([w for w in hetzner.writes if w.path.endswith("/rrsets")]) == 16


@pytest.mark.fault
def test_failed_action_is_a_failure_and_the_next_run_repairs_it(hetzner, salt_loaders):
    hetzner.fail_actions = 1
    pillar = dns_pillar(hetzner)
    result = converge(salt_loaders, pillar)
    assert result.result is False and "failed" in result.comment
    assert len(result.changes) == 15
    again = converge(salt_loaders, pillar)
    assert again.result is True and len(again.changes) == 1
    assert seed_sets() <= set(hetzner.records(ZONE))


def _ttl_and_address_change(hetzner, salt_loaders):
    """Converge the seed, then a pillar where cloud A needs set_records AND change_ttl (two actions, one set)."""
    assert converge(salt_loaders, dns_pillar(hetzner)).result is True
    tree = seed_tree()
    tree["reverse_proxy"]["caddy"]["routes"][1]["dns"] = {"ttl": 900}  # cloud
    hetzner.reset_counts()
    return dns_pillar(hetzner, tree, targets={"ipv4": [V4, "203.0.113.8"], "ipv6": [V6]})


@pytest.mark.fault
def test_two_writes_on_one_rrset_wait_for_the_running_action_and_retry_conflicts(hetzner, salt_loaders):
    # The API refuses an action on a set whose previous action still runs (423 locked) and may answer
    # 409 conflict "please retry": set_records then change_ttl on cloud A, actions running for 3 polls,
    # two conflicts on that change_ttl and one on a set_records. hcloud-go retries conflicts
    # (client_handler_retry.go); hecate waits for its own running action instead of being refused.
    pillar = _ttl_and_address_change(hetzner, salt_loaders)
    hetzner.action_polls = 3
    hetzner.inject_error(409, "conflict", times=2, method="POST", path=r"/cloud/A/actions/change_ttl$")
    hetzner.inject_error(409, "conflict", times=1, method="POST", path=r"/hera/A/actions/set_records$")
    started = time.monotonic()
    result = converge(salt_loaders, pillar)
    assert result.result is True, result.comment
    assert hetzner.records(ZONE)[("cloud", "A")] == (sorted([V4, "203.0.113.8"]), 900)
    assert hetzner.records(ZONE)[("hera", "A")] == (sorted([V4, "203.0.113.8"]), 300)
    ttl_posts = [w for w in hetzner.writes if w.path.endswith("/cloud/A/actions/change_ttl")]
    assert len(ttl_posts) == 3  # two conflicts, then accepted: retries are counted, not open-ended
    assert len(hetzner.writes) == 10 + 3  # 8 set_records + 2 change_ttl, plus the three refused ones
    assert not [r for r in hetzner.requests if r.path.endswith("/actions") and r.path.startswith("/v1/zones")]
    assert time.monotonic() - started < 10


@pytest.mark.fault
def test_a_set_locked_by_someone_elses_action_is_waited_for(hetzner, salt_loaders):
    pillar = _ttl_and_address_change(hetzner, salt_loaders)
    hetzner.action_polls = 2
    other = requests.post(  # another client's change on cloud A, its action still running
        f"{hetzner.url}/v1/zones/{ZONE}/rrsets/cloud/A/actions/change_protection",
        json={"change": False},
        headers={"Authorization": f"Bearer {hetzner.token}"},
        timeout=5,
    )
    assert other.status_code == 201 and other.json()["action"]["status"] == "running"
    hetzner.reset_counts()
    result = converge(salt_loaders, pillar)
    assert result.result is True, result.comment
    assert hetzner.records(ZONE)[("cloud", "A")] == (sorted([V4, "203.0.113.8"]), 900)
    lists = [r for r in hetzner.reads if r.path == f"/v1/zones/{ZONE}/actions"]
    assert len(lists) == 1 and lists[0].query["status"] == ["running"]  # one 423, then waited for that action
    assert len([w for w in hetzner.writes if w.path.endswith("/cloud/A/actions/set_records")]) == 2


@pytest.mark.fault
@pytest.mark.parametrize(("status", "code"), [(409, "conflict"), (423, "locked")])
def test_a_persistent_conflict_ends_in_a_clean_error_within_max_wait(hetzner, salt_loaders, status, code):
    pillar = _ttl_and_address_change(hetzner, salt_loaders)
    pillar["hecate"]["dns"]["max_wait"] = 2
    hetzner.inject_error(status, code, times=1000, method="POST", path=r"/cloud/A/actions/set_records$")
    started = time.monotonic()
    result = converge(salt_loaders, pillar)
    elapsed = time.monotonic() - started
    assert result.result is False
    assert (
        f"cloud.cybermonkey.dev A: set_records: hetzner_dns: set records of cloud A: the API still answers {status} {code}"
        in result.comment
    )
    assert "Traceback" not in result.comment and hetzner.token not in result.comment
    attempts = [w for w in hetzner.writes if w.path.endswith("/cloud/A/actions/set_records")]
    assert 2 <= len(attempts) <= 6  # at most 5 retries, fewer when max_wait runs out first
    assert elapsed < 2 + 5
    assert hetzner.records(ZONE)[("hera", "A")][0] == sorted([V4, "203.0.113.8"])  # the other sets converged


@pytest.mark.fault
def test_a_wrong_token_never_shows_up_in_errors(hetzner, salt_loaders):
    result = converge(salt_loaders, dns_pillar(hetzner, token="wrong-token-value-1234"))
    assert result.result is False
    assert "401" in result.comment and "wrong-token-value-1234" not in result.comment
    assert hetzner.requests[0].headers["authorization"] == "Bearer wrong-token-value-1234"


# -- validation before any request -----------------------------------------------------------------------


def _bad_records(*records):
    return {"records": [{"name": "r0.cybermonkey.dev", "type": "A", "values": ["192.0.2.1"]}, *records]}


@pytest.mark.fault
@pytest.mark.parametrize(
    ("dns", "expected"),
    [
        (
            _bad_records({"name": "r1.cybermonkey.dev", "type": "SPF", "values": ["x"]},
                         {"name": "r2.cybermonkey.dev", "type": "A", "values": ["192.0.2.1"], "ttl": 30}),
            ["hecate:dns:records[1]:type: must be one of", "hecate:dns:records[2]:ttl: 30 is out of range 60..2147483647"],
        ),
        (
            _bad_records({"name": "r1.cybermonkey.dev", "type": "TXT", "values": ['"open']},
                         {"name": "x.example.org", "type": "A", "values": ["192.0.2.1"]}),
            ["hecate:dns:records[1]:values: value 0", "unterminated",
             "hecate:dns:records[2]:name: x.example.org is outside every managed DNS zone"],
        ),
        ({"token": None}, ["hecate:dns:token is not set"]),
        ({"token": "vault:secret/hecate/hetzner/token"}, ["unresolved vault: reference"]),
        ({"allow_insecure_endpoint": False}, ["is not HTTPS"]),
        ({"targets": {}}, ["hecate:dns:targets: no ipv4/ipv6 edge address"]),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_any_request(hetzner, salt_loaders, dns, expected):
    pillar = dns_pillar(hetzner, **dns)
    pillar["hecate"]["dns"] = {k: v for k, v in pillar["hecate"]["dns"].items() if v is not None}
    result = converge(salt_loaders, pillar)
    assert result.result is False
    for text in expected:
        assert text in result.comment
    assert hetzner.requests == []


def test_route_outside_the_zone_is_refused_before_any_request(hetzner, salt_loaders):
    tree = seed_tree()
    tree["reverse_proxy"]["caddy"]["routes"][0]["domain"] = "hera.example.com"
    result = converge(salt_loaders, dns_pillar(hetzner, tree))
    assert result.result is False
    assert ":caddy:routes[0](hera.example.com):domain: hera.example.com is outside every managed DNS zone" in result.comment
    assert hetzner.requests == []


# -- the execution module -----------------------------------------------------------------------------


@pytest.fixture
def dns(hetzner, salt_loaders):
    return salt_loaders(dns_pillar(hetzner)).modules.hetzner_dns


def test_rrsets_reads_every_page_of_fifty(hetzner, dns):
    for i in range(120):
        hetzner.put_rrset(ZONE, f"h{i:03d}", "A", [f"192.0.2.{i + 1}"])
    sets = dns.rrsets(ZONE)
    assert len(sets) == 122
    pages = [r for r in hetzner.requests if r.path.endswith("/rrsets")]
    assert [(r.arg("page"), r.arg("per_page")) for r in pages] == [("1", "50"), ("2", "50"), ("3", "50")]
    assert [s["name"] for s in dns.rrsets(ZONE, type="A", name="h007.cybermonkey.dev")] == ["h007"]
    assert dns.rrsets(ZONE, label_selector="managed-by=hecate") == []


def test_zones_and_zone(hetzner, dns):
    assert [z["name"] for z in dns.zones()] == [ZONE]
    assert dns.zone(ZONE)["record_count"] == 4  # SOA + 3 NS
    with pytest.raises(CommandExecutionError, match="404"):
        dns.zone("missing.example")


def test_rrset_write_functions_round_trip(hetzner, dns):
    created = dns.create_rrset(ZONE, "www", "a", ["192.0.2.1"], ttl=120, labels={"team": "edge"})
    assert created["action"]["status"] == "success"
    assert dns.rrset(ZONE, "www.cybermonkey.dev", "A")["labels"] == {"team": "edge"}
    dns.add_records(ZONE, "www", "A", ["192.0.2.2"])
    dns.remove_records(ZONE, "www", "A", ["192.0.2.1"])
    dns.change_ttl(ZONE, "www", "A", 600)
    assert hetzner.records(ZONE)[("www", "A")] == (["192.0.2.2"], 600)
    dns.set_records(ZONE, "www", "A", ["192.0.2.3", "192.0.2.4"])
    assert dns.set_labels(ZONE, "www", "A", {"managed-by": "hecate"})["labels"] == {"managed-by": "hecate"}
    dns.change_protection(ZONE, "www", "A", True)
    with pytest.raises(CommandExecutionError, match="423"):
        dns.delete_rrset(ZONE, "www", "A")
    dns.change_protection(ZONE, "www", "A", False)
    dns.delete_rrset(ZONE, "www", "A")
    assert dns.rrset(ZONE, "www", "A") is None


def test_duplicate_create_is_a_409(hetzner, dns):
    dns.create_rrset(ZONE, "dup", "A", ["192.0.2.1"])
    with pytest.raises(CommandExecutionError, match="409"):
        dns.create_rrset(ZONE, "dup", "A", ["192.0.2.2"])


def test_names_are_url_escaped_and_txt_is_chunked_by_bytes(hetzner, dns):
    text = "v=DKIM1; k=rsa; p=" + "ü" * 300  # 618 bytes
    dns.create_rrset(ZONE, "@", "TXT", [text])
    dns.set_records(ZONE, "@", "TXT", [text, "second"])
    dns.create_rrset(ZONE, "*", "A", ["192.0.2.1"])
    dns.change_ttl(ZONE, "*.cybermonkey.dev", "A", 60)
    raw = [w.raw_path for w in hetzner.writes]
    assert "/v1/zones/cybermonkey.dev/rrsets/%40/TXT/actions/set_records" in raw
    assert "/v1/zones/cybermonkey.dev/rrsets/%2A/A/actions/change_ttl" in raw
    stored = sorted(r["value"] for r in hetzner.rrset(ZONE, "@", "TXT")["records"])
    assert stored[0] == '"second"'
    chunks = stored[1][1:-1].split('" "')
    assert [len(c.encode()) for c in chunks] == [254, 254, 110]  # bytes, never splitting a character
    assert "".join(chunks) == text


def test_wait_actions_polls_fifty_at_a_time(hetzner, dns):
    hetzner.action_polls = 2
    ids = [dns.create_rrset(ZONE, f"n{i}", "A", ["192.0.2.1"], wait=False)["action"]["id"] for i in range(60)]
    hetzner.reset_counts()
    done = dns.wait_actions(ids)
    assert [a["id"] for a in done] == ids and {a["status"] for a in done} == {"success"}
    polls = [len(r.query["id"]) for r in hetzner.requests]
    assert polls == [50, 10, 50, 10]  # two rounds (running, then success), two batches each


def test_arguments_are_checked_before_any_request(hetzner, dns):
    with pytest.raises(SaltInvocationError, match="out of range"):
        dns.create_rrset(ZONE, "x", "A", ["192.0.2.1"], ttl=10)
    with pytest.raises(SaltInvocationError, match="IPv4"):
        dns.create_rrset(ZONE, "x", "A", ["2001:db8::1"])
    with pytest.raises(SaltInvocationError, match="not a record type"):
        dns.rrset(ZONE, "x", "SPF")
    with pytest.raises(SaltInvocationError, match="outside zone"):
        dns.rrset(ZONE, "x.example.org.", "A")
    with pytest.raises(SaltInvocationError, match="belongs to Hetzner"):
        dns.delete_rrset(ZONE, "@", "NS")
    assert hetzner.requests == []


# -- single-set states ------------------------------------------------------------------------------------


def test_rrset_present_and_absent(hetzner, salt_loaders):
    pillar = dns_pillar(hetzner)
    states = salt_loaders().states.hetzner_dns
    args = {"name": "@", "zone": ZONE, "type": "MX", "values": ["10 mail.cybermonkey.dev"], "ttl": 3600, "pillar": pillar}
    dry = states.rrset_present(**args, test=True)
    assert dry.result is None and hetzner.writes == []
    assert states.rrset_present(**args).result is True
    assert hetzner.records(ZONE)[("@", "MX")] == (["10 mail.cybermonkey.dev."], 3600)
    hetzner.reset_counts()
    again = states.rrset_present(**args)
    assert again.result is True and again.changes == {} and hetzner.writes == []
    changed = states.rrset_present(**{**args, "ttl": 600})
    assert changed.changes == {"cybermonkey.dev MX": {"ttl": {"old": 3600, "new": 600}}}
    assert [w.path.rsplit("/", 1)[-1] for w in hetzner.writes] == ["change_ttl"]

    gone_args = {"name": "@", "zone": ZONE, "type": "MX", "pillar": pillar}
    assert states.rrset_absent(**gone_args, test=True).result is None
    gone = states.rrset_absent(**gone_args)
    assert gone.result is True and gone.changes
    assert ("@", "MX") not in hetzner.records(ZONE)
    assert states.rrset_absent(**gone_args).changes == {}
    refused = states.rrset_absent(**{**gone_args, "type": "SOA"})
    assert refused.result is False and ("@", "SOA") in hetzner.records(ZONE)
