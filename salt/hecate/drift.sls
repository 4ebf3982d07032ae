# Turn on the drift beacon on an edge minion: one GET of Caddy's config per interval, an event
# hecate/drift/<minion>/caddy when hecate's part differs from what hecate last applied.
#   salt -G roles:hecate-proxy state.apply hecate.drift
{%- set reconcile = salt['pillar.get']('hecate:reconcile', {}) %}

hecate_drift_beacon:
  beacon.present:
    - name: hecate_drift
    - save: True
    - enable: True
    - interval: {{ reconcile.get('interval', 60) | int }}
