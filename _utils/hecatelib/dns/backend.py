"""DNS as a backend of the engine: the ``dns`` stage creates and updates the record sets the routes and the
pillar's records need before Caddy asks ACME for them (expand), and removes those hecate owns and the
pillar dropped after the switch, when ``hecate:dns:prune`` allows (contract); a failed run is undone by
converging the previous deployment's tree again; its drift, health and its part of a backup. Which API
holds the zone is the provider's business (``hecatelib.dns.providers``): nothing here names one."""

from hecatelib import backups, health
from hecatelib.dns import providers
from hecatelib.dns import zones as dns_zones
from hecatelib.engine import results
from hecatelib.engine.backend import CONTROLLER, EXPAND, Backend, Stage, failures, first_ok, reapply_previous
from hecatelib.spec import Report

STAGE = Stage("dns", CONTROLLER, "hecate.dns", EXPAND)


def notes(tree, planned):
    """Hosts the routes stage would remove whose record set stays (no prune): said, not hidden."""
    routes = (planned.get("routes") or {}).get("raw") or {}
    if BACKEND.may_prune(tree):
        return []
    return [f"{host}: its DNS record stays (hecate:dns:prune is off)" for host in results.removed_hosts(routes)]


def dns_section(tree, call):
    if not dns_zones.enabled(tree):
        return list(health.NOT_CONFIGURED)
    dns = tree.get("dns") or {}
    targets = None
    if not (dns.get("targets") or {}).get("ipv4") and not (dns.get("targets") or {}).get("ipv6") and tree.get("terraform"):
        _, targets = first_ok(health.answers(call, "controller", "hecate_terraform.dns_targets"))
    report = Report("hecate")
    desired = dns_zones.compile_zones(tree, targets=targets if isinstance(targets, dict) else None, report=report, require_targets=False)
    rows = [{"zone": "-", "name": path, "type": "-", "want": "", "have": "", "ok": False, "state": "pillar: " + reason}
            for path, reason in report.errors]  # fmt: skip
    read = providers.of(tree).function("rrsets")
    for zone, wanted in sorted(desired.items()):
        answers = health.answers(call, "controller", read, zone)
        _, actual = first_ok(answers)
        if not isinstance(actual, list):
            rows.append({"zone": zone, "name": "-", "type": "-", "want": "", "have": "", "ok": False,
                         "state": "error: " + failures(answers, read)})  # fmt: skip
            continue
        index = {(r["name"], r["type"]): r for r in actual}
        folded = []
        if dns.get("wildcard"):  # the routes *.<zone> answers: one row for the wildcard, one per route below it
            wanted, folded = dns_zones.fold_wildcard(wanted, actual, dns_zones.owner_labels(tree))
        for (name, rtype), want in sorted(wanted.items()):
            have = index.get((name, rtype))
            have_records = dns_zones.actual_records(have, zone) if have else []
            if have is None:
                state = "missing"
            elif have_records != want["records"]:
                state = "differs"
            elif have.get("ttl") != want["ttl"]:
                state = f"ttl {have.get('ttl')} (want {want['ttl']})"
            else:
                state = "ok"
            rows.append({"zone": zone, "name": dns_zones.absolute_name(name, zone), "type": rtype, "want": " ".join(want["records"]),
                         "have": " ".join(have_records) if have else "-", "ok": state == "ok", "state": state})  # fmt: skip
        wildcard = [r for r in rows if r["zone"] == zone and r["name"] == f"{dns_zones.WILDCARD}.{zone}"]
        for name in folded:
            ok = bool(wildcard) and all(r["ok"] for r in wildcard)
            rows.append({"zone": zone, "name": dns_zones.absolute_name(name, zone), "type": "-", "want": f"{dns_zones.WILDCARD}.{zone}",
                         "have": f"{dns_zones.WILDCARD}.{zone}", "ok": ok, "state": "wildcard" if ok else "wildcard not ok"})  # fmt: skip
        if not wanted:
            rows.append({"zone": zone, "name": "-", "type": "-", "want": "", "have": "", "ok": True,
                         "state": "no record sets implied (no targets: set hecate:dns:targets)"})  # fmt: skip
    return rows


def collect_dns(tree, call):
    if not dns_zones.enabled(tree):
        return {"state": "not configured", "note": "hecate:dns has no zone"}, {}
    labels = dns_zones.owner_labels(tree)
    provider = providers.of(tree)
    read = provider.function("rrsets")
    files, problems = {}, []
    for zone in dns_zones.managed_zones(tree["dns"]):
        answers = call("controller", read, zone)
        _, rrsets = first_ok(answers)
        if not isinstance(rrsets, list):
            problems.append(f"{zone}: {failures(answers, read)}")
            continue
        files[f"dns/{backups.file_name(zone)}.json"] = {"zone": zone, "provider": provider.name, "labels": labels, "rrsets": rrsets}
    section = {"state": "saved" if not problems else "failed", "zones": sorted(f["zone"] for f in files.values()),
               "rrsets": sum(len(f["rrsets"]) for f in files.values())}  # fmt: skip
    if problems:
        section["problems"] = problems
    return section, files


def restore_dns(directory, manifest, call, test):
    done, problems = [], []
    for rel in sorted(r for r in manifest["files"] if r.startswith("dns/")):
        saved = backups.load(directory, rel)
        zone, labels, provider = saved["zone"], saved["labels"], providers.named(saved.get("provider"))
        ours = [r for r in saved["rrsets"] if dns_zones.is_ours(r, labels) and not provider.reserved(r)]
        rrsets = [{"name": r["name"], "type": r["type"], "values": [v.get("value") for v in r.get("records") or []], "ttl": r.get("ttl")}
                  for r in ours]  # fmt: skip
        if not rrsets:
            done.append(f"dns {zone}: the backup holds no record set hecate owned")
            continue
        owner = labels.get(dns_zones.OWNER)
        ok, did, comments = backups.single(call, provider.function("rrsets_managed"), test, name=zone, rrsets=rrsets, owner=owner)
        if ok:
            outcome = "would change" if test and did else "restored" if did else "already as saved"
            done.append(f"dns {zone}: {len(rrsets)} record sets {outcome}")
        else:
            problems.append(f"dns {zone}: {'; '.join(comments)}")
    return done, problems


BACKEND = Backend(
    name="dns",
    section="dns",
    schema=dns_zones.PILLAR_SCHEMA,
    check=dns_zones.check_pillar,
    stages=(STAGE,),
    enabled=dns_zones.enabled,
    prunes=True,
    undo=reapply_previous(STAGE),
    drift=True,
    notes=notes,
    health=(("dns", dns_section),),
    backup=collect_dns,
    restore_backup=restore_dns,
)
