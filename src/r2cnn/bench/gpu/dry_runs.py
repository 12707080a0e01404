"""Section 5, ``dry-runs``: ``r2cnn experiment table3|table1|table2 --dry-run`` on the device: each row's measured
step and the paper-scale GPU-hours."""

from __future__ import annotations

import time

from r2cnn.bench.gpu.context import Context
from r2cnn.bench.gpu.plan import DRY_RUN_SPECS


def section_dry_runs(ctx: Context) -> None:
    from r2cnn.experiments import dryrun, execute
    from r2cnn.experiments.spec import load_spec

    if ctx.cuda:
        ctx.require_cuda()
    # the rehearsal plans every row of the paper's specs (sizes, paper-scale steps) without timing ResNet50s on the
    # CPU, and times the CPU spec's models (the same measurement code)
    runs = [(name, 2 if not ctx.quick else 0, {}) for name in DRY_RUN_SPECS]
    if ctx.quick:
        runs.append(("table3-cpu", 1, {"batch_size": 8}))
    specs = {}
    for name, measure_steps, overrides in runs:
        print(f"\n== r2cnn experiment {name} --dry-run --device {ctx.device} --measure-steps {measure_steps}"
              + "".join(f" --set {k}={v}" for k, v in overrides.items()), flush=True)
        start = time.perf_counter()
        # what `r2cnn experiment SPEC --dry-run` runs without --data (r2cnn.commands.experiment)
        spec = load_spec(name)
        budget = execute.Budget(overrides=overrides)
        rows = dryrun.dry_run_without_data(lambda data: execute.plan(spec, data, budget, None),
                                           measure_steps=measure_steps, device=ctx.device)
        print(dryrun.format_dry_run(rows, ctx.device, reference=spec.reference))
        hours = [r["paper_scale"]["estimate_seconds"] / 3600 for r in rows
                 if r["paper_scale"]["estimate_seconds"] is not None]
        specs[name] = {"seconds": time.perf_counter() - start, "paper_scale_hours": sum(hours) if hours else None,
                       "rows": [{"id": r["id"], "preset": r["preset"], "runner": r["runner"],
                                 "step_ms": None if r["step_seconds"] is None else 1000 * r["step_seconds"],
                                 "paper_subruns": r["paper_scale"]["subruns"],
                                 "paper_steps_per_subrun": r["paper_scale"]["steps_per_subrun"],
                                 "paper_scale_hours": None if r["paper_scale"]["estimate_seconds"] is None
                                 else r["paper_scale"]["estimate_seconds"] / 3600} for r in rows]}
        ctx.record(specs=specs)
    unit = "GPU-hours" if ctx.cuda else "hours on this CPU"
    print(f"\npaper-scale {unit} (training steps only, one device; the tables above give each row):")
    for name, s in specs.items():
        total = s["paper_scale_hours"]
        print(f"  {name}: " + ("not measured" if total is None else f"{total:,.0f} {unit} ({total / 24:,.1f} days)"))
    ctx.record(unit=unit, headline="; ".join(
        f"{n} {s['paper_scale_hours']:,.0f} {unit}" if s["paper_scale_hours"] else f"{n} not timed"
        for n, s in specs.items()))
