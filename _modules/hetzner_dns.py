"""Hetzner Cloud DNS: zones, record sets (RRSets) and actions on the Cloud API.

The DNS Console API (dns.hetzner.com) was shut down in 2026; DNS lives in the Hetzner Cloud API,
``https://api.hetzner.cloud/v1``. RRSets are keyed by (name, type); names are relative to the zone and
lower-case, ``@`` is the apex. Every write returns an action to wait for; this module waits for many at
once (``GET /actions?id=..&id=..``).

Configuration (pillar or minion config, read with ``config.get``; the token is never an argument):

.. code-block:: yaml

    hecate:
      dns:
        token: <Hetzner Cloud API token, read+write>
        endpoint: https://api.hetzner.cloud/v1      # default; override for a local emulator
        allow_insecure_endpoint: false              # plain http only for local emulators
        timeout: 15                                 # seconds per request
        max_wait: 120                               # bound on rate-limit and action waits, seconds

Behaviour: names are URL-escaped; TXT values are written as quoted chunks of at most 255 bytes; the
``RateLimit-Limit/Remaining/Reset`` headers and 429 answers are honoured (wait, bounded by ``max_wait``);
reads are retried on 5xx with backoff; a write that timed out (or got a 5xx) is never sent again: the
RRSet is read back and the write counts as done only when the read shows it applied.

Writes to one RRSet in a row: the API refuses an action on a set while another action on it still runs
(423 ``locked``), and answers 409 ``conflict`` ("the resource has changed during the request, please
retry"). Before a write, the client waits for the action it started on the same set (known from the last
write's answer); a 423 waits for the zone's running actions, a 409 ``conflict`` backs off exponentially
with jitter (hcloud-go's ``client_handler_retry.go`` and ``ExponentialBackoffWithOpts``: base x 2^n, full
jitter, at most 5 retries); both are refused writes, so sending them again is safe. All of it is bounded
by ``max_wait``; then the write fails with a clean error. A 409 ``uniqueness_error`` (the set exists) and a
423 ``protected`` are never retried.
"""

import logging
import random
import time
from urllib.parse import quote

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hecate_fresh  # first: the helpers as synced now (see hecate_fresh)

    hecate_fresh.drop_stale()
    from hecatelib import api
    from hecatelib.dns import hetzner
    from hecatelib.dns import zones as dns_zones
except ImportError as exc:  # pragma: no cover - hecate's _utils not synced, or a library missing
    IMPORT_ERROR = f"cannot import {exc.name}"
else:
    IMPORT_ERROR = None

log = logging.getLogger(__name__)

__virtualname__ = "hetzner_dns"

CONTEXT_KEY = "hetzner_dns.client"
ACTION_BATCH = 50  # ids per GET /actions
MAX_429 = 10
# hcloud-go (hcloud/client.go NewClient): retryMaxRetries 5, ExponentialBackoffWithOpts{Multiplier: 2, Jitter}
MAX_WRITE_RETRIES = 5
RETRY_CAP = 30.0  # seconds, the longest single back-off


def __virtual__():
    if IMPORT_ERROR:
        return (False, f"{__virtualname__}: {IMPORT_ERROR}")
    return __virtualname__


