"""The authentik execution module through Salt's loader against the emulator, on both API versions
(2025.6.1 and 2026.5.6): every request is checked against that version's OpenAPI document."""

import pytest

from devstack.emulators.authentik import SPEC_VERSIONS, AuthentikEmulator
from tests.conftest import assert_no_violations, loaders_for

TOKEN = "ak-emulator-token"


def pillar_for(emu, **extra):
    return {"hecate": {"authentik": {"url": emu.url, "token": TOKEN, "allow_insecure_endpoint": True, **extra}}}


@pytest.fixture(scope="module", params=SPEC_VERSIONS, ids=lambda v: f"authentik-{v}")
def ak(request, short_tmp):
    """One emulator and one loader per API version for this module (loaders cost ~2 s each); tests use
    their own object names. Settings that need a fresh server get their own through make_loaders."""
    with AuthentikEmulator(request.param) as emu:
        loaders = loaders_for(short_tmp / f"akm{request.param}", pillar_for(emu))
        emu.mod = loaders.modules.authentik
        emu.loaders = loaders
        yield emu
        loaders.reset_state()
    assert_no_violations(emu)


def writes_during(emu, fn):
    before = len(emu.writes)
    result = fn()
    return result, len(emu.writes) - before


def test_version_health_whoami(ak):
    version = ak.mod.version()
    assert version["version_current"] == ak.version and version["supported"] is True
    assert version["groups_have_parents"] is (ak.spec_version == "2026.5.6")
    assert ak.mod.health() == {"live": True, "ready": True, "version": ak.version}
    me = ak.mod.whoami()
    assert me["username"] == "akadmin" and me["is_superuser"] is True


def test_flows_by_slug_and_designation(ak):
    flow = ak.mod.flow("default-provider-invalidation-flow")
    assert flow["designation"] == "invalidation"
    assert ak.mod.flow("no-such-flow") is None
    slugs = {f["slug"] for f in ak.mod.flows(designation="authorization")}
    assert slugs == {"default-provider-authorization-implicit-consent", "default-provider-authorization-explicit-consent"}


