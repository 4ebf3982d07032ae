"""Caddy's admin API, over a unix socket or loopback only.

Every mutation of Caddy's admin API re-provisions the whole config (a reload): the state module
(``caddy.routes_managed``) therefore diffs client-side and sends at most one write per run. This
module is the thin client underneath it, plus views for debugging on an edge minion.

The admin address comes from pillar ``hecate:reverse_proxy:caddy:admin`` (``unix//path`` or
``host:port``; default ``127.0.0.1:<ports.admin>``), or the same key in the minion config.
"""

import datetime
import hashlib
import http.client
import json
import logging
import os
import socket
import ssl
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

    hecate_fresh.drop_stale()
    from cryptography import x509

    from hecatelib import bulk, paths, salt_state, schema
    from hecatelib.caddy import certs as caddy_certs
    from hecatelib.caddy import config as caddy_config
    from hecatelib.caddy import drift as caddy_drift
    from hecatelib.caddy import probe as caddy_probe
    from hecatelib.errors import ApiError, Conflict, OutcomeUnknown
    from hecatelib.spec import Report
except ImportError as exc:  # pragma: no cover - hecate's _utils not synced, or a library missing
    IMPORT_ERROR = f"cannot import {exc.name}"
    ApiError = Conflict = OutcomeUnknown = CommandExecutionError  # the classes below still define; __virtual__ says why not
else:
    IMPORT_ERROR = None

log = logging.getLogger(__name__)

__virtualname__ = "caddy"

READ_TIMEOUT = 30
RESTORE_CHECKS = 4  # reads after a restore that got no answer (0.2 s, 0.4 s, 0.6 s apart)


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return __virtualname__


class AdminError(ApiError):
    """Caddy's admin API refused a request; ``status`` is the HTTP status (0: no answer)."""

    sent = False  # with status 0: the request went out, so Caddy may have applied it


