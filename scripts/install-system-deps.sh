#!/usr/bin/env bash
# Installs the Debian packages the test suite starts for real (Prometheus + promtool,
# Alertmanager + amtool, docker-compose for offline validation), only when missing.
#
# It never stops a process: a user's own Prometheus, or a parallel test run's, is left alone.
# Instead it keeps the packages' services from starting at all during the install
# (policy-rc.d answering 101 is Debian's documented "do not start daemons" switch).
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v docker-compose >/dev/null || need+=(docker-compose)
((${#need[@]})) || exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
policy=${DRIFTD_POLICY_RC:-/usr/sbin/policy-rc.d}  # overridable so the test can run this script safely
ours=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 0755 "$policy"
  ours=1
fi
cleanup() { [ -z "$ours" ] || $sudo rm -f "$policy"; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends: docker-compose would otherwise pull a whole Docker engine in
$sudo apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
