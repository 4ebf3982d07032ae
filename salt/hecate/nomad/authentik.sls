# hecate.nomad.authentik: authentik server + worker (apps stage).
# Rendered from pillar by salt://hecate/nomad/authentik.nomad.j2; plan-diff deploy (docs/nomad.md).
hecate-authentik:
  nomad_job.present:
    - name: {{ salt['config.get']('hecate:nomad:jobs:authentik:id', 'hecate-authentik') }}
    - source: salt://hecate/nomad/authentik.nomad.j2
