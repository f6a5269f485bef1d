#!/usr/bin/env bash
# Prepare this checkout for benchmarks/gpu_session.sh (run HERE, on the machine without a GPU):
# copies BCCD into data/bccd and fetches the one wheel the GPU machine's image lacks
# (pycocotools, for Python 3.12) into .whl/. Both folders are git-ignored and travel with carry:
#   bash benchmarks/gpu_prepare.sh [BCCD_FOLDER]      (default ../shared/datasets/bccd)
#   then the device tool: run(command="bash benchmarks/gpu_session.sh", carry=["data/bccd", ".whl"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-../shared/datasets/bccd}
PY=${PY:-.venv/bin/python}
PYCOCOTOOLS=${PYCOCOTOOLS:-pycocotools==2.0.11}
if [ ! -d "$SRC/Annotations" ] || [ ! -d "$SRC/JPEGImages" ]; then
    echo "gpu_prepare: error: $SRC is not the BCCD VOC folder (Annotations/, JPEGImages/); pass its path" >&2
    exit 2
fi
mkdir -p data
rm -rf data/.bccd.tmp && cp -r "$SRC" data/.bccd.tmp && rm -rf data/bccd && mv data/.bccd.tmp data/bccd
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$PYCOCOTOOLS"
du -sh data/bccd .whl
