"""``r2cnn convert IN OUT``: convert sketches between QuickDraw ndjson, sketch-rnn npz, QuickDraw bin and SVG."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

HELP = "convert sketches between QuickDraw ndjson (raw/simplified), sketch-rnn npz, QuickDraw bin and SVG"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r2cnn.data.formats import FORMATS

    p.add_argument("input", help="a sketch file, or a folder of them (e.g. qd5/valid, or TU-Berlin's svg/<class>/<id>.svg)")
    p.add_argument("output", help="a file (format from its extension) or a folder (one file per class; needs --to)")
    p.add_argument("--from", dest="from_fmt", choices=FORMATS, help="input format (default: from each file's extension)")
    p.add_argument("--to", choices=FORMATS, help="output format (default: from OUTPUT's extension)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="bad record: stop with an error (default), or skip it and print counts by reason at the end")
    p.add_argument("--round", action="store_true",
                   help="round coordinates to integers for npz/bin (otherwise non-integer coordinates are an error)")


def run(args) -> int:
    from tqdm import tqdm

    from r2cnn.data.formats import read_sketches, write_sketches
    from r2cnn.errors import ErrorPolicy

    policy = ErrorPolicy(args.on_error)
    per_class = Counter()

    def counted(sketches):
        for sketch in tqdm(sketches, desc="convert", unit=" sketches", disable=None, file=sys.stderr):
            per_class[sketch.label] += 1
            yield sketch

    sketches = read_sketches(args.input, fmt=args.from_fmt, policy=policy)
    written, files = write_sketches(args.output, counted(sketches), fmt=args.to, policy=policy,
                                    round_coords=args.round)
    read = sum(per_class.values())
    print(f"read {read} sketches of {len(per_class)} classes from {args.input}; "
          f"wrote {written} sketches to {len(files)} files in {args.output}")
    if policy.counts:
        print(policy.summary())
    return 0
