"""The seed's Nomad jobs as templates: rendered from the (validated) seed pillar, parsed the way Nomad
parses HCL2 (the emulator's parser), and checked against the seed's defects listed in DESIGN.md."""

import copy
import json
import re

import pytest

from devstack import SEED
from devstack.emulators.nomad import HCLError, hcl_to_job
from devstack.pillars import seed_tree
from hecatelib import hcl, schema, spec
from hecatelib.caddy import config as caddy_config
from hecatelib.nomad import jobs as nomad_jobs
from hecatelib.nomad import nginx
from hecatelib.terraform import render as terraform_render
from tests.conftest import REPO
from tests.unit.test_nginx_render import nginx_test

TEMPLATES = REPO / "salt" / "hecate" / "nomad"


def include(name):
    path = TEMPLATES / name
    return path.read_text() if path.exists() else None


def render(tree, job):
    return nomad_jobs.render_job((TEMPLATES / f"{job}.nomad.j2").read_text(), tree, job, include=include, spec=schema.SCHEMA)


def parsed(tree, job):
    return hcl_to_job(render(tree, job))


@pytest.fixture(scope="module")
def tree():
    return schema.validate(seed_tree())


def group(job, name):
    return next(g for g in job["TaskGroups"] if g["Name"] == name)


def task(job, group_name, name):
    return next(t for t in group(job, group_name)["Tasks"] if t["Name"] == name)


@pytest.mark.parametrize("job", nomad_jobs.JOBS)
def test_every_seed_job_renders_parses_and_keeps_the_seeds_identity(tree, job):
    ours = parsed(tree, job)
    seed = hcl_to_job((SEED / f"hecate-{job}.nomad").read_text())
    assert ours["ID"] == seed["ID"] == f"hecate-{job}"
    # the seed's placement (same attribute and operator), on the names terraform gives the servers
    assert [(c["LTarget"], c["Operand"]) for c in ours["Constraints"]] == [(c["LTarget"], c["Operand"]) for c in seed["Constraints"]]
    names = [n for role in nomad_jobs.JOB_ROLES[job] for n in terraform_render.node_roles(tree).get(role, [])]
    (constraint,) = ours["Constraints"]
    matching = [
        n for n in names if (re.search(constraint["RTarget"], n) if constraint["Operand"] == "regexp" else n == constraint["RTarget"])
    ]
    assert matching == (names if constraint["Operand"] == "regexp" else names[:1]) and names
    seed_groups = {g["Name"]: {t["Name"] for t in g["Tasks"]} for g in seed["TaskGroups"]}
    our_groups = {g["Name"]: {t["Name"] for t in g["Tasks"]} for g in ours["TaskGroups"]}
    for name, tasks in seed_groups.items():
        assert our_groups[name] == tasks, name
    assert ours["Namespace"] == "default" and ours["Region"] == "global" and ours["Datacenters"] == ["dc1"]


def test_reverse_proxy_groups_and_counts(tree):
    job = parsed(tree, "reverse-proxy")
    assert {g["Name"]: g["Count"] for g in job["TaskGroups"]} == {"proxy-stack": 2, "turn": 2}
    ports = {p["Label"]: p["Value"] for p in group(job, "proxy-stack")["Networks"][0]["ReservedPorts"]}
    assert ports == {"http": 80, "https": 443, "stream_wazuh_agent_tcp": 1515, "stream_wazuh_agent_udp": 1514,
                     "stream_wazuh_api": 55000, "stream_jenkins_agent": 50000}  # fmt: skip
    assert group(job, "proxy-stack")["EphemeralDisk"] == {"SizeMB": 10240, "Sticky": True, "Migrate": True}


