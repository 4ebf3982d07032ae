"""hecate_terraform.run skips init and plan when neither the configuration nor the state changed since the
last plan that found nothing to do; ``refresh=True`` plans anyway (issue 13). The real Terraform 1.0.3
offline (the setup of test_terraform.py), behind a recorder that logs every invocation."""

import json
import os
import subprocess
import sys

from tests.functional.test_terraform import TERRAFORM, host_opts, pillar_for, set_nodes, tf_env, workdir  # noqa: F401 (fixtures)


def recorder(tmp_path):
    record = tmp_path / "argv.jsonl"
    wrapper = tmp_path / "terraform-recorder"
    wrapper.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"os.execv({str(TERRAFORM)!r}, [{str(TERRAFORM)!r}] + sys.argv[1:])\n"
    )
    wrapper.chmod(0o755)
    return wrapper, lambda: [json.loads(line)[0] for line in record.read_text().splitlines()]


def test_a_second_no_op_run_does_not_plan_and_refresh_forces_it(make_loaders, workdir, tf_env, tmp_path):  # noqa: F811
    wrapper, commands = recorder(tmp_path)
    set_nodes(workdir, {"edge-1": "192.0.2.10"})  # a user-managed variables file: an input hecate does not render
    module = make_loaders(pillar_for(workdir), host_opts(tf_env, wrapper)).modules.hecate_terraform

    assert module.run()["applied"] is True  # init, plan, show, apply (the outputs: read from the local state)
    noop = module.run()  # the state changed with the apply: planned once more, found nothing, recorded
    assert noop["changes"] is False and "plan_skipped" not in noop
    assert commands() == ["init", "plan", "show", "apply", "init", "plan"]

    skipped = module.run()
    assert skipped["changes"] is False and skipped["applied"] is False and "unchanged" in skipped["plan_skipped"]
    assert skipped["outputs"] == noop["outputs"]
    assert commands()[6:] == []  # no init, no plan: no Terraform process at all
    dry = module.run(test=True)
    assert dry["changes"] is False and "plan_skipped" in dry and commands()[6:] == []

    forced = module.run(refresh=True)
    assert forced["changes"] is False and "plan_skipped" not in forced
    assert commands()[6:] == ["init", "plan"]

    # a changed input plans again: the variables file, then the state itself
    set_nodes(workdir, {"edge-1": "192.0.2.10", "edge-2": "192.0.2.11"})
    changed = module.run(test=True)
    assert changed["changes"] is True and "plan_skipped" not in changed
    assert commands()[8:] == ["init", "plan", "show"]
    set_nodes(workdir, {"edge-1": "192.0.2.10"})
    module.run()  # the record of the last empty plan still matches: skipped
    assert commands()[11:] == []
    state = workdir / "terraform.tfstate"
    state.write_text(state.read_text().replace('"serial": ', '"serial": 1', 1))  # someone else wrote the state
    module.run()
    assert commands()[11:] == ["init", "plan"]


def test_a_dry_run_that_finds_nothing_to_do_lets_the_next_run_skip_its_plan(make_loaders, workdir, tf_env, tmp_path):  # noqa: F811
    """A deploy dry-runs every stage first and skips a stage with nothing to change: its empty dry-run
    plan (of a scratch copy of the unchanged workdir) must count as the workdir's plan, or terraform would
    plan on every deploy for ever."""
    wrapper, commands = recorder(tmp_path)
    set_nodes(workdir, {"edge-1": "192.0.2.10"})
    module = make_loaders(pillar_for(workdir), host_opts(tf_env, wrapper)).modules.hecate_terraform
    assert module.run()["applied"] is True
    applied = len(commands())
    first = module.run(test=True)  # the apply changed the state: plans (in a scratch copy), finds nothing
    assert first["changes"] is False and "plan_skipped" not in first and "plan" in commands()[applied:]
    planned = len(commands())
    second = module.run(test=True)
    assert second["changes"] is False and "plan_skipped" in second and commands()[planned:] == []
    assert "plan_skipped" in module.run() and commands()[planned:] == []
    set_nodes(workdir, {"edge-1": "192.0.2.10", "edge-2": "192.0.2.11"})  # a changed input is planned again
    assert module.run(test=True)["changes"] is True and "plan" in commands()[planned + 1 :]


def test_outputs_are_read_from_the_local_state_as_terraform_output_gives_them(make_loaders, workdir, tf_env, tmp_path):  # noqa: F811
    """With the default local backend and workspace the outputs come from terraform.tfstate, where
    ``terraform output`` reads them: the same values as the real binary prints, sensitive ones masked
    unless asked, and no Terraform process. Without a local state Terraform is asked."""
    wrapper, commands = recorder(tmp_path)
    set_nodes(workdir, {"edge-1": "192.0.2.10"})
    module = make_loaders(pillar_for(workdir), host_opts(tf_env, wrapper)).modules.hecate_terraform
    assert module.run()["applied"] is True
    before = len(commands())
    printed = subprocess.run([str(TERRAFORM), "output", "-json"], cwd=workdir, env={**os.environ, **tf_env}, capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr
    real = {name: item["value"] for name, item in json.loads(printed.stdout).items()}
    assert real["hecate_edge_ipv4"] == ["192.0.2.10"]
    assert module.output(show_sensitive=True) == real
    masked = module.output()
    assert masked["token_digest"] == "<sensitive>" and masked["hecate_edge_ipv4"] == real["hecate_edge_ipv4"]
    assert module.dns_targets() == {"ipv4": ["192.0.2.10"], "ipv6": []}
    assert commands()[before:] == []

    (workdir / "terraform.tfstate").rename(workdir / "elsewhere.tfstate")  # no local state: Terraform answers
    try:
        assert module.output() == {} and commands()[before:] == ["output"]
    finally:
        (workdir / "elsewhere.tfstate").rename(workdir / "terraform.tfstate")
