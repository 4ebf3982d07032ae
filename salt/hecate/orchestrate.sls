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
# Each step is a hecate_run state (_states/hecate_run.py): its changes are what the step changed, none when
# it changed nothing, so a no-op run reports changed=0 (salt.runner reports every runner return as changes).
# test=True runs the same steps as dry runs: begin makes one dry run of every stage (no lock, no record),
# each step shows its stage's part of it (result None where it would change something).
{%- set planned = salt['saltutil.runner']('hecate.stages') %}
{%- if planned.get('retcode') %}

hecate_refused:
  test.fail_without_changes:
    - name: {{ planned.get('error', 'the pillar is invalid') | yaml_dquote }}
{%- else %}
{%- set run = planned.run %}

hecate_begin:
  hecate_run.begin:
    - run: {{ run }}
{%- set ns = namespace(previous='hecate_begin') %}
{%- for stage in planned.stages %}

hecate_{{ stage.name }}:
  hecate_run.step:
    - run: {{ run }}
    - step: {{ stage.name }}
    - require:
      - hecate_run: {{ ns.previous }}
{%- set ns.previous = 'hecate_' ~ stage.name %}
{%- endfor %}

hecate_undo:
  hecate_run.undo:
    - run: {{ run }}
    - require:
      - hecate_run: hecate_begin
    - onfail:
{%- for stage in planned.stages %}
      - hecate_run: hecate_{{ stage.name }}
{%- endfor %}

hecate_finish:
  hecate_run.finish:
    - run: {{ run }}
    - order: last
{%- endif %}
