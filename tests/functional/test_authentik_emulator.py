"""The authentik emulator validates the way authentik's serializers do (DRF partial updates: a PATCH is
validated on the fields it sends, with each serializer's ``validate()``), on both API versions, and its
own answers match the OpenAPI document. Each case names the vendor function it mirrors."""

import pytest
import requests

from devstack.emulators.authentik import SPEC_VERSIONS, AuthentikEmulator
from tests.conftest import assert_no_violations

TOKEN = "ak-emulator-token"


@pytest.fixture(scope="module", params=SPEC_VERSIONS, ids=lambda v: f"authentik-{v}")
def ak(request):
    with AuthentikEmulator(request.param) as emu:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        emu.call = lambda method, path, body=None: session.request(method, f"{emu.url}/api/v3/{path}", json=body, timeout=10)
        yield emu
    assert_no_violations(emu)


def provider(ak, name, **fields):
    flows = {f["slug"]: f["pk"] for f in ak.flows.values()}
    body = {
        "name": name,
        "external_host": f"https://{name}.example.org",
        "mode": "forward_single",
        "authorization_flow": flows["default-provider-authorization-implicit-consent"],
        "invalidation_flow": flows["default-provider-invalidation-flow"],
        **fields,
    }
    answer = ak.call("POST", "providers/proxy/", body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_provider_patch_without_mode_is_validated_as_mode_proxy(ak):
    # authentik/providers/proxy/api.py ProxyProviderSerializer.validate: attrs.get("mode", PROXY)
    created = provider(ak, "em-p1")
    answer = ak.call("PATCH", f"providers/proxy/{created['pk']}/", {"external_host": "https://moved.example.org"})
    assert answer.status_code == 400
    assert answer.json() == {"internal_host": ["Internal host cannot be empty when forward auth is disabled."]}
    assert ak.providers[created["pk"]]["external_host"] == "https://em-p1.example.org"  # nothing written
    answer = ak.call("PATCH", f"providers/proxy/{created['pk']}/", {"external_host": "https://moved.example.org", "mode": "forward_single"})
    assert answer.status_code == 200 and answer.json()["external_host"] == "https://moved.example.org"
    # mode proxy needs internal_host in the same request, even when the stored provider has one
    ak.call("PATCH", f"providers/proxy/{created['pk']}/", {"mode": "proxy", "internal_host": "http://10.0.0.1"}).raise_for_status()
    answer = ak.call("PATCH", f"providers/proxy/{created['pk']}/", {"mode": "proxy"})
    assert answer.status_code == 400 and "internal_host" in answer.json()
    # validate_basic_auth_enabled reads both attributes from the request (initial_data)
    answer = ak.call("PATCH", f"providers/proxy/{created['pk']}/", {"mode": "forward_single", "basic_auth_enabled": True})
    assert answer.json() == {"basic_auth_enabled": ["User and password attributes must be set when basic auth is enabled."]}


def test_binding_patch_must_carry_target_and_one_subject(ak):
    # authentik/policies/api/bindings.py PolicyBindingSerializer.validate
    group = ak.call("POST", "core/groups/", {"name": "em-g"}).json()
    app = ak.call("POST", "core/applications/", {"name": "em-a", "slug": "em-a"}).json()
    binding = ak.call("POST", "policies/bindings/", {"target": app["pk"], "group": group["pk"], "order": 0}).json()
    path = f"policies/bindings/{binding['pk']}/"
    crashed = ak.call("PATCH", path, {"order": 3})  # target is None: AttributeError, a server error on a write
    assert (crashed.status_code, crashed.content) == (405, b"")
    answer = ak.call("PATCH", path, {"order": 3, "target": app["pk"]})
    assert answer.status_code == 400 and answer.json() == {"non_field_errors": ["One of 'policy', 'user', 'group' must be set."]}
    answer = ak.call("PATCH", path, {"order": 3, "target": app["pk"], "group": group["pk"], "user": ak.user_by_name("akadmin")["pk"]})
    assert answer.status_code == 400 and "Only one of" in answer.json()["non_field_errors"][0]
    assert ak.bindings[binding["pk"]]["order"] == 0  # every refusal wrote nothing
    answer = ak.call("PATCH", path, {"order": 3, "target": app["pk"], "group": group["pk"], "policy": None, "user": None})
    assert answer.status_code == 200 and answer.json()["order"] == 3


def test_outpost_providers_may_be_empty_only_on_the_embedded_outpost(ak):
    # authentik/outposts/api/outposts.py OutpostSerializer.validate_providers and validate_name
    created = provider(ak, "em-p2")
    edge = ak.add_outpost("em-edge", [created["pk"]])
    answer = ak.call("PATCH", f"outposts/instances/{edge['pk']}/", {"providers": []})
    assert answer.status_code == 400 and answer.json() == {"providers": ["This list may not be empty."]}
    assert edge["providers"] == [created["pk"]]
    assert ak.call("PATCH", f"outposts/instances/{edge['pk']}/", {"name": "em-edge-2"}).status_code == 200  # providers not sent
    embedded = ak.embedded_outpost()
    assert ak.call("PATCH", f"outposts/instances/{embedded['pk']}/", {"providers": []}).status_code == 200
    answer = ak.call("PATCH", f"outposts/instances/{embedded['pk']}/", {"name": "renamed"})
    assert answer.status_code == 400 and answer.json() == {"name": ["Embedded outpost's name cannot be changed"]}


def test_responses_are_checked_against_the_document(ak):
    before = list(ak.violations)
    created = provider(ak, "em-p3")
    ak.providers[created["pk"]]["mode"] = 42  # a corrupted record: the answer no longer matches the schema
    try:
        ak.call("GET", f"providers/proxy/{created['pk']}/")
        found = [v for v in ak.violations[len(before) :] if v.startswith("response GET /providers/proxy/{id}/ -> 200")]
    finally:
        ak.providers[created["pk"]]["mode"] = "forward_single"
        del ak.violations[len(before) :]
    assert found and "mode" in found[0]


def test_group_cannot_be_its_own_parent(ak):
    # authentik/core/api/groups.py GroupSerializer.validate_parent
    group = ak.call("POST", "core/groups/", {"name": "em-self"}).json()
    field = "parents" if "parents" in group else "parent"
    value = [group["pk"]] if field == "parents" else group["pk"]
    answer = ak.call("PATCH", f"core/groups/{group['pk']}/", {field: value})
    assert answer.status_code == 400 and answer.json() == {field: ["Cannot set group as parent of itself."]}


def test_binding_unique_together_with_drf_null_quirk(ak):
    # authentik/policies/models.py PolicyBinding.Meta.unique_together ("policy", "target", "order"), checked
    # by DRF's UniqueTogetherValidator (rest_framework/validators.py): on update the unsent fields come
    # from the instance and policy=None filters as IS NULL; target always counts as changed; a POST is not
    # checked (policy None skips it). Measured on authentik 2025.12.4 with the same bodies.
    a, b, c = (ak.call("POST", "core/groups/", {"name": f"em-u{n}"}).json()["pk"] for n in "abc")
    app = ak.call("POST", "core/applications/", {"name": "em-u", "slug": "em-u"}).json()["pk"]
    first = ak.call("POST", "policies/bindings/", {"target": app, "group": a, "order": 0}).json()
    second = ak.call("POST", "policies/bindings/", {"target": app, "group": b, "order": 1}).json()
    duplicate = ak.call("POST", "policies/bindings/", {"target": app, "group": c, "order": 0})
    assert duplicate.status_code == 201  # POST: a second group binding at order 0 is accepted
    unique = {"non_field_errors": ["The fields policy, target, order must make a unique set."]}
    moved = ak.call("PATCH", f"policies/bindings/{first['pk']}/", {"order": 1, "target": app, "group": a})
    assert (moved.status_code, moved.json()) == (400, unique)  # order 1 is b's (a group binding: policy NULL)
    alone = ak.call("PATCH", f"policies/bindings/{second['pk']}/", {"enabled": True, "target": app, "group": b})
    assert alone.status_code == 200  # its own order, nobody else's
    shared = ak.call("PATCH", f"policies/bindings/{first['pk']}/", {"enabled": True, "target": app, "group": a})
    assert (shared.status_code, shared.json()) == (400, unique)  # order unchanged, but target "changed" and c shares 0
    to_free = ak.call("PATCH", f"policies/bindings/{first['pk']}/", {"order": 7, "target": app, "group": a})
    assert to_free.status_code == 200 and ak.bindings[first["pk"]]["order"] == 7
    # the unique check runs before validate(): a colliding PATCH without target is a 400, not the crash
    collide = ak.call("PATCH", f"policies/bindings/{second['pk']}/", {"order": 0, "group": b})
    assert (collide.status_code, collide.json()) == (400, unique)


def test_bindings_of_a_target_that_does_not_exist(ak):
    # authentik/policies/api/bindings.py PolicyBindingFilter: target / target_in are model choice filters
    gone = "11111111-1111-1111-1111-111111111111"
    answer = ak.call("GET", f"policies/bindings/?target={gone}")
    assert (answer.status_code, answer.json()) == (
        400,
        {"target": ["Select a valid choice. That choice is not one of the available choices."]},
    )
    answer = ak.call("GET", f"policies/bindings/?target_in={gone}")
    assert answer.status_code == 400
    assert answer.json() == {"target_in": [f"Select a valid choice. {gone} is not one of the available choices."]}


def test_proxy_providers_get_exactly_the_five_managed_scope_mappings(ak):
    # authentik/providers/proxy/models.py ProxyProvider.set_oauth_defaults, on every create and update
    # (providers/proxy/api.py ProxyProviderSerializer.create/update)
    managed = {s["pk"]: s["managed"] for s in ak.scopes.values()}
    proxy_scopes = {
        "goauthentik.io/providers/oauth2/scope-openid",
        "goauthentik.io/providers/oauth2/scope-profile",
        "goauthentik.io/providers/oauth2/scope-email",
        "goauthentik.io/providers/oauth2/scope-entitlements",
        "goauthentik.io/providers/proxy/scope-proxy",
    }
    created = provider(ak, "em-p5")
    assert {managed[pk] for pk in created["property_mappings"]} == proxy_scopes
    assert len(managed) == 7  # offline_access and authentik_api exist but are not added
    fewer = [pk for pk in created["property_mappings"] if managed[pk] != "goauthentik.io/providers/oauth2/scope-email"]
    answer = ak.call("PATCH", f"providers/proxy/{created['pk']}/", {"property_mappings": fewer, "mode": "forward_single"})
    assert {managed[pk] for pk in answer.json()["property_mappings"]} == proxy_scopes  # the PATCH is undone


@pytest.mark.parametrize(("version", "status"), [("2025.10.4", 400), ("2025.12.4", 201)])
def test_application_slug_length_by_version(version, status):
    # authentik/core/models.py Application.slug: SlugField (max_length 50) up to 2025.10, TextField from 2025.12
    with AuthentikEmulator(SPEC_VERSIONS[-1], version=version) as emu:
        answer = requests.post(
            f"{emu.url}/api/v3/core/applications/",
            json={"name": "long", "slug": "s" * 51},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert answer.status_code == status
        if status == 400:
            assert answer.json() == {"slug": ["Ensure this field has no more than 50 characters."]}
    assert_no_violations(emu)


def test_token_permissions(ak):
    # authentik/rbac/filters.py ObjectFilter (view, on lists and objects), authentik/rbac/permissions.py
    # ObjectPermissions (add/change/delete); a superuser has every permission
    robot = ak.add_user("em-perm-robot", permissions=["authentik_core.view_group", "authentik_core.add_group"])
    ak.add_token("em-perm", "em-perm-key", user=robot["pk"])
    call = lambda method, path, body=None: requests.request(  # noqa: E731
        method, f"{ak.url}/api/v3/{path}", json=body, headers={"Authorization": "Bearer em-perm-key"}, timeout=10
    )
    denied = {"detail": "You do not have permission to perform this action."}
    assert call("GET", "core/groups/").status_code == 200
    created = call("POST", "core/groups/", {"name": "em-perm-g"})
    assert created.status_code == 201
    answer = call("PATCH", f"core/groups/{created.json()['pk']}/", {"attributes": {}})
    assert (answer.status_code, answer.json()) == (403, denied)
    answer = call("GET", "flows/instances/default-provider-invalidation-flow/")
    assert (answer.status_code, answer.json()) == (403, denied)
    assert call("GET", "core/applications/").status_code == 200  # the list filters by policy, not permission
    assert call("GET", "core/users/me/").status_code == 200
    robot["permissions"].add("authentik_core.change_group")
    assert call("PATCH", f"core/groups/{created.json()['pk']}/", {"attributes": {}}).status_code == 200
