"""Backup and restore of everything hecate manages, through Salt's loader: a real Caddy, and the authentik,
Hetzner DNS and Nomad emulators. Also the health report's backend sections against the same servers.

The runner reaches the minions with LocalClient; here the same helpers (hecatelib.backups, hecatelib.health)
get a caller that runs the functions in this process's loader: the transport differs, the code under
test does not.
"""

import copy
import json
import shutil

import pytest

from devstack import host
from devstack.emulators.authentik import AuthentikEmulator
from devstack.emulators.hetzner import HetznerDNS
from devstack.emulators.nomad import start_nomad
from devstack.http import backend_of, get
from hecatelib import backups, schema
from hecatelib import health as health_report
from hecatelib.backends import BACKENDS
from tests.conftest import assert_no_violations, loaders_for

ZONE = "cybermonkey.dev"
AK_TOKEN = "ak-backup-token"
NOMAD_TOKEN = "nomad-backup-token"
PREFIX = "bk-"


def redis_job(image):
    return f"""
job "hecate-redis" {{
  datacenters = ["dc1"]
  update {{
    max_parallel     = 1
    min_healthy_time = "1s"
    healthy_deadline = "1m"
  }}
  group "redis" {{
    count = 1
    task "redis" {{
      driver = "docker"
      config {{
        image = "{image}"
      }}
    }}
  }}
}}
"""


@pytest.fixture(scope="module")
def servers():
    hetzner = HetznerDNS().start()
    nomad = start_nomad(token=NOMAD_TOKEN)
    with AuthentikEmulator("2025.6.1", token=AK_TOKEN) as authentik:
        yield {"hetzner": hetzner, "nomad": nomad, "authentik": authentik}
    hetzner.stop()
    nomad.stop()
    for emulator in (hetzner, nomad, authentik):
        assert_no_violations(emulator)


@pytest.fixture
def stack(servers, caddy, local_tree, short_tmp, request):
    """The seed pillar on a real Caddy, plus DNS, authentik (one protected route) and Nomad sections
    pointed at the emulators, each backend converged once."""
    hetzner, nomad, authentik = servers["hetzner"], servers["nomad"], servers["authentik"]
    hetzner.reset()
    hetzner.add_zone(ZONE)
    hetzner.put_rrset(ZONE, "mail", "MX", ["10 mx.example.net."])  # somebody else's record: never touched
    nomad.reset()
    tree = copy.deepcopy(local_tree)
    tree["dns"] = {"zone": ZONE, "token": hetzner.token, "endpoint": f"{hetzner.url}/v1", "allow_insecure_endpoint": True,
                   "targets": {"ipv4": ["203.0.113.7"]}}  # fmt: skip
    tree["authentik"].update(url=authentik.url, token=AK_TOKEN, allow_insecure_endpoint=True, name_prefix=PREFIX,
                             outpost={"upstream": f"127.0.0.1:{authentik.port}"})  # fmt: skip
    tree["nomad"] = {"address": nomad.url, "token": NOMAD_TOKEN, "allow_insecure_endpoint": True, "blocking_wait": 1}
    tree["reverse_proxy"]["caddy"]["routes"][3]["auth"] = {"groups": ["bk-admins"]}  # jenkins: forward_auth via the emulator
    schema.validate(tree, root_prefix=host.PREFIX)
    loaders = loaders_for(short_tmp / f"bk{abs(hash(request.node.nodeid)) % 10**6}", {"hecate": tree},
                                      extra={"__cli": "salt-call"})  # fmt: skip
    protected = loaders.states.authentik.protected_routes(name="protect")
    assert protected.result is True, protected.comment
    routes = loaders.states.caddy.routes_managed(name="routes")
    assert routes.result is True, routes.comment
    assert loaders.states.hetzner_dns.rrsets_managed(name=ZONE).result is True
    for image in ("redis:7.2", "redis:7.4"):
        deployed = loaders.states.nomad_job.present(name="hecate-redis", hcl=redis_job(image))
        assert deployed.result is True, deployed.comment
    yield {"tree": tree, "loaders": loaders, "caddy": caddy, **servers}
    loaders.reset_state()


def caller(loaders, minion="edge-1"):
    """``call(target, fun, ...)`` as the runner's, but in this process: every target is this minion."""

    def call(target, fun, *args, **kwargs):
        try:
            if fun == "state.single":
                ret = loaders.modules.state.single(*args, **kwargs).raw  # saltfactories wraps it; a minion sends the dict
                ok = all(isinstance(s, dict) and s.get("result") is not False for s in ret.values())
                return {minion: {"ok": ok, "ret": ret}}
            return {minion: {"ok": True, "ret": loaders.modules[fun](*args, **kwargs)}}
        except Exception as exc:
            return {minion: {"ok": False, "ret": f"ERROR: {exc}"}}

    return call


def take_backup(stack, directory):
    sections, files = backups.collect(stack["tree"], caller(stack["loaders"]), BACKENDS)
    return backups.write(directory, sections, files, environment="production")


