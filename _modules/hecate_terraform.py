"""Run Terraform for hecate: render the Hetzner Cloud module from pillar, ``init`` (never ``-upgrade``; the
lock file is committed), ``plan -detailed-exitcode -out=tfplan``, gate the plan on ``show -json``
(no deletes or replacements unless allowed), ``apply tfplan``, and ``output -json`` for the next stages.

Configuration is pillar ``hecate:terraform`` (see docs/terraform.md), read from ``__pillar__``:

.. code-block:: yaml

    hecate:
      terraform:
        workdir: /var/lib/hecate/terraform/production
        token: "vault:secret/hecate/hetzner/cloud_token"   # -> TF_VAR_hcloud_token, never argv or a file
        allow_delete: false
        allow_replace: false

Every command runs with ``TF_IN_AUTOMATION=1``, ``-input=false``, ``-no-color`` and umask 077 (a plan
file holds variable values, secrets included). Secrets travel only in the environment of the
terraform process (``TF_VAR_*``) and are scrubbed from every error.
"""

import datetime
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time

import salt.utils.path
from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

    hecate_fresh.drop_stale()
    from hecatelib import api, paths
    from hecatelib.terraform import render as tf_util
except ImportError as exc:  # pragma: no cover - hecate's _utils not synced, or a library missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

log = logging.getLogger(__name__)

__virtualname__ = "hecate_terraform"

LOCK_FILE = ".terraform.lock.hcl"
# Next to the module in the workdir: the fingerprint of the inputs of the last plan that found nothing to do.
PLANNED_FILE = ".hecate-planned.json"
CONFIG_SUFFIXES = (".tf", ".tf.json", ".tfvars", ".tfvars.json", LOCK_FILE)
TEMPLATE_SOURCE = "salt://hecate/terraform"
MIN_VERSION = (1, 0)
BINARY_OPTION = "hecate_terraform_binary"  # minion config: the terraform binary, any path
ENV_OPTION = "hecate_terraform_env"  # minion config: host settings for terraform's environment
WORKDIR_KEY = "hecate:terraform:workdir"


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    binary, reason = _find_binary(_opts_section())
    if not binary:
        return (False, f"{__virtualname__}: {reason}")
    return __virtualname__


# -- configuration ---------------------------------------------------------------------------------
def _opts_section():
    """``hecate:terraform`` from the minion config or the pillar in opts (``__salt__`` may not exist yet)."""
    for source in (__opts__, __opts__.get("pillar") or {}):
        section = ((source.get("hecate") or {}).get("terraform")) if isinstance(source, dict) else None
        if isinstance(section, dict):
            return section
    return {}


def _find_binary(section):
    """The terraform binary: ``hecate_terraform_binary`` of the minion config (any path: the host's own
    setting), else the pillar's ``binary``, a command name looked up on the minion's PATH (the schema
    refuses a path there: a pillar must not pick the program the minion runs as root)."""
    configured = __opts__.get(BINARY_OPTION) or section.get("binary")
    if configured:
        if "/" in configured:
            if os.path.isfile(configured) and os.access(configured, os.X_OK):
                return configured, None
            return None, f"hecate:terraform:binary {configured} is not an executable file"
        found = salt.utils.path.which(configured)
        return (found, None) if found else (None, f"hecate:terraform:binary {configured} is not on PATH")
    found = salt.utils.path.which("terraform")
    return (found, None) if found else (None, "no terraform binary on PATH (install Terraform >= 1.0 or set hecate:terraform:binary)")


def _tree():
    # From pillar: config.get("hecate") would answer with a minion-config "hecate" key and hide the pillar.
    tree = __pillar__.get("hecate", {})
    if not isinstance(tree, dict) or not tree.get("terraform"):
        raise CommandExecutionError("pillar hecate:terraform is not set (at least hecate:terraform:workdir)")
    return tree


def _settings(tree=None):
    tree = tree if tree is not None else _tree()
    try:
        return tf_util.settings(tree)
    except ValueError as exc:  # hecatelib.spec.PillarError
        raise CommandExecutionError(str(exc)) from None


def _workdir(section, workdir):
    """The workdir (the ``workdir`` argument, else the pillar's): below hecate's /var/lib/hecate root
    (hecatelib.paths), since terraform runs every .tf file it finds there."""
    path = workdir or section["workdir"]
    top = paths.root("lib", paths.prefix(__opts__))
    if not paths.below(path, top):
        raise SaltInvocationError(f"{WORKDIR_KEY}: {path!r} is not a plain path below {top} (docs/security.md)")
    return path


