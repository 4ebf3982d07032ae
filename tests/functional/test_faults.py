"""Injected faults, each ending in a clear failure and no half-applied state (marker ``fault``).

- Caddy killed between the converge's snapshot and its write: the state fails naming the unreachable
  admin API; Caddy restarted with ``--resume`` serves the last config it accepted, the previous working one.
- Caddy killed after accepting the write, before the post-write check: the state fails naming the host and
  the failed restore; ``--resume`` brings back the whole new config (Caddy saves only configs it accepted),
  never a mix, and the next run has nothing to send.
- Caddy's admin API not answering (the process frozen): the write times out, the state fails; once Caddy
  runs again it serves one complete config, old or new, and the next run converges.
- A 429 storm longer than ``hecate:dns:max_wait``: the DNS converge stops before writing anything, says it
  was rate limited, leaks no token; the next run writes everything once.
- authentik failing half-way (5xx on one kind of write): the state fails naming the object; the next run
  creates only what is missing.

The faults are real (a SIGKILL/SIGSTOP to the real Caddy, HTTP errors from the emulators); the hook that
times them is the loader's function table: the state calls the real ``caddy.snapshot`` / ``caddy.check``
through ``__salt__``, and the test runs its fault right after. Vault down: tests/integration/test_ext_pillar_secrets.py.
Lock held: tests/functional/test_lock.py and tests/integration/test_orchestrate.py.
"""

import copy
import json
import os
import signal
import subprocess
import time

import pytest
import salt.loader

from devstack.caddy import caddy_binary
from devstack.emulators.authentik import AuthentikEmulator
from devstack.emulators.hetzner import HetznerDNS
from devstack.http import backend_of, get
from tests.conftest import assert_no_violations, loaders_for

pytestmark = pytest.mark.fault


# -- Caddy ---------------------------------------------------------------------------------------------------
class Edge:
    """One loader whose pillar is swapped in place, and the caddy state called directly with that
    loader's ``__salt__`` (so a test can time a fault between two of the state's calls)."""

    def __init__(self, tree, root):
        self.loaders = loaders_for(root, {"hecate": tree})
        self.states = salt.loader.states(
            self.loaders.opts, functions=self.loaders.modules, utils=self.loaders.utils, serializers=self.loaders.serializers,
            context=self.loaders.context,
        )  # fmt: skip

    def use(self, tree):
        """Swap the pillar in place: the dict the loaded modules read (``__pillar__``), and the opts' copy."""
        for pillar in (self.loaders.modules.pack["__pillar__"], self.loaders.opts["pillar"]):
            pillar.clear()
            pillar["hecate"] = copy.deepcopy(tree)

    def converge(self):
        return self.states["caddy.routes_managed"](name="routes")

    def hook(self, function, before=None, after=None):
        """Run ``before``/``after`` around the next call of ``function`` made through ``__salt__``."""
        modules = self.loaders.modules
        real = modules[function]
        raw = real.func  # the module's function itself: ``real`` looks its name up again at call time

        def hooked(*args, **kwargs):
            modules[function] = raw  # once
            if before:
                before()
            try:
                return modules.run(raw, *args, **kwargs)
            finally:
                if after:
                    after()

        self.loaders.modules[function] = hooked


@pytest.fixture
def edge(local_tree, short_tmp, request):
    made = Edge(local_tree, short_tmp / f"ft{abs(hash(request.node.nodeid)) % 10**6}")
    first = made.converge()
    assert first["result"] is True, first["comment"]
    yield made
    made.loaders.reset_state()


def kill(caddy, sig=signal.SIGKILL):
    os.killpg(caddy.process.pid, sig)
    if sig == signal.SIGKILL:
        caddy.process.wait(10)


