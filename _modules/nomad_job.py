"""Nomad jobs over Nomad's HTTP API: parse, plan, register with check-and-set, watch deployments with
blocking queries, promote, fail, revert, stop.

One function per Nomad operation (plus :func:`wait_deployment`, the watch loop the states and the runner
share). Configuration comes from pillar or the minion config, never from arguments:

- ``hecate:nomad:address`` (default ``https://nomad.service.consul:4646``); plain ``http://`` is refused
  unless ``hecate:nomad:allow_insecure_endpoint: true``.
- ``hecate:nomad:token``, sent as ``X-Nomad-Token`` (omitted when unset, for clusters without ACLs).
- ``hecate:nomad:namespace`` / ``hecate:nomad:region`` (``default`` / ``global``), sent on every request.
- ``hecate:nomad:tls_verify``, ``ca_file``, ``client_cert``/``client_key``, ``request_timeout``,
  ``blocking_wait`` (seconds one blocking query may hold), ``promote`` (the canary policy).

Every wait is a blocking query (``?index=<X-Nomad-Index>&wait=<d>``): the server answers when something
changed, so watching a deployment costs one request per change, not one per poll interval.
"""

import logging
import time
from urllib.parse import quote

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

    hecate_fresh.drop_stale()
    from hecatelib import api
    from hecatelib.nomad import jobs as nomad_jobs
    from hecatelib.spec import PillarError
except ImportError as exc:  # pragma: no cover - hecate's _utils not synced, or a library missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

log = logging.getLogger(__name__)

__virtualname__ = "nomad_job"

CONTEXT_KEY = "nomad_job.client"


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return __virtualname__


if not IMPORT_ERROR:

    class CasConflict(api.ApiError):
        """The job changed since it was planned (Nomad: ``Enforcing job modify index ...``)."""

    class NomadClient(api.ApiClient):
        """``hecatelib.api.ApiClient`` with Nomad's token header, namespace/region parameters, blocking
        queries and check-and-set error detection."""

        def __init__(self, address, token, namespace, region, verify=True, timeout=15):
            super().__init__(address, "nomad", token=token, token_header="X-Nomad-Token", token_prefix="", verify=verify, timeout=timeout)
            self.namespace = namespace
            self.region = region

        def params(self, namespace=None, **extra):
            params = {"namespace": namespace or self.namespace, "region": self.region}
            params.update({k: v for k, v in extra.items() if v is not None})
            return params

        def error(self, method, path, response):
            error = super().error(method, path, response)
            if nomad_jobs.CAS_PREFIX in str(error.body):
                return CasConflict(str(error), error.status, error.body)
            return error

        def blocking(self, path, index=0, wait=None, params=None):
            """A blocking GET: returns ``(body, X-Nomad-Index)``; holds up to ``wait`` seconds when
            ``index`` is given and nothing changed since."""
            params = dict(params if params is not None else self.params())
            if index:
                params["index"] = str(index)
                params["wait"] = nomad_jobs.go_duration(max(0.001, wait or 0))
            saved = self.timeout
            if index:  # Nomad adds up to wait/16 of jitter
                self.timeout = saved + (wait or 0) * 1.1
            try:
                response = self.request("GET", path, params=params)
            finally:
                self.timeout = saved
            body = response.json() if response.content else None
            return body, int(response.headers.get("X-Nomad-Index") or 0)


# -- configuration ----------------------------------------------------------------------------------
def _config():
    raw = __salt__["config.get"]("hecate:nomad", {}) or {}
    try:
        return nomad_jobs.settings({"nomad": raw})
    except PillarError as exc:  # configuration, not the call: one line on salt-call, no usage block
        raise CommandExecutionError(str(exc)) from None