if not IMPORT_ERROR:

    class HetznerClient(api.ApiClient):
        """``hecatelib.api.ApiClient`` plus the Cloud API's rate limiting.

        Every response's ``RateLimit-*`` headers are recorded. Before a request, when the last answer said
        no request is left, the client waits for one to come back; a 429 is waited out the same way (the
        wait doubles on each consecutive 429) and the request is sent again (a 429 was not processed).
        All waiting for one request is bounded by ``max_wait`` seconds.
        """

        def __init__(self, base_url, token, timeout=15, max_wait=120, verify=True, backoff=0.5, sleep=time.sleep):
            super().__init__(base_url, "hetzner_dns", token=token, timeout=timeout, verify=verify, backoff=backoff)
            self.max_wait = max_wait
            self.sleep = sleep
            self.limit = self.remaining = self.reset = None
            self.rate_waits = 0
            self.rate_waited = 0.0
            self.running = {}  # (zone, name, type) -> id of the action our last write on that set started
            self.write_retries = 0  # writes sent again after 409 conflict / 423 locked
            self.session.hooks["response"].append(self._observe)

        def _observe(self, response, *args, **kwargs):
            headers = response.headers
            for attr, name in (("limit", "RateLimit-Limit"), ("remaining", "RateLimit-Remaining"), ("reset", "RateLimit-Reset")):
                value = headers.get(name)
                if value is not None:
                    try:
                        setattr(self, attr, int(float(value)))
                    except ValueError:
                        pass
            return response

        def _rate_wait(self, strikes, budget):
            """Seconds to wait before the next request (0 if none), derived from the headers."""
            if strikes == 0 and (self.remaining is None or self.remaining > 0):
                return 0.0
            now = time.time()
            until_reset = (self.reset - now) if self.reset else None
            if until_reset is not None and until_reset > 0:
                # The Cloud API refills gradually: Reset is when the bucket is full again, so one request
                # comes back every (Reset - now) / (Limit - Remaining) seconds.
                missing = max((self.limit or 0) - (self.remaining or 0), 1)
                seconds = until_reset / missing * (2 ** max(strikes - 1, 0))
                seconds = min(max(seconds, 0.05), until_reset + 0.05)
            elif until_reset is not None:
                seconds = 0.05 * (2 ** max(strikes - 1, 0))
            else:
                seconds = min(0.5 * (2 ** max(strikes - 1, 0)), 30.0)
            if seconds > budget:
                raise api.ApiError(
                    f"hetzner_dns: rate limited (RateLimit-Remaining {self.remaining}, reset at {self.reset}); "
                    f"waiting {seconds:.1f}s more would exceed hecate:dns:max_wait ({self.max_wait}s)",
                    429,
                )
            return seconds

        def request(self, method, path, params=None, json=None, data=None, headers=None, ok=(200, 201, 202, 204)):
            strikes, waited = 0, 0.0
            while True:
                seconds = self._rate_wait(strikes, self.max_wait - waited)
                if seconds:
                    log.debug("hetzner_dns: rate limit: waiting %.2fs before %s %s", seconds, method, path)
                    self.sleep(seconds)
                    waited += seconds
                    self.rate_waits += 1
                    self.rate_waited += seconds
                    self.remaining = None  # unknown until the next answer
                response = super().request(method, path, params=params, json=json, data=data, headers=headers, ok=(*ok, 429))
                if response.status_code != 429 or 429 in ok:
                    return response
                strikes += 1
                self.remaining = 0
                if strikes > MAX_429:
                    raise self.error(method, path, response)


def _config(name, default=None):
    value = __salt__["config.get"](f"hecate:dns:{name}", default)
    return default if value in (None, "") else value


def check_config():
    """Check the DNS configuration without sending a request: a token is set (and is not an unresolved
    ``vault:``/``consul:`` reference) and the endpoint is HTTPS (or explicitly allowed to be plain HTTP).

    Returns the endpoint and whether a token is set; never the token.

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.check_config
    """
    token = _config("token")
    api.check_token(token, "hecate:dns:token")
    endpoint = _config("endpoint", hetzner.API_ENDPOINT)
    problem = api.endpoint_problem(endpoint, _config("allow_insecure_endpoint", False), "hecate:dns:allow_insecure_endpoint")
    if problem:
        raise CommandExecutionError(f"hecate:dns:endpoint {problem}")
    return {"endpoint": endpoint, "token": "set"}


def _client():
    config = check_config()
    token = _config("token")
    settings = {"base_url": config["endpoint"], "timeout": float(_config("timeout", 15)), "max_wait": float(_config("max_wait", 120))}
    return api.client_for(__context__, CONTEXT_KEY, settings, token, lambda: HetznerClient(token=token, **settings))


def _q(part):
    return quote(str(part), safe="")


def _zone_key(zone):
    if zone is None or str(zone).strip() == "":
        raise SaltInvocationError("zone is required (a zone name like example.org, or its id)")
    zone = str(zone).strip()
    try:
        return zone if zone.isdigit() else dns_zones.to_ascii(zone)
    except ValueError as exc:
        raise SaltInvocationError(f"zone {exc}") from None


def _rrset_key(zone, name, type):
    """(zone, relative name, upper-case type); SaltInvocationError on bad input, before any request."""
    zone = _zone_key(zone)
    rtype = str(type or "").strip().upper()
    if rtype not in dns_zones.TYPES:
        raise SaltInvocationError(f"type {type!r} is not a record type: {', '.join(dns_zones.TYPES)}")
    if name is None or str(name).strip() == "":
        raise SaltInvocationError("name is required (relative like www, @ for the apex, or www.<zone>)")
    try:
        rel = dns_zones.relative_name(name, zone) if not zone.isdigit() else _relative_only(name)
    except ValueError as exc:
        raise SaltInvocationError(f"name {exc}") from None
    return zone, rel, rtype


