# salt-run state.orchestrate hecate.orchestrate [test=True]
#
# The seed's nine steps, corrected (docs/orchestration.md):
#   1 validate the pillar and the prerequisites   -> salt-run hecate.validate (ext_pillar included)
#   2+3 terraform: render, init (no -upgrade), plan -detailed-exitcode, gate, apply the plan file
#   4 Nomad stateful -> core (the reverse proxy, bootstrap config + --resume, admin on a unix socket)
#   5 Nomad authentik, then the authentik objects for routes with auth:
#   6 Caddy routes through the admin API (one reload, none when nothing differs), then DNS
#     (targets from the terraform outputs)
#   7 the applications
#   8 verify: every route answers through every edge
#   9 the deployment record in Consul KV (cas=0)
# Which stages run and where comes from the pillar (hecate:deployment:targets, and a stage is on only
# when its section is configured): salt-run hecate.stages shows the list. With test=True every
# salt.state step is a dry run on its minions and the runner steps (verify, record) are skipped, so
# nothing anywhere is written. For a locked, recorded, auto-rolled-back deploy use salt-run hecate.deploy.
{%- set stages = salt['saltutil.runner']('hecate.stages') %}

hecate_validate:
  salt.runner:
    - name: hecate.validate
{%- set ns = namespace(previous='hecate_validate') %}
{%- for stage in stages %}

hecate_{{ stage.name }}:
  salt.state:
    - tgt: {{ stage.tgt | yaml_dquote }}
    - tgt_type: {{ stage.tgt_type }}
    - sls:
      - {{ stage.sls }}
    - failhard: True
    - require:
      - salt: {{ ns.previous }}
{%- set ns.previous = 'hecate_' ~ stage.name %}
{%- endfor %}

hecate_verify:
  salt.runner:
    - name: hecate.verify
    - require:
      - salt: {{ ns.previous }}

hecate_record:
  salt.runner:
    - name: hecate.record
    - require:
      - salt: hecate_verify
