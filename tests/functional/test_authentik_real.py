"""Opt-in: hecate against a real authentik, run only when HECATE_AUTHENTIK_REAL_URL (its base URL, e.g.
http://127.0.0.1:9000) and HECATE_AUTHENTIK_REAL_TOKEN (a superuser's API token) are set; CI has no
authentik, so these are skipped there and the emulator carries every rule they taught (docs/development.md).
Build one with ../shared/tools/authentik-real/ (authentik 2025.12.4 from its own source).

hecate talks to the server through a recording proxy, so requests are counted as with the emulator; every
converge runs ``protected_routes`` under Salt's state engine (state.sls of an sls with a requisite). Each
test uses a random ``name_prefix`` and removes what it made, so the tests re-run against one server."""

import json
import os
import secrets

import pytest
import requests

from hecatelib.authentik.objects import TOKEN_PERMISSIONS
from tests.conftest import loaders_for
from tests.support.authentik_scenarios import GROUP_CHANGES, SLS, route, tree
from tests.support.recording_proxy import RecordingProxy

REAL_URL = os.environ.get("HECATE_AUTHENTIK_REAL_URL", "").rstrip("/")
REAL_TOKEN = os.environ.get("HECATE_AUTHENTIK_REAL_TOKEN", "")
pytestmark = pytest.mark.skipif(
    not (REAL_URL and REAL_TOKEN), reason="opt-in: set HECATE_AUTHENTIK_REAL_URL and HECATE_AUTHENTIK_REAL_TOKEN"
)


class Admin:
    """The superuser's API, straight to the server (not counted): set-up, hand-made drift, checks."""

    def __init__(self):
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {REAL_TOKEN}"

    def call(self, method, path, body=None, params=None, ok=(200, 201, 204)):
        answer = self.session.request(method, f"{REAL_URL}/api/v3/{path}", json=body, params=params, timeout=60)
        assert answer.status_code in ok, f"{method} {path}: {answer.status_code} {answer.text[:300]}"
        return answer.json() if answer.content else None

    def all(self, path, **params):
        return self.call("GET", path, params={"page_size": 100, **params})["results"]

    def app(self, slug):
        return self.call("GET", f"core/applications/{slug}/", ok=(200, 404))

    def group(self, name):
        return next((g for g in self.all("core/groups/", name=name, include_users="false") if g["name"] == name), None)

    def bindings(self, slug):
        app = self.app(slug)
        return self.all("policies/bindings/", target=app["pk"]) if app and "pk" in app else []

    def bound(self, slug):
        """Group names bound enabled and not negated, and a count of every other binding."""
        names = {g["pk"]: g["name"] for g in self.all("core/groups/", include_users="false")}
        plain = [b for b in self.bindings(slug) if b["group"] and b["enabled"] and not b["negate"] and b["policy"] is None]
        return sorted(names[b["group"]] for b in plain), len(self.bindings(slug)) - len(plain)


@pytest.fixture(scope="module")
def real(short_tmp):
    with RecordingProxy(REAL_URL) as proxy:
        roots = short_tmp / "real-roots"
        roots.mkdir(exist_ok=True)
        (roots / "protect.sls").write_text(SLS)
        loaders = loaders_for(short_tmp / "real", {}, extra={"file_roots": {"base": [str(roots)]}})
        proxy.loaders, proxy.pillar, proxy.admin = loaders, loaders.opts["pillar"], Admin()
        yield proxy
        loaders.reset_state()


def converge(real, hecate, test=False):
    """state.sls protect with ``hecate`` as the pillar; returns (the state's result, reads, writes)."""
    real.pillar["hecate"] = hecate
    real.loaders.context.clear()  # a new minion run: the version is checked again, like a salt-call
    real.reset_counts()
    ret = {r.id: r for r in real.loaders.modules.state.sls("protect", test=test)}
    assert ret["authentik_ready"].result is True
    return ret["protect"], len(real.reads), len(real.writes)


def prefix():
    return f"rt{secrets.token_hex(3)}-"