class _Terraform:
    """One configured terraform binary + environment; every run is timed and scrubbed."""

    def __init__(self, section):
        self.section = section
        binary, reason = _find_binary(section)
        if not binary:
            raise CommandExecutionError(f"hecate_terraform: {reason}")
        self.binary = binary
        self.env = tf_util.environment(section, os.environ, __opts__.get(ENV_OPTION))
        self.secrets = list(tf_util.secret_environment(section).values())
        self.timeout = section.get("timeout", 1800)
        self.timings = {}

    def run(self, args, cwd, ok=(0,)):
        """Run ``terraform <args>`` in ``cwd``; returns ``(returncode, stdout)`` or raises with the scrubbed
        stderr. On timeout terraform gets SIGINT first so it can release its state lock."""
        command = args[0]
        start = time.monotonic()
        log.debug("hecate_terraform: terraform %s in %s", " ".join(args), cwd)
        process = subprocess.Popen(
            [self.binary, *args],
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            umask=0o077,
        )
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
            raise CommandExecutionError(
                f"terraform {command} timed out after {self.timeout}s in {cwd} (interrupted; if it held the state "
                f"lock, `terraform force-unlock` may be needed)"
            ) from None
        finally:
            self.timings[command] = round(self.timings.get(command, 0) + time.monotonic() - start, 3)
        if process.returncode not in ok:
            detail = (stderr or stdout or "").strip()
            raise CommandExecutionError(f"terraform {command} failed (exit {process.returncode}) in {cwd}: {self.scrub(detail[-3000:])}")
        return process.returncode, stdout

    def scrub(self, text):
        return api.redact(text, self.secrets)

    def json(self, args, cwd):
        _, stdout = self.run(args, cwd)
        try:
            return json.loads(stdout)
        except ValueError:
            raise CommandExecutionError(f"terraform {args[0]} did not print JSON in {cwd}") from None


def _lock_timeout(section, lock_timeout):
    value = lock_timeout or section.get("lock_timeout") or "60s"
    if isinstance(value, int):
        value = f"{value}s"
    return value


def _allowed(section, allow_delete, allow_replace):
    delete = section.get("allow_delete", False) if allow_delete is None else bool(allow_delete)
    replace = section.get("allow_replace", False) if allow_replace is None else bool(allow_replace)
    return delete, replace


# -- public functions ------------------------------------------------------------------------------
def version():
    """
    The terraform binary's version (``terraform version -json``) and its path.

    CLI Example:

    .. code-block:: bash

        salt-call hecate_terraform.version
    """
    section = _opts_section()
    try:
        section = _settings()
    except CommandExecutionError:
        pass  # version works without a terraform section
    runner = _Terraform(section)
    data = runner.json(["version", "-json"], cwd=tempfile.gettempdir())
    return {"version": data.get("terraform_version"), "binary": runner.binary, "platform": data.get("platform")}


def render(workdir=None, source=TEMPLATE_SOURCE, test=False):
    """
    Render the Hetzner Cloud module (network, firewall, edge servers, outputs) from pillar into the
    workdir, and the non-secret ``hecate:terraform:vars`` into ``hecate.auto.tfvars.json`` (mode 0600).
    Only files whose content differs are written; ``test=True`` writes nothing and reports them.
    With ``hecate:terraform:render: false`` only the tfvars file (and lock file) are managed.

    CLI Example:

    .. code-block:: bash

        salt-call hecate_terraform.render
        salt-call hecate_terraform.render test=True
    """
    tree = _tree()
    section = _settings(tree)
    return _render(tree, section, _workdir(section, workdir), source, test)[0]


def _render(tree, section, path, source, test):
    """Returns ``(result, files)``; ``files`` maps name -> (content, mode) of everything hecate manages."""
    files = _desired_files(tree, section, source)
    changed, unchanged = [], []
    for name, (content, mode) in sorted(files.items()):
        target = os.path.join(path, name)
        if _read(target) == content:
            unchanged.append(name)
            continue
        changed.append(name)
        if not test:
            _make_workdir(path)
            _write(target, content, mode)
    removed = []
    if section.get("render", True):
        for name in tf_util.TEMPLATES:
            stale = name[: -len(".j2")]
            if stale not in files and os.path.exists(os.path.join(path, stale)):
                removed.append(stale)
                if not test:
                    os.remove(os.path.join(path, stale))
    result = {"workdir": path, "changed": changed, "unchanged": unchanged, "removed": removed, "test": bool(test)}
    return result, files


