"""authentik states through Salt's loader (state.single) against the emulator, on both API versions.

Idempotency is measured: a second run and every ``test=True`` run must send zero writes.
"""

import copy

import pytest
import yaml

from devstack import SEED
from devstack.emulators.authentik import SPEC_VERSIONS, AuthentikEmulator
from hecatelib.authentik.objects import TOKEN_PERMISSIONS
from tests.conftest import assert_no_violations, loaders_for
from tests.support import authentik_scenarios as scenarios

TOKEN = "ak-emulator-token"


def pillar_for(emu, token=TOKEN, **extra):
    return {"hecate": {"authentik": {"url": emu.url, "token": token, "allow_insecure_endpoint": True, **extra}}}


@pytest.fixture(scope="module", params=SPEC_VERSIONS, ids=lambda v: f"authentik-{v}")
def ak(request, short_tmp):
    """One emulator + loader per version for the module (a loader costs ~2 s); each test isolates its
    objects with its own ``name_prefix`` (pruning only ever touches the prefix it owns)."""
    with AuthentikEmulator(request.param) as emu:
        loaders = loaders_for(short_tmp / f"aks{request.param}", pillar_for(emu))
        emu.states = loaders.states.authentik
        emu.mod = loaders.modules.authentik
        emu.state_mod = loaders.modules.state
        emu.pillar = loaders.opts["pillar"]  # the dict the loaded modules see as __pillar__
        yield emu
        loaders.reset_state()
    assert_no_violations(emu)


def tree(emu, routes, prefix, **authentik):
    return {
        "global": {"domain": "example.org"},
        "reverse_proxy": {"caddy": {"tls": {"mode": "off"}, "routes": routes}},
        "authentik": {
            "url": emu.url,
            "token": TOKEN,
            "allow_insecure_endpoint": True,
            "name_prefix": prefix,
            "outpost": {"upstream": f"127.0.0.1:{emu.port}"},
            **authentik,
        },
    }


def route(service, groups=None, **auth):
    spec = {"groups": groups} if groups is not None else {}
    spec.update(auth)
    return {"domain": f"{service}.example.org", "backend": "127.0.0.1:9", "service": service, "auth": spec or True}


def converge(emu, hecate, test=False, **kwargs):
    """Run protected_routes with ``hecate`` as the pillar tree; return (state result, writes sent)."""
    emu.pillar["hecate"] = hecate
    before = len(emu.writes)
    kwargs = {"test": True, **kwargs} if test else kwargs
    result = emu.states.protected_routes(name="protect", **kwargs)
    return result, emu.writes[before:]


def test_converge_from_nothing_then_nothing_to_send(ak):
    hecate = tree(ak, [route("s1app", ["s1-admins", "s1-ops"]), route("s1open")], "s1-")
    result, writes = converge(ak, hecate, test=True)
    assert result.result is None and writes == []
    assert result.changes["providers"]["created"] == ["s1-s1app", "s1-s1open"]
    assert result.changes["bindings"]["created"] == ["s1-s1app <- group s1-admins", "s1-s1app <- group s1-ops"]

    result, writes = converge(ak, hecate)
    assert result.result is True, result.comment
    kinds = [(w.method, w.path.split("/")[3]) for w in writes]
    # groups -> providers -> applications -> outpost -> bindings
    assert (
        kinds
        == [("POST", "core")] * 2
        + [("POST", "providers")] * 2
        + [("POST", "core")] * 2
        + [("PATCH", "outposts")]
        + [("POST", "policies")] * 2
    )
    provider = ak.provider_by_name("s1-s1app")
    assert provider["mode"] == "forward_single" and provider["external_host"] == "http://s1app.example.org"
    assert provider["authorization_flow"] == ak.flow_by_slug("default-provider-authorization-implicit-consent")["pk"]
    assert provider["invalidation_flow"] == ak.flow_by_slug("default-provider-invalidation-flow")["pk"]
    app = ak.application_by_slug("s1-s1app")
    assert app["provider"] == provider["pk"] and app["meta_publisher"] == "hecate" and app["policy_engine_mode"] == "any"
    assert {provider["pk"], ak.provider_by_name("s1-s1open")["pk"]} <= set(ak.embedded_outpost()["providers"])
    bound = sorted(ak.groups[b["group"]]["name"] for b in ak.bindings.values() if b["target"] == app["pk"])
    assert bound == ["s1-admins", "s1-ops"]
    assert not [b for b in ak.bindings.values() if b["target"] == ak.application_by_slug("s1-s1open")["pk"]]
    assert ak.group_by_name("s1-ops")["attributes"] == {"hecate_managed": "s1-"}

    for test in (False, True):
        result, writes = converge(ak, hecate, test=test)
        assert (result.result, result.changes, writes) == (True, {}, [])  # test=True on a converged server: True, not None


