"""vault:/consul: reference syntax and discovery (pure, no I/O)."""

import pytest

from hecatelib import consul, secret_refs
from hecatelib.secret_refs import Reference, find_references, is_reference, parse_reference, resolve


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vault:secret/hecate/authentik/token", Reference("vault", "secret/hecate/authentik/token")),
        ("vault:secret/hecate/db#password", Reference("vault", "secret/hecate/db", "password")),
        ("consul:hecate/nomad/token", Reference("consul", "hecate/nomad/token")),
        ("consul:hecate/config#nomad_token", Reference("consul", "hecate/config", "nomad_token")),
    ],
)
def test_parse_good_references(text, expected):
    assert parse_reference(text) == expected
    assert parse_reference(text).text == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("vault:secret", "needs <mount>/<path>"),
        ("vault:/secret/x", "needs <mount>/<path>"),
        ("vault:secret/../sys/x", "needs <mount>/<path>"),
        ("vault:secret/x#", "invalid #key"),
        ("vault:secret/x#a b", "invalid #key"),
        ("consul:", "needs a KV key"),
        ("consul:/abs/key", "needs a KV key"),
        ("consul:has space", "needs a KV key"),
    ],
)
def test_parse_bad_references(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_reference(text)


@pytest.mark.parametrize("text", ["consul://authentik-server", "vault://x", "plain", "VAULT:secret/x", "", None, 5])
def test_urls_and_plain_values_are_not_references(text):
    assert not is_reference(text)


def test_find_references_names_key_paths_in_document_order():
    tree = {
        "authentik": {"token": "vault:secret/hecate/authentik/token", "url": "https://auth.example.org"},
        "reverse_proxy": {"caddy": {"routes": [{"backend": "consul://app"}, {"backend": "10.0.0.1:80"}]}},
        "dns": {"zones": [{"token": "consul:hecate/dns/token"}]},
    }
    assert find_references(tree) == [
        ("hecate:authentik:token", "vault:secret/hecate/authentik/token"),
        ("hecate:dns:zones[0]:token", "consul:hecate/dns/token"),
    ]


def test_tree_without_references_needs_no_backend_and_is_copied():
    tree = {"global": {"domain": "example.org"}, "routes": [{"backend": "consul://app"}]}
    out = resolve(tree, opts={})  # no hecate_ext_pillar at all: nothing to resolve, no error
    assert out == tree and out is not tree and out["routes"] is not tree["routes"]


def test_missing_configuration_is_reported_per_key_path(monkeypatch):
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    with pytest.raises(secret_refs.SecretError) as caught:
        resolve({"dns": {"token": "vault:secret/hecate/dns/token"}, "bad": "vault:nope"}, opts={})
    assert caught.value.problems[0][0] == "hecate:dns:token"
    assert "set hecate_ext_pillar:vault:url" in caught.value.problems[0][1]
    assert caught.value.problems[1][0] == "hecate:bad"
    assert "needs <mount>/<path>" in str(caught.value)


def test_plain_http_to_a_remote_vault_is_refused():
    with pytest.raises(secret_refs.CommandExecutionError, match="is not HTTPS: the token would travel in clear text"):
        secret_refs.vault_client({"url": "http://vault.example.org:8200", "token": "t0ken"})
    client = secret_refs.vault_client({"url": "http://vault.example.org:8200", "token": "t0ken", "allow_insecure_endpoint": True})
    assert client.url == "http://vault.example.org:8200"


def test_consul_client_from_address_and_token_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    client = consul.client({"address": "https://consul.example.org:8501", "token_file": str(token_file)})
    assert (client.http.host, client.http.port, client.http.scheme) == ("consul.example.org", 8501, "https")
    assert client.token == "from-file"  # the configured token wins over $CONSUL_HTTP_TOKEN
    assert consul.client({}).token == "from-env"
    assert consul.client({"address": "https://consul.example.org"}).http.port == 8501
    assert consul.client({"address": "127.0.0.1"}).http.base_uri == "http://127.0.0.1:8500"
