#!/usr/bin/env bash
# Installs Prometheus (`prometheus` and `promtool`) for the observability tests and `llmtwin up --observe`.
# Called by scripts/bootstrap.sh. Quiet and quick when they are already there. Installs Debian's
# `prometheus` package where it can (root and apt-get); otherwise says what to do and carries on:
# the tests that need Prometheus then skip, naming the reason.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Prometheus (Debian package 'prometheus', about 100 MB)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    fi
    exit 0
fi
cat >&2 <<'MSG'
note: Prometheus is not installed, and this script can only install it as root with apt-get.
      Install it yourself to run the Prometheus tests and `llmtwin up --observe`:
        Debian/Ubuntu: sudo apt-get install -y --no-install-recommends prometheus
        elsewhere:     put `prometheus` and `promtool` from https://prometheus.io/download/ on PATH
MSG
