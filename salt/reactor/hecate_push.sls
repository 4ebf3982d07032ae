# Reactor for a push to the pillar's git repository: deploy the new commit now, without waiting for the
# master schedule of hecate.follow (which stays as the fallback). Enable it in the master config, for the
# event a git hook fires, or salt-api's webhook, or both:
#   reactor:
#     - 'hecate/push':                      # hooks/post-receive: salt-run event.send hecate/push
#       - salt://reactor/hecate_push.sls
#     - 'salt/netapi/hook/hecate/push':     # salt-api rest_cherrypy: POST /hook/hecate/push
#       - salt://reactor/hecate_push.sls
# Nothing of the event reaches the runner (its data is whatever the sender put there): hecate.follow fetches
# the branch itself (hecate:reconcile:follow_branch), deploys the new commit only when its pillar validates
# (an invalid one is skipped, event hecate/follow/skipped), and does nothing when it is already deployed.
# A push while a deploy runs waits for the deploy lock (up to 120 s), then deploys the newest commit.
hecate_follow_push:
  runner.hecate.follow:
    - wait: 120
