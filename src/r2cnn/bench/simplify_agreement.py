"""How close :func:`r2cnn.data.transforms.raw_to_simplified` comes to Google's own raw -> simplified output.

Quick, Draw!'s raw and simplified files hold the same drawings under the same ``key_id``; this runs our pipeline on
the raw drawings and compares with Google's simplified ones (by default the data folder's ``quickdraw/raw-sample``
and ``quickdraw/simplified-sample``, found as :mod:`r2cnn.bench._paths` says; they share about 7,700 key_ids). Metrics, each over the matched drawings:

- ``exact``: fraction whose output is identical to Google's (same strokes, same integer points);
- ``same_point_counts``: fraction with the same number of points in every stroke;
- ``stroke_point_counts_equal``: fraction of strokes with the same number of points;
- ``point_count_ratio``: mean of (our points / Google's points) per drawing;
- ``coord_mae``: mean absolute coordinate error, point by point, over drawings with the same point counts;
- ``chamfer_mean`` / ``chamfer_median`` / ``chamfer_p95``: symmetric Chamfer distance between the two vertex
  sets (mean of both directions' mean nearest-vertex distance), in 0..255 units.

Run: ``python -m r2cnn.bench.simplify_agreement [--raw DIR] [--simplified DIR] [--limit N]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HELP = "agreement of our raw -> simplified pipeline with Google's simplified Quick, Draw! files"
_RAW, _SIMPLIFIED = "quickdraw/raw-sample", "quickdraw/simplified-sample"


def load_pairs(raw_dir: str | Path, simplified_dir: str | Path, limit: int | None = None) -> list[tuple]:
    """``[(raw Sketch, Google's simplified Sketch)]`` for the key_ids present in both folders' ``*.ndjson``,
    sorted by key_id; ``limit`` takes an evenly spaced subset."""
    from r2cnn.data.formats import read_sketches

    def by_key(folder):
        out = {}
        for path in sorted(Path(folder).glob("*.ndjson")):
            for sketch in read_sketches(path):
                out[str(sketch.meta["key_id"])] = sketch
        return out

    raw, simplified = by_key(raw_dir), by_key(simplified_dir)
    keys = sorted(set(raw) & set(simplified))
    if limit is not None and limit < len(keys):
        keys = keys[:: max(1, len(keys) // limit)][:limit]
    return [(raw[k], simplified[k]) for k in keys]


def measure(pairs: list[tuple]) -> dict:
    """The metrics of the module docstring for ``pairs`` of (raw, Google-simplified) sketches."""
    import numpy as np

    from r2cnn.data.transforms import raw_to_simplified

    if not pairs:
        raise ValueError("no matching drawings to compare")
    exact = same_counts = strokes_equal = strokes_total = 0
    ratios, chamfer, mae = [], [], []
    raw_to_simplified(pairs[0][0])  # compile (or load) the numba kernels outside the timing
    start = time.perf_counter()
    ours = [raw_to_simplified(raw) for raw, _ in pairs]
    seconds = time.perf_counter() - start
    for mine, (_, google) in zip(ours, pairs):
        counts_mine = np.diff(mine.stroke_bounds)
        counts_google = np.diff(google.stroke_bounds)
        if len(counts_mine) == len(counts_google):
            strokes_equal += int(np.sum(counts_mine == counts_google))
            if np.array_equal(counts_mine, counts_google):
                same_counts += 1
                err = np.abs(mine.points[:, :2] - google.points[:, :2])
                mae.append(float(err.mean()))
                exact += bool(err.max() == 0)
        strokes_total += len(counts_google)
        ratios.append(mine.num_points / google.num_points)
        a, b = mine.points[:, :2].astype(np.float64), google.points[:, :2].astype(np.float64)
        d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
        chamfer.append(0.5 * (d.min(axis=1).mean() + d.min(axis=0).mean()))
    n = len(pairs)
    return {
        "drawings": n,
        "exact": exact / n,
        "same_point_counts": same_counts / n,
        "stroke_point_counts_equal": strokes_equal / strokes_total,
        "point_count_ratio": float(np.mean(ratios)),
        "coord_mae": float(np.mean(mae)) if mae else float("nan"),
        "chamfer_mean": float(np.mean(chamfer)),
        "chamfer_median": float(np.median(chamfer)),
        "chamfer_p95": float(np.percentile(chamfer, 95)),
        "us_per_drawing": seconds / n * 1e6,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw", type=Path, help=f"folder of raw ndjson files (default: the data folder's {_RAW})")
    p.add_argument("--simplified", type=Path, help="folder of Google's simplified ndjson files, matched on key_id "
                                                   f"(default: the data folder's {_SIMPLIFIED})")
    p.add_argument("--limit", type=int, default=None, help="compare at most this many drawings")


def run(args) -> int:
    from r2cnn.bench._paths import find_data, not_found
    from r2cnn.errors import R2CNNError

    for name, default in (("raw", _RAW), ("simplified", _SIMPLIFIED)):
        if getattr(args, name) is None:
            folder = find_data(default, quiet=True)
            if folder is None:
                raise R2CNNError(f"bench simplify-agreement: {not_found(default)}; or give --{name}")
            setattr(args, name, folder)
        elif not Path(getattr(args, name)).is_dir():
            raise R2CNNError(f"{getattr(args, name)}: not a folder of ndjson files")
    pairs = load_pairs(args.raw, args.simplified, args.limit)
    if not pairs:
        raise R2CNNError(f"no key_id is in both {args.raw} and {args.simplified}")
    print(json.dumps(measure(pairs), indent=1))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=HELP)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