class EtagMismatch(AdminError, Conflict):
    """412: the config changed since it was read (someone else wrote). Re-read and retry."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def admin_address():
    """The admin address this minion talks to, checked: a unix socket or a loopback host:port.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.admin_address
    """
    address = __salt__["config.get"]("hecate:reverse_proxy:caddy:admin", None)
    if not address:
        port = __salt__["config.get"]("hecate:reverse_proxy:caddy:ports:admin", 2019)
        address = f"127.0.0.1:{port}"
    report = Report()
    schema.AdminAddress()(address, "hecate:reverse_proxy:caddy:admin", report)
    if report.errors:  # the configuration is wrong, not the call: one line, no usage block
        raise CommandExecutionError("; ".join(f"{p}: {r}" for p, r in report.errors))
    return address


def _connection(address, timeout=READ_TIMEOUT):
    if address.startswith("unix//"):
        return _UnixConnection(address[len("unix/") :], timeout)
    host, _, port = address.rpartition(":")
    return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)


def _request(method, path, body=None, headers=None, content_type="application/json", timeout=None):
    """One admin request. Returns ``(status, headers, parsed body)``; raises AdminError on >= 400
    (``status`` 0: no answer; ``sent`` says whether the request went out, so may have been applied).
    ``timeout``: seconds to wait for the answer once the request is sent (default: the connection's)."""
    status, answer_headers, raw = _exchange(method, path, body, headers, content_type, timeout)
    text = raw.decode("utf-8", "replace")
    try:
        with bulk.gc_paused():  # GET /config/ of 5000 routes: 8 MB of JSON (hecatelib.bulk)
            parsed = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = text
    if status >= 400:
        message = parsed.get("error") if isinstance(parsed, dict) else text
        error = EtagMismatch if status == 412 else AdminError
        raise error(f"Caddy refused {method} {path}: HTTP {status}: {message}", status, parsed)
    return status, answer_headers, parsed


def _exchange(method, path, body=None, headers=None, content_type="application/json", timeout=None):
    """One admin request and its answer as Caddy sent it: ``(status, headers, body bytes)``; raises
    AdminError when there is no answer (see :func:`_request`)."""
    address = admin_address()
    payload = None
    if body is not None:
        payload = body if isinstance(body, (bytes, str)) else json.dumps(body, separators=(",", ":"))
        if isinstance(payload, str):
            payload = payload.encode()
    send = {"Host": "localhost" if address.startswith("unix//") else address, **(headers or {})}
    if payload is not None:
        send["Content-Type"] = content_type
    conn = _connection(address)
    sent = False
    try:
        conn.request(method, path, body=payload, headers=send)
        sent = True
        if timeout is not None:
            conn.sock.settimeout(timeout)
        response = conn.getresponse()
        raw = response.read()
        answer_headers = dict(response.getheaders())
    except OSError as exc:
        error = AdminError(f"Caddy admin API at {address} {'did not answer' if sent else 'unreachable'}: {exc}")
        error.sent = sent
        raise error from exc
    finally:
        conn.close()
    return response.status, answer_headers, raw


def _tree():
    """The validated ``hecate`` pillar tree. An invalid pillar raises CommandExecutionError naming every bad
    key: ``salt-call`` prints it as one error, where a SaltInvocationError (a TypeError) would be shown as
    "Passed invalid arguments" followed by the function's usage (salt/cli/caller.py)."""
    try:
        # From pillar, validated once per run (a probe per host used to re-validate it every time).
        return salt_state.tree(__pillar__, __opts__, __context__)
    except schema.PillarError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _certificates(tree):
    """The pillar's custom certificates; a certificate that cannot be read is a pillar error."""
    try:
        return caddy_certs.certificates(tree)
    except caddy_certs.CertError as exc:
        raise CommandExecutionError(str(exc)) from exc


def config(path=""):
    """Return Caddy's live config, or the part at ``path`` (``apps/http/servers``).

    CLI Example:

    .. code-block:: bash

        salt-call caddy.config
        salt-call caddy.config apps/http/servers/hecate/listen
    """
    return _request("GET", f"/config/{path.strip('/')}")[2]


def snapshot(path=None, keep=None):
    """Read the whole config with its ``Etag``: ``{"config": ..., "etag": ...}``. With ``path``, also
    write it to that file (mode 0600) for a later :py:func:`restore`.

    keep
        A name (a deploy's run id): keep the snapshot in this minion's cache instead
        (``<cachedir>/hecate/snapshots/<keep>.json``, mode 0600, the newest 10 kept) and return only
        ``{"path": ..., "etag": ...}``. A rollback restores it from there: the whole config never travels
        to the master (at 1000 routes that costs Salt seconds; the GET costs milliseconds).

    CLI Example:

    .. code-block:: bash

        salt-call caddy.snapshot
        salt-call caddy.snapshot path=/var/backups/caddy-before.json
    """
    if keep is not None:
        if not str(keep) or not all(c.isalnum() or c in "-_." for c in str(keep)) or str(keep).startswith("."):
            raise SaltInvocationError(f"keep={str(keep)[:80]!r}: a name of letters, digits, '-', '_' and '.'")
        return _keep_snapshot(str(keep))
    _, headers, body = _request("GET", "/config/")
    etag = next((v for k, v in headers.items() if k.lower() == "etag"), None)
    snap = {"config": body, "etag": etag}
    if path:
        paths.write_private(path, json.dumps(snap, indent=2, sort_keys=True))
    return snap


OWNED_PREFIXES = (caddy_config.ROUTE_PREFIX, caddy_config.GUARD_PREFIX) if IMPORT_ERROR is None else ()


def _keep_snapshot(keep):
    """``snapshot(keep=...)``: Caddy's config written as Caddy sent it, never decoded here (at 5000 routes,
    decoding its 8 MB and encoding it again cost more CPU than the request)."""
    status, headers, raw = _exchange("GET", "/config/")
    if status >= 400:
        raise AdminError(f"Caddy refused GET /config/: HTTP {status}: {raw[:300].decode('utf-8', 'replace')}", status)
    etag = next((v for k, v in headers.items() if k.lower() == "etag"), None)
    folder = os.path.join(__opts__["cachedir"], "hecate", "snapshots")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, f"{keep}.json")
    # what the drift beacon compares with, as it was: a restore puts it back with the config (else the
    # beacon would call the restored config drift, and a heal would re-apply the run that was undone)
    applied = caddy_drift.load_applied(__opts__["cachedir"])
    fields = json.dumps({"applied": applied["part"] if applied else None, "etag": etag})
    paths.write_private(path, '{"config": ' + (raw.decode("utf-8").strip() or "null") + ", " + fields[1:])
    kept = sorted((os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".json")), key=os.path.getmtime)
    for old in kept[:-10]:
        os.remove(old)
    return {"path": path, "etag": etag}


