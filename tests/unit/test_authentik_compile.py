"""hecatelib.authentik.objects, pure: the pillar schema and checks, the objects derived from routes, the plan against
a snapshot (set semantics, ownership, minimal PATCHes) and the Caddy forward-auth JSON."""

import copy

import jinja2
import pytest
import yaml

from devstack import SEED
from hecatelib import schema
from hecatelib.authentik import objects as ha
from hecatelib.spec import PillarError
from tests.conftest import FIXTURES

REFERENCE = FIXTURES / "reference" / "caddy"


@pytest.fixture(scope="module")
def seed():
    text = (SEED / "hecate.sls").read_text()
    rendered = jinja2.Template(text).render(salt={"vault.read_secret": lambda path: "s3cr3t-value"})
    return yaml.safe_load(rendered)["hecate"]


def validate(hecate):
    return ha.validate_tree(schema.validate(copy.deepcopy(hecate)))


def errors_of(hecate):
    with pytest.raises(PillarError) as info:
        validate(hecate)
    return dict(info.value.errors)


def lab(routes, **authentik):
    return {
        "global": {"domain": "example.org"},
        "reverse_proxy": {"caddy": {"tls": {"mode": "off"}, "routes": routes}},
        "authentik": {"url": "https://auth.example.org", "outpost": {"upstream": "10.0.0.9:9000"}, **authentik},
    }


APP = {"domain": "app.example.org", "backend": "10.0.0.5:8080", "service": "app", "auth": {"groups": ["admins"]}}


# -- schema and checks -------------------------------------------------------------------------------------
def test_seed_pillar_stays_valid_and_gets_defaults(seed):
    tree = validate(seed)
    ak = tree["authentik"]
    assert ak["version"] == "2025.6.1" and ak["ports"] == {"http": 9000, "https": 9443}
    assert ak["flows"] == ha.DEFAULT_FLOWS and ak["outpost"] == {"name": "embedded"}
    assert ak["mode"] == "forward_single" and ak["name_prefix"] == "hecate-" and ak["prune"] is True
    # derived from the seed's own authentik route (service: authentik)
    assert ha.public_url(tree) == "https://hera.cybermonkey.dev"
    assert ha.outpost_upstream(tree) == "hecate-server-1:9000"
    assert ha.desired_objects(tree)["providers"] == {}


def test_seed_with_one_protected_route_validates(seed):
    hecate = copy.deepcopy(seed)
    hecate["reverse_proxy"]["caddy"]["routes"][2]["auth"] = {"groups": ["ops"]}
    desired = ha.desired_objects(validate(hecate))
    assert list(desired["providers"]) == ["hecate-grafana"]
    assert desired["providers"]["hecate-grafana"]["external_host"] == "https://observe.cybermonkey.dev"
    assert desired["bindings"] == {"hecate-grafana": ["ops"]}


def test_unknown_authentik_key_is_named_with_a_suggestion():
    errors = errors_of(lab([APP], tokn="x"))
    assert "did you mean 'token'" in errors["hecate:authentik:tokn"]


def test_unknown_auth_key_and_bad_mode():
    route = {**APP, "auth": {"groups": ["admins"], "mode": "forward_all", "gruops": []}}
    errors = errors_of(lab([route]))
    assert "forward_single" in errors["hecate:reverse_proxy:caddy:routes[0](app.example.org):auth:mode"]
    assert "did you mean 'groups'" in errors["hecate:reverse_proxy:caddy:routes[0](app.example.org):auth:gruops"]


def test_auth_route_without_authentik_is_refused():
    hecate = lab([APP])
    del hecate["authentik"]
    errors = errors_of(hecate)
    assert "needs authentik" in errors["hecate:reverse_proxy:caddy:routes[0](app.example.org):auth"]


def test_http_url_needs_allow_insecure():
    errors = errors_of(lab([APP], url="http://auth.example.org"))
    assert "https" in errors["hecate:authentik:url"]
    assert validate(lab([APP], url="http://auth.example.org", allow_insecure_endpoint=True))


