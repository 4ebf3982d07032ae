# hecate.nomad.core: the reverse proxy (stage "core").
include:
  - hecate.nomad.reverse-proxy
