#!/usr/bin/env bash
# Installs, from Debian's packages, the ecosystem programs the end-to-end
# tests talk to (today: the real Prometheus Alertmanager), where missing.
set -euo pipefail

need=()
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 \
  || need+=(prometheus-alertmanager)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "ensure-test-tools: installing ${need[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Only the program is needed: no service is started for it.
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
