"""An experiment's tables: ``results.json`` (everything), ``results.csv`` (one line per row), ``results.md`` (the
table with the paper's figure beside ours and the definitions) and ``results.png`` (bar chart, 95% intervals).

Only finished rows with ``report = true`` appear; the statistics are those of :mod:`r2cnn.experiments.stats`.
Every figure names the split it comes from (``split`` in the csv and json, a "Figures on" line in the markdown):
the test split (never used for training or for picking the epoch), or, in tuning mode, the validation split
carved from the training data.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from r2cnn.data.formats.common import AtomicWriter
from r2cnn.experiments import stats
from r2cnn.experiments.execute import PlannedRow
from r2cnn.experiments.runners import write_json_atomic
from r2cnn.experiments.spec import Spec

CSV_FIELDS = ["id", "label", "preset", "protocol", "split", "subruns", "top1_mean", "top1_std", "ci95_low", "ci95_high",
              "top5_mean", "diff_vs_reference", "diff_ci95_low", "diff_ci95_high", "mcnemar_p_max", "verdict",
              "step_ms", "sketches_per_second", "paper_top1", "test_sketches"]


def split_description(p: PlannedRow) -> str:
    """Where a row's figures come from, in words (its store's test split, with the file it came from when the
    store was prepared with ``test=PATH``; or the carved validation split in tuning mode)."""
    if p.mode == "tuning":
        return ("validation split carved from the training data (tuning mode: the test split was never read; the "
                "best epoch was picked on this split too)")
    if p.protocol == "tuberlin":
        return "test fold of each sub-run (k-fold store), never used for training or for picking the epoch"
    from r2cnn.data.store import SketchStore

    manifest = SketchStore(p.data).manifest
    view = manifest.get("view_of")  # a subset view: the files are its source store's
    if view:
        manifest = SketchStore(view["store"]).manifest
    files = [i["path"] for i in manifest.get("inputs", []) if i.get("split") == "test"]
    origin = (f"from {'/'.join(Path(os.path.commonpath(files)).parts[-2:])}" if files
              else "split per class by a hash of key_id")
    return f"test split of {Path(p.data).name} ({origin}), never used for training or for picking the epoch"


def compute(spec: Spec, planned: list[PlannedRow], predictions: dict[str, list[dict]], *,
            resamples: int = stats.BOOTSTRAP_RESAMPLES, not_run: dict[str, str] | None = None,
            budgets: dict[str, dict] | None = None) -> dict:
    """The results of every finished reported row (fractions; the paper's figure in percent as in the paper).
    ``not_run``: row id -> why it could not run (:func:`r2cnn.experiments.execute.not_run`); ``budgets``: row id ->
    the budget it ran with (:func:`r2cnn.experiments.execute.recorded_budgets`; default: the plan's)."""
    ref = spec.reference if spec.reference in predictions else None
    rows = []
    for p in planned:
        if not p.row.report or p.row.id not in predictions:
            continue
        preds = predictions[p.row.id]
        r = {"id": p.row.id, "label": p.row.label, "preset": p.row.preset, "protocol": p.protocol,
             "split": p.split, "split_description": split_description(p), "subruns": len(preds),
             "planned_subruns": len(p.subruns), "paper_top1": p.row.paper, "note": p.row.note,
             "budget": (budgets or {}).get(p.row.id) or {"epochs": p.epochs, "steps": p.steps, "minutes": p.minutes,
                                                         "train_subset": p.train_subset},
             **stats.row_stats(preds, resamples=resamples)}
        if ref is not None and p.row.id != ref:
            r["vs_reference"] = stats.paired_stats(preds, predictions[ref], resamples=resamples)
        rows.append(r)
    not_run = dict(not_run or {})
    missing = [p.row.id for p in planned if p.row.report and p.row.id not in predictions and p.row.id not in not_run]
    return {"spec": spec.name, "title": spec.title, "reference": ref, "rows": rows, "missing": missing,
            "mode": planned[0].mode if planned else spec.mode,
            "not_run": not_run,
            "bootstrap": {"resamples": resamples, "seed": stats.BOOTSTRAP_SEED, "level": 0.95}}


def _pct(x, digits: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def _csv_row(r: dict) -> dict:
    vs = r.get("vs_reference", {})
    return {"id": r["id"], "label": r["label"], "preset": r["preset"], "protocol": r["protocol"],
            "split": r["split"], "subruns": r["subruns"], "top1_mean": r["top1_mean"], "top1_std": r["top1_std"],
            "ci95_low": r["ci95"][0], "ci95_high": r["ci95"][1], "top5_mean": r["top5_mean"],
            "diff_vs_reference": vs.get("diff"), "diff_ci95_low": vs.get("ci95", [None, None])[0],
            "diff_ci95_high": vs.get("ci95", [None, None])[1], "mcnemar_p_max": vs.get("mcnemar_p_max"),
            "verdict": vs.get("verdict", ""),
            "step_ms": None if r["step_seconds"] is None else 1000 * r["step_seconds"],
            "sketches_per_second": r["sketches_per_second"], "paper_top1": r["paper_top1"],
            "test_sketches": r["test_sketches"]}


def markdown(results: dict) -> str:
    ref = results["reference"]
    where = sorted({r["split_description"] for r in results["rows"] if r.get("split_description")})
    lines = [f"# {results['title']}", "", *[f"Figures on: {w}." for w in where], *([""] if where else []),
             "| Row | Top-1 % (mean ± std) | per run | 95% CI | Δ vs reference [95% CI] | McNemar p | verdict "
             "| step ms | sketches/s | paper % |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        std = f" ± {_pct(r['top1_std'])}" if r["top1_std"] is not None else ""
        runs = ", ".join(_pct(x["top1"]) for x in r["runs"])
        vs = r.get("vs_reference")
        if vs:
            diff = f"{100 * vs['diff']:+.2f} [{100 * vs['ci95'][0]:+.2f}, {100 * vs['ci95'][1]:+.2f}]"
            p, verdict = f"{vs['mcnemar_p_max']:.3g}", vs["verdict"]
        else:
            diff, p, verdict = ("reference", "", "") if r["id"] == ref else ("", "", "")
        step = "" if r["step_seconds"] is None else f"{1000 * r['step_seconds']:.0f}"
        rate = "" if r["sketches_per_second"] is None else f"{r['sketches_per_second']:.0f}"
        paper = "" if r["paper_top1"] is None else f"{r['paper_top1']:.2f}"
        part = "" if r["subruns"] == r.get("planned_subruns", r["subruns"]) else \
            f", {r['subruns']} of {r['planned_subruns']} sub-runs"
        lines.append(f"| {r['label']} (`{r['preset']}`{part}) | {_pct(r['top1_mean'])}{std} | {runs} | "
                     f"[{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}] | {diff} | {p} | {verdict} | {step} | {rate} "
                     f"| {paper} |")
    b = results["bootstrap"]
    lines += ["", f"Sub-runs: seeds (QuickDraw protocol) or seeds x folds (TU-Berlin); mean ± sample std over them. "
              f"95% CI: percentile bootstrap over the reported sketches ({b['resamples']} resamples, seed "
              f"{b['seed']}) of the per-sketch accuracy averaged over seeds. Δ: paired difference to the reference "
              "row on the same sketches, same bootstrap; \"within noise\" when its interval contains 0. McNemar: exact "
              "test per shared seed, largest p shown. Step time and sketches/s: median over training, measured under "
              "whatever else ran on the machine.", ""]
    if results["rows"]:
        lines += [_budget_line(results["rows"]), ""]
    notes = [f"{r['id']}: {r['note']}" for r in results["rows"] if r.get("note")]
    if notes:
        lines += ["Notes: " + "; ".join(notes) + ".", ""]
    if results["missing"]:
        lines += [f"Not finished yet: {', '.join(results['missing'])}.", ""]
    for row_id, reason in results.get("not_run", {}).items():
        lines += [f"Not run: {row_id}: {reason}", ""]
    return "\n".join(lines)


def _budget_line(rows: list[dict]) -> str:
    """``Budget: {...}`` when every row had the same, else each budget with the rows that had it."""
    by_budget: dict[str, list[str]] = {}
    for r in rows:
        by_budget.setdefault(json.dumps(r["budget"], sort_keys=True), []).append(r["id"])
    if len(by_budget) == 1:
        return "Budget: " + next(iter(by_budget))
    return "Budget: " + "; ".join(f"{', '.join(ids)}: {b}" for b, ids in by_budget.items())


def bar_chart(results: dict, path: Path) -> None:
    """Top-1 per row with its 95% bootstrap interval and the paper's figure as a marker; beside it, when the table
    has a reference row, each row's paired difference to it with its 95% interval (where the comparison is read:
    rows a few tenths apart look alike on the accuracy axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    paired = [(i, r["vs_reference"]) for i, r in enumerate(rows) if r.get("vs_reference")]
    width, diff_width = max(4.0, 1.1 * len(rows) + 1.5), max(3.0, 0.5 * len(rows) + 2.0)
    if paired:
        fig, (ax, dax) = plt.subplots(1, 2, figsize=(width + diff_width, 4.0),
                                      gridspec_kw={"width_ratios": [width, diff_width]})
    else:
        fig, ax = plt.subplots(figsize=(width, 4.0))
    x = list(range(len(rows)))
    labels = [r["label"] for r in rows]
    means = [100 * r["per_sketch_top1"] for r in rows]
    err = [[max(0.0, m - 100 * r["ci95"][0]) for m, r in zip(means, rows)],
           [max(0.0, 100 * r["ci95"][1] - m) for m, r in zip(means, rows)]]
    colors = ["tab:orange" if r["id"] == results["reference"] else "tab:blue" for r in rows]
    ax.bar(x, means, yerr=err, capsize=4, color=colors, label="ours (95% bootstrap CI)")
    paper = [(i, r["paper_top1"]) for i, r in enumerate(rows) if r["paper_top1"] is not None]
    if paper:
        ax.scatter([i for i, _ in paper], [v for _, v in paper], marker="_", s=400, color="black", zorder=3,
                   label="paper")
    low = min([m - e for m, e in zip(means, err[0])] + [v for _, v in paper] or [0.0])
    ax.set_ylim(max(0.0, low - 5.0), 100.0)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    splits = sorted({r.get("split", "test") for r in rows})
    ax.set_ylabel(f"{'/'.join(splits)} top-1 (%)")
    ax.set_title(results["title"])
    ax.legend(fontsize=8, loc="lower right")
    if paired:
        diffs = [100 * vs["diff"] for _, vs in paired]
        lows = [d - 100 * vs["ci95"][0] for d, (_, vs) in zip(diffs, paired)]
        highs = [100 * vs["ci95"][1] - d for d, (_, vs) in zip(diffs, paired)]
        ys = [i for i, _ in paired]
        dax.errorbar(diffs, ys, xerr=[lows, highs], fmt="o", capsize=3, color="tab:blue")
        dax.axvline(0.0, color="black", lw=0.8)
        dax.set_yticks(x, labels, fontsize=8)
        dax.set_ylim(len(rows) - 0.5, -0.5)
        ref = next((r["label"] for r in rows if r["id"] == results["reference"]), results["reference"])
        dax.set_xlabel(f"Δ top-1 vs {ref} (points, paired 95% CI)", fontsize=8)
    fig.tight_layout()
    with AtomicWriter(path, compress=False) as f:
        fig.savefig(f, dpi=120, format="png")
    plt.close(fig)


def write_all(results: dict, out: Path) -> list[Path]:
    """results.json, results.csv, results.md and results.png in ``out``."""
    out = Path(out)
    paths = [out / "results.json", out / "results.csv", out / "results.md", out / "results.png"]
    write_json_atomic(paths[0], results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for r in results["rows"]:
        row = _csv_row(r)
        if r["id"] == results["reference"]:
            row["verdict"] = "reference"
        writer.writerow(row)
    for path, text in ((paths[1], buf.getvalue()), (paths[2], markdown(results))):
        with AtomicWriter(path, compress=False) as f:
            f.write(text.encode())
    if results["rows"]:
        bar_chart(results, paths[3])
    else:
        paths.pop()
    return paths
