"""hecatelib.consul.lock against the Consul emulator through py-consul: sessions, acquire/release, renewal,
waiting holders (blocking queries), lost locks, and the deployment records."""

import json
import subprocess
import sys
import threading
import time

import consul
import pytest

from devstack.emulators.consul import Consul17, ConsulEmulator
from hecatelib.consul import TimeoutSession
from hecatelib.consul import client as consul_client
from hecatelib.consul import lock as consul_lock
from hecatelib.consul import settings as consul_settings
from hecatelib.consul.lock import ConsulLock, LockError, LockLost, LockTimeout
from hecatelib.consul.records import Records
from hecatelib.errors import RecordError
from tests.conftest import assert_no_violations
from tests.support import lock_holder
from tests.support.lock_holder import OTHER_HOST

TOKEN = "consul-deploy-token"
KEY = "hecate/locks/production"


@pytest.fixture
def emu():
    emulator = ConsulEmulator(tokens={TOKEN: "write", "reader": "read"}).start()
    yield emulator
    emulator.stop()
    assert_no_violations(emulator)


def client_for(emulator, token=TOKEN):
    return consul.Consul(host="127.0.0.1", port=emulator.port, token=token)


def test_acquire_stores_holder_and_release_frees_without_lock_delay(emu):
    lock = ConsulLock(client_for(emu), KEY, ttl=15, info={"deployment": "20250101T000000Z-abc123"})
    with lock:
        lock.check()
        session = lock.session
        assert emu.holder(KEY) == session
        stored = json.loads(emu.value(KEY))
        assert stored["deployment"] == "20250101T000000Z-abc123" and "@" in stored["holder"]
        assert emu.sessions[session]["TTL"] == "15s" and emu.sessions[session]["Behavior"] == "release"
    assert emu.holder(KEY) is None and emu.sessions == {}  # released, session destroyed
    assert "released_at" in json.loads(emu.value(KEY))
    release = [r for r in emu.writes if "release" in r.query]
    assert len(release) == 1 and release[0].headers["x-consul-token"] == TOKEN
    # a clean release carries no lock-delay: the next holder gets the key at once
    start = time.monotonic()
    with ConsulLock(client_for(emu), KEY, ttl=10, timeout=0):
        pass
    assert time.monotonic() - start < 0.5
    with pytest.raises(LockLost, match="is not held"):
        lock.check()