def _desired_files(tree, section, source):
    files = {}
    if section.get("render", True):
        templates = {}
        for name in tf_util.TEMPLATES:
            text = __salt__["cp.get_file_str"](f"{source.rstrip('/')}/{name}")
            if text:
                templates[name] = text
        if not templates:
            raise CommandExecutionError(f"no terraform templates found at {source}")
        rendered = tf_util.render({**tree, "terraform": section}, templates)
        files.update({name: (text, 0o644) for name, text in rendered.items()})
    tfvars = tf_util.tfvars(section)
    if tfvars is not None:
        files[tf_util.TFVARS_FILE] = (tfvars, 0o600)
    if section.get("lock_file_source"):
        text = __salt__["cp.get_file_str"](section["lock_file_source"])
        if not text:
            raise CommandExecutionError(f"hecate:terraform:lock_file_source {section['lock_file_source']} not found")
        files[LOCK_FILE] = (text, 0o644)
    return files


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _make_workdir(path):
    """Make the workdir (0700; its missing parents 0755) from hecate's root down, following no link."""
    fd, created = paths.open_below(path, paths.root("lib", paths.prefix(__opts__)), WORKDIR_KEY, create=True)
    try:
        if created:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _write(path, content, mode):
    """Write ``path`` through a temporary file created exclusively, never through a link (hecatelib.paths)."""
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        paths.write_file(fd, os.path.basename(path), content.encode("utf-8"), mode)
    finally:
        os.close(fd)


def init(workdir=None):
    """
    ``terraform init -input=false`` in the workdir, never with ``-upgrade``: the committed
    ``.terraform.lock.hcl`` decides provider versions. With ``hecate:terraform:lockfile: auto``
    (default) an existing lock file is used read-only (``-lockfile=readonly``: init fails instead of
    changing it); without one terraform creates it, and the result says to commit it.

    CLI Example:

    .. code-block:: bash

        salt-call hecate_terraform.init
    """
    section = _settings()
    path = _workdir(section, workdir)
    runner = _Terraform(section)
    return _init(runner, section, path)


def _init(runner, section, path):
    if not os.path.isdir(path):
        raise CommandExecutionError(f"terraform workdir {path} does not exist (run hecate_terraform.render first)")
    lock_path = os.path.join(path, LOCK_FILE)
    existed = os.path.exists(lock_path)
    mode = section.get("lockfile", "auto")
    readonly = mode == "readonly" or (mode == "auto" and existed)
    args = ["init", "-input=false", "-no-color"]
    if readonly:
        args.append("-lockfile=readonly")
    runner.run(args, cwd=path)
    created = not existed and os.path.exists(lock_path)
    result = {"workdir": path, "lockfile": "readonly" if readonly else "update", "lock_file_created": created}
    if created:
        result["comment"] = f"terraform created {lock_path}: commit it (hecate:terraform:lock_file_source)"
    return result


def plan(workdir=None, destroy=False, allow_delete=None, allow_replace=None, lock_timeout=None):
    """
    ``terraform plan -detailed-exitcode -out=tfplan`` (exit 0: no changes, 2: changes, 1: error),
    then ``show -json tfplan`` for a summary of the resource addresses per action and the gate's
    verdict (``refused``: deletes/replacements not allowed by pillar ``allow_delete``/``allow_replace``
    or the arguments). Values are never returned: a plan holds variable values, secrets included.

    CLI Example:

    .. code-block:: bash

        salt-call hecate_terraform.plan
        salt-call hecate_terraform.plan allow_delete=True
    """
    section = _settings()
    path = _workdir(section, workdir)
    runner = _Terraform(section)
    return _plan(runner, section, path, destroy, allow_delete, allow_replace, lock_timeout)


def _plan(runner, section, path, destroy, allow_delete, allow_replace, lock_timeout, planfile=None, lock=True):
    planfile = planfile or os.path.join(path, tf_util.PLANFILE)
    args = ["plan", "-input=false", "-no-color", "-detailed-exitcode", f"-out={planfile}"]
    args.append(f"-lock-timeout={_lock_timeout(section, lock_timeout)}" if lock else "-lock=false")
    if destroy:
        args.append("-destroy")
    code, _ = runner.run(args, cwd=path, ok=(0, 2))
    if code == 0:
        summary = tf_util.summarize_plan({})
    else:
        summary = tf_util.summarize_plan(runner.json(["show", "-json", "-no-color", planfile], cwd=path))
    delete, replace = _allowed(section, allow_delete, allow_replace)
    return {
        "workdir": path,
        "changes": code == 2,
        "exit_code": code,
        "summary": summary,
        "refused": tf_util.gate(summary, delete, replace),
        "planfile": planfile,
    }


