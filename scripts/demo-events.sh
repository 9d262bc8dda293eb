#!/usr/bin/env bash
# `make demo-events`: a webhook starts a workflow. Starts `sluice server` on a fresh SLUICE_HOME, stores
# the webhook EventSource and the sensor from examples/events/, POSTs a push with curl, waits for the
# build workflow and shows it; the server is stopped on the way out.
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE=.venv/bin/sluice
export SLUICE_HOME=${SLUICE_HOME:-$(mktemp -d)}
PORT=${SLUICE_DEMO_PORT:-12000}
"$SLUICE" server --no-cron --webhook-port "12000=$PORT" >"$SLUICE_HOME/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$SLUICE_HOME/server.sock" ] && break; sleep 0.1; done
"$SLUICE" apply examples/events/webhook.yaml examples/events/build-on-push.yaml
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
echo '$ curl -X POST -d {"ref":"refs/heads/main","commit":"4f2a9c1"} http://127.0.0.1:'"$PORT"'/push'
curl -fsS -X POST -H 'Content-Type: application/json' \
  -d '{"ref": "refs/heads/main", "commit": "4f2a9c1"}' "http://127.0.0.1:$PORT/push"; echo
for _ in $(seq 100); do
  name=$("$SLUICE" list -o name 2>/dev/null | head -1 || true)
  [ -n "$name" ] && break; sleep 0.1
done
[ -n "$name" ] || { echo "no workflow was started; server log:"; cat "$SLUICE_HOME/server.log"; exit 1; }
"$SLUICE" wait "$name"
"$SLUICE" get "$name"
"$SLUICE" logs "$name"
"$SLUICE" events tail