def cleanup(real, pre):
    """Everything hecate made with prefix ``pre`` goes (and the groups, hecate's or not)."""
    result, _, _ = converge(real, tree(real.url, REAL_TOKEN, [], pre, prune_groups=True))
    assert result.result is True, result.comment
    for group in real.admin.all("core/groups/", include_users="false", search=pre):
        if group["name"].startswith(pre):
            real.admin.call("DELETE", f"core/groups/{group['pk']}/")


def test_group_changes_converge_in_one_run(real):
    """Every change of issue 21 from a converged route: one run, then a re-run with zero writes, and the
    server holds exactly the pillar's groups."""
    pre = prefix()
    report = {}
    try:
        for n, (what, before, after) in enumerate(GROUP_CHANGES):
            service = f"g{n}"
            slug = f"{pre}{service}"
            hecate = tree(real.url, REAL_TOKEN, [route(service, [pre + g for g in before])], pre)
            assert converge(real, hecate)[0].result is True
            hecate["reverse_proxy"]["caddy"]["routes"][0]["auth"] = {"groups": [pre + g for g in after]} if after else True
            result, reads, writes = converge(real, hecate)
            assert result.result is True, f"{what}: {result.comment}"
            again, rereads, rewrites = converge(real, hecate)
            assert (again.result, again.changes, rewrites) == (True, {}, 0), f"{what}: {again.comment}"
            assert real.admin.bound(slug) == (sorted(pre + g for g in after), 0), what
            report[what] = {"change": (reads, writes), "re-run": (rereads, rewrites)}
        print("\ngroup changes on the real server:", json.dumps(report))
    finally:
        cleanup(real, pre)


def test_drift_repair_whatever_orders_hand_made_bindings_hold(real):
    """A disabled binding of hecate's, and hand-made bindings on its order: a user's, another group's, a
    duplicate of hecate's other group (made with POST, which authentik does not check); plus a group
    added in the pillar. One run converges, the re-run sends nothing (the emulator's
    test_drift_repair_whatever_orders_hand_made_bindings_hold is the same scenario)."""
    pre = prefix()
    try:
        hecate = tree(real.url, REAL_TOKEN, [route("d1", [f"{pre}a", f"{pre}b"])], pre)
        assert converge(real, hecate)[0].result is True
        admin, slug = real.admin, f"{pre}d1"
        app = admin.app(slug)["pk"]
        first, second = sorted(admin.bindings(slug), key=lambda b: b["order"])
        admin.call("PATCH", f"policies/bindings/{first['pk']}/", {"enabled": False, "target": app, "group": first["group"]})
        other = admin.call("POST", "core/groups/", {"name": f"{pre}hand"})
        me = admin.call("GET", "core/users/me/")["user"]["pk"]
        for body in ({"group": other["pk"]}, {"user": me}, {"group": second["group"]}):
            admin.call("POST", "policies/bindings/", {"target": app, "order": first["order"], **body})
        hecate["reverse_proxy"]["caddy"]["routes"][0]["auth"]["groups"].append(f"{pre}c")
        result, _, writes = converge(real, hecate)
        assert result.result is True, result.comment
        # group c and its binding created; the user's, the other group's and the spare duplicate deleted;
        # the disabled binding enabled on a free order
        assert writes == 6
        assert admin.bound(slug) == ([f"{pre}a", f"{pre}b", f"{pre}c"], 0)
        again, _, rewrites = converge(real, hecate)
        assert (again.result, rewrites) == (True, 0), again.comment
    finally:
        cleanup(real, pre)


