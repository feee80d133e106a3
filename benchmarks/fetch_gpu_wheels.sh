#!/usr/bin/env bash
# Download the wheels that benchmarks/gpu_run.sh installs on the offline GPU machine (Python 3.12 there).
#   bash benchmarks/fetch_gpu_wheels.sh [DIR]     default DIR: benchmarks/wheels (git-ignored)
# All but bitsandbytes are pure Python; bitsandbytes comes as its manylinux x86-64 wheel. --no-deps because
# the machine's image already holds everything else they need (see gpu_wheels.txt).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:-$here/wheels}"
mkdir -p "$dest"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64 -d "$dest" -r "$here/gpu_wheels.txt"
ls -1 "$dest"/*.whl
du -sh "$dest"