def check_plan(workdir=None, planfile=None, allow_delete=None, allow_replace=None):
    """
    Gate an existing plan file (``terraform show -json``): returns the summary and ``refused``
    (deletes/replacements not allowed); empty ``refused`` means it may be applied.

    CLI Example:

    .. code-block:: bash

        salt-call hecate_terraform.check_plan
    """
    section = _settings()
    path = _workdir(section, workdir)
    runner = _Terraform(section)
    planfile = planfile or os.path.join(path, tf_util.PLANFILE)
    if not os.path.exists(planfile):
        raise CommandExecutionError(f"no plan file {planfile}: run hecate_terraform.plan first")
    summary = tf_util.summarize_plan(runner.json(["show", "-json", "-no-color", planfile], cwd=path))
    delete, replace = _allowed(section, allow_delete, allow_replace)
    return {"summary": summary, "refused": tf_util.gate(summary, delete, replace), "planfile": planfile}


def apply(workdir=None, planfile=None, allow_delete=None, allow_replace=None, lock_timeout=None):
    """
    Apply a saved plan (``terraform apply tfplan``) after gating it again, then return the outputs.
    A plan that deletes or replaces resources is refused unless allowed. The plan file is removed
    afterwards (it holds secrets, and a saved plan applies once).

    CLI Example:

    .. code-block:: bash

        salt-call hecate_terraform.apply
        salt-call hecate_terraform.apply allow_replace=True
    """
    section = _settings()
    path = _workdir(section, workdir)
    runner = _Terraform(section)
    return _apply(runner, section, path, planfile, allow_delete, allow_replace, lock_timeout)


def _apply(runner, section, path, planfile, allow_delete, allow_replace, lock_timeout, summary=None):
    planfile = planfile or os.path.join(path, tf_util.PLANFILE)
    if not os.path.exists(planfile):
        raise CommandExecutionError(f"no plan file {planfile}: run hecate_terraform.plan first")
    if summary is None:  # a plan file from an earlier call: read it again, it may not be the one we gated
        summary = tf_util.summarize_plan(runner.json(["show", "-json", "-no-color", planfile], cwd=path))
    delete, replace = _allowed(section, allow_delete, allow_replace)
    refused = tf_util.gate(summary, delete, replace)
    if refused:
        raise CommandExecutionError("refusing to apply the terraform plan: " + "; ".join(refused))
    try:
        runner.run(
            ["apply", "-input=false", "-no-color", f"-lock-timeout={_lock_timeout(section, lock_timeout)}", planfile],
            cwd=path,
        )
    finally:
        if os.path.exists(planfile):
            os.remove(planfile)
    return {"workdir": path, "applied": True, "summary": summary, "outputs": _outputs(runner, path)}


def output(workdir=None, name=None, show_sensitive=False):
    """
    The root module's outputs (``terraform output -json``) as ``{name: value}``; sensitive outputs
    read ``<sensitive>`` unless ``show_sensitive=True``. ``name`` returns one value.

    CLI Example:

    .. code-block:: bash

        salt-call hecate_terraform.output
        salt-call hecate_terraform.output name=hecate_edge_ipv4
    """
    section = _settings()
    path = _workdir(section, workdir)
    runner = _Terraform(section)
    outputs = _outputs(runner, path, show_sensitive)
    if name is None:
        return outputs
    if name not in outputs:
        raise CommandExecutionError(f"no terraform output {name!r} (outputs: {', '.join(sorted(outputs)) or 'none'})")
    return outputs[name]


