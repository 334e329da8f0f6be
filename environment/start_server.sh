#!/bin/sh
# Entrypoint of the model's image: serve the model in $CODE_DIR at $ADDRESS
# with DRUM. Both come from the Dockerfile's environment, which DRUM reads;
# any arguments given to the container are passed on to `drum server`.
set -e
cd "${CODE_DIR:?CODE_DIR must name the model folder}"
echo "Starting drum server for ${CODE_DIR} at ${ADDRESS:-the default address}"
exec drum server "$@"
