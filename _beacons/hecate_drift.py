"""Beacon: tell the master when this edge's Caddy drifts from what hecate last applied.

One ``GET /config/`` per interval, no write. When hecate's part of the live config differs from what
``caddy.routes_managed`` last applied (kept in the minion's cache, see ``hecate_drift``), it fires
``hecate/drift/<minion>/caddy`` on the master's event bus with the differences (routes added, removed,
changed by id; ``count``). The same drift is reported once, not every interval; a changed drift is
reported again. The reactor ``salt/reactor/hecate_drift.sls`` acts on it (alert or heal).

.. code-block:: yaml

    # the state hecate.drift installs this from pillar (hecate:reconcile:interval, default 60 s)
    beacons:
      hecate_drift:
        - interval: 60
"""

import json
import logging

import salt.loader
from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "hecate_drift"

_LAST = {}  # minion id -> the drift last reported (a beacon module lives as long as the minion)
_UTILS = {}


def _utils():
    """hecate's utils through Salt's utils loader: Salt loads beacons with no utils directory on sys.path
    (modules and states get one), so a plain ``import hecate_drift`` here finds this very file."""
    if "loader" not in _UTILS:
        _UTILS["loader"] = salt.loader.utils(__opts__)
    return _UTILS["loader"]


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
    applied = _utils()["hecate_drift.load_applied"](__opts__["cachedir"])
    if applied is None:  # hecate never applied routes on this minion: nothing to compare with
        return []
    try:
        live = __salt__["caddy.snapshot"]()["config"]
    except (CommandExecutionError, SaltInvocationError) as exc:
        drift = {"error": f"Caddy's admin API did not answer: {exc}"}
    else:
        drift = _utils()["hecate_drift.compare"](applied, live)
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
