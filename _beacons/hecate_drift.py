"""Beacon: tell the master when this edge's Caddy drifts from what hecate last applied.

One ``GET /config/`` per interval, no write. When hecate's part of the live config differs from what
``caddy.routes_managed`` last applied (kept in the minion's cache, see ``hecate_drift``), it fires
``hecate/drift/<minion>/caddy`` on the master's event bus with the differences (routes added, removed,
changed by id; ``count``). The same drift is reported once, not every interval; a changed drift is
reported again. The reactor ``salt/reactor/hecate_drift.sls`` acts on it (alert or heal).

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
"""

import json
import logging
import os
import sys
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "hecate_drift"

_LAST = {}  # minion id -> the drift last reported (a beacon module lives as long as the minion)
_CERTS = {}  # minion id -> (monotonic time of the last certificate check, the alerts last reported)
CERT_CHECK_SECONDS = 3600


def _helpers():
    """``hecatelib.caddy``'s ``drift`` and ``certs``, as synced now. Salt loads beacons with no utils directory
    on sys.path (modules and states get one), and its utils loader does not load a package's modules: the
    synced utils directory goes on sys.path, then the package is imported as the modules import it."""
    utils = os.path.join(__opts__["extension_modules"], "utils")
    if os.path.isdir(utils) and utils not in sys.path:
        sys.path.insert(0, utils)
    import hecate_fresh  # only importable once the path above is set

    hecate_fresh.drop_stale()
    from hecatelib.caddy import certs, drift

    return drift, certs


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
    drift_helpers, _ = _helpers()
    applied = drift_helpers.load_applied(__opts__["cachedir"])
    if applied is None:  # hecate never applied routes on this minion: nothing to compare with
        return []
    _check_certificates(minion)
    try:
        live = __salt__["caddy.snapshot"]()["config"]
    except (CommandExecutionError, SaltInvocationError) as exc:
        drift = {"error": f"Caddy's admin API did not answer: {exc}"}
    else:
        drift = drift_helpers.compare(applied, live)
    fingerprint = json.dumps(drift, sort_keys=True)
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
        found = __salt__["caddy.certs"]()
    except (CommandExecutionError, SaltInvocationError) as exc:
        log.warning("hecate: reading the certificates Caddy serves on %s failed: %s", minion, exc)
        _CERTS[minion] = (now, reported)
        return
    _, certs = _helpers()
    alerts = [{k: c.get(k) for k in ("domain", "certificate", "not_after", "days_left", "managed")} for c in found if certs.alert(c)]
    fingerprint = json.dumps(sorted((a["domain"] or "", a["certificate"] or "", a["not_after"]) for a in alerts))
    _CERTS[minion] = (now, fingerprint)
    if not alerts or fingerprint == reported:
        return
    log.warning("hecate: %d certificate(s) on %s end soon and will not be renewed in time", len(alerts), minion)
    __salt__["event.send"](f"hecate/certs/{minion}/expiring", {"minion": minion, "certificates": alerts})
