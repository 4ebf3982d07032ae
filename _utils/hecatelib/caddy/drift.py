"""Drift of an edge's Caddy: how hecate's part of the live config differs from what hecate last applied.

After every successful ``caddy.routes_managed`` (a write, or a run that found nothing to change) the
state keeps hecate's part of the config in the minion's cache (:func:`record_applied`). The
``hecate_drift`` beacon then reads Caddy's config once per interval and compares hecate's part with
that file (:func:`compare`): a hand edit through the admin API, a ``caddy reload`` of another file,
or a Caddy restarted without ``--resume`` shows up as routes added, removed or changed.

Pure apart from the two file helpers; only hecate's own keys are compared (see ``hecatelib.caddy.config``), so
other owners of the same Caddy never count as drift.
"""

import contextlib
import json
import os
import uuid

from hecatelib import paths
from hecatelib.caddy import config as caddy_config

APPLIED_FILE = os.path.join("hecate", "caddy-applied.json")


def owned_part(config):
    """The keys hecate owns in a full Caddy config, as one small mapping (missing keys are None)."""
    config = config if isinstance(config, dict) else {}
    http = ((config.get("apps") or {}).get("http")) or {}
    policies = ((((config.get("apps") or {}).get("tls") or {}).get("automation")) or {}).get("policies") or []
    part = {
        "admin_listen": (config.get("admin") or {}).get("listen"),
        "http_port": http.get("http_port"),
        "https_port": http.get("https_port"),
        "server": (http.get("servers") or {}).get(caddy_config.SERVER),
        "tls_policy": next((p for p in policies if p.get("@id") == caddy_config.TLS_POLICY_ID), None),
    }
    certificates = caddy_config.owned_certificates(config)
    if certificates:  # only when there are some: a cache kept before custom certificates existed still matches
        part["certificates"] = certificates
    return part


def _as_config(part):
    """A config holding only ``part``: what ``hecatelib.caddy.config.diff`` reads."""
    servers = {caddy_config.SERVER: part["server"]} if part["server"] is not None else {}
    http = {"servers": servers, "http_port": part["http_port"], "https_port": part["https_port"]}
    tls = {"automation": {"policies": [part["tls_policy"]]}} if part["tls_policy"] else {}
    if part.get("certificates"):
        tls["certificates"] = {"load_files": part["certificates"]}
    return {"admin": {"listen": part["admin_listen"]}, "apps": {"http": http, "tls": tls}}


def compare(applied, live):
    """How ``live`` (a full config) differs from ``applied`` (an :func:`owned_part`): ``{}`` when it
    does not; else ``hecatelib.caddy.config.diff``'s summary (routes ``added``/``removed``/``changed`` by id,
    ``server`` for the other owned keys, with ``certificates`` naming the custom certificates
    added/removed/rotated) plus ``count``, the number of differences."""
    now = owned_part(live)
    if now == applied:
        return {}
    changes = caddy_config.diff(_as_config(applied), _as_config(now))
    if not changes:  # hecate's keys differ in a way the route diff does not name
        changes = {"server": caddy_config.SERVER_SETTINGS}
    count = sum(len(changes.get(k, {})) for k in ("added", "removed", "renamed", "changed")) + ("server" in changes)
    return {**changes, "count": count}


def applied_path(cachedir):
    return os.path.join(cachedir, APPLIED_FILE)


def record_applied(cachedir, config, part=None):
    """Keep hecate's part of ``config`` (what Caddy serves after a good run; or ``part`` itself, as
    :func:`load_applied` gave it) for the drift beacon, with a new ``written`` token: the beacon remembers a
    reported drift together with the token it was measured against, so the same drift after this write (a
    heal, a deploy) is a new drift, reported again. ``config`` None and ``part`` None: forget it (no good run
    to compare with). Written to a temp file then renamed, mode 0600: a crash never leaves half a file."""
    path = applied_path(cachedir)
    if config is None and part is None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = {"part": owned_part(config) if part is None else part, "written": uuid.uuid4().hex}
    paths.write_private(path, json.dumps(record, sort_keys=True))  # dumps: C encoder, dump() is pure Python


def load_applied(cachedir):
    """What :func:`record_applied` kept, ``{"part", "written"}``, or None before hecate's first good run on
    this minion. A file from before the token (hecate's part alone) reads with ``written: None``."""
    try:
        with open(applied_path(cachedir), encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return None
    return record if "part" in record else {"part": record, "written": None}
