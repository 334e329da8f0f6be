#!/usr/bin/env bash
# Set up .venv with drtool and everything its local target and tests need.
# Safe to run again: it reinstalls only when pyproject.toml or the pins changed.
#
# environment/requirements.txt pins the model's image in DataRobot; installing
# under those pins as constraints makes the local DRUM server run the very
# versions DataRobot will (tests/test_environment.py checks they agree).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))'; then
  echo "drtool needs Python 3.11 or 3.12; $("$python" --version 2>&1) found." >&2
  echo "Set PYTHON=/path/to/python3.11 and run again." >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.drtool-installed
wanted=$(cat pyproject.toml environment/requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "Installing drtool with its local and dev extras into .venv (a few minutes the first time)..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[local,dev]' \
    --constraint environment/requirements.txt
  echo "$wanted" > "$stamp"
fi
