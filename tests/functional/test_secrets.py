"""hecatelib.secret_refs.resolve against the Vault (KV v2) and Consul (KV) emulators, through hvac and py-consul."""

import json
import time

import consul
import pytest

from devstack.emulators.consul import Consul17, ConsulEmulator
from devstack.emulators.vault import ROOT, VaultEmulator
from hecatelib import secret_refs
from hecatelib.secret_refs import SecretError, resolve
from tests.conftest import assert_no_violations

VAULT_TOKEN = "hvs.root-token-for-tests"
CONSUL_TOKEN = "consul-master-token"
SECRET = "Sup3r-s3cret-value"


@pytest.fixture
def vault():
    emulator = VaultEmulator(tokens={VAULT_TOKEN: ROOT, "hvs.reader": {"policies": ["hecate"], "read": ["secret/data/hecate/*"]}}).start()
    yield emulator
    emulator.stop()
    assert_no_violations(emulator)


@pytest.fixture
def consul_emu():
    emulator = ConsulEmulator(tokens={CONSUL_TOKEN: "write", "reader": {"hecate/": "read"}}).start()
    yield emulator
    emulator.stop()
    assert_no_violations(emulator)


def opts_for(vault=None, consul_emu=None, **vault_extra):
    section = {}
    if vault is not None:
        section["vault"] = {"url": vault.url, "token": VAULT_TOKEN, "retries": 0, "timeout": 2, **vault_extra}
    if consul_emu is not None:
        section["consul"] = {"host": "127.0.0.1", "port": consul_emu.port, "token": CONSUL_TOKEN, "retries": 0}
    return {"hecate_ext_pillar": section}


def test_resolves_vault_and_consul_references_in_a_nested_tree(vault, consul_emu):
    vault.put("secret", "hecate/authentik/token", {"value": SECRET})
    vault.put("secret", "hecate/authentik/db", {"user": "authentik", "password": "db-pass"})
    vault.put("secret", "hecate/hetzner/token", {"token": "hz-token"})  # one key: taken without #key
    consul_emu.kv["hecate/nomad/token"] = {"Key": "hecate/nomad/token", "Value": b"nomad-tok", "Flags": 0,
                                           "LockIndex": 0, "CreateIndex": 5, "ModifyIndex": 5}  # fmt: skip
    consul_emu.kv["hecate/config"] = {"Key": "hecate/config", "Value": json.dumps({"region": "eu"}).encode(),
                                      "Flags": 0, "LockIndex": 0, "CreateIndex": 6, "ModifyIndex": 6}  # fmt: skip
    tree = {
        "authentik": {
            "token": "vault:secret/hecate/authentik/token",
            "database": {"password": "vault:secret/hecate/authentik/db#password"},
        },
        "dns": {"token": "vault:secret/hecate/hetzner/token"},
        "nomad": {"token": "consul:hecate/nomad/token", "region": "consul:hecate/config#region"},
        "reverse_proxy": {"caddy": {"routes": [{"backend": "consul://authentik-server"}]}},
    }
    out = resolve(tree, opts_for(vault, consul_emu))
    assert out["authentik"] == {"token": SECRET, "database": {"password": "db-pass"}}
    assert out["dns"]["token"] == "hz-token"
    assert out["nomad"] == {"token": "nomad-tok", "region": "eu"}
    assert out["reverse_proxy"] == tree["reverse_proxy"]  # a consul:// URL is not a reference
    assert tree["authentik"]["token"].startswith("vault:")  # the input is not modified
    # hvac sent the token in X-Vault-Token, py-consul in X-Consul-Token; every request was a read
    assert {r.headers.get("x-vault-token") for r in vault.requests} == {VAULT_TOKEN}
    assert {r.headers.get("x-consul-token") for r in consul_emu.requests} == {CONSUL_TOKEN}
    assert not vault.writes and not consul_emu.writes


