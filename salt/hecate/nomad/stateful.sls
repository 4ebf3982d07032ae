# hecate.nomad.stateful: the jobs that keep data (eos-hecate-deploy.yaml stage "stateful").
include:
  - hecate.nomad.postgresql
  - hecate.nomad.redis
