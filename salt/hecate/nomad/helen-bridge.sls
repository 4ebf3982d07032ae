# hecate.nomad.helen-bridge: the HTTP bridge to the local Helen (apps stage).
# Rendered from pillar by salt://hecate/nomad/helen-bridge.nomad.j2; plan-diff deploy (docs/nomad.md).
hecate-helen-bridge:
  nomad_job.present:
    - name: {{ salt['config.get']('hecate:nomad:jobs:helen-bridge:id', 'hecate-helen-bridge') }}
    - source: salt://hecate/nomad/helen-bridge.nomad.j2
