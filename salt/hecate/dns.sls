# Public names from pillar hecate:dns and the routes' domains, in the zones of hecate:dns:provider
# (default hetzner: Hetzner Cloud DNS): one <provider>_dns.rrsets_managed per managed zone (read once,
# write only what differs, prune only hecate-labelled sets when hecate:dns:prune is true). Without a
# hecate:dns zone the stage is off.
# Run: salt-call state.apply hecate.dns [test=True]
# A deploy's expand step passes pillar hecate_prune=False (create and update only); its contract step,
# after the routes switched and verified, applies it again with hecate:dns:prune (hecatelib.engine.stages).
# Edge addresses: when hecate:terraform is configured, from the terraform outputs on this minion
# (hecate_edge_ipv4/ipv6, read-only); otherwise hecate:dns:targets.
{%- set dns = (pillar.get('hecate') or {}).get('dns') or {} %}
{%- set prune = pillar.get('hecate_prune') %}
{%- set provider = dns.get('provider') or 'hetzner' %}
{%- set targets = {} %}
{%- if (pillar.get('hecate') or {}).get('terraform') and 'hecate_terraform.dns_targets' in salt %}
{%-   set outputs = salt['hecate_terraform.dns_targets']() %}
{%-   if outputs.get('ipv4') or outputs.get('ipv6') %}
{%-     set targets = outputs %}
{%-   endif %}
{%- endif %}
{%- set zones = [] %}
{%- for zone in ([dns.get('zone')] if dns.get('zone') else []) + (dns.get('zones') or []) %}
{%-   if zone and (zone | lower | trim('.')) not in zones %}
{%-     do zones.append(zone | lower | trim('.')) %}
{%-   endif %}
{%- endfor %}
{%- if zones %}
{%- for zone in zones %}
hecate_dns_{{ zone }}:
  {{ provider }}_dns.rrsets_managed:
    - name: {{ zone | yaml_dquote }}
{%-   if targets %}
    - targets: {{ targets | json }}
{%-   elif (pillar.get('hecate') or {}).get('terraform') %}
    - awaiting_targets: true
{%-   endif %}
{%-   if prune is not none %}
    - prune: {{ prune | json }}
{%-   endif %}
{%- endfor %}
{%- else %}
hecate_dns_off:
  test.succeed_without_changes:
    - name: "hecate:dns has no zone: the DNS stage is off"
{%- endif %}