def _outputs(runner, path, show_sensitive=False):
    """The root module's outputs, as ``terraform output -json`` gives them. With the default local
    backend and workspace they are read from ``<workdir>/terraform.tfstate``, the file ``terraform
    output`` itself reads there (state format 4 keeps them under ``outputs``, in the same shape): that
    saves a Terraform process (~0.1 s) on every DNS stage and every deploy's dry run. A backend, another
    workspace, ``TF_DATA_DIR``, no state yet or another state version: Terraform is asked."""
    data_dir = os.path.join(path, ".terraform")
    default = runner.env.get("TF_WORKSPACE", "default") == "default" and "TF_DATA_DIR" not in runner.env
    if default and not any(os.path.exists(os.path.join(data_dir, name)) for name in ("terraform.tfstate", "environment")):
        try:
            with open(os.path.join(path, "terraform.tfstate"), encoding="utf-8") as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            state = None
        if isinstance(state, dict) and state.get("version") == 4 and isinstance(state.get("outputs"), dict):
            return tf_util.parse_outputs(state["outputs"], show_sensitive)
    return tf_util.parse_outputs(runner.json(["output", "-json", "-no-color"], cwd=path), show_sensitive)


def dns_targets(workdir=None):
    """
    The edge addresses for DNS, from the outputs ``hecate_edge_ipv4``/``hecate_edge_ipv6``:
    ``{"ipv4": [...], "ipv6": [...]}``.

    CLI Example:

    .. code-block:: bash

        salt-call hecate_terraform.dns_targets
    """
    return tf_util.dns_targets(output(workdir=workdir))


def run(workdir=None, test=False, allow_delete=None, allow_replace=None, lock_timeout=None, refresh=False):
    """
    The whole terraform stage: render (when ``hecate:terraform:render``), init, plan, gate, apply the
    plan when it has changes, and return the outputs. Refused deletes/replacements raise before
    anything is applied.

    ``init`` and ``plan`` are skipped (``plan_skipped`` in the result) when neither the workdir's
    configuration (``*.tf``, ``*.tfvars``, the lock file, the environment's non-secret settings, the
    binary) nor the state changed since the last plan that found nothing to do. That plan refreshed
    every resource; changes made outside Terraform since then are found by the next plan:
    ``refresh=True`` forces one (run it on a schedule to catch drift).

    ``test=True`` changes nothing: the module is rendered into a scratch copy of the workdir, planned
    there with ``-lock=false``, and the result lists the files that would change and the plan summary.

    CLI Example:

    .. code-block:: bash

        salt-call hecate_terraform.run
        salt-call hecate_terraform.run test=True
        salt-call hecate_terraform.run refresh=True
        salt-call hecate_terraform.run allow_delete=True
    """
    tree = _tree()
    section = _settings(tree)
    path = _workdir(section, workdir)
    runner = _Terraform(section)
    if test:
        return _dry_run(runner, tree, section, path, allow_delete, allow_replace, refresh)
    rendered, _ = _render(tree, section, path, TEMPLATE_SOURCE, test=False)
    result = {"workdir": path, "test": False, "files": rendered["changed"] + rendered["removed"]}
    skipped = None if refresh else _unchanged_since_plan(runner, section, path)
    if skipped:
        result.update(init={"workdir": path, "skipped": True}, changes=False, summary=tf_util.summarize_plan({}), plan_skipped=skipped)
        planned = {"changes": False, "planfile": None}
    else:
        result["init"] = _init(runner, section, path)
        planned = _plan(runner, section, path, False, allow_delete, allow_replace, lock_timeout)
        result.update(changes=planned["changes"], summary=planned["summary"])
    if planned.get("refused"):
        os.remove(planned["planfile"])
        raise CommandExecutionError("refusing to apply the terraform plan: " + "; ".join(planned["refused"]))
    if planned["changes"]:
        applied = _apply(runner, section, path, planned["planfile"], allow_delete, allow_replace, lock_timeout,
                         summary=planned["summary"])  # fmt: skip
        result["outputs"] = applied["outputs"]
    else:
        if planned["planfile"] and os.path.exists(planned["planfile"]):
            os.remove(planned["planfile"])
        if not skipped:
            _record_plan(path, _fingerprint(runner, section, path))
        result["outputs"] = _outputs(runner, path)
    result["applied"] = planned["changes"]
    result["seconds"] = dict(runner.timings)
    return result