def _client(cfg=None):
    cfg = cfg or _config()
    address = cfg["address"]
    problem = api.endpoint_problem(address, cfg["allow_insecure_endpoint"], "hecate:nomad:allow_insecure_endpoint")
    if problem:
        raise CommandExecutionError(f"hecate:nomad:address {problem}")
    token = __salt__["config.get"]("hecate:nomad:token", None)
    if token:
        api.check_token(token, "hecate:nomad:token")

    def build():
        verify = cfg.get("ca_file") or cfg["tls_verify"]
        client = NomadClient(address, token, cfg["namespace"], cfg["region"], verify=verify, timeout=cfg["request_timeout"])
        if cfg.get("client_cert"):
            client.session.cert = (cfg["client_cert"], cfg.get("client_key")) if cfg.get("client_key") else cfg["client_cert"]
        return client

    return api.client_for(__context__, CONTEXT_KEY, {k: v for k, v in cfg.items() if k != "token"}, token, build)


def _q(value):
    return quote(str(value), safe="")


def _or_none(call):
    try:
        return call()
    except api.ApiError as exc:
        if exc.status == 404:
            return None
        raise


def _job_arg(job, variables=None):
    """A job given as HCL text, a parsed job, or a ``{"Job": ...}`` wrapper -> the job dict."""
    if isinstance(job, str):
        return parse(job, variables=variables)
    if isinstance(job, dict) and isinstance(job.get("Job"), dict):
        return job["Job"]
    if not isinstance(job, dict) or not job.get("ID"):
        raise SaltInvocationError("job must be HCL text or a parsed job (a mapping with an ID)")
    return job


def _variables_text(variables):
    if variables is None or isinstance(variables, str):
        return variables or ""
    if not isinstance(variables, dict):
        raise SaltInvocationError("variables must be a mapping (name: value) or the text of a variables file")
    try:
        return nomad_jobs.variables_hcl(variables)
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None


# -- jobs -------------------------------------------------------------------------------------------
def parse(hcl, variables=None, canonicalize=True):
    """Parse an HCL2 jobspec on the Nomad server (``POST /v1/jobs/parse``) into the API's JSON job.

    hcl
        The jobspec text.
    variables
        HCL2 input variables: a mapping (``{image: "caddy:2.11"}``) or the text of a variables file.
    canonicalize
        Ask the server to fill in defaults (True), as ``nomad job run`` does.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.parse "$(cat job.nomad.hcl)" variables='{"image": "caddy:2.11"}'
    """
    if not isinstance(hcl, str) or not hcl.strip():
        raise SaltInvocationError("hcl must be the non-empty text of a jobspec")
    body = {"JobHCL": hcl, "Canonicalize": bool(canonicalize)}
    text = _variables_text(variables)
    if text:
        body["Variables"] = text
    client = _client()
    # Nomad authorises a parse against ?namespace= (parseNamespace, command/agent/http.go), "default"
    # when absent: a token scoped to the job's namespace needs it sent
    return client.json("POST", "/v1/jobs/parse", params=client.params(), json=body)


def plan(job, diff=True, variables=None):
    """Dry-run a job (``POST /v1/job/:id/plan``): the diff against the registered version, the
    scheduler's DesiredTGUpdates per group, and the JobModifyIndex to register with.

    job
        HCL text or a parsed job.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.plan "$(cat job.nomad.hcl)"
    """
    job = _job_arg(job, variables)
    client = _client()
    return client.json(
        "POST", f"/v1/job/{_q(job['ID'])}/plan", params=client.params(job.get("Namespace")), json={"Job": job, "Diff": bool(diff)}
    )


def plan_summary(job, variables=None):
    """The readable part of a plan: diff type, DesiredTGUpdates, changed fields.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.plan_summary "$(cat job.nomad.hcl)"
    """
    return nomad_jobs.plan_summary(plan(job, variables=variables))