def test_drift_is_repaired_with_only_the_differing_fields(ak):
    hecate = tree(ak, [route("s2app", ["s2-admins"])], "s2-")
    assert converge(ak, hecate)[0].result is True
    provider, app = ak.provider_by_name("s2-s2app"), ak.application_by_slug("s2-s2app")
    provider["external_host"] = "http://moved.example.org"
    provider["skip_path_regex"] = "^/healthz$"  # not declared by hecate: stays
    app["policy_engine_mode"] = "all"
    app["meta_description"] = "written by a human"  # not declared: stays
    ak.embedded_outpost()["providers"].remove(provider["pk"])
    binding = next(b for b in ak.bindings.values() if b["target"] == app["pk"])
    binding["enabled"] = False
    robot = ak.add_user("s2-robot")
    stray = ak.mod.policy_binding_create("s2-s2app", user=robot["pk"], order=7)

    result, writes = converge(ak, hecate)
    assert result.result is True, result.comment
    bodies = {(w.method, w.path.split("/")[3]): w.body for w in writes}
    # what differs, plus what authentik's validate() reads from every PATCH (mode; target and the group)
    assert bodies[("PATCH", "providers")] == {"external_host": "http://s2app.example.org", "mode": "forward_single", "internal_host": ""}
    assert bodies[("PATCH", "core")] == {"policy_engine_mode": "any"}
    assert provider["pk"] in bodies[("PATCH", "outposts")]["providers"]
    group = ak.group_by_name("s2-admins")["pk"]
    assert bodies[("PATCH", "policies")] == {"enabled": True, "target": app["pk"], "group": group}
    assert [w.path for w in writes if w.method == "DELETE"] == [f"/api/v3/policies/bindings/{stray['pk']}/"]
    assert len(writes) == 5
    assert provider["skip_path_regex"] == "^/healthz$" and app["meta_description"] == "written by a human"
    assert converge(ak, hecate)[1] == []


def test_removing_auth_prunes_only_what_hecate_owns(ak):
    humans = ak.mod.group_create("s3-humans")  # pre-existing group: used by the pillar, never hecate's
    hecate = tree(ak, [route("s3a", ["s3-humans", "s3-new"]), route("s3b", ["s3-new"])], "s3-")
    assert converge(ak, hecate)[0].result is True
    # foreign objects: a hand-made provider with hecate's prefix, on the outpost, serving a hand-made app
    foreign = ak.mod.proxy_provider_create("s3-manual-provider", "https://manual.example.org")
    ak.mod.outpost_update_providers(add=[foreign["pk"]])
    ak.mod.application_create("s3-human-app", name="Human", provider=foreign["pk"])
    doomed = ak.provider_by_name("s3-s3a")

    hecate["reverse_proxy"]["caddy"]["routes"][0]["auth"] = False
    result, writes = converge(ak, hecate, test=True)
    assert result.result is None and writes == []
    assert result.changes == {
        "outpost": {"providers_removed": ["s3-s3a"]},
        "applications": {"deleted": ["s3-s3a"]},
        "providers": {"deleted": ["s3-s3a"]},
    }
    result, writes = converge(ak, hecate)
    assert result.result is True
    assert [(w.method, w.path.split("/")[3]) for w in writes] == [("PATCH", "outposts"), ("DELETE", "core"), ("DELETE", "providers")]
    assert ak.provider_by_name("s3-s3a") is None and ak.application_by_slug("s3-s3a") is None
    assert doomed["pk"] not in ak.embedded_outpost()["providers"]
    assert ak.provider_by_name("s3-manual-provider") and ak.application_by_slug("s3-human-app")
    assert foreign["pk"] in ak.embedded_outpost()["providers"]
    assert ak.group_by_name("s3-new") and ak.group_by_name("s3-humans")  # prune_groups is off

    hecate["reverse_proxy"]["caddy"]["routes"][1]["auth"] = False
    hecate["authentik"]["prune_groups"] = True
    result, writes = converge(ak, hecate)
    assert result.result is True
    assert result.changes["groups"] == {"deleted": ["s3-new"]}  # hecate made it; s3-humans was there before
    assert ak.group_by_name("s3-new") is None and ak.groups[humans["pk"]]["name"] == "s3-humans"
    assert ak.group_by_name("authentik Admins") is not None
    assert converge(ak, hecate)[1] == []


