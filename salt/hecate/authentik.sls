# authentik guards the pillar routes that have auth: (proxy providers, applications, the outpost's
# provider list, groups, policy bindings), in one pass; objects hecate owns that no route needs any
# more are removed. Run where the authentik API is reachable (hecate:authentik:url or :endpoint):
#   salt-call state.apply hecate.authentik [test=True]
hecate_authentik_protected_routes:
  authentik.protected_routes: []
