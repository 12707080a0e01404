"""Which split (or fold) each record of a store belongs to (``prepare`` and ``build_store`` decide it once).

- A record's own split wins: the ``.npz`` files' ``train``/``valid``/``test`` arrays, or a ``train=DIR`` source, or
  ``split_from_folders`` (a ``train``/``valid``/``test`` folder on the path below a source folder).
- Other records (ndjson, bin) are split per class by a seeded hash of their ``key_id`` (of ``folder/file:line`` when
  the record has none): sorted by ``blake2b(key, key=seed)``, the first ``split_sizes[0]`` are train, the next
  valid, then test, the rest unused. Default: the paper's 70K/2.5K/2.5K per class (Sec. 4.1), scaled down
  proportionally for a smaller class. The hash makes the split independent of file order and stable across reruns.
- A store that would have no validation record (say ``train=A test=B``) gets its validation carved out of its
  ``train`` records instead, when ``split_sizes`` asks for one: per class, the records that the hash split with
  ``(TRAIN, VALID, 0)`` would make valid become valid, and all the others stay train. So ``train=A test=B`` with
  ``split_sizes=(9840, 300, 0)`` gives the same valid split as the plain source ``A`` (and, for a class of at
  most 10,140 sketches, the same train split; past that the plain source leaves the rest unused).
- ``folds=K`` (default 3 when any source is SVG, as for TU-Berlin in Sec. 4.1): each class's sketches, in hash
  order, are dealt round-robin into K folds; ``indices(split, fold=k)`` makes fold k the test split and takes the
  first ``fold_valid_fraction`` (by hash order) of the class's other sketches as validation.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from r2cnn.errors import R2CNNError


SPLITS = ("train", "valid", "test")
SPLIT_CODE = {"train": 0, "valid": 1, "test": 2}
DEFAULT_SPLIT_SIZES = (70000, 2500, 2500)  # per class, Sec. 4.1 (the sketch-rnn QuickDraw split)
DEFAULT_SVG_FOLDS = 3  # TU-Berlin: 3-fold cross-validation, Sec. 4.1


def split_hash(key: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8,
                                          key=int(seed).to_bytes(8, "little", signed=True)).digest(), "little")



def scaled_sizes(n: int, sizes: Sequence[int]) -> list[int]:
    """Per-class (train, valid, test) sizes: ``sizes`` when the class has enough sketches, else scaled down
    proportionally (valid and test keep at least one sketch each when the class has three or more)."""
    total = sum(sizes)
    if n >= total:
        return list(sizes)
    valid = int(round(n * sizes[1] / total)) if total else 0
    test = int(round(n * sizes[2] / total)) if total else 0
    if n >= 3:
        valid = max(valid, 1) if sizes[1] else 0
        test = max(test, 1) if sizes[2] else 0
    return [n - valid - test, valid, test]


def carve_valid(splits: np.ndarray, order: np.ndarray, bounds: np.ndarray, hashes: np.ndarray,
                 split_sizes: Sequence[int]) -> None:
    """In place: per class, the train records that the hash split with ``(TRAIN, VALID, 0)`` would make valid become
    valid (module docstring). ``order``/``bounds``: the records sorted by class and each class's range in it."""
    for c in range(len(bounds) - 1):
        idx = order[bounds[c]:bounds[c + 1]]
        idx = idx[splits[idx] == SPLIT_CODE["train"]]
        idx = idx[np.argsort(hashes[idx], kind="stable")]
        n_train, n_valid, _ = scaled_sizes(len(idx), (split_sizes[0], split_sizes[1], 0))
        splits[idx[n_train:n_train + n_valid]] = SPLIT_CODE["valid"]


def class_counts(labels: np.ndarray, classes: list[str]) -> dict[str, int]:
    counts = np.bincount(labels.astype(np.int64), minlength=len(classes))
    return {name: int(n) for name, n in zip(classes, counts)}



def parse_split_sizes(text: str) -> tuple[int, int, int]:
    try:
        sizes = tuple(int(x) for x in str(text).split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or min(sizes) < 0 or sum(sizes) == 0:
        raise R2CNNError(f"--split-sizes must be three non-negative integers TRAIN,VALID,TEST, not {text!r}")
    return sizes  # type: ignore[return-value]



def deal_folds(order: np.ndarray, bounds: np.ndarray, hashes: np.ndarray, folds: int,
               fold_valid_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(fold, fold_valid)`` of a k-fold store: each class's records, in hash order, dealt round-robin into
    ``folds`` folds; bit k of ``fold_valid`` marks the first ``fold_valid_fraction`` (hash order) of the class's
    records outside fold k. ``order``/``bounds``: the records sorted by class and each class's range in it."""
    n = len(order)
    fold = np.full(n, -1, np.int8)
    fold_valid = np.zeros(n, np.uint8)
    for c in range(len(bounds) - 1):
        idx = order[bounds[c]:bounds[c + 1]]
        idx = idx[np.argsort(hashes[idx], kind="stable")]
        fold[idx] = np.arange(len(idx)) % folds
        for k in range(folds):
            rest = idx[fold[idx] != k]
            fold_valid[rest[:int(round(fold_valid_fraction * len(rest)))]] |= np.uint8(1 << k)
    return fold, fold_valid


def hash_splits(given: np.ndarray, order: np.ndarray, bounds: np.ndarray, hashes: np.ndarray,
                split_sizes: Sequence[int]) -> np.ndarray:
    """The split code of every record: its ``given`` one (>= 0), else per class by hash order and
    :func:`scaled_sizes`; a store left without validation records gets them from train (:func:`carve_valid`)."""
    splits = given.copy()
    for c in range(len(bounds) - 1):
        idx = order[bounds[c]:bounds[c + 1]]
        idx = idx[given[idx] < 0]
        idx = idx[np.argsort(hashes[idx], kind="stable")]
        start = 0
        for code, n in enumerate(scaled_sizes(len(idx), split_sizes)):
            splits[idx[start:start + n]] = code
            start += n
    if split_sizes[1] and not (splits == SPLIT_CODE["valid"]).any():
        carve_valid(splits, order, bounds, hashes, split_sizes)
    return splits