def test_forward_domain_uses_one_provider_for_the_cookie_domain(ak):
    routes = [route("s4a", ["s4-staff"], mode="forward_domain"), route("s4b", ["s4-staff"], mode="forward_domain")]
    hecate = tree(ak, routes, "s4-", cookie_domain="example.org")
    assert converge(ak, hecate)[0].result is True
    provider = ak.provider_by_name("s4-domain-example-org")
    assert provider["mode"] == "forward_domain" and provider["cookie_domain"] == "example.org"
    assert provider["external_host"] == ak.url  # sign-in happens on authentik's own host
    assert ak.provider_for_host("s4b.example.org")["pk"] == provider["pk"]
    assert converge(ak, hecate)[1] == []


def test_invalid_pillar_fails_before_any_request(ak):
    hecate = tree(ak, [route("s5app", ["ok"], mode="forward_everything")], "s5-")
    ak.reset_counts()
    result, _ = converge(ak, hecate)
    assert result.result is False
    assert "hecate:reverse_proxy:caddy:routes[0](s5app.example.org):auth:mode" in result.comment
    assert ak.requests == []


def test_missing_flow_is_named(ak):
    hecate = tree(ak, [route("s6app")], "s6-", flows={"authorization": "no-such-flow"})
    result, writes = converge(ak, hecate)
    assert result.result is False and writes == []
    assert "no-such-flow" in result.comment and "hecate:authentik:flows:authorization" in result.comment


PRESENT_SLS = """
s7-team:
  authentik.group_present:
    attributes: {owner: ops}
s7-prov:
  authentik.proxy_provider_present:
    external_host: https://s7.example.org
    property_mappings: [goauthentik.io/providers/proxy/scope-proxy]
s7-app:
  authentik.application_present:
    display_name: S7
    provider: s7-prov
    meta_publisher: ops
s7-bind:
  authentik.policy_binding_present:
    application: s7-app
    group: s7-team
    binding_order: 2
embedded:
  authentik.outpost_providers_present:
    providers: [s7-prov]
"""
ABSENT_SLS = """
embedded:
  authentik.outpost_providers_absent:
    providers: [s7-prov]
s7-unbind:
  authentik.policy_binding_absent:
    application: s7-app
    group: s7-team
s7-app:
  authentik.application_absent: {}
s7-prov:
  authentik.proxy_provider_absent: {}
s7-team:
  authentik.group_absent: {}
"""


def run_sls(emu, sls, test=False):
    """One state run (``state.high``, in file order) of ``sls``; returns ([(id, result, changes)], writes)."""
    high = {}
    for order, (sid, body) in enumerate(yaml.safe_load(sls).items(), start=1):
        ((fun, args),) = body.items()
        module, function = fun.split(".")
        high[sid] = {module: [function, *({k: v} for k, v in (args or {}).items()), {"order": order}], "__sls__": "t", "__env__": "base"}
    before = len(emu.writes)
    ret = emu.state_mod.high(high, test=test)
    return [(r.id, r.result, r.changes) for r in ret], emu.writes[before:]


