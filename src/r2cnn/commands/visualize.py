"""``r2cnn visualize``: attention figures (paper Figs. 3-6), stroke importance and the deletion check."""

from __future__ import annotations

import argparse

from r2cnn.commands.options import add_device, resolve_device

HELP = ("attention figures for sketches of a split (paper Figs. 3-6), stroke importance, deletion check; --stats: "
        "attention spread and order correlations over a split")


def parse_ks(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (``""`` -> ``[]``), for ``--deletion-k``."""
    from r2cnn.errors import R2CNNError

    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise R2CNNError(f"--deletion-k expects comma-separated integers, not {text!r}") from None
    if any(k < 0 for k in ks):
        raise R2CNNError(f"--deletion-k: k must be >= 0, not {text!r}")
    return ks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a model with RNN attention (Sketch-R2CNN)")
    p.add_argument("--data", required=True, help="store directory made by `r2cnn prepare`")
    p.add_argument("--split", choices=["train", "valid", "test"],
                   help="default: test for the figures, valid for --stats (test only when asked for by name)")
    p.add_argument("--fold", type=int, help="k-fold stores: default the checkpoint's training fold")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, nargs="+", metavar="I", help="positions in the split (0-based)")
    which.add_argument("--sample", type=int, metavar="N", help="N random sketches of the split (default 6)")
    which.add_argument("--failures", type=int, metavar="N", help="N sketches the model gets wrong (Fig. 6)")
    p.add_argument("--compare", metavar="CNN_CHECKPOINT", help="a second model (CNN-only) whose top-3 is shown too")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--seed", type=int, default=0, help="for --sample, --failures and the deletion check")
    p.add_argument("--deletion-k", type=parse_ks, default="1,2,3", metavar="K,K,...",
                   help="numbers of strokes removed in the deletion check (default 1,2,3; '' skips the check)")
    p.add_argument("--deletion-max", type=int, default=5000, metavar="N",
                   help="deletion check on at most N sketches of the split, a seeded sample (0: all)")
    p.add_argument("--stats", action="store_true",
                   help="instead of figures: the attention's spread within each sketch, its Spearman correlation "
                        "with point order and stroke index, and its mean per stroke position, over the split "
                        "(attention-stats.json in --out; r2cnn.viz.attention_stats)")
    p.add_argument("--stats-max", type=int, default=5000, metavar="N",
                   help="--stats on at most N sketches of the split, a seeded sample (0: all; default 5000)")
    p.add_argument("--stretch", action="store_true", help="colour each sketch's own attention range, not [0, 1]")
    add_device(p)


def run(args) -> int:
    from r2cnn.viz.visualize import visualize

    if args.stats:
        return _stats(args)
    args.split = args.split or "test"
    result = visualize(args.checkpoint, args.data, args.out, split=args.split, fold=args.fold, index=args.index,
                       sample=args.sample, failures=args.failures, compare=args.compare, seed=args.seed,
                       deletion_ks=args.deletion_k, deletion_max=args.deletion_max, stretch=args.stretch,
                       device=resolve_device(args.device))
    for record in result["sketches"]:
        top = ", ".join(f"{t['class']} {t['probability']:.2f}" for t in record["top3"])
        verdict = {True: "correct", False: "wrong", None: "?"}[record["correct"]]
        print(f"{args.split} #{record['position']} ({record['label']}): {top} [{verdict}]")
    print(f"{len(result['files'])} files in {args.out} (overview: {args.out}/overview.png)")
    return 0


def _stats(args) -> int:
    import json
    from pathlib import Path

    from r2cnn.data.formats.common import write_file
    from r2cnn.errors import R2CNNError
    from r2cnn.viz.attention_stats import format_statistics, split_statistics

    if args.stats_max < 0:
        raise R2CNNError(f"--stats-max must be >= 0, not {args.stats_max}")
    split = args.split or "valid"  # diagnosing is a choice: the test split only when named
    stats = split_statistics(args.checkpoint, args.data, split=split, fold=args.fold, max_sketches=args.stats_max,
                             seed=args.seed, device=resolve_device(args.device))
    out = Path(args.out)
    write_file(out / "attention-stats.json", json.dumps(stats, indent=1))
    print(format_statistics(stats, f"{stats['model']} on {split}"))
    print(f"wrote {out / 'attention-stats.json'}")
    return 0
