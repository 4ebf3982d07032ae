"""The pure half of the terraform stage: pillar schema, HCL rendering (parsed back with python-hcl2), the
plan summary and gate, outputs, and the execution module's ``__virtual__``."""

import copy
import importlib.util
import json

import hcl2
import pytest

from devstack.pillars import seed_tree
from hecatelib import consul, hcl
from hecatelib.spec import PillarError, Report
from hecatelib.terraform import render as tf
from tests.conftest import REPO

TEMPLATES = tf.load_templates(REPO / "salt" / "hecate" / "terraform")


def plain(node):
    """python-hcl2 keeps HCL's quotes and block markers; strip both for comparisons."""
    if isinstance(node, dict):
        return {plain(k): plain(v) for k, v in node.items() if k != "__is_block__"}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return json.loads(node.replace("$${", "${").replace("%%{", "%{"))
    return node


def tree_with(section):
    tree = seed_tree()
    tree["terraform"] = section
    tree["terraform"] = tf.settings(tree)
    return tree


def rendered(section):
    files = tf.render(tree_with(section), TEMPLATES)
    return {name: plain(hcl2.loads(text)) for name, text in files.items()}


BASE = {"workdir": "/var/lib/hecate/terraform/production", "token": "vault:secret/hecate/hetzner/cloud_token"}


def test_templates_exist():
    assert sorted(TEMPLATES) == sorted(tf.TEMPLATES)


def test_seed_pillar_renders_network_firewall_servers_outputs():
    section = {**BASE, "hcloud": {"ssh_keys": ["ops"], "labels": {"team": "platform"},
                                  "edge_nodes": [{"name": "edge-1", "private_ip": "10.0.1.10"},
                                                 {"name": "edge-2", "server_type": "cpx31", "location": "fsn1"}],
                                  "firewall": {"ssh_sources": ["203.0.113.0/24"]}}}  # fmt: skip
    files = rendered(section)
    assert sorted(files) == ["hecate_firewall.tf", "hecate_network.tf", "hecate_outputs.tf", "hecate_servers.tf",
                             "hecate_versions.tf"]  # fmt: skip
    versions = files["hecate_versions.tf"]
    assert versions["terraform"][0]["required_providers"][0]["hcloud"] == {"source": "hetznercloud/hcloud",
                                                                          "version": "~> 1.52"}  # fmt: skip
    assert versions["variable"][0]["hcloud_token"]["sensitive"] is True
    assert versions["provider"][0]["hcloud"]["token"] == "${var.hcloud_token}"
    network = files["hecate_network.tf"]["resource"]
    labels = {"managed-by": "hecate", "environment": "production", "team": "platform"}
    assert network[0]["hcloud_network"]["hecate"] == {"name": "hecate-production", "ip_range": "10.0.0.0/16", "labels": labels}
    assert network[1]["hcloud_network_subnet"]["edge"]["network_zone"] == "eu-central"  # nbg1 from hecate:global
    assert network[1]["hcloud_network_subnet"]["edge"]["ip_range"] == "10.0.1.0/24"
    nodes = files["hecate_servers.tf"]["locals"][0]["hecate_edge_nodes"]
    assert nodes["edge-1"] == {"server_type": "cx22", "image": "debian-12", "location": "nbg1", "private_ip": "10.0.1.10",
                               "labels": {**labels, "role": "edge"}}  # fmt: skip
    assert nodes["edge-2"]["server_type"] == "cpx31" and nodes["edge-2"]["location"] == "fsn1"
    assert nodes["edge-2"]["private_ip"] is None  # Hetzner assigns it: adding a node never renumbers the others
    server = files["hecate_servers.tf"]["resource"][0]["hcloud_server"]["edge"]
    assert server["for_each"] == "${local.hecate_edge_nodes}" and server["ssh_keys"] == ["ops"]
    assert server["firewall_ids"] == ["${hcloud_firewall.edge.id}"]
    assert server["lifecycle"][0]["ignore_changes"] == ["image", "ssh_keys", "user_data"]
    firewall = files["hecate_firewall.tf"]["resource"][0]["hcloud_firewall"]["edge"]
    assert firewall["name"] == "hecate-production-edge"
    rules = {(r["protocol"], r.get("port"), tuple(r["source_ips"]), r["description"]) for r in firewall["rule"]}
    anywhere = ("0.0.0.0/0", "::/0")
    assert rules == {
        ("tcp", "80", anywhere, "http"),
        ("tcp", "443", anywhere, "https"),
        ("udp", "443", anywhere, "http3"),
        ("tcp", "1515", anywhere, "stream wazuh-agent-tcp"),  # the seed's nginx tcp_proxies
        ("udp", "1514", anywhere, "stream wazuh-agent-udp"),
        ("tcp", "55000", anywhere, "stream wazuh-api"),
        ("tcp", "50000", anywhere, "stream jenkins-agent"),
        ("tcp", "3478", anywhere, "turn"),  # the seed's coturn ports
        ("udp", "3478", anywhere, "turn"),
        ("tcp", "5349", anywhere, "turns"),
        ("udp", "49160-49200", anywhere, "turn relay"),
        ("tcp", "22", ("203.0.113.0/24",), "ssh"),  # ssh only from ssh_sources
        ("icmp", None, anywhere, "icmp"),
    }
    outputs = {name for block in files["hecate_outputs.tf"]["output"] for name in block}
    assert outputs == {"hecate_nodes", "hecate_edge_nodes", "hecate_edge_ipv4", "hecate_edge_ipv6", "hecate_network_id"}