def test_single_object_states(ak):
    for sls in (PRESENT_SLS, ABSENT_SLS):
        results, writes = run_sls(ak, sls, test=True)
        assert writes == [] and [r[1] for r in results] == [None] * 5, results
        # absent: every object would go; present: the ones depending on objects still to be created say so
        assert all(r[2] for r in results) if sls is ABSENT_SLS else all(r[2] for r in results[:2])
        results, writes = run_sls(ak, sls)
        assert [r[1] for r in results] == [True] * 5, results
        assert len(writes) == 5  # one write per object
        results, writes = run_sls(ak, sls)
        assert writes == [] and [(r[1], r[2]) for r in results] == [(True, {})] * 5, results
        if sls is PRESENT_SLS:
            provider = ak.provider_by_name("s7-prov")
            app = ak.application_by_slug("s7-app")
            assert provider["pk"] in ak.embedded_outpost()["providers"] and app["provider"] == provider["pk"]
            binding = next(b for b in ak.bindings.values() if b["target"] == app["pk"])
            assert binding["order"] == 2 and binding["group"] == ak.group_by_name("s7-team")["pk"]
            # declared fields only: a changed attribute is PATCHed alone, other attributes are kept
            ak.group_by_name("s7-team")["attributes"] = {"owner": "dev", "extra": 1}
            app["meta_publisher"] = "dev"
            app["meta_description"] = "by a human"
            results, writes = run_sls(ak, sls)
            assert [(w.method, w.body) for w in writes] == [
                ("PATCH", {"attributes": {"owner": "ops", "extra": 1}}),
                ("PATCH", {"meta_publisher": "ops"}),
            ]
    assert ak.provider_by_name("s7-prov") is None and ak.group_by_name("s7-team") is None
    failed = ak.states.application_present(name="s7-x", provider="no-such-provider")
    assert failed.result is False and "no proxy provider named 'no-such-provider'" in failed.comment


@pytest.mark.parametrize("count", [1, 10, 100])
def test_requests_per_converge(ak, count):
    prefix = f"n{count}-"
    routes = [route(f"n{count}r{i}", [f"n{count}-team"]) for i in range(count)]
    hecate = tree(ak, routes, prefix)
    ak.reset_counts()
    dry, dry_writes = converge(ak, hecate, test=True)
    assert dry.result is None and dry_writes == []  # test=True: the plan, zero writes
    dry_run = len(ak.requests)
    ak.reset_counts()
    result, writes = converge(ak, hecate)
    first, first_writes = len(ak.requests), len(writes)
    ak.reset_counts()
    again, again_writes = converge(ak, hecate)
    rerun = len(ak.requests)
    assert result.result is True and again.result is True and again_writes == []
    # writes: 1 group + per route (provider, application, binding) + 1 outpost PATCH
    assert first_writes == 3 * count + 2
    # reads: version, 2 flows, me, one page each of groups/providers/applications, outpost (+1 before the PATCH),
    # bindings in chunks of 50 targets; lists grow with the other tests' objects, by pages of 100
    pages = 1 + (len(ak.providers) + len(ak.applications)) // 100
    assert first - first_writes <= 9 + pages
    assert rerun <= 8 + pages + (count + 49) // 50
    print(
        f"\nauthentik {ak.spec_version}, {count} route(s): test=True {dry_run} requests (0 writes), "
        f"first converge {first} requests ({first_writes} writes), re-run {rerun} (0 writes)"
    )


def test_seed_and_one_protected_app_converge_from_nothing(ak):
    import jinja2

    text = (SEED / "hecate.sls").read_text()
    hecate = yaml.safe_load(jinja2.Template(text).render(salt={"vault.read_secret": lambda path: "s3cr3t-value"}))["hecate"]
    hecate["authentik"].update({"url": ak.url, "token": TOKEN, "allow_insecure_endpoint": True})
    grafana = next(r for r in hecate["reverse_proxy"]["caddy"]["routes"] if r["service"] == "grafana")
    grafana["auth"] = {"groups": ["ops"]}
    result, writes = converge(ak, copy.deepcopy(hecate))
    assert result.result is True, result.comment
    assert len(writes) == 5  # group, provider, application, outpost, binding
    provider = ak.provider_by_name("hecate-grafana")
    assert provider["external_host"] == "https://observe.cybermonkey.dev"
    assert ak.application_by_slug("hecate-grafana")["provider"] == provider["pk"]
    again, writes = converge(ak, copy.deepcopy(hecate))
    assert (again.result, again.changes, writes) == (True, {}, [])