def resume(caddy):
    """``caddy run --resume``: the last config Caddy accepted (its autosave), else the boot config."""
    with open(caddy.log_path, "ab") as log:
        caddy.process = subprocess.Popen(
            [caddy_binary(), "run", "--resume", "--config", str(caddy.workdir / "boot.json")],
            stdout=log, stderr=log, env=caddy.env(), start_new_session=True,
        )  # fmt: skip
    deadline = time.time() + 20
    while not caddy.ready():
        assert caddy.process.poll() is None and time.time() < deadline, "caddy did not come back"
        time.sleep(0.05)


def moved(tree, backends, service="grafana", to="nextcloud"):
    """The tree with ``service``'s route pointed at ``to``'s backend."""
    changed = copy.deepcopy(tree)
    plain, _ = backends
    route = next(r for r in changed["reverse_proxy"]["caddy"]["routes"] if r["service"] == service)
    route["backend"] = f"127.0.0.1:{plain[to].port}"
    return changed


def test_caddy_killed_between_snapshot_and_write(edge, caddy, local_tree, backends, caddy_ports):
    working = json.loads(caddy.config_bytes())
    edge.use(moved(local_tree, backends))
    edge.hook("caddy.snapshot", after=lambda: kill(caddy))
    result = edge.converge()
    assert result["result"] is False and result["changes"] == {}
    assert "unreachable" in result["comment"], result["comment"]
    assert caddy.process.poll() is not None

    resume(caddy)
    assert json.loads(caddy.config_bytes()) == working
    assert backend_of(get(caddy_ports["http"], "observe.cybermonkey.dev")[2]) == "grafana"  # the previous working config

    again = edge.converge()
    assert again["result"] is True and again["changes"]["changed"]
    assert backend_of(get(caddy_ports["http"], "observe.cybermonkey.dev")[2]) == "nextcloud"


def test_caddy_killed_after_the_write_before_the_check(edge, caddy, local_tree, backends, caddy_ports):
    edge.use(moved(local_tree, backends))
    edge.hook("caddy.check", before=lambda: kill(caddy))  # Caddy accepted the write, then died
    result = edge.converge()
    assert result["result"] is False
    assert "post-write check failed" in result["comment"] and "observe.cybermonkey.dev" in result["comment"]
    assert "restoring the previous config failed" in result["comment"]

    resume(caddy)
    assert backend_of(get(caddy_ports["http"], "observe.cybermonkey.dev")[2]) == "nextcloud"  # all of the new config
    assert backend_of(get(caddy_ports["http"], "cloud.cybermonkey.dev")[2]) == "nextcloud"
    mutations = len(caddy.mutations())
    again = edge.converge()
    assert again["result"] is True and again["changes"] == {}
    assert len(caddy.mutations()) == mutations  # nothing left to send


def test_admin_api_not_answering_times_out_then_one_complete_config(edge, caddy, local_tree, backends, caddy_ports):
    old = json.loads(caddy.config_bytes())
    edge.use(moved(local_tree, backends))
    connection = edge.loaders.modules["caddy.apply"].__globals__["_connection"]
    defaults = connection.__defaults__
    connection.__defaults__ = (2,)  # the admin read timeout, 30 s in production: 2 s here
    try:
        edge.hook("caddy.snapshot", after=lambda: kill(caddy, signal.SIGSTOP))
        started = time.monotonic()
        result = edge.converge()
    finally:
        connection.__defaults__ = defaults
        os.killpg(caddy.process.pid, signal.SIGCONT)
    assert result["result"] is False and result["changes"] == {}
    assert "timed out" in result["comment"], result["comment"]
    assert time.monotonic() - started < 10

    time.sleep(0.5)  # Caddy may still handle the request it had queued: either way, one whole config
    desired = edge.loaders.modules["caddy.plan"]()["changes"]
    live = json.loads(caddy.config_bytes())
    assert live == old or desired == {}, "Caddy serves neither the old nor the new config"
    for host in ("observe.cybermonkey.dev", "cloud.cybermonkey.dev", "delphi.cybermonkey.dev"):
        assert get(caddy_ports["http"], host)[0] == 200
    again = edge.converge()
    assert again["result"] is True
    assert edge.loaders.modules["caddy.plan"]() == {"changes": {}, "comment": "no changes"}
    assert backend_of(get(caddy_ports["http"], "observe.cybermonkey.dev")[2]) == "nextcloud"