def test_defaults_are_the_nodes_the_jobs_need_and_no_ssh_rule():
    """Two edge nodes (the reverse proxy twice, static 80/443), one app node (authentik), one db node
    (PostgreSQL and Redis), named <prefix>-<role>-<n> (issue 16 item 2: terraform made edge nodes only)."""
    files = rendered(dict(BASE))
    local = files["hecate_servers.tf"]["locals"][0]
    assert list(local["hecate_edge_nodes"]) == ["hecate-production-edge-1", "hecate-production-edge-2"]
    assert {name: node["labels"]["role"] for name, node in local["hecate_role_nodes"].items()} == {
        "hecate-production-app-1": "app",
        "hecate-production-db-1": "db",
    }
    firewalls = files["hecate_firewall.tf"]["resource"]
    rules = firewalls[0]["hcloud_firewall"]["edge"]["rule"]
    assert not [r for r in rules if r.get("port") == "22"]
    internal = firewalls[1]["hcloud_firewall"]["internal"]["rule"]
    assert [r["protocol"] for r in (internal if isinstance(internal, list) else [internal])] == ["icmp"]  # nothing public


def test_roles_and_counts_come_from_pillar():
    files = rendered({**BASE, "hcloud": {"nodes": {"edge": {"count": 3}, "cache": {"count": 1, "server_type": "cx32"}}}})
    local = files["hecate_servers.tf"]["locals"][0]
    assert len(local["hecate_edge_nodes"]) == 3
    assert local["hecate_role_nodes"]["hecate-production-cache-1"]["server_type"] == "cx32"
    assert sorted(local["hecate_role_nodes"]) == ["hecate-production-app-1", "hecate-production-cache-1", "hecate-production-db-1"]


def test_rendering_is_deterministic():
    section = {**BASE, "hcloud": {"edge_nodes": [{"name": "b-node"}, {"name": "a-node"}]}}
    assert tf.render(tree_with(section), TEMPLATES) == tf.render(tree_with(copy.deepcopy(section)), TEMPLATES)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", '"plain"'),
        ('${file("/etc/shadow")}', '"$\\u007bfile(\\"/etc/shadow\\")}"'),
        ("%{ if true }x%{ endif }", '"%\\u007b if true }x%\\u007b endif }"'),
        ('quote " and \\ back', '"quote \\" and \\\\ back"'),
        (True, "true"),
        (None, "null"),
        (3, "3"),
        (["a", 1], '["a", 1]'),
        ({"k-1": "v"}, '{ "k-1" = "v" }'),
    ],
)
def test_hcl_values_cannot_become_interpolations(value, expected):
    assert hcl.expression(value) == expected
    parsed = plain(hcl2.loads(f"x = {expected}\n"))["x"]
    assert parsed == value or (isinstance(value, str) and parsed == value)


def errors_of(section, tree=None):
    tree = copy.deepcopy(tree or seed_tree())
    tree["terraform"] = section
    with pytest.raises(PillarError) as caught:
        tf.settings(tree)
    return dict(caught.value.errors)