def test_each_secret_path_is_read_once(vault):
    vault.put("secret", "hecate/authentik/db", {"user": "authentik", "password": "db-pass"})
    tree = {"a": "vault:secret/hecate/authentik/db#user", "b": "vault:secret/hecate/authentik/db#password",
            "c": ["vault:secret/hecate/authentik/db#password"]}  # fmt: skip
    out = resolve(tree, opts_for(vault))
    assert out == {"a": "authentik", "b": "db-pass", "c": ["db-pass"]}
    assert [r.path for r in vault.requests] == ["/v1/secret/data/hecate/authentik/db"]


def test_default_key_rules_and_errors_name_path_not_secret(vault):
    vault.put("secret", "hecate/many", {"user": "u", "password": SECRET})
    vault.put("secret", "hecate/withvalue", {"value": SECRET, "other": "x"})
    assert resolve({"k": "vault:secret/hecate/withvalue"}, opts_for(vault)) == {"k": SECRET}
    with pytest.raises(SecretError) as caught:
        resolve({"authentik": {"token": "vault:secret/hecate/many"}, "x": "vault:secret/hecate/many#nope"}, opts_for(vault))
    text = str(caught.value)
    assert "hecate:authentik:token: vault:secret/hecate/many: the secret secret/hecate/many has 2 keys" in text
    assert "vault:secret/hecate/many#password" in text  # a did-you-mean with the first key name
    assert "hecate:x: vault:secret/hecate/many#nope: the secret secret/hecate/many has no key 'nope'" in text
    assert SECRET not in text and VAULT_TOKEN not in text


def test_missing_deleted_and_destroyed_secrets(vault):
    vault.put("secret", "hecate/gone", {"value": SECRET})
    vault.soft_delete("secret", "hecate/gone")
    vault.put("secret", "hecate/wiped", {"value": SECRET})
    vault.mounts["secret"]["hecate/wiped"].versions[1].update(destroyed=True, data=None)
    tree = {"a": "vault:secret/hecate/missing", "b": "vault:secret/hecate/gone", "c": "vault:secret/hecate/wiped",
            "d": "vault:kv/hecate/x"}  # fmt: skip
    with pytest.raises(SecretError) as caught:
        resolve(tree, opts_for(vault))
    problems = dict(caught.value.problems)
    assert "no secret at secret/hecate/missing" in problems["hecate:a"]
    assert "the latest version (1) of secret/hecate/gone is deleted" in problems["hecate:b"]
    assert "version 1 of secret/hecate/wiped is destroyed" in problems["hecate:c"]
    assert "no secret at kv/hecate/x" in problems["hecate:d"] and "route entry not found" in problems["hecate:d"]
    assert SECRET not in str(caught.value)


def test_a_newer_version_is_read_after_an_update(vault):
    vault.put("secret", "hecate/rotating", {"value": "v1-secret"})
    assert resolve({"k": "vault:secret/hecate/rotating"}, opts_for(vault)) == {"k": "v1-secret"}
    vault.put("secret", "hecate/rotating", {"value": "v2-secret"})
    assert resolve({"k": "vault:secret/hecate/rotating"}, opts_for(vault)) == {"k": "v2-secret"}  # no stale cache


def test_bad_token_gets_permission_denied_without_leaking_it(vault):
    vault.put("secret", "hecate/authentik/token", {"value": SECRET})
    opts = opts_for(vault)
    opts["hecate_ext_pillar"]["vault"]["token"] = "hvs.wrong-token"
    with pytest.raises(SecretError) as caught:
        resolve({"authentik": {"token": "vault:secret/hecate/authentik/token"}}, opts)
    text = str(caught.value)
    assert "hecate:authentik:token" in text and "permission denied" in text
    assert "hvs.wrong-token" not in text and SECRET not in text
    assert vault.denied == [("hvs.wrong-token", "GET", "/v1/secret/data/hecate/authentik/token")]


