"""Checkpoints: one file per run state, written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint (docs/architecture.md "Engine") is a plain dict::

    format      int, CHECKPOINT_FORMAT
    version     package version that wrote it
    config      the preset dict merged with the command-line overrides (plain JSON types)
    classes     list[str], class names in label order
    model       model.state_dict() (the bare module's, never DDP's "module." prefix)
    optimizer, scheduler, scaler   their state_dicts (scaler None without fp16)
    epoch, step, batch_in_epoch    where training stands: batches already consumed in ``epoch``
    best        {"metric": name, "value": float, "step": int} or None
    rng         torch / numpy / python / cuda generator states, as tensors and ints only
    extra       free-form plain-typed dict

A run keeps two: ``last.pt`` with all of the above (what ``--resume`` continues from) and ``best.pt``, the model
selected on the validation split, without the entries only resuming needs (:data:`RESUME_ONLY`: the optimiser's
two moment tensors per weight make a full checkpoint about three times the model's size).

Only tensors, numbers, strings, lists and dicts are stored so that ``weights_only=True`` (no pickle code
execution) can load it. The write is: temporary file in the same directory, flush + fsync, ``os.replace``,
fsync of the directory; a crash at any point leaves either the old or the new file, never a torn one. The file
gets the permissions of any other file the user creates (0666 less the umask), not the temporary file's 0600:
checkpoints hold nothing secret, and a group sharing runs can read them like the logs and reports beside them.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r2cnn.data.formats.common import AtomicWriter
from r2cnn.errors import R2CNNError, describe_load_failure

CHECKPOINT_FORMAT = 1


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (:class:`~r2cnn.data.formats.common.AtomicWriter`: temp file +
    fsync + rename + folder fsync). A full or read-only disk is a one-line :class:`R2CNNError` naming ``path`` and
    saying the previous file is kept, with the temporary file removed (torch reports the failed write as a
    ``RuntimeError``; AtomicWriter finds the ``OSError`` behind it)."""
    with AtomicWriter(Path(path), compress=False) as f:
        torch.save(obj, f)


def model_file(state: dict) -> dict:
    """``state`` (a full checkpoint) without the entries only resuming needs: what ``best.pt`` holds."""
    return {k: v for k, v in state.items() if k not in RESUME_ONLY}


# What every checkpoint holds (what evaluate and predict need), and what resuming a run needs on top.
MODEL_KEYS = ("config", "classes", "model")
TRAINING_KEYS = ("optimizer", "scheduler", "epoch", "step", "batch_in_epoch", "best", "rng", "extra")
RESUME_ONLY = ("optimizer", "scheduler", "scaler", "rng", "batch_in_epoch")


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive by torch's own test (a ``<name>/constants.pkl`` record: what makes
    ``torch.load`` hand a file to ``torch.jit.load``). It reads the zip directory only; nothing is loaded."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(name.count("/") == 1 and name.endswith("/constants.pkl") for name in z.namelist())
    except Exception:  # not a zip, or a damaged one: torch.load then says what it is, in one line
        return False


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    training_state: bool = False) -> dict:
    """Load a checkpoint written by :func:`save_atomic` with ``weights_only=True``; user errors are one line.

    Checks that the file is one of ours: a dict with a ``config`` dict naming a ``model``, the ``classes`` as a
    list of strings and the ``model`` weights (and, with ``training_state=True``, everything ``--resume`` needs).
    """
    path = Path(path)
    if not path.is_file():
        raise R2CNNError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise R2CNNError(f"{path}: not an r2cnn checkpoint (empty file)")
    if is_torchscript_archive(path):  # torch.load would print its own two-line notice before refusing it
        raise R2CNNError(f"{path}: a TorchScript file (code, e.g. from `r2cnn export --format torchscript`), not a "
                         "checkpoint; give the checkpoint it came from (best.pt), or in Python "
                         "r2cnn.load(path, trust_code=True) if you trust the file's code")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notices go before our one line otherwise; errors still raise
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a torn, foreign or non-checkpoint file
        raise R2CNNError(f"{path}: not a readable r2cnn checkpoint: {describe_load_failure(e)}") from e
    if not isinstance(ckpt, dict):
        raise R2CNNError(f"{path}: not an r2cnn checkpoint (it holds a {type(ckpt).__name__}, not a dict)")
    missing = [k for k in MODEL_KEYS + (TRAINING_KEYS if training_state else ()) if k not in ckpt]
    if missing:
        raise R2CNNError(f"{path}: not an r2cnn checkpoint (no {', '.join(repr(k) for k in missing)} "
                         f"entr{'y' if len(missing) == 1 else 'ies'})")
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["config"].get("model"), str):
        raise R2CNNError(f"{path}: not an r2cnn checkpoint ('config' does not name a model)")
    classes = ckpt["classes"]
    if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) for c in classes):
        raise R2CNNError(f"{path}: not an r2cnn checkpoint ('classes' is not a list of class names)")
    if not isinstance(ckpt["model"], dict):
        raise R2CNNError(f"{path}: not an r2cnn checkpoint ('model' is not a state dict)")
    if not isinstance(ckpt.get("format", 0), int) or ckpt.get("format", 0) > CHECKPOINT_FORMAT:
        raise R2CNNError(f"{path}: checkpoint format {ckpt['format']!r} is newer than this sketch-r2cnn "
                         f"(reads up to {CHECKPOINT_FORMAT}); upgrade the package")
    return ckpt


def rng_state() -> dict:
    """Every generator a training step draws from, as tensors/ints (``weights_only``-safe)."""
    np_state = np.random.get_state()  # ("MT19937", uint32[624], pos, has_gauss, cached_gaussian)
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_version), "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss_next": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))


def to_plain(value: Any) -> Any:
    """Config values as plain JSON types (numpy scalars, tuples and paths would need pickle to load)."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