def register(job, job_modify_index=None, enforce_index=True, variables=None, source=None):
    """Register a job (``POST /v1/jobs``) with check-and-set: Nomad refuses the write with
    ``Enforcing job modify index ...`` when the job changed since ``job_modify_index`` was read.

    job
        HCL text (then also kept as the job's submitted source) or a parsed job.
    job_modify_index
        The JobModifyIndex the change was planned against (a plan returns it; 0 = the job must not
        exist yet). When omitted, the job's current index is read first.
    enforce_index
        Check-and-set on (default). False registers unconditionally.
    source
        The HCL text to record as the job's submission (default: ``job`` when it is text).

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.register "$(cat job.nomad.hcl)"
        salt-call nomad_job.register "$(cat job.nomad.hcl)" job_modify_index=1234
    """
    if isinstance(job, str) and source is None:
        source = job
    job = _job_arg(job, variables)
    client = _client()
    body = {"Job": job}
    if enforce_index:
        if job_modify_index is None:
            current = _or_none(lambda: client.get(f"/v1/job/{_q(job['ID'])}", params=client.params(job.get("Namespace"))))
            job_modify_index = (current or {}).get("JobModifyIndex", 0)
        body.update(EnforceIndex=True, JobModifyIndex=int(job_modify_index))
    if source:
        submission = {"Source": source, "Format": "hcl2"}
        text = _variables_text(variables)
        if text:
            submission["Variables"] = text
        body["Submission"] = submission
    return client.json("POST", "/v1/jobs", params=client.params(job.get("Namespace")), json=body)


def inspect(name):
    """The registered job (``GET /v1/job/:id``), or None when there is none.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.inspect hecate-reverse-proxy
    """
    client = _client()
    return _or_none(lambda: client.get(f"/v1/job/{_q(name)}", params=client.params()))


def status(name):
    """A job's status: version, stability, status, counts per group, and its latest deployment.
    None when the job does not exist.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.status hecate-reverse-proxy
    """
    client = _client()
    job = _or_none(lambda: client.get(f"/v1/job/{_q(name)}", params=client.params()))
    if job is None:
        return None
    latest = _or_none(lambda: client.get(f"/v1/job/{_q(name)}/deployment", params=client.params()))
    out = {k: job.get(k) for k in ("ID", "Namespace", "Type", "Status", "Stop", "Version", "Stable", "JobModifyIndex", "SubmitTime")}
    out["groups"] = {g["Name"]: g.get("Count") for g in job.get("TaskGroups") or []}
    if latest:
        out["deployment"] = {k: latest.get(k) for k in ("ID", "JobVersion", "Status", "StatusDescription")}
    return out


def current_versions(names):
    """The version Nomad runs of each job in ``names`` (``None`` for a job it does not have): one
    ``GET /v1/job/:id`` each. What a deploy reads before its first write, to revert to.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.current_versions '[hecate-redis, hecate-authentik]'
    """
    return {name: job.get("Version") if job else None for name, job in _jobs(names).items()}


def current_specs(names):
    """What a record keeps to return to each job in ``names``: ``{name: {"version": N, "spec": {...}}}``,
    ``None`` for a job Nomad does not have. ``spec`` is the job as Nomad returns it without what the server
    sets on each write (:func:`hecatelib.nomad.jobs.recorded_spec`): :func:`restore` registers it again once
    Nomad no longer keeps version N (it keeps six). One ``GET /v1/job/:id`` each, as ``current_versions``.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.current_specs '[hecate-redis, hecate-authentik]'
    """
    jobs = _jobs(names)
    return {name: {"version": job.get("Version"), "spec": nomad_jobs.recorded_spec(job)} if job else None for name, job in jobs.items()}


def _jobs(names):
    """``{name: the job as Nomad returns it, or None}``: one ``GET /v1/job/:id`` each (``names`` a list, or
    ``[a, b]`` as the CLI passes it)."""
    client = _client()
    if isinstance(names, str):
        names = [n.strip() for n in names.strip("[]").split(",") if n.strip()]
    out = {}
    for name in names:
        job = _or_none(lambda name=name: client.get(f"/v1/job/{_q(name)}", params=client.params()))
        out[name] = job if isinstance(job, dict) else None
    return out


