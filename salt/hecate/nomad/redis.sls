# hecate.nomad.redis: authentik's Redis on a host volume (stateful stage).
# Rendered from pillar by salt://hecate/nomad/redis.nomad.j2; plan-diff deploy (docs/nomad.md).
hecate-redis:
  nomad_job.present:
    - name: {{ salt['config.get']('hecate:nomad:jobs:redis:id', 'hecate-redis') }}
    - source: salt://hecate/nomad/redis.nomad.j2
