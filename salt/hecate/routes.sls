# Caddy's routes from pillar hecate:reverse_proxy:caddy:routes, in one admin request (none when
# nothing differs). Run on the edge minion: salt-call state.apply hecate.routes [test=True]
hecate_routes:
  caddy.routes_managed: []
