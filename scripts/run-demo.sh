#!/usr/bin/env bash
# `make run`: the whole path on one machine, in a minute, no RabbitMQ:
#
#   demo receiver (127.0.0.1:9000)  ◄── alertpost run (examples/alertpost.toml):
#                                        ingest (:8080) → embedded queue → worker
#
# `make run-rabbitmq` (ALERTPOST_DEMO_BACKEND=rabbitmq) runs the same on
# RabbitMQ instead: a worker, the ingest and `alertpost publish`.
#
# Starts the processes, sends the sample alerts in examples/ (the events of
# an NDJSON file, and one payload of each source format through the
# ingest), shows them arriving, then keeps running until Ctrl-C.
# ALERTPOST_DEMO_EXIT=1 stops once the samples have arrived.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release
RUN=.run
export ALERTPOST_PREFIX="${ALERTPOST_PREFIX:-alertpost-demo}"
export RUST_LOG="${RUST_LOG:-info}"
INGEST=127.0.0.1:8080
ADMIN=127.0.0.1:9464
mkdir -p "$RUN"
: >"$RUN/receiver.log"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

# GET/POST over bash's /dev/tcp: no curl needed on a fresh machine.
http() { # method host port path [file] → prints the status code
  local method=$1 host=$2 port=$3 path=$4 file=${5:-} len=0
  [ -n "$file" ] && len=$(wc -c <"$file")
  exec 3<>"/dev/tcp/$host/$port" || return 1
  printf '%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' \
    "$method" "$path" "$host" "$len" >&3
  [ -n "$file" ] && cat "$file" >&3
  local status
  read -r _ status _ <&3 || status=000
  exec 3<&-
  echo "$status"
}
wait_ready() { # name host port
  for _ in $(seq 1 100); do
    [ "$(http GET "$2" "$3" /readyz 2>/dev/null)" = 200 ] && return 0
    sleep 0.2
  done
  echo "$1 did not become ready; its log is in $RUN/" >&2
  exit 1
}

echo "▶ demo receiver on http://127.0.0.1:9000 (prints every webhook it gets)"
"$BIN/alertpost-demo-receiver" 127.0.0.1:9000 >"$RUN/receiver.log" 2>&1 &
pids+=($!)
BACKEND="${ALERTPOST_DEMO_BACKEND:-embedded}"
if [ "$BACKEND" = rabbitmq ]; then
  echo "▶ worker with examples/alertpost.toml (admin on http://$ADMIN)"
  "$BIN/alertpost" worker --config examples/alertpost.toml --data-dir "$RUN/data" \
    --admin-addr "$ADMIN" 2>"$RUN/worker.log" &
  pids+=($!)
  echo "▶ ingest on http://$INGEST"
  "$BIN/alertpost" ingest --listen "$INGEST" 2>"$RUN/ingest.log" &
  pids+=($!)
else
  echo "▶ alertpost run with examples/alertpost.toml: ingest on http://$INGEST, admin on http://$ADMIN,"
  echo "  the queue in $RUN/embedded (no RabbitMQ; \`make run-rabbitmq\` runs the same on RabbitMQ)"
  "$BIN/alertpost" run --config examples/alertpost.toml --data-dir "$RUN/embedded" \
    --listen "$INGEST" --admin-addr "$ADMIN" 2>"$RUN/worker.log" &
  pids+=($!)
fi
wait_ready worker 127.0.0.1 9464
wait_ready ingest 127.0.0.1 8080

echo
if [ "$BACKEND" = rabbitmq ]; then
  echo "▶ alertpost publish examples/events.ndjson"
  "$BIN/alertpost" publish examples/events.ndjson 2>>"$RUN/publish.log"
else
  # The NDJSON file's events, as one JSON array.
  { printf '['; paste -sd, examples/events.ndjson; printf ']'; } >"$RUN/events.json"
  status=$(http POST 127.0.0.1 8080 /v1/events "$RUN/events.json")
  echo "▶ POST /v1/events ← examples/events.ndjson: HTTP $status"
fi
events=3
for format in alertmanager grafana hertzbeat grafana-oncall aporia; do
  status=$(http POST 127.0.0.1 8080 "/v1/ingest/$format" "examples/payloads/$format.json")
  echo "▶ POST /v1/ingest/$format ← examples/payloads/$format.json: HTTP $status"
  n=1
  [ "$format" = alertmanager ] && n=2
  events=$((events + n))
done

# The sample config routes these 9 events three ways: all of them to
# /alerts, the 6 critical or high ones to /oncall, the 2 of team db to
# /team-db.
expected=17
echo
echo "▶ waiting for the $expected webhooks the sample config routes ($events events)"
last=-1
for _ in $(seq 1 150); do
  got=$(grep -c '^────' "$RUN/receiver.log" || true)
  [ "$got" -ge "$expected" ] && [ "$got" = "$last" ] && break
  last=$got
  sleep 0.3
done
cat "$RUN/receiver.log"
echo
echo "✔ $got webhooks arrived (expected $expected). Logs: $RUN/*.log"
if [ "$got" -ne "$expected" ]; then
  echo "✘ expected $expected webhooks; see $RUN/worker.log" >&2
  exit 1
fi
if [ "${ALERTPOST_DEMO_EXIT:-}" = 1 ]; then
  exit 0
fi
cat <<HINT

Everything keeps running. Try, in another terminal:
  curl -s -XPOST http://$INGEST/v1/events -d '{"source":"me","status":"firing","title":"Hello"}'
  curl -s http://$ADMIN/readyz
  tail -f $RUN/receiver.log
Ctrl-C stops the demo.
HINT
tail -n 0 -f "$RUN/receiver.log"
