"""Every hecate state module run by Salt's state engine (state.sls of an sls with ``require`` and ``watch``),
not only by direct calls: the requisite machinery passes keywords (``__reqs__``, ``sfun``...) that a
direct call never does."""

import hecate_schema
import pytest

from tests.conftest import REPO, assert_no_violations
from tests.functional.test_conventions import nomad  # noqa: F401 - the fixture, shared
from tests.functional.test_hetzner_dns import dns_pillar
from tests.functional.test_terraform import pillar_for as terraform_pillar
from tests.functional.test_terraform import tf_env  # noqa: F401 - the fixture, shared
from tests.support.stack import NULL_MODULE


@pytest.fixture
def sls_root(short_tmp, request):
    root = short_tmp / f"sls{abs(hash(request.node.nodeid)) % 10**6}"
    root.mkdir()
    return root


def engine(make_loaders, sls_root, pillar):
    """Loaders whose file_roots also serve this test's own sls files."""
    return make_loaders(pillar, {"file_roots": {"base": [str(REPO / "salt"), str(sls_root)]}})


def run_sls(loaders, sls_root, name, text, **kwargs):
    (sls_root / f"{name}.sls").write_text(text)
    return {r.id: r for r in loaders.modules.state.sls(name, **kwargs)}


# The same shape for every backend: a directory required, a marker file watched, the backend's state.
ENGINE_SLS = """
config-dir:
  file.directory:
    - name: {root}/etc
marker:
  file.managed:
    - name: {root}/etc/marker
    - contents: "{marker}"
    - require:
      - file: config-dir
backend:
  {state}:
{args}
    - require:
      - file: config-dir
    - watch:
      - file: marker
"""


def backend_sls(sls_root, marker, state, **args):
    lines = "\n".join(f"    - {key}: {value}" for key, value in args.items())
    return ENGINE_SLS.format(root=sls_root, marker=marker, state=state, args=lines)


def run_twice(loaders, sls_root, sls, state, writes, **args):
    """Run the sls (the backend converges), then again with the watched file changed (Salt runs the state,
    and mod_watch where the module has one). Returns both runs' backend results and the second run's writes."""
    first = run_sls(loaders, sls_root, sls, backend_sls(sls_root, "one", state, **args))
    assert first["backend"].result is True, first["backend"].comment
    before = len(writes())
    second = run_sls(loaders, sls_root, sls, backend_sls(sls_root, "two", state, **args))
    assert second["marker"].changes
    return first["backend"], second["backend"], writes()[before:]


@pytest.fixture
def validations(monkeypatch):
    """Every whole-tree validation in this process (the loader imports the same hecate_schema)."""
    calls = []
    real = hecate_schema.validate
    monkeypatch.setattr(hecate_schema, "validate", lambda tree: calls.append(1) or real(tree))
    return calls


def test_caddy_routes_managed_under_watch(make_loaders, sls_root, local_tree, caddy, validations):
    """Regression: mod_watch passed Salt's ``__reqs__`` on, ``TypeError: routes_managed() got an unexpected
    keyword argument '__reqs__'``, and the state failed whenever the watched file changed."""
    loaders = engine(make_loaders, sls_root, {"hecate": local_tree})
    # The second run: the routes are in place, the watched file changes: Salt runs the state, then mod_watch.
    first, second, writes = run_twice(loaders, sls_root, "caddyw", "caddy.routes_managed", caddy.mutations)
    assert first.changes  # the first converge wrote: Salt does not call mod_watch then
    assert second.result is True and second.changes == {}, second.comment
    assert writes == []
    assert len(validations) == 2  # one per run: the state, its probes and mod_watch share the validated tree


def test_a_hecate_key_in_the_minion_config_does_not_hide_the_pillar(make_loaders, local_tree, caddy):
    """Issue 15: ``config.get("hecate")`` returned the minion config's ``hecate`` key instead of the pillar."""
    minion_config = {"hecate": {"dns": {"token": "a-token-kept-in-the-minion-config"}}}
    loaders = make_loaders({"hecate": local_tree}, minion_config)
    result = loaders.states.caddy.routes_managed(name="hecate_routes")
    assert result.result is True, result.comment
    assert "applied in one reload" in result.comment


# -- hetzner_dns -----------------------------------------------------------------------------------------
@pytest.fixture
def hetzner():
    from tests.emulators.hetzner import HetznerDNS

    emulator = HetznerDNS().start()
    emulator.add_zone("cybermonkey.dev")
    yield emulator
    emulator.stop()
    assert_no_violations(emulator)


def test_hetzner_dns_rrsets_managed_with_require_and_watch(make_loaders, sls_root, hetzner):
    loaders = engine(make_loaders, sls_root, dns_pillar(hetzner))
    first, second, writes = run_twice(
        loaders, sls_root, "dnsw", "hetzner_dns.rrsets_managed", lambda: hetzner.writes, name="cybermonkey.dev"
    )
    assert len(first.changes) == 16
    assert second.result is True and second.changes == {}, second.comment
    assert writes == []


# -- hecate_terraform ------------------------------------------------------------------------------------
def test_hecate_terraform_applied_with_require_and_watch(make_loaders, sls_root, tf_env):  # noqa: F811
    workdir = sls_root / "tf"
    workdir.mkdir()
    (workdir / "main.tf").write_text(NULL_MODULE)
    loaders = engine(make_loaders, sls_root, terraform_pillar(workdir, tf_env, nodes={"edge-1": "192.0.2.10"}))
    state_file = workdir / "terraform.tfstate"
    first, second, _ = run_twice(loaders, sls_root, "tfw", "hecate_terraform.applied", lambda: [])
    assert first.changes["outputs"] and "applied the plan" in first.comment
    serial = state_file.read_text()
    assert second.result is True and second.changes == {}, second.comment
    assert second.comment == "infrastructure matches the pillar"
    assert state_file.read_text() == serial  # nothing applied the second time


# -- authentik (helper b's module) and nomad_job (helper c's module) --------------------------------------
@pytest.fixture
def authentik():
    from tests.emulators.authentik import AuthentikEmulator

    with AuthentikEmulator("2025.6.1") as emulator:
        yield emulator
    assert_no_violations(emulator)


def test_authentik_protected_routes_with_require_and_watch(make_loaders, sls_root, authentik):
    from tests.functional.test_authentik_states import route, tree

    pillar = {"hecate": tree(authentik, [route("engine", ["engine-admins"])], "eng-")}
    loaders = engine(make_loaders, sls_root, pillar)
    first, second, writes = run_twice(loaders, sls_root, "akw", "authentik.protected_routes", lambda: authentik.writes)
    assert first.changes["providers"]["created"] == ["eng-engine"]
    assert second.result is True and second.changes == {}, second.comment
    assert writes == []


def test_nomad_job_present_with_require_and_watch(make_loaders, sls_root, nomad):  # noqa: F811
    from tests.functional.test_nomad_job import nomad_pillar

    loaders = engine(make_loaders, sls_root, nomad_pillar(nomad))
    source = "salt://hecate/nomad/redis.nomad.j2"
    first, second, writes = run_twice(
        loaders, sls_root, "nomadw", "nomad_job.present", lambda: nomad.writes, name="hecate-redis", source=source
    )
    assert first.changes
    assert second.result is True and second.changes == {}, second.comment
    assert writes == []