def _relative_only(name):
    name = str(name).strip()
    if name == "@":
        return name
    problem = dns_zones.name_problem(dns_zones.to_ascii(name) + ".zone")
    if problem:
        raise ValueError(f"{name!r} {problem}")
    return dns_zones.to_ascii(name)


def _values(rtype, values, zone):
    if values is None:
        raise SaltInvocationError("values is required (a list of record values)")
    if isinstance(values, (str, int)):
        values = [str(values)]
    values = [v["value"] if isinstance(v, dict) and "value" in v else v for v in values]
    try:
        records = dns_zones.normalise_records(rtype, values)
    except ValueError as exc:
        raise SaltInvocationError(f"{rtype} {exc}") from None
    if not records:
        raise SaltInvocationError("values must not be empty")
    if len(records) > dns_zones.MAX_RECORDS:
        raise SaltInvocationError(f"at most {dns_zones.MAX_RECORDS} values per request, got {len(records)}")
    return records


def _ttl(ttl, allow_none=True):
    if ttl is None or (isinstance(ttl, str) and ttl.lower() in ("", "none", "null")):
        if allow_none:
            return None
        raise SaltInvocationError("ttl is required")
    try:
        ttl = int(ttl)
    except (TypeError, ValueError):
        raise SaltInvocationError(f"ttl must be an integer, got {ttl!r}") from None
    if not dns_zones.TTL_MIN <= ttl <= dns_zones.TTL_MAX:
        raise SaltInvocationError(f"ttl {ttl} is out of range {dns_zones.TTL_MIN}..{dns_zones.TTL_MAX}")
    return ttl


def _rrset_path(zone, rel, rtype, suffix=""):
    return f"zones/{_q(zone)}/rrsets/{_q(rel)}/{_q(rtype)}{suffix}"


def _pages(path, item_key, params=None):
    client = _client()
    out, page = [], 1
    while page:
        body = client.get(path, params={**(params or {}), "page": page, "per_page": hetzner.PAGE_SIZE}) or {}
        out.extend(body.get(item_key) or [])
        pagination = (body.get("meta") or {}).get("pagination") or {}
        next_page = pagination.get("next_page")
        page = next_page if next_page and next_page > page else None
    return out


def zones(name=None):
    """List the zones of the token's project (every page).

    name
        Only the zone with this name.

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.zones
        salt-call hetzner_dns.zones name=example.org
    """
    params = {"name": dns_zones.to_ascii(name)} if name else {}
    return _pages("zones", "zones", params)


def zone(zone):
    """Get one zone by name or id.

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.zone example.org
    """
    return (_client().get(f"zones/{_q(_zone_key(zone))}") or {}).get("zone")


def rrsets(zone, name=None, type=None, label_selector=None):
    """List a zone's RRSets, every page (``ceil(N/50)`` requests for N sets).

    zone
        Zone name or id.
    name
        Only the set with this name (relative, ``@``, or a name inside the zone).
    type
        Only sets of this type (a list for several).
    label_selector
        Hetzner label selector, e.g. ``managed-by=hecate``.

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.rrsets zone=example.org
        salt-call hetzner_dns.rrsets example.org type=TXT label_selector=managed-by=hecate
    """
    zone = _zone_key(zone)
    params = {}
    if name is not None:
        try:
            params["name"] = dns_zones.relative_name(name, zone) if not zone.isdigit() else _relative_only(name)
        except ValueError as exc:
            raise SaltInvocationError(f"name {exc}") from None
    if type:
        types = [type] if isinstance(type, str) else list(type)
        types = [str(t).upper() for t in types]
        bad = [t for t in types if t not in dns_zones.TYPES]
        if bad:
            raise SaltInvocationError(f"type {', '.join(bad)} is not a record type")
        params["type"] = types
    if label_selector:
        params["label_selector"] = label_selector
    return _pages(f"zones/{_q(zone)}/rrsets", "rrsets", params)


def rrset(zone, name, type):
    """Get one RRSet; ``None`` when it does not exist.

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.rrset example.org www A
        salt-call hetzner_dns.rrset example.org @ MX
    """
    zone, rel, rtype = _rrset_key(zone, name, type)
    try:
        return (_client().get(_rrset_path(zone, rel, rtype)) or {}).get("rrset")
    except api.ApiError as exc:
        if exc.status == 404:
            return None
        raise