def test_token_user_without_superuser_looks_applications_up_by_slug(ak):
    robot = ak.add_user("deploy-robot", permissions=TOKEN_PERMISSIONS)
    token = next(t for t in ak.tokens.values() if t["key"] == TOKEN)
    admin, token["user"] = token["user"], robot["pk"]  # the pillar's token now belongs to a plain user
    try:
        hecate = tree(ak, [route("r1app", ["r1-admins"])], "r1-")
        result, _ = converge(ak, hecate)
        assert result.result is True, result.comment
        ak.reset_counts()
        again, writes = converge(ak, hecate)
    finally:
        token["user"] = admin
    assert (again.result, again.changes, writes) == (True, {}, [])
    # the list hid the application (the robot is not in r1-admins): it was read by slug
    assert "/api/v3/core/applications/r1-r1app/" in [r.path for r in ak.requests]


# -- changes authentik validates from the request alone (DRF partial updates) ------------------------------
def test_provider_changes_are_accepted(ak):
    """external_host, flows, cookie_domain and property_mappings changes: each PATCH carries mode, or
    authentik answers 400 "Internal host cannot be empty when forward auth is disabled."."""
    hecate = tree(ak, [route("s8app")], "s8-")
    assert converge(ak, hecate)[0].result is True
    hecate["reverse_proxy"]["caddy"]["routes"][0]["domain"] = "s8moved.example.org"
    hecate["authentik"]["flows"] = {"authorization": "default-provider-authorization-explicit-consent"}
    result, writes = converge(ak, hecate)
    assert result.result is True, result.comment
    provider = ak.provider_by_name("s8-s8app")
    assert provider["external_host"] == "http://s8moved.example.org"
    assert provider["authorization_flow"] == ak.flow_by_slug("default-provider-authorization-explicit-consent")["pk"]
    assert [w.body["mode"] for w in writes if w.method == "PATCH" and "/providers/" in w.path] == ["forward_single"]
    assert converge(ak, hecate)[1] == []

    state = {"name": "s8-single", "external_host": "https://s8.example.org"}
    assert ak.states.proxy_provider_present(**state).result is True
    scope = "goauthentik.io/providers/proxy/scope-proxy"
    mapping = next(s["pk"] for s in ak.scopes.values() if s["managed"] == scope)
    ak.provider_by_name("s8-single")["property_mappings"].remove(mapping)  # drift: a mapping taken off
    changed = ak.states.proxy_provider_present(**state, cookie_domain="example.org", property_mappings=[scope])
    assert changed.result is True, changed.comment
    assert set(changed.changes) == {"cookie_domain", "property_mappings"}
    single = ak.provider_by_name("s8-single")
    assert single["cookie_domain"] == "example.org" and mapping in single["property_mappings"]


@pytest.fixture(scope="module")
def engine(ak, short_tmp):
    """A loader whose file_roots hold scenarios.SLS: protected_routes under the state engine (state.sls,
    with a requisite), as salt-call state.apply runs it."""
    roots = short_tmp / f"ake{ak.spec_version}"
    roots.mkdir()
    (roots / "protect.sls").write_text(scenarios.SLS)
    loaders = loaders_for(short_tmp / f"akl{ak.spec_version}", {}, extra={"file_roots": {"base": [str(roots)]}})
    yield loaders
    loaders.reset_state()


def apply(ak, engine, hecate, test=False):
    """state.sls protect with ``hecate`` as the pillar; returns (the protect state's result, writes)."""
    engine.opts["pillar"]["hecate"] = hecate
    before = len(ak.writes)
    ret = {r.id: r for r in engine.modules.state.sls("protect", test=test)}
    assert ret["authentik_ready"].result is True
    return ret["protect"], ak.writes[before:]