def lifecycle(real, token, pre, count=1):
    """test=True, create, re-run, change the groups, repair drift, remove a route, prune the groups; returns
    ``{step: (reads, writes)}``. Stops at the first failed state with AssertionError(comment)."""
    counts = {}

    def step(name, hecate, test=False, zero=False):
        result, reads, writes = converge(real, hecate, test=test)
        if result.result is False:
            raise AssertionError(f"{name}: {result.comment}")
        if zero:
            assert (result.changes, writes) == ({}, 0), f"{name}: {result.changes}"
        counts[name] = (reads, writes)

    routes = [route(f"l{i}", [f"{pre}team"]) for i in range(count)] + [route("open")]
    hecate = tree(real.url, token, routes, pre)
    step("test=True before anything", hecate, test=True)
    step("first converge", hecate)
    step("re-run", hecate, zero=True)
    step("test=True, converged", hecate, test=True, zero=True)
    for r in routes[:count]:
        r["auth"] = {"groups": [f"{pre}crew"]}  # one binding created, one deleted per route
    step("change every route's groups", hecate)
    step("re-run after the change", hecate, zero=True)
    admin, slug = real.admin, f"{pre}l0"
    provider = admin.all("providers/proxy/", name__iexact=slug)[0]
    admin.call("PATCH", f"providers/proxy/{provider['pk']}/", {"external_host": "https://moved.example.org", "mode": "forward_single"})
    admin.call("PATCH", f"core/applications/{slug}/", {"policy_engine_mode": "all"})
    binding = admin.bindings(slug)[0]
    admin.call("PATCH", f"policies/bindings/{binding['pk']}/", {"enabled": False, "target": binding["target"], "group": binding["group"]})
    embedded = admin.all("outposts/instances/", managed__iexact="goauthentik.io/outposts/embedded")[0]
    kept = [p for p in embedded["providers"] if p != provider["pk"]]
    admin.call("PATCH", f"outposts/instances/{embedded['pk']}/", {"providers": kept})
    step("drift repair", hecate)
    step("re-run after the repair", hecate, zero=True)
    hecate["reverse_proxy"]["caddy"]["routes"] = routes[:count]
    step("remove a route", hecate)
    step("re-run after the removal", hecate, zero=True)
    hecate = tree(real.url, token, [], pre, prune_groups=True)
    step("remove every route, prune the groups", hecate)
    step("re-run after the prune", hecate, zero=True)
    return counts


@pytest.mark.parametrize("count", [1, 10])
def test_lifecycle_request_counts(real, count):
    pre = prefix()
    try:
        counts = lifecycle(real, REAL_TOKEN, pre, count)
    finally:
        cleanup(real, pre)
    # the group; per protected route a provider, an application, a binding; the open route's two; the outpost
    assert counts["first converge"][1] == 3 * count + 4
    print(f"\nlifecycle, {count} protected route(s) + 1 open, reads/writes:", json.dumps(counts))


class Robot:
    """A service account with one role holding ``permissions`` (global), and its API token."""

    def __init__(self, admin, name, permissions):
        self.admin = admin
        self.user = admin.call("POST", "core/users/", {"username": name, "name": name, "type": "service_account"})
        self.role = admin.call("POST", "rbac/roles/", {"name": name})
        self.assign(permissions)
        admin.call("POST", f"rbac/roles/{self.role['pk']}/add_user/", {"pk": self.user["pk"]})
        admin.call("POST", "core/tokens/", {"identifier": name, "user": self.user["pk"], "intent": "api", "expiring": False})
        self.token = admin.call("GET", f"core/tokens/{name}/view_key/")["key"]
        self.name = name

    def assign(self, permissions):
        self.admin.call("POST", f"rbac/permissions/assigned_by_roles/{self.role['pk']}/assign/", {"permissions": list(permissions)})

    def unassign(self, permissions):
        self.admin.call("PATCH", f"rbac/permissions/assigned_by_roles/{self.role['pk']}/unassign/", {"permissions": list(permissions)})

    def delete(self):
        self.admin.call("DELETE", f"core/tokens/{self.name}/")
        self.admin.call("DELETE", f"rbac/roles/{self.role['pk']}/")
        self.admin.call("DELETE", f"core/users/{self.user['pk']}/")


def test_least_privilege_token(real):
    """A token whose user holds exactly TOKEN_PERMISSIONS goes through the whole lifecycle; without any one
    of them the run fails, and the error names that permission."""
    pre = prefix()
    robot = Robot(real.admin, f"{pre}robot", TOKEN_PERMISSIONS)
    try:
        counts = lifecycle(real, robot.token, pre)
        print("\nleast-privilege lifecycle, reads/writes:", json.dumps(counts))
        for permission in TOKEN_PERMISSIONS:
            robot.unassign([permission])
            try:
                with pytest.raises(AssertionError) as failed:
                    lifecycle(real, robot.token, pre)
                assert permission in str(failed.value), (permission, str(failed.value))
            finally:
                robot.assign([permission])
                cleanup(real, pre)
    finally:
        robot.delete()
        cleanup(real, pre)
