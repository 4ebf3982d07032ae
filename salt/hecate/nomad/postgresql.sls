# hecate.nomad.postgresql: authentik's PostgreSQL on a host volume (stateful stage).
# Rendered from pillar by salt://hecate/nomad/postgresql.nomad.j2; plan-diff deploy (docs/nomad.md).
hecate-postgresql:
  nomad_job.present:
    - name: {{ salt['config.get']('hecate:nomad:jobs:postgresql:id', 'hecate-postgresql') }}
    - source: salt://hecate/nomad/postgresql.nomad.j2