def routes(server=None):
    """List every route of every HTTP server: id, hosts, upstreams, and whether hecate owns it.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.routes
        salt-call caddy.routes server=hecate
    """
    live = config("apps/http/servers") or {}
    found = []
    for name, srv in sorted(live.items()):
        if server and name != server:
            continue
        for position, route in enumerate(srv.get("routes") or []):
            rid = route.get("@id", "")
            summary = caddy_config.route_summary(route)
            found.append(
                {
                    "server": name,
                    "position": position,
                    "id": rid,
                    "hosts": summary["hosts"],
                    "upstreams": summary["upstreams"],
                    "managed": rid.startswith(OWNED_PREFIXES) or rid in (caddy_config.CATCH_ALL_ID, caddy_config.STRIP_ID),
                }
            )
    return found


def route(route_id):
    """Return one route by its ``@id`` (``hecate_route_<service>``), or None when absent.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.route hecate_route_grafana
    """
    try:
        return _request("GET", f"/id/{route_id}")[2]
    except AdminError as exc:
        if exc.status == 404 or "unknown object ID" in str(exc):
            return None
        raise


def upstreams():
    """Upstream health as Caddy sees it: address, active requests, recent failures, and the pillar
    services that use each address (``services``, as ``hecate.health`` shows them; empty for an upstream
    no pillar route names). Returns ``{"upstreams": [...], "comment": ...}``.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.upstreams
    """
    uses = caddy_config.upstream_services(_tree())
    found = [{**u, "services": uses.get(u.get("address"), [])} for u in _request("GET", "/reverse_proxy/upstreams")[2] or []]
    if not found:
        comment = "no upstreams: Caddy proxies to nothing (no route loaded)"
    else:
        failing = [u["address"] for u in found if u.get("fails")]
        comment = f"{len(found)} upstream(s), " + (f"recent failures at {', '.join(failing)}" if failing else "no recent failures")
    return {"upstreams": found, "comment": comment}


def adapt(source, adapter="caddyfile"):
    """Adapt a Caddyfile (text, or a path to one) to Caddy JSON with the running Caddy's adapter.
    Returns ``{"config": ..., "warnings": [...]}``. Changes nothing.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.adapt /etc/caddy/Caddyfile
    """
    if "\n" not in source and os.path.isfile(source):
        with open(source, encoding="utf-8") as handle:
            source = handle.read()
    body = _request("POST", "/adapt", source, content_type=f"text/{adapter}")[2] or {}
    return {"config": body.get("result"), "warnings": body.get("warnings", [])}


def _with_admin(new_config):
    """``new_config`` with its admin block, checked: the one gate every write path goes through."""
    if isinstance(new_config, str):
        new_config = json.loads(new_config)
    new_config = dict(new_config or {})
    # Without an admin block Caddy moves its admin endpoint to the default: keep ours.
    admin = dict(new_config.get("admin") or {})
    admin.setdefault("listen", admin_address())
    new_config["admin"] = admin
    _refuse_exposed_admin(new_config)
    return new_config


def _refuse_exposed_admin(new_config, whole=True):
    """Refuse a config that would let anyone but this machine's root write Caddy's config: an admin
    listener off loopback (the pillar's own rule, ``hecatelib.schema.AdminAddress``), remote admin, or a
    route that proxies to the admin endpoint (the current one or the new one). ``whole=False``: a part
    of a config (a route for ``patch``/``insert``), checked for routes to the admin endpoint only."""
    report = Report()
    admins = {admin_address()}
    if whole:
        admin = new_config["admin"]
        schema.AdminAddress()(admin["listen"], "admin:listen", report)
        if admin.get("remote"):
            report.error("admin:remote", "remote administration is not allowed (hecate writes over loopback only)")
        admins.add(admin["listen"])
    for dial in caddy_config.admin_dials(new_config, admins):
        report.error("apps:http", f"a reverse_proxy dials {dial!r}, Caddy's admin endpoint: it would be public")
    if report.errors:
        problems = "; ".join(f"{p}: {r}" for p, r in report.errors)
        raise SaltInvocationError(f"refusing to write this Caddy config, nothing was sent: {problems}")


