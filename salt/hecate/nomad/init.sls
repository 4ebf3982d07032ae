# hecate.nomad: every job, in the seed's stage order (stateful -> core -> apps). A stage runs only
# when the one before it succeeded: a failed deployment stops the later stages.
include:
  - hecate.nomad.external-services
  - hecate.nomad.stateful
  - hecate.nomad.core
  - hecate.nomad.apps

extend:
  hecate-reverse-proxy:
    nomad_job.present:
      - require:
        - sls: hecate.nomad.stateful
  hecate-authentik:
    nomad_job.present:
      - require:
        - sls: hecate.nomad.core
  hecate-helen-bridge:
    nomad_job.present:
      - require:
        - sls: hecate.nomad.core