# -- DNS: a 429 storm longer than max_wait -------------------------------------------------------------------
ZONE = "cybermonkey.dev"


@pytest.fixture
def hetzner():
    emulator = HetznerDNS().start()
    emulator.add_zone(ZONE)
    yield emulator
    emulator.stop()
    assert_no_violations(emulator)


def test_a_429_storm_beyond_max_wait_stops_before_any_write(hetzner, local_tree, make_loaders):
    tree = copy.deepcopy(local_tree)
    tree["dns"] = {"zone": ZONE, "token": hetzner.token, "endpoint": f"{hetzner.url}/v1", "allow_insecure_endpoint": True,
                   "targets": {"ipv4": ["203.0.113.7"]}, "max_wait": 2}  # fmt: skip
    headers = {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": str(int(time.time()) + 3600)}
    body = {"error": {"code": "rate_limit_exceeded", "message": "slow down", "details": None}}
    hetzner.inject(status=429, times=1000, method="GET", path=r"/rrsets$", headers=headers, body=body)
    loaders = make_loaders({"hecate": tree})
    started = time.monotonic()
    result = loaders.states.hetzner_dns.rrsets_managed(name=ZONE)
    assert result.result is False and result.changes == {}
    assert "rate limited" in result.comment and "max_wait" in result.comment, result.comment
    assert hetzner.token not in result.comment
    assert hetzner.writes == [] and time.monotonic() - started < 10
    hetzner.faults.clear()  # the storm is over
    loaders.context.clear()
    again = loaders.states.hetzner_dns.rrsets_managed(name=ZONE)
    assert again.result is True, again.comment
    assert len(again.changes) == 8 and len([w for w in hetzner.writes if w.path.endswith("/rrsets")]) == 8


# -- authentik failing half-way ------------------------------------------------------------------------------
def test_authentik_failing_half_way_then_the_next_run_creates_only_what_is_missing(local_tree, short_tmp):
    with AuthentikEmulator("2026.5.6", token="ak-fault-token") as authentik:
        tree = copy.deepcopy(local_tree)
        tree["authentik"].update(url=authentik.url, token="ak-fault-token", allow_insecure_endpoint=True, name_prefix="ft-",
                                 outpost={"upstream": f"127.0.0.1:{authentik.port}"})  # fmt: skip
        for route in tree["reverse_proxy"]["caddy"]["routes"][1:4]:
            route["auth"] = {"groups": ["ft-admins"]}
        loaders = loaders_for(short_tmp / "ftak", {"hecate": tree})
        try:
            authentik.inject(status=503, times=1000, method="POST", path=r"/core/applications/$")
            first = loaders.states.authentik.protected_routes(name="protect")
            assert first.result is False
            assert "503" in first.comment and "ft-" in first.comment, first.comment
            assert "ak-fault-token" not in json.dumps(first.raw)
            assert authentik.application_by_slug("ft-nextcloud") is None
            assert authentik.provider_by_name("ft-nextcloud") is not None  # written before the failure: reported below
            assert first.changes, "what was done before the failure is in changes"

            authentik.faults.clear()
            before = len(authentik.writes)
            second = loaders.states.authentik.protected_routes(name="protect")
            assert second.result is True, second.comment
            created = [(w.method, w.path) for w in authentik.writes[before:] if w.method == "POST"]
            assert all("/providers/" not in path and "/core/groups/" not in path for _, path in created), created
            assert authentik.application_by_slug("ft-nextcloud") is not None
            assert loaders.states.authentik.protected_routes(name="protect").changes == {}
        finally:
            loaders.reset_state()
        assert_no_violations(authentik)
