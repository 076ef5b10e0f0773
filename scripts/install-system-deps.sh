#!/usr/bin/env bash
# Installs the Debian packages the test suite starts for real (Prometheus + promtool,
# Alertmanager + amtool, docker-compose for offline validation), only when missing.
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v docker-compose >/dev/null || need+=(docker-compose)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # --no-install-recommends: docker-compose would otherwise pull a whole Docker engine in
  $sudo apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi
# The Debian packages may start their services on install; the tests start their own.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  pkill -x "${svc}" 2>/dev/null || true
done
