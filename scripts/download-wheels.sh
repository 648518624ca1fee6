#!/usr/bin/env bash
# Download the wheels a lock file pins (by hash) for the images' Python 3.11 on x86_64 Linux:
#   scripts/download-wheels.sh LOCK DIR [PIP OPTION...]
# so that `docker build` installs them with no network of its own. Options go to pip: a lock
# with a package that has no wheel passes `--no-deps --no-binary NAME` (pip then takes that
# one's sdist; the lock pins every dependency, so none is missed).
# Environment: PYTHON, the interpreter whose pip downloads them [python3].
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 LOCK DIR [PIP OPTION...]" >&2
  exit 2
fi
"${PYTHON:-python3}" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
  --require-hashes -r "$1" -d "$2" "${@:3}"