def test_authentiks_own_route_cannot_be_protected():
    route = {"domain": "auth.example.org", "backend": "10.0.0.9:9000", "service": "authentik", "auth": {"groups": ["x"]}}
    errors = errors_of(lab([route]))
    assert "nobody could sign in" in errors["hecate:reverse_proxy:caddy:routes[0](auth.example.org):auth"]


def test_group_names_refuse_quotes():
    errors = errors_of(lab([{**APP, "auth": {"groups": ['ad"mins']}}]))
    assert "quote" in errors["hecate:reverse_proxy:caddy:routes[0](app.example.org):auth:groups[0]"]


def test_forward_domain_rules():
    a = {**APP, "auth": {"mode": "forward_domain", "groups": ["staff"]}}
    b = {"domain": "wiki.example.org", "backend": "10.0.0.6:80", "service": "wiki", "auth": {"mode": "forward_domain", "groups": ["ops"]}}
    errors = errors_of(lab([a, b]))
    assert "must be the same" in errors["hecate:reverse_proxy:caddy:routes[1](wiki.example.org):auth:groups"]
    outside = {**a, "domain": "app.other.net"}
    errors = errors_of(lab([outside]))
    assert "outside cookie_domain 'example.org'" in errors["hecate:reverse_proxy:caddy:routes[0](app.other.net):auth"]


def test_slug_length_is_checked():
    route = {**APP, "service": "s" * 60}
    errors = errors_of(lab([route]))
    assert "slug" in errors["hecate:reverse_proxy:caddy:routes[0](app.example.org):auth"]


@pytest.mark.parametrize(
    ("version", "limited"), [(None, True), ("2025.10.4", True), ("latest", True), ("2025.12.4", False), ("2026.5.6", False)]
)
def test_slug_length_limit_follows_the_authentik_version(version, limited):
    """authentik/core/models.py Application.slug (and Flow.slug): a SlugField of 50 characters up to
    2025.10, a TextField from 2025.12; no version (or a tag that is none): the limit holds."""
    route = {**APP, "service": "s" * 60}
    flows = {"authorization": "f" * 55}
    tree = lab([route], flows=flows, **({"version": version} if version else {}))
    if limited:
        errors = errors_of(tree)
        assert "at most 50" in errors["hecate:reverse_proxy:caddy:routes[0](app.example.org):auth"]
        assert "at most 50" in errors["hecate:authentik:flows:authorization"]
    else:
        assert ha.desired_objects(validate(tree))["applications"]["hecate-" + "s" * 60]


def test_auth_true_means_any_signed_in_user_and_false_means_open():
    tree = validate(lab([{**APP, "auth": True}, {"domain": "open.example.org", "backend": "10.0.0.7:80", "auth": False}]))
    assert tree["reverse_proxy"]["caddy"]["routes"][0]["auth"] == {"groups": []}
    desired = ha.desired_objects(tree)
    assert list(desired["providers"]) == ["hecate-app"] and desired["bindings"] == {"hecate-app": []}


# -- desired objects ---------------------------------------------------------------------------------------
def test_forward_single_objects():
    desired = ha.desired_objects(validate(lab([APP])))
    assert desired["providers"]["hecate-app"] == {
        "name": "hecate-app",
        "mode": "forward_single",
        "external_host": "http://app.example.org",  # tls: off in this lab pillar
        "authorization_flow": "default-provider-authorization-implicit-consent",
        "invalidation_flow": "default-provider-invalidation-flow",
    }
    assert desired["applications"]["hecate-app"] == {
        "slug": "hecate-app",
        "name": "app",
        "provider": "hecate-app",
        "meta_launch_url": "http://app.example.org/",
        "meta_publisher": "hecate",
        "policy_engine_mode": "any",
    }
    assert desired["groups"] == ["admins"] and desired["outpost"] == "embedded"


