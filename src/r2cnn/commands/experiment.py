"""``r2cnn experiment SPEC --data STORE --out DIR``: run a table of the paper (:mod:`r2cnn.experiments`)."""

from __future__ import annotations

import argparse

from r2cnn.commands.options import add_device, resolve_device

# More resamples than this change no reported digit and only cost memory and time (a user's typo of 10**12 would
# ask for terabytes).
MAX_BOOTSTRAP = 100_000
# --dry-run reports the median step of these: beyond a hundred it no longer moves, and the run only gets longer (a
# typo of 10**9 would time ResNet50 steps for centuries).
MAX_MEASURE_STEPS = 100

HELP = "run a table of the paper (a built-in spec, see --list, or a TOML spec): resumable, with statistics"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r2cnn.experiments.spec import BUILTIN

    p.add_argument("spec", nargs="?", help=f"{', '.join(BUILTIN)} or a TOML file")
    p.add_argument("--list", action="store_true", help="list the built-in specs and their rows")
    p.add_argument("--data", action="append", default=[], metavar="[PROTOCOL=]STORE",
                   help="store made by `r2cnn prepare`; quickdraw=STORE / tuberlin=STORE for specs that use both")
    p.add_argument("--out", help="experiment folder (rows, predictions, results.*); rerun to resume")
    p.add_argument("--dry-run", action="store_true", help="list rows, sizes, steps and estimated times; train nothing")
    p.add_argument("--report-only", action="store_true", help="recompute the results from the kept predictions")
    p.add_argument("--tuning", action="store_true",
                   help="tuning mode (also a spec's mode = \"tuning\"): train as usual, report the validation split "
                        "carved from train; the test split is never read (for choices: presets, rates, budgets)")
    p.add_argument("--rows", help="comma-separated row ids to run (their dependencies are run too)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="budget for every row: epochs (replaces the spec's)")
    length.add_argument("--steps", type=int, help="budget for every row: optimiser steps (replaces the spec's)")
    p.add_argument("--max-minutes", type=float, help="budget for every row: wall-clock minutes per sub-run")
    p.add_argument("--train-subset", type=int, metavar="N", help="train every row on N sketches per class")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", dest="overrides",
                   help="override a preset entry of every row whose preset has it (KEY.SUB: one entry of a table, e.g. "
                        "model_options.canvas=32); an entry no row has is an error")
    add_device(p)
    p.add_argument("--workers", type=int, help="data-loader workers (default: each preset's)")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="N",
                   help="write last.pt every N steps, so an interrupt loses little (default 100)")
    p.add_argument("--bootstrap", type=int, default=10000, metavar="N",
                   help=f"bootstrap resamples (default 10000, at most {MAX_BOOTSTRAP})")
    p.add_argument("--measure-steps", type=int, default=2, metavar="N",
                   help=f"--dry-run: timed training steps per model (0: no measurement; default 2, at most "
                        f"{MAX_MEASURE_STEPS})")


def _positive(args, names) -> None:
    from r2cnn.errors import R2CNNError

    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise R2CNNError(f"--{name.replace('_', '-')} must be positive, not {value}")


def run(args) -> int:
    from pathlib import Path

    from r2cnn.commands.train import parse_overrides
    from r2cnn.errors import R2CNNError
    from r2cnn.experiments import execute
    from r2cnn.experiments.spec import BUILTIN, load_spec

    if args.list:
        for name in BUILTIN:
            spec = load_spec(name)
            print(f"{name}: {spec.title}\n  " + ", ".join(f"{r.id} ({r.preset})" for r in spec.rows))
        return 0
    if not args.spec:
        raise R2CNNError(f"give a SPEC ({', '.join(BUILTIN)} or a TOML file)")
    _positive(args, ["epochs", "steps", "max_minutes", "train_subset", "bootstrap"])
    if args.bootstrap > MAX_BOOTSTRAP:
        raise R2CNNError(f"--bootstrap must be at most {MAX_BOOTSTRAP}, not {args.bootstrap}")
    if not 0 <= args.measure_steps <= MAX_MEASURE_STEPS:
        raise R2CNNError(f"--measure-steps must be 0 to {MAX_MEASURE_STEPS}, not {args.measure_steps}")
    if args.workers is not None and args.workers < 0:
        raise R2CNNError(f"--workers must be >= 0, not {args.workers}")
    spec = load_spec(args.spec)
    budget = execute.Budget(epochs=args.epochs, steps=args.steps, minutes=args.max_minutes,
                            train_subset=args.train_subset, overrides=parse_overrides(args.overrides),
                            tuning=args.tuning)
    only = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else None
    data = execute.parse_data(args.data)
    device = resolve_device(args.device)

    if args.dry_run:
        from r2cnn.experiments import dryrun

        kwargs = dict(measure_steps=args.measure_steps, device=device)
        if data:
            rows = dryrun.dry_run(execute.plan(spec, data, budget, only), **kwargs)
        else:
            rows = dryrun.dry_run_without_data(lambda d: execute.plan(spec, d, budget, only), **kwargs)
            print(f"{spec.name}: no --data, so sizes are shown at the paper's scale only (steps timed on built-in "
                  f"sketches)")
        print(dryrun.format_dry_run(rows, device, reference=spec.reference))
        return 0

    if not args.out:
        raise R2CNNError("--out DIR is required (except with --dry-run or --list)")
    if not data:
        raise R2CNNError("--data STORE is required (a store made by `r2cnn prepare`)")
    out = Path(args.out)
    planned = execute.plan(spec, data, budget, only)
    if args.report_only and not out.is_dir():
        raise R2CNNError(f"--report-only: {out} is not an experiment folder")
    from r2cnn.data.store import one_writer_at_a_time
    from r2cnn.experiments import report

    # one invocation at a time per folder: a second one would train the same sub-runs into the same files
    with one_writer_at_a_time(out, print, command="r2cnn experiment", wait=False):
        execute.check_owner(out, spec)
        if not args.report_only:
            from r2cnn.experiments.runners import NeuralRunner

            neural = NeuralRunner(device=device, workers=args.workers, checkpoint_every=args.checkpoint_every)
            execute.run_experiment(spec, out, planned, neural=neural)
        results = report.compute(spec, planned, execute.collect(out, planned), resamples=args.bootstrap,
                                 not_run=execute.not_run(out, planned),
                                 budgets=execute.recorded_budgets(out, planned))
        paths = report.write_all(results, out)
    print(report.markdown(results))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