def bound(ak, slug):
    """(group names bound enabled and not negated, how many other bindings) of application ``slug``."""
    app = ak.application_by_slug(slug)
    bindings = [b for b in ak.bindings.values() if b["target"] == app["pk"]]
    plain = [b for b in bindings if b["group"] and b["enabled"] and not b["negate"] and b["policy"] is None and b["user"] is None]
    return sorted(ak.groups[b["group"]]["name"] for b in plain), len(bindings) - len(plain)


def test_group_changes_converge_in_one_run(ak, engine):
    """Issue 21: authentik refuses a binding PATCH whose order another group or user binding of the
    application holds (unique_together with DRF's NULL quirk), which hecate's numbering 0..n-1 hit on
    every reorder, change and drop. Now each change converges in one run (under the state engine), the
    re-run sends nothing, and a reorder sends nothing at all: the order decides nothing for group bindings."""
    writes_of = {}
    for n, (what, before, after) in enumerate(scenarios.GROUP_CHANGES):
        hecate = scenarios.tree(ak.url, TOKEN, [scenarios.route(f"s9r{n}", [f"s9-{g}" for g in before])], "s9-")
        assert apply(ak, engine, hecate)[0].result is True
        hecate["reverse_proxy"]["caddy"]["routes"][0]["auth"] = {"groups": [f"s9-{g}" for g in after]} if after else True
        result, writes = apply(ak, engine, hecate)
        assert result.result is True, f"{what}: {result.comment}"
        again, rewrites = apply(ak, engine, hecate)
        assert (again.result, again.changes, rewrites) == (True, {}, []), what
        assert bound(ak, f"s9-s9r{n}") == (sorted(f"s9-{g}" for g in after), 0), what
        writes_of[what] = sorted(w.method for w in writes if "/policies/bindings/" in w.path)
    assert writes_of == {
        "reorder": [],
        "change": ["DELETE", "POST"],  # c created at a free order, then a deleted: b keeps its order
        "append": ["POST"],
        "drop the first": ["DELETE"],
        "replace all": ["DELETE", "DELETE", "POST"],
        "to any signed-in user": ["DELETE", "DELETE"],
    }


def test_drift_repair_whatever_orders_hand_made_bindings_hold(ak):
    """Hand-made bindings holding the order of a binding hecate must repair (a disabled one): a user's,
    another group's, and a duplicate of hecate's other group (a POST is not checked for duplicates). The
    new binding is created first (the application never passes through zero bindings, which authentik
    reads as "everyone may enter"), the foreign ones and the spare duplicate deleted, then the repair
    PATCHed onto a free order (the kept duplicate holds its old one)."""
    hecate = scenarios.tree(ak.url, TOKEN, [scenarios.route("s12app", ["s12-a", "s12-b"])], "s12-")
    assert converge(ak, hecate)[0].result is True
    app = ak.application_by_slug("s12-s12app")
    first, second = sorted((b for b in ak.bindings.values() if b["target"] == app["pk"]), key=lambda b: b["order"])
    first["enabled"], shared = False, first["order"]
    other = ak.mod.group_create("s12-hand")
    robot = ak.add_user("s12-robot")
    for subject in ({"group": other["pk"]}, {"user": robot["pk"]}, {"group": second["group"]}):
        ak.mod.policy_binding_create(app["pk"], order=first["order"], **subject)
    hecate["reverse_proxy"]["caddy"]["routes"][0]["auth"]["groups"].append("s12-c")
    result, writes = converge(ak, hecate)
    assert result.result is True, result.comment
    assert [w.method for w in writes if "/policies/bindings/" in w.path] == ["POST", "DELETE", "DELETE", "DELETE", "PATCH"]
    assert first["enabled"] and first["order"] != shared  # the kept duplicate of b holds the shared order
    assert bound(ak, "s12-s12app") == (["s12-a", "s12-b", "s12-c"], 0)
    orders = sorted(b["order"] for b in ak.bindings.values() if b["target"] == app["pk"])
    assert len(set(orders)) == 3  # distinct: every binding can be PATCHed again
    assert converge(ak, hecate)[1] == []