def test_caddy_starts_from_the_compiled_bootstrap_with_resume(tree):
    job = parsed(tree, "reverse-proxy")
    caddy = task(job, "proxy-stack", "caddy")
    assert (caddy["Config"]["command"], caddy["Config"]["args"]) == ("/bin/sh", ["/local/caddy-start.sh"])
    template, start = caddy["Templates"]
    assert start["DestPath"] == "local/caddy-start.sh" and start["EmbeddedTmpl"] == nomad_jobs.CADDY_START  # HCL keeps it byte for byte
    assert 'exec caddy run --resume --config "${NOMAD_TASK_DIR:-/local}/caddy.json"' in start["EmbeddedTmpl"]
    assert template["DestPath"] == "local/caddy.json" and template["ChangeMode"] == "noop"
    assert (template["LeftDelim"], template["RightDelim"]) == nomad_jobs.STATIC  # literal: no consul-template
    skeleton = copy.deepcopy(tree)
    skeleton["reverse_proxy"]["caddy"]["routes"] = []
    expected = caddy_config.bootstrap_config(skeleton)  # the same compiler as the routes, without them
    expected["admin"]["listen"] = "127.0.0.1:2019"  # the seed's pillar: admin where the edge minion dials it
    assert json.loads(template["EmbeddedTmpl"]) == expected  # survives HCL quoting byte for byte
    assert [r["@id"] for r in expected["apps"]["http"]["servers"]["hecate"]["routes"]] == [caddy_config.STRIP_ID, "hecate_catch_all"]


def test_a_route_change_does_not_change_the_caddy_job(tree):
    changed = copy.deepcopy(tree)
    changed["reverse_proxy"]["caddy"]["routes"][0]["backend"] = "10.9.9.9:9000"  # a reload, not a redeploy
    assert render(changed, "reverse-proxy") == render(tree, "reverse-proxy")


def test_a_unix_admin_address_in_pillar_is_the_jobs_socket_mounted_from_the_host(tree):
    changed = copy.deepcopy(tree)
    changed["reverse_proxy"]["caddy"]["admin"] = "unix//run/hecate/caddy/admin.sock"
    caddy = task(parsed(changed, "reverse-proxy"), "proxy-stack", "caddy")
    assert json.loads(caddy["Templates"][0]["EmbeddedTmpl"])["admin"]["listen"] == "unix//run/hecate/caddy/admin.sock"
    assert caddy["Config"]["volumes"] == ["/run/hecate/caddy:/run/hecate/caddy"]
    assert group(parsed(changed, "reverse-proxy"), "proxy-stack")["Networks"][0]["Mode"] == "bridge"
    assert caddy["Services"][0]["Checks"][0]["Type"] == "tcp"  # Consul cannot reach a unix socket


def test_the_seeds_loopback_admin_is_the_edge_hosts_loopback_and_checked_on_config(tree):
    """Issue 16 item 3: with the seed pillar the routes stage dials 127.0.0.1:2019 on the edge node; the
    job used to listen on a socket in the allocation directory. Now Caddy's admin is that very address,
    in the host's network namespace, and Nomad checks GET /config/ on it as the seed did."""
    job = parsed(tree, "reverse-proxy")
    proxy = group(job, "proxy-stack")
    caddy = task(job, "proxy-stack", "caddy")
    assert (
        json.loads(caddy["Templates"][0]["EmbeddedTmpl"])["admin"]["listen"] == tree["reverse_proxy"]["caddy"]["admin"] == "127.0.0.1:2019"
    )
    assert proxy["Networks"][0]["Mode"] == "host" and caddy["Config"]["network_mode"] == "host" and "ports" not in caddy["Config"]
    assert {p["Label"]: (p["Value"], p["To"]) for p in proxy["Networks"][0]["ReservedPorts"]}["https"] == (443, 0)
    (check,) = caddy["Services"][0]["Checks"]
    assert (check["Type"], check["Command"], check["Args"]) == (
        "script",
        "wget",
        ["-q", "-O", "/dev/null", "http://127.0.0.1:2019/config/"],
    )


