"""Nomad as a backend of the engine: four stages (stateful services, the reverse proxy, authentik, the
apps) that register hecate's jobs; their undo and a rollback both return each job to its version and spec
(read before the run, or kept in the record; past Nomad's six kept versions the spec is registered again),
each answer checked; the drift of the jobs; the health section; and each job's spec in a backup."""

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


def specs_read(tree, *_):
    return [Read(CONTROLLER, "nomad_job.current_specs", kwargs={"names": job_ids(tree)})]


def kept_specs(tree, answers):
    """What undo and a record both keep of each job that exists: its version and its spec, so that a job
    can be returned to after Nomad dropped that version (it keeps six): ``{"versions", "specs"}``."""
    found = next(iter(answered(answers[0]).values()), None)
    jobs = {job: kept for job, kept in (found or {}).items() if kept} if isinstance(found, dict) else {}
    return {"versions": {job: kept["version"] for job, kept in jobs.items()}, "specs": {job: kept["spec"] for job, kept in jobs.items()}}


def return_to(ctx, state):
    """Every recorded job back to its recorded version and spec (``nomad_job.restore``: a revert while Nomad
    still keeps that version with that spec, else the spec registered again; nothing when the job already
    runs it). Each answer is checked; ``ctx.test``: what it would do, writing nothing."""
    outcome = Outcome()
    versions, specs = (state or {}).get("versions") or {}, (state or {}).get("specs") or {}
    jobs = sorted(set(versions) | set(specs))
    restores = [
        (CONTROLLER, "nomad_job.restore", [job], {"version": versions.get(job), "spec": specs.get(job), "test": ctx.test}) for job in jobs
    ]
    for job, answers in zip(jobs, ctx.call.many(restores), strict=True):  # one round for every job
        _, ret = first_ok(answers)
        if not isinstance(ret, dict):
            outcome.problems.append(f"nomad job {job}: restore FAILED: {failures(answers, 'nomad_job.restore')}")
        elif not ret.get("ok"):
            outcome.problems.append(f"nomad job {job}: restore FAILED: {ret.get('comment')}")
        elif ret.get("path") != "unchanged":
            outcome.done.append(f"nomad job {job}: {ret.get('comment')}")
    return outcome


def undo(ctx, kept, only=None):
    return return_to(ctx, kept)


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
    before=specs_read,
    keep=kept_specs,
    undo=undo,
    rolls_back=False,  # a rollback returns each job to its recorded version (restore), not by converging a tree
    record=specs_read,
    recorded=kept_specs,
    restore=return_to,
    drift=True,
    health=(("nomad", nomad_section),),
    backup=collect_nomad,
    restore_backup=restore_nomad,
)