def test_forward_domain_shares_one_provider_per_cookie_domain():
    routes = [
        {**APP, "auth": {"mode": "forward_domain", "groups": ["staff"]}},
        {
            "domain": "*.apps.example.org",
            "backend": "10.0.0.6:80",
            "service": "apps",
            "auth": {"mode": "forward_domain", "groups": ["staff"]},
        },
    ]
    desired = ha.desired_objects(validate(lab(routes, cookie_domain="example.org")))
    assert list(desired["providers"]) == ["hecate-domain-example-org"]
    provider = desired["providers"]["hecate-domain-example-org"]
    assert provider["mode"] == "forward_domain" and provider["cookie_domain"] == "example.org"
    assert provider["external_host"] == "https://auth.example.org"  # the outpost answers on authentik's host


def test_global_mode_default_applies():
    desired = ha.desired_objects(validate(lab([APP], mode="forward_domain")))
    assert desired["providers"]["hecate-domain-example-org"]["mode"] == "forward_domain"


# -- the plan ----------------------------------------------------------------------------------------------
FLOWS = {"default-provider-authorization-implicit-consent": "f-authz", "default-provider-invalidation-flow": "f-inv"}


def snapshot_for(desired, **overrides):
    """A snapshot where everything desired already exists as declared."""
    groups = {name: {"pk": f"g-{name}", "name": name, "attributes": {}} for name in desired["groups"]}
    providers, apps, bindings, members = {}, {}, {}, []
    for i, (name, fields) in enumerate(desired["providers"].items(), start=1):
        providers[name] = {
            **fields,
            "pk": i,
            "authorization_flow": "f-authz",
            "invalidation_flow": "f-inv",
            "property_mappings": ["m-openid", "m-proxy"],  # what the server adds
        }
        members.append(i)
    for slug, fields in desired["applications"].items():
        apps[slug] = {**fields, "pk": f"a-{slug}", "provider": providers[fields["provider"]]["pk"]}
        bindings[f"a-{slug}"] = [
            {"pk": f"b-{slug}-{g}", "group": f"g-{g}", "policy": None, "user": None, "order": n, "enabled": True, "negate": False}
            for n, g in enumerate(desired["bindings"][slug])
        ]
    snap = {
        "flows": dict(FLOWS),
        "groups": groups,
        "providers": providers,
        "applications": apps,
        "outpost": {"pk": "o", "providers": [*members, 99]},  # 99: somebody else's provider
        "bindings": bindings,
    }
    snap.update(overrides)
    return snap


def empty_snapshot():
    return {"flows": dict(FLOWS), "groups": {}, "providers": {}, "applications": {}, "outpost": {"providers": [99]}, "bindings": {}}


def test_plan_from_nothing_creates_in_order():
    desired = ha.desired_objects(validate(lab([APP])))
    actions = ha.plan(desired, empty_snapshot())
    assert actions["groups_create"] == [{"name": "admins", "attributes": {"hecate_managed": "hecate-"}}]
    assert actions["providers_create"][0]["authorization_flow"] == "f-authz"  # slugs resolved to pks
    assert [a["slug"] for a in actions["applications_create"]] == ["hecate-app"]
    assert actions["outpost_add"] == ["hecate-app"] and actions["outpost_remove"] == []
    assert actions["bindings_create"] == [{"application": "hecate-app", "group": "admins", "order": 0}]
    assert not any(actions[k] for k in ("providers_delete", "applications_delete", "bindings_delete", "groups_delete"))
    assert list(ha.plan_changes(actions)) == ["groups", "providers", "applications", "outpost", "bindings"]


def test_plan_is_empty_when_converged_with_server_additions():
    desired = ha.desired_objects(validate(lab([APP])))
    actions = ha.plan(desired, snapshot_for(desired))
    assert ha.plan_changes(actions) == {}