def test_none_of_the_seeds_caddy_defects_survive(tree):
    text = render(tree, "reverse-proxy")
    job = json.dumps(parsed(tree, "reverse-proxy"))
    for gone in ("SIGUSR1", "change_signal", "experimental_http3", "rate_limit", "0.0.0.0:2019", "Caddyfile", "NET_BIND_SERVICE"):
        assert gone not in text and gone not in job, gone
    assert "ChangeSignal" not in job
    assert '"listen":"127.0.0.1:2019"' in text  # admin on loopback, never a wildcard


def test_caddy_admin_socket_comes_from_pillar(tree):
    changed = copy.deepcopy(tree)
    changed["nomad"] = {"jobs": {"reverse-proxy": {"admin_socket": "/alloc/run/caddy.sock"}}}
    caddy = task(parsed(changed, "reverse-proxy"), "proxy-stack", "caddy")
    assert json.loads(caddy["Templates"][0]["EmbeddedTmpl"])["admin"]["listen"] == "unix//alloc/run/caddy.sock"
    assert "volumes" not in caddy["Config"]  # inside the allocation: nothing of the host is mounted


def test_nginx_stream_config_comes_from_tcp_proxies_and_passes_nginx_t(tree, tmp_path):
    job = parsed(tree, "reverse-proxy")
    stream_task = task(job, "proxy-stack", "nginx-stream")
    (template,) = stream_task["Templates"]
    stream = nginx.render_stream(tree["reverse_proxy"]["nginx"]["tcp_proxies"])
    assert template["EmbeddedTmpl"] == nginx.render_main(stream, user="nginx", pid="/tmp/nginx.pid")
    assert stream_task["Config"]["network_mode"] == "host"  # the group shares the host's network (loopback admin)
    labels = [p["port_label"] for p in nomad_jobs.job_context(tree, "reverse-proxy")["tcp_proxies"]]
    unix = copy.deepcopy(tree)
    unix["reverse_proxy"]["caddy"]["admin"] = "unix//run/hecate/caddy/admin.sock"
    assert task(parsed(unix, "reverse-proxy"), "proxy-stack", "nginx-stream")["Config"]["ports"] == labels
    # the job's file, as nginx reads it (Debian has no "nginx" user: the main context is the test's)
    body = template["EmbeddedTmpl"][template["EmbeddedTmpl"].index("stream {") :]
    ok, output = nginx_test(tmp_path, body)
    assert ok, output
    assert "{{" not in template["EmbeddedTmpl"]  # no consul-template ranges that render an empty upstream


def test_no_tcp_proxies_means_no_nginx_task(tree):
    changed = copy.deepcopy(tree)
    changed["reverse_proxy"]["nginx"]["tcp_proxies"] = []
    job = parsed(changed, "reverse-proxy")
    assert [t["Name"] for t in group(job, "proxy-stack")["Tasks"]] == ["caddy"]
    assert [p["Label"] for p in group(job, "proxy-stack")["Networks"][0]["ReservedPorts"]] == ["http", "https"]


def test_helen_bridge_proxies_to_the_helen_route_and_passes_nginx_t(tree, tmp_path):
    job = parsed(tree, "helen-bridge")
    (template,) = task(job, "bridge", "tailscale-proxy")["Templates"]
    assert "server 100.65.138.128:8009" in template["EmbeddedTmpl"]
    body = template["EmbeddedTmpl"][template["EmbeddedTmpl"].index("http {") :]
    ok, output = nginx_test(tmp_path, body)
    assert ok, output


def secret_values(tree):
    return [value for _, value in spec.secret_values(tree, schema.SCHEMA)]


@pytest.mark.parametrize("job", nomad_jobs.JOBS)
def test_secrets_never_reach_the_job_text(tree, job):
    values = secret_values(tree)
    assert len(values) == 3  # coturn static_auth_secret, authentik secret_key and database password
    text = render(tree, job)
    assert not [v for v in values if v in text]


def vault_tasks(job):
    return [t for g in job["TaskGroups"] for t in g["Tasks"] if any("with secret" in x["EmbeddedTmpl"] for x in t.get("Templates") or [])]


