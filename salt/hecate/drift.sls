# Turn on the drift beacon on an edge minion: one GET of Caddy's config per interval, an event
# hecate/drift/<minion>/caddy when hecate's part differs from what hecate last applied.
#   salt -G roles:hecate-proxy state.apply hecate.drift
# enabled: Salt's key (salt/beacons/__init__.py Beacon.process). disable_during_state_run: while a state
# run is in progress on the minion (a hand-run state.apply too) the beacon skips its read, so a half-applied
# run is never reported as drift.
{%- set reconcile = salt['pillar.get']('hecate:reconcile', {}) %}

hecate_drift_beacon:
  beacon.present:
    - name: hecate_drift
    - save: True
    - enabled: True
    - disable_during_state_run: True
    - interval: {{ reconcile.get('interval', 60) | int }}
