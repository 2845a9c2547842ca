#!/usr/bin/env bash
# The project's demo command: set-up, then the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/llmtwin preserve --hardware ascend-910b2 --model llama-3-70b --tp 4 --batch 8 \
    --context 16384 --precision int8 --out out/demo "$@"
