#!/usr/bin/env bash
# One run that proves every CUDA path of the project on a lent GPU, in under 8 minutes (docs/architecture.md
# "On a GPU"): `r2cnn bench gpu` (src/r2cnn/bench/gpu/) runs seven sections, each under its own time cap,
# and writes $OUT/summary.json plus one log per section.
#
#   scripts/gpu_check.sh                       # on the GPU machine: the device tool sets $OUT
#   scripts/gpu_check.sh --device cpu --quick  # the CPU rehearsal (tests/test_gpu_check.py)
#   scripts/gpu_check.sh --only train,export   # a rerun of some sections; `r2cnn bench gpu --help` for the rest
#
# Python: $PYTHON when set, else the checkout's .venv when there is one, else python3. The device machine has no venv:
# its python3 holds torch, torchvision, triton, numpy, numba, onnx, onnxruntime, pytest and hypothesis
# (/work/.library/device/KINDS.md), and r2cnn runs from src/ through PYTHONPATH (nothing is installed, nothing
# fetched). Without torch nothing can run: torch cannot travel with the tree (its wheels are far over the 64 MiB
# the device copies), so the script says so and stops.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 OMP_WAIT_POLICY=PASSIVE
unset TRITON_INTERPRET  # the tests' conftest sets it again where there is no GPU

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu_check: $("$PY" -c 'import sys; print(sys.executable)' 2>/dev/null || echo "$PY") has no torch;" \
         "the device image is expected to hold it (KINDS.md), and torch cannot be carried" \
         "(over 64 MiB): nothing ran" >&2
    printf '{"error": "no torch in %s: nothing ran"}\n' "$PY" >"$OUT/summary.json"
    exit 3
fi
exec "$PY" -m r2cnn bench gpu --out "$OUT" "$@"
