#!/usr/bin/env bash
# Creates (or refreshes) the project environment at .venv/ from the locked dependencies.
# Idempotent and quiet when nothing changed; needs only Python >= 3.11 and PyPI.
#
# Bytecode is compiled here, once: for the installed packages by uv (--compile-bytecode) and for
# the project's own sources (an editable install, which uv leaves alone) by compileall. Without it
# every `llmtwin` command recompiles about 1,000 modules on start-up wherever Python may not write
# its cache (PYTHONDONTWRITEBYTECODE, a read-only checkout): seconds instead of milliseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never   # uv-managed Pythons come from GitHub, which may be unreachable
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check uv
fi
uv sync --frozen --quiet --compile-bytecode
.venv/bin/python -m compileall -q -j 0 llmtwin proto services >/dev/null
bash scripts/prometheus-install.sh
