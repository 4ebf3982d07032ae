"""The Consul emulator's contract, through py-consul (what hecatelib.consul.lock and hecatelib.secret_refs rely on) and
through raw requests for what py-consul would never send (those must land in ``violations``)."""

import threading
import time

import consul
import consul.exceptions
import pytest
import requests

from devstack.emulators.consul import ConsulEmulator

TOKEN = "root-token"


@pytest.fixture
def emu():
    emulator = ConsulEmulator(tokens={TOKEN: "write", "ro": {"hecate/": "read"}}).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def client(emu):
    return consul.Consul(host="127.0.0.1", port=emu.port, token=TOKEN)


def test_kv_indexes_cas_flags_and_recurse(emu, client):
    index, missing = client.kv.get("hecate/a")
    assert missing is None and int(index) >= 1  # a 404 still carries X-Consul-Index
    assert client.kv.put("hecate/a", "1", cas=0) is True
    assert client.kv.put("hecate/a", "2", cas=0) is False  # cas=0: only if absent
    _, entry = client.kv.get("hecate/a")
    assert entry["CreateIndex"] == entry["ModifyIndex"] and entry["LockIndex"] == 0 and entry["Value"] == b"1"
    assert client.kv.put("hecate/a", "3", cas=entry["ModifyIndex"] + 1) is False
    assert client.kv.put("hecate/a", "3", cas=entry["ModifyIndex"], flags=42) is True
    _, entry2 = client.kv.get("hecate/a")
    assert (entry2["Value"], entry2["Flags"], entry2["CreateIndex"]) == (b"3", 42, entry["CreateIndex"])
    assert entry2["ModifyIndex"] > entry["ModifyIndex"]
    client.kv.put("hecate/b/c", "x")
    client.kv.put("hecate/b/d", None)  # a null value
    client.kv.put("other", "y")
    _, entries = client.kv.get("hecate/", recurse=True)
    assert [e["Key"] for e in entries] == ["hecate/a", "hecate/b/c", "hecate/b/d"]
    assert entries[2]["Value"] is None
    assert client.kv.get("hecate/", keys=True, separator="/")[1] == ["hecate/a", "hecate/b/"]
    assert client.kv.delete("hecate/a", cas=0) is False  # 0 never deletes
    assert client.kv.delete("hecate/a", cas=entry2["ModifyIndex"]) is True
    assert client.kv.delete("hecate/b", recurse=True) is True
    assert client.kv.get("hecate/", recurse=True)[1] is None
    assert client.kv.get("other")[1]["Value"] == b"y"
    assert not emu.violations


def test_blocking_query_wakes_on_change_and_times_out(emu, client):
    client.kv.put("hecate/watch", "v1")
    index, _ = client.kv.get("hecate/watch")
    start = time.monotonic()
    client.kv.get("hecate/watch", index=index, wait="300ms")  # nothing changes: returns after the wait
    assert 0.25 < time.monotonic() - start < 2
    threading.Timer(0.2, lambda: consul.Consul(host="127.0.0.1", port=emu.port, token=TOKEN).kv.put("hecate/watch", "v2")).start()
    start = time.monotonic()
    new_index, entry = client.kv.get("hecate/watch", index=index, wait="10s")
    assert entry["Value"] == b"v2" and int(new_index) > int(index) and time.monotonic() - start < 2
    gone_index, _ = client.kv.get("hecate/watch")
    threading.Timer(0.2, lambda: consul.Consul(host="127.0.0.1", port=emu.port, token=TOKEN).kv.delete("hecate/watch")).start()
    idx, missing = client.kv.get("hecate/watch", index=gone_index, wait="10s")
    assert missing is None and int(idx) > int(gone_index)  # a delete wakes the watcher too
    assert not emu.violations