def load(new_config):
    """Replace the whole config (``POST /load``): one reload. The admin block is kept pointing
    at this minion's admin address. Caddy refuses an invalid config and keeps the old one.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.load '{"apps": {}}'
    """
    _request("POST", "/load", _with_admin(new_config))
    return True


def apply(new_config, etag):
    """Replace the whole config only if it is still the one read with ``etag`` (``If-Match``):
    one reload. Raises ``EtagMismatch`` when someone else changed it in between.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.apply "$(cat new.json)" etag='"/config/ 6ccd2f668d2a6caf"'
    """
    headers = {"If-Match": etag} if etag else {}
    _request("POST", "/config/", _with_admin(new_config), headers=headers)
    return True


def patch(route_id, value, etag=None):
    """Replace the object with ``@id`` ``route_id`` in place (``PATCH /id/...``), with ``If-Match``
    when ``etag`` is given. One reload.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.patch hecate_route_grafana '{"@id": "hecate_route_grafana", ...}'
    """
    if isinstance(value, str):
        value = json.loads(value)
    _refuse_exposed_admin(value, whole=False)
    _request("PATCH", f"/id/{route_id}", value, headers={"If-Match": etag} if etag else None)
    return True


def insert(path, value, etag=None):
    """Insert ``value`` at ``path`` (``PUT /config/<path>``; for an array index, before that element),
    with ``If-Match`` when ``etag`` is given. One reload.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.insert apps/http/servers/hecate/routes/0 '{"@id": "hecate_route_x", ...}'
    """
    if path.strip("/").split("/")[0] == "admin":
        raise SaltInvocationError("refusing to write Caddy's admin block piecewise: use caddy.load or caddy.apply")
    if isinstance(value, str):
        value = json.loads(value)
    _refuse_exposed_admin(value, whole=False)
    _request("PUT", f"/config/{path.strip('/')}", value, headers={"If-Match": etag} if etag else None)
    return True


def delete(route_id, etag=None):
    """Delete the object with ``@id`` ``route_id`` (``If-Match`` when ``etag`` is given). One reload.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.delete hecate_route_grafana
    """
    _request("DELETE", f"/id/{route_id}", headers={"If-Match": etag} if etag else None)
    return True


class Superseded(AdminError, Conflict):
    """The live config is no longer the one this run wrote: another writer committed since. Not restored."""


def _read_snapshot(snap):
    if isinstance(snap, str):
        with open(snap, encoding="utf-8") as handle:
            snap = json.load(handle)
    if not isinstance(snap, dict) or "config" not in snap:
        raise SaltInvocationError("restore needs a snapshot: {'config': ..., 'etag': ...} or the path of one")
    return snap


def restore(snap, expect=None, timeout=None):
    """Load a snapshot taken by :py:func:`snapshot` (the dict, or the path of its file).

    expect
        The config this run wrote (a rollback): restore only while Caddy still runs exactly that config.
        Caddy's ``POST /load`` ignores ``If-Match``, so the live config is read with its ``Etag``, compared
        with ``expect``, and the snapshot is written with ``POST /config/`` and that ``If-Match``: Caddy
        checks it under the same lock as the write (``changeConfig`` in caddy.go). Another writer's config
        is never overwritten (``Superseded``).

    timeout
        Seconds to wait for Caddy's answer once the write is sent (default 30). When no answer comes,
        the config is read again: the snapshot live means restored; anything else is reported as an
        unknown outcome (``hecatelib.errors.OutcomeUnknown``), never as a failed restore.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.restore /var/backups/caddy-before.json
        salt-call caddy.restore /var/backups/caddy-before.json timeout=60
    """
    snap = _read_snapshot(snap)
    target = _with_admin(snap["config"] or {})
    if expect is None:
        restored = _restore_write("POST", "/load", target, None, timeout)
        if "applied" in snap:  # a run's snapshot: the drift beacon's baseline goes back with the config
            caddy_drift.record_applied(__opts__["cachedir"], None, part=snap["applied"])
        return restored
    expect = _with_admin(expect)
    live = snapshot()
    if live["config"] == target:
        return True
    if live["config"] != expect:
        raise Superseded("another writer changed Caddy's config after this run wrote it: left as it is, not restored", 412)
    try:
        return _restore_write("POST", "/config/", target, live["etag"], timeout)
    except EtagMismatch as exc:
        raise Superseded("another writer changed Caddy's config just now: left as it is, not restored", 412) from exc


