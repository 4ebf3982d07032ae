# The terraform stage on the controller: render salt/hecate/terraform/*.tf.j2 from pillar into
# hecate:terraform:workdir, init (no -upgrade), plan -detailed-exitcode, refuse deletes/replacements
# unless allowed, apply the plan file, read the outputs. salt-call state.apply hecate.terraform [test=True]
hecate_terraform:
  hecate_terraform.applied: []
