"""``salt-run hecate.backup`` / ``hecate.restore``: what hecate manages, saved to a directory with a
manifest and checksums, and put back only when every checksum matches.

Like :mod:`hecatelib.health`, everything that talks to the backends goes through ``call(target, fun, *args,
**kwargs) -> {minion: {"ok": bool, "ret": value}}`` (``target``: ``edge``, ``controller`` or
``minion:<id>``), so the runner (LocalClient) and the tests (Salt's loader) share this code.

A backup directory::

    manifest.json          format, time, environment, what each section holds (or why it is empty),
                           and every file's sha256 and size
    SHA256SUMS             the same checksums for ``sha256sum -c`` (manifest.json included)
    caddy/<minion>.json    ``caddy.snapshot`` of each edge: the whole config and its Etag
    authentik.json         the objects hecate owns (its prefix): groups, proxy providers, applications,
                           outpost membership, policy bindings, by natural key (flows by slug)
    dns/<zone>.json        every RRSet of each managed zone (restore touches only hecate's)
    nomad/<job>.json       each hecate job's version and full spec

Restore verifies every checksum first and changes nothing if one file is missing, altered or
unexpected; then Caddy (``caddy.restore``, skipped when the live config is already the saved one),
authentik (the ``authentik.*_present`` states, in dependency order), DNS (``hetzner_dns.rrsets_managed``
with the saved sets hecate owned), Nomad (``nomad_job.rolled_back`` to the saved version). A section
that was not configured when the backup was taken is skipped with its note.
"""

import datetime
import hashlib
import json
import os
import re

from salt.exceptions import SaltException

from hecatelib.authentik import objects as authentik_objects
from hecatelib.dns import zones as dns_zones
from hecatelib.nomad import jobs as nomad_jobs
from hecatelib.spec import PillarError

FORMAT = 1
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
SECTIONS = ("caddy", "authentik", "dns", "nomad")
_SAFE = re.compile(r"[^A-Za-z0-9_.@-]")


class BackupError(Exception):
    """The backup could not be written, or a restore was refused (checksums, missing files)."""


# What reading or restoring one section can raise when a backend, Salt or the disk says no: recorded as that
# section's problem, the other sections go on. Anything else (TypeError, KeyError...) is a bug in hecate and
# keeps its traceback. SaltException covers CommandExecutionError, SaltInvocationError and LocalClient's
# SaltClientError / SaltReqTimeoutError; ValueError's two data cases are a saved file that is not JSON/UTF-8.
SECTION_ERRORS = (BackupError, SaltException, PillarError, OSError, json.JSONDecodeError, UnicodeDecodeError)


def _file_name(text):
    return _SAFE.sub("_", str(text)) or "_"


def _first_ok(answers):
    for minion, answer in sorted((answers or {}).items()):
        if answer.get("ok"):
            return minion, answer.get("ret")
    return None, None


def _errors(answers, what):
    if not answers:
        return f"no minion answered {what}"
    return "; ".join(f"{m}: {str(a.get('ret'))[:300]}" for m, a in sorted(answers.items()) if not a.get("ok"))


# -- collect ------------------------------------------------------------------------------------------------
def collect_caddy(tree, call):
    answers = call("edge", "caddy.snapshot")
    files, problems = {}, []
    for minion, answer in sorted((answers or {}).items()):
        snap = answer.get("ret")
        if answer.get("ok") and isinstance(snap, dict) and "config" in snap:
            files[f"caddy/{_file_name(minion)}.json"] = {"minion": minion, **snap}
        else:
            problems.append(f"{minion}: {str(snap)[:300]}")
    if not answers:
        problems.append("no edge minion answered caddy.snapshot")
    section = {"state": "saved" if files else "failed", "edges": sorted(f["minion"] for f in files.values())}
    if problems:
        section["problems"] = problems
    return section, files


