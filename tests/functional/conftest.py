import pytest

from devstack.caddy import Backend, Caddy, free_port
from devstack.pillars import local_seed_tree, seed_tree


@pytest.fixture
def caddy(short_tmp, request):
    """A real Caddy started with nothing but an admin endpoint on a unix socket."""
    workdir = short_tmp / f"c{abs(hash(request.node.nodeid)) % 10**6}"
    server = Caddy(workdir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def backends(short_tmp):
    """One local HTTP backend per seed service, and one HTTPS backend (self-signed) for wazuh."""
    plain = {route["service"]: Backend(route["service"]).start() for route in seed_tree()["reverse_proxy"]["caddy"]["routes"]}
    secure = Backend("wazuh-https", tls_dir=short_tmp / "tls").start()
    yield plain, secure
    for backend in [*plain.values(), secure]:
        backend.stop()


@pytest.fixture
def caddy_ports():
    return {"http": free_port(), "https": free_port(), "admin": free_port()}


@pytest.fixture
def local_tree(caddy, backends, caddy_ports):
    """The seed pillar pointed at the local backends and this test's Caddy (TLS off)."""
    plain, secure = backends
    return local_seed_tree({k: b.port for k, b in plain.items()}, secure.port, caddy_ports, caddy.admin)


@pytest.fixture
def make_beacon(make_loaders):
    """Factory: ``make_beacon(tree)`` -> the hecate_drift beacon of a minion whose pillar is ``tree``;
    ``run.events`` records what it fires, ``run.loaders`` are that minion's modules and states,
    ``run.functions`` the ``__salt__`` it gets (for ``salt.beacons.Beacon``)."""
    import salt.loader

    from tests.conftest import REPO

    def make(tree):
        loaders = make_loaders({"hecate": tree}, extra={"beacons_dirs": [str(REPO / "_beacons")]})
        events = []
        functions = {
            "caddy.snapshot": loaders.modules.caddy.snapshot,
            "caddy.certs": loaders.modules.caddy.certs,
            "event.send": lambda tag, data: events.append((tag, data)) or True,
        }
        run = salt.loader.beacons(loaders.opts, functions)["hecate_drift.beacon"]
        run.events, run.loaders, run.functions = events, loaders, functions
        return run

    return make