def _restore_write(method, path, target, etag, timeout):
    try:
        _request(method, path, target, headers={"If-Match": etag} if etag else None, timeout=timeout)
        return True
    except AdminError as exc:
        if exc.status != 0 or not exc.sent:  # refused, or never reached Caddy: it did not happen
            raise
        failure = exc
    # No answer: Caddy may apply it anyway (it finishes a request whose client left). A read waits for a
    # write in progress (rawCfgMu), but may come before Caddy starts on ours: look a few times.
    for attempt in range(RESTORE_CHECKS):
        time.sleep(0.2 * attempt)
        try:
            if snapshot()["config"] == target:
                return True
        except AdminError:
            pass
    raise OutcomeUnknown(f"outcome unknown: Caddy did not answer the restore ({failure}) and its config is not the snapshot now")


def compile():  # the verb operators look for; shadows a builtin only inside this module
    """Compile the pillar into the config Caddy should have (pure; reads nothing from Caddy).

    CLI Example:

    .. code-block:: bash

        salt-call caddy.compile
    """
    return caddy_config.bootstrap_config(_tree())


def _desired(live, tree):
    try:
        return caddy_config.desired_config(live, tree)
    except caddy_certs.CertError as exc:
        raise CommandExecutionError(str(exc)) from exc


def plan():
    """What ``caddy.routes_managed`` would change, without changing it: one GET. Returns
    ``{"changes": ..., "comment": ...}``: ``changes`` is the state's diff (routes ``added``, ``removed``,
    ``renamed``, ``changed``; ``certificates``; ``server``), empty when Caddy already serves the pillar;
    ``comment`` says it in one line ("no changes").

    CLI Example:

    .. code-block:: bash

        salt-call caddy.plan
    """
    tree = _tree()
    live = snapshot()["config"]
    with bulk.gc_paused():  # the live config and the desired one: thousands of routes each (hecatelib.bulk)
        desired = _desired(live, tree)
        changes = caddy_config.diff(live, desired) if desired != live else {}
    return {"changes": changes, "comment": caddy_config.diff_line(changes)}


def _local_ca():
    body = _request("GET", "/pki/ca/local")[2] or {}
    return body.get("root_certificate")


def _probe_all(domains=None, path="/", timeout=None):
    """Every probe of one run: the pillar validated once, the local CA fetched once, requests in parallel."""
    tree = _tree()
    caddy = tree["reverse_proxy"]["caddy"]
    # trusted: Caddy's local root with tls internal, and the pillar's custom certificates themselves (a
    # company CA is in no trust store here; the probe proves Caddy serves exactly the pillar's certificate)
    trusted = [_local_ca() if caddy["tls"]["mode"] == "internal" else None]
    if caddy["tls"]["mode"] != "off":
        trusted += [c.certificate_pem.decode() for c in _certificates(tree)]
    ca = "".join(pem for pem in trusted if pem) or None
    prober = caddy_probe.Prober(caddy, ca=ca, timeout=timeout)
    return prober.run(caddy_probe.targets(tree, domains), path)


def check(domains=None):
    """Request every pillar route (or ``domains``) through this Caddy as :py:func:`probe` does, in
    parallel. Returns ``{"failed": [...], "checked": n, "comment": ...}``: ``failed`` holds the results
    that are not ok (empty when every route answers); ``comment`` says it in one line ("nothing to
    check" when there is no route).

    CLI Example:

    .. code-block:: bash

        salt-call caddy.check
        salt-call caddy.check '[grafana.example.org]'
    """
    results = _probe_all(domains)
    failed = [result for result in results if not result["ok"]]
    if not results:
        comment = "nothing to check: " + ("no domains given" if domains is not None else "the pillar has no routes")
    elif failed:
        comment = f"{len(failed)} of {len(results)} route(s) fail: " + ", ".join(f["domain"] for f in failed[:10])
    else:
        comment = f"all {len(results)} route(s) answer"
    return {"failed": failed, "checked": len(results), "comment": comment}


def probes(domains=None):
    """Like :py:func:`check`, but every result, ok or not (``hecate.health`` shows them all).

    CLI Example:

    .. code-block:: bash

        salt-call caddy.probes
        salt-call caddy.probes '[grafana.example.org, cloud.example.org]'
    """
    return _probe_all(domains)


