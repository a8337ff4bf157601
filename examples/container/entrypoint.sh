#!/bin/sh
# Container entrypoint: settle what depends on the environment, then `exec` baton so that it
# replaces this shell as PID 1. The command (CMD) is the app.
#   --stop-timeout 8s    below the grace period the runtime gives a stop before SIGKILL:
#                        Docker's is 10 s unless raised (docker run --stop-timeout,
#                        compose's stop_grace_period: see compose.yaml), Kubernetes' is
#                        terminationGracePeriodSeconds (see ../kubernetes/deployment.yaml).
#                        Raise STOP_TIMEOUT only together with the grace period.
#   --drain-timeout 6s   below --stop-timeout: what an old generation gets to finish, at a
#                        reload as at a stop. Long requests need both raised.
#   --user node          the app runs unprivileged; baton binds first (ports < 1024 too).
#   --metrics            /healthz for the orchestrator's readiness probe.
set -eu
exec baton start \
  --listen "0.0.0.0:${PORT:-3000}" \
  --workers "${WORKERS:-auto}" \
  --user node \
  --drain-timeout "${DRAIN_TIMEOUT:-6s}" \
  --stop-timeout "${STOP_TIMEOUT:-8s}" \
  --metrics "0.0.0.0:9464" \
  --log-format json \
  -- "$@"