def collect_authentik(tree, call):
    if not (tree.get("authentik") or {}).get("url"):
        return {"state": "not configured", "note": "hecate:authentik:url is not set"}, {}

    def one(fun, *args, **kwargs):
        answers = call("controller", fun, *args, **kwargs)
        via, value = _first_ok(answers)
        if via is None:
            raise BackupError(f"{fun}: {_errors(answers, fun)}")
        return value

    settings = authentik_objects.section(tree)
    prefix = settings["name_prefix"]
    outpost_name = settings["outpost"]["name"]
    flows = {f["pk"]: f["slug"] for f in one("authentik.flows") or []}
    groups = one("authentik.groups") or []
    group_names = {g["pk"]: g["name"] for g in groups}
    apps = {a["slug"]: a for a in one("authentik.applications", full=True) or []}
    providers = one("authentik.proxy_providers") or []
    owned_apps = {s: a for s, a in apps.items() if authentik_objects.owns_application(a, prefix)}
    owned_providers = [p for p in providers if authentik_objects.owns_provider(p, prefix, apps)]
    provider_names = {p["pk"]: p["name"] for p in providers}
    out = {"prefix": prefix, "outpost": outpost_name, "groups": [], "providers": [], "applications": [], "outpost_providers": [],
           "bindings": []}  # fmt: skip
    for group in groups:
        if authentik_objects.owns_group(group, prefix):
            out["groups"].append({"name": group["name"], "parents": sorted(group_names.get(p, p) for p in group.get("parents") or []),
                                  "attributes": group.get("attributes") or {}})  # fmt: skip
    for provider in owned_providers:
        item = {"name": provider["name"], "external_host": provider.get("external_host"), "mode": provider.get("mode") or "forward_single"}
        for field in ("authorization_flow", "invalidation_flow"):
            if provider.get(field):
                item[field] = flows.get(provider[field], provider[field])
        for field in ("cookie_domain", "skip_path_regex", "internal_host"):
            if provider.get(field):
                item[field] = provider[field]
        out["providers"].append(item)
    for slug, app in sorted(owned_apps.items()):
        item = {"name": slug, "display_name": app.get("name"), "provider": provider_names.get(app.get("provider"))}
        for field in ("meta_launch_url", "meta_publisher", "meta_description", "policy_engine_mode", "group"):
            if app.get(field) not in (None, ""):
                item[field] = app[field]
        out["applications"].append(item)
    outpost = one("authentik.outpost", outpost_name)
    owned_pks = {p["pk"] for p in owned_providers}
    out["outpost_providers"] = sorted(provider_names[p] for p in (outpost or {}).get("providers") or [] if p in owned_pks)
    targets = {a["pk"]: s for s, a in owned_apps.items()}
    if targets:
        for binding in one("authentik.policy_bindings", targets=sorted(targets)) or []:
            if not binding.get("group"):
                continue  # hecate binds groups only; user/policy bindings someone added are left to them
            out["bindings"].append({
                "application": targets[binding["target"]],
                "group": group_names.get(binding["group"], binding["group"]),
                "binding_order": binding.get("order", 0),
                "negate": bool(binding.get("negate")),
                "enabled": binding.get("enabled", True) is not False,
            })  # fmt: skip
    counts = {k: len(v) for k, v in out.items() if isinstance(v, list)}
    return {"state": "saved", "objects": counts}, {"authentik.json": out}


def collect_dns(tree, call):
    if not dns_zones.enabled(tree):
        return {"state": "not configured", "note": "hecate:dns has no zone"}, {}
    labels = dns_zones.owner_labels(tree)
    files, problems = {}, []
    for zone in dns_zones.managed_zones(tree["dns"]):
        answers = call("controller", "hetzner_dns.rrsets", zone)
        _, rrsets = _first_ok(answers)
        if not isinstance(rrsets, list):
            problems.append(f"{zone}: {_errors(answers, 'hetzner_dns.rrsets')}")
            continue
        files[f"dns/{_file_name(zone)}.json"] = {"zone": zone, "labels": labels, "rrsets": rrsets}
    section = {"state": "saved" if not problems else "failed", "zones": sorted(f["zone"] for f in files.values()),
               "rrsets": sum(len(f["rrsets"]) for f in files.values())}  # fmt: skip
    if problems:
        section["problems"] = problems
    return section, files


