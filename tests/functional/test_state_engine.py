"""Every hecate state module run by Salt's state engine (state.sls of an sls with ``require`` and ``watch``),
not only by direct calls: the requisite machinery passes keywords (``__reqs__``, ``sfun``...) that a
direct call never does."""

import pytest
import yaml

from devstack import host
from devstack.stack import NULL_MODULE
from hecatelib import schema
from tests.conftest import REPO, assert_no_violations
from tests.functional.test_conventions import nomad  # noqa: F401 - the fixture, shared
from tests.functional.test_hetzner_dns import dns_pillar
from tests.functional.test_terraform import host_opts as terraform_host
from tests.functional.test_terraform import pillar_for as terraform_pillar
from tests.functional.test_terraform import tf_env  # noqa: F401 - the fixture, shared


@pytest.fixture
def sls_root(short_tmp, request):
    root = short_tmp / f"sls{abs(hash(request.node.nodeid)) % 10**6}"
    root.mkdir()
    return root


def engine(make_loaders, sls_root, pillar, extra=None):
    """Loaders whose file_roots also serve this test's own sls files."""
    return make_loaders(pillar, {"file_roots": {"base": [str(REPO / "salt"), str(sls_root)]}, **(extra or {})})


def run_sls(loaders, sls_root, name, text, **kwargs):
    (sls_root / f"{name}.sls").write_text(text)
    return {r.id: r for r in loaders.modules.state.sls(name, **kwargs)}


def chain_sls(root, marker, states):
    """A directory, a marker file in it, then ``states`` ``[(id, "module.function", {args})]``: each
    requires the one before it (the first: the directory) and watches the marker."""
    sls = {
        "config-dir": {"file.directory": [{"name": f"{root}/etc"}]},
        "marker": {"file.managed": [{"name": f"{root}/etc/marker"}, {"contents": marker}, {"require": [{"file": "config-dir"}]}]},
    }
    previous = {"file": "config-dir"}
    for sid, function, args in states:
        requisites = [{"require": [previous]}, {"watch": [{"file": "marker"}]}]
        sls[sid] = {function: [*({k: v} for k, v in args.items()), *requisites]}
        previous = {function.split(".")[0]: sid}
    return yaml.safe_dump(sls, sort_keys=False)


def backend_sls(sls_root, marker, state, **args):
    return chain_sls(sls_root, marker, [("backend", state, args)])


def run_chain_twice(loaders, sls_root, sls, states, writes):
    """Run the chain (the backends converge), then again with the marker changed: Salt runs each state, then
    its mod_watch. Returns both runs' results by ID and the second run's writes."""
    first = run_sls(loaders, sls_root, sls, chain_sls(sls_root, "one", states))
    for sid, *_ in states:
        assert first[sid].result is True, (sid, first[sid].comment)
    before = len(writes())
    second = run_sls(loaders, sls_root, sls, chain_sls(sls_root, "two", states))
    assert second["marker"].changes
    return first, second, writes()[before:]


def run_twice(loaders, sls_root, sls, state, writes, **args):
    """:func:`run_chain_twice` of one state, ``backend``; returns its two results and the second run's writes."""
    first, second, written = run_chain_twice(loaders, sls_root, sls, [("backend", state, args)], writes)
    return first["backend"], second["backend"], written


@pytest.fixture
def validations(monkeypatch):
    """Every whole-tree validation in this process (the loader imports the same hecatelib.schema)."""
    calls = []
    real = schema.validate
    monkeypatch.setattr(schema, "validate", lambda tree, **kwargs: calls.append(1) or real(tree, **kwargs))
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
    from devstack.emulators.hetzner import HetznerDNS

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
    workdir = host.below("lib", "tf")
    (workdir / "main.tf").write_text(NULL_MODULE)
    loaders = engine(make_loaders, sls_root, terraform_pillar(workdir, nodes={"edge-1": "192.0.2.10"}), terraform_host(tf_env))
    state_file = workdir / "terraform.tfstate"
    first, second, _ = run_twice(loaders, sls_root, "tfw", "hecate_terraform.applied", lambda: [])
    assert first.changes["outputs"] and "applied the plan" in first.comment
    serial = state_file.read_text()
    assert second.result is True and second.changes == {}, second.comment
    assert second.comment == "infrastructure matches the pillar"
    assert state_file.read_text() == serial  # nothing applied the second time


# -- authentik and nomad_job --------------------------------------
@pytest.fixture
def authentik():
    from devstack.emulators.authentik import AuthentikEmulator

    with AuthentikEmulator("2025.6.1") as emulator:
        yield emulator
    assert_no_violations(emulator)


