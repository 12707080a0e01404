"""``r2cnn predict``: top-k classes with probabilities for each sketch in the given files."""

from __future__ import annotations

import argparse

HELP = "classify sketch files (ndjson, npz, bin, svg) with a checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r2cnn.commands.options import add_device, positive_int

    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `r2cnn train` (best.pt, last.pt)")
    p.add_argument("files", nargs="+", metavar="FILE", help="sketch files in any supported format")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes shown per sketch, most likely first")
    p.add_argument("--json", action="store_true", help="one JSON object per sketch instead of a table")
    p.add_argument("--format", dest="fmt", help="input format when the extension does not say (default: from it)")
    p.add_argument("--on-error", default="raise", choices=["raise", "skip"],
                   help="a bad record stops the command (raise) or is skipped and counted (skip)")
    add_device(p)
    p.add_argument("--batch-size", type=positive_int, default=64, help="sketches classified at once")


def _where(sketch, quote: bool = False) -> str:
    """``SOURCE[:LINE]``; with ``quote``, a source with a newline or another unprintable character is shown as a
    JSON string, so that each sketch stays on one line of the text output."""
    meta = sketch.meta
    pos = meta.get("line", meta.get("record"))
    source = str(meta.get("source", "?"))
    if quote and not source.isprintable():
        import json

        source = json.dumps(source)
    return source + (f":{pos}" if pos is not None else "")


def run(args) -> int:
    import json
    import sys

    from r2cnn.data.formats import read_sketches
    from r2cnn.engine.predict import Predictor
    from r2cnn.commands.options import resolve_device
    from r2cnn.errors import ErrorPolicy

    predictor = Predictor(args.checkpoint, resolve_device(args.device))
    policy = ErrorPolicy(args.on_error)
    sketches = [s for path in args.files for s in read_sketches(path, fmt=args.fmt, policy=policy)]
    results = predictor.predict_many(sketches, args.top_k, args.batch_size)
    for sketch, top in zip(sketches, results):
        if args.json:
            print(json.dumps({"source": _where(sketch), "label": sketch.label,
                              "top": [{"class": c, "probability": p} for c, p in top]}, default=str))
        else:
            print(f"{_where(sketch, quote=True)}: " + ", ".join(f"{c} {p:.3f}" for c, p in top))
    if policy.skipped:
        print(policy.summary(), file=sys.stderr)
    return 0
