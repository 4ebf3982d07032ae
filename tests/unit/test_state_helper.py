"""_utils/hecatelib/salt_state.py: the part every hecate state module shares."""

import importlib.util
import logging
import pathlib

import pytest

from devstack.pillars import seed_tree
from hecatelib import salt_state, schema

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_virtual_names_the_missing_execution_module():
    assert salt_state.virtual("caddy", {"caddy.snapshot": print}, "caddy.snapshot") == "caddy"
    assert salt_state.virtual("caddy", {}, "caddy.snapshot") == (
        False,
        "caddy: the caddy execution module is not loaded (no caddy.snapshot)",
    )


def test_ret_defaults_to_success_and_pending_is_only_for_test_mode():
    assert salt_state.ret("x") == {"name": "x", "result": True, "changes": {}, "comment": ""}
    assert salt_state.pending(salt_state.ret("x"), {"a": 1}, "would") == {
        "name": "x",
        "result": None,
        "changes": {"a": 1},
        "comment": "would",
    }
    failed = salt_state.fail({"name": "x", "result": True, "changes": {"a": 1}, "comment": ""}, "no")
    assert failed == {"name": "x", "result": False, "changes": {}, "comment": "no"}
    assert salt_state.test({"test": True}) is True and salt_state.test({}) is False


def state_fn(name, source=None, wait=True):
    return {"name": name, "result": True, "changes": {}, "comment": f"{source} {wait}"}


def state_fn_kwargs(name, domain, **kwargs):
    return {"name": name, "result": True, "changes": {}, "comment": f"{domain} {sorted(kwargs)}"}


# What Salt 3008's state engine hands mod_watch (salt/state.py: the low chunk, sfun, __reqs__) for
# ``watch``; format_call drops only the STATE_INTERNAL_KEYWORDS it knows.
ENGINE_EXTRAS = {
    "__reqs__": {"watch": [{"state": "file", "name": "/etc/x"}]},
    "__id__": "deploy",
    "__sls__": "hecate.routes",
    "__env__": "base",
    "__pub_jid": "2026",
    "__run_num__": 3,
    "order": 10000,
    "watch": [{"file": "marker"}],
    "require": [{"file": "dir"}],
}


def test_mod_watch_passes_only_the_states_own_arguments():
    result = salt_state.mod_watch({"present": state_fn}, "web", "present", {**ENGINE_EXTRAS, "source": "salt://x", "wait": False})
    assert result["comment"] == "salt://x False"
    # A state with **kwargs still gets its own extras, never the engine's.
    result = salt_state.mod_watch({"route": state_fn_kwargs}, "web", "route", {**ENGINE_EXTRAS, "domain": "a.org", "profile": "p"})
    assert result["comment"] == "a.org ['profile']"


def test_mod_watch_of_an_unsupported_function_fails_naming_it():
    result = salt_state.mod_watch({"present": state_fn}, "web", "absent", dict(ENGINE_EXTRAS))
    assert result["result"] is False
    assert result["comment"] == "watch is not supported by absent; supported: present"


@pytest.fixture
def count_validations(monkeypatch):
    calls = []
    real = schema.validate

    def counting(tree, **kwargs):
        calls.append(tree)
        return real(tree, **kwargs)

    monkeypatch.setattr(schema, "validate", counting)
    return calls


def test_tree_is_validated_once_per_run_and_again_for_a_different_pillar(count_validations):
    context = {}
    pillar = {"hecate": seed_tree()}
    first = salt_state.tree(pillar, {}, context)
    assert salt_state.tree(pillar, {}, context) is first
    assert salt_state.tree({"hecate": seed_tree()}, {}, context) is first  # equal content, another object
    assert len(count_validations) == 1
    override = seed_tree()
    override["reverse_proxy"]["caddy"]["routes"] = override["reverse_proxy"]["caddy"]["routes"][:1]
    second = salt_state.tree({"hecate": override}, {}, context)
    assert len(second["reverse_proxy"]["caddy"]["routes"]) == 1 and len(count_validations) == 2


def test_tree_digests_one_pillar_object_once(monkeypatch):
    """Every state of a run asks for the tree with the same pillar object: the JSON digest of the whole tree
    (30 ms at 5000 routes) is taken once for it, not once per state."""
    digests = []
    real = salt_state._digest
    monkeypatch.setattr(salt_state, "_digest", lambda raw: digests.append(1) or real(raw))
    context, pillar = {}, {"hecate": seed_tree()}
    first = salt_state.tree(pillar, {}, context)
    for _ in range(8):
        assert salt_state.tree(pillar, {}, context) is first
    assert len(digests) == 1
    assert salt_state.tree({"hecate": seed_tree()}, {}, context) is first and len(digests) == 2


