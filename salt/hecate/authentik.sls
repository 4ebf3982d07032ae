# authentik guards the pillar routes that have auth: (proxy providers, applications, the outpost's
# provider list, groups, policy bindings), in one pass; objects hecate owns that no route needs any
# more are removed (hecate:authentik:prune). Run where the authentik API is reachable:
#   salt-call state.apply hecate.authentik [test=True]
# A deploy's expand step passes pillar hecate_prune=False: create and update only; its contract step,
# after the routes switched and verified, applies it again with the pillar's prune (hecatelib.engine.stages).
{%- set prune = pillar.get('hecate_prune') %}
hecate_authentik_protected_routes:
  authentik.protected_routes:
{%- if prune is not none %}
    - prune: {{ prune | json }}
{%- else %}
    []
{%- endif %}