def test_policy_limits_what_a_token_reads(vault):
    vault.put("secret", "hecate/ok", {"value": "fine"})
    vault.put("secret", "other/team", {"value": SECRET})
    opts = opts_for(vault)
    opts["hecate_ext_pillar"]["vault"]["token"] = "hvs.reader"
    assert resolve({"a": "vault:secret/hecate/ok"}, opts) == {"a": "fine"}
    with pytest.raises(SecretError, match=r"hecate:b: .*denied reading secret/data/other/team"):
        resolve({"b": "vault:secret/other/team"}, opts)


def test_vault_down_gives_one_clear_error_per_key_and_stops_asking(vault):
    url = vault.url
    vault.stop()
    opts = {"hecate_ext_pillar": {"vault": {"url": url, "token": VAULT_TOKEN, "retries": 1, "timeout": 2}}}
    tree = {"authentik": {"token": "vault:secret/hecate/authentik/token"}, "dns": {"token": "vault:secret/hecate/dns"}}
    with pytest.raises(SecretError) as caught:
        resolve(tree, opts)
    assert [p for p, _ in caught.value.problems] == ["hecate:authentik:token", "hecate:dns:token"]
    for _, reason in caught.value.problems:
        assert f"Vault at {url} is unreachable (ConnectionError)" in reason
    assert VAULT_TOKEN not in str(caught.value)


def test_sealed_vault_and_server_errors_are_retried_then_reported(vault):
    vault.put("secret", "hecate/x", {"value": "ok"})
    vault.inject(status=500, times=1, path="/v1/secret/data/hecate/x", body={"errors": ["internal error"]})
    opts = opts_for(vault)
    opts["hecate_ext_pillar"]["vault"]["retries"] = 1
    assert resolve({"k": "vault:secret/hecate/x"}, opts) == {"k": "ok"}  # one 500, then the retry succeeds
    assert len(vault.requests) == 2
    vault.sealed = True
    vault.reset_counts()
    with pytest.raises(SecretError) as caught:
        resolve({"k": "vault:secret/hecate/x", "l": "vault:secret/hecate/y"}, opts)
    assert [p for p, _ in caught.value.problems] == ["hecate:k", "hecate:l"]
    assert all("is sealed or not initialised" in reason for _, reason in caught.value.problems)
    assert len(vault.requests) == 2  # the first path and its one retry; a sealed Vault is not asked again


def test_a_slow_vault_times_out_clearly(vault):
    vault.put("secret", "hecate/x", {"value": "ok"})
    vault.inject(delay=1.5, times=5, path="/v1/secret/data/")
    opts = opts_for(vault, timeout=0.5)
    with pytest.raises(SecretError, match="did not answer in time"):
        resolve({"k": "vault:secret/hecate/x"}, opts)


def test_multi_segment_mount_from_config(vault):
    vault.mounts["kv/team"] = {}
    vault.config["kv/team"] = {"max_versions": 0, "cas_required": False, "delete_version_after": "0s"}
    vault.put("kv/team", "hecate/token", {"value": "team-secret"})
    out = resolve({"k": "vault:kv/team/hecate/token"}, opts_for(vault, mounts=["kv/team"]))
    assert out == {"k": "team-secret"}
    assert vault.requests[-1].path == "/v1/kv/team/data/hecate/token"


def test_consul_errors(consul_emu):
    consul_emu.kv["hecate/empty"] = {"Key": "hecate/empty", "Value": None, "Flags": 0, "LockIndex": 0,
                                     "CreateIndex": 3, "ModifyIndex": 3}  # fmt: skip
    consul_emu.kv["hecate/text"] = {"Key": "hecate/text", "Value": b"plain", "Flags": 0, "LockIndex": 0,
                                    "CreateIndex": 4, "ModifyIndex": 4}  # fmt: skip
    tree = {"a": "consul:hecate/missing", "b": "consul:hecate/empty", "c": "consul:hecate/text#field"}
    with pytest.raises(SecretError) as caught:
        resolve(tree, opts_for(consul_emu=consul_emu))
    problems = dict(caught.value.problems)
    assert problems["hecate:a"].endswith(f"no key hecate/missing in Consul at http://127.0.0.1:{consul_emu.port}")
    assert "has no value" in problems["hecate:b"]
    assert "is not JSON" in problems["hecate:c"]
    opts = opts_for(consul_emu=consul_emu)
    opts["hecate_ext_pillar"]["consul"]["token"] = "reader"
    assert resolve({"t": "consul:hecate/text"}, opts) == {"t": "plain"}
    with pytest.raises(SecretError, match=r"hecate:o: consul:other/key: .*denied reading key other/key"):
        resolve({"o": "consul:other/key"}, opts)


