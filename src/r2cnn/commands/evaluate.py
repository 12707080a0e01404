"""``r2cnn evaluate``: top-1/top-5, per-class accuracy, confusion matrix (JSON + PNG), partial sketches."""

from __future__ import annotations

import argparse

HELP = "evaluate a checkpoint: top-1/top-5, per class, confusion, partial sketches"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r2cnn.commands.options import add_device, non_negative_int, positive_int

    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `r2cnn train` (.pt) or a classic row's model (.npz)")
    p.add_argument("--data", required=True, help="store directory made by `r2cnn prepare`")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"], help="the split to evaluate on")
    p.add_argument("--fold", type=int, help="k-fold stores: default the checkpoint's training fold")
    p.add_argument("--json", metavar="FILE",
                   help="write the full report (per class, confusion) as JSON (default: printed summary only)")
    p.add_argument("--out", metavar="DIR",
                   help="write report.json and confusion.png into DIR (default: printed summary only)")
    add_device(p)
    p.add_argument("--workers", type=non_negative_int, default=0, help="data-loader worker processes")
    p.add_argument("--batch-size", type=positive_int, help="sketches per batch (default: the checkpoint's)")
    p.add_argument("--partial", type=_fractions, default=None, metavar="F,F,...",
                   help="stroke fractions of the partial-sketch passes, each a pass over the split (default "
                        "0.25,0.5,0.75,1; '1': whole sketches only, one pass, e.g. for 862,500 QuickDraw tests)")


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0.0 < v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"--partial takes fractions in (0, 1] separated by commas, not {text!r}")
    return values


# per-class accuracies printed: every class up to this many, else the lowest this many (the rest in the JSON report)
CLASSES_SHOWN = 20


def format_report(report: dict, full: str | None = None) -> str:
    """The summary: top-1/top-5, partial sketches, per-class top-1 (every class, or the :data:`CLASSES_SHOWN`
    lowest and a line saying so and where all are: ``full``, the JSON report written, if any)."""
    from r2cnn.engine.report import table

    lines = [f"{report['checkpoint']} on {report['data']} [{report['split']}]: {report['count']} sketches",
             f"top-1 {report['top1']:.4f}   top-5 {report['top5']:.4f}   ({report['sketches_per_s']:.0f} sketches/s)"]
    if "partial" in report:  # classic rows are evaluated on whole sketches only
        lines.append("partial sketches (" + report["partial_rounding"] + "): "
                     + "  ".join(f"{float(f):.0%}: {acc:.4f}" for f, acc in report["partial"].items()))
    ranked = sorted((acc, name) for name, acc in report["per_class"].items() if acc is not None)
    shown = ranked if len(ranked) <= CLASSES_SHOWN else ranked[:CLASSES_SHOWN]
    lines.append(table([(name, f"{acc:.4f}") for acc, name in shown],
                       ["class (lowest accuracy first)", "top-1"]))
    if len(shown) < len(ranked):
        lines.append(f"{len(shown)} of {len(ranked)} classes shown; all in "
                     + (full or "the JSON report (--json FILE or --out DIR)"))
    absent = len(report["per_class"]) - len(ranked)
    if absent:
        lines.append(f"{absent} class{'es' if absent > 1 else ''} without a sketch in this split")
    return "\n".join(lines)


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from r2cnn.classic.modelfile import is_classic_model
    from r2cnn.commands.options import resolve_device
    from r2cnn.data.formats.common import write_file
    from r2cnn.engine.chance import chance_warning
    from r2cnn.engine.evaluate import evaluate_checkpoint
    from r2cnn.engine.report import confusion_png

    if is_classic_model(args.checkpoint):
        from r2cnn.classic.runner import ClassicRunner
        report = ClassicRunner().evaluate(Path(args.checkpoint), Path(args.data), args.split, args.fold)
    else:
        from r2cnn.engine.evaluate import PARTIAL_FRACTIONS
        report = evaluate_checkpoint(args.checkpoint, args.data, split=args.split, fold=args.fold,
                                     device=resolve_device(args.device), workers=args.workers,
                                     batch_size=args.batch_size, partial=args.partial or PARTIAL_FRACTIONS)
    if args.out:
        out = Path(args.out)
        report["confusion_png"] = str(confusion_png(report["confusion"], report["classes"], out / "confusion.png"))
        write_file(out / "report.json", json.dumps(report, indent=1))
    if args.json:
        write_file(Path(args.json), json.dumps(report, indent=1))
    print(format_report(report, full=args.json or (str(Path(args.out) / "report.json") if args.out else None)))
    if args.out:
        print(f"report: {Path(args.out) / 'report.json'}, confusion matrix: {report['confusion_png']}")
    warning = chance_warning(report["top1"], report["count"], len(report["classes"]),
                             what=f"{args.split} top-1 of {args.checkpoint}",
                             causes="the model guesses; likely trained too few steps or at a poor learning rate (its "
                                    "run's log.jsonl has the loss and lr), or on other data than this store")
    if warning:
        print(warning, file=sys.stderr)
    return 0
