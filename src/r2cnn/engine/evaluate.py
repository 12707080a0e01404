"""Evaluation: accuracy of a model over a loader, and the full report of ``r2cnn evaluate``.

The report has top-1, top-5, per-class accuracy, the confusion matrix, and the accuracy on partial sketches:
the same split with only the first 25/50/75/100 % of each sketch's strokes, i.e. recognition while the
drawing is still in progress (the use case of the paper's Fig. 1 / the web demo). Rounding: a fraction f
of a sketch with S strokes keeps its first ``max(1, ceil(f * S))`` strokes, so every partial sketch has at
least one stroke and f = 1 is the whole sketch. Partial sketches are normalised again after truncation,
as a recogniser sees a drawing in progress.
"""

from __future__ import annotations

import math
import time

import torch

from r2cnn.engine.metrics import ClassificationMetrics
from r2cnn.engine.precision import amp_dtype, autocast, denormals_flushed
from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch

PARTIAL_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
PARTIAL_ROUNDING = "first max(1, ceil(f * strokes)) strokes of each sketch, renormalised"


@torch.no_grad()
def evaluate_model(model, loader, num_classes: int, device: torch.device, dtype: torch.dtype | None = None,
                   desc: str = "evaluate", progress: bool | None = None) -> ClassificationMetrics:
    """Accumulate :class:`ClassificationMetrics` of ``model`` over ``loader`` (summed over DDP ranks).

    Leaves the model in eval mode; the caller switches back to training.
    """
    from tqdm import tqdm

    model.eval()
    metrics = ClassificationMetrics(num_classes)
    disable = True if progress is False else (None if progress is None else False)
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, disable=disable):
        batch = batch.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = model(batch)
        metrics.update(logits, batch.labels)
    return metrics.all_reduce()


def first_strokes(sketch: Sketch, fraction: float) -> Sketch:
    """The first ``max(1, ceil(fraction * S))`` of the sketch's S strokes (see module docstring)."""
    bounds = sketch.stroke_bounds
    strokes = len(bounds) - 1
    if strokes <= 1 or fraction >= 1.0:
        return sketch
    keep = max(1, math.ceil(fraction * strokes - 1e-9))
    return Sketch(sketch.points[:bounds[keep]].copy(), sketch.label, dict(sketch.meta))


class PartialSketchTransform:
    """``transform`` applied after keeping the first ``fraction`` of the strokes; picklable for loader workers."""

    def __init__(self, fraction: float, transform):
        self.fraction = fraction
        self.transform = transform

    def __call__(self, sketch: Sketch, rng):
        return self.transform(first_strokes(sketch, self.fraction), rng)


def evaluate_checkpoint(checkpoint: str, data: str, *, split: str = "test", fold: int | None = None,
                        device: str = "cpu", workers: int = 0, batch_size: int | None = None,
                        partial: tuple[float, ...] = PARTIAL_FRACTIONS, progress: bool | None = None) -> dict:
    """Evaluate a checkpoint on a store split; returns the report as plain JSON types.

    ``fold`` defaults to the fold the checkpoint was trained with (k-fold stores such as TU-Berlin). Subnormals
    are flushed to zero while it runs (:func:`r2cnn.engine.precision.denormals_flushed`).
    """
    with denormals_flushed():
        return _evaluate_checkpoint(checkpoint, data, split, fold, device, workers, batch_size, partial, progress)


def _evaluate_checkpoint(checkpoint, data, split, fold, device, workers, batch_size, partial, progress) -> dict:
    from r2cnn.data.loader import make_loader
    from r2cnn.data.store import SketchStore
    from r2cnn.engine.factory import build_transform, load_model

    dev = torch.device(device)
    model, ckpt = load_model(checkpoint, dev)
    config, classes = ckpt["config"], list(ckpt["classes"])
    store = SketchStore(data)
    if list(store.classes) != classes:
        raise R2CNNError(f"{data}: the store's classes differ from the checkpoint's ({len(store.classes)} vs "
                         f"{len(classes)} classes, or another order)")
    if fold is None:
        fold = config.get("fold")
    dtype = amp_dtype(config, dev)
    eval_transform = build_transform(config, train=False)
    batch_size = int(batch_size or config.get("batch_size") or 64)

    def run(transform, desc):
        loader = make_loader(store, split, batch_size=batch_size, transform=transform, num_workers=workers,
                             raster_size=model.raster_size, raster_eps=model.raster_eps, fold=fold)
        start = time.perf_counter()
        metrics = evaluate_model(model, loader, len(classes), dev, dtype, desc=desc, progress=progress)
        return metrics, metrics.count / max(time.perf_counter() - start, 1e-9)

    metrics, speed = run(eval_transform, f"{split}")
    if metrics.count == 0:
        raise R2CNNError(f"{data}: split {split!r} is empty")
    partial_top1 = {}
    for f in partial:
        m = metrics if f >= 1.0 else run(PartialSketchTransform(f, eval_transform), f"{split} {f:.0%} strokes")[0]
        partial_top1[f"{f:g}"] = m.top1
    return {
        "checkpoint": str(checkpoint), "data": str(data), "split": split, "fold": fold,
        "model": config.get("model"), "preset": config.get("preset"), "step": ckpt.get("step"),
        "count": metrics.count, "top1": metrics.top1, "top5": metrics.top5_accuracy,
        "per_class": dict(zip(classes, metrics.per_class())),
        "classes": classes, "confusion": metrics.confusion.tolist(),
        "partial": partial_top1, "partial_rounding": PARTIAL_ROUNDING,
        "sketches_per_s": speed,
    }
