#!/usr/bin/env bash
# GPU checks of the differentiable rasteriser (issue 3), for a machine with a CUDA device:
#   1. the raster tests on CUDA (Triton backend vs. the reference, slow cross product included),
#   2. `r2cnn bench raster --device cuda` (JSON in $OUT/raster_gpu.json),
#   3. the memory-bandwidth floor of forward+backward at B=48, 224x224, C=8, next to the measured time.
# Usage: scripts/gpu_check.sh   (writes into $OUT, default runs/gpu_check)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
export MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000
unset TRITON_INTERPRET

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"

echo "== raster tests on CUDA"
"$PY" -m pytest tests/test_raster_triton.py -q -m "slow or not slow" -p no:cacheprovider 2>&1 | tee "$OUT/raster_tests_triton.txt"
"$PY" -m pytest tests/test_raster.py -q -p no:cacheprovider 2>&1 | tee "$OUT/raster_tests.txt"

echo "== r2cnn bench raster --device cuda"
"$PY" -m r2cnn bench raster --device cuda --repeat 50 --json "$OUT/raster_gpu.json" 2>&1 | tee "$OUT/raster_bench.txt"

echo "== bandwidth floor (B=48, 224x224, C=8, overlap=last)"
"$PY" - "$OUT/raster_gpu.json" <<'PYEOF' | tee "$OUT/raster_floor.txt"
import json, sys
import torch
import r2cnn.raster as R
from r2cnn.bench.raster import sample_sketches
from r2cnn.sketch import SketchBatch

name = torch.cuda.get_device_name()
peaks = {"H200": 4.8e12, "H100": 3.35e12}  # bytes/s, HBM peak from the data sheets
peak = next((v for k, v in peaks.items() if k in name), None)
batch = SketchBatch.from_sketches(sample_sketches(48))
geo = R.geometry(batch.points.cuda(), batch.offsets.cuda(), 224)
b, (h, w), c, e, p = geo.batch_size, geo.size, 8, geo.num_entries, geo.num_points
entry = geo.pixel.element_size() + geo.segment.element_size() + geo.alpha.element_size()
forward = b * h * w * c * 4 + e * entry + e * c * 4 + p * c * 4  # zero the image, read geometry, write pixels, read a
backward = e * entry + (p + 1) * 8 + e * c * 4 + p * c * 4  # read geometry + CSR, gather grad pixels, write grad a
total = forward + backward
measured = json.load(open(sys.argv[1]))["times_ms"].get("triton forward+backward C=8")
print(f"device {name}; entries {e}, points {p}; bytes: forward {forward / 1e6:.2f} MB, backward {backward / 1e6:.2f} MB")
if peak:
    floor_ms = total / peak * 1e3
    print(f"floor at {peak / 1e12:.2f} TB/s: {floor_ms * 1e3:.1f} us; measured forward+backward C=8: "
          f"{measured * 1e3:.1f} us ({measured / floor_ms:.1f}x the floor)")
else:
    print(f"unknown peak bandwidth for {name}: {total / 1e6:.2f} MB touched, measured {measured * 1e3:.1f} us")
PYEOF
echo "results in $OUT"