def test_secrets_come_from_vault_template_blocks_into_secrets_dir(tree):
    coturn = task(parsed(tree, "reverse-proxy"), "turn", "coturn")
    (template,) = coturn["Templates"]
    assert (
        '{{ with secret "secret/hecate/coturn/auth_secret" }}static-auth-secret={{ .Data.data.value }}{{ end }}' in template["EmbeddedTmpl"]
    )
    assert template["DestPath"].startswith("secrets/") and coturn["Config"]["args"] == ["-c", "/secrets/turnserver.conf"]
    authentik = parsed(tree, "authentik")
    for role in ("server", "worker"):
        (env,) = task(authentik, "authentik", role)["Templates"]
        assert env["Envvars"] is True and env["DestPath"] == "secrets/authentik.env"
        assert 'with secret "secret/hecate/authentik/secret_key"' in env["EmbeddedTmpl"]
        assert 'with secret "secret/hecate/authentik/db_password"' in env["EmbeddedTmpl"]
    (pg,) = task(parsed(tree, "postgresql"), "postgresql", "postgres")["Templates"]
    assert 'with secret "secret/hecate/authentik/db_password" }}POSTGRES_PASSWORD=' in pg["EmbeddedTmpl"]
    for job in ("reverse-proxy", "authentik", "postgresql"):
        tasks = vault_tasks(parsed(tree, job))
        assert tasks and all(t.get("Vault") == {"ChangeMode": "restart"} for t in tasks), job


def test_vault_paths_and_role_come_from_pillar(tree):
    changed = copy.deepcopy(tree)
    changed["nomad"] = {"vault": {"role": "hecate-jobs"}, "secrets": {"coturn_static_auth_secret": "kv/data/turn#shared"}}
    coturn = task(parsed(changed, "reverse-proxy"), "turn", "coturn")
    assert coturn["Vault"] == {"Role": "hecate-jobs", "ChangeMode": "restart"}
    assert '{{ with secret "kv/data/turn" }}static-auth-secret={{ .Data.data.shared }}{{ end }}' in coturn["Templates"][0]["EmbeddedTmpl"]


def test_a_template_that_would_leak_a_secret_is_refused(tree):
    leaky = 'job "x" {\n  meta { s = {{ hecate.reverse_proxy.coturn.static_auth_secret | hcl }} }\n}\n'
    with pytest.raises(ValueError, match=r"hecate:reverse_proxy:coturn:static_auth_secret: the secret value would be rendered"):
        nomad_jobs.render_job(leaky, tree, "reverse-proxy", spec=schema.SCHEMA)


def test_a_secret_is_known_by_its_schema_type_not_its_key_name(tree):
    """``terraform.secret_vars`` values are secrets whatever the variable is called (the old key-name
    regex missed ``db_pw``); ``nomad.client_key`` is a file path, not a secret (the regex refused it)."""
    raw = copy.deepcopy(seed_tree())
    raw["terraform"] = {
        "workdir": "/var/lib/hecate/terraform",
        "token": "vault:secret/hecate/hetzner#token",
        "secret_vars": {"db_pw": "pw-LEAK-123456"},
    }
    raw.setdefault("nomad", {})["client_key"] = "/etc/nomad.d/tls/client-key.pem"
    changed = schema.validate(raw)
    leaky = 'job "x" {\n  meta { p = {{ hecate.terraform.secret_vars.db_pw | hcl }} }\n}\n'
    with pytest.raises(ValueError, match=r"^hecate:terraform:secret_vars:db_pw: the secret value would be rendered"):
        nomad_jobs.render_job(leaky, changed, "reverse-proxy", spec=schema.SCHEMA)
    path = 'job "x" {\n  meta { k = {{ hecate.nomad.client_key | hcl }} }\n}\n'
    text = nomad_jobs.render_job(path, changed, "reverse-proxy", spec=schema.SCHEMA)
    assert "/etc/nomad.d/tls/client-key.pem" in text
    assert ("hecate:terraform:secret_vars:db_pw", "pw-LEAK-123456") in spec.secret_values(changed, schema.SCHEMA)


