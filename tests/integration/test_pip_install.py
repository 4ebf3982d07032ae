"""The second way of shipping: ``pip install .`` registers everything through the ``salt.loader``
entry point, no sync. Installed into its own target dir so it cannot borrow the repo's files."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from devstack import SEED, host
from devstack.http import backend_of, get
from devstack.stack import CONSUL_TOKEN, VAULT_TOKEN
from tests.conftest import REPO

pytestmark = pytest.mark.integration
BIN = pathlib.Path(sys.executable).parent


@pytest.fixture(scope="module")
def installed(integration_dir):
    site = integration_dir / "site"
    # Build from a copy: an in-tree build leaves hecate.egg-info in the repo, and with the repo on sys.path
    # every later Salt loader would find its entry point and fail to import hecate_salt.
    source = integration_dir / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "*.egg-info", "build", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(source)],
        check=True,
        cwd=integration_dir,
    )
    assert (site / "hecate_salt" / "modules" / "caddy.py").is_file()
    return site


@pytest.fixture(scope="module")
def masterless(integration_dir, edge_tree, vault, consul):
    """A minion and master config for salt-call --local / salt-run without daemons: only salt/ in
    file_roots, no module_dirs, nothing synced."""
    root = integration_dir / "ml"
    conf = root / "conf"
    pillar = root / "pillar"
    # salt-run without a master daemon: it still wants the master's job cache directory.
    for path in (conf, pillar, root / "var" / "cache" / "salt" / "master" / "proc"):
        path.mkdir(parents=True, exist_ok=True)
    (pillar / "top.sls").write_text("base:\n  '*':\n    - hecate\n")
    (pillar / "hecate.sls").write_text(yaml.safe_dump({"hecate": edge_tree}))
    common = {
        "root_dir": str(root),
        "file_roots": {"base": [str(REPO / "salt")]},
        "pillar_roots": {"base": [str(pillar)]},
        "log_file": str(root / "salt.log"),
        "user": os.environ.get("USER") or "root",
        **host.opts(),  # hecate's roots on the scratch host, where edge_caddy's admin socket is
    }
    (conf / "minion").write_text(yaml.safe_dump({**common, "id": "edge-pip", "file_client": "local"}))
    secrets = {
        "vault": {"url": vault.url, "token": VAULT_TOKEN},
        "consul": {"host": "127.0.0.1", "port": consul.port, "scheme": "http", "token": CONSUL_TOKEN},
    }
    (conf / "master").write_text(
        yaml.safe_dump({**common, "id": "master-pip", "ext_pillar": [{"hecate": {}}], "hecate_ext_pillar": secrets})
    )
    return conf


def salt(tool, conf, site, *args):
    env = dict(os.environ)
    if site:
        env["PYTHONPATH"] = str(site)
    cmd = [str(BIN / tool), "-c", str(conf), "--out=json", *(["--local"] if tool == "salt-call" else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)


# -- the Salt requirement: a range, so pip leaves the operator's Salt alone -------------------------------
def source_copy(integration_dir, name, requirement=None):
    """The pack's source in a scratch dir; ``requirement`` replaces setup.cfg's Salt requirement."""
    source = integration_dir / name
    if not source.exists():
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "*.egg-info", "build", "__pycache__"))
    setup = source / "setup.cfg"
    lines = [
        f"    {requirement}" if requirement and re.match(r"\s+salt\s*[=<>~!]", line) else line for line in setup.read_text().splitlines()
    ]
    setup.write_text("\n".join(lines) + "\n")
    return source


def fake_salt_wheel(wheelhouse, version):
    """A wheel of Salt ``version`` holding only metadata: enough for pip's resolver, nothing to download."""
    import zipfile

    wheelhouse.mkdir(exist_ok=True)
    info = f"salt-{version}.dist-info"
    with zipfile.ZipFile(wheelhouse / f"salt-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: salt\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: hecate-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")


def resolve(source, installed_salt, tmp_path):
    """``pip install --dry-run`` of ``source`` with the resolver (dependencies on) in this venv, where Salt
    ``installed_salt`` stands in for the operator's (a dist-info ahead of the venv's own on sys.path, which
    is how pip finds installed distributions). No index: the only Salt pip could install instead is 3008.4
    from a local wheelhouse. Returns (pip's exit code, [(name, version) pip would install], its output)."""
    shadow = tmp_path / f"salt-{installed_salt}"
    info = shadow / f"salt-{installed_salt}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: salt\nVersion: {installed_salt}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")
    fake_salt_wheel(tmp_path / "wheels", "3008.4")
    report = tmp_path / f"report-{installed_salt}.json"
    env = {**os.environ, "PYTHONPATH": str(shadow), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--no-build-isolation",
        "--no-index",
        "--find-links",
        str(tmp_path / "wheels"),
    ]
    result = subprocess.run([*cmd, "--report", str(report), str(source)], capture_output=True, text=True, env=env, timeout=300)
    would = (
        [] if result.returncode else [(i["metadata"]["name"], i["metadata"]["version"]) for i in json.loads(report.read_text())["install"]]
    )
    return result.returncode, would, result.stdout + result.stderr


