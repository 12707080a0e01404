"""``r2cnn prepare``: build a packed, memory-mapped sketch store (see :mod:`r2cnn.data.store`)."""

from __future__ import annotations

import argparse
import sys

HELP = "build a packed, memory-mapped sketch store from files or folders (or the built-in generator)"

EPILOG = """\
sources:
  FILE or FOLDER        .ndjson/.json, .npz, .bin, .svg (folders are searched recursively)
  train=PATH            every record of PATH goes to the train split (also valid=PATH, test=PATH), e.g.
                          r2cnn prepare train=qd5/train valid=qd5/valid --out data/qd5
labels: the file stem (ndjson, npz, bin), or the folder name (TU-Berlin <class>/<id>.svg), or --label-field.
splits: .npz files keep their own train/valid/test; other records are split per class by a seeded hash of
  key_id (--split-sizes, scaled down for small classes); SVG sources (or --folds K) get K cross-validation folds.
  Built-in sketches alone (--builtin N, no source) keep a tenth of each class for valid and one for test, at
  least min(5, N // 4) each (r2cnn.data.builtin.split_sizes; `r2cnn demo` splits the same way).
  When no source has validation records (e.g. train=A test=B), the validation part of --split-sizes is carved
  out of the train records of each class by the same hash, e.g.
                          r2cnn prepare train=qd5/train test=qd5/valid --split-sizes 9840,300,0 --out data/qd5
A rerun with unchanged sources and options does nothing ("up to date").
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="files or folders, optionally SPLIT=PATH")
    p.add_argument("--out", required=True, help="store directory to write")
    p.add_argument("--builtin", type=int, metavar="N_PER_CLASS", help="add N sketches per class of the built-in generator")
    p.add_argument("--split-sizes", metavar="TRAIN,VALID,TEST",
                   help="per-class split sizes for records without their own split (default: the paper's "
                        "70K/2.5K/2.5K, scaled down for a smaller class; --builtin N alone: a tenth of N each for "
                        "valid and test, at least min(5, N // 4), e.g. 60 -> 48/6/6)")
    p.add_argument("--folds", type=int, help="k-fold cross-validation (default 3 when any source is SVG)")
    p.add_argument("--fold-valid-fraction", type=float, default=0.1,
                   help="k-fold stores: fraction of the training folds used for validation (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split hash and of the built-in generator")
    p.add_argument("--label-field", metavar="FIELD", help="take the class from this metadata field (e.g. word)")
    p.add_argument("--split-from-folders", action="store_true",
                   help="a train/valid/test folder on a file's path gives its split")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="bad records: stop with an error (default) or skip and count them")
    p.add_argument("--simplify-raw", action="store_true",
                   help="run Google's raw -> simplified pipeline on raw QuickDraw records (ints 0..255, RDP 2)")
    p.add_argument("--dedupe-key-id", action="store_true",
                   help="keep the first record of each key_id in source order (e.g. drop the raw copies of "
                        "drawings a simplified source already gave)")
    p.add_argument("--force", action="store_true", help="rebuild even when the store is up to date")
    p.add_argument("--workers", type=int, default=1,
                   help="processes reading source files in parallel (default 1; the store is the same for any "
                        "count; not with --dedupe-key-id)")


def run(args) -> int:
    from r2cnn.data.store import prepare
    from r2cnn.data.store.splits import parse_split_sizes
    from r2cnn.errors import ErrorPolicy, R2CNNError

    policy = ErrorPolicy(args.on_error)
    try:
        store = prepare(args.sources, args.out, builtin=args.builtin,
                        split_sizes=parse_split_sizes(args.split_sizes) if args.split_sizes else None,
                        folds=args.folds,
                        fold_valid_fraction=args.fold_valid_fraction, seed=args.seed, label_field=args.label_field,
                        split_from_folders=args.split_from_folders, policy=policy, force=args.force,
                        simplify_raw=args.simplify_raw, dedupe_key_id=args.dedupe_key_id, workers=args.workers)
    except R2CNNError:
        if policy.counts:  # what --on-error skip dropped is the likely reason (every record skipped): say it
            print(policy.summary())
        raise
    print(store.summary())
    if not store.is_kfold and len(store.indices("valid")) == 0:
        print(f"warning: {args.out}: the validation split is empty, and `r2cnn train` needs one (best.pt is chosen "
              f"on it): give --split-sizes TRAIN,VALID,TEST with VALID > 0 (a train=PATH source gives up that part "
              f"when no source has validation records) or a valid=PATH source", file=sys.stderr)
    return 0
