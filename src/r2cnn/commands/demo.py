"""``r2cnn demo`` (``make demo``), the main job: built-in data -> train R2CNN and the CNN-only baseline -> compare.

1. Prepare the built-in sketches (:mod:`r2cnn.data.builtin`) into ``OUT/data`` (a no-op when up to date), split
   as ``r2cnn prepare --builtin N`` splits them (:func:`r2cnn.data.builtin.split_sizes`).
2. Train the fast CPU presets ``cpu-r2cnn`` (Sketch-R2CNN: BiLSTM attention -> NLR -> CNN) and ``cpu-cnn``
   (the same rasteriser and CNN with constant intensity), each for the preset's epochs within the same
   wall-clock budget, choosing the best checkpoint on the validation split.
3. Evaluate both best checkpoints on the held-back test split and print a side-by-side table; the full
   reports (per class, confusion matrices, partial sketches) go to ``OUT/report.md`` and ``OUT/<model>/``. A model
   whose test top-1 is within noise of chance gets a warning line (:mod:`r2cnn.engine.chance`).
4. Write the HTML report of the R2CNN run (``r2cnn report``: curves, confusion, attention figures, the deletion
   check) to ``OUT/r2cnn/report.html`` and print its path.
"""

from __future__ import annotations

import argparse

HELP = "the main job: built-in data, train R2CNN and CNN-only, compare on the test split"

MODELS = (("R2CNN", "cpu-r2cnn", "r2cnn"), ("CNN-only", "cpu-cnn", "cnn"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r2cnn.commands.options import add_device, non_negative_int, positive_float, positive_int
    from r2cnn.engine.demo import DEMO_OUT

    p.add_argument("--out", default=str(DEMO_OUT), help="output folder (data, runs, report); its runs are replaced")
    p.add_argument("--minutes", type=positive_float, default=5.0,
                   help="training time for both models together, split evenly")
    p.add_argument("--per-class", type=positive_int, default=700, help="built-in sketches per class (at least 10)")
    p.add_argument("--seed", type=int, default=0, help="seeds the data, the split and training")
    p.add_argument("--workers", type=non_negative_int, help="data-loader workers (default: the preset's)")
    add_device(p)


def _train_speed(run_dir) -> float | None:
    """Mean training sketches/s from the run's log, leaving out the first window (start-up)."""
    import json

    speeds = [r["sketches_per_s"] for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())
              if r.get("kind") == "train"]
    speeds = speeds[1:] or speeds
    return sum(speeds) / len(speeds) if speeds else None


def run(args) -> int:
    import json
    import sys
    import time
    from pathlib import Path

    from r2cnn.commands.options import resolve_device
    from r2cnn.data.builtin import split_sizes as builtin_split_sizes
    from r2cnn.data.formats.common import write_file
    from r2cnn.data.store import prepare
    from r2cnn.engine.chance import chance_warning
    from r2cnn.engine.evaluate import evaluate_checkpoint
    from r2cnn.engine.report import confusion_png, table
    from r2cnn.engine.train import TrainOptions, train
    from r2cnn.errors import R2CNNError
    from r2cnn.viz.report import build_report

    if args.per_class < 10:
        raise R2CNNError(f"--per-class must be at least 10, not {args.per_class}")
    device = resolve_device(args.device)
    out = Path(args.out)
    started = time.perf_counter()
    store = prepare([], out / "data", builtin=args.per_class, seed=args.seed,
                    split_sizes=builtin_split_sizes(args.per_class))
    print(f"data: {out / 'data'} ({len(store)} sketches, {len(store.classes)} classes; "
          f"train/valid/test {len(store.indices('train'))}/{len(store.indices('valid'))}/{len(store.indices('test'))})")

    rows, reports = [], {}
    for title, preset, folder in MODELS:
        run_dir = out / folder
        print(f"\n== {title}: preset {preset}, its epochs or {args.minutes / len(MODELS):.1f} min of training, "
              f"whichever ends first -> {run_dir}")
        result = train(TrainOptions(preset=preset, data=str(out / "data"), out=str(run_dir), seed=args.seed,
                                    max_minutes=args.minutes / len(MODELS), device=device,
                                    workers=args.workers, overwrite=True))
        report = evaluate_checkpoint(result["best_path"], str(out / "data"), split="test", device=device)
        report["confusion_png"] = str(confusion_png(report["confusion"], report["classes"],
                                                    run_dir / "confusion_test.png"))
        report["train_sketches_per_s"] = _train_speed(run_dir)
        report["train_steps"], report["valid_top1"] = result["step"], result["best"]["value"]
        write_file(run_dir / "test_report.json", json.dumps(report, indent=1))
        reports[title] = report
        partial = "/".join(f"{100 * v:.1f}" for v in report["partial"].values())
        speed = report["train_sketches_per_s"]  # None: too few steps for a logged window
        rows.append((title, preset, str(result["step"]), "-" if speed is None else f"{speed:.0f}",
                     f"{100 * report['valid_top1']:.2f}", f"{100 * report['top1']:.2f}", f"{100 * report['top5']:.2f}",
                     partial, f"{report['sketches_per_s']:.0f}"))

    header = ["model", "preset", "steps", "train sk/s", "valid top-1 %", "test top-1 %", "test top-5 %",
              "partial 25/50/75/100% strokes: top-1 %", "eval sk/s"]
    text = table(rows, header)
    chance = 100.0 / len(store.classes)
    print(f"\n{text}\n")
    html = build_report(out / "r2cnn", data=str(out / "data"), device=device)
    minutes = (time.perf_counter() - started) / 60
    report_md = out / "report.md"
    write_file(
        report_md,
        f"# r2cnn demo\n\nBuilt-in data ({len(store.classes)} classes, chance {chance:.1f} %), "
        f"training per model: the preset's epochs or {args.minutes / len(MODELS):.1f} min, whichever ends first; "
        f"test split of {reports['R2CNN']['count']} sketches. Partial sketches: {reports['R2CNN']['partial_rounding']}.\n\n{text}\n\n"
        + "".join(f"- {t}: checkpoint `{r['checkpoint']}`, confusion matrix `{r['confusion_png']}`\n"
                  for t, r in reports.items())
        + f"- HTML report of the R2CNN run (training curves, confusion, attention, deletion check): `{html}`\n")
    for t, r in reports.items():
        print(f"{t}: checkpoint {r['checkpoint']}, confusion matrix {r['confusion_png']}")
    for t, r in reports.items():
        warning = chance_warning(r["top1"], r["count"], len(store.classes), what=f"{t} test top-1",
                                 causes=f"it has not learned in {r['train_steps']} steps; likely too few steps "
                                        f"(give more --minutes) or a learning rate that does not suit them")
        if warning:
            print(warning, file=sys.stderr)
    print(f"report: {report_md} (demo took {minutes:.1f} min)")
    print(f"HTML report (R2CNN run): {html}")
    return 0
