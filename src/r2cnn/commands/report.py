"""``r2cnn report RUN_DIR``: one static HTML page for a training run (opens offline, images embedded)."""

from __future__ import annotations

import argparse

from r2cnn.commands.options import add_device, resolve_device

HELP = "one static HTML page for a training run: curves, confusion, worst classes, attention, partial sketches"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r2cnn.commands.visualize import parse_ks

    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `r2cnn train` (log.jsonl, best.pt)")
    p.add_argument("--checkpoint", help="default RUN_DIR/best.pt, else RUN_DIR/last.pt")
    p.add_argument("--data", help="the store to evaluate on (default: the one of a saved evaluation in RUN_DIR)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--out", metavar="FILE", help="default RUN_DIR/report.html")
    p.add_argument("--force", action="store_true",
                   help="replace --out even when it is not a report written by this command")
    p.add_argument("--examples", type=int, default=6, metavar="N", help="sketches in the attention overview")
    p.add_argument("--worst", type=int, default=3, metavar="N", help="worst classes shown with examples")
    p.add_argument("--deletion-k", type=parse_ks, default="1,2,3", metavar="K,K,...",
                   help="strokes removed in the deletion check (default 1,2,3; '' skips it)")
    p.add_argument("--deletion-max", type=int, default=2000, metavar="N",
                   help="deletion check on at most N sketches of the split, a seeded sample (0: all)")
    p.add_argument("--seed", type=int, default=0)
    add_device(p)


def run(args) -> int:
    from r2cnn.errors import R2CNNError
    from r2cnn.viz.report import build_report

    for name in ("examples", "worst", "deletion_max"):
        if getattr(args, name) < 0:
            raise R2CNNError(f"--{name.replace('_', '-')} must be >= 0, not {getattr(args, name)}")
    path = build_report(args.run_dir, checkpoint=args.checkpoint, data=args.data, split=args.split, out=args.out,
                        examples=args.examples, worst=args.worst, deletion_ks=args.deletion_k,
                        deletion_max=args.deletion_max, seed=args.seed, device=resolve_device(args.device),
                        force=args.force)
    print(f"report: {path}")
    return 0
