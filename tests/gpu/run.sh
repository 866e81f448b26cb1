#!/usr/bin/env bash
# The GPU check (docs/gpu.md): from a checkout plus .gpu/ (tests/gpu/prepare.sh made it), unpack the spconv
# bundle and the wheels into a temporary folder, put it and src/ on PYTHONPATH, and run tests/gpu/check.py,
# which writes ONE JSON: $OUT/gpu-check.json when $OUT is set, else the path given, else ./gpu-check.json.
#
#   bash tests/gpu/run.sh [RESULT.json] [check.py options: --cpu, --budget-s S, --skip PIECE ...]
#   make gpu-check
#
# Needs only python3 with torch, numpy, pandas and pyarrow. Fits in 5 minutes: the unpacking takes ~10 s,
# check.py starts no piece after --budget-s (default 240 s here), and the whole run is killed at
# GPU_CHECK_TIMEOUT (default 290 s), leaving the JSON of the pieces that finished.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
result=""
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then result=$1; shift; fi
if [ -z "$result" ]; then result=${OUT:+$OUT/gpu-check.json}; result=${result:-gpu-check.json}; fi

say() { echo "gpu-check: $*"; }
site=$(mktemp -d "${TMPDIR:-/tmp}/rhosym-gpu-site.XXXXXX")
trap 'rm -rf "$site"' EXIT
t0=$SECONDS
if [[ " $* " == *" --cpu "* ]]; then
  say "--cpu: dry run with this machine's own packages (.gpu not unpacked)"
else
  pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)
  [ "$pyver" = 3.12 ] || say "$PY is Python $pyver: the carried spconv bundle and pydantic_core are built for 3.12 and will not import"
  if [ -s .gpu/spconv-cu126-py312.tar.xz ]; then
    tar -xJf .gpu/spconv-cu126-py312.tar.xz -C "$site" 2>/dev/null \
      || "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
           .gpu/spconv-cu126-py312.tar.xz "$site" \
      || say "could not unpack .gpu/spconv-cu126-py312.tar.xz (truncated in transfer? rebuild with ../shared/tools/gpu-bundle.sh)"
  else
    say ".gpu/spconv-cu126-py312.tar.xz absent: run tests/gpu/prepare.sh and carry .gpu (the Sparse 3D CNN pieces will fail)"
  fi
  shopt -s nullglob
  wheels=(.gpu/wheels/*.whl)
  if [ ${#wheels[@]} -eq 0 ]; then
    say "no wheels in .gpu/wheels: pydantic and tqdm must already be installed here (tests/gpu/prepare.sh downloads them)"
  fi
  for w in "${wheels[@]}"; do
    "$PY" -m zipfile -e "$w" "$site" || say "could not unpack $w"
  done
  say "unpacked .gpu in $((SECONDS - t0)) s ($(du -sm "$site" | cut -f1) MB)"
fi
export PYTHONPATH="$site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
timeout "${GPU_CHECK_TIMEOUT:-290}" "$PY" tests/gpu/check.py --out "$result" --budget-s "${GPU_CHECK_BUDGET:-240}" "$@"
rc=$?
[ $rc -eq 124 ] && say "killed at GPU_CHECK_TIMEOUT=${GPU_CHECK_TIMEOUT:-290} s; $result holds the pieces that finished"
[ -f "$result" ] || say "no result written at $result"
exit $rc