def test_authentik_job_fixes_the_seed(tree):
    text = render(tree, "authentik")
    job = parsed(tree, "authentik")
    assert "provider: 4" not in text and "blueprints" not in text  # no hard-coded pk in a blueprint
    assert "docker.sock" not in text and "root" not in json.dumps(job)  # the worker is no host root
    worker = task(job, "authentik", "worker")
    assert "SourcePath" not in worker["Templates"][0]  # the seed read another task's secrets/ file
    assert worker["Services"][0]["Checks"][0]["Command"] == "ak"  # redis-cli is not in authentik's image
    assert task(job, "authentik", "server")["Config"]["image"] == "ghcr.io/goauthentik/server:2025.6.1"


def test_pillar_drives_versions_resources_counts_canary_and_constraints(tree):
    changed = copy.deepcopy(tree)
    changed["reverse_proxy"]["caddy"]["version"] = "2.11.2"
    changed["resources"]["reverse_proxy"] = {"cpu": 4000, "memory": 4096, "disk": 2048}
    changed["nomad"] = {
        "datacenters": ["fsn1", "nbg1"],
        "namespace": "edge",
        "jobs": {
            "reverse-proxy": {
                "count": 3,
                "update": {"canary": 1, "progress_deadline": "4m"},
                "constraints": [{"attribute": "${node.class}", "value": "edge"}],
                "resources": {"coturn": {"cpu": 300}},
            },
            "postgresql": {"version": "17-alpine"},
        },
    }
    changed = schema.validate(changed)
    job = parsed(changed, "reverse-proxy")
    assert job["Namespace"] == "edge" and job["Datacenters"] == ["fsn1", "nbg1"]
    assert job["Constraints"] == [{"LTarget": "${node.class}", "Operand": "=", "RTarget": "edge"}]
    proxy = group(job, "proxy-stack")
    assert proxy["Count"] == 3 and proxy["Update"]["Canary"] == 1 and proxy["Update"]["ProgressDeadline"] == 240 * 10**9
    assert task(job, "proxy-stack", "caddy")["Config"]["image"] == "caddy:2.11.2"
    resources = {t["Name"]: t["Resources"] for g in job["TaskGroups"] for t in g["Tasks"]}
    assert resources["caddy"] == {"CPU": 2000, "MemoryMB": 2048}
    assert resources["nginx-stream"] == {"CPU": 1000, "MemoryMB": 1024}
    assert resources["coturn"] == {"CPU": 300, "MemoryMB": 1024}
    assert proxy["EphemeralDisk"]["SizeMB"] == 2048
    assert task(parsed(changed, "postgresql"), "postgresql", "postgres")["Config"]["image"] == "postgres:17-alpine"


def test_seed_resources_reach_the_jobs(tree):
    helen = parsed(tree, "helen-bridge")
    assert task(helen, "bridge", "tailscale-proxy")["Resources"] == {"CPU": 500, "MemoryMB": 256}  # resources.applications.helen
    authentik = parsed(tree, "authentik")
    assert group(authentik, "authentik")["EphemeralDisk"]["SizeMB"] == 20480  # resources.authentik.disk