def restore(name, version=None, spec=None, test=False, wait=True, promote=None, healthy_seconds=None, deploy_timeout=None):
    """Return a job to a recorded state: ``version`` while Nomad still keeps it (with ``spec``: and it still
    holds that spec), else the recorded ``spec`` registered again. The answer says which ``path`` it took:

    - ``unchanged``: the job already runs that spec (or that version's): nothing is written;
    - ``revert``: ``POST /v1/job/:id/revert`` to ``version``, with ``EnforcePriorVersion``;
    - ``register``: ``POST /v1/jobs`` of ``spec`` with check-and-set (``EnforceIndex`` and the job's
      ``JobModifyIndex``; 0 when the job is gone), re-read once after a conflict;
    - ``stop``: the recorded job was stopped: ``DELETE /v1/job/:id``.

    A revert or register is planned first and its deployment watched as a register's is (canaries
    promoted by ``promote``, default ``hecate:nomad:promote``). Returns ``{"job", "path", "ok", "comment",
    "from_version", "version", "reverted_to", "deployment"}``; ``ok`` is False (and the call's retcode 1)
    when the deployment did not succeed. ``test=True`` answers with the path it would take, writing nothing.

    name
        The job ID.
    version
        The version to return to (an integer), as ``current_versions`` read it.
    spec
        The job as ``current_specs`` read it.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.restore hecate-authentik version=3
        salt-call nomad_job.restore hecate-authentik version=3 spec="$(cat recorded-spec.json)"
    """
    if version is None and spec is None:
        raise SaltInvocationError("give the version to return to, the recorded spec, or both")
    if promote and promote not in nomad_jobs.PROMOTE_MODES:
        raise SaltInvocationError(f"promote must be one of {', '.join(nomad_jobs.PROMOTE_MODES)}")
    if spec is not None and (not isinstance(spec, dict) or spec.get("ID") != name):
        raise SaltInvocationError(f"spec must be the recorded job {name!r} (a mapping with ID {name!r})")
    cfg = _config()
    client = _client(cfg)
    current = _or_none(lambda: client.get(f"/v1/job/{_q(name)}", params=client.params()))
    out = {"job": name, "path": "unchanged", "ok": True, "from_version": (current or {}).get("Version"), "version": None}
    out.update(reverted_to=None, deployment=None)
    target = None
    if current is not None and version is not None:
        kept = client.get(f"/v1/job/{_q(name)}/versions", params=client.params()).get("Versions") or []
        target = next((v for v in kept if v.get("Version") == int(version)), None)
        if target is not None and spec is not None and not nomad_jobs.same_recorded(target, spec):
            target = None  # the number was reused (the job was purged and registered anew): not our spec
    wanted = spec if spec is not None else target
    if current is not None and wanted is not None and nomad_jobs.same_recorded(current, wanted):
        out.update(version=current["Version"], comment=f"Job {name} already runs the recorded spec (version {current['Version']})")
        return out
    if target is not None:
        out.update(path="revert", reverted_to=target["Version"])
    elif spec is None:
        raise CommandExecutionError(
            f"Job {name}: version {version} is gone (Nomad keeps the newest {nomad_jobs.TRACKED_VERSIONS} versions of a job) "
            "and no spec was recorded to register again"
        )
    elif not spec.get("Stop"):
        out["path"] = "register"
    elif current is None or current.get("Stop"):
        out.update(version=(current or {}).get("Version"), comment=f"Job {name} is stopped, as recorded")
        return out
    else:
        out["path"] = "stop"
    if test:
        out.update(ok=None, comment=f"Job {name} would be restored by {out['path']} (test mode: nothing written)")
        return out
    if out["path"] == "stop":
        client.json("DELETE", f"/v1/job/{_q(name)}", params=client.params())
        out.update(version=(inspect(name) or {}).get("Version"), comment=f"Job {name} stopped, as recorded")
        return out
    job = target if target is not None else spec
    plan = client.json("POST", f"/v1/job/{_q(name)}/plan", params=client.params(), json={"Job": job, "Diff": True})
    summary = nomad_jobs.plan_summary(plan)
    if out["path"] == "revert":
        body = {"JobID": name, "JobVersion": target["Version"], "EnforcePriorVersion": current["Version"]}
        written = client.json("POST", f"/v1/job/{_q(name)}/revert", params=client.params(), json=body)
        verb = f"reverted to version {target['Version']}"
    else:
        written = _register_recorded(client, name, spec, current)
        verb = "registered again from the recorded spec" + (f" (version {version} is gone)" if version is not None else "")
    return _restored(client, cfg, out, job, written, summary, verb, wait, (promote, healthy_seconds, deploy_timeout))


