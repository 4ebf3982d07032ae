# Reactor for hecate/drift/<minion>/<backend>: hand the report to the hecate runner, which decides by
# pillar hecate:reconcile:policy (alert: record and report; heal: re-apply the drifted stage under the
# deploy lock unless the drift exceeds max_changes). Enable it in the master config:
#   reactor:
#     - 'hecate/drift/*/*':
#       - salt://reactor/hecate_drift.sls
# Two levels, and anything but hecate/drift/<minion>/<backend> renders to nothing (the runner's own
# alerts are hecate/alert/drift, outside this pattern).
# The minion is the event's sender as the master authenticated it (data['id']), not a name from the tag;
# hecate.reconcile refuses anything but one plain minion id.
{%- set parts = tag.split('/') %}
{%- if parts | length == 4 and data.get('id') %}
hecate_reconcile:
  runner.hecate.reconcile:
    - args:
      - minion: {{ data['id'] | yaml_dquote }}
      - backend: {{ parts[3] | yaml_dquote }}
{%- endif %}