def _fingerprint(runner, section, path):
    """A digest of everything a plan of ``path`` depends on that hecate can see without Terraform's
    providers: the configuration files under the workdir, the state (local files, or ``state pull``
    with a backend), the non-secret environment (``TF_*`` and ``hecate:terraform:env``), and the binary. Secret values are left out (only
    their names count): a digest of a token is still a function of the token."""
    digest = hashlib.sha256()

    def add(label, data):
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != ".terraform")
        for name in sorted(files):
            relative = os.path.relpath(os.path.join(root, name), path)
            if name.endswith(CONFIG_SUFFIXES) or relative == "terraform.tfstate" or relative.startswith("terraform.tfstate.d" + os.sep):
                with open(os.path.join(root, name), "rb") as handle:
                    add(relative, handle.read())
    if os.path.exists(os.path.join(path, ".terraform", "terraform.tfstate")):  # a backend: the state lives there
        state = runner.json(["state", "pull"], cwd=path)
        add("state", json.dumps([state.get("lineage"), state.get("serial")]).encode())
    secrets = tf_util.secret_environment(section)
    # hecate:terraform:env and the minion's hecate_terraform_env hold no secrets
    configured = {str(k) for k in {**(__opts__.get(ENV_OPTION) or {}), **(section.get("env") or {})}}
    settings = {k: v for k, v in runner.env.items() if (k.startswith("TF_") or k in configured) and k not in secrets}
    add("env", json.dumps([settings, sorted(secrets)], sort_keys=True).encode())
    binary = os.stat(runner.binary)
    add("binary", f"{runner.binary} {binary.st_size} {binary.st_mtime_ns}".encode())
    return digest.hexdigest()


def _record_plan(path, fingerprint):
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    _write(os.path.join(path, PLANNED_FILE), json.dumps({"fingerprint": fingerprint, "planned_at": when}) + "\n", 0o600)


def _unchanged_since_plan(runner, section, path):
    """Why this run may skip init and plan (a sentence), or None when it must plan."""
    try:
        with open(os.path.join(path, PLANNED_FILE), encoding="utf-8") as handle:
            last = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(last, dict) or not os.path.isdir(os.path.join(path, ".terraform")):
        return None
    if last.get("fingerprint") != _fingerprint(runner, section, path):
        return None
    return f"configuration and state unchanged since the plan of {last.get('planned_at')} found nothing to do (refresh=True plans anyway)"


def _dry_run(runner, tree, section, path, allow_delete, allow_replace, refresh=False):
    rendered, files = _render(tree, section, path, TEMPLATE_SOURCE, test=True)
    skipped = None
    unrendered = not rendered["changed"] and not rendered["removed"]
    if not refresh and unrendered:
        skipped = _unchanged_since_plan(runner, section, path)
    if skipped:
        return {"workdir": path, "test": True, "files": [], "changes": False, "summary": tf_util.summarize_plan({}),
                "refused": [], "plan_skipped": skipped, "seconds": dict(runner.timings)}  # fmt: skip
    # the workdir's inputs as the scratch copy gets them: an empty plan of an unchanged workdir is the
    # workdir's own plan, so it is recorded like one (a deploy skips a stage whose dry run changes nothing)
    fingerprint = _fingerprint(runner, section, path) if unrendered and os.path.isdir(os.path.join(path, ".terraform")) else None
    scratch = tempfile.mkdtemp(prefix="hecate-tf-")
    try:
        work = os.path.join(scratch, "work")
        if os.path.isdir(path):
            _scratch_copy(path, work)
        else:
            os.makedirs(work, mode=0o700)
        for name, (content, mode) in files.items():
            _write(os.path.join(work, name), content, mode)
        for name in rendered["removed"]:
            os.remove(os.path.join(work, name))
        _init(runner, section, work)
        planned = _plan(
            runner, section, work, False, allow_delete, allow_replace, None, planfile=os.path.join(scratch, "tfplan"), lock=False
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if fingerprint and not planned["changes"] and not planned["refused"]:
        _record_plan(path, fingerprint)
    return {
        "workdir": path,
        "test": True,
        "files": rendered["changed"] + rendered["removed"],
        "changes": planned["changes"] or bool(rendered["changed"] or rendered["removed"]),
        "summary": planned["summary"],
        "refused": planned["refused"],
        "seconds": dict(runner.timings),
    }


def _scratch_copy(source, target):
    """Copy the workdir for a dry run: provider binaries are hard-linked (large, read-only), everything
    else (state, lock file, .tf) is copied so terraform cannot touch the originals."""
    providers = os.path.join(source, ".terraform", "providers") + os.sep

    def copy(src, dst):
        if src.startswith(providers):
            try:
                os.link(src, dst)
                return dst
            except OSError:
                pass
        return shutil.copy2(src, dst)

    ignore = shutil.ignore_patterns(tf_util.PLANFILE, "*.hecate-tmp", PLANNED_FILE)
    shutil.copytree(source, target, symlinks=True, copy_function=copy, ignore=ignore)