def _register_recorded(client, name, spec, current):
    """``POST /v1/jobs`` of the recorded spec with check-and-set; after a conflict the job is read again and
    the write tried once more."""
    for attempt in (1, 2):
        body = {"Job": spec, "EnforceIndex": True, "JobModifyIndex": (current or {}).get("JobModifyIndex", 0)}
        try:
            return client.json("POST", "/v1/jobs", params=client.params(spec.get("Namespace")), json=body)
        except CasConflict:
            if attempt == 2:
                raise
            current = _or_none(lambda: client.get(f"/v1/job/{_q(name)}", params=client.params()))


def _restored(client, cfg, out, job, written, summary, verb, wait, watch):
    """Watch the deployment of a restore as ``present`` watches a register's, and say how it went."""
    promote, healthy_seconds, deploy_timeout = watch
    after = _or_none(lambda: client.get(f"/v1/job/{_q(out['job'])}", params=client.params())) or {}
    out["version"] = after.get("Version")
    head = f"Job {out['job']} {verb}: version {out['version']}"
    if not wait or not nomad_jobs.has_deployments(job):
        out["comment"] = f"{head}; deployment not watched"
        return out
    policy = dict(cfg["promote"])
    policy.update({k: v for k, v in (("mode", promote), ("healthy_seconds", healthy_seconds)) if v is not None})
    timeout = nomad_jobs.deploy_timeout(job, deploy_timeout or cfg.get("deploy_timeout"), policy)
    deadline = time.monotonic() + timeout
    find = min(timeout, 60.0) if nomad_jobs.moves_allocations(summary) else min(timeout, 2.0)
    dep = _find_deployment(client, cfg, out["job"], written["JobModifyIndex"], time.monotonic() + find)
    if dep is None:
        out["comment"] = f"{head}; no allocation changes, no deployment"
        if nomad_jobs.moves_allocations(summary):
            out.update(ok=False, comment=f"{head}, but Nomad created no deployment for it within {find:g}s")
    else:
        outcome = _watch(client, cfg, dep["ID"], deadline, policy)
        out["deployment"] = {k: outcome[k] for k in ("deployment_id", "status", "description", "job_version", "promoted")}
        out["ok"] = outcome["status"] == "successful" or outcome["awaiting_promotion"]
        out["comment"] = f"{head}; deployment {dep['ID'][:8]} {outcome['status'] or 'unknown'}" + (
            f": {outcome['description']}" if not out["ok"] else ""
        )
    if not out["ok"]:
        __context__["retcode"] = 1
    return out


def versions(name, diffs=False, full=False):
    """The job's versions, newest first (``GET /v1/job/:id/versions``): version, stable, submit time;
    ``full=True`` returns whole jobs, ``diffs=True`` Nomad's diffs between versions.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.versions hecate-authentik
    """
    client = _client()
    answer = client.get(f"/v1/job/{_q(name)}/versions", params=client.params(diffs="true" if diffs else None))
    found = answer.get("Versions") or []
    if full:
        return {"Versions": found, "Diffs": answer.get("Diffs")} if diffs else found
    out = [{k: v.get(k) for k in ("Version", "Stable", "Stop", "JobModifyIndex", "SubmitTime")} for v in found]
    return {"Versions": out, "Diffs": answer.get("Diffs")} if diffs else out


def _alloc_summary(alloc):
    deployment = alloc.get("DeploymentStatus") or {}
    return {
        "ID": alloc.get("ID"),
        "Name": alloc.get("Name"),
        "TaskGroup": alloc.get("TaskGroup"),
        "JobVersion": alloc.get("JobVersion"),
        "NodeName": alloc.get("NodeName"),
        "ClientStatus": alloc.get("ClientStatus"),
        "DesiredStatus": alloc.get("DesiredStatus"),
        "Healthy": deployment.get("Healthy"),
        "Canary": deployment.get("Canary"),
    }


