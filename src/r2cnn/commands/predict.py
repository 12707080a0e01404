"""``r2cnn predict``: top-k classes with probabilities for each sketch in the given files."""

from __future__ import annotations

import argparse

HELP = "classify sketch files (ndjson, npz, bin, svg) with a checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("files", nargs="+", metavar="FILE", help="sketch files in any supported format")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON object per sketch instead of a table")
    p.add_argument("--format", dest="fmt", help="input format when the extension does not say")
    p.add_argument("--on-error", default="raise", choices=["raise", "skip"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=64)


def _where(sketch) -> str:
    meta = sketch.meta
    pos = meta.get("line", meta.get("record"))
    return f"{meta.get('source', '?')}" + (f":{pos}" if pos is not None else "")


def run(args) -> int:
    import json
    import sys

    from r2cnn.data.formats import read_sketches
    from r2cnn.engine.predict import Predictor
    from r2cnn.errors import ErrorPolicy, R2CNNError

    if args.top_k < 1:
        raise R2CNNError(f"--top-k must be at least 1, not {args.top_k}")
    predictor = Predictor(args.checkpoint, args.device)
    policy = ErrorPolicy(args.on_error)
    sketches = [s for path in args.files for s in read_sketches(path, fmt=args.fmt, policy=policy)]
    results = predictor.predict_many(sketches, args.top_k, args.batch_size)
    for sketch, top in zip(sketches, results):
        if args.json:
            print(json.dumps({"source": _where(sketch), "label": sketch.label,
                              "top": [{"class": c, "probability": p} for c, p in top]}, default=str))
        else:
            print(f"{_where(sketch)}: " + ", ".join(f"{c} {p:.3f}" for c, p in top))
    if policy.skipped:
        print(policy.summary(), file=sys.stderr)
    return 0
