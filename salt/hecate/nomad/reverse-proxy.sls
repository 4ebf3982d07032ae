# hecate.nomad.reverse-proxy: Caddy + nginx stream proxy + coturn on the edge nodes (core stage).
# Rendered from pillar by salt://hecate/nomad/reverse-proxy.nomad.j2; plan-diff deploy (docs/nomad.md).
hecate-reverse-proxy:
  nomad_job.present:
    - name: {{ salt['config.get']('hecate:nomad:jobs:reverse-proxy:id', 'hecate-reverse-proxy') }}
    - source: salt://hecate/nomad/reverse-proxy.nomad.j2