def allocations(name, all_versions=False, full=False):
    """The job's allocations (``GET /v1/job/:id/allocations``), summarised; ``full=True`` as Nomad
    returns them (task states and events included).

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.allocations hecate-reverse-proxy
    """
    client = _client()
    found = client.get(f"/v1/job/{_q(name)}/allocations", params=client.params(all="true" if all_versions else None)) or []
    return found if full else [_alloc_summary(a) for a in found]


def deployments(name):
    """The job's deployments, newest first (``GET /v1/job/:id/deployments``).

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.deployments hecate-authentik
    """
    client = _client()
    found = client.get(f"/v1/job/{_q(name)}/deployments", params=client.params()) or []
    return [{k: d.get(k) for k in ("ID", "JobVersion", "Status", "StatusDescription", "TaskGroups")} for d in found]


def deployment(name=None, deployment_id=None):
    """One deployment: by ``deployment_id`` (``GET /v1/deployment/:id``) or the job's latest
    (``GET /v1/job/:id/deployment``). None when there is none.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.deployment hecate-authentik
        salt-call nomad_job.deployment deployment_id=5456bd7a-9fc0-c0dd-6131-cbee77f57577
    """
    client = _client()
    if deployment_id:
        return _or_none(lambda: client.get(f"/v1/deployment/{_q(deployment_id)}", params=client.params()))
    if not name:
        raise SaltInvocationError("give a job name or deployment_id")
    return _or_none(lambda: client.get(f"/v1/job/{_q(name)}/deployment", params=client.params()))


def deployment_allocations(deployment_id, full=False):
    """The allocations of one deployment (``GET /v1/deployment/allocations/:id``).

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.deployment_allocations 5456bd7a-9fc0-c0dd-6131-cbee77f57577
    """
    client = _client()
    found = client.get(f"/v1/deployment/allocations/{_q(deployment_id)}", params=client.params()) or []
    return found if full else [_alloc_summary(a) for a in found]


def promote(deployment_id, groups=None):
    """Promote a deployment's canaries (``POST /v1/deployment/promote/:id``): all groups, or ``groups``.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.promote 5456bd7a-9fc0-c0dd-6131-cbee77f57577
        salt-call nomad_job.promote 5456bd7a-9fc0-c0dd-6131-cbee77f57577 groups='[authentik]'
    """
    client = _client()
    body = {"DeploymentID": deployment_id}
    if groups:
        body["Groups"] = list(groups) if isinstance(groups, (list, tuple)) else [groups]
    else:
        body["All"] = True
    return client.json("POST", f"/v1/deployment/promote/{_q(deployment_id)}", params=client.params(), json=body)


def fail(deployment_id):
    """Mark a running deployment failed (``POST /v1/deployment/fail/:id``); with ``auto_revert`` Nomad
    rolls the job back to its last stable version.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.fail 5456bd7a-9fc0-c0dd-6131-cbee77f57577
    """
    client = _client()
    return client.json("POST", f"/v1/deployment/fail/{_q(deployment_id)}", params=client.params())


def revert(name, version, enforce_prior_version=None):
    """Revert a job to an earlier version (``POST /v1/job/:id/revert``): Nomad registers that version's
    spec as a new version. ``enforce_prior_version`` makes it check-and-set: refused unless the job is
    still at that version.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.revert hecate-authentik 3
        salt-call nomad_job.revert hecate-authentik 3 enforce_prior_version=5
    """
    client = _client()
    body = {"JobID": name, "JobVersion": int(version)}
    if enforce_prior_version is not None:
        body["EnforcePriorVersion"] = int(enforce_prior_version)
    return client.json("POST", f"/v1/job/{_q(name)}/revert", params=client.params(), json=body)


def stop(name, purge=False):
    """Stop a job (``DELETE /v1/job/:id``); ``purge=True`` also removes it and its history.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.stop hecate-helen-bridge
        salt-call nomad_job.stop hecate-helen-bridge purge=True
    """
    client = _client()
    return client.json("DELETE", f"/v1/job/{_q(name)}", params=client.params(purge="true" if purge else None))


