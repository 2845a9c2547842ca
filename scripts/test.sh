#!/usr/bin/env bash
# The project's test command: set-up, lint, type check, tests. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