def probe(domain, path="/", timeout=None):
    """Request ``path`` on ``domain`` through this Caddy (127.0.0.1, the pillar's ports, SNI = domain)
    and say whether hecate routed it: ``{"domain", "status", "ok", "reason"}``. A 502/503/504, the
    catch-all's answer or a refused connection is not ok; a connection closed without an answer (an
    old server right after a reload) is retried first. For a route with ``auth`` the edge also requests
    each upstream where Caddy dials it: authentik's redirect alone does not prove the backend lives.
    With ``tls: acme`` a certificate that is not issued yet is reported as pending, not as a failure.

    CLI Example:

    .. code-block:: bash

        salt-call caddy.probe grafana.example.org
    """
    return _probe_all([domain], path, timeout)[0]


def _cert_entry(subject, issuer, not_before, not_after, now, warn_days):
    """The expiry fields of one certificate."""
    days = (not_after - now).total_seconds() / 86400
    lifetime = (not_after - not_before).total_seconds() / 86400
    return {
        "subject": subject,
        "issuer": issuer,
        "not_after": not_after.isoformat(),
        "days_left": round(days, 1),
        "lifetime_days": round(lifetime, 1),
        "expiring": days < warn_days,
        # Caddy renews a managed certificate with a third of its lifetime left: less means renewal is failing
        "renewal_overdue": days < lifetime / 3,
    }


def _served(port, host, timeout):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # read the certificate, trust nothing
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True)


def certs(warn_days=None, timeout=5):
    """The certificate this Caddy serves for each pillar route, with its expiry: one TLS handshake per
    host on the local listener (SNI = the host), so it covers managed (ACME, internal) and loaded
    certificates alike. ``expiring`` is true within ``warn_days`` of the end (default
    ``hecate:reconcile:cert_warn_days``, 14); ``renewal_overdue`` when less than a third of its lifetime is
    left (Caddy renews before that). ``certificate`` names the pillar's custom certificate a host gets
    (``managed`` false: nobody renews it but you). Each custom certificate no route is served with is
    listed too, from pillar (``domain`` null). A host that gets no certificate says why. Returns
    ``{"certificates": [...], "comment": ...}``; with ``tls: off`` the list is empty and the comment says
    "TLS off: no certificates".

    CLI Example:

    .. code-block:: bash

        salt-call caddy.certs
        salt-call caddy.certs warn_days=30
    """
    tree = _tree()
    caddy = tree["reverse_proxy"]["caddy"]
    if caddy["tls"]["mode"] == "off":
        return {"certificates": [], "comment": "TLS off: no certificates"}
    warn_days = tree["reconcile"]["cert_warn_days"] if warn_days is None else float(warn_days)
    custom = {c.fingerprint: c for c in _certificates(tree)}
    port = caddy["ports"]["https"]
    now = datetime.datetime.now(datetime.timezone.utc)
    found, served = [], set()
    for domain in sorted({r["domain"] for r in caddy["routes"]}):
        try:
            der = _served(port, domain.replace("*", "hecate-probe"), timeout)
        except OSError as exc:
            found.append({"domain": domain, "error": f"no certificate from 127.0.0.1:{port}: {exc}"})
            continue
        cert = x509.load_der_x509_certificate(der)
        mine = custom.get(hashlib.sha256(der).hexdigest())
        names = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
        fields = _cert_entry(*names, cert.not_valid_before_utc, cert.not_valid_after_utc, now, warn_days)
        entry = {"domain": domain, **fields, "managed": mine is None}
        if mine:
            entry["certificate"] = mine.name
            served.add(mine.name)
        found.append(entry)
    for mine in custom.values():
        if mine.name not in served:
            fields = _cert_entry(mine.subject, mine.issuer, mine.not_before, mine.not_after, now, warn_days)
            found.append({"domain": None, "certificate": mine.name, **fields, "managed": False})
    return {"certificates": found, "comment": _certs_line(found, warn_days)}


def _certs_line(found, warn_days):
    if not found:
        return "no routes and no custom certificates: no certificates"
    missing = sum(1 for c in found if "error" in c)
    alerts = sum(1 for c in found if caddy_certs.alert(c))
    parts = [f"{len(found)} certificate(s)"]
    if missing:
        parts.append(f"{missing} host(s) without one")
    parts.append(f"{alerts} ending within {warn_days:g} days without a renewal in time" if alerts else "none needs attention")
    return ", ".join(parts)