def test_two_concurrent_holders_never_interleave(emu):
    log, errors = [], []
    log_lock = threading.Lock()

    def deploy(name):
        try:
            for round_ in range(3):
                with ConsulLock(client_for(emu), KEY, ttl=10, timeout=20, retry_interval=0.05, info={"name": name}):
                    with log_lock:
                        log.append(("enter", name, round_))
                    time.sleep(0.03)
                    with log_lock:
                        log.append(("exit", name, round_))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=deploy, args=(f"deploy-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(log) == 4 * 3 * 2
    for i in range(0, len(log), 2):  # strictly enter/exit pairs of the same holder
        assert log[i][0] == "enter" and log[i + 1][:2] == ("exit", log[i][1]), log
    # waiters blocked on the key (X-Consul-Index) instead of polling in a tight loop
    blocking = [r for r in emu.reads if "index" in r.query]
    assert blocking and all(r.arg("wait", "").endswith("ms") for r in blocking)
    assert len(emu.reads) < 120
    assert emu.sessions == {}


def test_second_holder_times_out_naming_the_holder(emu):
    first = ConsulLock(client_for(emu), KEY, ttl=10, info={"deployment": "20250101T000000Z-first1"})
    first.acquire()
    try:
        second = ConsulLock(client_for(emu), KEY, ttl=10, timeout=0.4)
        start = time.monotonic()
        with pytest.raises(LockTimeout) as caught:
            second.acquire()
        waited = time.monotonic() - start
        assert 0.35 < waited < 2.0
        message = str(caught.value)
        assert f"another deploy holds the Consul lock {KEY}: {first.info['holder']}" in message
        assert "deployment 20250101T000000Z-first1" in message and "waited 0.4s" in message
        assert caught.value.holder["session"] == first.session
        assert list(emu.sessions) == [first.session]  # the loser's session is gone
        assert emu.holder(KEY) == first.session
        with pytest.raises(LockTimeout, match="did not wait"):
            ConsulLock(client_for(emu), KEY, ttl=10, timeout=0).acquire()
    finally:
        first.release()


def test_a_waiting_holder_gets_the_lock_when_released(emu):
    first = ConsulLock(client_for(emu), KEY, ttl=10)
    first.acquire()
    got = {}

    def wait_for_it():
        with ConsulLock(client_for(emu), KEY, ttl=10, timeout=10) as lock:
            got["at"] = time.monotonic()
            got["session"] = lock.session

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    time.sleep(0.3)
    released_at = time.monotonic()
    first.release()
    waiter.join(10)
    assert "session" in got and got["at"] - released_at < 0.9  # woken by the blocking query, not a 1 s poll


def test_renewal_keeps_the_lock_beyond_its_ttl(emu):
    emu.speed = 20.0  # a 10 s TTL lasts 0.5 s of wall time
    lock = ConsulLock(client_for(emu), KEY, ttl=10, renew_interval=0.1)
    with lock:
        time.sleep(1.5)  # three TTLs
        lock.check()
        assert emu.holder(KEY) == lock.session
        assert lock.renewals >= 5 and emu.renewals(lock.session) == lock.renewals
    assert emu.invalidated[-1][1] == "destroyed"


def test_default_renewal_interval_is_half_the_ttl(emu):
    assert ConsulLock(client_for(emu), KEY, ttl=30).renew_interval == 15
    with pytest.raises(LockError, match=r"10\.\.86400"):
        ConsulLock(client_for(emu), KEY, ttl=5)


def test_a_crashed_holder_elsewhere_frees_the_key_after_twice_its_ttl_and_its_lock_delay(emu):
    emu.speed = 20.0  # TTL 10 s -> 0.5 s, so Consul ends the session after 1 s; lock-delay 15 s -> 0.75 s
    elsewhere = {**consul_lock.process_identity(), **OTHER_HOST}
    crashed = ConsulLock(client_for(emu), KEY, ttl=10, lock_delay=15, renew_interval=0.1, identity=elsewhere, info={"deployment": "d-1"})
    crashed.acquire()
    crashed._stop.set()  # the process "dies": no more renewals, no release
    start = time.monotonic()
    lock = ConsulLock(client_for(emu), KEY, ttl=10, timeout=10, retry_interval=0.05, renew_interval=0.1)
    with lock:
        waited = time.monotonic() - start
        assert emu.holder(KEY) == lock.session
    assert (crashed.session, "ttl expired") in emu.invalidated
    assert 1.7 < waited < 5.0  # 2 x TTL (1 s) plus the lock-delay (0.75 s), no earlier


# -- a killed holder (issue 27 item 3) -----------------------------------------------------------------
@pytest.fixture
def sleeper():
    """A process of this host that the test kills: ``(process, its identity as a lock holder names it)``."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    start, _ = consul_lock._proc_stat(process.pid)
    here = consul_lock.process_identity()
    yield process, {**here, "pid": process.pid, "pid_start": start}
    process.kill()
    process.wait()


def test_holder_alive_knows_the_processes_of_this_host_and_only_those(sleeper):
    process, holder = sleeper
    here = consul_lock.process_identity()
    assert here["boot_id"] and here["pid_ns"] and here["pid_start"] > 0  # Linux gives all three
    assert consul_lock.holder_alive(holder) is True
    assert consul_lock.holder_alive({**holder, "pid_start": holder["pid_start"] + 1}) is False  # its PID, reused
    assert consul_lock.holder_alive({**holder, **OTHER_HOST}) is None  # another boot: another host
    assert consul_lock.holder_alive({**holder, "pid_ns": "pid:[1]"}) is None  # another container's PIDs
    assert consul_lock.holder_alive({"holder": "old@ctl-1", "pid": process.pid}) is None  # a holder that did not say
    process.kill()
    deadline = time.monotonic() + 5
    while consul_lock._proc_stat(process.pid)[1] != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert consul_lock.holder_alive(holder) is False  # killed, not yet reaped: a zombie
    process.wait()
    assert consul_lock.holder_alive(holder) is False  # gone


def _held(emu, deployment, **options):
    """A real process that takes the lock, killed with SIGKILL once it holds it. Returns its session."""
    process, session = lock_holder.start(emu.url, TOKEN, KEY, deployment, **options)
    assert emu.holder(KEY) == session
    process.kill()  # SIGKILL: no release, no destroy
    process.wait()
    return session


def test_a_killed_holder_on_this_host_is_taken_over_at_once_and_named(emu):
    """kill -9 of a deploy, the next deploy on the same host: its acquire destroys the dead session at once
    (the process is gone) and names the dead run, with the emulator ending sessions at 2 x TTL. Today's
    lock waits 2 x 15 s + the 15 s lock-delay."""
    dead_session = _held(emu, "20250101T000000Z-dead01")
    seen = []
    start = time.monotonic()
    lock = ConsulLock(client_for(emu), KEY, timeout=5, info={"deployment": "20250101T000100Z-next01"}, on_wait=seen.append)
    acquired = lock.acquire()
    waited = time.monotonic() - start
    try:
        assert waited < 1.5 and emu.holder(KEY) == lock.session
        assert acquired.dead_holder["deployment"] == "20250101T000000Z-dead01"
        assert "is gone; its session was destroyed" in acquired.dead_holder["how"]
        assert (dead_session, "destroyed") in emu.invalidated
        assert [(s["state"], s["alive"], s["deployment"]) for s in seen] == [("taking over", False, "20250101T000000Z-dead01")]
    finally:
        lock.release()


def test_a_killed_holder_elsewhere_frees_the_lock_at_twice_its_ttl_and_is_named(emu):
    """Another host cannot see the process: the lock frees when Consul ends the session, 2 x TTL after its last
    renewal (a 10x clock: TTL 15 s = 1.5 s; the holder is killed before its first renewal, due 7.5 s of wall
    time after it began), with no lock-delay after it."""
    emu.speed = 10.0
    dead_session = _held(emu, "20250101T000000Z-dead02", other_host=True)
    killed = time.monotonic()
    seen = []
    lock = ConsulLock(client_for(emu), KEY, timeout=10, renew_interval=0.2, on_wait=seen.append)
    acquired = lock.acquire()
    waited = time.monotonic() - killed
    try:
        assert 2.4 < waited < 4.5  # 3 s after the session began, less the holder's start; at 1 x TTL it would be < 1.5 s
        assert (dead_session, "ttl expired") in emu.invalidated
        assert acquired.dead_holder["deployment"] == "20250101T000000Z-dead02" and acquired.dead_holder["host"] == "ctl-elsewhere"
        assert "ended without releasing the lock" in acquired.dead_holder["how"]
        assert len(seen) >= 2 and all(s["alive"] is None and s["host"] == "ctl-elsewhere" and s["state"] == "held" for s in seen)
    finally:
        lock.release()


def test_a_waiter_reports_the_holder_every_few_seconds_and_its_timeout_says_the_holder_is_alive(emu, monkeypatch):
    monkeypatch.setattr(consul_lock, "WAIT_REPORT", 0.2)
    holder = ConsulLock(client_for(emu), KEY, info={"deployment": "20250101T000000Z-alive1"})
    holder.acquire()
    session, seen = holder.session, []
    try:
        with pytest.raises(LockTimeout) as caught:
            ConsulLock(client_for(emu), KEY, timeout=1.0, on_wait=seen.append).acquire()
    finally:
        holder.release()
    assert "; its process is running on this host; waited 1s" in str(caught.value)
    assert 4 <= len(seen) <= 8  # about every 0.2 s for 1 s
    first = seen[0]
    assert (first["alive"], first["state"], first["deployment"], first["pid"]) == (
        True,
        "held",
        "20250101T000000Z-alive1",
        holder.info["pid"],
    )
    assert first["host"] and first["acquired_at"] and first["session"] == session
    assert [s["waited"] for s in seen] == sorted(s["waited"] for s in seen)
    elsewhere = ConsulLock(client_for(emu), KEY, identity={**consul_lock.process_identity(), **OTHER_HOST})
    elsewhere.acquire()
    try:
        with pytest.raises(
            LockTimeout, match=r"it runs elsewhere \(alive or not is unknown here\); if it died, Consul frees the lock within 30s"
        ):
            ConsulLock(client_for(emu), KEY, timeout=0).acquire()
    finally:
        elsewhere.release()
    assert emu.sessions == {}  # every waiter destroyed its own session


def test_a_failing_on_wait_leaves_no_session_behind(emu):
    holder = ConsulLock(client_for(emu), KEY)
    holder.acquire()

    def boom(_):
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            ConsulLock(client_for(emu), KEY, timeout=5, on_wait=boom).acquire()
        assert list(emu.sessions) == [holder.session]
    finally:
        holder.release()


def test_mark_interrupted_changes_only_a_running_record(emu):
    records = Records(client_for(emu), "production")
    records.write({"status": "running", "kind": "deploy"}, "d-dead")
    records.write({"status": "success"}, "d-done")
    dead = {"deployment": "d-dead", "host": "ctl-1", "pid": 4242, "how": "its process 4242 on ctl-1 is gone; its session was destroyed"}
    marked = records.mark_interrupted("d-dead", by="d-next", holder=dead)
    stored = records.read("d-dead")
    assert stored["status"] == "interrupted" and stored["interrupted_by"] == "d-next" and stored["kind"] == "deploy"
    assert stored["error"] == (
        "interrupted: its process 4242 on ctl-1 is gone; its session was destroyed (host ctl-1, pid 4242); run d-next took the lock over"
    )
    assert marked["status"] == "interrupted"
    writes = len(emu.writes)
    assert records.mark_interrupted("d-dead", by="d-other") is None  # already marked
    assert records.mark_interrupted("d-done", by="d-next") is None  # it finished
    assert records.mark_interrupted("d-never-recorded") is None  # died before its record
    assert len(emu.writes) == writes and records.read("d-done")["status"] == "success"


def test_lost_session_is_detected(emu):
    lock = ConsulLock(client_for(emu), KEY, ttl=10, renew_interval=0.05)
    lock.acquire()
    client_for(emu).session.destroy(lock.session)  # an operator destroys it
    assert lock.lost.wait(2)
    with pytest.raises(LockLost, match=f"lost the Consul lock {KEY}"):
        lock.check()
    assert lock.release() is False  # nothing to release any more, and no exception


def test_transient_renewal_errors_do_not_lose_the_lock(emu):
    lock = ConsulLock(client_for(emu), KEY, ttl=10, renew_interval=0.05)
    with lock:
        emu.inject(status=500, times=2, path="/v1/session/renew/", body="rpc error")
        time.sleep(0.4)
        lock.check()
        assert lock.renewals >= 3
    assert len([r for r in emu.requests if r.path.startswith("/v1/session/renew/")]) >= 5


def test_wrong_token_fails_clearly_without_the_token(emu):
    with pytest.raises(LockError) as caught:
        ConsulLock(client_for(emu, token="not-a-token-1234"), KEY, ttl=10).acquire()
    assert "ACLPermissionDenied" in str(caught.value) and "not-a-token-1234" not in str(caught.value)
    with pytest.raises(LockError, match="ACLPermissionDenied"):
        ConsulLock(client_for(emu, token="reader"), KEY, ttl=10).acquire()
    assert emu.sessions == {}


def test_consul_down_is_a_lock_error(emu):
    port = emu.port
    emu.stop()
    with pytest.raises(LockError, match="ConnectionError"):
        ConsulLock(consul.Consul(host="127.0.0.1", port=port, token=TOKEN), KEY, ttl=10).acquire()


# -- a stalled Consul ------------------------------------------------------------------------------
@pytest.fixture(params=["py-consul installed", "py-consul 1.7"])
def timed_client(request, emu, monkeypatch):
    """hecate's Consul client (``hecatelib.consul.client``) with a 0.5 s timeout, built on the installed
    py-consul and on one that has no timeout of its own."""
    if request.param == "py-consul 1.7":
        monkeypatch.setattr(consul, "Consul", Consul17)  # what hecatelib.consul.client builds on
    return consul_client({"address": emu.url, "token": TOKEN, "timeout": 0.5})


def finishes(call, within=3.0):
    """Run ``call`` in a thread; fail the test when it is still running after ``within`` seconds (a hang).
    Returns ``(value or exception, seconds taken)``."""
    box = {}

    def run():
        start = time.monotonic()
        try:
            box["outcome"] = call()
        except Exception as exc:  # returned to the test
            box["outcome"] = exc
        box["took"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), f"still waiting after {within}s: a stalled Consul hangs the call"
    return box["outcome"], box["took"]


@pytest.mark.fault
@pytest.mark.parametrize("stalled", ["/v1/session/create", "/v1/kv/"])
def test_a_stalled_consul_fails_acquire_within_the_timeout(emu, timed_client, stalled):
    emu.stall(path=stalled, method="PUT")
    outcome, took = finishes(lambda: ConsulLock(timed_client, KEY, ttl=10, timeout=5).acquire())
    assert isinstance(outcome, LockError) and not isinstance(outcome, LockTimeout)
    assert str(outcome) == f"Consul lock {KEY}: Consul did not answer within 0.5s (timeout)"
    assert 0.45 < took < 1.5 and emu.stalled == [("PUT", emu.stalled[0][1])]
    assert emu.sessions == {} and emu.holder(KEY) is None  # the session made before the stall is destroyed


@pytest.mark.fault
def test_a_stalled_consul_fails_release_within_the_timeout_and_destroys_the_session(emu, timed_client):
    lock = ConsulLock(timed_client, KEY, ttl=10)
    lock.acquire()
    emu.stall(path="/v1/kv/", method="PUT")
    outcome, took = finishes(lock.release)
    assert outcome is False and 0.45 < took < 1.5
    assert emu.sessions == {}  # destroyed, so Consul frees the key (after the lock-delay)


@pytest.mark.fault
def test_a_stalled_renewal_does_not_hang_the_renewer(emu, timed_client):
    lock = ConsulLock(timed_client, KEY, ttl=10, renew_interval=0.1)
    lock.acquire()
    emu.stall(path="/v1/session/renew/", times=100)
    time.sleep(1.8)
    stalled = len(emu.stalled)
    emu.unstall()
    assert stalled >= 2  # each stalled renewal gave up after 0.5 s and the next one was sent
    time.sleep(0.3)
    lock.check()  # shorter than the TTL without a renewal: still ours
    assert lock.renewals >= 1
    outcome, _ = finishes(lock.release)
    assert outcome is True


@pytest.mark.fault
def test_a_stalled_consul_fails_record_writes_within_the_timeout(emu, timed_client):
    emu.stall(path="/v1/kv/hecate/deployments/", method="PUT")
    outcome, took = finishes(lambda: Records(timed_client, "production").write({"status": "running"}, "d-1"))
    assert isinstance(outcome, RecordError) and 0.45 < took < 1.5
    assert "Consul did not answer within 0.5s (timeout)" in str(outcome)
    assert emu.value("hecate/deployments/production/d-1") is None  # a stalled write is never applied


def test_blocking_queries_get_their_wait_on_top_of_the_timeout():
    session = TimeoutSession(10)
    assert session.timeout_for("http://127.0.0.1:8500/v1/kv/a") == 10
    assert session.timeout_for("http://127.0.0.1:8500/v1/kv/a?index=5&wait=1600ms") == 10 + 1.6 + 0.1
    assert session.timeout_for("http://127.0.0.1:8500/v1/kv/a?index=5") == 10 + 300 + 300 / 16  # Consul's default wait


# -- deployment records ----------------------------------------------------------------------------
def test_records_are_created_once_and_listed_in_order(emu):
    client = client_for(emu)
    production = Records(client, "production")
    first = production.write({"status": "success", "components": {"caddy": "2.11"}}, "20250101T000000Z-aaaaaa")
    assert first["id"] == "20250101T000000Z-aaaaaa" and first["environment"] == "production"
    stored = json.loads(emu.value("hecate/deployments/production/20250101T000000Z-aaaaaa"))
    assert stored["components"] == {"caddy": "2.11"} and stored["schema"] == 2
    assert [r.arg("cas") for r in emu.writes] == ["0"]
    with pytest.raises(RecordError, match="already exists; records are never overwritten"):
        production.write({"status": "failed"}, "20250101T000000Z-aaaaaa")
    assert json.loads(emu.value("hecate/deployments/production/20250101T000000Z-aaaaaa"))["status"] == "success"
    production.write({"status": "failed"}, "20250102T000000Z-bbbbbb")
    Records(client, "staging").write({"status": "success"}, "20250103T000000Z-cccccc")
    ids = [r["id"] for r in production.list()]
    assert ids == ["20250101T000000Z-aaaaaa", "20250102T000000Z-bbbbbb"]
    assert [r["id"] for r in production.list(status="success")] == [ids[0]]
    assert [r["id"] for r in production.list(limit=1)] == [ids[1]]
    assert Records(client, "nowhere").list() == []
    generated = production.write({"status": "running"})
    assert generated["id"] > ids[1]  # generated ids sort after older ones


def test_update_record_uses_check_and_set_and_retries_on_conflict(emu):
    client, other = client_for(emu), client_for(emu)
    Records(client, "production").write({"status": "running", "stages": []}, "d-1")
    calls = []

    def add_stage(record):
        calls.append(1)
        if len(calls) == 1:  # someone else writes between our read and our write
            Records(other, "production").update("d-1", {"note": "concurrent"})
        return {**record, "stages": [*record["stages"], "terraform"], "status": "success"}

    updated = Records(client, "production").update("d-1", add_stage)
    assert len(calls) == 2
    assert updated["status"] == "success" and updated["note"] == "concurrent" and updated["stages"] == ["terraform"]
    stored = Records(client, "production").read("d-1")
    assert {k: stored[k] for k in ("status", "note", "stages")} == {"status": "success", "note": "concurrent",
                                                                    "stages": ["terraform"]}  # fmt: skip
    cas_writes = [r.arg("cas") for r in emu.writes]
    assert cas_writes[0] == "0" and all(c not in (None, "0") for c in cas_writes[1:])
    with pytest.raises(RecordError, match="does not exist"):
        Records(client, "production").update("nope", {"status": "x"})


def test_bad_records_are_refused_before_any_write(emu):
    client = client_for(emu)
    with pytest.raises(RecordError, match="not JSON-serialisable"):
        Records(client, "production").write({"when": object()}, "d-2")
    with pytest.raises(RecordError, match="not a valid key segment"):
        Records(client, "prod/../x").write({"status": "x"}, "d-4")
    assert emu.writes == []


def test_a_record_of_any_size_is_stored_apart_under_consuls_value_limit_and_read_back_whole(emu):
    """A 5000-route tree is ~700 KB of JSON; Consul takes 512 KiB a value. The tree goes to a blob (compressed,
    chunked, addressed by its content); the record names it; reading it back gives the same tree."""
    client = client_for(emu)
    records = Records(client, "production")
    routes = [{"domain": f"r{n:05d}.example.org", "backend": f"10.{n // 250}.{n % 250}.1:8080", "service": f"s{n}"} for n in range(5000)]
    tree = {"reverse_proxy": {"caddy": {"routes": routes}}, "noise": [f"{n:x}" * 40 for n in range(4000)]}  # not very compressible
    stages = {"routes": {"ok": True, "changes": [f"added: r{n:05d}.example.org" for n in range(5000)]}}
    assert len(json.dumps(tree)) > 512 * 1024
    records.write({"status": "running"}, "big")
    records.update("big", {"status": "success", "tree": tree, "stages": stages})
    assert max(len(emu.value(k) or b"") for k in emu.keys()) <= 512 * 1024
    back = records.read("big", full=True)
    assert back["tree"] == tree and back["stages"] == stages and back["status"] == "success"
    assert records.read("big")["tree"].keys() == {"$blob", "bytes"}  # without full: the tree is not read
    listed = records.list()
    assert [r["id"] for r in listed] == ["big"] and listed[0]["tree_digest"] == back["tree_digest"]
    # a smaller limit (an agent with kv_max_value_size lowered) splits the same blob into chunks
    small = Records(client, "small", max_value=16 * 1024)
    small.write({"status": "success", "tree": tree, "stages": stages}, "chunked")  # stages too large: a blob too
    chunks = [k for k in emu.keys() if k.startswith("hecate/deployments/small.blobs/")]
    assert len(chunks) > 2 and max(len(emu.value(k)) for k in chunks) <= 16 * 1024
    assert json.loads(emu.value("hecate/deployments/small/chunked"))["stages"].keys() == {"$blob", "bytes"}
    assert small.read("chunked", full=True)["tree"] == tree and small.read("chunked")["stages"] == stages


def test_equal_trees_share_one_blob_and_compare_by_digest(emu):
    client = client_for(emu)
    records = Records(client, "production")
    tree = {"reverse_proxy": {"caddy": {"routes": [{"domain": "a.example.org"}]}}}
    records.write({"status": "success", "tree": tree}, "one")
    blobs = {k for k in emu.keys() if ".blobs/" in k}
    records.write({"status": "success", "tree": dict(tree)}, "two")
    assert {k for k in emu.keys() if ".blobs/" in k} == blobs and len(blobs) == 1  # stored once
    first, second = records.list()
    assert first["tree_digest"] == second["tree_digest"]
    assert not any(".blobs/" in k for k in (e for e in emu.keys() if e.startswith("hecate/deployments/production/")))


def test_a_record_written_before_blobs_reads_the_same(emu):
    """Schema 1 records held their tree inline and Nomad's versions as ``nomad_versions``."""
    client = client_for(emu)
    old = {"schema": 1, "id": "old", "environment": "production", "status": "success", "tree": {"a": 1}, "nomad_versions": {"app": 3}}
    client.kv.put("hecate/deployments/production/old", json.dumps(old))
    found = Records(client, "production").read("old", full=True)
    assert found["tree"] == {"a": 1} and found["state"] == {"nomad": {"versions": {"app": 3}}} and found["tree_digest"]


def test_consul_settings_merge_pillar_over_master_config():
    opts = {"hecate_ext_pillar": {"consul": {"host": "10.0.0.2", "token": "master-token", "port": 8500}}}
    hecate = {
        "global": {"environment": "staging"},
        "consul": {"address": "https://consul.example.org:8501", "token": "pillar-token", "lock": {"ttl": 60}},
    }
    got = consul_settings(hecate, opts)
    assert got["address"] == "https://consul.example.org:8501" and got["token"] == "pillar-token"
    assert got["lock"] == {"key": "hecate/locks/staging", "ttl": 60, "wait": 600, "lock_delay": 0}
    assert got["deployments"] == {"prefix": "hecate/deployments"} and got["environment"] == "staging"
    assert consul_settings(None, opts)["lock"]["key"] == "hecate/locks/production"


def test_a_pillar_that_moves_consul_never_gets_the_masters_token(monkeypatch):
    """Pillar comes from pull requests: ``hecate:consul:address`` pointing elsewhere (or loosening TLS) must not
    send the master's token (or $CONSUL_HTTP_TOKEN) there. Before: the master's token went to the pillar's host."""
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token-SECRET")
    opts = {"hecate_ext_pillar": {"consul": {"host": "127.0.0.1", "port": 8500, "token": "master-token-SECRET"}}}
    # the master's endpoint (the schema's defaults filled in), the master's token
    kept = consul_settings({"consul": {"lock": {"ttl": 60}, "allow_insecure_endpoint": False}}, opts)
    assert kept["token"] == "master-token-SECRET" and consul_client(kept).token == "master-token-SECRET"
    for moved in ({"address": "https://attacker.example.net:8501"}, {"verify": False}, {"allow_insecure_endpoint": True}):
        got = consul_settings({"consul": moved}, opts)
        assert "token" not in got, moved
        if "address" in moved:
            assert consul_client(got).token is None  # nor the environment's
    own = consul_settings({"consul": {"address": "https://consul.example.org:8501", "token": "pillar-token"}}, opts)
    assert consul_client(own).token == "pillar-token"


def test_the_last_success_of_a_long_history_costs_a_key_listing_and_a_read_or_two(emu):
    """Every deploy asks for the previous success; records hold whole trees, so the whole history must
    not be read for it."""
    client = client_for(emu)
    records = Records(client, "production")
    ids = [f"2025{day:04d}T000000Z-aaaaaa" for day in range(1, 41)]
    for number, deployment_id in enumerate(ids):
        status = "failed" if number == len(ids) - 1 else "success"
        records.write({"status": status, "tree": {"x": "y" * 1000, "n": number}}, deployment_id)
    emu.reset_counts()
    assert [r["id"] for r in records.list(status="success", limit=1)] == [ids[-2]]
    assert len(emu.reads) == 3  # the keys, the failed newest, the success before it
    assert [r["id"] for r in records.list(limit=2)] == ids[-2:]
    assert [r["id"] for r in records.list()] == ids  # without limit: the whole history
