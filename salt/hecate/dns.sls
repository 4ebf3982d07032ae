# Public names in Hetzner Cloud DNS from pillar hecate:dns and the routes' domains: one
# hetzner_dns.rrsets_managed per managed zone (read once, write only what differs, prune only
# hecate-labelled sets when hecate:dns:prune is true). Without a hecate:dns zone the stage is off.
# Run: salt-call state.apply hecate.dns [test=True]
# Edge addresses from terraform: pass them as pillar, e.g. pillar='{"hecate": {"dns": {"targets": {...}}}}'.
{%- set dns = (pillar.get('hecate') or {}).get('dns') or {} %}
{%- set zones = [] %}
{%- for zone in ([dns.get('zone')] if dns.get('zone') else []) + (dns.get('zones') or []) %}
{%-   if zone and (zone | lower | trim('.')) not in zones %}
{%-     do zones.append(zone | lower | trim('.')) %}
{%-   endif %}
{%- endfor %}
{%- if zones %}
{%- for zone in zones %}
hecate_dns_{{ zone }}:
  hetzner_dns.rrsets_managed:
    - name: {{ zone | yaml_dquote }}
{%- endfor %}
{%- else %}
hecate_dns_off:
  test.succeed_without_changes:
    - name: "hecate:dns has no zone: the DNS stage is off"
{%- endif %}
