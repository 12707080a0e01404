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


def format_report(report: dict) -> str:
    from r2cnn.engine.report import table

    lines = [f"{report['checkpoint']} on {report['data']} [{report['split']}]: {report['count']} sketches",
             f"top-1 {report['top1']:.4f}   top-5 {report['top5']:.4f}   ({report['sketches_per_s']:.0f} sketches/s)"]
    if "partial" in report:  # classic rows are evaluated on whole sketches only
        lines.append("partial sketches (" + report["partial_rounding"] + "): "
                     + "  ".join(f"{float(f):.0%}: {acc:.4f}" for f, acc in report["partial"].items()))
    worst = sorted(((acc, name) for name, acc in report["per_class"].items() if acc is not None))[:10]
    lines.append(table([(name, f"{acc:.4f}") for acc, name in worst],
                       ["class (lowest accuracy first)", "top-1"]))
    return "\n".join(lines)


def run(args) -> int:
    import json
    from pathlib import Path

    from r2cnn.classic.modelfile import is_classic_model
    from r2cnn.commands.options import resolve_device
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
        (out / "report.json").write_text(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(format_report(report))
    if args.out:
        print(f"report: {Path(args.out) / 'report.json'}, confusion matrix: {report['confusion_png']}")
    return 0
