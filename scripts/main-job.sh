#!/bin/sh
# scripts/main-job.sh BUILD_DIR - the main job: train the document's CNN.
set -eu
build=${1:-build}
exec "$build/examples/quickstart" --epochs 2
