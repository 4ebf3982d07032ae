"""Terraform as a backend of the engine: the ``terraform`` stage provisions the machines first (expand); its
outputs feed the later stages (edge addresses for DNS, node names for Nomad). It is never undone or rolled
back automatically: destroying machines is not a rollback."""

from hecatelib.engine.backend import CONTROLLER, EXPAND, Backend, Stage

BACKEND = Backend(
    name="terraform",
    section="terraform",
    stages=(Stage("terraform", CONTROLLER, "hecate.terraform", EXPAND),),
    undo_note="never undone automatically (destroying machines is not a rollback)",
    rolls_back=False,
)
