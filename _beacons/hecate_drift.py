"""Beacon: tell the master when this edge's Caddy drifts from what hecate last applied.

One ``GET /config/`` per interval, no write. When hecate's part of the live config differs from what
``caddy.routes_managed`` last applied (kept in the minion's cache, see ``hecatelib.caddy.drift``), it fires
``hecate/drift/<minion>/caddy`` on the master's event bus with the differences (routes added, removed,
changed by id; ``count``). The same drift is reported once, not every interval; a changed drift is
reported again, and so is the same drift after hecate wrote (a heal or a deploy repaired it and it came
back). The reactor ``salt/reactor/hecate_drift.sls`` acts on it (alert or heal).

Certificates change slowly: at most once an hour (:data:`CERT_CHECK_SECONDS`) the beacon also asks
``caddy.certs`` (one TLS handshake per host, no admin request) and fires ``hecate/certs/<minion>/expiring``
when a certificate ends within ``hecate:reconcile:cert_warn_days`` (14) and nobody renews it in time
(``hecatelib.caddy.certs.alert``: a custom certificate, or a managed one whose renewal is overdue); the same set is
reported once. That tag is outside ``hecate/drift/``: the drift reactor re-applies routes, and no
re-apply renews a certificate (Caddy does, or whoever rotates the custom one in pillar).

.. code-block:: yaml

    # the state hecate.drift installs this from pillar (hecate:reconcile:interval, default 60 s)
    beacons:
      hecate_drift:
        - interval: 60
        - enabled: True
        - disable_during_state_run: True   # no report of a half-applied run
"""

import json
import logging
import sys
import time

import salt.loader
from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "hecate_drift"

_LAST = {}  # minion id -> the drift last reported (a beacon module lives as long as the minion)
_CERTS = {}  # minion id -> (monotonic time of the last certificate check, the alerts last reported)
CERT_CHECK_SECONDS = 3600
_HELPERS = {}


def _helpers():
    """hecate's helpers (``hecatelib``). Salt puts its utils directories on ``sys.path`` while it loads
    modules, states, runners and pillars (``LazyLoader.__populate_sys_path``), not beacons: the beacon
    does the same for its one import, then takes them off again."""
    if not _HELPERS:
        dirs = [d for d in salt.loader.utils(__opts__).module_dirs if d not in sys.path]
        sys.path.extend(dirs)
        try:
            import hecate_fresh  # pylint: disable=import-outside-toplevel

            hecate_fresh.drop_stale()
            from hecatelib.caddy import certs, drift  # pylint: disable=import-outside-toplevel
        finally:
            for directory in dirs:
                sys.path.remove(directory)
        _HELPERS.update(certs=certs, drift=drift)
    return _HELPERS


def __virtual__():
    return __virtualname__


def validate(config):
    """The beacon takes only Salt's own options (``interval``)."""
    if not isinstance(config, list):
        return False, "hecate_drift: the configuration must be a list"
    return True, "valid"


def beacon(config):
    """Compare Caddy's live config with the last applied one; fire an event when it drifted."""
    minion = __opts__["id"]
    applied = _helpers()["drift"].load_applied(__opts__["cachedir"])
    if applied is None:  # hecate never applied routes on this minion: nothing to compare with
        return []
    _check_certificates(minion)
    try:
        live = __salt__["caddy.snapshot"]()["config"]
    except (CommandExecutionError, SaltInvocationError) as exc:
        drift = {"error": f"Caddy's admin API did not answer: {exc}"}
    else:
        drift = _helpers()["drift"].compare(applied["part"], live)
    # with the token of hecate's last write: the same drift after a heal or a deploy is a new drift (the
    # state runs in another process, so the file is where the two meet)
    fingerprint = json.dumps([applied["written"], drift], sort_keys=True)
    if fingerprint == _LAST.get(minion):
        return []
    _LAST[minion] = fingerprint
    if not drift:
        return []
    data = {"minion": minion, "backend": "caddy", "drift": drift}
    log.warning("hecate: Caddy on %s drifted from the last applied config: %s", minion, drift.get("count", "?"))
    __salt__["event.send"](f"hecate/drift/{minion}/caddy", data)
    return []  # the event above carries the exact tag; a beacon return would send it twice


def _check_certificates(minion):
    """Once per :data:`CERT_CHECK_SECONDS`: fire ``hecate/certs/<minion>/expiring`` for the certificates that
    need a person (``hecatelib.caddy.certs.alert``), when that set differs from the one last reported."""
    checked, reported = _CERTS.get(minion, (None, None))
    now = time.monotonic()
    if checked is not None and now - checked < CERT_CHECK_SECONDS:
        return
    try:
        found = __salt__["caddy.certs"]()["certificates"]
    except (CommandExecutionError, SaltInvocationError) as exc:
        log.warning("hecate: reading the certificates Caddy serves on %s failed: %s", minion, exc)
        _CERTS[minion] = (now, reported)
        return
    alerts = [
        {k: c.get(k) for k in ("domain", "certificate", "not_after", "days_left", "managed")} for c in found if _helpers()["certs"].alert(c)
    ]
    fingerprint = json.dumps(sorted((a["domain"] or "", a["certificate"] or "", a["not_after"]) for a in alerts))
    _CERTS[minion] = (now, fingerprint)
    if not alerts or fingerprint == reported:
        return
    log.warning("hecate: %d certificate(s) on %s end soon and will not be renewed in time", len(alerts), minion)
    __salt__["event.send"](f"hecate/certs/{minion}/expiring", {"minion": minion, "certificates": alerts})
