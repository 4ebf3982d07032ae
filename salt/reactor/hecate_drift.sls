# Reactor for hecate/drift/<minion>/<backend>: hand the report to the hecate runner, which decides by
# pillar hecate:reconcile:policy (alert: record and report; heal: re-apply the drifted stage under the
# deploy lock unless the drift exceeds max_changes). Enable it in the master config:
#   reactor:
#     - 'hecate/drift/*':
#       - salt://reactor/hecate_drift.sls
hecate_reconcile:
  runner.hecate.reconcile:
    - args:
      - minion: {{ tag.split('/')[2] }}
      - backend: {{ tag.split('/')[3] }}
