"""The two evaluation protocols of the paper (Sec. 4.1) and the sketches each sub-run may see.

- ``quickdraw``: a store with fixed splits (sketch-rnn ``.npz`` splits, or the seeded ndjson split of
  ``r2cnn prepare``). One sub-run per seed; the checkpoint is selected on ``valid`` (the engine's best.pt) and the
  ``test`` split is predicted once, by the selected checkpoint, after training.
- ``tuberlin``: a k-fold store (``r2cnn prepare`` deals each class's sketches into k folds by a seeded hash, so
  the folds are the same on every run and machine). One sub-run per (seed, fold): fold k is the test split,
  validation is a seeded part of the other folds (``SketchStore.indices``) and training the rest, so no test
  sketch is used for training or selection. Sketches are RDP-simplified to at most 448 points and augmented
  (horizontal flip, stroke removal, deformation), as in the paper; a preset's own values win.
- ``auto``: ``tuberlin`` for a k-fold store, else ``quickdraw`` (the CPU twins run on either kind of data).

``train_subset`` (a budget: N training sketches per class) is applied through a *view* of the store
(:func:`subset_view`): a folder that links to the store's arrays and has its own split file, so the engine trains
on the subset while store indices, and therefore test predictions, stay those of the full store.

Tuning mode (``mode = "tuning"`` in a spec, or ``r2cnn experiment --tuning``): for choosing presets, learning rates,
encoder sizes and budgets without looking at the test split. Every sub-run trains on a view made with
``seal_test=True``: its train and valid splits are the sub-run's, the test sketches are marked unused, and the view
refuses to give out test indices (:attr:`r2cnn.data.store.SketchStore.test_sealed`); the source store's test
indices are not even asked for. The best epoch is picked on the validation split as always, and the validation
split is what is predicted and reported (so its figures are slightly optimistic, equally for every row).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from r2cnn.data.formats.common import replace_durably
from r2cnn.data.store import SketchStore
from r2cnn.data.store.reader import MANIFEST
from r2cnn.data.store.splits import SPLIT_CODE
from r2cnn.errors import R2CNNError

# Paper Sec. 4.1 (TU-Berlin): at most 448 points after RDP; augmentation as in Sketch-a-Net (the probabilities are
# ours, the same as the tub-* presets').
TUBERLIN_TRANSFORM = {"max_points": 448, "flip": 0.5, "stroke_removal": 0.3, "deform": 0.5}
TUBERLIN_EVAL_TRANSFORM = {"max_points": 448}
SUBSET_SEED = 0  # the training subset is the same for every row and seed, so rows differ only in the model
_ARRAYS = ("points", "offsets", "labels", "key_ids")


def resolve(protocol: str, store: SketchStore) -> str:
    """The protocol a row runs under on ``store`` ("auto" decided by the store); checks that they fit."""
    kind = "tuberlin" if store.is_kfold else "quickdraw"
    if protocol == "auto":
        return kind
    if protocol != kind:
        need = "a k-fold store (r2cnn prepare ... --folds 3)" if protocol == "tuberlin" else \
            "a store with train/valid/test splits"
        raise R2CNNError(f"{store.path}: protocol {protocol!r} needs {need}")
    return protocol


def subruns(protocol: str, store: SketchStore, seeds) -> list[tuple[int, int | None]]:
    """``(seed, fold)`` of every training run of a row: seeds x folds (TU-Berlin) or seeds (QuickDraw)."""
    folds = list(range(store.num_folds)) if protocol == "tuberlin" else [None]
    return [(int(s), f) for s in seeds for f in folds]


def protocol_config(protocol: str, config: dict) -> dict:
    """The preset config with the protocol's data handling: TU-Berlin's simplification and augmentation are
    filled in where the preset leaves them unset."""
    if protocol != "tuberlin":
        return config
    return dict(config, transform={**TUBERLIN_TRANSFORM, **(config.get("transform") or {})},
                eval_transform={**TUBERLIN_EVAL_TRANSFORM, **(config.get("eval_transform") or {})})


REPORTED_SPLIT = {"test": "test", "tuning": "valid"}  # the split each mode (spec.MODES) predicts and reports


def split_indices(store: SketchStore, fold: int | None, train_subset: int | None = None,
                  splits=("train", "valid", "test")) -> dict[str, np.ndarray]:
    """Store indices of the sketches a sub-run trains on, selects on and is tested on (only ``splits`` are asked
    for: tuning leaves out "test")."""
    out = {s: store.indices(s, fold=fold) for s in splits}
    if train_subset is not None:
        out["train"] = per_class_subset(out["train"], np.asarray(store.labels), train_subset)
    return out


def per_class_subset(indices: np.ndarray, labels: np.ndarray, per_class: int) -> np.ndarray:
    """The first ``per_class`` of ``indices`` of every class in a permutation seeded by :data:`SUBSET_SEED`
    (sorted). A class with fewer keeps all of them."""
    order = np.random.default_rng(SUBSET_SEED).permutation(len(indices))
    shuffled = indices[order]
    lab = labels[shuffled]
    keep = np.zeros(len(shuffled), bool)
    for c in np.unique(lab):
        keep[np.flatnonzero(lab == c)[:per_class]] = True
    return np.sort(shuffled[keep])


def subset_view(store: SketchStore, out: Path, fold: int | None, train_subset: int | None,
                seal_test: bool = False) -> Path:
    """A store folder at ``out`` whose train split is :func:`split_indices`'s (subset, or all with None) for
    ``fold``, valid and test unchanged, every other sketch unused: the arrays are symbolic links to ``store``'s, so
    building it costs one byte per sketch. It is a fixed-split store (train with ``fold=None``), also for a k-fold
    source. ``seal_test``: the tuning view (module docstring): no test split, and a manifest that seals it."""
    parts = split_indices(store, fold, train_subset, ("train", "valid") if seal_test else ("train", "valid", "test"))
    splits = np.full(len(store), -1, np.int8)
    for name, idx in parts.items():
        splits[idx] = SPLIT_CODE[name]
    tmp = out.with_name(f"{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        for name in _ARRAYS:
            os.symlink((store.path / f"{name}.npy").resolve(), tmp / f"{name}.npy")
        np.save(tmp / "splits.npy", splits)
        labels = np.asarray(store.labels)
        counts = {name: {c: int(n) for c, n in zip(store.classes, np.bincount(labels[idx], minlength=len(store.classes)))}
                  for name, idx in parts.items()}
        manifest = {k: v for k, v in store.manifest.items() if k not in ("counts", "kind")}
        manifest.update(kind="splits", counts=counts, view_of={"store": str(store.path.resolve()), "fold": fold,
                                                               "train_subset": train_subset,
                                                               "subset_seed": SUBSET_SEED})
        if seal_test:
            manifest["sealed_test"] = True
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.exists():
            shutil.rmtree(out)
        replace_durably(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# The paper's data sizes (Sec. 4.1), for the dry run's estimate at paper scale.
PAPER_SCALE = {
    "quickdraw": {"classes": 345, "train": 345 * 70000, "valid": 345 * 2500, "test": 345 * 2500, "folds": 1},
    # 250 x 80 sketches, 3 folds: a fold's test part is a third, the validation part 10% of the other two thirds
    "tuberlin": {"classes": 250, "train": round(250 * 80 * 2 / 3 * 0.9), "valid": round(250 * 80 * 2 / 3 * 0.1),
                 "test": round(250 * 80 / 3), "folds": 3},
}
