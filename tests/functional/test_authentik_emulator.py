"""The authentik emulator validates the way authentik's serializers do (DRF partial updates: a PATCH is
validated on the fields it sends, with each serializer's ``validate()``), on both API versions, and its
own answers match the OpenAPI document. Each case names the vendor function it mirrors."""

import pytest
import requests

from tests.conftest import assert_no_violations
from tests.emulators.authentik import SPEC_VERSIONS, AuthentikEmulator

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
    assert ak.call("PATCH", path, {"order": 3}).status_code == 500  # target is None: AttributeError
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