def test_schema_errors_name_key_paths():
    errors = errors_of({
        "workdir": "relative/dir",
        "token": "t0ken",
        "lock_timeout": "soon",
        "alow_delete": True,
        "env": {"lower": "x"},
        "hcloud": {
            "network": {"ip_range": "10.0.0.0/16", "subnet": "10.1.0.0/24"},
            "edge_nodes": [{"name": "edge_1!"}, {"name": "ok", "labels": {"bad key!": "v"}}],
            "firewall": {"ssh_sources": ["10.0.0.1/8"], "rules": [{"protocol": "tcp", "port": "70000"}]},
        },
    })  # fmt: skip
    assert "not a plain absolute path" in errors["hecate:terraform:workdir"]
    assert "duration" in errors["hecate:terraform:lock_timeout"]
    assert errors["hecate:terraform:alow_delete"] == "unknown key; did you mean 'allow_delete'?"
    assert "environment variable name" in errors["hecate:terraform:env:lower"]
    assert "is not a valid hostname" in errors["hecate:terraform:hcloud:edge_nodes[0]:name"]
    assert "label key" in errors["hecate:terraform:hcloud:edge_nodes[1]:labels:bad key!"]
    assert "CIDR" in errors["hecate:terraform:hcloud:firewall:ssh_sources[0]"]
    assert "1..65535" in errors["hecate:terraform:hcloud:firewall:rules[0]:port"]


def test_cross_key_checks():
    errors = errors_of({**BASE, "hcloud": {"network": {"subnet": "10.1.0.0/24"}}})
    assert errors == {"hecate:terraform:hcloud:network:subnet": "10.1.0.0/24 is not inside ip_range 10.0.0.0/16"}
    errors = errors_of({**BASE, "hcloud": {"edge_nodes": [
        {"name": "a", "private_ip": "10.0.1.1"}, {"name": "a", "private_ip": "10.0.2.5"},
        {"name": "c", "private_ip": "10.0.1.7"}, {"name": "d", "private_ip": "10.0.1.7"},
        {"name": "e", "location": "ash"}]}})  # fmt: skip
    assert errors == {
        "hecate:terraform:hcloud:edge_nodes[0]:private_ip": "10.0.1.1 is reserved (network, gateway or broadcast)",
        "hecate:terraform:hcloud:edge_nodes[1]:name": "duplicate node name 'a' (also edge_nodes[0])",
        "hecate:terraform:hcloud:edge_nodes[1]:private_ip": "10.0.2.5 is not inside the subnet 10.0.1.0/24",
        "hecate:terraform:hcloud:edge_nodes[3]:private_ip": "10.0.1.7 is already edge_nodes[2]'s",
        "hecate:terraform:hcloud:edge_nodes[4]:location": "ash is in network zone us-east, the subnet is in eu-central",
    }
    assert errors_of({"workdir": "/var/lib/hecate/tf"}) == {
        "hecate:terraform:token": "required to render the Hetzner Cloud module (the hcloud API token)"
    }
    no_location = seed_tree()
    del no_location["global"]["hetzner_location"]
    assert "hecate:terraform:hcloud:location" in errors_of(dict(BASE), no_location)
    assert errors_of({**BASE, "secret_vars": {"hcloud_token": "x"}}) == {
        "hecate:terraform:secret_vars": "hcloud_token is set by hecate:terraform:token; give it once"
    }


def test_settings_defaults():
    section = tree_with({"workdir": "/var/lib/hecate/tf", "render": False})["terraform"]
    assert {k: section[k] for k in ("lockfile", "lock_timeout", "timeout", "allow_delete", "allow_replace")} == {
        "lockfile": "auto", "lock_timeout": "60s", "timeout": 1800, "allow_delete": False, "allow_replace": False}  # fmt: skip
    assert section["hcloud"]["network"] == {"ip_range": "10.0.0.0/16", "subnet": "10.0.1.0/24"}


def test_consul_schema_defaults_and_errors():
    report = Report("hecate")
    out = consul.SCHEMA({"address": "https://consul.example.org:8501", "token": "vault:secret/hecate/consul#token"},
                           "hecate:consul", report)  # fmt: skip
    assert not report.errors
    assert out["lock"] == {"key": "hecate/locks/{environment}", "ttl": 15, "wait": 600, "lock_delay": 0}
    assert out["deployments"] == {"prefix": "hecate/deployments"}
    report = Report("hecate")
    consul.SCHEMA({"address": "consul:8500", "lock": {"ttl": 5}, "verify": "relative.pem"}, "hecate:consul", report)
    errors = dict(report.errors)
    assert "Consul address" in errors["hecate:consul:address"]
    assert "out of range 10..86400" in errors["hecate:consul:lock:ttl"]
    assert errors["hecate:consul:verify"] == "must be true, false or the path of a CA bundle"


