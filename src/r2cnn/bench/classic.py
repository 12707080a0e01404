"""``r2cnn bench classic``: peak memory (RSS) of the classic Table 1 rows, next to an anchor in the same run.

Each row trains and predicts in its own child process on a store of ``--sketches`` built-in sketches (2/3 train,
1/3 test per class: TU-Berlin's 3-fold proportions; default 20,000 sketches, TU-Berlin's size); its peak resident
memory comes from the kernel (``wait4``'s ``ru_maxrss``). The anchor is a child that imports the same libraries
and reads the same store without fitting anything, so the ratio is what the row itself adds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELP = "classic Table 1 rows: peak RSS of train + predict on N sketches, vs. importing and reading the store"

DEFAULT_PRESETS = ("cpu-hog-svm", "cpu-ensemble-matching", "cpu-mkl-svm", "cpu-fisher-vector")

_ANCHOR = """
import numpy as np, sklearn.svm, sklearn.cluster, sklearn.mixture, skimage.feature, cv2
from r2cnn.data.store import SketchStore
import r2cnn.classic.runner
s = SketchStore({data!r})
print(sum(len(s.sketch_points(i)) for i in range(len(s))))
"""

_ROW = """
import json, time
from pathlib import Path
from r2cnn.presets import get_preset
from r2cnn.classic.runner import ClassicRunner
r = ClassicRunner()
t = time.perf_counter()
model = r.train(get_preset({preset!r}), Path({data!r}), Path({out!r}), seed=0)
t_train = time.perf_counter() - t
rep = r.evaluate(model, Path({data!r}), "test")
print(json.dumps(dict(train_seconds=t_train, top1=rep["top1"], top5=rep["top5"], count=rep["count"],
                      model_bytes=model.stat().st_size)))
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS), metavar="PRESET",
                   help=f"classic presets (default: {' '.join(DEFAULT_PRESETS)})")
    p.add_argument("--sketches", type=int, default=20000, help="built-in sketches in the store (default 20000)")
    p.add_argument("--data", type=Path, help="use this store instead of generating one")
    p.add_argument("--work-dir", type=Path, help="where the store and runs go (default: a temp dir)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")


def _child(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh Python; -> (peak RSS in MiB, its stdout). Raises on failure."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=dict(os.environ))
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        from r2cnn.errors import R2CNNError
        raise R2CNNError(f"bench classic: child failed with status {proc.returncode}")
    return usage.ru_maxrss / 1024, out  # Linux reports KiB


def run(args) -> int:
    from r2cnn.data.builtin import CLASSES
    from r2cnn.data.store import prepare
    from r2cnn.engine.report import table

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="r2cnn-bench-classic-"))
    data = args.data
    if data is None:
        per_class = -(-args.sketches // len(CLASSES))
        train = round(per_class * 2 / 3)
        data = work / f"builtin-{args.sketches}"
        prepare(out=data, builtin=per_class, split_sizes=(train, 0, per_class - train), seed=0)
    anchor_mib, _ = _child(_ANCHOR.format(data=str(data)))
    rows, results = [], {"data": str(data), "anchor_mib": anchor_mib, "rows": {}}
    for preset in args.presets:
        start = time.perf_counter()
        peak, out = _child(_ROW.format(preset=preset, data=str(data), out=str(work / preset)))
        info = json.loads(out.strip().splitlines()[-1])
        info.update(peak_rss_mib=peak, ratio_to_anchor=peak / anchor_mib, wall_seconds=time.perf_counter() - start)
        results["rows"][preset] = info
        rows.append((preset, f"{peak:.0f}", f"{peak / anchor_mib:.2f}", f"{info['train_seconds']:.0f}",
                     f"{info['top1']:.3f}", str(info["count"])))
        print(f"{preset}: peak RSS {peak:.0f} MiB, train {info['train_seconds']:.0f} s, test top-1 "
              f"{info['top1']:.3f}", flush=True)  # each row as it ends: a full run takes hours at paper scale
    print(f"data: {data}; anchor (imports + reading the store): {anchor_mib:.0f} MiB peak RSS")
    print(table(rows, ["preset", "peak RSS MiB", "x anchor", "train s", "test top-1", "test sketches"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0
