#!/usr/bin/env bash
# Makes sure RabbitMQ answers on this machine: installs it from Debian's
# packages where it is missing, starts it where it is down, and waits until
# `rabbitmq-diagnostics -q ping` succeeds.
#
# ALERTPOST_SKIP_RABBITMQ=1 skips all of this (a broker elsewhere, named by
# ALERTPOST_AMQP_URL).
set -euo pipefail

if [ "${ALERTPOST_SKIP_RABBITMQ:-}" = 1 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "ensure-rabbitmq: not root and no sudo; install and start rabbitmq-server yourself" >&2
    exit 1
  fi
fi

ping_ok() { $SUDO rabbitmq-diagnostics -q ping >/dev/null 2>&1; }

if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
  echo "ensure-rabbitmq: installing rabbitmq-server from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq rabbitmq-server >/dev/null
fi
export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"

if ping_ok; then
  exit 0
fi

echo "ensure-rabbitmq: starting RabbitMQ"
# Where systemd runs, the packaged service is the right way; elsewhere
# (containers, CI machines) start the node detached.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl start rabbitmq-server || $SUDO rabbitmq-server -detached
else
  $SUDO rabbitmq-server -detached
fi

for _ in $(seq 1 90); do
  if ping_ok; then
    # The node answers; give the AMQP listener its moment too.
    for _ in $(seq 1 30); do
      if (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
        echo "ensure-rabbitmq: RabbitMQ is up"
        exit 0
      fi
      sleep 1
    done
  fi
  sleep 1
done
echo "ensure-rabbitmq: RabbitMQ did not come up within 2 minutes; see /var/log/rabbitmq/" >&2
exit 1
