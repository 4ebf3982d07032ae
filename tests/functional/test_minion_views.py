"""What an operator sees on an edge minion: a pillar error is one line (never Salt's "Passed invalid
arguments" and the function's usage), and a view with nothing to show says so instead of printing nothing.

Salt prints the usage block for a TypeError (``salt/cli/caller.py``: ``except TypeError``), and
SaltInvocationError is one; CommandExecutionError is printed as ``Error running '<fun>': <message>``.
"""

import copy
import pathlib
import subprocess
import sys

import pytest
import yaml
from salt.exceptions import CommandExecutionError

from tests.conftest import REPO

INVALID = {"reverse_proxy": {"caddy": {"routes": [{"domain": "app.example.org", "backend": "10.0.0.5:80", "servce": "app"}]}}}


def converge(loaders):
    return loaders.states.caddy.routes_managed(name="hecate_routes")


def salt_call_local(root, pillar, *args):
    """``salt-call --local`` as an operator runs it on an edge, with ``pillar`` as its pillar file."""
    pillar_dir, conf = root / "pillar", root / "conf"
    pillar_dir.mkdir(parents=True)
    conf.mkdir()
    (pillar_dir / "top.sls").write_text("base:\n  '*':\n    - hecate\n")
    (pillar_dir / "hecate.sls").write_text(yaml.safe_dump({"hecate": pillar}))
    (conf / "minion").write_text(
        yaml.safe_dump(
            {
                "id": "edge-1",
                "file_client": "local",
                "root_dir": str(root / "salt"),
                "pillar_roots": {"base": [str(pillar_dir)]},
                "module_dirs": [str(REPO / "_modules")],
                "utils_dirs": [str(REPO / "_utils")],
                "log_file": str(root / "salt.log"),
            }
        )
    )
    salt_call = pathlib.Path(sys.executable).parent / "salt-call"  # the Salt these tests run on
    return subprocess.run([str(salt_call), "--local", "-c", str(conf), *args], capture_output=True, text=True, timeout=120, check=False)


def test_an_invalid_pillar_is_one_line_on_salt_call(short_tmp):
    done = salt_call_local(short_tmp / "invalid-pillar", INVALID, "caddy.plan")
    assert done.returncode == 1, done
    assert "Passed invalid arguments" not in done.stderr and "Usage" not in done.stderr and "CLI Example" not in done.stderr, done.stderr
    assert "Error running 'caddy.plan': invalid pillar (1 problem)" in done.stderr, done.stderr
    assert "routes[0](app.example.org):servce: unknown key; did you mean 'service'?" in done.stderr


def test_every_view_reports_an_invalid_pillar_as_an_error_not_a_bad_call(make_loaders):
    bad_nomad = {"nomad": {"address": "https://nomad.example.org:4646", "namespace": "Not Valid"}}
    modules = make_loaders({"hecate": {**INVALID, **bad_nomad}}).modules
    calls = {name: (lambda name=name: modules[name]()) for name in ("caddy.plan", "caddy.check", "caddy.certs", "caddy.upstreams")}
    calls["nomad_job.status"] = lambda: modules.nomad_job.status("hecate-redis")
    calls["hecate_consul.desired"] = modules.hecate_consul.desired
    for name, call in calls.items():
        with pytest.raises(CommandExecutionError, match=r"invalid pillar|hecate:nomad:namespace") as raised:
            call()
        assert not isinstance(raised.value, TypeError), name  # a TypeError is what salt-call prints with the usage block


def test_plan_check_and_upstreams_say_what_they_found(make_loaders, local_tree):
    loaders = make_loaders({"hecate": local_tree})
    count = len(local_tree["reverse_proxy"]["caddy"]["routes"])
    assert loaders.modules.caddy.plan()["comment"].startswith(f"would change: {count} route(s) added")
    assert converge(loaders).result is True
    assert loaders.modules.caddy.plan() == {"changes": {}, "comment": "no changes"}
    assert loaders.modules.caddy.check() == {"failed": [], "checked": count, "comment": f"all {count} route(s) answer"}
    upstreams = loaders.modules.caddy.upstreams()
    services = {u["address"]: u["services"] for u in upstreams["upstreams"]}
    grafana = next(r for r in local_tree["reverse_proxy"]["caddy"]["routes"] if r["service"] == "grafana")
    assert services[grafana["backend"]] == ["grafana"]  # the service names hecate.health shows
    assert upstreams["comment"] == f"{len(services)} upstream(s), no recent failures"


def test_nothing_to_show_is_said(make_loaders, local_tree, caddy):
    empty = copy.deepcopy(local_tree)
    empty["reverse_proxy"]["caddy"]["routes"] = []
    loaders = make_loaders({"hecate": empty})
    assert loaders.modules.caddy.check() == {"failed": [], "checked": 0, "comment": "nothing to check: the pillar has no routes"}
    assert loaders.modules.caddy.certs() == {"certificates": [], "comment": "TLS off: no certificates"}
    assert loaders.modules.caddy.upstreams() == {"upstreams": [], "comment": "no upstreams: Caddy proxies to nothing (no route loaded)"}