def _records_but_soa(hetzner):
    return {key: value for key, value in copy.deepcopy(hetzner.records(ZONE)).items() if key != ("@", "SOA")}


def test_restore_puts_every_backend_back_and_a_second_restore_writes_nothing(stack, tmp_path):
    take_backup(stack, tmp_path / "b")
    loaders, hetzner, authentik, nomad, caddy = stack["loaders"], stack["hetzner"], stack["authentik"], stack["nomad"], stack["caddy"]
    saved_caddy = json.loads(caddy.config_bytes())
    saved_records = _records_but_soa(hetzner)
    # drift everywhere
    assert loaders.modules.caddy.delete("hecate_route_grafana") is True
    loaders.modules.hetzner_dns.set_records(ZONE, "cloud", "A", ["198.51.100.9"])
    loaders.modules.hetzner_dns.delete_rrset(ZONE, "jenkins", "A")
    loaders.modules.authentik.application_delete("bk-jenkins")
    loaders.modules.authentik.proxy_provider_delete("bk-jenkins")
    assert loaders.states.nomad_job.present(name="hecate-redis", hcl=redis_job("redis:8.0")).result is True
    assert nomad.job("hecate-redis")["Version"] == 2

    dry = backups.restore(tmp_path / "b", caller(loaders), BACKENDS, test=True)
    assert dry["problems"] == [] and dry["restored"] is False
    assert authentik.application_by_slug("bk-jenkins") is None and nomad.job("hecate-redis")["Version"] == 2

    writes = {name: len(stack[name].writes) for name in ("hetzner", "authentik", "nomad")}
    mutations = len(caddy.mutations())
    result = backups.restore(tmp_path / "b", caller(loaders), BACKENDS)
    assert result["problems"] == [] and result["restored"] is True, result
    assert json.loads(caddy.config_bytes()) == saved_caddy
    port = stack["tree"]["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(port, "observe.cybermonkey.dev")[2]) == "grafana"
    assert _records_but_soa(hetzner) == saved_records  # the SOA serial moves with every change, as Hetzner's does
    app = authentik.application_by_slug("bk-jenkins")
    provider = authentik.provider_by_name("bk-jenkins")
    assert app["provider"] == provider["pk"] and provider["pk"] in authentik.embedded_outpost()["providers"]
    bound = [authentik.groups[b["group"]]["name"] for b in authentik.bindings.values() if b["target"] == app["pk"]]
    assert bound == ["bk-admins"]
    job = nomad.job("hecate-redis")
    assert job["Version"] == 3 and job["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "redis:7.4"
    assert len(caddy.mutations()) == mutations + 1

    writes = {name: len(stack[name].writes) for name in ("hetzner", "authentik", "nomad")}
    again = backups.restore(tmp_path / "b", caller(loaders), BACKENDS)
    assert again["problems"] == [], again
    assert {name: len(stack[name].writes) for name in ("hetzner", "authentik", "nomad")} == writes
    assert len(caddy.mutations()) == mutations + 1
    assert "caddy on edge-1: already the saved config" in again["done"]
    assert f"dns {ZONE}: 8 record sets already as saved" in again["done"]


DAMAGE = {
    "edit": f"dns/{ZONE}.json: checksum mismatch",
    "delete": "authentik.json: missing",
    "extra": "caddy/edge-2.json: not part of the backup",
    "manifest": "manifest.json: checksum does not match",
    "sums": "manifest.json: checksum does not match",
}


def damage(directory, kind):
    if kind == "edit":
        path = directory / "dns" / f"{ZONE}.json"
        path.write_text(path.read_text().replace("203.0.113.7", "198.51.100.66"))
    elif kind == "delete":
        (directory / "authentik.json").unlink()
    elif kind == "extra":
        (directory / "caddy" / "edge-2.json").write_text("{}")
    elif kind == "manifest":
        path = directory / "manifest.json"
        path.write_text(path.read_text().replace('"production"', '"staging"'))
    else:
        (directory / "SHA256SUMS").write_text("")


@pytest.mark.fault
def test_backup_saves_every_backend_and_a_damaged_copy_is_refused_before_anything_changes(stack, tmp_path):
    manifest = take_backup(stack, tmp_path / "b")
    sections = manifest["sections"]
    assert sections["caddy"] == {"state": "saved", "edges": ["edge-1"]}
    assert sections["authentik"] == {"state": "saved", "objects": {"groups": 1, "providers": 1, "applications": 1,
                                                                    "outpost_providers": 1, "bindings": 1}}  # fmt: skip
    assert sections["dns"]["state"] == "saved" and sections["dns"]["zones"] == [ZONE]
    assert sections["nomad"]["jobs"] == {"hecate-redis": 1}
    assert sorted(sections["nomad"]["not_registered"]) == ["hecate-authentik", "hecate-helen-bridge", "hecate-postgresql",
                                                           "hecate-reverse-proxy"]  # fmt: skip
    assert sorted(manifest["files"]) == ["authentik.json", "caddy/edge-1.json", f"dns/{ZONE}.json", "nomad/hecate-redis.json"]
    assert backups.verify(tmp_path / "b") == (json.loads((tmp_path / "b" / "manifest.json").read_text()), [])
    saved = json.loads((tmp_path / "b" / "authentik.json").read_text())
    assert saved["providers"][0]["authorization_flow"] == "default-provider-authorization-implicit-consent"  # a slug, not a pk
    assert saved["bindings"] == [{"application": "bk-jenkins", "group": "bk-admins", "binding_order": 0, "negate": False,
                                  "enabled": True}]  # fmt: skip
    assert oct((tmp_path / "b").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "b" / "authentik.json").stat().st_mode & 0o777) == "0o600"
    for secret in (AK_TOKEN, NOMAD_TOKEN, stack["hetzner"].token):
        for path in (tmp_path / "b").rglob("*"):
            assert not path.is_file() or secret not in path.read_text(), path

    stack["loaders"].modules.caddy.delete("hecate_route_grafana")
    before = {name: len(stack[name].writes) for name in ("hetzner", "authentik", "nomad")}
    mutations, config = len(stack["caddy"].mutations()), stack["caddy"].config_bytes()
    for kind, expected in DAMAGE.items():
        damaged = tmp_path / kind
        shutil.copytree(tmp_path / "b", damaged)
        damage(damaged, kind)
        result = backups.restore(damaged, caller(stack["loaders"]), BACKENDS)
        assert result["refused"] is True and result["restored"] is False, kind
        assert any(p.startswith(expected) for p in result["problems"]), (kind, result["problems"])
    assert {name: len(stack[name].writes) for name in ("hetzner", "authentik", "nomad")} == before
    assert len(stack["caddy"].mutations()) == mutations and stack["caddy"].config_bytes() == config
    assert backups.restore(tmp_path / "b", caller(stack["loaders"]), BACKENDS)["restored"] is True  # the intact one still works


def test_health_reports_every_backend_names_what_drifted_and_what_is_missing(stack):
    loaders, hetzner = stack["loaders"], stack["hetzner"]
    plain = copy.deepcopy(stack["tree"])
    report = health_report.collect(plain, caller(loaders), BACKENDS)
    assert [r["domain"] for r in report["routes"] if not r["ok"]] == []
    assert report["authentik"][0]["state"] == "ok" and report["authentik"][0]["live"] is True
    redis = next(r for r in report["nomad"] if r["job"] == "hecate-redis")
    assert redis["ok"] is True and redis["version"] == 1 and redis["allocations"] == "1/1 running"
    assert {r["state"] for r in report["nomad"] if r["job"] != "hecate-redis"} == {"not registered"}
    assert {r["state"] for r in report["dns"]} == {"ok"} and len(report["dns"]) == 8
    assert report["retcode"] == 1  # four seed jobs are not registered in this Nomad
    routes = {r["domain"]: r for r in report["routes"]}
    assert routes["cloud.cybermonkey.dev"]["ok"] is True and routes["cloud.cybermonkey.dev"]["status"] == 200

    hetzner.put_rrset(ZONE, "cloud", "A", ["198.51.100.9"], ttl=300, labels={"managed-by": "hecate", "hecate-owner": "production"})
    loaders.modules.authentik.application_delete("bk-jenkins")  # authentik itself stays healthy
    report = health_report.collect(plain, caller(loaders), BACKENDS, only=["dns", "authentik"])
    drift = [(r["name"], r["state"], r["have"]) for r in report["dns"] if not r["ok"]]
    assert drift == [("cloud.cybermonkey.dev", "differs", "198.51.100.9")]
    assert report["authentik"][0]["ok"] is True
    assert list(report) == ["authentik", "dns", "summary", "retcode"] and report["retcode"] == 1
    text = health_report.render(report)
    assert "cloud.cybermonkey.dev" in text and "differs" in text

    # unconfigured and unreachable backends: shown as such, never hiding the others
    tree = copy.deepcopy(stack["tree"])
    for section in ("dns", "nomad"):
        tree.pop(section)
    tree["authentik"].pop("url")
    report = health_report.collect(tree, caller(stack["loaders"]), BACKENDS, only=["authentik", "nomad", "dns"])
    assert report["authentik"] == report["nomad"] == report["dns"] == [{"state": "not configured"}]
    assert report["retcode"] == 0

    def broken(target, fun, *args, **kwargs):
        if fun.startswith(("authentik.", "hetzner_dns.")):
            return {"edge-1": {"ok": False, "ret": f"'{fun}' is not available."}}
        return caller(stack["loaders"])(target, fun, *args, **kwargs)

    report = health_report.collect(stack["tree"], broken, BACKENDS, only=["authentik", "dns"])
    assert report["authentik"][0]["state"] == "error" and "authentik.health' is not available" in report["authentik"][0]["detail"]
    assert report["dns"][0]["state"].startswith("error: edge-1: 'hetzner_dns.rrsets' is not available")
    assert report["retcode"] == 1