def test_consul_down(consul_emu):
    port = consul_emu.port
    consul_emu.stop()
    opts = {"hecate_ext_pillar": {"consul": {"port": port, "token": CONSUL_TOKEN, "retries": 0}}}
    with pytest.raises(SecretError, match=rf"hecate:n: consul:hecate/n: Consul at http://127.0.0.1:{port} is unreachable"):
        resolve({"n": "consul:hecate/n"}, opts)


def test_ready_clients_can_be_passed_in(vault):
    vault.put("secret", "hecate/x", {"value": "ok"})
    client = secret_refs.vault_client({"url": vault.url, "token": VAULT_TOKEN})
    assert resolve({"k": "vault:secret/hecate/x"}, opts={}, vault=client) == {"k": "ok"}


@pytest.mark.parametrize("py_consul", ["installed", "1.7"])
def test_a_stalled_consul_fails_a_reference_within_the_timeout(consul_emu, monkeypatch, py_consul):
    if py_consul == "1.7":  # no timeout of its own: hecate's TimeoutSession is all there is
        monkeypatch.setattr(consul, "Consul", Consul17)
    consul_emu.stall(path="/v1/kv/hecate/n", times=10)
    opts = opts_for(consul_emu=consul_emu)
    opts["hecate_ext_pillar"]["consul"]["timeout"] = 0.5
    started = time.monotonic()
    with pytest.raises(SecretError) as caught:
        resolve({"n": "consul:hecate/n"}, opts)
    assert time.monotonic() - started < 2
    assert (
        dict(caught.value.problems)["hecate:n"]
        == f"consul:hecate/n: Consul at http://127.0.0.1:{consul_emu.port} did not answer in time (timeout)"
    )


def test_consul_server_error_is_retried(consul_emu):
    consul_emu.kv["hecate/n"] = {"Key": "hecate/n", "Value": b"tok", "Flags": 0, "LockIndex": 0,
                                 "CreateIndex": 2, "ModifyIndex": 2}  # fmt: skip
    consul_emu.inject(status=500, times=1, path="/v1/kv/hecate/n", body="No cluster leader")
    opts = opts_for(consul_emu=consul_emu)
    opts["hecate_ext_pillar"]["consul"]["retries"] = 1
    assert resolve({"n": "consul:hecate/n"}, opts) == {"n": "tok"}
    assert len(consul_emu.requests) == 2
    consul_emu.inject(status=500, times=5, path="/v1/kv/hecate/n", body="No cluster leader")
    with pytest.raises(SecretError, match=r"hecate:n: consul:hecate/n: Consul at .* failed: 500 No cluster leader"):
        resolve({"n": "consul:hecate/n"}, opts)


# -- hvac's error shapes (setup.cfg pins hvac>=1.1,<3) -----------------------------------------------
# hvac's RawAdapter._raise_for_error (hvac/adapters.py) parses the body only for a Content-Type of exactly
# application/json: then exc.json is the body and exc.errors its "errors" (a list, maybe empty, or None);
# otherwise exc.json is None and the message is the raw text. VaultError (hvac/exceptions.py) has json/text
# since 1.1.0; utils.raise_for_error documents errors as "list | str".
DELETED = {"data": {"data": None, "metadata": {"version": 3, "deletion_time": "2026-01-01T00:00:00Z", "destroyed": False}}}


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_a_deleted_version_is_named_whatever_content_type_vault_sends(vault, content_type):
    vault.inject(status=404, path="/v1/secret/data/hecate/gone", body=DELETED, headers={"Content-Type": content_type})
    with pytest.raises(SecretError) as caught:
        resolve({"k": "vault:secret/hecate/gone"}, opts_for(vault))
    assert dict(caught.value.problems)["hecate:k"] == (
        "vault:secret/hecate/gone: the latest version (3) of secret/hecate/gone is deleted in Vault; undelete it or write a new version"
    )


