"""Every hecate state module run by Salt's state engine (state.sls of an sls with ``require`` and ``watch``),
not only by direct calls: the requisite machinery passes keywords (``__reqs__``, ``sfun``...) that a
direct call never does."""

import hecate_schema
import pytest

from tests.conftest import REPO


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


CADDY_SLS = """
config-dir:
  file.directory:
    - name: {root}/etc
marker:
  file.managed:
    - name: {root}/etc/marker
    - contents: "{marker}"
    - require:
      - file: config-dir
hecate_routes:
  caddy.routes_managed:
    - require:
      - file: config-dir
    - watch:
      - file: marker
"""


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
    first = run_sls(loaders, sls_root, "caddyw", CADDY_SLS.format(root=sls_root, marker="one"))
    assert first["hecate_routes"].result is True, first["hecate_routes"].comment
    assert first["hecate_routes"].changes  # the first converge wrote: Salt does not call mod_watch then
    writes = caddy.mutations()
    # The watched file changes and the routes are already in place: Salt runs the state, then mod_watch.
    validations.clear()
    second = run_sls(loaders, sls_root, "caddyw", CADDY_SLS.format(root=sls_root, marker="two"))
    assert second["marker"].changes
    assert second["hecate_routes"].result is True, second["hecate_routes"].comment
    assert second["hecate_routes"].changes == {}
    assert caddy.mutations() == writes  # zero writes
    assert len(validations) == 1  # the state and its mod_watch share one validated tree


def test_a_hecate_key_in_the_minion_config_does_not_hide_the_pillar(make_loaders, sls_root, local_tree, caddy):
    """Issue 15: ``config.get("hecate")`` returned the minion config's ``hecate`` key instead of the pillar."""
    minion_config = {"hecate": {"dns": {"token": "a-token-kept-in-the-minion-config"}}}
    loaders = make_loaders({"hecate": local_tree}, minion_config)
    result = loaders.states.caddy.routes_managed(name="hecate_routes")
    assert result.result is True, result.comment
    assert "applied in one reload" in result.comment
