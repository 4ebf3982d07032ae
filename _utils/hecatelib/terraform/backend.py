"""Terraform as a backend of the engine: the ``terraform`` stage provisions the machines first (expand); its
outputs feed the later stages (edge addresses for DNS, node names for Nomad). It is never undone or rolled
back automatically: destroying machines is not a rollback."""

from hecatelib.engine.backend import CONTROLLER, EXPAND, Backend, Stage
from hecatelib.terraform import render as terraform_render

BACKEND = Backend(
    name="terraform",
    section="terraform",
    schema=terraform_render.PILLAR_SCHEMA,
    check=terraform_render.check_pillar,
    stages=(Stage("terraform", CONTROLLER, "hecate.terraform", EXPAND),),
    undo_note="never undone automatically (destroying machines is not a rollback)",
    rolls_back=False,
)