@pytest.mark.parametrize(
    ("status", "body", "content_type", "reason"),
    [
        (
            404,
            "404 page not found\n",
            "text/plain",
            "no secret at secret/hecate/x in Vault at {url} (KV v2 mount 'secret', path 'hecate/x')",
        ),
        (404, {"errors": []}, "application/json", "no secret at secret/hecate/x in Vault at {url} (KV v2 mount 'secret', path 'hecate/x')"),
        (
            400,
            {"errors": "one text, not a list"},
            "application/json",
            "Vault at {url} refused reading secret/hecate/x: InvalidRequest: one text, not a list",
        ),
        (
            400,
            {"errors": ["first", "second"]},
            "application/json",
            "Vault at {url} refused reading secret/hecate/x: InvalidRequest: first; second",
        ),
        (
            418,
            {"unexpected": True},
            "application/json",
            'Vault at {url} refused reading secret/hecate/x: UnexpectedError: {{"unexpected": true}}',
        ),
    ],
    ids=["404-text", "404-empty-errors", "400-errors-string", "400-errors-list", "418-json-without-errors"],
)
def test_each_error_shape_is_one_clear_line(vault, status, body, content_type, reason):
    vault.inject(status=status, path="/v1/secret/data/hecate/x", body=body, headers={"Content-Type": content_type})
    with pytest.raises(SecretError) as caught:
        resolve({"k": "vault:secret/hecate/x"}, opts_for(vault))
    assert dict(caught.value.problems)["hecate:k"] == "vault:secret/hecate/x: " + reason.format(url=vault.url)


def test_a_huge_error_page_is_cut_not_echoed(vault):
    page = "<html>" + "x" * 100_000 + "</html>"
    vault.inject(status=502, path="/v1/secret/data/hecate/x", body=page, headers={"Content-Type": "text/html"})
    with pytest.raises(SecretError) as caught:
        resolve({"k": "vault:secret/hecate/x"}, opts_for(vault))
    reason = dict(caught.value.problems)["hecate:k"]
    assert reason.startswith(f"vault:secret/hecate/x: Vault at {vault.url} failed: BadGateway: <html>xxx")
    assert reason.endswith("... (100013 characters)") and len(reason) < 500


def test_an_hvac_error_without_json_or_text_attributes(vault):
    """The shape of hvac before 1.1 (VaultError without ``json``/``text``), and of any error built by hand."""
    import hvac.exceptions

    class Raising:
        url = vault.url

        def __init__(self, exc):
            self.token = VAULT_TOKEN
            self.secrets = self
            self.kv = self
            self.v2 = self
            self.exc = exc

        def read_secret_version(self, **kwargs):
            raise self.exc

    bare = hvac.exceptions.InvalidPath(errors=["no handler for route"])
    del bare.json, bare.text
    deleted = hvac.exceptions.InvalidPath(text=json.dumps(DELETED))  # text only: parsed for the metadata
    del deleted.json
    for exc, expected in (
        (bare, "no secret at secret/hecate/x in Vault at {url} (KV v2 mount 'secret', path 'hecate/x'): no handler for route"),
        (deleted, "the latest version (3) of secret/hecate/x is deleted in Vault; undelete it or write a new version"),
    ):
        with pytest.raises(SecretError) as caught:
            resolve({"k": "vault:secret/hecate/x"}, {}, vault=Raising(exc))
        assert dict(caught.value.problems)["hecate:k"] == "vault:secret/hecate/x: " + expected.format(url=vault.url)
