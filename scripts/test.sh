#!/usr/bin/env bash
# Set up a virtual environment and run the test suite (README "Run the tests").
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-env.sh
python -m ruff check pipeline stages schemas tests benchmarks
python -m pytest "$@"
