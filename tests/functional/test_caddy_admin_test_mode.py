"""A route whose backend is Caddy's admin port: ``test=True`` tells the truth. The validator refuses it
(hecatelib.schema._check_caddy) before any request, so a dry run fails with the key path as the real run
does, instead of "would apply" (issue 15); checked by a direct call and through Salt's state engine."""

import copy

import pytest

from tests.conftest import REPO

ADMIN_BACKENDS = ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "127.0.0.2:{port}", "http://127.0.0.1:{port}"]


def to_admin(tree, backend):
    tree = copy.deepcopy(tree)
    caddy = tree["reverse_proxy"]["caddy"]
    caddy["routes"][1]["backend"] = backend.format(port=caddy["ports"]["admin"])
    return tree, caddy["routes"][1]["domain"]


@pytest.mark.parametrize("backend", ADMIN_BACKENDS)
def test_a_dry_run_refuses_a_backend_on_the_admin_port(caddy, make_loaders, local_tree, backend):
    assert make_loaders({"hecate": local_tree}).states.caddy.routes_managed(name="routes").result is True
    before = len(caddy.admin_requests())
    tree, domain = to_admin(local_tree, backend)
    result = make_loaders({"hecate": tree}).states.caddy.routes_managed(name="routes", test=True)
    assert result.result is False and result.changes == {}, (result.result, result.comment)
    assert f"routes[1]({domain}):backend" in result.comment and "admin API" in result.comment, result.comment
    assert caddy.admin_requests()[before:] == []  # refused before a single request


def test_a_dry_run_through_the_state_engine_refuses_it_too(caddy, make_loaders, local_tree, short_tmp):
    root = short_tmp / "admin-sls"
    root.mkdir()
    (root / "edge.sls").write_text("hecate_routes:\n  caddy.routes_managed: []\n")
    tree, domain = to_admin(local_tree, ADMIN_BACKENDS[0])
    loaders = make_loaders({"hecate": tree}, {"file_roots": {"base": [str(REPO / "salt"), str(root)]}})
    [state] = loaders.modules.state.sls("edge", test=True)
    assert state.result is False and state.changes == {}, (state.result, state.comment)
    assert f"routes[1]({domain}):backend" in state.comment and "admin API" in state.comment, state.comment
    assert caddy.admin_requests() == []
