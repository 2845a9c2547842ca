#!/usr/bin/env bash
# Creates (or refreshes) the project environment at .venv/ from the locked dependencies.
# Idempotent and quiet when nothing changed; needs only Python >= 3.11 and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never   # uv-managed Pythons come from GitHub, which may be unreachable
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check uv
fi
uv sync --frozen --quiet
bash scripts/prometheus-install.sh
