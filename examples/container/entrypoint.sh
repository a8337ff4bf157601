#!/bin/sh
# Container entrypoint: settle what depends on the environment, then `exec` baton so that it
# replaces this shell as PID 1. The command (CMD) is the app.
#   --stop-timeout 25s   below the grace period: Docker's default is 10 s (docker stop -t),
#                        Kubernetes' terminationGracePeriodSeconds 30 s. Set it to fit.
#   --user node          the app runs unprivileged; baton binds first (ports < 1024 too).
#   --metrics            /healthz for the orchestrator's readiness probe.
set -eu
exec /app/node_modules/.bin/baton start \
  --listen "0.0.0.0:${PORT:-3000}" \
  --workers "${WORKERS:-auto}" \
  --user node \
  --stop-timeout "${STOP_TIMEOUT:-25s}" \
  --metrics "0.0.0.0:9464" \
  --log-format json \
  -- "$@"