def purge(name):
    """Stop and remove a job with its history (``DELETE /v1/job/:id?purge=true``).

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.purge hecate-helen-bridge
    """
    return stop(name, purge=True)


# -- watching ---------------------------------------------------------------------------------------
def find_deployment(name, job_modify_index, timeout=30):
    """Wait (blocking queries) for the deployment Nomad creates for the registration with
    ``job_modify_index``; returns it, or None when none appears within ``timeout`` seconds.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.find_deployment hecate-authentik 1234
    """
    cfg = _config()
    return _find_deployment(_client(cfg), cfg, name, int(job_modify_index), time.monotonic() + float(timeout))


def _find_deployment(client, cfg, name, job_modify_index, deadline, newer_than=None):
    """The deployment whose ``JobSpecModifyIndex`` is ``job_modify_index`` (Nomad copies the job's
    JobModifyIndex into it), or with ``newer_than`` the first deployment created after that one."""
    index = 0
    while True:
        remaining = deadline - time.monotonic()
        wait = min(cfg["blocking_wait"], remaining)
        if index and wait <= 0:
            return None
        dep, index = client.blocking(f"/v1/job/{_q(name)}/deployment", index, wait)
        if dep and newer_than is not None:
            if dep["ID"] != newer_than["ID"] and dep.get("CreateIndex", 0) > newer_than.get("CreateIndex", 0):
                return dep
        elif dep and (dep.get("JobSpecModifyIndex") or 0) == job_modify_index:
            return dep
        elif dep and (dep.get("JobSpecModifyIndex") or 0) > job_modify_index:
            # a later registration (Nomad's auto-revert, another writer) already has the newest
            # deployment: ours is in the job's list
            listed = client.get(f"/v1/job/{_q(name)}/deployments", params=client.params()) or []
            return next((d for d in listed if d.get("JobSpecModifyIndex") == job_modify_index), None)
        if time.monotonic() >= deadline:
            return None


def wait_deployment(deployment_id, timeout=None, promote=None, healthy_seconds=None, follow_revert=True):
    """Watch a deployment with blocking queries until it is successful or failed, promoting canaries by
    policy so it never hangs on them. A deployment that is ``paused``, ``blocked`` or ``pending``
    (nomad/structs/deployment.go) makes no progress by itself: the watch ends at once with that status
    and ``stalled`` saying what it waits for. Canary policy:

    - ``auto``: promote as soon as every canary is healthy;
    - ``after``: promote once the canaries have stayed healthy for ``healthy_seconds``;
    - ``manual``: stop watching when the canaries are healthy and report ``awaiting_promotion``.

    A failed deployment is reported with its unhealthy allocations' task events; when Nomad auto-reverts,
    the rollback deployment is followed too (``follow_revert``). ``timeout`` defaults to the job's progress
    deadline plus a margin. Defaults for ``promote``/``healthy_seconds``: ``hecate:nomad:promote``.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.wait_deployment 5456bd7a-9fc0-c0dd-6131-cbee77f57577 promote=after healthy_seconds=60
    """
    cfg = _config()
    client = _client(cfg)
    policy = dict(cfg["promote"])
    if promote:
        if promote not in nomad_jobs.PROMOTE_MODES:
            raise SaltInvocationError(f"promote must be one of {', '.join(nomad_jobs.PROMOTE_MODES)}")
        policy["mode"] = promote
    if healthy_seconds is not None:
        policy["healthy_seconds"] = float(healthy_seconds)
    if timeout is None:
        dep = client.get(f"/v1/deployment/{_q(deployment_id)}", params=client.params())
        job = client.get(f"/v1/job/{_q(dep['JobID'])}", params=client.params())
        timeout = nomad_jobs.deploy_timeout(job, cfg.get("deploy_timeout"), policy)
    return _watch(client, cfg, deployment_id, time.monotonic() + float(timeout), policy, follow_revert)


