"""Converge Caddy's routes from pillar: read once, diff, one write, verify, roll back on failure.

.. code-block:: yaml

    hecate_routes:
      caddy.routes_managed: []

``routes_managed`` owns hecate's server in Caddy (see ``hecatelib.caddy.config`` for exactly which keys) and
leaves every other part of the config alone. A run costs one ``GET /config/`` when nothing differs,
and one ``GET`` + one ``POST /config/`` (``If-Match``: one reload) when something does, however many
routes changed. After writing it requests every changed host through Caddy; if Caddy refused the
config or a host does not answer, the snapshot taken before the write is loaded back.

Custom certificates (``hecate:reverse_proxy:caddy:tls:certificates``) are written as files (``hecatelib.caddy.certs``)
before the config that names them; ``changes`` and ``comment`` name their files, never their content.
"""

import copy

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

    hecate_fresh.drop_stale()
    from hecatelib import bulk, errors, paths, salt_state, schema
    from hecatelib.caddy import certs as caddy_certs
    from hecatelib.caddy import config as caddy_config
    from hecatelib.caddy import drift as caddy_drift
except ImportError as exc:  # pragma: no cover - hecate's _utils not synced, or a library missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

__virtualname__ = "caddy"

ETAG_RETRIES = 3


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return salt_state.virtual(__virtualname__, __salt__, "caddy.snapshot")


def _tree():
    # From pillar only: a tree passed as an argument would put its tokens in job arguments and logs.
    # A different tree (rollback, promote) arrives as a pillar override: state.apply pillar='{"hecate": ...}'.
    return salt_state.tree(__pillar__, __opts__, __context__)


def _verify(tree, domains):
    """Request each domain through Caddy; return the failures."""
    if not tree["reverse_proxy"]["caddy"]["verify"]["enabled"]:
        return []
    return __salt__["caddy.check"](domains)["failed"]


def _roll_back(snap, failures, written=None):
    """Load ``snap`` back; with ``written`` (this run's config) only while Caddy still runs it."""
    lines = [f"{f['domain']}: {f['reason']}" for f in failures]
    try:
        __salt__["caddy.restore"](snap, expect=written)
        outcome = "restored the config from before this run"
    except CommandExecutionError as exc:
        if isinstance(exc, errors.Conflict):  # caddy.Superseded: another run committed after ours; its config stays
            outcome = f"NOT restored: {exc}"
        elif isinstance(exc, errors.OutcomeUnknown):
            outcome = f"restoring the previous config: {exc}"
        else:
            outcome = f"AND restoring the previous config failed: {exc}"
    return "post-write check failed, " + outcome + ":\n  " + "\n  ".join(lines)


def _file_changes(files, written=None, removed=None):
    """The certificate files a run writes or removes, by path (names and fingerprints: no content)."""
    written = [path for path, _ in files["write"]] if written is None else written
    removed = files["remove"] if removed is None else removed
    changes = {"directory": f"{files['dir']} (mode 0700)"} if files["fix_dir"] else {}
    if written:
        changes["written"] = written
    if removed:
        changes["removed"] = removed
    return {"certificate files": changes} if changes else {}


def routes_managed(name):
    """Make Caddy serve exactly the routes in pillar ``hecate:reverse_proxy:caddy:routes``, with the
    custom certificates of ``hecate:reverse_proxy:caddy:tls:certificates``.

    name
        A label for the state; it does not select anything.

    Creates hecate's server when Caddy runs with nothing but an admin endpoint; prunes only
    hecate's own routes; ``test=True`` returns the diff and writes nothing. Certificate files are
    written before the config that names them; files no config names are removed after a good run.
    """
    with bulk.gc_paused():  # the live config and the desired one: thousands of routes each (hecatelib.bulk)
        return _routes_managed(name)


def _routes_managed(name):
    ret = salt_state.ret(name)
    try:
        tree = _tree()
        files = caddy_certs.plan_files(tree, paths.prefix(__opts__))  # reads only; holds the keys: never in a return or a log
    except (salt_state.PillarError, caddy_certs.CertError, OSError, ValueError) as exc:
        return salt_state.fail(ret, f"nothing was changed: {exc}")
    count = len(tree["reverse_proxy"]["caddy"]["routes"])
    file_changes = _file_changes(files)
    test = salt_state.test(__opts__)
    wrote = False
    try:
        for _ in range(ETAG_RETRIES):
            snap = __salt__["caddy.snapshot"]()
            live = snap["config"]
            desired = caddy_config.desired_config(live, tree)
            if desired == live:
                if test and file_changes:
                    return salt_state.pending(ret, file_changes, "would write the certificate files; Caddy's config is up to date")
                if test:
                    ret["comment"] = f"Caddy already serves the {count} pillar route(s); nothing sent"
                    return ret
                return _files_only(ret, files, live, count)
            changes = {**caddy_config.diff(live, desired), **file_changes}
            if test:
                return salt_state.pending(ret, changes, "would apply these changes in one reload")
            if not wrote:
                caddy_certs.write_files(files)  # before the config that names them; a failure stops here
                wrote = True
            try:
                __salt__["caddy.apply"](desired, snap["etag"])
                break
            except CommandExecutionError as exc:
                if isinstance(exc, errors.ApiError) and exc.status == 0:  # no answer: Caddy may still apply the request it got
                    return salt_state.fail(
                        ret, f"Caddy's admin API did not answer: whether it applied the change is unknown; re-run: {exc}"
                    )
                if not isinstance(exc, errors.Conflict):
                    return salt_state.fail(ret, f"Caddy rejected the new config and keeps serving the previous one: {exc}")
        else:
            return salt_state.fail(ret, f"Caddy's config changed under us {ETAG_RETRIES} times in a row (another writer?); nothing applied")
    except OSError as exc:  # writing a certificate file: the previous files and config stay
        return salt_state.fail(ret, f"writing the certificate files failed, Caddy's config was not sent: {exc}")
    except (CommandExecutionError, SaltInvocationError, caddy_certs.CertError) as exc:
        return salt_state.fail(ret, str(exc))
    failures = _verify(tree, caddy_config.changed_domains(live, desired))
    if failures:
        return salt_state.fail(ret, _roll_back(snap, failures, written=desired))
    caddy_drift.record_applied(__opts__["cachedir"], desired)
    removed = caddy_certs.remove_files(files)  # the new config names none of them
    changes.pop("certificate files", None)
    changes.update(_file_changes(files, removed=removed))
    ret.update(changes=changes, comment=f"applied in one reload; {count} route(s) in place")
    return ret