def test_authentik_protected_routes_with_require_and_watch(make_loaders, sls_root, authentik, validations):
    from tests.functional.test_authentik_states import route, tree

    pillar = {"hecate": tree(authentik, [route("engine", ["engine-admins"])], "eng-")}
    loaders = engine(make_loaders, sls_root, pillar)
    first, second, writes = run_twice(loaders, sls_root, "akw", "authentik.protected_routes", lambda: authentik.writes)
    assert first.changes["providers"]["created"] == ["eng-engine"]
    assert second.result is True and second.changes == {}, second.comment
    assert writes == []
    assert len(validations) == 2  # one per run: the state and its mod_watch share the validated tree (3 before)


def test_nomad_job_present_with_require_and_watch(make_loaders, sls_root, nomad, validations):  # noqa: F811
    from tests.functional.test_nomad_job import nomad_pillar

    loaders = engine(make_loaders, sls_root, nomad_pillar(nomad))
    source = "salt://hecate/nomad/redis.nomad.j2"
    first, second, writes = run_twice(
        loaders, sls_root, "nomadw", "nomad_job.present", lambda: nomad.writes, name="hecate-redis", source=source
    )
    assert first.changes
    assert second.result is True and second.changes == {}, second.comment
    assert writes == []
    assert len(validations) == 2  # one per run: the state and its mod_watch share the validated tree (3 before)


AUTHENTIK_OBJECTS = [
    ("eo-team", "authentik.group_present", {"attributes": {"owner": "ops"}}),
    ("eo-prov", "authentik.proxy_provider_present", {"external_host": "https://eo.example.org"}),
    ("eo-app", "authentik.application_present", {"provider": "eo-prov"}),
    ("eo-bind", "authentik.policy_binding_present", {"application": "eo-app", "group": "eo-team"}),
    ("embedded", "authentik.outpost_providers_present", {"providers": ["eo-prov"]}),
]
AUTHENTIK_REMOVAL = [
    ("embedded", "authentik.outpost_providers_absent", {"providers": ["eo-prov"]}),
    ("eo-unbind", "authentik.policy_binding_absent", {"application": "eo-app", "group": "eo-team"}),
    ("eo-app", "authentik.application_absent", {}),
    ("eo-prov", "authentik.proxy_provider_absent", {}),
    ("eo-team", "authentik.group_absent", {}),
]


def test_authentik_object_states_with_require_and_watch(make_loaders, sls_root, authentik):
    """Every single-object authentik state in a require chain that watches a file: created (removed) on the
    first run; on the second the watch re-runs each through mod_watch, which sends nothing."""
    from tests.functional.test_authentik_states import tree

    loaders = engine(make_loaders, sls_root, {"hecate": tree(authentik, [], "eo-")})
    for sls, states in (("akobjects", AUTHENTIK_OBJECTS), ("akremoval", AUTHENTIK_REMOVAL)):
        first, second, writes = run_chain_twice(loaders, sls_root, sls, states, lambda: authentik.writes)
        assert all(first[sid].changes for sid, *_ in states), {sid: first[sid].comment for sid, *_ in states}
        assert [(second[sid].result, second[sid].changes) for sid, *_ in states] == [(True, {})] * len(states)
        assert writes == []
    assert authentik.group_by_name("eo-team") is None and authentik.provider_by_name("eo-prov") is None


def test_nomad_job_rolled_back_and_absent_with_require_and_watch(make_loaders, sls_root, nomad):  # noqa: F811
    from tests.functional.test_nomad_job import nomad_pillar, web_job

    loaders = engine(make_loaders, sls_root, nomad_pillar(nomad))
    deploy = [
        # IDs differ from the job's name: a requisite on "web" would match pin-web's name too (a loop)
        ("deploy-web", "nomad_job.present", {"name": "web", "hcl": web_job(), "variables": {"image": "web:1"}}),
        ("pin-web", "nomad_job.rolled_back", {"name": "web", "version": 0}),
    ]
    first, second, writes = run_chain_twice(loaders, sls_root, "nomadpin", deploy, lambda: nomad.writes)
    assert first["deploy-web"].changes and "already runs the spec of version 0" in first["pin-web"].comment
    assert [(second[sid].result, second[sid].changes) for sid in ("deploy-web", "pin-web")] == [(True, {})] * 2
    assert writes == []
    first, second, writes = run_chain_twice(
        loaders, sls_root, "nomadstop", [("stop-web", "nomad_job.absent", {"name": "web"})], lambda: nomad.writes
    )
    assert first["stop-web"].changes["job"]["new"] == "stopped"
    # mod_watch re-checks: it used to answer "nomad_job.absent does not react to watch" without looking
    assert (second["stop-web"].result, second["stop-web"].changes, second["stop-web"].comment) == (True, {}, "Job web is stopped")
    assert writes == []


