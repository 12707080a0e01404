"""What the CNN receives from the RNN: statistics of a checkpoint's per-point attention over a store split (the
attention-design study: why does a fixed order encoding beat the learned attention?).

Per sketch and attention channel, over its points (the sketch as the model saw it, evaluation transform applied):

- ``std``: the standard deviation of the attention within the sketch (0: the CNN sees a uniform, i.e. binary,
  image scaled by a constant);
- ``range_5_95``: the 95th minus the 5th percentile within the sketch;
- ``spearman_point_order``: Spearman's rank correlation of the attention with the point's index in the sketch
  (-1: the attention falls steadily with drawing order, as the Attention-using-Sketching-Order image of Table 2);
- ``spearman_stroke_index``: the same with the index of the point's stroke (undefined for a one-stroke sketch);
- ``mean``: the sketch's mean attention (its spread over sketches, ``between_sketch_std``, is what a global
  brightness change carries).

Aggregates over the sketches (mean and median per statistic, per channel and over all channels), and the mean
attention by stroke position (first stroke, second, ..., the strokes from ``MAX_STROKE_POSITION`` on together) and by
relative point position in the sketch (deciles of drawing order). Sketches with fewer than two points have no
spread and are left out of the per-sketch statistics.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from r2cnn.errors import R2CNNError

MAX_STROKE_POSITION = 10  # strokes 10, 11, ... share the last bucket
DECILES = 10
SKETCH_STATS = ("std", "range_5_95", "spearman_point_order", "spearman_stroke_index", "mean")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's coefficient needs."""
    from scipy.stats import rankdata

    return rankdata(x, axis=0)


