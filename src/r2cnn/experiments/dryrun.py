"""``r2cnn experiment --dry-run``: what every row would cost, on the given data and at the paper's scale.

For each row: the protocol, the sub-runs, the train/valid/test sizes of one sub-run on the given store, the
optimiser steps its budget makes, a training step time measured here (a few steps of the row's model on real
batches, after one warm-up step; data loading, validation and testing are not included) and the estimates
``step time x steps x sub-runs`` on this data and on the paper's (QuickDraw 345 classes x 70K/2.5K/2.5K, TU-Berlin
250 x 80 in 3 folds; Sec. 4.1). A wall-clock budget (minutes) caps the estimate on this data. Rows with another
runner than the neural one (Table 1's classic rows: one fit, no optimiser steps) are listed without a
measurement.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
from pathlib import Path

from r2cnn.experiments.execute import PlannedRow
from r2cnn.experiments.protocols import PAPER_SCALE, split_indices
from r2cnn.experiments.runners import runner_kind

MEASURE_WARMUP = 1


def builtin_stores(tmp: Path) -> dict[str, Path]:
    """Small built-in stores for a dry run without ``--data``: fixed splits (QuickDraw protocol, also the default)
    and 3 folds (TU-Berlin)."""
    from r2cnn.data.store import prepare

    quiet = dict(log=lambda *a: None, progress=False)
    splits = prepare([], tmp / "splits", builtin=40, split_sizes=(30, 5, 5), **quiet).path
    folds = prepare([], tmp / "folds", builtin=40, folds=3, **quiet).path
    return {"default": splits, "quickdraw": splits, "tuberlin": folds}


def measure_step(config: dict, store, indices, steps: int, device: str) -> float | None:
    """Median seconds of a training step of ``config``'s model on batches of ``store[indices]``."""
    import torch

    from r2cnn.data.loader import make_loader
    from r2cnn.engine.factory import build_model, build_transform
    from r2cnn.engine.optim import build_optimizer
    from r2cnn.engine.precision import amp_dtype, denormals_flushed
    from r2cnn.engine.timing import make_step, timed

    dev = torch.device(device)
    # the step costs the same with any weights: do not require the ImageNet file just to time it
    config = dict(config, model_options={k: v for k, v in (config.get("model_options") or {}).items()
                                         if k != "pretrained"})
    batch_size = int(config["batch_size"])
    torch.manual_seed(0)
    model = build_model(config, len(store.classes)).to(dev).train()
    loader = make_loader(store, None, indices=indices, batch_size=batch_size, shuffle=True, drop_last=False,
                         transform=build_transform(config, train=True), raster_size=model.raster_size,
                         raster_eps=model.raster_eps)
    step = make_step(model, build_optimizer(config, model), dev, amp_dtype(config, dev))
    times = []
    with denormals_flushed():  # as training runs
        for i, batch in zip(range(MEASURE_WARMUP + steps), _cycle(loader)):
            batch = batch.to(dev)
            t = timed(lambda: step(batch, batch.labels), dev)
            if i >= MEASURE_WARMUP:
                times.append(t)
    return statistics.median(times) if times else None


def _cycle(loader):
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            return


def _is_neural(p: PlannedRow) -> bool:
    return runner_kind(p.config) == "neural"