def test_a_repair_moves_a_binding_off_an_order_another_kept_binding_holds(ak):
    """Two of hecate's bindings on one order (made by hand with POST) and the second one disabled: its
    PATCH takes a free order, or authentik would refuse it."""
    hecate = scenarios.tree(ak.url, TOKEN, [scenarios.route("s13app", ["s13-a", "s13-b"])], "s13-")
    assert converge(ak, hecate)[0].result is True
    app = ak.application_by_slug("s13-s13app")
    ours = sorted((b for b in ak.bindings.values() if b["target"] == app["pk"]), key=lambda b: b["order"])
    ours[1]["order"], ours[1]["enabled"] = ours[0]["order"], False
    result, writes = converge(ak, hecate)
    assert result.result is True, result.comment
    assert [(w.method, set(w.body)) for w in writes] == [("PATCH", {"enabled", "order", "target", "group"})]
    assert ours[1]["enabled"] and ours[1]["order"] != ours[0]["order"]
    assert converge(ak, hecate)[1] == []


def test_policy_binding_present_takes_a_free_order(ak):
    """Without binding_order a new binding takes an order no binding of the application holds (it used to
    take 0, a duplicate authentik accepts on POST and then refuses to PATCH); a binding_order another group
    binding holds is refused before any write; a repair moves a binding off a shared order."""
    ak.mod.group_create("s15-a")
    ak.mod.group_create("s15-b")
    ak.mod.application_create("s15-app")
    taken = ak.mod.policy_binding_create("s15-app", group="s15-a", order=0)
    created = ak.states.policy_binding_present(name="s15-b", application="s15-app", group="s15-b")
    assert created.result is True, created.comment
    mine = next(b for b in ak.bindings.values() if b["group"] == ak.group_by_name("s15-b")["pk"])
    assert mine["order"] == 1
    before = len(ak.writes)
    refused = ak.states.policy_binding_present(name="s15-b", application="s15-app", group="s15-b", binding_order=0)
    assert refused.result is False and "binding_order 0 is taken" in refused.comment and len(ak.writes) == before
    mine["order"], mine["enabled"] = taken["order"], False  # drift: disabled, on a's order
    repaired = ak.states.policy_binding_present(name="s15-b", application="s15-app", group="s15-b")
    assert repaired.result is True, repaired.comment
    assert mine["enabled"] and mine["order"] == 1
    again = ak.states.policy_binding_present(name="s15-b", application="s15-app", group="s15-b")
    assert (again.result, again.changes) == (True, {})


def lifecycle(ak, token, prefix):
    """create, re-run, change groups, repair drift, remove a route, prune groups; a failed state raises
    AssertionError with its comment."""

    def step(hecate, zero=False):
        result, writes = converge(ak, hecate)
        if result.result is not True:
            raise AssertionError(result.comment)
        assert not zero or writes == []

    routes = [scenarios.route(f"{prefix}r", [f"{prefix}team"]), scenarios.route(f"{prefix}open")]
    hecate = scenarios.tree(ak.url, token, routes, prefix)
    step(hecate)
    step(hecate, zero=True)
    routes[0]["auth"] = {"groups": [f"{prefix}crew"]}  # one binding created, one deleted
    step(hecate)
    slug = f"{prefix}{prefix}r"
    app = ak.application_by_slug(slug)
    ak.provider_by_name(slug)["external_host"] = "https://moved.example.org"
    app["policy_engine_mode"] = "all"
    next(b for b in ak.bindings.values() if b["target"] == app["pk"])["enabled"] = False
    ak.embedded_outpost()["providers"].remove(ak.provider_by_name(slug)["pk"])
    step(hecate)
    step(hecate, zero=True)
    hecate["reverse_proxy"]["caddy"]["routes"] = routes[:1]
    step(hecate)
    step(scenarios.tree(ak.url, token, [], prefix, prune_groups=True))


