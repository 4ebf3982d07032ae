"""Benchmark: requests per DNS converge, hecate's set-level state vs a naive one-read-per-set client; and
the requests of a first deploy of 10, 1000 and 5000 routes, one set per route or sharing ``*.zone``.

For N = 10, 100, 1000 record sets in one zone (plus SOA and apex NS), against the Hetzner Cloud DNS
emulator (every request contract-checked), through Salt's loader:

- hecate: ``hetzner_dns.rrsets_managed`` reads the zone's SOA serial, and in pages of 50 only when the
  serial moved since a converge found it as desired; diffs, writes only what differs, and waits for all
  actions together (50 per poll). "no-op" is the steady one; "1st no-op" the run right after a run that
  wrote (its own writes moved the serial: it reads in full once);
- naive: what per-set tools do (terraform's ``hcloud_zone_rrset`` refresh, a state per record): one
  ``GET`` per set, then one write per differing set and a wait on each action by itself. It runs the same
  module functions (``hetzner_dns.rrset`` / ``set_records``), so both sides pay the same per-request cost.

Requests are what count (the Cloud API allows 3600 an hour per project); seconds are printed too but
include Salt's own per-state overhead. Run: ``.venv/bin/python bench/dns.py`` (``make bench``).
"""

import copy
import json
import pathlib
import shutil
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != REPO / "bench"]  # this file would shadow dnspython
for path in (REPO / "_utils", REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from saltfactories.utils.functional import Loaders  # noqa: E402

from devstack.emulators.hetzner import HetznerDNS  # noqa: E402
from devstack.pillars import seed_tree  # noqa: E402
from hecatelib.dns import hetzner  # noqa: E402
from tests.conftest import minion_opts_for  # noqa: E402

ZONE = "bench.example.org"
SIZES = (10, 100, 1000)
CHANGES = (1, 10)
ROUTES = (10, 1000, 5000)
BUDGET = 3600  # the Cloud API's requests an hour


def desired(n, changed=()):
    """N A sets ``h0000``...; the ones in ``changed`` point at another address."""
    return [
        {"name": f"h{i:04d}", "type": "A", "values": [f"198.51.100.{200 if i in changed else 1 + i % 199}"], "ttl": 300} for i in range(n)
    ]


def hecate_converge(loaders, rrsets):
    result = loaders.states.hetzner_dns.rrsets_managed(name=ZONE, rrsets=rrsets)
    if result.result is not True:
        raise SystemExit(f"converge failed: {result.comment}")
    return result


def naive_converge(dns, rrsets):
    for item in rrsets:
        current = dns.rrset(ZONE, item["name"], item["type"])
        values = sorted(item["values"])
        if current is None:
            dns.create_rrset(ZONE, item["name"], item["type"], values, ttl=item["ttl"])
        elif sorted(r["value"] for r in current["records"]) != values:
            dns.set_records(ZONE, item["name"], item["type"], values)


def measure(emulator, run):
    emulator.reset_counts()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    return len(emulator.requests), len(emulator.writes), seconds


def main():
    emulator = HetznerDNS(rate_limit=10**9, refill_per_second=10**9, check_responses=False).start()
    root = pathlib.Path(tempfile.mkdtemp(prefix="hb", dir="/tmp"))
    pillar = {
        "hecate": {
            "dns": {
                "zone": ZONE,
                "token": emulator.token,
                "endpoint": f"{emulator.url}/v1",
                "allow_insecure_endpoint": True,
            }
        }
    }
    rows = []
    try:
        loaders = Loaders(minion_opts_for(root, pillar))
        dns = loaders.modules.hetzner_dns
        for n in SIZES:
            row = {"N": n}
            # hecate: fill the zone, then a no-op run, then k changes.
            emulator.reset()
            emulator.add_zone(ZONE)
            row["hecate_fill"] = measure(emulator, lambda n=n: hecate_converge(loaders, desired(n)))
            row["hecate_first_noop"] = measure(emulator, lambda n=n: hecate_converge(loaders, desired(n)))
            row["hecate_noop"] = measure(emulator, lambda n=n: hecate_converge(loaders, desired(n)))
            for k in CHANGES:
                if k <= n:
                    changed = set(range(0, n, max(1, n // k)))
                    row[f"hecate_k{k}"] = measure(emulator, lambda n=n, c=changed: hecate_converge(loaders, desired(n, c)))
                    hecate_converge(loaders, desired(n))  # back to the baseline (not measured)
            # naive: the same zone contents (hecate's baseline), the same changes. (Filling an empty zone the
            # naive way costs 3N requests: a 404 read, a create and its own action poll per set.)
            row["naive_noop"] = measure(emulator, lambda n=n: naive_converge(dns, desired(n)))
            for k in CHANGES:
                if k <= n:
                    changed = set(range(0, n, max(1, n // k)))
                    row[f"naive_k{k}"] = measure(emulator, lambda n=n, c=changed: naive_converge(dns, desired(n, c)))
                    naive_converge(dns, desired(n))
            if emulator.violations:
                raise SystemExit(f"contract violations: {emulator.violations[:3]}")
            rows.append(row)
        firsts = [first_deploys(loaders, emulator, n) for n in ROUTES]
        loaders.reset_state()
    finally:
        emulator.stop()
        shutil.rmtree(root, ignore_errors=True)
    report(rows)
    report_routes(firsts)


def routes_pillar(emulator, n, wildcard):
    """The seed's routes plus app0..: ``n`` routes in the zone, every one resolving to the edge address."""
    tree = copy.deepcopy(seed_tree())
    tree["global"]["domain"] = ZONE
    routes = tree["reverse_proxy"]["caddy"]["routes"][:1]
    backend = routes[0]["backend"]
    tree["reverse_proxy"]["caddy"]["routes"] = [{"domain": f"app{i}.{ZONE}", "backend": backend, "service": f"app{i}"} for i in range(n)]
    tree["dns"] = {"zone": ZONE, "token": emulator.token, "endpoint": f"{emulator.url}/v1", "allow_insecure_endpoint": True,
                   "targets": {"ipv4": ["198.51.100.7"]}, "wildcard": wildcard}  # fmt: skip
    return {"hecate": tree}


def first_deploys(loaders, emulator, n):
    """Requests [writes] of a first deploy of ``n`` routes into an empty zone, each route its own set and
    sharing ``*.zone``, and the no-op after it."""
    row = {"routes": n}
    for wildcard in (False, True):
        emulator.reset()
        emulator.add_zone(ZONE)
        pillar = routes_pillar(emulator, n, wildcard)

        def run(pillar=pillar):
            result = loaders.states.hetzner_dns.rrsets_managed(name=ZONE, pillar=pillar)
            if result.result is not True:
                raise SystemExit(f"converge failed: {result.comment}")

        kind = "wildcard" if wildcard else "per_route"
        row[kind] = measure(emulator, run)
        measure(emulator, run)  # its own writes moved the serial: read in full once
        row[f"{kind}_noop"] = measure(emulator, run)
    return row


def report_routes(rows):
    print()
    print("First deploy of N routes into an empty zone: requests [writes], one set per route vs *.zone (hecate:dns:wildcard);")
    print(f"pacing: the wait the Cloud API's {BUDGET} requests an hour (a full bucket) adds, as the run announces it")
    header = f"{'routes':>6} | {'one set per route':>17} | {'pacing':>8} | {'*.zone':>10} | {'no-op after':>11}"
    print(header)
    print("-" * len(header))
    for row in rows:
        (pr, pw, _), (wr, ww, _), (nr, _, _) = row["per_route"], row["wildcard"], row["wildcard_noop"]
        line = hetzner.pacing_line(pw, BUDGET, BUDGET, None, 0)
        pacing = line.split("about ")[2].split(" of waiting")[0] if line else "none"
        print(f"{row['routes']:>6} | {pr:>8} [{pw:>5}] | {pacing:>8} | {wr:>3} [{ww:>3}] | {nr:>11}")
    print()
    print("json_routes:", json.dumps({r["routes"]: {k: v[0] for k, v in r.items() if k != "routes"} for r in rows}, sort_keys=True))


def report(rows):
    print("Hetzner Cloud DNS: requests per converge [writes], hecate's rrsets_managed vs a naive one-read-per-set client")
    print("N = record sets in the zone besides SOA and apex NS; k = sets whose value changed")
    header = f"{'N':>5} | {'run':<10} | {'hecate':>14} | {'naive':>14} | {'naive/hecate':>12} | {'hecate s':>8} | {'naive s':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        hr, hw, hs = row["hecate_fill"]
        print(f"{row['N']:>5} | {'empty->N':<10} | {hr:>6} [{hw:>5}] | {'':>14} | {'':>12} | {hs:>8.2f} |")
        hr, hw, hs = row["hecate_first_noop"]
        print(f"{row['N']:>5} | {'1st no-op':<10} | {hr:>6} [{hw:>5}] | {'':>14} | {'':>12} | {hs:>8.2f} |")
        for run in ("noop", *(f"k{k}" for k in CHANGES)):
            if f"hecate_{run}" not in row:
                continue
            (hr, hw, hs), (nr, nw, ns) = row[f"hecate_{run}"], row[f"naive_{run}"]
            label = "no-op" if run == "noop" else f"k={run[1:]}"
            print(f"{row['N']:>5} | {label:<10} | {hr:>6} [{hw:>5}] | {nr:>6} [{nw:>5}] | {nr / hr:>11.1f}x | {hs:>8.2f} | {ns:>8.2f}")
    print()
    print("json:", json.dumps({r["N"]: {k: v[0] for k, v in r.items() if k != "N"} for r in rows}, sort_keys=True))


if __name__ == "__main__":
    main()