def test_seed_job_values_survive(tree):
    """Issue 16 item 4: what the seed's jobs had and a first rendering silently dropped."""
    authentik = parsed(tree, "authentik")
    server, worker = task(authentik, "authentik", "server"), task(authentik, "authentik", "worker")
    assert server["Resources"] == {"CPU": 750, "MemoryMB": 1024, "MemoryMaxMB": 2048}  # seed: 750/1024
    assert worker["Resources"] == {"CPU": 500, "MemoryMB": 512, "MemoryMaxMB": 1024}  # seed: 500/512
    for role in (server, worker):
        assert "../alloc/data/templates:/templates" in role["Config"]["volumes"]
        env = role["Templates"][0]["EmbeddedTmpl"]
        assert '{{ with secret "secret/hecate/authentik/email" }}' in env and "AUTHENTIK_EMAIL__HOST=" in env
    proxy = parsed(tree, "reverse-proxy")
    assert task(proxy, "proxy-stack", "caddy")["Config"]["image"] == f"caddy:{nomad_jobs.CADDY_TESTED}"  # pillar: latest
    assert task(proxy, "proxy-stack", "nginx-stream")["Config"]["image"] == "nginx:alpine"
    assert task(parsed(tree, "helen-bridge"), "bridge", "tailscale-proxy")["Config"]["image"] == "nginx:alpine"
    assert [nomad_jobs.nginx_tag(v) for v in ("1.27", "1.27-alpine", None)] == ["1.27-alpine", "1.27-alpine", "alpine"]


def test_deployment_strategy_decides_the_update_blocks(tree):
    updates = {job: group(parsed(tree, job), parsed(tree, job)["TaskGroups"][0]["Name"])["Update"] for job in nomad_jobs.JOBS}
    # seed: strategy blue-green -> canaries equal to count where the job can run them side by side
    assert updates["authentik"]["Canary"] == 1 and updates["helen-bridge"]["Canary"] == 1
    # static ports / host volumes: rolling (a canary would need a spare node)
    assert updates["reverse-proxy"]["Canary"] == 0 and updates["postgresql"]["Canary"] == 0 and updates["redis"]["Canary"] == 0
    assert all(u["AutoRevert"] for job, u in updates.items() if job != "postgresql")  # deployment.auto_rollback
    assert updates["postgresql"]["AutoRevert"] is False  # no revert onto data a newer major version upgraded
    assert all(u["MaxParallel"] == 1 and u["AutoPromote"] is False for u in updates.values())
    rolling = copy.deepcopy(tree)
    rolling["deployment"]["strategy"] = "rolling"
    assert group(parsed(rolling, "authentik"), "authentik")["Update"]["Canary"] == 0


@pytest.mark.parametrize(
    "value",
    ["plain", 'quo"te', "back\\slash", "new\nline\ttab", "${attr.unique.hostname}", "$${x}", "%{ if x }", "ünïcødé", "a\x01b", ""],
)
def test_hcl_filter_round_trips_through_the_parser(value):
    job = hcl_to_job(f'job "x" {{\n  meta {{\n    v = {hcl.expression(value)}\n  }}\n}}\n')
    assert job["Meta"]["v"] == value


def test_heredoc_round_trips_and_picks_a_free_marker():
    body = 'EOT\n{"a": "\\\\."} ${x} %{y}\n  "q"\n'
    text = hcl.heredoc(body)
    assert text.startswith("<<EOT1\n")
    job = hcl_to_job(f'job "x" {{\n  meta {{\n    v = {text}\n  }}\n}}\n')
    assert job["Meta"]["v"] == body


def test_parser_rejects_what_nomad_rejects():
    with pytest.raises(HCLError, match="Unknown variable"):
        hcl_to_job('job "x" {\n  type = var.nope\n}\n')
    with pytest.raises(HCLError, match="not declared"):
        hcl_to_job('job "x" {\n}\n', 'nope = "1"\n')
    with pytest.raises(HCLError, match="error parsing"):
        hcl_to_job('job "x" {\n  type = \n')


def test_variables_interpolate():
    text = 'variable "image" {\n  type = string\n}\njob "x" {\n  meta {\n    i = "img:${var.image}"\n    r = "${attr.x}"\n  }\n}\n'
    job = hcl_to_job(text, nomad_jobs.variables_hcl({"image": "caddy:2.11"}))
    assert job["Meta"] == {"i": "img:caddy:2.11", "r": "${attr.x}"}


def test_the_reverse_proxy_needs_the_validated_tree():
    with pytest.raises(ValueError, match="validated hecate tree"):
        render(seed_tree(), "reverse-proxy")
