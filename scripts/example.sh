#!/usr/bin/env bash
# Set up, then run the main job on the bundled example, on the local target:
# make the example's CT images, load them, predict with a local DRUM server,
# and score the predictions against the actuals.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

drtool=.venv/bin/drtool
.venv/bin/python example/make_example.py example/data
"$drtool" load example/data --images example/data/images
"$drtool" predict --target local
"$drtool" submit-actuals --target local
