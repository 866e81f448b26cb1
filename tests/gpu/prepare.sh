#!/usr/bin/env bash
# Fills .gpu/ (ignored by git) with what tests/gpu/run.sh needs on a GPU machine, and prints the size of
# what a device call would carry (at most 64 MiB: the working tree plus .gpu). docs/gpu.md.
#
#   bash tests/gpu/prepare.sh          # from the repository root, with .venv made (make install)
#
# * .gpu/spconv-cu126-py312.tar.xz   spconv + cumm for Python 3.12 (../shared/tools/gpu-bundle.sh; ~43 MiB)
# * .gpu/wheels/                     pydantic (+ pydantic_core, annotated_types, typing_extensions,
#                                    typing_inspection), tqdm and pybind11 (``import spconv.pytorch`` imports it)
#                                    for Python 3.12 manylinux x86_64 (~3 MiB)
# * .gpu/mp20-grid.npz               the MP-20 subset for the short training (tests/gpu/prepare.py; ~2.5 MiB)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
BUNDLE_TOOL=${GPU_BUNDLE_TOOL:-../shared/tools/gpu-bundle.sh}
mkdir -p .gpu/wheels

if [ ! -s .gpu/spconv-cu126-py312.tar.xz ]; then
  if [ ! -f "$BUNDLE_TOOL" ]; then
    echo "prepare: $BUNDLE_TOOL not found: the spconv bundle cannot be built (set GPU_BUNDLE_TOOL)" >&2
    exit 1
  fi
  bash "$BUNDLE_TOOL" .gpu
fi

ver() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
want=(pydantic=="$(ver pydantic)" pydantic_core=="$(ver pydantic_core)" annotated_types=="$(ver annotated_types)"
      typing_extensions=="$(ver typing_extensions)" typing_inspection=="$(ver typing_inspection)" tqdm=="$(ver tqdm)"
      pybind11=="$(ver pybind11)")
rm -f .gpu/wheels/*.whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/wheels "${want[@]}" 2> >(grep -v "^WARNING: Location" >&2)

if [ ! -s .gpu/mp20-grid.npz ]; then
  "$PY" tests/gpu/prepare.py --out .gpu/mp20-grid.npz
fi

# what a device call carries: tracked and untracked-not-ignored files, plus .gpu
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r stat -c %s 2>/dev/null \
        | awk '{s += $1} END {print s + 0}')
gpu=$(find .gpu -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
awk -v t="$tree" -v g="$gpu" 'BEGIN {
  m = 1048576; printf "prepare: the call would carry %.1f MiB: working tree %.1f MiB + .gpu %.1f MiB (limit 64 MiB)\n",
  (t + g) / m, t / m, g / m; exit (t + g > 64 * m) }' || { echo "prepare: over the 64 MiB a call may carry" >&2; exit 1; }
ls -l .gpu .gpu/wheels
