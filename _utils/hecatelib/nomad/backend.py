"""Nomad as a backend of the engine: four stages (stateful services, the reverse proxy, authentik, the
apps) that register hecate's jobs; their undo and a rollback both put each job back to a version (read
before the run, or kept in the record), each revert checked; the drift of the jobs; the health section; and
each job's spec in a backup."""

from hecatelib import backups, health
from hecatelib.engine.backend import CONTROLLER, EXPAND, Backend, Outcome, Read, Stage, answered, failures, first_ok
from hecatelib.nomad import jobs as nomad_jobs


def _sls(*jobs):
    return tuple(f"hecate.nomad.{job}" for job in jobs)


STAGES = (
    Stage("nomad_stateful", CONTROLLER, "hecate.nomad.stateful", EXPAND, parts=_sls("postgresql", "redis")),
    Stage("nomad_core", CONTROLLER, "hecate.nomad.core", EXPAND, parts=_sls("reverse-proxy")),
    Stage("nomad_authentik", CONTROLLER, "hecate.nomad.authentik", EXPAND),
    # apps includes the authentik job too: in a dry run of every stage at once its state counts once, for nomad_authentik
    Stage("nomad_apps", CONTROLLER, "hecate.nomad.apps", EXPAND, parts=_sls("authentik", "helen-bridge")),
)


def job_ids(tree):
    """The ids of hecate's Nomad jobs, or [] without Nomad."""
    return [nomad_jobs.job_settings(tree, name)["id"] for name in nomad_jobs.JOBS] if tree.get("nomad") else []


def versions_read(tree, *_):
    return [Read(CONTROLLER, "nomad_job.current_versions", kwargs={"names": job_ids(tree)})]


def versions(answers):
    """``nomad_job.current_versions`` answers -> ``{job: version}`` of the jobs that exist."""
    found = next(iter(answered(answers).values()), None)
    return {job: version for job, version in (found or {}).items() if version is not None} if isinstance(found, dict) else {}


def kept_versions(tree, answers):
    """What undo and a record both keep: ``{"versions": {job: version}}``."""
    return {"versions": versions(answers[0])}


def revert(ctx, wanted):
    """Jobs whose version moved go back to ``wanted`` (``{job: version}``); each revert's answer is checked."""
    outcome = Outcome()
    now = versions(ctx.call(CONTROLLER, "nomad_job.current_versions", job_ids(ctx.tree)))
    for job, version in sorted((wanted or {}).items()):
        if version is None or now.get(job) in (None, version):
            continue
        answers = ctx.call(CONTROLLER, "nomad_job.revert", job, version)
        failed = [str(a["ret"]) for a in answers.values() if not a["ok"] or isinstance(a["ret"], str)]
        outcome.add(bool(answers) and not failed, f"nomad job {job}: reverted to version {version}", "; ".join(failed) or "no answer")
    return outcome


def undo(ctx, kept, only=None):
    return revert(ctx, (kept or {}).get("versions"))


def restore(ctx, state):
    return revert(ctx, (state or {}).get("versions"))


def nomad_section(tree, call):
    if not tree.get("nomad"):
        return list(health.NOT_CONFIGURED)
    rows = []
    for name in nomad_jobs.JOBS:
        job_id = nomad_jobs.job_settings(tree, name)["id"]  # pure, on the validated tree
        status_answers = health.answers(call, "controller", "nomad_job.status", job_id)
        via, status = first_ok(status_answers)
        if via is None:
            rows.append({"job": job_id, "ok": False, "state": "error", "detail": failures(status_answers, "nomad_job.status")})
            continue
        if status is None:
            rows.append({"job": job_id, "ok": False, "state": "not registered", "detail": ""})
            continue
        alloc_answers = health.answers(call, "controller", "nomad_job.allocations", job_id)
        _, allocs = first_ok(alloc_answers)
        allocs = [a for a in allocs or [] if a.get("DesiredStatus") == "run"]
        running = sum(1 for a in allocs if a.get("ClientStatus") == "running")
        failed = sum(1 for a in allocs if a.get("ClientStatus") in ("failed", "lost"))
        unhealthy = sum(1 for a in allocs if a.get("Healthy") is False)
        wanted = sum((status.get("groups") or {}).values()) if not status.get("Stop") else 0
        deployment = (status.get("deployment") or {}).get("Status") or ""
        ok = running >= wanted and not failed and not unhealthy and deployment not in ("failed",)
        rows.append({
            "job": job_id,
            "version": status.get("Version"),
            "status": status.get("Status"),
            "deployment": deployment,
            "allocations": f"{running}/{wanted} running",
            "failed": failed,
            "unhealthy": unhealthy,
            "ok": ok,
            "state": "ok" if ok else "degraded",
        })  # fmt: skip
    return rows


def collect_nomad(tree, call):
    if not tree.get("nomad"):
        return {"state": "not configured", "note": "hecate:nomad is not set"}, {}
    files, problems, absent = {}, [], []
    for name in nomad_jobs.JOBS:
        job_id = nomad_jobs.job_settings(tree, name)["id"]
        answers = call("controller", "nomad_job.inspect", job_id)
        via, job = first_ok(answers)
        if via is None:
            problems.append(f"{job_id}: {failures(answers, 'nomad_job.inspect')}")
        elif job is None:
            absent.append(job_id)
        else:
            files[f"nomad/{backups.file_name(job_id)}.json"] = {"id": job_id, "version": job.get("Version"), "job": job}
    section = {"state": "saved" if not problems else "failed", "jobs": {f["id"]: f["version"] for f in files.values()}}
    if absent:
        section["not_registered"] = absent
    if problems:
        section["problems"] = problems
    return section, files


def restore_nomad(directory, manifest, call, test):
    done, problems = [], []
    for rel in sorted(r for r in manifest["files"] if r.startswith("nomad/")):
        saved = backups.load(directory, rel)
        ok, did, comments = backups.single(call, "nomad_job.rolled_back", test, name=saved["id"], version=saved["version"])
        if ok:
            if not did:
                outcome = "already runs the saved spec"
            else:
                outcome = f"{'would go' if test else 'back'} to the spec of version {saved['version']}"
            done.append(f"nomad {saved['id']}: {outcome}")
        else:
            problems.append(f"nomad {saved['id']}: {'; '.join(comments)}")
    return done, problems


BACKEND = Backend(
    name="nomad",
    section="nomad",
    schema=nomad_jobs.PILLAR_SCHEMA,
    check=nomad_jobs.check_pillar,
    stages=STAGES,
    before=versions_read,
    keep=kept_versions,
    undo=undo,
    rolls_back=False,  # a rollback returns each job to its recorded version (restore), not by converging a tree
    record=versions_read,
    recorded=kept_versions,
    restore=restore,
    drift=True,
    health=(("nomad", nomad_section),),
    backup=collect_nomad,
    restore_backup=restore_nomad,
)