def collect_nomad(tree, call):
    if not tree.get("nomad"):
        return {"state": "not configured", "note": "hecate:nomad is not set"}, {}
    files, problems, absent = {}, [], []
    for name in nomad_jobs.JOBS:
        job_id = nomad_jobs.job_settings(tree, name)["id"]
        answers = call("controller", "nomad_job.inspect", job_id)
        via, job = _first_ok(answers)
        if via is None:
            problems.append(f"{job_id}: {_errors(answers, 'nomad_job.inspect')}")
        elif job is None:
            absent.append(job_id)
        else:
            files[f"nomad/{_file_name(job_id)}.json"] = {"id": job_id, "version": job.get("Version"), "job": job}
    section = {"state": "saved" if not problems else "failed", "jobs": {f["id"]: f["version"] for f in files.values()}}
    if absent:
        section["not_registered"] = absent
    if problems:
        section["problems"] = problems
    return section, files


COLLECTORS = {"caddy": collect_caddy, "authentik": collect_authentik, "dns": collect_dns, "nomad": collect_nomad}


def collect(tree, call, only=None):
    """Read every configured section. Returns ``(sections, files)``; a failing section is recorded, not raised."""
    sections, files = {}, {}
    for name in SECTIONS:
        if only and name not in only:
            sections[name] = {"state": "skipped", "note": "not selected (only=...)"}
            continue
        try:
            section, found = COLLECTORS[name](tree, call)
        except SECTION_ERRORS as exc:
            section, found = {"state": "failed", "problems": [f"{type(exc).__name__}: {exc}"[:500]]}, {}
        sections[name] = section
        files.update(found)
    return sections, files