def test_least_privilege_token_through_the_lifecycle(ak):
    """A token whose user holds exactly TOKEN_PERMISSIONS (measured on authentik 2025.12.4: each dropped
    in turn breaks a step) goes through the lifecycle; without any one of them the first failing call
    names it."""
    robot = ak.add_user("s14-robot", permissions=TOKEN_PERMISSIONS)
    ak.add_token("s14-robot", "s14-robot-key", user=robot["pk"])
    lifecycle(ak, "s14-robot-key", "s14-")
    for permission in TOKEN_PERMISSIONS:
        robot["permissions"].discard(permission)
        try:
            with pytest.raises(AssertionError) as failed:
                lifecycle(ak, "s14-robot-key", "s14-")
        finally:
            robot["permissions"].add(permission)
            assert converge(ak, scenarios.tree(ak.url, TOKEN, [], "s14-", prune_groups=True))[0].result is True
        assert permission in str(failed.value).partition("lacks a permission this call needs: ")[2], str(failed.value)


def test_removing_the_last_route_from_a_non_embedded_outpost(ak):
    """authentik refuses ``providers: []`` on an outpost other than the embedded one: hecate sends no
    outpost PATCH then and deletes the provider, which takes it off the outpost."""
    edge = ak.add_outpost("s10-edge")
    hecate = tree(ak, [route("s10app", ["s10-team"])], "s10-", outpost={"name": "s10-edge", "upstream": f"127.0.0.1:{ak.port}"})
    assert converge(ak, hecate)[0].result is True
    provider = ak.provider_by_name("s10-s10app")
    assert edge["providers"] == [provider["pk"]]
    hecate["reverse_proxy"]["caddy"]["routes"][0]["auth"] = False
    result, writes = converge(ak, hecate)
    assert result.result is True, result.comment
    assert [(w.method, w.path.split("/")[3]) for w in writes] == [("DELETE", "core"), ("DELETE", "providers")]
    assert ak.provider_by_name("s10-s10app") is None and edge["providers"] == []
    assert converge(ak, hecate)[1] == []
    # the module refuses to send the empty list itself, with the reason
    other = ak.mod.proxy_provider_create("s10-other", "https://s10-other.example.org")
    edge["providers"].append(other["pk"])
    with pytest.raises(Exception, match="would serve no provider"):
        ak.mod.outpost_update_providers(remove=["s10-other"], outpost_name="s10-edge")
    assert edge["providers"] == [other["pk"]]


# -- through Salt's state engine: require and watch ------------------------------------------------------
WATCH_SLS = """
marker:
  file.managed:
    - name: {marker}
    - contents: {version}
authentik_ready:
  test.succeed_without_changes: []
protect:
  authentik.protected_routes:
    - require:
      - test: authentik_ready
    - watch:
      - file: marker
s11-watchers:
  authentik.group_present:
    - attributes: {{owner: s11}}
    - watch:
      - file: marker
"""


def test_protected_routes_under_the_state_engine_with_require_and_watch(ak, make_loaders, tmp_path):
    """state.sls of an sls whose protected_routes requires one state and watches a file: a change of the
    file calls mod_watch with Salt's own keys (``__reqs__``, ``__id__``...), which must not reach the
    state (it used to fail with TypeError). The tree comes from pillar, never from arguments."""
    roots = tmp_path / "roots"
    roots.mkdir()
    hecate = tree(ak, [route("s11app", ["s11-team"])], "s11-")
    loaders = make_loaders({"hecate": hecate}, extra={"file_roots": {"base": [str(roots)]}})

    def apply(version, **kwargs):
        (roots / "protect.sls").write_text(WATCH_SLS.format(marker=tmp_path / "marker", version=version))
        before = len(ak.writes)
        ret = loaders.modules.state.sls("protect", **kwargs)
        return {r.id: r for r in ret}, ak.writes[before:]

    first, writes = apply("v1")
    assert first["protect"].result is True and first["protect"].changes, first["protect"].comment
    assert len(writes) == 6  # group, provider, application, outpost, binding; the s11-watchers group
    second, writes = apply("v2")  # the watched file changes, authentik is converged: mod_watch runs
    assert second["marker"].changes and second["protect"].result is True, second["protect"].comment
    assert second["protect"].changes == {} and writes == []
    assert "__reqs__" not in second["protect"].comment
    assert second["s11-watchers"].result is True and second["s11-watchers"].changes == {}, second["s11-watchers"].comment
    third, writes = apply("v3", test=True)
    assert third["protect"].result is True and writes == []