def _corr(ranks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of ``ranks`` ``(N, C)`` with ``reference`` ``(N,)`` (ranks too), NaN
    where either is constant."""
    a = ranks - ranks.mean(axis=0)
    b = reference - reference.mean()
    denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b[:, None]).sum(axis=0) / np.where(denom > 0, denom, 1.0), np.nan)


def stroke_of_point(pen_end: np.ndarray) -> np.ndarray:
    """Index of each point's stroke ``(N,)`` int64 from ``pen_end`` ``(N,)`` (1 closes a stroke)."""
    ends = np.asarray(pen_end) > 0.5
    return (np.cumsum(ends) - ends).astype(np.int64)


def sketch_statistics(attention: np.ndarray, pen_end: np.ndarray) -> dict[str, np.ndarray] | None:
    """The per-sketch statistics of the module docstring for one sketch: ``attention`` ``(N, C)``, ``pen_end``
    ``(N,)`` (1 closes a stroke) -> statistic -> ``(C,)``; None for a sketch of fewer than two points."""
    a = np.asarray(attention, np.float64).reshape(len(attention), -1)
    if len(a) < 2:
        return None
    stroke = stroke_of_point(pen_end)
    p5, p95 = np.percentile(a, [5, 95], axis=0)
    ranks = _ranks(a)
    return {"std": a.std(axis=0), "range_5_95": p95 - p5,
            "spearman_point_order": _corr(ranks, np.arange(len(a), dtype=np.float64)),
            "spearman_stroke_index": _corr(ranks, _ranks(stroke.astype(np.float64))), "mean": a.mean(axis=0)}


def _summary(values: np.ndarray) -> dict:
    """Mean and median of ``values`` (one per sketch, or per sketch and channel; NaN: undefined there, left out)
    and how many were defined."""
    ok = values[np.isfinite(values)]
    return {"mean": float(ok.mean()) if len(ok) else None, "median": float(np.median(ok)) if len(ok) else None,
            "values": int(len(ok))}


def attention_statistics(model, sketches: Sequence, batch_size: int = 64) -> dict:
    """Statistics of ``model``'s attention (an :class:`r2cnn.viz.attention.AttentionModel` with attention) over
    ``sketches`` (store sketches, any coordinates). -> JSON-ready dict (see the module docstring)."""
    if not model.has_attention:
        raise R2CNNError(model.no_attention_message())
    per_sketch: dict[str, list[np.ndarray]] = {k: [] for k in SKETCH_STATS}
    channels = None
    stroke_sum = np.zeros(MAX_STROKE_POSITION + 1)
    stroke_count = np.zeros(MAX_STROKE_POSITION + 1)
    decile_sum, decile_count = np.zeros(DECILES), np.zeros(DECILES)
    values = []
    for start in range(0, len(sketches), batch_size):
        prepared = model.prepare(sketches[start:start + batch_size])
        out = model.run(prepared)
        o = out["offsets"]
        for b, sketch in enumerate(prepared):
            att = out["attention"][o[b]:o[b + 1]].astype(np.float64)
            channels = att.shape[1]
            values.append(att)
            pen = sketch.points[:, 2]
            stats = sketch_statistics(att, pen)
            if stats is None:
                continue
            for k in SKETCH_STATS:
                per_sketch[k].append(stats[k])
            mean = att.mean(axis=1)
            position = np.minimum(stroke_of_point(pen), MAX_STROKE_POSITION)
            stroke_sum += np.bincount(position, mean, minlength=MAX_STROKE_POSITION + 1)
            stroke_count += np.bincount(position, minlength=MAX_STROKE_POSITION + 1)
            decile = np.minimum((np.arange(len(mean)) * DECILES) // len(mean), DECILES - 1)
            decile_sum += np.bincount(decile, mean, minlength=DECILES)
            decile_count += np.bincount(decile, minlength=DECILES)
    if not per_sketch["std"]:
        raise R2CNNError("no sketch with two or more points to measure the attention on")
    stacked = {k: np.stack(v) for k, v in per_sketch.items()}  # (S, C)
    every = np.concatenate(values)
    result = {
        "sketches": len(sketches), "measured_sketches": int(len(stacked["std"])), "channels": int(channels),
        "overall": {"mean": float(every.mean()), "min": float(every.min()), "max": float(every.max()),
                    "p5": float(np.percentile(every, 5)), "p95": float(np.percentile(every, 95))},
        # over all channels together: every (sketch, channel) pair is one value
        "per_sketch": {k: _summary(v.reshape(-1)) for k, v in stacked.items() if k != "mean"},
        "between_sketch_std": float(stacked["mean"].std(axis=0).mean()),
        "per_channel": [{k: _summary(v[:, c]) for k, v in stacked.items() if k != "mean"}
                        for c in range(channels)] if channels > 1 else None,
        "mean_by_stroke_position": [
            {"stroke": f"{i + 1}" if i < MAX_STROKE_POSITION else f"{MAX_STROKE_POSITION + 1}+",
             "mean": float(s / n) if n else None, "points": int(n)}
            for i, (s, n) in enumerate(zip(stroke_sum, stroke_count))],
        "mean_by_point_decile": [float(s / n) if n else None for s, n in zip(decile_sum, decile_count)],
    }
    return result


def format_statistics(stats: dict, title: str) -> str:
    """A few lines for the terminal."""
    def f(x, sign=""):
        return "n/a" if x is None else f"{x:{sign}.3f}"

    s = stats["per_sketch"]
    counted = "sketches" if stats["channels"] == 1 else "sketch x channel values"
    lines = [f"{title}: {stats['measured_sketches']} sketches, C = {stats['channels']}; attention "
             f"{stats['overall']['min']:.3f}..{stats['overall']['max']:.3f} (p5 {stats['overall']['p5']:.3f}, "
             f"p95 {stats['overall']['p95']:.3f}, mean {stats['overall']['mean']:.3f})",
             f"  within a sketch: std {f(s['std']['mean'])} (median {f(s['std']['median'])}), p95-p5 "
             f"{f(s['range_5_95']['mean'])}; between sketches: std of the sketch means "
             f"{stats['between_sketch_std']:.3f}",
             f"  Spearman with point order {f(s['spearman_point_order']['mean'], '+')} (median "
             f"{f(s['spearman_point_order']['median'], '+')}), with stroke index "
             f"{f(s['spearman_stroke_index']['mean'], '+')} (median {f(s['spearman_stroke_index']['median'], '+')}; "
             f"{s['spearman_stroke_index']['values']} {counted} with 2+ strokes and some spread)",
             "  mean by stroke: " + ", ".join(f"{b['stroke']}: {b['mean']:.3f}" for b in
                                              stats["mean_by_stroke_position"] if b["mean"] is not None),
             "  mean by point decile: " + ", ".join("n/a" if m is None else f"{m:.3f}"
                                                     for m in stats["mean_by_point_decile"])]
    return "\n".join(lines)


def split_statistics(checkpoint: str, data: str, *, split: str = "valid", fold: int | None = None,
                     max_sketches: int | None = 5000, seed: int = 0, device: str = "cpu") -> dict:
    """:func:`attention_statistics` of a checkpoint over a store split (at most ``max_sketches``, a seeded sample;
    None or 0: all), with the checkpoint, data and split recorded."""
    from r2cnn.viz.attention import AttentionModel, open_store

    model = AttentionModel(checkpoint, device)
    if not model.has_attention:
        raise R2CNNError(model.no_attention_message())
    store = open_store(data, model.classes)
    positions = store.indices(split, fold=model.config.get("fold") if fold is None else fold)
    if len(positions) == 0:
        raise R2CNNError(f"{data}: split {split!r} is empty")
    if max_sketches and max_sketches < len(positions):
        positions = np.sort(np.random.default_rng(seed).choice(positions, max_sketches, replace=False))
    stats = attention_statistics(model, [store[int(i)] for i in positions])
    return {"checkpoint": model.path, "model": model.name, "data": str(data), "split": split, **stats}
