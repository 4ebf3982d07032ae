# hecate.nomad.apps: authentik and the Helen bridge (stage "apps").
include:
  - hecate.nomad.authentik
  - hecate.nomad.helen-bridge
