#!/usr/bin/env bash
# R2CNN vs CNN-only on the 5-class QuickDraw set (the first qd5 comparison): the same CPU preset pair, the same budget
# (4 epochs or 8 minutes each), model selection on a part carved out of qd5/train, the score on qd5/valid.
# Usage: scripts/qd5_compare.sh [QD5_DIR] [OUT_DIR]
set -euo pipefail
export MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000
D=${1:-$(dirname "$0")/../../shared/data/quickdraw/qd5}
OUT=${2:-runs/qd5-compare}
mkdir -p "$OUT"
# 9840+300 is the largest class (car); smaller classes are scaled down, so all of train is used, ~3% for validation
r2cnn prepare "$D/train" test="$D/valid" --split-sizes 9840,300,0 --out "$OUT/store"
for P in cpu-r2cnn cpu-cnn; do
  r2cnn train --preset "$P" --data "$OUT/store" --out "$OUT/run-$P" --epochs 4 --max-minutes 8 --seed 0
  r2cnn evaluate --checkpoint "$OUT/run-$P/best.pt" --data "$OUT/store" --split test --json "$OUT/eval-$P.json"
done
