"""The deletion check: does attention mark the informative strokes? (the claim of the paper's Figs. 3-5, as a number)

For every sketch of a split, rank its strokes by mean attention (:func:`r2cnn.viz.attention.stroke_importance`),
remove the k most attended, the k least attended, or k random strokes, and classify what is left. If attention
marks the strokes the classifier needs, top-1 falls faster when the most attended strokes go.

Rules: the ranking and the removal act on the sketch as the model saw it (after the evaluation transform); the
remaining strokes keep their positions (no renormalisation), so the only change is the missing strokes. A
sketch keeps at least one stroke: ``min(k, S - 1)`` of its S strokes are removed, so one-stroke sketches are
classified unchanged. Ties in attention keep drawing order (stable sort). The random arm draws from a generator
seeded by ``(seed, position in the split)``. With k = 0 nothing is removed: every arm is the plain top-1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch
from r2cnn.viz.attention import AttentionModel, stroke_importance

ARMS = ("most", "least", "random")
RULE = "min(k, S-1) of a sketch's S strokes removed, positions kept, ties in drawing order"


def strokes_to_remove(importance: np.ndarray, k: int, arm: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of the strokes to remove: ``importance`` ``(S,)``, ``k`` strokes at most ``S - 1``; ``arm`` is
    "most" (highest attention first), "least" or "random" (needs ``rng``)."""
    s = len(importance)
    r = max(0, min(k, s - 1))
    if arm == "most":
        return np.argsort(-importance, kind="stable")[:r]
    if arm == "least":
        return np.argsort(importance, kind="stable")[:r]
    if arm == "random":
        return np.sort(rng.choice(s, size=r, replace=False))
    raise ValueError(f"unknown arm {arm!r}")


def without_strokes(sketch: Sketch, removed: np.ndarray) -> Sketch:
    """``sketch`` without the strokes whose indices are in ``removed`` (points and pen_end kept as they are)."""
    bounds = sketch.stroke_bounds
    keep = np.ones(len(sketch.points), bool)
    for s in removed:
        keep[bounds[s]:bounds[s + 1]] = False
    return Sketch(sketch.points[keep], sketch.label, dict(sketch.meta))


def deletion_check(model: AttentionModel, sketches: Sequence[Sketch], ks: Sequence[int] = (1, 2, 3), *,
                   seed: int = 0, batch_size: int = 64, progress: bool | None = None) -> dict:
    """Top-1 of ``model`` on ``sketches`` (labels: int class indices) after removing k strokes, for each k in
    ``ks`` and each arm of :data:`ARMS`. Returns plain JSON types::

        {"count", "mean_strokes", "ks": [0, *ks], "top1": {arm: {str(k): accuracy}}, "rule", "seed"}
    """
    from tqdm import tqdm

    if not model.has_attention:
        raise R2CNNError(model.no_attention_message() + "; the deletion check needs one")
    if any(k < 0 for k in ks):
        raise R2CNNError(f"deletion check: k must be >= 0, got {list(ks)}")
    if not sketches:
        raise R2CNNError("deletion check: no sketches")
    ks = sorted({0, *map(int, ks)})
    correct = {arm: dict.fromkeys(ks, 0) for arm in ARMS}
    strokes = 0
    disable = True if progress is False else None
    for start in tqdm(range(0, len(sketches), batch_size), desc="deletion check", unit="batch", leave=False,
                      disable=disable):
        chunk = sketches[start:start + batch_size]
        labels = np.array([int(s.label) for s in chunk])
        prepared = model.prepare(chunk)
        out = model.run(prepared)
        o = out["offsets"]
        importance = [stroke_importance(out["attention"][o[b]:o[b + 1]], sk.stroke_bounds)
                      for b, sk in enumerate(prepared)]
        strokes += sum(len(i) for i in importance)
        plain = int((out["probabilities"].argmax(1) == labels).sum())
        for arm in ARMS:
            correct[arm][0] += plain
            for k in ks[1:]:
                cut = [without_strokes(sk, strokes_to_remove(imp, k, arm, np.random.default_rng([seed, start + b])))
                       for b, (sk, imp) in enumerate(zip(prepared, importance))]
                correct[arm][k] += int((model.predict_prepared(cut, batch_size) == labels).sum())
    n = len(sketches)
    return {"count": n, "mean_strokes": strokes / n, "ks": ks,
            "top1": {arm: {str(k): c / n for k, c in per_k.items()} for arm, per_k in correct.items()},
            "rule": RULE, "seed": seed}


def format_deletion(result: dict, title: str = "deletion check") -> str:
    """The result as a plain-text table: one row per k, one column per arm."""
    from r2cnn.engine.report import table

    rows = [[str(k)] + [f"{result['top1'][arm][str(k)]:.4f}" for arm in ARMS] for k in result["ks"]]
    head = (f"{title}: top-1 of {result['count']} sketches (mean {result['mean_strokes']:.1f} strokes) after "
            f"removing k strokes ({result['rule']})")
    return head + "\n" + table(rows, ["k", "most attended removed", "least attended removed", "random removed"])