# -- conventions the helper gives every state module -------------------------------------------------------
def test_nomad_job_and_authentik_read_the_tree_from_pillar_only(make_loaders, nomad, authentik):  # noqa: F811
    """Issue 15: ``config.get("hecate")`` returned the minion config's ``hecate`` key instead of the pillar
    (nomad_job read it in three places, authentik.protected_routes in one)."""
    from tests.functional.test_authentik_states import route, tree
    from tests.functional.test_nomad_job import nomad_pillar

    minion_config = {"hecate": {"dns": {"token": "a-token-kept-in-the-minion-config"}}}
    pillar = nomad_pillar(nomad)
    pillar["hecate"]["authentik"] = tree(authentik, [], "mc-")["authentik"]
    pillar["hecate"]["reverse_proxy"]["caddy"]["routes"].append(route("mcapp", ["mc-team"]))
    states = make_loaders(pillar, minion_config).states
    deployed = states.nomad_job.present(name="hecate-redis", source="salt://hecate/nomad/redis.nomad.j2")
    assert deployed.result is True and deployed.changes, deployed.comment
    protected = states.authentik.protected_routes(name="protect")
    assert protected.result is True and "mc-mcapp" in protected.changes["providers"]["created"], protected.comment


def test_nomad_job_rolled_back_refuses_a_bad_argument_before_reverting(make_loaders, nomad):  # noqa: F811
    """The canary policy used to be read after the revert: a bad ``promote`` failed the state with the job
    already reverted. It is read first now: nothing is written."""
    from tests.functional.test_nomad_job import deploy_web, nomad_pillar

    loaders = make_loaders(nomad_pillar(nomad))
    assert deploy_web(loaders, "web:1").result is True
    assert deploy_web(loaders, "web:2").result is True
    before = len(nomad.writes)
    refused = loaders.states.nomad_job.rolled_back(name="web", promote="sometimes")
    assert refused.result is False and "promote must be one of" in refused.comment
    assert nomad.writes[before:] == [] and nomad.job("web")["Version"] == 1


def test_nomad_job_rolled_back_without_a_version_under_watch_is_refused_and_never_flips(make_loaders, sls_root, nomad):  # noqa: F811
    """Issue 27: Salt calls a watching state on every run (watch = require + mod_watch: ``call_chunk`` in
    salt/state.py runs the state, then mod_watch when it changed nothing), and ``rolled_back`` without a
    version reverts to the previous stable spec each time: every highstate flipped the job between two specs.
    Under ``watch`` it is refused now, with nothing written; ``onfail``/``onchanges`` (the documented forms) run
    it only when their requisite failed/changed."""
    from tests.functional.test_nomad_job import deploy_web, nomad_pillar, web_job

    loaders = engine(make_loaders, sls_root, nomad_pillar(nomad))
    for image in ("web:1", "web:2"):  # two stable versions with different specs
        assert deploy_web(loaders, image).result is True
    deploy = {"nomad_job.present": [{"name": "web"}, {"hcl": web_job()}, {"variables": {"image": "web:2"}}]}

    def with_rollback(requisite):
        rollback = {"nomad_job.rolled_back": [{"name": "web"}]}
        if requisite == "watch_in":  # on the watched state; Salt turns it into the rollback's watch
            sls = {"deploy-web": {"nomad_job.present": [*deploy["nomad_job.present"], {"watch_in": [{"nomad_job": "rollback-web"}]}]}}
        else:
            sls = {"deploy-web": deploy}
            rollback["nomad_job.rolled_back"].append({requisite: [{"nomad_job": "deploy-web"}]})
        return yaml.safe_dump({**sls, "rollback-web": rollback}, sort_keys=False)

    before = len(nomad.writes)
    for requisite in ("watch", "watch_in", "listen"):
        for _ in range(2):
            watched = run_sls(loaders, sls_root, f"rb{requisite}", with_rollback(requisite))
            assert (watched["deploy-web"].result, watched["deploy-web"].changes) == (True, {})
            refused = watched["rollback-web"]
            assert (refused.result, refused.changes) == (False, {}), (requisite, refused.comment)
            assert "onfail" in refused.comment and "version" in refused.comment
    assert nomad.writes[before:] == [] and nomad.job("web")["Version"] == 1  # no flip, not one write

    for requisite in ("onfail", "onchanges"):
        for _ in range(2):
            result = run_sls(loaders, sls_root, f"rb{requisite}", with_rollback(requisite))
            assert result["rollback-web"].result is True and result["rollback-web"].changes == {}, result["rollback-web"].comment
    assert nomad.writes[before:] == [] and nomad.job("web")["Version"] == 1