def test_secret_environment_and_unresolved_references():
    section = {"token": "hz-token", "secret_vars": {"db_password": "pw"}, "secret_env": {"CONSUL_HTTP_TOKEN": "ct"},
               "env": {"TF_CLI_CONFIG_FILE": "/etc/tf.rc"}}  # fmt: skip
    env = tf.environment(section, {"PATH": "/bin", "TF_LOG": "TRACE", "TF_LOG_PATH": "/tmp/x"})
    assert env == {"PATH": "/bin", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1",
                   "TF_CLI_CONFIG_FILE": "/etc/tf.rc", "TF_VAR_hcloud_token": "hz-token", "TF_VAR_db_password": "pw",
                   "CONSUL_HTTP_TOKEN": "ct"}  # fmt: skip
    with pytest.raises(Exception, match="hecate:terraform:secret_vars:db_password is an unresolved vault: reference"):
        tf.secret_environment({"secret_vars": {"db_password": "vault:secret/hecate/db#password"}})


PLAN = {
    "variables": {"api_token": {"value": "s3cret"}},
    "resource_changes": [
        {"address": "a.new", "change": {"actions": ["create"]}},
        {"address": "a.same", "change": {"actions": ["no-op"]}},
        {"address": "a.tweak", "change": {"actions": ["update"]}},
        {"address": "a.gone", "change": {"actions": ["delete"]}},
        {"address": "a.cbd", "change": {"actions": ["create", "delete"]}},
        {"address": "a.dbc", "change": {"actions": ["delete", "create"]}},
        {"address": "data.x", "change": {"actions": ["read"]}},
    ],
    "output_changes": {"ips": {"actions": ["update"]}, "same": {"actions": ["no-op"]}},
}


def test_plan_summary_drops_values_and_gate_refuses():
    summary = tf.summarize_plan(PLAN)
    assert summary == {"create": ["a.new"], "update": ["a.tweak"], "delete": ["a.gone"], "replace": ["a.cbd", "a.dbc"],
                       "read": ["data.x"], "no-op": 1, "outputs": {"ips": "update"}, "changes": True}  # fmt: skip
    assert "s3cret" not in json.dumps(summary)
    assert tf.gate(summary) == [
        "would delete 1: a.gone (allow_delete=True to permit)",
        "would replace (destroy and re-create) 2: a.cbd, a.dbc (allow_replace=True to permit)",
    ]
    assert tf.gate(summary, allow_delete=True, allow_replace=True) == []
    assert tf.summarize_plan({})["changes"] is False
    assert tf.summarize_plan({"output_changes": {"x": {"actions": ["create"]}}})["changes"] is True


def test_outputs_and_dns_targets():
    raw = {"hecate_edge_ipv4": {"sensitive": False, "value": ["192.0.2.2", "192.0.2.1", "192.0.2.1"]},
           "hecate_edge_ipv6": {"sensitive": False, "value": {"b": "2001:db8::2", "a": None}},
           "token": {"sensitive": True, "value": "s3cret"}}  # fmt: skip
    outputs = tf.parse_outputs(raw)
    assert outputs["token"] == "<sensitive>" and tf.parse_outputs(raw, show_sensitive=True)["token"] == "s3cret"
    assert tf.dns_targets(outputs) == {"ipv4": ["192.0.2.1", "192.0.2.2"], "ipv6": ["2001:db8::2"]}
    assert tf.dns_targets({}) == {"ipv4": [], "ipv6": []}


def load_module(opts):
    """The execution module as Salt's loader would see it: its file, with ``__opts__`` injected."""
    spec = importlib.util.spec_from_file_location("hecate_terraform_module", REPO / "_modules" / "hecate_terraform.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__opts__ = opts
    return module


def test_virtual_needs_a_terraform_binary(tmp_path):
    missing = load_module({"pillar": {"hecate": {"terraform": {"binary": "/nonexistent/terraform"}}}})
    assert missing.__virtual__() == (
        False, "hecate_terraform: hecate:terraform:binary /nonexistent/terraform is not an executable file")  # fmt: skip
    not_on_path = load_module({"hecate": {"terraform": {"binary": "no-such-terraform-binary"}}})
    assert not_on_path.__virtual__() == (
        False, "hecate_terraform: hecate:terraform:binary no-such-terraform-binary is not on PATH")  # fmt: skip
    binary = tmp_path / "terraform"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert load_module({"pillar": {"hecate": {"terraform": {"binary": str(binary)}}}}).__virtual__() == "hecate_terraform"
    binary.chmod(0o644)  # not executable
    assert load_module({"pillar": {"hecate": {"terraform": {"binary": str(binary)}}}}).__virtual__()[0] is False
