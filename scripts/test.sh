#!/usr/bin/env bash
# Set up, then run the linter and the whole test suite (pytest). Extra
# arguments go to pytest, e.g. scripts/test.sh -k predict -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

.venv/bin/ruff check drtool model tests benchmarks example
.venv/bin/python -m pytest "$@"