def test_sessions_locks_and_invalidation(emu, client):
    emu.speed = 10.0  # a 10 s TTL lasts one wall-clock second
    holder = client.session.create(name="holder", ttl=10, lock_delay=5)
    waiter = client.session.create(name="waiter", ttl=86400, lock_delay=0)
    assert client.kv.put("hecate/lock", "h", acquire=holder) is True
    assert client.kv.put("hecate/lock", "h2", acquire=holder) is True  # re-acquire by the holder
    _, entry = client.kv.get("hecate/lock")
    assert (entry["Session"], entry["LockIndex"], entry["Value"]) == (holder, 1, b"h2")
    assert client.kv.put("hecate/lock", "w", acquire=waiter) is False
    assert client.kv.put("hecate/lock", "w", release=waiter) is False  # only the holder releases
    assert client.session.info(holder)[1]["Name"] == "holder"
    assert client.session.renew(holder)["ID"] == holder
    assert {s["ID"] for s in client.session.list()[1]} == {holder, waiter}
    assert {s["ID"] for s in client.session.node(emu.node)[1]} == {holder, waiter}
    time.sleep(2.2)  # twice the holder's TTL passes without renewal (SessionTTLMultiplier)
    assert client.session.info(holder)[1] is None
    with pytest.raises(consul.exceptions.NotFound):
        client.session.renew(holder)
    _, entry = client.kv.get("hecate/lock")
    assert "Session" not in entry and entry["Value"] == b"h2"  # behavior=release keeps the key
    assert client.kv.put("hecate/lock", "w", acquire=waiter) is False  # lock-delay (5 s emulated)
    emu.advance(5)
    assert client.kv.put("hecate/lock", "w", acquire=waiter) is True
    assert client.kv.get("hecate/lock")[1]["LockIndex"] == 2
    with pytest.raises(consul.exceptions.ConsulException, match="invalid session"):
        client.kv.put("hecate/other", "x", acquire=holder)
    ephemeral = client.session.create(behavior="delete", lock_delay=0)
    client.kv.put("hecate/ephemeral", "x", acquire=ephemeral)
    assert client.session.destroy(ephemeral) is True
    assert client.kv.get("hecate/ephemeral")[1] is None  # behavior=delete removes held keys
    assert [reason for _, reason in emu.invalidated] == ["ttl expired", "destroyed"]
    with pytest.raises(AssertionError):
        client.session.create(ttl=5)  # py-consul itself refuses a TTL below Consul's 10 s
    assert not emu.violations


def test_a_session_ends_twice_its_ttl_after_its_last_renewal_then_its_lock_delay_holds_the_key(emu, client):
    """Consul's rules (agent/consul/session_ttl.go, agent/consul/state/session.go, agent/consul/kvs_endpoint.go):
    expiry at SessionTTLMultiplier x TTL after the last renewal, lock-delay after any invalidation (destroy
    too) capped at 60 s, "0s" disables it, a clean release sets none. The emulator's clock is moved by hand."""
    emu.speed = 0.0  # only advance() moves the clock: every step below is exact
    holder = client.session.create(ttl=10, lock_delay=90)  # more than MaxLockDelay
    waiter = client.session.create(lock_delay=0)
    assert client.kv.put("lock", "h", acquire=holder) is True
    emu.advance(15)
    assert client.session.renew(holder)["ID"] == holder  # alive past 1x TTL; the timer restarts here
    emu.advance(19.9)
    assert client.session.info(holder)[1] is not None
    emu.advance(0.2)  # 2 x TTL after the renewal
    assert client.session.info(holder)[1] is None and emu.invalidated == [(holder, "ttl expired")]
    emu.advance(59.8)
    assert client.kv.put("lock", "w", acquire=waiter) is False  # the lock-delay, capped at 60 s
    emu.advance(0.3)
    assert client.kv.put("lock", "w", acquire=waiter) is True
    assert emu.sessions[waiter]["LockDelay"] == 0
    client.session.destroy(waiter)  # a destroy invalidates too, with the session's lock-delay: none here
    other = client.session.create(ttl=10)  # the default lock-delay: 15 s
    assert client.kv.put("lock", "o", acquire=other) is True
    client.session.destroy(other)
    third = client.session.create(lock_delay=0)
    assert client.kv.put("lock", "t", acquire=third) is False
    emu.advance(15.1)
    assert client.kv.put("lock", "t", acquire=third) is True
    assert client.kv.put("lock", "t", release=third) is True  # a clean release: no lock-delay
    fourth = client.session.create(lock_delay=0)
    assert client.kv.put("lock", "f", acquire=fourth) is True


