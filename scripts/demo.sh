#!/usr/bin/env bash
# The project's demo command: set-up, then the main job on the embedded default.
# `llmtwin up` starts a private nats-server and every service of the twin as its own process,
# runs the demo scenario under the four serving policies, prints the comparison table and
# writes the results and plots to out/demo/ (one folder per policy, latency_cdf.png, logs/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/llmtwin up demo --policies colocated,colocated-chunked,disaggregated,accellm --out out/demo "$@"
