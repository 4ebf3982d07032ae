"""A real salt-master + salt-minion (pytest-salt-factories) shipping hecate the file_roots way:
the repo in file_roots, ``saltutil.sync_all`` on the minion, ``salt-run saltutil.sync_all`` on the master."""

import pathlib
import shutil
import tempfile

import consul as consul_client
import pytest
import yaml

from devstack import host
from devstack.caddy import Backend, Caddy, free_port
from devstack.pillars import local_seed_tree, seed_tree
from devstack.stack import CONSUL_TOKEN, master_overrides, start_secret_stores, terraform_module


@pytest.fixture(scope="package")
def integration_dir():
    path = pathlib.Path(tempfile.mkdtemp(prefix="hi", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="package")
def edge_caddy(integration_dir):
    caddy = Caddy(integration_dir / "caddy").start()
    yield caddy
    caddy.stop()


@pytest.fixture(scope="package")
def edge_backends(integration_dir):
    plain = {r["service"]: Backend(r["service"]).start() for r in seed_tree()["reverse_proxy"]["caddy"]["routes"]}
    secure = Backend("wazuh-https", tls_dir=integration_dir / "tls").start()
    yield plain, secure
    for backend in [*plain.values(), secure]:
        backend.stop()


@pytest.fixture(scope="package")
def secret_stores():
    vault, kv = start_secret_stores()
    yield vault, kv
    vault.stop()
    kv.stop()


@pytest.fixture(scope="package")
def vault(secret_stores):
    return secret_stores[0]


@pytest.fixture(scope="package")
def consul(secret_stores):
    return secret_stores[1]


@pytest.fixture(scope="package")
def edge_tree(edge_caddy, edge_backends):
    """The seed pillar on local backends, with its secrets as vault:/consul: references for the ext_pillar."""
    plain, secure = edge_backends
    ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
    tree = local_seed_tree({k: b.port for k, b in plain.items()}, secure.port, ports, edge_caddy.admin)
    tree["reverse_proxy"]["coturn"]["static_auth_secret"] = "vault:secret/hecate/coturn#auth_secret"
    tree["authentik"]["secret_key"] = "consul:hecate/authentik/secret_key"
    return tree


class PillarFiles:
    """The master's pillar_roots: top.sls + hecate.sls, rewritten by tests that need another pillar."""

    def __init__(self, root):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "top.sls").write_text("base:\n  '*':\n    - hecate\n")
        self.loaded = None  # the hecate.sls the package minion holds since its last refresh through load()

    def write(self, tree):
        (self.root / "hecate.sls").write_text(yaml.safe_dump({"hecate": tree}, sort_keys=False))
        self.loaded = None  # whoever refreshes after this, load() no longer knows what the minion holds

    def load(self, tree, salt_call_cli):
        """``tree`` written and refreshed into the minion's pillar, unless load() refreshed it there last
        (a refresh is a salt-call process, 1.5 s: two per test when every fixture did it)."""
        text = yaml.safe_dump({"hecate": tree}, sort_keys=False)
        if self.loaded == text and (self.root / "hecate.sls").read_text() == text:  # a test may write the file itself
            return
        self.write(tree)
        refreshed = salt_call_cli.run("saltutil.refresh_pillar", wait=True)
        assert refreshed.returncode == 0, refreshed
        self.loaded = text


@pytest.fixture(scope="package")
def pillar_files(integration_dir, edge_tree):
    files = PillarFiles(integration_dir / "pillar")
    files.write(edge_tree)
    return files


@pytest.fixture(scope="package")
def salt_master(salt_factories, pillar_files, vault, consul, integration_dir):
    overrides = master_overrides(vault, consul, integration_dir / "roots", pillar_roots={"base": [str(pillar_files.root)]})
    factory = salt_factories.salt_master_daemon("hecate-master", overrides=overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="package")
def terraform_dir(integration_dir):
    """The controller's null module (below the scratch host's /var/lib/hecate) and its minion-config settings."""
    return terraform_module(integration_dir / "tf", host.below("lib", "work", make=False))


@pytest.fixture(scope="package")
def salt_minion(salt_master, terraform_dir):
    # One minion plays both roles of the seed's orchestrate.sls: controller and edge; hecate's roots on the
    # scratch host; terraform's binary and CLI config are host settings of the controller.
    overrides = {"grains": {"roles": ["hecate-controller", "hecate-proxy"]}, **host.opts(), **terraform_dir["minion"]}
    factory = salt_master.salt_minion_daemon("hecate-edge", overrides=overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="package")
def salt_call_cli(salt_minion):
    return salt_minion.salt_call_cli(timeout=120)


@pytest.fixture(scope="package")
def salt_run_cli(salt_master):
    return salt_master.salt_run_cli(timeout=120)


@pytest.fixture(scope="package")
def synced(salt_call_cli, salt_run_cli, pillar_files, edge_tree):
    """Ship hecate the classic way and check that each kind of module arrived."""
    master = salt_run_cli.run("saltutil.sync_all")
    assert master.returncode == 0, master
    assert "runners.hecate" in master.data["runners"] and "pillar.hecate" in master.data["pillar"], master.data
    minion = salt_call_cli.run("saltutil.sync_all")
    assert minion.returncode == 0, minion
    assert "modules.caddy" in minion.data["modules"] and "states.caddy" in minion.data["states"], minion.data
    assert "utils.hecatelib.caddy.config" in minion.data["utils"], minion.data  # sub-packages are synced too
    pillar_files.load(edge_tree, salt_call_cli)
    return True


@pytest.fixture
def fresh(synced, edge_caddy, pillar_files, edge_tree, salt_call_cli, consul):
    """Caddy back to nothing, the seed pillar, no deployment records; the Consul client."""
    edge_caddy.reset()
    client = consul_client.Consul(host="127.0.0.1", port=consul.port, token=CONSUL_TOKEN)
    client.kv.delete("hecate/deployments/", recurse=True)
    consul.reset_counts()
    pillar_files.load(edge_tree, salt_call_cli)
    yield client
    pillar_files.load(edge_tree, salt_call_cli)
