#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on this machine, beside the default node, for
# the chaos suite: `up` starts r1@localhost, r2@localhost, r3@localhost on
# 127.0.0.1:5681-5683 and joins r2 and r3 to r1; `down` stops them and
# removes their files; `url` prints the AMQP URLs, comma-separated.
#
# Each node has its own name, ports (AMQP, and distribution at +20000),
# mnesia, log and pid paths, an empty plugins file and a config that pins
# its listener (the machine's own config pins 5672), all owned by the
# rabbitmq user, whose Erlang cookie they share.
set -euo pipefail

BASE="${ALERTPOST_CLUSTER_DIR:-/tmp/alertpost-cluster}"
NODES=(1 2 3)
port() { echo $((5680 + $1)); }
node() { echo "r$1@localhost"; }
export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
ctl() { $SUDO timeout 120 rabbitmqctl "$@"; }

start_node() {
  local n=$1 dir="$BASE/r$1" p
  p=$(port "$n")
  $SUDO mkdir -p "$dir/mnesia" "$dir/log"
  echo "[]." | $SUDO tee "$dir/enabled_plugins" >/dev/null
  printf 'listeners.tcp.local = 127.0.0.1:%s\nloopback_users.guest = true\n' "$p" |
    $SUDO tee "$dir/rabbitmq.conf" >/dev/null
  $SUDO chown -R rabbitmq:rabbitmq "$BASE"
  $SUDO su rabbitmq -s /bin/sh -c "cd /var/lib/rabbitmq && env HOME=/var/lib/rabbitmq \
    RABBITMQ_NODENAME=$(node "$n") RABBITMQ_NODE_PORT=$p RABBITMQ_DIST_PORT=$((p + 20000)) \
    RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log RABBITMQ_PID_FILE=$dir/pid \
    RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf \
    /usr/lib/rabbitmq/bin/rabbitmq-server -detached"
}

wait_node() {
  for _ in $(seq 1 120); do
    if ctl -n "$(node "$1")" -q await_startup >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "rabbitmq-cluster: $(node "$1") did not start; see $BASE/r$1/log" >&2
  return 1
}

case "${1:-}" in
  up)
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in "${NODES[@]}"; do wait_node "$n"; done
    for n in 2 3; do
      ctl -n "$(node "$n")" -q stop_app
      ctl -n "$(node "$n")" -q join_cluster "$(node 1)"
      ctl -n "$(node "$n")" -q start_app
    done
    ctl -n "$(node 1)" -q await_startup
    echo "rabbitmq-cluster: up: $("$0" url)"
    ;;
  down)
    for n in "${NODES[@]}"; do ctl -n "$(node "$n")" -q stop >/dev/null 2>&1 || true; done
    $SUDO rm -rf "$BASE"
    ;;
  url)
    urls=()
    for n in "${NODES[@]}"; do urls+=("amqp://guest:guest@127.0.0.1:$(port "$n")/%2f"); done
    (IFS=,; echo "${urls[*]}")
    ;;
  *)
    echo "usage: $0 up|down|url" >&2
    exit 2
    ;;
esac