def test_plan_patches_only_the_differing_declared_fields():
    desired = ha.desired_objects(validate(lab([APP])))
    snap = snapshot_for(desired)
    snap["providers"]["hecate-app"]["external_host"] = "http://old.example.org"
    snap["providers"]["hecate-app"]["skip_path_regex"] = "^/health$"  # not declared: left alone
    snap["applications"]["hecate-app"]["meta_description"] = "set by a human"  # not declared
    snap["applications"]["hecate-app"]["policy_engine_mode"] = "all"
    actions = ha.plan(desired, snap)
    assert actions["providers_update"] == [
        {
            "name": "hecate-app",
            "pk": 1,
            "diff": {"external_host": {"old": "http://old.example.org", "new": "http://app.example.org"}},
            "current": snap["providers"]["hecate-app"],  # the client takes mode/internal_host from it
        }
    ]
    assert actions["applications_update"] == [{"slug": "hecate-app", "diff": {"policy_engine_mode": {"old": "all", "new": "any"}}}]


def test_plan_property_mappings_are_a_set():
    desired = ha.desired_objects(validate(lab([APP])))
    desired["providers"]["hecate-app"]["property_mappings"] = ["m-proxy"]
    snap = snapshot_for(desired)
    snap["providers"]["hecate-app"]["property_mappings"] = ["m-openid", "m-proxy", "m-email"]
    assert ha.plan(desired, snap)["providers_update"] == []
    snap["providers"]["hecate-app"]["property_mappings"] = ["m-openid"]
    update = ha.plan(desired, snap)["providers_update"][0]["diff"]
    assert update == {"property_mappings": {"old": ["m-openid"], "new": ["m-openid", "m-proxy"]}}


def test_plan_prunes_only_owned_objects():
    desired = ha.desired_objects(validate(lab([APP])))
    snap = snapshot_for(desired)
    snap["providers"]["hecate-gone"] = {"pk": 7, "name": "hecate-gone"}
    snap["providers"]["grafana-manual"] = {"pk": 8, "name": "grafana-manual"}
    snap["providers"]["hecate-human"] = {"pk": 9, "name": "hecate-human", "assigned_application_slug": "hecate-human"}
    snap["outpost"]["providers"] += [7, 8, 9]
    snap["applications"]["hecate-gone"] = {"pk": "a-g", "slug": "hecate-gone", "meta_publisher": "hecate", "provider": 7}
    snap["applications"]["hecate-human"] = {"pk": "a-h", "slug": "hecate-human", "meta_publisher": "someone", "provider": 9}
    snap["applications"]["grafana"] = {"pk": "a-m", "slug": "grafana", "meta_publisher": "hecate", "provider": 8}
    snap["groups"]["old-team"] = {"pk": "g-old", "name": "old-team", "attributes": {"hecate_managed": "hecate-"}}
    snap["groups"]["humans"] = {"pk": "g-h", "name": "humans", "attributes": {}}
    actions = ha.plan(desired, snap)
    assert actions["outpost_remove"] == ["hecate-gone"]
    assert actions["applications_delete"] == ["hecate-gone"]
    assert actions["providers_delete"] == ["hecate-gone"]
    assert actions["groups_delete"] == []  # prune_groups is off by default
    assert ha.plan(desired, snap, prune_groups=True)["groups_delete"] == ["old-team"]
    nothing = ha.plan(desired, snap, prune=False)
    assert not nothing["providers_delete"] and not nothing["applications_delete"] and not nothing["outpost_remove"]


def test_plan_bindings_are_exactly_the_pillar_groups():
    desired = ha.desired_objects(validate(lab([{**APP, "auth": {"groups": ["admins", "ops"]}}])))
    snap = snapshot_for(desired)
    stray_user = {"pk": "b-user", "group": None, "policy": None, "user": 5, "order": 9, "enabled": True, "negate": False}
    snap["bindings"]["a-hecate-app"].append(stray_user)
    snap["bindings"]["a-hecate-app"][1]["enabled"] = False  # ops binding disabled by hand
    actions = ha.plan(desired, snap)
    assert actions["bindings_delete"] == [{"application": "hecate-app", "pk": "b-user", "what": "user 5"}]
    assert actions["bindings_update"] == [
        {
            "application": "hecate-app",
            "group": "ops",
            "pk": "b-hecate-app-ops",
            "diff": {"enabled": {"old": False, "new": True}},
            "current": snap["bindings"]["a-hecate-app"][1],  # the client takes target and group from it
        }
    ]