def _ext_pillar_module():
    spec = importlib.util.spec_from_file_location("hecate_ext_pillar_module", REPO / "_pillar" / "hecate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__opts__ = {}
    return module


def test_a_tree_this_host_validated_to_itself_is_not_validated_again(count_validations, tmp_path):
    """The ext_pillar's output validates to itself: the first reader on a host notes it (in the host's cache
    directory), the next ones read it as it is. An override (a rollback's tree), another root prefix or
    another host's cache directory is validated as before."""
    pillar = _ext_pillar_module().ext_pillar("edge-1", {"hecate": seed_tree()})
    assert set(pillar) == {"hecate"} and len(count_validations) == 1  # the ext_pillar's own
    host = {"cachedir": str(tmp_path / "edge-1")}
    assert salt_state.tree(pillar, host, {}) == pillar["hecate"] and len(count_validations) == 2  # noted
    assert salt_state.tree(pillar, host, {}) is pillar["hecate"] and len(count_validations) == 2  # read as it is
    override = {**pillar, "hecate": {**pillar["hecate"], "deployment": {**pillar["hecate"]["deployment"], "verify": False}}}
    assert salt_state.tree(override, host, {})["deployment"]["verify"] is False and len(count_validations) == 3
    salt_state.tree(pillar, {**host, "hecate_root_prefix": str(tmp_path / "elsewhere")}, {})
    salt_state.tree(pillar, {"cachedir": str(tmp_path / "edge-2")}, {})
    assert len(count_validations) == 5


def test_a_pillar_cannot_vouch_for_its_own_tree(tmp_path):
    """Pillar comes from pull requests: nothing in it skips validation. A hostile tree with a mark claiming
    it was validated (its digest, as an earlier design carried beside it) is refused all the same."""
    hostile = seed_tree()
    hostile["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "127.0.0.1:99999"
    mark = {"digest": schema.digest(hostile), "root_prefix": ""}
    pillar = {"hecate": hostile, "hecate_validated": mark, "hecate_validated_by": mark}
    for _ in range(2):
        with pytest.raises(schema.PillarError, match=r"routes\[0\]\(hera.cybermonkey.dev\):backend"):
            salt_state.tree(pillar, {"cachedir": str(tmp_path)}, {})
    assert not (tmp_path / "hecate" / "validated").exists() or not list((tmp_path / "hecate" / "validated").iterdir())


def test_tree_does_not_change_the_pillar():
    pillar = {"hecate": seed_tree()}
    salt_state.tree(pillar, {}, {})
    assert pillar == {"hecate": seed_tree()}


def test_invalid_pillar_raises_pillar_error_with_key_path():
    tree = seed_tree()
    tree["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "nope nope"
    with pytest.raises(salt_state.PillarError) as err:
        salt_state.tree({"hecate": tree}, {}, {})
    assert "hecate:reverse_proxy:caddy:routes[0]" in str(err.value)


def test_a_hecate_key_in_the_minion_config_does_not_hide_the_pillar(caplog):
    opts = {"hecate": {"dns": {"token": "minion-config-secret"}}}
    context = {}
    with caplog.at_level(logging.WARNING, logger="hecatelib.salt_state"):
        tree = salt_state.tree({"hecate": seed_tree()}, opts, context)
        salt_state.tree({"hecate": seed_tree()}, opts, context)
    assert len(tree["reverse_proxy"]["caddy"]["routes"]) == 8
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # once per run
    assert "minion config has a 'hecate' key (dns)" in warnings[0] and "pillar only" in warnings[0]
    assert "minion-config-secret" not in warnings[0]


def test_a_tree_only_in_the_minion_config_is_refused_with_the_reason():
    with pytest.raises(salt_state.PillarError) as err:
        salt_state.tree({}, {"hecate": seed_tree()}, {})
    assert "missing from pillar" in str(err.value) and "minion config is not read" in str(err.value)


def test_no_tree_anywhere_is_refused():
    with pytest.raises(salt_state.PillarError, match="the pillar has no 'hecate' key"):
        salt_state.tree({}, {}, {})
