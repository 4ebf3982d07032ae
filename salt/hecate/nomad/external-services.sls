# hecate.nomad.external-services: the services Nomad does not run (wazuh, jenkins, ... on fixed
# addresses) registered in Consul with their checks, from pillar hecate:consul:external_services
# (the seed's register-external-services.sh). Only services hecate registered are ever pruned.
{%- if ((pillar.get('hecate') or {}).get('consul') or {}).get('external_services') is not none %}
hecate-external-services:
  hecate_consul.external_services:
    - prune: true
{%- endif %}