def _watch(client, cfg, deployment_id, deadline, policy, follow_revert=True):
    """The watch loop behind :func:`wait_deployment`. Returns a dict: ``status``, ``description``,
    ``promoted``, ``awaiting_promotion``, ``timed_out``, ``reverted_to``, ``failing_allocations``,
    ``revert`` (the rollback deployment's outcome)."""
    result = {
        "deployment_id": deployment_id,
        "status": None,
        "description": "",
        "job_version": None,
        "promoted": [],
        "awaiting_promotion": False,
        "timed_out": False,
        "reverted_to": None,
        "failing_allocations": [],
        "stalled": None,
    }
    index, ready_since = 0, None
    hold = float(policy.get("healthy_seconds") or 0)
    while True:
        now = time.monotonic()
        wait = min(cfg["blocking_wait"], max(0.0, deadline - now))
        if ready_since is not None and policy["mode"] == "after":
            wait = min(wait, max(0.001, ready_since + hold - now))
        if index and deadline - now <= 0:
            result["timed_out"] = True
            return result
        dep, index = client.blocking(f"/v1/deployment/{_q(deployment_id)}", index, wait)
        result.update(status=dep.get("Status"), description=dep.get("StatusDescription", ""), job_version=dep.get("JobVersion"))
        if dep["Status"] == "successful":
            return result
        if dep["Status"] in nomad_jobs.STALLED:  # no progress until someone else acts: say so now
            result["stalled"] = nomad_jobs.STALLED[dep["Status"]]
            return result
        if dep["Status"] in ("failed", "cancelled"):
            if dep["Status"] == "failed":
                allocs = client.get(f"/v1/deployment/allocations/{_q(deployment_id)}", params=client.params()) or []
                result["failing_allocations"] = nomad_jobs.failing_allocations(allocs)
            result["reverted_to"] = nomad_jobs.auto_revert_version(dep)
            if result["reverted_to"] is not None and follow_revert:
                result["revert"] = _follow_revert(client, cfg, dep, deadline, policy)
            return result
        groups = nomad_jobs.canary_groups(dep)
        if groups and all(groups.values()):
            if policy["mode"] == "manual":
                result["awaiting_promotion"] = True
                return result
            now = time.monotonic()
            ready_since = now if ready_since is None else ready_since
            if policy["mode"] == "auto" or now - ready_since >= hold:
                try:
                    client.json(
                        "POST",
                        f"/v1/deployment/promote/{_q(deployment_id)}",
                        params=client.params(),
                        json={"DeploymentID": deployment_id, "All": True},
                    )
                    result["promoted"].extend(sorted(groups))
                except api.ApiError as exc:  # promoted meanwhile, or a canary turned unhealthy: re-read
                    log.warning("nomad_job: promoting deployment %s failed: %s", deployment_id, exc)
                ready_since = None
        else:
            ready_since = None


def _follow_revert(client, cfg, failed, deadline, policy):
    remaining = max(1.0, deadline - time.monotonic())
    dep = _find_deployment(client, cfg, failed["JobID"], 0, time.monotonic() + min(remaining, 60.0), newer_than=failed)
    if dep is None:
        return {"status": "not found"}
    outcome = _watch(client, cfg, dep["ID"], deadline, policy, follow_revert=False)
    return {k: outcome[k] for k in ("deployment_id", "status", "description", "job_version", "timed_out")}


def alloc_dirs(name, node=None):
    """Host paths of this node's running allocation directories of a job: ``{alloc ID: path}``, where
    ``path`` is ``<hecate:nomad:data_dir>/alloc/<ID>/alloc`` (the directory tasks see as ``/alloc``; the
    reverse-proxy job puts Caddy's admin socket there). ``node`` defaults to this host's name.

    CLI Example:

    .. code-block:: bash

        salt-call nomad_job.alloc_dirs hecate-reverse-proxy
    """
    cfg = _config()
    node = node or __grains__.get("nodename") or __grains__.get("host")
    client = _client(cfg)
    found = client.get(f"/v1/job/{_q(name)}/allocations", params=client.params()) or []
    data_dir = cfg["data_dir"].rstrip("/")
    return {
        a["ID"]: f"{data_dir}/alloc/{a['ID']}/alloc"
        for a in found
        if a.get("ClientStatus") == "running" and a.get("DesiredStatus") == "run" and a.get("NodeName") == node
    }