def _files_only(ret, files, live, count):
    """Caddy's config is the pillar's: write the certificate files it names that are missing or differ
    (Caddy holds them in memory; a restart reads them), and remove those it no longer names."""
    try:
        written = caddy_certs.write_files(files) if files["write"] or files["fix_dir"] else []
    except OSError as exc:
        return salt_state.fail(ret, f"writing the certificate files failed: {exc}")
    caddy_drift.record_applied(__opts__["cachedir"], live)
    changes = _file_changes(files, written=written, removed=caddy_certs.remove_files(files))
    if changes:
        ret.update(changes=changes, comment="Caddy's config is up to date; certificate files brought in line")
    else:
        ret["comment"] = f"Caddy already serves the {count} pillar route(s); nothing sent"
    return ret


def _single_route(name, route_args):
    tree = copy.deepcopy(_tree())
    route = {"service": name, **route_args}
    tree["reverse_proxy"]["caddy"]["routes"] = [route]
    tree = schema.validate(tree, root_prefix=paths.prefix(__opts__))  # the same checks and defaults as pillar routes
    return tree, caddy_config.compile_route(tree["reverse_proxy"]["caddy"]["routes"][0], tree)


def route_present(name, domain, backend=None, backends=None, **kwargs):
    """One route, by service ``name``, outside the pillar's route list (a manual or temporary route).

    Accepts the same keys as a pillar route (``tls_skip_verify``, ``profile``, ``lb_policy``,
    ``health``, ...). Note that ``routes_managed`` prunes hecate routes that are not in pillar.

    .. code-block:: yaml

        maintenance_page:
          caddy.route_present:
            - name: status
            - domain: status.example.org
            - backend: 10.0.0.9:8080
    """
    ret = salt_state.ret(name)
    args = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    args["domain"] = domain
    if backend:
        args["backend"] = backend
    if backends:
        args["backends"] = backends
    try:
        tree, compiled = _single_route(name, args)
        snap = __salt__["caddy.snapshot"]()
        routes = caddy_config.owned_routes(snap["config"])
        rid = compiled["@id"]
        if routes.get(rid) == compiled:
            ret["comment"] = f"route {rid} is in place"
            return ret
        server = (snap["config"] or {}).get("apps", {}).get("http", {}).get("servers", {}).get(caddy_config.SERVER)
        if server is None:
            return salt_state.fail(ret, "hecate's server does not exist in Caddy yet: apply hecate.routes (caddy.routes_managed) first")
        verb = "replace" if rid in routes else "add"
        changes = {rid: {"old": caddy_config.route_summary(routes[rid]) if rid in routes else None,
                         "new": caddy_config.route_summary(compiled)}}  # fmt: skip
        if salt_state.test(__opts__):
            return salt_state.pending(ret, changes, f"would {verb} route {rid}")
        if rid in routes:
            __salt__["caddy.patch"](rid, compiled, etag=snap["etag"])
        else:
            position = next(i for i, r in enumerate(server["routes"]) if r.get("@id") == caddy_config.CATCH_ALL_ID)
            __salt__["caddy.insert"](f"apps/http/servers/{caddy_config.SERVER}/routes/{position}", compiled, etag=snap["etag"])
    except (salt_state.PillarError, CommandExecutionError, SaltInvocationError) as exc:
        return salt_state.fail(ret, f"nothing was changed: {exc}")
    failures = _verify(tree, [domain])
    if failures:
        return salt_state.fail(ret, _roll_back(snap, failures))
    ret.update(changes=changes, comment=f"route {rid}: {verb}d")
    return ret


def route_absent(name):
    """Remove hecate's route for service ``name`` if present.

    .. code-block:: yaml

        old_app:
          caddy.route_absent:
            - name: legacy
    """
    ret = salt_state.ret(name)
    rid = f"{caddy_config.ROUTE_PREFIX}{name}"
    try:
        snap = __salt__["caddy.snapshot"]()
        routes = caddy_config.owned_routes(snap["config"])
        if rid not in routes:
            ret["comment"] = f"route {rid} is absent"
            return ret
        changes = {rid: {"old": caddy_config.route_summary(routes[rid]), "new": None}}
        if salt_state.test(__opts__):
            return salt_state.pending(ret, changes, f"would remove route {rid}")
        __salt__["caddy.delete"](rid, etag=snap["etag"])
    except (CommandExecutionError, SaltInvocationError) as exc:
        return salt_state.fail(ret, str(exc))
    ret.update(changes=changes, comment=f"route {rid} removed")
    return ret


def mod_watch(name, sfun=None, **kwargs):
    """``watch``: run the state again when a watched state changed (e.g. the pillar file or the Caddy job).

    Salt calls this only after the state itself reported no change; the tree is the one validated earlier in
    the run, so it costs one ``GET /config/``.
    """
    functions = {"routes_managed": routes_managed, "route_present": route_present, "route_absent": route_absent}
    return salt_state.mod_watch(functions, name, sfun, kwargs)
