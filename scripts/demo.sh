#!/usr/bin/env bash
# Set up a virtual environment and run the main job: the demo on the synthetic corpus.
# Extra arguments go to `aamflow demo`, e.g. `bash scripts/demo.sh --out /tmp/demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-env.sh
aamflow demo "$@"