def test_pagination_is_followed_to_the_end(ak):
    ak.max_page_size = 2
    try:
        for i in range(5):
            ak.mod.group_create(f"page-{i}")
        ak.reset_counts()
        names = [g["name"] for g in ak.mod.groups() if g["name"].startswith("page-")]
        total = len(ak.groups)
        pages = [int(r.arg("page")) for r in ak.requests if r.path.endswith("/core/groups/")]
    finally:
        ak.max_page_size = 100
    assert names == [f"page-{i}" for i in range(5)]
    assert pages == list(range(1, (total + 1) // 2 + 1))


def test_groups_parents_on_every_version(ak):
    parent = ak.mod.group_create("staff-p")
    child = ak.mod.group_create("staff-c", parents=["staff-p"], attributes={"team": "c"})
    assert child["parents"] == [parent["pk"]]
    assert ak.mod.group("staff-c")["parents"] == [parent["pk"]]
    body = next(r.body for r in reversed(ak.writes) if r.method == "POST" and r.path.endswith("/core/groups/"))
    # 2025.12 renamed parent -> parents (a list); the strict checker would flag the wrong one
    assert ("parents" in body) is (ak.spec_version == "2026.5.6") and ("parent" in body) is (ak.spec_version == "2025.6.1")
    updated = ak.mod.group_update("staff-c", parents=[], attributes={"team": "d"})
    assert updated["parents"] == [] and updated["attributes"] == {"team": "d"}
    assert ak.mod.group_delete("staff-c") is True and ak.mod.group_delete("staff-c") is False


def test_proxy_provider_lifecycle_and_server_added_mappings(ak):
    created = ak.mod.proxy_provider_create("mod-prov", "https://prov.example.org")
    body = next(r.body for r in reversed(ak.writes) if r.path.endswith("/providers/proxy/"))
    assert body["mode"] == "forward_single"  # always sent: authentik's default is proxy
    assert created["invalidation_flow"] == ak.flow_by_slug("default-provider-invalidation-flow")["pk"]
    added = {m["managed"] for m in ak.mod.scope_mappings() if m["pk"] in created["property_mappings"]}
    assert len(added) == 5 and "goauthentik.io/providers/proxy/scope-proxy" in added  # the server adds its own
    updated = ak.mod.proxy_provider_update("mod-prov", external_host="https://prov2.example.org", cookie_domain="example.org")
    assert updated["external_host"] == "https://prov2.example.org"
    patch = ak.writes[-1]
    # mode (and internal_host) ride along: authentik validates a PATCH without mode as mode=proxy
    assert patch.method == "PATCH" and patch.body == {
        "external_host": "https://prov2.example.org",
        "cookie_domain": "example.org",
        "mode": "forward_single",
        "internal_host": "",
    }
    assert ak.mod.proxy_provider("mod-prov")["pk"] == created["pk"]
    assert ak.mod.proxy_provider_delete("mod-prov") is True and ak.mod.proxy_provider("mod-prov") is None


def test_field_errors_are_reported_by_field(ak):
    ak.mod.proxy_provider_create("dup-prov", "https://dup.example.org")
    with pytest.raises(Exception) as info:
        ak.mod.proxy_provider_create("dup-prov", "https://dup.example.org")
    assert "HTTP 400" in str(info.value) and "name: provider with this name already exists." in str(info.value)
    with pytest.raises(Exception) as info:
        ak.mod.proxy_provider_create("proxy-mode", "https://x.example.org", mode="proxy")
    assert "internal_host: Internal host cannot be empty" in str(info.value)
    with pytest.raises(Exception, match="no flow with slug 'nope'"):
        ak.mod.proxy_provider_create("bad-flow", "https://x.example.org", authorization_flow="nope")


def test_application_hidden_from_the_list_is_found_by_slug(ak):
    ak.mod.proxy_provider_create("hidden-prov", "https://hidden.example.org")
    ak.mod.application_create("hidden-app", name="Hidden", provider="hidden-prov", meta_publisher="hecate")
    ak.mod.group_create("hidden-group")
    ak.mod.policy_binding_create("hidden-app", group="hidden-group")  # akadmin is not in it
    visible = {a["slug"] for a in ak.mod.applications(full=False)}
    assert "hidden-app" not in visible
    assert "hidden-app" in {a["slug"] for a in ak.mod.applications()}  # superuser_full_list (akadmin is superuser)
    app = ak.mod.application("hidden-app")
    assert app["provider"] == ak.mod.proxy_provider("hidden-prov")["pk"] and app["meta_publisher"] == "hecate"
    assert ak.mod.application("missing-app") is None
    bindings = ak.mod.policy_bindings(application="hidden-app")
    assert [b["group"] for b in bindings] == [ak.mod.group("hidden-group")["pk"]]
    assert ak.mod.policy_binding_update(bindings[0]["pk"], order=3)["order"] == 3
    assert ak.mod.policy_binding_delete(bindings[0]["pk"]) is True
    assert ak.mod.policy_bindings(application="hidden-app") == []
    with pytest.raises(Exception, match="exactly one of group, policy, user"):
        ak.mod.policy_binding_create("hidden-app", group="hidden-group", user=1)
    assert ak.mod.application_delete("hidden-app") is True and ak.mod.application_delete("hidden-app") is False


def test_embedded_outpost_membership_is_read_modify_write(ak):
    outpost = ak.mod.outpost()
    assert outpost["managed"] == "goauthentik.io/outposts/embedded"
    assert ak.mod.outpost("embedded")["pk"] == outpost["pk"] and ak.mod.outpost("no-such-outpost") is None
    a = ak.mod.proxy_provider_create("op-a", "https://op-a.example.org")
    b = ak.mod.proxy_provider_create("op-b", "https://op-b.example.org")
    ak.embedded_outpost()["providers"].append(b["pk"])  # somebody else's provider already there
    result, writes = writes_during(ak, lambda: ak.mod.outpost_update_providers(add=["op-a"]))
    assert writes == 1 and set(result["providers"]) >= {a["pk"], b["pk"]}
    _, writes = writes_during(ak, lambda: ak.mod.outpost_update_providers(add=["op-a"], remove=["op-gone"]))
    assert writes == 0  # nothing to change: nothing sent
    result, _ = writes_during(ak, lambda: ak.mod.outpost_update_providers(remove=["op-a"]))
    assert a["pk"] not in result["providers"] and b["pk"] in result["providers"]


def test_expression_policies(ak):
    ak.mod.expression_policy_create("office-hours", "return True")
    assert ak.mod.expression_policy("office-hours")["expression"] == "return True"
    assert ak.mod.expression_policy_update("office-hours", expression="return False")["expression"] == "return False"
    with pytest.raises(Exception, match="expression: invalid syntax"):
        ak.mod.expression_policy_create("broken", "return (")
    ak.mod.proxy_provider_create("pol-prov", "https://pol.example.org")
    ak.mod.application_create("pol-app", provider="pol-prov")
    binding = ak.mod.policy_binding_create("pol-app", policy="office-hours", order=1)
    assert binding["policy"] == ak.mod.expression_policy("office-hours")["pk"]
    assert ak.mod.expression_policy_delete("office-hours") is True
    assert ak.mod.policy_bindings(application="pol-app") == []  # the binding went with the policy


def test_token_expiry_without_the_key(ak):
    token = ak.mod.token("hecate-api")
    assert token["intent"] == "api" and token["username"] == "akadmin" and token["expiring"] is True
    assert 29 <= token["expires_in_days"] <= 30
    assert "key" not in token and TOKEN not in repr(ak.mod.tokens(user="akadmin"))
    assert ak.mod.token("nope") is None


def test_blueprint_apply_waits_for_the_queue_on_2025_8_and_later(ak):
    name = "Default - Authentication flow"
    before = ak.mod.blueprint(name)["last_applied"]
    ak.reset_counts()
    result = ak.mod.blueprint_apply(name, interval=0.05)
    polls = [r for r in ak.requests if r.method == "GET" and "/managed/blueprints/" in r.path and r.path.count("/") > 5]
    assert result["status"] == "successful" and result["last_applied"] != before
    if ak.spec_version == "2026.5.6":
        assert len(polls) >= 1  # queued apply: the answer is the old instance, status comes later
    else:
        assert polls == []  # synchronous before 2025.8
    with pytest.raises(Exception, match="no blueprint instance"):
        ak.mod.blueprint_apply("nope")


# -- refusals ---------------------------------------------------------------------------------------------
def test_refusals_old_version_then_bad_and_expired_token(ak):
    ak.loaders.context.clear()  # forget the cached version check: the next call checks again
    ak.version = "2024.8.3"
    ak.reset_counts()
    try:
        with pytest.raises(Exception, match=r"2024\.8\.3 is too old: hecate needs 2024\.10"):
            ak.mod.groups()
    finally:
        ak.version = ak.spec_version
    assert [r.path for r in ak.requests] == ["/api/v3/admin/version/"]  # checked first, nothing else sent

    token = next(t for t in ak.tokens.values() if t["key"] == TOKEN)
    expires = token["expires"]
    try:
        token["key"] = "rotated-by-an-admin"  # our token no longer exists on the server
        with pytest.raises(Exception) as info:
            ak.mod.groups()
        text = str(info.value)
        assert "HTTP 403" in text and "invalid or expired" in text and "hecate:authentik:token" in text
        assert TOKEN not in text  # never echoed
        token["key"], token["expires"] = TOKEN, "2020-01-01T00:00:00+00:00"
        with pytest.raises(Exception, match="Token invalid/expired"):
            ak.mod.groups()
    finally:
        token["key"], token["expires"] = TOKEN, expires
    assert ak.mod.whoami()["username"] == "akadmin"


def test_refusals_before_any_request(make_loaders):
    mod = make_loaders({"hecate": {"authentik": {"url": "http://127.0.0.1:9", "token": "x-token"}}}).modules.authentik
    with pytest.raises(Exception, match="is not HTTPS: the token would travel in clear text"):
        mod.version()
    mod = make_loaders({"hecate": {"authentik": {"url": "https://127.0.0.1:9", "token": "vault:secret/hecate/ak#token"}}}).modules.authentik
    with pytest.raises(Exception, match="unresolved vault: reference"):
        mod.version()


def test_a_server_error_on_a_write_says_what_the_405_means(ak):
    """authentik answers a write that fails inside it with 405 and no body (its handler500 is a GET-only
    view): the emulator's binding PATCH without target is such a crash, as on authentik 2025.12.4."""
    group = ak.mod.group_create("mod-crash")
    ak.mod.application_create("mod-crash")
    binding = ak.mod.policy_binding_create("mod-crash", group=group["pk"], order=0)
    client = ak.loaders.context["authentik.client"][1]
    with pytest.raises(Exception) as info:
        client.json("PATCH", f"policies/bindings/{binding['pk']}/", json={"order": 1})
    text = str(info.value)
    assert "HTTP 405 with an empty body: authentik failed on this request" in text and "server log" in text


def test_a_missing_permission_is_named(ak):
    """A token whose user lacks a permission gets authentik's 403 "You do not have permission to perform
    this action."; the error names what the call needs (authentik/rbac/filters.py ObjectFilter: view on
    every read and on a write to one object; authentik/rbac/permissions.py ObjectPermissions: add/change/delete)."""
    robot = ak.add_user("mod-robot", permissions=["authentik_core.view_group"])
    token = next(t for t in ak.tokens.values() if t["key"] == TOKEN)
    admin, token["user"] = token["user"], robot["pk"]
    try:
        assert ak.mod.groups() is not None
        with pytest.raises(Exception) as created:
            ak.mod.group_create("mod-denied")
        with pytest.raises(Exception) as read:
            ak.mod.flow("default-provider-invalidation-flow")
    finally:
        token["user"] = admin
    group = ak.mod.group_create("mod-denied-2")
    token["user"] = robot["pk"]
    try:
        with pytest.raises(Exception) as changed:
            ak.mod.group_update(group["pk"], attributes={"a": 1})
    finally:
        token["user"] = admin
    assert "You do not have permission to perform this action." in str(created.value)
    assert "lacks a permission this call needs: authentik_core.add_group." in str(created.value)
    assert "needs: authentik_flows.view_flow." in str(read.value)
    assert "needs: authentik_core.view_group and authentik_core.change_group." in str(changed.value)