def test_plan_bindings_own_groups_not_orders():
    """A reorder sends nothing (the order decides nothing for group bindings: authentik's
    PolicyEngine.compute_static_bindings); new bindings take an order nobody holds; a repaired binding
    leaves an order another kept binding shares (authentik refuses that PATCH otherwise)."""
    desired = ha.desired_objects(validate(lab([{**APP, "auth": {"groups": ["ops", "admins"]}}])))
    snap = snapshot_for(desired)  # ops at 0, admins at 1 (snapshot_for numbers them in pillar order)
    desired["bindings"]["hecate-app"] = ["admins", "ops"]
    assert ha.plan_changes(ha.plan(desired, snap)) == {}

    desired["bindings"]["hecate-app"] = ["ops", "crew"]
    snap["groups"]["crew"] = {"pk": "g-crew", "name": "crew"}
    actions = ha.plan(desired, snap)
    assert actions["bindings_create"] == [{"application": "hecate-app", "group": "crew", "order": 2}]  # 0 and 1 taken
    assert [a["what"] for a in actions["bindings_delete"]] == ["group admins"] and actions["bindings_update"] == []

    bindings = snap["bindings"]["a-hecate-app"]
    admins, ops = sorted(bindings, key=lambda b: b["pk"])
    ops["order"], ops["enabled"] = admins["order"], False  # a hand-made POST left both on order 1
    desired["bindings"]["hecate-app"] = ["admins", "ops"]
    actions = ha.plan(desired, snap)
    assert [a["diff"] for a in actions["bindings_update"]] == [{"enabled": {"old": False, "new": True}, "order": {"old": 1, "new": 0}}]
    assert ha.ACTION_ORDER.index("bindings_create") < ha.ACTION_ORDER.index("bindings_delete") < ha.ACTION_ORDER.index("bindings_update")


def test_plan_never_empties_a_non_embedded_outpost():
    desired = ha.desired_objects(validate(lab([APP])))
    snap = snapshot_for(desired)
    nothing = ha.desired_objects(validate(lab([{**APP, "auth": False}])))
    snap["outpost"]["providers"] = [1]  # hecate's provider is the outpost's only one
    actions = ha.plan(nothing, snap)
    # authentik refuses providers: [] on it; deleting the provider takes it off the outpost
    assert actions["outpost_remove"] == [] and actions["providers_delete"] == ["hecate-app"]
    snap["outpost"]["managed"] = ha.EMBEDDED_MANAGED  # the embedded outpost may be empty
    assert ha.plan(nothing, snap)["outpost_remove"] == ["hecate-app"]
    snap["outpost"] = {"pk": "o", "providers": [1, 99]}  # somebody else's provider stays: the PATCH is fine
    assert ha.plan(nothing, snap)["outpost_remove"] == ["hecate-app"]


def test_docs_list_the_token_permissions_and_the_real_server_variables():
    """docs/authentik.md's permission table is TOKEN_PERMISSIONS, in order; docs/development.md names the
    environment variables the opt-in real-server tests read."""
    import re

    from tests.conftest import REPO

    page = (REPO / "docs" / "authentik.md").read_text()
    assert re.findall(r"^\| `(authentik_\w+\.\w+)` \|", page, re.M) == list(ha.TOKEN_PERMISSIONS)
    source = (REPO / "tests" / "functional" / "test_authentik_real.py").read_text()
    variables = re.findall(r'os\.environ\.get\("(\w+)"', source)
    development = (REPO / "docs" / "development.md").read_text()
    assert variables == ["HECATE_AUTHENTIK_REAL_URL", "HECATE_AUTHENTIK_REAL_TOKEN"]
    assert all(f"`{v}`" in development and f"`{v}`" in page for v in variables)
