#!/usr/bin/env bash
# Build the gateway image: scripts/build-image.sh IMAGE
#
# Downloads the locked wheels (by hash, from requirements.lock) into ./wheelhouse with the
# host's pip, then runs `docker build`, which therefore needs no network of its own.
# Environment:
#   BASE_IMAGE   the Python base [the Dockerfile's default, python:3.11-slim-bookworm]
#   BUILD_LABEL  a value for the image label pg-gateway.build (gives each build its own ID)
#   PYTHON       the interpreter whose pip downloads the wheels [python3]
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 IMAGE" >&2
  exit 2
fi
image=$1
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}

PYTHON="$python" "$root/scripts/download-wheels.sh" "$root/requirements.lock" "$root/wheelhouse"

args=(--tag "$image")
[[ -n "${BASE_IMAGE:-}" ]] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[[ -n "${BUILD_LABEL:-}" ]] && args+=(--label "pg-gateway.build=$BUILD_LABEL")
DOCKER_BUILDKIT=0 docker build "${args[@]}" "$root"