def _unknown_outcome(exc):
    return exc.timed_out or exc.status == 0 or exc.status >= 500


def _error_code(exc):
    """The Cloud API's error code (``conflict``, ``locked``, ``uniqueness_error``...) of an ApiError, or None."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    return error.get("code") if isinstance(error, dict) else None


def _backoff(client, retry):
    """hcloud-go's ``ExponentialBackoffWithOpts`` with ``Jitter`` (hcloud/client.go): ``base * 2^retry``
    capped, then uniformly between ``base`` and that."""
    ceiling = min(RETRY_CAP, client.backoff * 2**retry)
    return client.backoff + (ceiling - client.backoff) * random.random()  # noqa: S311 - jitter, not a secret


def _wait_running(zone, budget):
    """After a 423 ``locked``: wait for the zone's running actions (``GET /zones/<zone>/actions?status=running``,
    one page). Returns how many there were."""
    body = _client().get(f"zones/{_q(zone)}/actions", params={"status": "running", "per_page": hetzner.PAGE_SIZE}) or {}
    ids = [a["id"] for a in body.get("actions") or []]
    if ids:
        wait_actions(ids, timeout=max(budget, 0.001))
    return len(ids)


def _send(method, path, body, zone, what):
    """Send one write. A 423 ``locked`` waits for the zone's running actions, a 409 ``conflict`` backs off;
    both are sent again (the API refused them: nothing was applied), at most ``MAX_WRITE_RETRIES`` times and
    within ``max_wait`` seconds. Other errors are raised as they are."""
    client = _client()
    started = time.monotonic()
    retries = 0
    while True:
        try:
            return client.json(method, path, json=body) or {}
        except api.ApiError as exc:
            code = _error_code(exc)
            if (exc.status, code) not in ((409, "conflict"), (423, "locked")):
                raise
            budget = client.max_wait - (time.monotonic() - started)
            seconds = _backoff(client, retries)
            if retries >= MAX_WRITE_RETRIES or seconds > budget:
                raise CommandExecutionError(
                    f"hetzner_dns: {what}: the API still answers {exc.status} {code} after {retries + 1} attempts in "
                    f"{client.max_wait - budget:.1f}s (at most {MAX_WRITE_RETRIES} retries within hecate:dns:max_wait "
                    f"{client.max_wait:g}s); nothing was changed by it: run again"
                ) from None
            retries += 1
            client.write_retries += 1
            log.debug("hetzner_dns: %s: %s %s, retry %d", what, exc.status, code, retries)
            if code == "locked":
                try:
                    if _wait_running(zone, budget):
                        continue
                except api.ApiError as wait_error:  # not the write's outcome: it was refused
                    raise CommandExecutionError(
                        f"hetzner_dns: {what}: 423 locked; waiting for the running actions failed: {wait_error}"
                    ) from None
            client.sleep(seconds)


def _write(method, path, body, verify, what, rrset):
    """Send one write on ``rrset`` (``(zone, name, type)``). First wait for the action our previous write
    on the same set started (the API refuses a second action while one runs: 423 ``locked``). When the
    outcome is unknown (timeout, connection lost, 5xx) never send it again: read back and report
    ``{"action": None, "reread": True}`` when the read shows it applied."""
    client = _client()
    if method != "PUT" and rrset in client.running:  # PUT (labels) starts no action
        wait_actions([client.running[rrset]])
    try:
        result = _send(method, path, body, rrset[0], what)
    except api.ApiError as exc:
        if not _unknown_outcome(exc):
            raise
        log.warning("hetzner_dns: %s: outcome unknown (%s); re-reading instead of sending it again", what, exc)
        try:
            applied = verify()
        except api.ApiError as read_error:
            raise CommandExecutionError(f"{what}: outcome unknown ({exc}); the re-read failed too: {read_error}") from None
        if applied:
            return {"action": None, "reread": True}
        raise CommandExecutionError(
            f"{what}: {exc}; a re-read shows it was not applied (it may still land). Not sent again: run again to converge"
        ) from None
    action = result.get("action")
    if isinstance(action, dict) and action.get("status") == "running":
        client.running[rrset] = action["id"]
    return result


def _same_records(zone, current, records):
    return current is not None and dns_zones.actual_records(current, zone) == records


def _finish(result, wait):
    action = result.get("action")
    if wait and action and action.get("status") == "running":
        done = wait_actions([action["id"]])
        action = done[0] if done else action
        result["action"] = action
    if wait and action and action.get("status") == "error":
        raise CommandExecutionError(f"hetzner_dns: action {action['id']} ({action.get('command')}) failed: {action.get('error')}")
    return result


def _records_body(records):
    return [{"value": value} for value in records]


def create_rrset(zone, name, type, values, ttl=None, labels=None, wait=True):
    """Create an RRSet. A 409 means it exists already (use ``set_records``).

    zone
        Zone name or id.
    name
        Relative name (``www``, ``@`` for the apex, ``*`` for a wildcard) or a name inside the zone.
    type
        Record type (A, AAAA, CNAME, TXT, MX, SRV, CAA, ...).
    values
        List of record values in presentation form. TXT text is split into quoted chunks of at most 255
        bytes; host names (CNAME, MX, SRV, NS) are absolute.
    ttl
        Seconds (60..2147483647); ``None`` uses the zone's default.
    labels
        Dict of labels.
    wait
        Wait for the action to finish (default). ``False`` returns the running action to wait for later
        with ``wait_actions``.

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.create_rrset example.org www A '["192.0.2.10"]' ttl=300
        salt-call hetzner_dns.create_rrset example.org _dmarc TXT '["v=DMARC1; p=reject"]'
    """
    zone, rel, rtype = _rrset_key(zone, name, type)
    records = _values(rtype, values, zone)
    ttl = _ttl(ttl)
    body = {"name": rel, "type": rtype, "records": _records_body(records)}
    if ttl is not None:
        body["ttl"] = ttl
    if labels:
        body["labels"] = {str(k): str(v) for k, v in dict(labels).items()}

    def verify():
        return _same_records(zone, rrset(zone, rel, rtype), records)

    result = _write("POST", f"zones/{_q(zone)}/rrsets", body, verify, f"create {rel} {rtype} in {zone}", (zone, rel, rtype))
    return _finish(result, wait)


def set_records(zone, name, type, values, wait=True):
    """Replace all records of an RRSet.

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.set_records example.org www A '["192.0.2.10", "192.0.2.11"]'
    """
    zone, rel, rtype = _rrset_key(zone, name, type)
    records = _values(rtype, values, zone)

    def verify():
        return _same_records(zone, rrset(zone, rel, rtype), records)

    body = {"records": _records_body(records)}
    result = _write(
        "POST", _rrset_path(zone, rel, rtype, "/actions/set_records"), body, verify, f"set records of {rel} {rtype}", (zone, rel, rtype)
    )
    return _finish(result, wait)


def add_records(zone, name, type, values, ttl=None, wait=True):
    """Add records to an RRSet (the API creates the set when it does not exist).

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.add_records example.org www AAAA '["2001:db8::10"]'
    """
    zone, rel, rtype = _rrset_key(zone, name, type)
    records = _values(rtype, values, zone)
    ttl = _ttl(ttl)

    def verify():
        current = rrset(zone, rel, rtype)
        return current is not None and set(records) <= set(dns_zones.actual_records(current, zone))

    body = {"records": _records_body(records)}
    if ttl is not None:
        body["ttl"] = ttl
    result = _write(
        "POST", _rrset_path(zone, rel, rtype, "/actions/add_records"), body, verify, f"add records to {rel} {rtype}", (zone, rel, rtype)
    )
    return _finish(result, wait)


def remove_records(zone, name, type, values, wait=True):
    """Remove records from an RRSet (the API deletes the set when it becomes empty).

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.remove_records example.org www A '["192.0.2.11"]'
    """
    zone, rel, rtype = _rrset_key(zone, name, type)
    records = _values(rtype, values, zone)

    def verify():
        current = rrset(zone, rel, rtype)
        return current is None or not set(records) & set(dns_zones.actual_records(current, zone))

    body = {"records": _records_body(records)}
    what = f"remove records from {rel} {rtype}"
    result = _write("POST", _rrset_path(zone, rel, rtype, "/actions/remove_records"), body, verify, what, (zone, rel, rtype))
    return _finish(result, wait)


def change_ttl(zone, name, type, ttl, wait=True):
    """Change an RRSet's TTL (``ttl=None`` falls back to the zone's default).

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.change_ttl example.org www A 600
    """
    zone, rel, rtype = _rrset_key(zone, name, type)
    ttl = _ttl(ttl)

    def verify():
        current = rrset(zone, rel, rtype)
        return current is not None and current.get("ttl") == ttl

    body = {"ttl": ttl}
    result = _write(
        "POST", _rrset_path(zone, rel, rtype, "/actions/change_ttl"), body, verify, f"change TTL of {rel} {rtype}", (zone, rel, rtype)
    )
    return _finish(result, wait)


def change_protection(zone, name, type, change, wait=True):
    """Turn an RRSet's change protection on or off (a protected set refuses changes and deletion).

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.change_protection example.org @ MX true
    """
    zone, rel, rtype = _rrset_key(zone, name, type)
    if isinstance(change, str):
        change = change.strip().lower() in ("1", "true", "yes", "on")
    change = bool(change)

    def verify():
        current = rrset(zone, rel, rtype)
        return current is not None and bool((current.get("protection") or {}).get("change")) is change

    body = {"change": change}
    what = f"change protection of {rel} {rtype}"
    result = _write("POST", _rrset_path(zone, rel, rtype, "/actions/change_protection"), body, verify, what, (zone, rel, rtype))
    return _finish(result, wait)


def set_labels(zone, name, type, labels):
    """Replace an RRSet's labels (the whole label set; no action to wait for).

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.set_labels example.org www A '{"managed-by": "hecate"}'
    """
    zone, rel, rtype = _rrset_key(zone, name, type)
    labels = {str(k): str(v) for k, v in dict(labels or {}).items()}

    def verify():
        current = rrset(zone, rel, rtype)
        return current is not None and (current.get("labels") or {}) == labels

    result = _write("PUT", _rrset_path(zone, rel, rtype), {"labels": labels}, verify, f"set labels of {rel} {rtype}", (zone, rel, rtype))
    return result.get("rrset") if "rrset" in result else result


def delete_rrset(zone, name, type, wait=True):
    """Delete an RRSet. SOA and the apex NS set are refused here, before any request.

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.delete_rrset example.org old A
    """
    zone, rel, rtype = _rrset_key(zone, name, type)
    if dns_zones.is_providers({"name": rel, "type": rtype}):
        raise SaltInvocationError(f"{rel} {rtype} belongs to Hetzner (SOA / apex NS); refusing to delete it")

    def verify():
        return rrset(zone, rel, rtype) is None

    result = _write("DELETE", _rrset_path(zone, rel, rtype), None, verify, f"delete {rel} {rtype} in {zone}", (zone, rel, rtype))
    return _finish(result, wait)


def wait_actions(ids, timeout=None, interval=0.1):
    """Wait until every action in ``ids`` finished; poll them together (``GET /actions?id=..&id=..``,
    50 ids per request). Returns the final actions; an action in state ``error`` is returned, not raised.

    timeout
        Seconds; default ``hecate:dns:max_wait`` (120).

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.wait_actions '[101, 102, 103]'
    """
    if isinstance(ids, (int, str)):
        ids = [ids]
    try:
        pending = list(dict.fromkeys(int(i) for i in ids or []))
    except (TypeError, ValueError):
        raise SaltInvocationError(f"ids must be action ids (integers), got {ids!r}") from None
    if not pending:
        return []
    client = _client()
    timeout = float(timeout if timeout is not None else _config("max_wait", 120))
    deadline = time.monotonic() + timeout
    done = {}
    while pending:
        time.sleep(interval)
        for start in range(0, len(pending), ACTION_BATCH):
            batch = pending[start : start + ACTION_BATCH]
            body = client.get("actions", params={"id": batch}) or {}
            for action in body.get("actions") or []:
                if action.get("status") != "running":
                    done[action["id"]] = action
        pending = [i for i in pending if i not in done]
        if pending and time.monotonic() > deadline:
            raise CommandExecutionError(f"hetzner_dns: actions {pending} still running after {timeout:.0f}s")
        interval = min(interval * 2, 2.0)
    client.running = {k: v for k, v in client.running.items() if v not in done}
    return [done[i] for i in dict.fromkeys(int(i) for i in ids)]


def rate_limit():
    """The Cloud API's rate limit as its last answer to this process said it (``RateLimit-Limit``,
    ``RateLimit-Remaining``, ``RateLimit-Reset`` as unix seconds), without a request; each None before the first.

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.rate_limit
    """
    client = _client()
    return {"limit": client.limit, "remaining": client.remaining, "reset": client.reset}


def txt_value(text):
    """Show how a TXT text is written: quoted chunks of at most 255 bytes (UTF-8), escaped.

    CLI Example:

    .. code-block:: bash

        salt-call hetzner_dns.txt_value "v=DKIM1; k=rsa; p=MIIBIjANBg..."
    """
    try:
        return dns_zones.txt_value(str(text))
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None
