#!/usr/bin/env bash
# Installs the ecosystem's own programs and libraries the end-to-end tests
# check alertpost against, where missing:
# - the real Prometheus Alertmanager, and promtool (package `prometheus`),
#   from Debian's packages;
# - Chromium (Debian's `chromium`), which the console's tests drive
#   headless;
# - the Standard Webhooks reference library (PyPI `standardwebhooks`),
#   PyYAML, openapi-spec-validator, schemathesis and Playwright (its
#   Python package only: it drives Debian's Chromium, no browser is
#   downloaded), in a virtual environment under target/test-python
#   (tests find them there).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
apt_install() {
  echo "ensure-test-tools: installing $* from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # Only the programs are needed: no service is started for them.
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need=()
if ! command -v prometheus-alertmanager >/dev/null 2>&1 && ! command -v alertmanager >/dev/null 2>&1; then
  need+=(prometheus-alertmanager)
fi
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi

VENV=target/test-python
if ! "$VENV/bin/python" -c 'import standardwebhooks, yaml, openapi_spec_validator, schemathesis, playwright' >/dev/null 2>&1; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  echo "ensure-test-tools: installing standardwebhooks, PyYAML, openapi-spec-validator, schemathesis and playwright from PyPI into $VENV"
  # Versions pinned: schemathesis's checks and Playwright's API change
  # between releases.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    standardwebhooks pyyaml openapi-spec-validator schemathesis==4.32.5 playwright==1.65.2
fi
