# salt-run state.orchestrate hecate.orchestrate [test=True]
#
# The seed's nine steps, corrected and made safe (docs/orchestration.md, docs/architecture.md). Each
# step below is one call of the engine that salt-run hecate.deploy runs in one go:
#   begin      validate the pillar, take the Consul deploy lock, record the run as running, snapshot
#              Caddy's config and the Nomad job versions
#   expand     terraform, the Nomad jobs, authentik objects and DNS records: created and updated,
#              nothing deleted
#   switch     Caddy's routes (one reload), then verify: every route through every edge
#   contract   authentik objects and DNS records the pillar no longer has are removed
#   undo       only when a step failed (onfail): every applied stage rolled back, under the lock
#   finish     always, last: the record (success, or failed with the stage and reason), the lock released
# Which steps run and where comes from the pillar: salt-run hecate.stages shows the list.
#
# test=True: Salt does not run runner steps in test mode, so a dry run applies every stage's SLS with
# test=True on its minions instead: every diff, no lock, no record, no write anywhere.
{%- set planned = salt['saltutil.runner']('hecate.stages') %}
{%- if planned.get('retcode') %}

hecate_refused:
  test.fail_without_changes:
    - name: {{ planned.get('error', 'the pillar is invalid') | yaml_dquote }}
{%- elif opts.get('test') %}
{%- for stage in planned.stages if stage.sls is defined and stage.phase != 'contract' %}

hecate_{{ stage.name }}:
  salt.state:
    - tgt: {{ stage.tgt | yaml_dquote }}
    - tgt_type: {{ stage.tgt_type }}
    - sls:
      - {{ stage.sls }}
{%- endfor %}
{%- else %}
{%- set run = planned.run %}

hecate_begin:
  salt.runner:
    - name: hecate.begin
    - run: {{ run }}
{%- set ns = namespace(previous='hecate_begin') %}
{%- for stage in planned.stages %}

hecate_{{ stage.name }}:
  salt.runner:
    - name: hecate.stage
    - run: {{ run }}
    - step: {{ stage.name }}
    - require:
      - salt: {{ ns.previous }}
{%- set ns.previous = 'hecate_' ~ stage.name %}
{%- endfor %}

hecate_undo:
  salt.runner:
    - name: hecate.undo
    - run: {{ run }}
    - require:
      - salt: hecate_begin
    - onfail:
{%- for stage in planned.stages %}
      - salt: hecate_{{ stage.name }}
{%- endfor %}

hecate_finish:
  salt.runner:
    - name: hecate.finish
    - run: {{ run }}
    - order: last
{%- endif %}