@pytest.mark.parametrize("operator_salt", ["3008.0", "3008.5"])
def test_pip_leaves_the_operators_salt_alone(integration_dir, tmp_path, operator_salt):
    """The oldest and the newest 3008.x: the Salt already there satisfies the requirement, so the resolver
    installs hecate alone, even with another 3008.x at hand."""
    code, would, output = resolve(source_copy(integration_dir, "range-source"), operator_salt, tmp_path)
    assert code == 0, output
    assert [name for name, _ in would] == ["hecate"], would


def test_the_old_pin_replaced_the_operators_salt(integration_dir, tmp_path):
    code, would, output = resolve(source_copy(integration_dir, "pinned-source", "salt==3008.4"), "3008.5", tmp_path)
    assert code == 0, output
    assert sorted(would) == [("hecate", "0.1.0"), ("salt", "3008.4")]  # 3008.5 would be swapped for 3008.4


def test_a_salt_outside_the_range_is_not_silently_accepted(integration_dir, tmp_path):
    code, would, output = resolve(source_copy(integration_dir, "range-source"), "3007.8", tmp_path)
    assert code == 0, output
    assert ("salt", "3008.4") in would  # pip brings a Salt of the tested range rather than run on 3007


def test_without_the_package_salt_has_no_hecate(masterless):
    result = salt("salt-call", masterless, None, "sys.list_modules")
    assert result.returncode == 0, result.stderr
    assert "caddy" not in json.loads(result.stdout)["local"]


def test_pip_installed_pack_converges_masterless(installed, masterless, edge_tree, edge_caddy):
    result = salt("salt-call", masterless, installed, "state.apply", "hecate.routes")
    assert result.returncode == 0, result.stdout + result.stderr
    ret = next(iter(json.loads(result.stdout)["local"].values()))
    assert ret["result"] is True, ret["comment"]
    status, _, body = get(edge_tree["reverse_proxy"]["caddy"]["ports"]["http"], "s3api.cybermonkey.dev")
    assert (status, backend_of(body)) == (200, "minio-api")
    routes = salt("salt-call", masterless, installed, "caddy.routes", "server=hecate")
    assert {r["id"] for r in json.loads(routes.stdout)["local"]} >= {"hecate_route_minio-api", "hecate_catch_all"}


def test_pip_installed_runner_and_ext_pillar(installed, masterless):
    result = salt("salt-run", masterless, installed, "hecate.validate", "minion=edge-pip")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["valid"] is True


def test_pip_installed_validator_for_pillar_repo_ci(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    good = subprocess.run([str(installed / "bin" / "hecate-validate"), str(SEED / "hecate.sls")], capture_output=True, text=True, env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "valid: 8 route(s)" in good.stdout
    broken = tmp_path / "hecate.sls"
    broken.write_text((SEED / "hecate.sls").read_text().replace("admin: 2019", "admin: 2019\n      admin_address: 0.0.0.0:2019"))
    bad = subprocess.run([str(installed / "bin" / "hecate-validate"), str(broken)], capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert "hecate:reverse_proxy:caddy:admin_address: unknown key; did you mean 'admin'?" in bad.stdout


WATCH_SLS = """
marker:
  file.managed:
    - name: {root}/marker
    - contents: "{marker}"
hecate_routes:
  caddy.routes_managed:
    - require:
      - file: marker
    - watch:
      - file: marker
"""


def test_salt_call_state_apply_with_watch(installed, integration_dir, edge_tree, edge_caddy):
    """The watch regression through the real CLI: ``salt-call --local state.apply`` of an sls whose
    ``caddy.routes_managed`` watches a file that changes (it failed with ``TypeError: routes_managed() got
    an unexpected keyword argument '__reqs__'``)."""
    root = integration_dir / "watch"
    sls, pillar, conf = root / "sls", root / "pillar", root / "conf"
    for path in (sls, pillar, conf):
        path.mkdir(parents=True, exist_ok=True)
    (pillar / "top.sls").write_text("base:\n  '*':\n    - hecate\n")
    (pillar / "hecate.sls").write_text(yaml.safe_dump({"hecate": edge_tree}))
    minion = {
        "id": "edge-watch",
        "root_dir": str(root),
        "file_client": "local",
        "file_roots": {"base": [str(REPO / "salt"), str(sls)]},
        "pillar_roots": {"base": [str(pillar)]},
        "log_file": str(root / "salt.log"),
        "user": os.environ.get("USER") or "root",
        **host.opts(),
    }
    (conf / "minion").write_text(yaml.safe_dump(minion))
    results = []
    for marker in ("one", "two"):
        (sls / "watchtest.sls").write_text(WATCH_SLS.format(root=root, marker=marker))
        before = edge_caddy.mutations()
        result = salt("salt-call", conf, installed, "state.apply", "watchtest")
        assert result.returncode == 0, result.stdout + result.stderr
        states = {ret["__id__"]: ret for ret in json.loads(result.stdout)["local"].values()}
        results.append((states, edge_caddy.mutations()[len(before) :]))
    (first, _), (second, writes) = results
    assert first["marker"]["changes"] and second["marker"]["changes"]  # the watch fires on both runs
    assert second["hecate_routes"]["result"] is True and second["hecate_routes"]["changes"] == {}, second["hecate_routes"]["comment"]
    assert writes == []  # routes already in place: mod_watch re-checks and sends nothing
