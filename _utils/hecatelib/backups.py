"""``salt-run hecate.backup`` / ``hecate.restore``: what hecate manages, saved to a directory with a
manifest and checksums, and put back only when every checksum matches.

Like :mod:`hecatelib.health`, everything that talks to the backends goes through ``call(target, fun, *args,
**kwargs) -> {minion: {"ok": bool, "ret": value}}`` (``target``: ``edge``, ``controller`` or
``minion:<id>``), so the runner (LocalClient) and the tests (Salt's loader) share this code. Each section is
a backend's (its ``backup`` and ``restore_backup`` hooks, in ``hecatelib.<backend>.backend``); this module
writes, verifies and loads the directory, and loops over the backends.

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
import shutil

import croniter
from salt.exceptions import SaltException

from hecatelib.spec import PillarError

FORMAT = 1
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
_SAFE = re.compile(r"[^A-Za-z0-9_.@-]")


class BackupError(Exception):
    """The backup could not be written, or a restore was refused (checksums, missing files)."""


# What reading or restoring one section can raise when a backend, Salt or the disk says no: recorded as that
# section's problem, the other sections go on. Anything else (TypeError, KeyError...) is a bug in hecate and
# keeps its traceback. SaltException covers CommandExecutionError, SaltInvocationError and LocalClient's
# SaltClientError / SaltReqTimeoutError; ValueError's two data cases are a saved file that is not JSON/UTF-8.
SECTION_ERRORS = (BackupError, SaltException, PillarError, OSError, json.JSONDecodeError, UnicodeDecodeError)


def file_name(text):
    return _SAFE.sub("_", str(text)) or "_"


# -- hecate:backup: the scheduled backups ----------------------------------------------------------------
# The seed names what it backs up by its own words; they are hecate's sections (what hecate manages: Caddy's
# config, authentik's objects), not the data of the services behind them (a database dump is the database's
# own job: hecate does not take one, and says so).
TARGETS = {
    "caddy_data": "caddy",  # Caddy's config (its certificates are Caddy's storage, renewed, not restored)
    "authentik_database": "authentik",  # the objects hecate owns in authentik
    "nginx_configs": "nomad",  # the stream proxy's config is part of the reverse-proxy job's spec
}
STAMP = "%Y%m%dT%H%M%SZ"  # a scheduled backup's directory name, in UTC


def check_pillar(tree, report, backends=()):
    """``hecate:backup:targets`` name backends (or the seed's words for them); a target hecate cannot save is
    a warning, not an error (the seed's pillar validates unchanged)."""
    known = {b.name for b in parts(backends)}
    for i, target in enumerate((tree.get("backup") or {}).get("targets") or []):
        if TARGETS.get(target, target) not in known:
            report.warn(f"hecate:backup:targets[{i}]", f"{target!r} is not something hecate backs up (it saves {', '.join(sorted(known))})")


def chosen(tree, backends):
    """The backends ``hecate:backup:targets`` selects (all of them when it names none)."""
    targets = {TARGETS.get(t, t) for t in (tree.get("backup") or {}).get("targets") or []}
    return [b.name for b in parts(backends) if not targets or b.name in targets]


def taken(root):
    """The scheduled backups under ``root``, oldest first: ``[(moment, path)]`` of the directories named by
    :data:`STAMP` that hold a manifest (nothing else there is ever touched)."""
    out = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        try:
            moment = datetime.datetime.strptime(name, STAMP).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            continue
        if os.path.isfile(os.path.join(root, name, MANIFEST)):
            out.append((moment, os.path.join(root, name)))
    return out


def due(schedule, last, now):
    """Is a backup due: the first time ``schedule`` (cron) fires after ``last`` is not after ``now``?"""
    if last is None:
        return True
    return croniter.croniter(schedule, last).get_next(datetime.datetime) <= now


def expire(root, retention_days, now):
    """Remove the scheduled backups older than ``retention_days``, the newest always kept. Returns their paths."""
    old = [path for moment, path in taken(root)[:-1] if now - moment > datetime.timedelta(days=retention_days)]
    for path in old:
        shutil.rmtree(path)
    return old


def parts(backends):
    """The backends that have a part in a backup, in run order."""
    return [b for b in backends if b.backup]


# -- collect ------------------------------------------------------------------------------------------------
def collect(tree, call, backends, only=None):
    """Read every configured section. Returns ``(sections, files)``; a failing section is recorded, not raised."""
    out, files = {}, {}
    for backend in parts(backends):
        if only and backend.name not in only:
            out[backend.name] = {"state": "skipped", "note": "not selected (only=...)"}
            continue
        try:
            section, found = backend.backup(tree, call)
        except SECTION_ERRORS as exc:
            section, found = {"state": "failed", "problems": [f"{type(exc).__name__}: {exc}"[:500]]}, {}
        out[backend.name] = section
        files.update(found)
    return out, files


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
def state_results(answers):
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


def single(call, state, test, **kwargs):
    """One ``state.single`` on the controller: ``(ok, changed, comments)``."""
    return state_results(call("controller", "state.single", state, test=bool(test), **kwargs))


def restore(directory, call, backends, only=None, test=False):
    """Verify, then put every saved section back. Returns ``{restored, refused, done, problems, skipped}``."""
    manifest, problems = verify(directory)
    if problems or manifest is None:
        return {"restored": False, "refused": True, "problems": problems, "done": [], "skipped": [],
                "comment": "the backup failed verification: nothing was changed"}  # fmt: skip
    done, problems, skipped = [], [], []
    for backend in parts(backends):
        name = backend.name
        section = (manifest.get("sections") or {}).get(name) or {"state": "absent"}
        if only and name not in only:
            skipped.append(f"{name}: not selected")
            continue
        if section.get("state") != "saved":
            skipped.append(f"{name}: {section.get('state')}" + (f" ({section['note']})" if section.get("note") else ""))
            continue
        try:
            section_done, section_problems = backend.restore_backup(directory, manifest, call, test)
        except SECTION_ERRORS as exc:
            section_done, section_problems = [], [f"{name}: {type(exc).__name__}: {exc}"[:500]]
        done.extend(section_done)
        problems.extend(section_problems)
    return {"restored": not problems and not test, "refused": False, "test": bool(test), "done": done, "problems": problems,
            "skipped": skipped, "created": manifest.get("created")}  # fmt: skip
