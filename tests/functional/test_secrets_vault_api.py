"""The Vault emulator's contract, through hvac 2.x (what hecatelib.secret_refs relies on) and through raw requests
for what hvac would never send (those must land in ``violations``)."""

import hvac
import hvac.exceptions
import pytest
import requests

from devstack.emulators.vault import ROOT, VaultEmulator

TOKEN = "hvs.root"


@pytest.fixture
def vault():
    emulator = VaultEmulator(tokens={TOKEN: ROOT, "hvs.app": {"policies": ["app"], "read": ["secret/data/app/*"],
                                                             "write": ["secret/data/app/rw/*"]}}).start()  # fmt: skip
    yield emulator
    emulator.stop()


@pytest.fixture
def kv(vault):
    return hvac.Client(url=vault.url, token=TOKEN).secrets.kv.v2


def test_versions_cas_and_metadata(vault, kv):
    assert kv.create_or_update_secret("app/db", {"password": "one"})["data"]["version"] == 1
    assert kv.create_or_update_secret("app/db", {"password": "two"}, cas=1)["data"]["version"] == 2
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set parameter did not match"):
        kv.create_or_update_secret("app/db", {"password": "three"}, cas=1)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="did not match"):
        kv.create_or_update_secret("app/new", {"x": "y"}, cas=1)  # cas on a missing secret
    latest = kv.read_secret_version("app/db", raise_on_deleted_version=True)["data"]
    assert latest["data"] == {"password": "two"} and latest["metadata"]["version"] == 2
    assert kv.read_secret_version("app/db", version=1, raise_on_deleted_version=True)["data"]["data"] == {"password": "one"}
    meta = kv.read_secret_metadata("app/db")["data"]
    assert (meta["current_version"], meta["oldest_version"], sorted(meta["versions"])) == (2, 1, ["1", "2"])
    kv.update_metadata("app/db", cas_required=True)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set parameter required"):
        kv.create_or_update_secret("app/db", {"password": "three"})
    kv.configure(max_versions=2)
    kv.create_or_update_secret("app/db", {"password": "three"}, cas=2)
    assert sorted(kv.read_secret_metadata("app/db")["data"]["versions"]) == ["2", "3"]  # max_versions prunes
    kv.create_or_update_secret("app/sub/x", {"v": "1"})
    assert kv.list_secrets("app")["data"]["keys"] == ["db", "sub/"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.list_secrets("nothing-here")
    kv.delete_metadata_and_all_versions("app/db")
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_version("app/db", raise_on_deleted_version=True)
    assert not vault.violations


def test_deleted_and_destroyed_versions_as_hvac_reads_them(vault, kv):
    kv.create_or_update_secret("app/t", {"value": "v1"})
    kv.create_or_update_secret("app/t", {"value": "v2"})
    kv.delete_latest_version_of_secret("app/t")
    with pytest.raises(hvac.exceptions.InvalidPath) as caught:
        kv.read_secret_version("app/t", raise_on_deleted_version=True)
    assert caught.value.json["data"]["metadata"]["deletion_time"] != ""
    soft = kv.read_secret_version("app/t", raise_on_deleted_version=False)  # hvac returns the metadata instead
    assert soft["data"]["data"] is None and soft["data"]["metadata"]["version"] == 2
    kv.undelete_secret_versions("app/t", [2])
    assert kv.read_secret_version("app/t", raise_on_deleted_version=True)["data"]["data"] == {"value": "v2"}
    kv.delete_secret_versions("app/t", [1])
    kv.destroy_secret_versions("app/t", [2])
    with pytest.raises(hvac.exceptions.InvalidPath) as caught:
        kv.read_secret_version("app/t", raise_on_deleted_version=True)
    assert caught.value.json["data"]["metadata"]["destroyed"] is True
    kv.undelete_secret_versions("app/t", [2])  # a destroyed version cannot come back
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_version("app/t", raise_on_deleted_version=True)
    assert not vault.violations


def test_token_auth_health_and_lookup(vault):
    app = hvac.Client(url=vault.url, token="hvs.app")
    vault.put("secret", "app/ro", {"value": "r"})
    vault.put("secret", "other/x", {"value": "o"})
    assert app.is_authenticated() and app.auth.token.lookup_self()["data"]["policies"] == ["app"]
    assert app.secrets.kv.v2.read_secret_version("app/ro", raise_on_deleted_version=True)["data"]["data"] == {"value": "r"}
    app.secrets.kv.v2.create_or_update_secret("app/rw/x", {"value": "w"})
    with pytest.raises(hvac.exceptions.Forbidden, match="permission denied"):
        app.secrets.kv.v2.create_or_update_secret("app/ro", {"value": "nope"})
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v2.read_secret_version("other/x", raise_on_deleted_version=True)
    assert not hvac.Client(url=vault.url, token="hvs.bogus").is_authenticated()
    assert hvac.Client(url=vault.url).sys.read_health_status(method="GET")["sealed"] is False  # no token needed
    vault.sealed = True
    assert hvac.Client(url=vault.url).sys.read_health_status().status_code == 503
    with pytest.raises(hvac.exceptions.VaultDown, match="Vault is sealed"):
        app.secrets.kv.v2.read_secret_version("app/ro", raise_on_deleted_version=True)
    vault.sealed, vault.standby = False, True
    assert hvac.Client(url=vault.url).sys.read_health_status().status_code == 429
    assert hvac.Client(url=vault.url).sys.read_health_status(standby_ok=True, method="GET")["standby"] is True
    assert [d[0] for d in vault.denied] == ["hvs.app", "hvs.app", "hvs.bogus"]
    assert not vault.violations


def test_requests_hvac_never_sends_are_violations(vault):
    base, headers = vault.url, {"X-Vault-Token": TOKEN}
    vault.put("secret", "app/x", {"value": "1"})
    assert requests.get(f"{base}/v1/secret/app/x", headers=headers, timeout=5).status_code == 400  # a KV v1 path
    assert requests.post(f"{base}/v1/secret/data/app/x", json={"value": "1"}, headers=headers, timeout=5).status_code == 400
    assert requests.post(f"{base}/v1/secret/data/app/x", json={"data": "1"}, headers=headers, timeout=5).status_code == 400
    assert requests.post(f"{base}/v1/secret/data/app/x", json={"data": {}, "options": {"cas": "1"}}, headers=headers,
                         timeout=5).status_code == 400  # fmt: skip
    assert requests.get(f"{base}/v1/secret/data/app/x?version=latest", headers=headers, timeout=5).status_code == 400
    assert requests.post(f"{base}/v1/secret/delete/app/x", json={"versions": []}, headers=headers, timeout=5).status_code == 400
    assert requests.patch(f"{base}/v1/secret/data/app/x", json={"data": {}}, headers=headers, timeout=5).status_code == 400
    assert requests.get(f"{base}/v1/secret/data/", headers=headers, timeout=5).status_code == 400
    assert len(vault.violations) == 9  # the second request breaks two rules: no 'data', unknown 'value'
    vault.violations.clear()
    assert requests.get(f"{base}/v1/nosuchmount/data/x", headers=headers, timeout=5).status_code == 404  # a 404, not a bug
    assert requests.get(f"{base}/v1/secret/data/app/x", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).ok
    assert not vault.violations
