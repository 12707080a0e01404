"""``r2cnn visualize``: attention figures for chosen sketches of a store split, and the deletion check.

Sketches are chosen by position in the split (``index``), at random (``sample``, seeded), or among those the
model gets wrong (``failures``, the paper's Fig. 6, scanning the split in a seeded random order). For each
one :func:`r2cnn.viz.figures.sketch_figure` is written as ``sketch-<split>-<position>.png/.svg``, all of them
together as ``overview.png/.svg`` (Fig. 4 layout, with the compared model's top-3 when given, and colour bars),
their numbers as ``sketches.json``, and the deletion check over the split as ``deletion.json`` and
``deletion.png/.svg``. One numbering throughout: a sketch is its position in the split, ``<split> #<position>`` in
the titles and the printed lines, ``sketch-<split>-<position>`` in the file names (``sketches.json`` also gives its
store index).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from r2cnn.data.formats.common import write_file
from r2cnn.errors import R2CNNError
from r2cnn.viz.attention import AttentionModel, SketchView, check_same_classes, open_store


def choose(model: AttentionModel, store, positions: np.ndarray, *, index: Sequence[int] | None = None,
           sample: int | None = None, failures: int | None = None, seed: int = 0, split: str = "test",
           batch_size: int = 64) -> list[int]:
    """Positions in the split (indices into ``positions``, the split's store indices) of the sketches to draw."""
    n = len(positions)
    if index:
        bad = [i for i in index if not 0 <= i < n]
        if bad:
            raise R2CNNError(f"--index {bad[0]}: out of range, split {split!r} has {n} sketches (0..{n - 1})")
        return list(index)
    order = np.random.default_rng(seed).permutation(n)
    if failures is None:
        return sorted(order[:sample].tolist())
    found: list[int] = []
    for start in range(0, n, batch_size):
        chunk = order[start:start + batch_size]
        sketches = [store[int(positions[p])] for p in chunk]
        predicted = model.predict_prepared(model.prepare(sketches), batch_size)
        found += [int(p) for p, s, y in zip(chunk, sketches, predicted) if y != s.label]
        if len(found) >= failures:
            break
    return found[:failures]


def _record(position: int, view: SketchView, classes: Sequence[str], compare: SketchView | None) -> dict:
    top = lambda v: [{"class": classes[c], "probability": p} for c, p in v.top(3)]
    return {"position": position, "store_index": view.index,
            "label": None if view.label is None else classes[view.label], "correct": view.correct,
            "top3": top(view), "stroke_importance": view.importance.round(6).tolist(),
            **({"compare_top3": top(compare), "compare_correct": compare.correct} if compare is not None else {})}


def visualize(checkpoint: str, data: str, out: str | Path, *, split: str = "test", fold: int | None = None,
              index: Sequence[int] | None = None, sample: int | None = None, failures: int | None = None,
              compare: str | None = None, seed: int = 0, deletion_ks: Sequence[int] = (1, 2, 3),
              deletion_max: int | None = 5000, stretch: bool = False, device: str = "cpu",
              log: Callable[[str], None] = print) -> dict:
    """Write the figures into ``out``; returns ``{"sketches": [...], "files": [...], "deletion": {...} or None}``.

    With none of ``index``, ``sample`` and ``failures``, 6 sketches are sampled. ``deletion_ks`` empty: no deletion
    check; ``deletion_max``: at most that many sketches of the split (a seeded sample; None or 0: all of them).
    """
    from r2cnn.viz import figures
    from r2cnn.viz.deletion import deletion_check, format_deletion

    if sum(x is not None and x != [] for x in (index, sample, failures)) > 1:
        raise R2CNNError("choose the sketches with one of --index, --sample, --failures")
    for name, value in (("--sample", sample), ("--failures", failures)):
        if value is not None and value < 1:
            raise R2CNNError(f"{name} must be at least 1, not {value}")
    if deletion_max is not None and deletion_max < 0:
        raise R2CNNError(f"--deletion-max must be >= 0, not {deletion_max}")
    if not index and sample is None and failures is None:
        sample = 6
    model = AttentionModel(checkpoint, device)
    if not model.has_attention:
        raise R2CNNError(model.no_attention_message() + "; give it as --compare next to an R2CNN checkpoint")
    other = AttentionModel(compare, device) if compare else None
    if other is not None:
        check_same_classes(model, other)
    store = open_store(data, model.classes)
    positions = store.indices(split, fold=model.config.get("fold") if fold is None else fold)
    if len(positions) == 0:
        raise R2CNNError(f"{data}: split {split!r} is empty")

    chosen = choose(model, store, positions, index=index, sample=sample, failures=failures, seed=seed, split=split)
    if failures is not None and len(chosen) < failures:
        log(f"{model.path} gets {len(chosen)} sketches of split {split!r} wrong; drawing those")
    sketches = [store[int(positions[p])] for p in chosen]
    views = model.views(sketches)
    compared = other.views(sketches) if other is not None else None
    out = Path(out)
    files, records = [], []
    names = dict(name=model.name, compare_name=other.name if other else "")
    for i, (position, view) in enumerate(zip(chosen, views)):
        peer = compared[i] if compared else None
        fig = figures.sketch_figure(view, model.classes, compare=peer, stretch=stretch, where=f"{split} #{position}",
                                    **names)
        files += figures.save(fig, out / f"sketch-{split}-{position}")
        records.append(_record(position, view, model.classes, peer))
    if views:
        fig = figures.overview_figure(views, model.classes, compare=compared, stretch=stretch,
                                      where=[f"#{p}" for p in chosen], **names)
        files += figures.save(fig, out / "overview")

    deletion = None
    if deletion_ks:
        rng = np.random.default_rng(seed)
        subset = positions if not deletion_max or deletion_max >= len(positions) else \
            np.sort(rng.choice(positions, deletion_max, replace=False))
        deletion = deletion_check(model, [store[int(i)] for i in subset], deletion_ks, seed=seed)
        deletion.update(checkpoint=model.path, data=str(data), split=split)
        write_file(out / "deletion.json", json.dumps(deletion, indent=1))
        files += [out / "deletion.json", *figures.save(figures.deletion_figure(deletion), out / "deletion")]
        log(format_deletion(deletion, f"deletion check on {split}"))
    write_file(out / "sketches.json", json.dumps(
        {"checkpoint": model.path, "compare": other.path if other else None, "data": str(data), "split": split,
         "sketches": records}, indent=1))
    files.append(out / "sketches.json")
    return {"sketches": records, "files": [str(f) for f in files], "deletion": deletion}