def test_ttl_multiplier_one_is_consuls_earliest_expiry(emu, client):
    emu.speed, emu.ttl_multiplier = 0.0, 1.0
    session = client.session.create(ttl=10)
    emu.advance(9.9)
    assert client.session.info(session)[1] is not None
    emu.advance(0.2)
    assert client.session.info(session)[1] is None


def test_acl_tokens(emu):
    ro = consul.Consul(host="127.0.0.1", port=emu.port, token="ro")
    anonymous = consul.Consul(host="127.0.0.1", port=emu.port)
    consul.Consul(host="127.0.0.1", port=emu.port, token=TOKEN).kv.put("hecate/x", "1")
    assert ro.kv.get("hecate/x")[1]["Value"] == b"1"
    for call, match in [
        (lambda: ro.kv.put("hecate/x", "2"), "key:write"),
        (lambda: ro.kv.get("other/x"), "key:read"),
        (lambda: ro.session.create(), "session:write"),
        (lambda: anonymous.kv.get("hecate/x"), "anonymous token"),
        (lambda: consul.Consul(host="127.0.0.1", port=emu.port, token="bogus").kv.get("hecate/x"), "ACL not found"),
    ]:
        with pytest.raises(consul.exceptions.ACLPermissionDenied, match=match):
            call()
    assert not emu.violations


def test_requests_py_consul_never_sends_are_violations(emu):
    base = f"http://127.0.0.1:{emu.port}"
    headers = {"X-Consul-Token": TOKEN}
    assert requests.get(f"{base}/v1/kv/a?token={TOKEN}", timeout=5).status_code == 400
    assert requests.get(f"{base}/v1/kv/a?acquire=x", headers=headers, timeout=5).status_code == 400
    assert requests.put(f"{base}/v1/kv/a?cas=-1", headers=headers, timeout=5).status_code == 400
    assert requests.put(f"{base}/v1/kv/a?acquire=s&release=s", headers=headers, timeout=5).status_code == 400
    assert requests.get(f"{base}/v1/kv/a?wait=5s", headers=headers, timeout=5).status_code == 400
    assert requests.post(f"{base}/v1/kv/a", headers=headers, timeout=5).status_code == 400
    assert requests.get(f"{base}/v1/session/create", headers=headers, timeout=5).status_code == 400
    assert requests.put(f"{base}/v1/session/create", json={"TTL": 10}, headers=headers, timeout=5).status_code == 400
    assert requests.put(f"{base}/v1/session/create", json={"Color": "red"}, headers=headers, timeout=5).status_code == 400
    assert requests.get(f"{base}/v1/catalog/nodes", headers=headers, timeout=5).status_code == 400
    assert len(emu.violations) == 10
    assert emu.violations[0] == "GET /v1/kv: token in the query string (use X-Consul-Token)"
    emu.violations.clear()
    # documented but not what py-consul does by default: still valid requests
    assert requests.put(f"{base}/v1/session/create", json={"TTL": "5s"}, headers=headers, timeout=5).status_code == 400
    assert "Invalid Session TTL" in requests.put(f"{base}/v1/session/create", json={"TTL": "5s"}, headers=headers,
                                                 timeout=5).text  # fmt: skip
    assert requests.get(f"{base}/v1/kv/a?dc=elsewhere", headers=headers, timeout=5).status_code == 500
    assert not emu.violations


def test_injected_faults(emu, client):
    emu.inject(status=500, times=1, path="/v1/kv/", body="rpc error: leadership lost")
    with pytest.raises(consul.exceptions.ConsulException, match="500 rpc error"):
        client.kv.get("hecate/x")
    emu.inject(status=200, times=1, method="PUT", path="/v1/kv/", body=False, after=True)  # applied, reply lost
    assert client.kv.put("hecate/x", "1") is False
    assert client.kv.get("hecate/x")[1]["Value"] == b"1"
    assert not emu.violations
