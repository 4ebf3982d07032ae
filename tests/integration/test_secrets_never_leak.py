"""Every secret value this test puts in play, searched for in what Salt keeps and shows: the master's and the
minion's log files, the event bus, the job cache (state and runner returns) and the CLI output. Zero hits.

Secrets: the Vault and Consul tokens of the master's ext_pillar config, values the ext_pillar resolves from
Vault and Consul (``vault:``/``consul:`` references), a custom certificate's private key from Vault (every
base64 line of it; the routes state writes it to its file for Caddy), and the API tokens of two backends
whose endpoints do not answer, so their modules' error paths run too. The commands: refresh the pillar, ``state.apply
hecate.routes`` (and ``test=True``), ``salt-run hecate.validate``, ``salt-run hecate.health``.
"""

import json
import os
import pathlib
import time

import pytest

from devstack import host
from devstack.stack import AUTHENTIK_KEY, CONSUL_TOKEN, COTURN_SECRET, VAULT_TOKEN, until
from tests.support.certs import CA, key_fragments

pytestmark = [pytest.mark.integration, pytest.mark.fault]

DB_PASSWORD = "leak-probe-db-password-7f3a9c"
DNS_TOKEN = "leak-probe-hetzner-token-1b8e44d0c2"
AUTHENTIK_TOKEN = "leak-probe-authentik-token-90ce7d"
TLS_CERT, TLS_KEY, _ = CA().issue(["cloud.cybermonkey.dev"])


class Logs:
    """What a log file gains from now on."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def new_text(self):
        if not self.path.exists():
            return ""
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            return handle.read().decode("utf-8", "replace")


def job_cache_since(cachedir, started):
    """Every job cache file the master wrote since ``started`` (returns, loads), as bytes."""
    found = []
    for root, _, names in os.walk(pathlib.Path(cachedir) / "jobs"):
        for name in names:
            path = pathlib.Path(root) / name
            if path.stat().st_mtime >= started - 1:
                found.append((str(path), path.read_bytes()))
    return found


@pytest.fixture
def secret_pillar(synced, pillar_files, edge_tree, salt_call_cli, vault):
    vault.put("secret", "hecate/leakprobe", {"db": DB_PASSWORD, "dns": DNS_TOKEN, "authentik": AUTHENTIK_TOKEN, "tls": TLS_KEY})
    tree = json.loads(json.dumps(edge_tree))
    tls_dir = host.below("etc", "leakprobe-tls", make=False)
    certificates = {"corp": {"certificate": TLS_CERT, "key": "vault:secret/hecate/leakprobe#tls"}}
    tree["reverse_proxy"]["caddy"]["tls"] = {"mode": "internal", "dir": str(tls_dir), "certificates": certificates}
    tree["authentik"]["database"]["password"] = "vault:secret/hecate/leakprobe#db"
    tree["authentik"].update(url="http://127.0.0.1:1", token="vault:secret/hecate/leakprobe#authentik", allow_insecure_endpoint=True)
    tree["dns"] = {"zone": "cybermonkey.dev", "token": "vault:secret/hecate/leakprobe#dns", "endpoint": "http://127.0.0.1:1/v1",
                   "allow_insecure_endpoint": True, "targets": {"ipv4": ["203.0.113.7"]}, "timeout": 2, "max_wait": 2}  # fmt: skip
    pillar_files.write(tree)
    yield tree
    pillar_files.load(edge_tree, salt_call_cli)


def test_no_secret_in_logs_events_returns_or_output(
    secret_pillar, salt_master, salt_minion, salt_call_cli, salt_run_cli, event_listener, vault
):
    secrets = {
        "vault token": VAULT_TOKEN,
        "consul token": CONSUL_TOKEN,
        "coturn secret (vault)": COTURN_SECRET,
        "authentik secret_key (consul)": AUTHENTIK_KEY,
        "database password (vault)": DB_PASSWORD,
        "hetzner token (vault)": DNS_TOKEN,
        "authentik token (vault)": AUTHENTIK_TOKEN,
        **{f"tls key line {i} (vault)": line for i, line in enumerate(key_fragments(TLS_KEY))},
    }
    logs = {
        "master log": Logs(salt_master.config["log_file"]),
        "minion log": Logs(salt_minion.config["log_file"]),
    }
    assert salt_master.config.get("log_level_logfile") in ("debug", "trace", "garbage", "all"), "search a verbose log"
    started = time.time()
    outputs = []
    for run in (
        lambda: salt_call_cli.run("saltutil.refresh_pillar", wait=True),
        lambda: salt_call_cli.run("state.apply", "hecate.routes", test=True),
        lambda: salt_call_cli.run("state.apply", "hecate.routes"),
        lambda: salt_run_cli.run("hecate.validate", minion="hecate-edge"),
        lambda: salt_run_cli.run("hecate.health", "--out=json"),
    ):
        result = run()
        outputs.append(result)
    routes = outputs[2]
    assert routes.returncode == 0, routes  # the state really ran with the secrets in its pillar
    validate = outputs[3]
    assert validate.data["valid"] is True, validate.data
    health = outputs[4].data
    assert health["dns"][0]["state"].startswith("error") and health["authentik"][0]["state"] == "error"  # the error paths ran
    # the secrets were really there to leak: the ext_pillar read them, and the modules got past their token checks
    assert any(r.path == "/v1/secret/data/hecate/leakprobe" for r in vault.requests)
    assert "not set" not in health["dns"][0]["state"] and "vault:" not in health["dns"][0]["state"]
    key_files = list(pathlib.Path(secret_pillar["reverse_proxy"]["caddy"]["tls"]["dir"]).glob("corp-*.key"))
    assert [(p.read_text(), p.stat().st_mode & 0o777) for p in key_files] == [(TLS_KEY.strip() + "\n", 0o600)]  # resolved, delivered
    assert [row["ok"] for row in health["certs"] if row["domain"] == "cloud.cybermonkey.dev"] == [True]

    def last_run_returned():  # the events reach the listener a moment after the CLI answered
        returns = event_listener.get_events([(salt_master.id, "salt/run/*/ret")], after_time=started)
        return any(e.data.get("fun") == "runner.hecate.health" for e in returns)

    until("the last command's return event", last_run_returned, 30)
    haystacks = {name: log.new_text() for name, log in logs.items()}
    for i, result in enumerate(outputs):
        haystacks[f"command {i} output"] = f"{result.stdout}\n{result.stderr}\n{json.dumps(result.data, default=str)}"
    events = event_listener.get_events([(salt_master.id, "*")], after_time=started)
    assert events, "the event bus was listened to"
    haystacks["event bus"] = "\n".join(f"{e.tag} {json.dumps(e.data, default=str)}" for e in events)
    cache = job_cache_since(salt_master.config["cachedir"], started)
    assert cache, "the job cache holds the returns"
    found = []
    for label, secret in secrets.items():
        for where, text in haystacks.items():
            if secret in text:
                found.append(f"{label} in {where}")
        for path, data in cache:
            if secret.encode() in data:
                found.append(f"{label} in job cache {path}")
    assert found == []
    # the search is not vacuous: pillar-derived values (not secret) do show up where secrets did not
    assert "observe.cybermonkey.dev" in haystacks["event bus"] and "observe.cybermonkey.dev" in haystacks["minion log"]
    assert len(haystacks["master log"]) > 1000 and len(haystacks["minion log"]) > 1000  # the logs were written meanwhile
