#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian/Ubuntu machine and runs it:
#   Debian packages: nginx, prometheus (+ promtool), espeak-ng, sox, postgresql, redis-server, nodejs + npm
#   (real tools, no mocks)
#   a virtual environment .venv with asrtk installed editable plus its test extras
#   then: python -m pytest  (extra arguments are passed to pytest, e.g. ./scripts/test.sh -m "not slow")
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
# the server binaries (initdb, pg_ctl) are not on PATH in Debian: look where the package puts them
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# the Kubernetes manifest tests check prometheus-operator objects with its published models (npm)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # The packages would start their own nginx, prometheus, postgresql and redis services; the tests start (and stop,
  # by PID) their own instances. Debian's policy-rc.d hook (exit 101) keeps the packages from
  # starting anything, so nothing has to be stopped afterwards: no process is ever killed by name.
  policy=/usr/sbin/policy-rc.d
  added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod 755 "$policy" && added_policy=1
    trap '[ -n "$added_policy" ] && $SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$added_policy" ]; then $SUDO rm -f "$policy"; added_policy=""; fi
  trap - EXIT
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
echo "== installing asrtk (editable) with test extras"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

echo "== running tests"
exec .venv/bin/python -m pytest "$@"