def _steps(p: PlannedRow, train_size: int) -> int | None:
    """Optimiser steps of one sub-run; None for a row of another runner (the classic one fits in one pass)."""
    if not _is_neural(p):
        return None
    if p.steps:
        return int(p.steps)
    epochs = p.epochs if p.epochs is not None else int(p.config.get("epochs") or 1)
    return epochs * (train_size // int(p.config["batch_size"]))


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def dry_run(planned: list[PlannedRow], *, measure_steps: int = 2, device: str = "cpu",
            have_data: bool = True) -> list[dict]:
    """One dict per planned row (see the module docstring); ``have_data`` False: the stores are stand-ins, so
    only the paper-scale sizes are meaningful."""
    from r2cnn.data.store import SketchStore

    cache: dict[str, float | None] = {}
    out = []
    for p in planned:
        store = SketchStore(p.data)
        seed, fold = p.subruns[0]
        # tuning mode does not ask for the test split, even to count it
        parts = split_indices(store, fold, p.train_subset,
                              ("train", "valid") if p.mode == "tuning" else ("train", "valid", "test"))
        sizes = {"test": None, **{k: int(len(v)) for k, v in parts.items()}}
        step_s = None
        if _is_neural(p) and measure_steps > 0:
            key = json.dumps([p.config["model"], p.config.get("model_options"), p.config["batch_size"]],
                             sort_keys=True)
            if key not in cache:
                cache[key] = measure_step(p.config, store, parts["train"], measure_steps, device)
            step_s = cache[key]
        steps = _steps(p, sizes["train"])
        here = None if step_s is None or steps is None else step_s * steps * len(p.subruns)
        if here is not None and p.minutes:
            here = min(here, 60.0 * p.minutes * len(p.subruns))
        scale = PAPER_SCALE[p.protocol]
        paper_runs = len(p.row.seeds) * scale["folds"]
        paper_steps = _steps(p, scale["train"])
        out.append({"id": p.row.id, "preset": p.row.preset, "overrides": p.row.overrides,
                    "runner": runner_kind(p.config), "protocol": p.protocol, "subruns": len(p.subruns),
                    "init_from": p.row.init_from,
                    "sizes": sizes if have_data else None, "classes": len(store.classes) if have_data else None,
                    "batch_size": p.config.get("batch_size"), "steps_per_subrun": steps if have_data else None,
                    "step_seconds": step_s, "estimate_seconds": here if have_data else None,
                    "paper_scale": {**scale, "subruns": paper_runs, "steps_per_subrun": paper_steps,
                                    "estimate_seconds": None if step_s is None or paper_steps is None
                                    else step_s * paper_steps * paper_runs}})
    return out


def _overrides_text(overrides: dict, prefix: str = "") -> list[str]:
    """A row's overrides as ``KEY=VALUE`` (``train --set`` form; a table's entries as ``KEY.SUB=VALUE``)."""
    out = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            out += _overrides_text(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={value if isinstance(value, str) else json.dumps(value)}")
    return out


def format_dry_run(rows: list[dict], device: str, reference: str | None = None) -> str:
    """The table of rows (``reference``, the spec's reference row, is marked), the totals, and what each row
    trains: its preset and the overrides the spec gives it."""
    from r2cnn.engine.report import table

    mark = lambda row_id: row_id + (" (reference)" if row_id == reference else "")
    body = []
    for r in rows:
        s, ps = r["sizes"], r["paper_scale"]
        body.append((mark(r["id"]), r["preset"], r["protocol"] + (f" <- {r['init_from']}" if r["init_from"] else ""),
                     str(r["subruns"]), "-" if s is None else f"{r['classes']}c {s['train']}/{s['valid']}/"
                     f"{'sealed' if s['test'] is None else s['test']}",
                     "-" if r["steps_per_subrun"] is None else str(r["steps_per_subrun"]),
                     "n/a" if r["step_seconds"] is None else f"{1000 * r['step_seconds']:.0f}",
                     "-" if r["sizes"] is None else _duration(r["estimate_seconds"]),
                     f"{ps['subruns']} x {ps['steps_per_subrun'] or 'one fit'}", _duration(ps["estimate_seconds"])))
    here = [r["estimate_seconds"] for r in rows if r["estimate_seconds"] is not None]
    paper = [r["paper_scale"]["estimate_seconds"] for r in rows if r["paper_scale"]["estimate_seconds"] is not None]
    lines = [table(body, ["row", "preset", "protocol", "runs", "data train/valid/test", "steps/run", "step ms",
                          "est. here", "paper runs x steps", "est. paper scale"]),
             f"total (measured rows, training steps only, {device}): here "
             f"{_duration(sum(here)) if here else 'not measured'}, at paper scale "
             f"{_duration(sum(paper)) if paper else 'not measured'}"
             + ("" if here or paper else " (--measure-steps 0; give N > 0 to time N steps per model)"),
             "what each row trains (its preset, and the spec's overrides on top; `--set` changes every row that has "
             "the entry)" + (f"; the other rows are compared with {reference}" if reference else "") + ":"]
    width = max(len(mark(r["id"])) for r in rows) if rows else 0
    for r in rows:
        changes = _overrides_text(r.get("overrides") or {})
        lines.append(f"  {mark(r['id']).ljust(width)}  {r['preset']}"
                     + (f" + {', '.join(changes)}" if changes else " (as it is)"))
    no_valid = [r["id"] for r in rows if r["sizes"] is not None and r["runner"] == "neural" and not r["sizes"]["valid"]]
    if no_valid:
        lines.append(f"warning: the validation split is empty for {', '.join(no_valid)}, so these rows cannot train "
                     f"(best.pt is chosen on it): prepare the store with a validation part, e.g. `r2cnn prepare "
                     f"train=A test=B --split-sizes TRAIN,VALID,0` or a valid=PATH source")
    return "\n".join(lines)


def dry_run_without_data(planned_fn, **kwargs) -> list[dict]:
    """Dry run on small built-in stand-in stores (``planned_fn(data)`` plans the spec on them)."""
    with tempfile.TemporaryDirectory(prefix="r2cnn-dry-run-") as tmp:
        planned = planned_fn(builtin_stores(Path(tmp)))
        return dry_run(planned, have_data=False, **kwargs)