# -- write and verify ---------------------------------------------------------------------------------------
def _dump(data):
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def write(directory, sections, files, environment=None, now=None):
    """Write ``files`` + manifest + SHA256SUMS into ``directory`` (created 0700; must be empty or absent)."""
    directory = os.path.abspath(directory)
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        raise BackupError(f"{directory} exists and is not an empty directory; choose a new one")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    blobs = {rel: _dump(data) for rel, data in sorted(files.items())}
    manifest = {
        "format": FORMAT,
        "created": (now or datetime.datetime.now(datetime.timezone.utc)).isoformat(timespec="seconds"),
        "environment": environment,
        "sections": sections,
        "files": {rel: {"sha256": _sha256(blob), "bytes": len(blob)} for rel, blob in blobs.items()},
    }
    blobs[MANIFEST] = _dump(manifest)
    for rel, blob in blobs.items():
        path = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
    sums = "".join(f"{_sha256(blob)}  {rel}\n" for rel, blob in sorted(blobs.items()))
    fd = os.open(os.path.join(directory, SUMS), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(sums)
    return manifest


def verify(directory):
    """Check a backup directory without changing anything. Returns ``(manifest or None, problems)``."""
    directory = os.path.abspath(directory)
    problems = []
    try:
        with open(os.path.join(directory, SUMS), encoding="utf-8") as handle:
            sums = {}
            for line in handle:
                if line.strip():
                    digest, _, rel = line.rstrip("\n").partition("  ")
                    sums[rel] = digest
    except OSError as exc:
        return None, [f"{SUMS}: cannot read it ({exc.strerror})"]
    try:
        with open(os.path.join(directory, MANIFEST), "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        return None, [f"{MANIFEST}: cannot read it ({exc.strerror})"]
    if sums.get(MANIFEST) != _sha256(raw):
        problems.append(f"{MANIFEST}: checksum does not match {SUMS}")
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        return None, [*problems, f"{MANIFEST}: not JSON ({exc})"]
    if manifest.get("format") != FORMAT:
        problems.append(f"{MANIFEST}: format {manifest.get('format')!r}, this hecate reads format {FORMAT}")
    listed = manifest.get("files") or {}
    for rel, meta in sorted(listed.items()):
        if sums.get(rel) != meta.get("sha256"):
            problems.append(f"{rel}: manifest and {SUMS} disagree")
        try:
            with open(os.path.join(directory, rel), "rb") as handle:
                data = handle.read()
        except OSError as exc:
            problems.append(f"{rel}: missing ({exc.strerror})")
            continue
        if _sha256(data) != meta.get("sha256") or len(data) != meta.get("bytes"):
            problems.append(f"{rel}: checksum mismatch (the file changed since the backup)")
    for rel in sorted(set(sums) - set(listed) - {MANIFEST}):
        problems.append(f"{rel}: in {SUMS} but not in the manifest")
    on_disk = set()
    for root, _, names in os.walk(directory):
        for name in names:
            on_disk.add(os.path.relpath(os.path.join(root, name), directory))
    for rel in sorted(on_disk - set(listed) - {MANIFEST, SUMS}):
        problems.append(f"{rel}: not part of the backup (unexpected file)")
    return manifest, problems


def load(directory, rel):
    with open(os.path.join(os.path.abspath(directory), rel), encoding="utf-8") as handle:
        return json.load(handle)


# -- restore ------------------------------------------------------------------------------------------------
def _state_results(answers):
    """``state.single`` answers -> (ok, changed, comments)."""
    ok, changed, comments = bool(answers), False, []
    for minion, answer in sorted((answers or {}).items()):
        ret = answer.get("ret")
        if not isinstance(ret, dict):
            ok = False
            comments.append(f"{minion}: {str(ret)[:300]}")
            continue
        for state in ret.values():
            if not isinstance(state, dict):
                ok = False
                comments.append(f"{minion}: {str(state)[:300]}")
                continue
            if state.get("result") is False:
                ok = False
            if state.get("changes"):
                changed = True
            if state.get("comment"):
                comments.append(str(state["comment"])[:500])
    return ok, changed, comments


def _single(call, state, test, **kwargs):
    answers = call("controller", "state.single", state, test=bool(test), **kwargs)
    return _state_results(answers)


def restore_caddy(directory, manifest, call, test):
    done, problems = [], []
    for rel in sorted(r for r in manifest["files"] if r.startswith("caddy/")):
        snap = load(directory, rel)
        minion = snap["minion"]
        target = f"minion:{minion}"
        answers = call(target, "caddy.snapshot")
        via, live = _first_ok(answers)
        if via is None:
            problems.append(f"caddy on {minion}: cannot read the live config: {_errors(answers, 'caddy.snapshot')}")
            continue
        if live.get("config") == snap["config"]:
            done.append(f"caddy on {minion}: already the saved config")
            continue
        if test:
            done.append(f"caddy on {minion}: would load the saved config (one reload)")
            continue
        answers = call(target, "caddy.restore", {"config": snap["config"], "etag": snap.get("etag")})
        via, _ = _first_ok(answers)
        if via is None:
            problems.append(f"caddy on {minion}: {_errors(answers, 'caddy.restore')}")
            continue
        _, after = _first_ok(call(target, "caddy.snapshot"))
        if not isinstance(after, dict) or after.get("config") != snap["config"]:
            problems.append(f"caddy on {minion}: loaded, but the live config differs from the saved one")
        else:
            done.append(f"caddy on {minion}: saved config loaded")
    return done, problems


def restore_authentik(directory, manifest, call, test):
    saved = load(directory, "authentik.json")
    done, problems = [], []
    steps = [("authentik.group_present", g) for g in saved["groups"]]
    steps += [("authentik.proxy_provider_present", p) for p in saved["providers"]]
    steps += [("authentik.application_present", a) for a in saved["applications"]]
    if saved["outpost_providers"]:
        steps.append(("authentik.outpost_providers_present", {"name": saved["outpost"], "providers": saved["outpost_providers"]}))
    for binding in saved["bindings"]:
        steps.append(("authentik.policy_binding_present", {"name": f"{binding['application']} <- {binding['group']}", **binding}))
    changed = 0
    for state, kwargs in steps:
        ok, did, comments = _single(call, state, test, **kwargs)
        changed += did
        if not ok:
            problems.append(f"{state} {kwargs.get('name')}: {'; '.join(comments)}")
    done.append(f"authentik: {len(steps)} objects checked, {changed} {'would change' if test else 'restored'}")
    return done, problems


def restore_dns(directory, manifest, call, test):
    done, problems = [], []
    for rel in sorted(r for r in manifest["files"] if r.startswith("dns/")):
        saved = load(directory, rel)
        zone, labels = saved["zone"], saved["labels"]
        ours = [r for r in saved["rrsets"] if dns_zones.is_ours(r, labels) and not dns_zones.is_hetzners(r)]
        rrsets = [{"name": r["name"], "type": r["type"], "values": [v.get("value") for v in r.get("records") or []], "ttl": r.get("ttl")}
                  for r in ours]  # fmt: skip
        if not rrsets:
            done.append(f"dns {zone}: the backup holds no record set hecate owned")
            continue
        ok, did, comments = _single(call, "hetzner_dns.rrsets_managed", test, name=zone, rrsets=rrsets, owner=labels.get(dns_zones.OWNER))
        if ok:
            outcome = "would change" if test and did else "restored" if did else "already as saved"
            done.append(f"dns {zone}: {len(rrsets)} record sets {outcome}")
        else:
            problems.append(f"dns {zone}: {'; '.join(comments)}")
    return done, problems


def restore_nomad(directory, manifest, call, test):
    done, problems = [], []
    for rel in sorted(r for r in manifest["files"] if r.startswith("nomad/")):
        saved = load(directory, rel)
        ok, did, comments = _single(call, "nomad_job.rolled_back", test, name=saved["id"], version=saved["version"])
        if ok:
            if not did:
                outcome = "already runs the saved spec"
            else:
                outcome = f"{'would go' if test else 'back'} to the spec of version {saved['version']}"
            done.append(f"nomad {saved['id']}: {outcome}")
        else:
            problems.append(f"nomad {saved['id']}: {'; '.join(comments)}")
    return done, problems


RESTORERS = {"caddy": restore_caddy, "authentik": restore_authentik, "dns": restore_dns, "nomad": restore_nomad}


def restore(directory, call, only=None, test=False):
    """Verify, then put every saved section back. Returns ``{restored, refused, done, problems, skipped}``."""
    manifest, problems = verify(directory)
    if problems or manifest is None:
        return {"restored": False, "refused": True, "problems": problems, "done": [], "skipped": [],
                "comment": "the backup failed verification: nothing was changed"}  # fmt: skip
    done, problems, skipped = [], [], []
    for name in SECTIONS:
        section = (manifest.get("sections") or {}).get(name) or {"state": "absent"}
        if only and name not in only:
            skipped.append(f"{name}: not selected")
            continue
        if section.get("state") != "saved":
            skipped.append(f"{name}: {section.get('state')}" + (f" ({section['note']})" if section.get("note") else ""))
            continue
        try:
            section_done, section_problems = RESTORERS[name](directory, manifest, call, test)
        except SECTION_ERRORS as exc:
            section_done, section_problems = [], [f"{name}: {type(exc).__name__}: {exc}"[:500]]
        done.extend(section_done)
        problems.extend(section_problems)
    return {"restored": not problems and not test, "refused": False, "test": bool(test), "done": done, "problems": problems,
            "skipped": skipped, "created": manifest.get("created")}  # fmt: skip
