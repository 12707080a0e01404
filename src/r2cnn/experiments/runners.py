"""Row runners: how one (seed, fold) sub-run of a row is trained and its test sketches predicted.

A preset chooses its runner with ``preset.get("runner", "neural")``. A runner is an object with

- ``train(preset, data, out, *, seed, fold, epochs, steps, max_minutes, init_from, resume, train_subset) -> Path``:
  train on ``data`` (a store folder) into the folder ``out`` and return the selected model file (e.g. best.pt).
  ``preset`` is the full preset dict after the spec's overrides and the protocol's data handling, with its name
  under ``"preset"``. ``fold`` is the test fold of a k-fold store (None for fixed splits); selection uses the
  store's ``valid`` split for that fold, never ``test``. ``resume`` is True when ``out`` already exists (an
  interrupted sub-run): continue it, or start again if nothing resumable was written. ``train_subset`` is N
  training sketches per class (:func:`r2cnn.experiments.protocols.per_class_subset`), or None for all.
- ``predict(model_path, data, split, fold) -> dict`` with numpy arrays ``index`` (store indices, ``(N,)``),
  ``label`` ``(N,)`` and ``top5`` ``(N, k<=5)`` (class ids, best first).

Training speed is reported by a JSON file ``speed.json`` beside the returned model file, with
``step_seconds`` (one optimiser step) and ``sketches_per_second`` measured during training; a runner that has no
such figure writes none. Runners: ``"neural"`` (:class:`NeuralRunner`, the engine) and ``"classic"``
(``r2cnn.classic.runner.ClassicRunner()``, imported only when a row needs it).
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import numpy as np

from r2cnn.data.formats.common import AtomicWriter
from r2cnn.errors import R2CNNError

SPEED_FILE = "speed.json"


def runner_kind(preset: dict) -> str:
    """``"neural"`` (the engine: optimiser steps) or another runner's name (``"classic"``: one fit)."""
    return preset.get("runner", "neural")


def takes_optional_entry(preset: dict, key: str) -> bool:
    """Whether ``key`` is an engine entry a network preset may leave out (``OPTIONAL_ENTRIES`` of
    :mod:`r2cnn.engine.config`, e.g. ``encoder_lr_scale``) and ``preset`` is a network's: a classic row has no
    optimiser for it to reach."""
    from r2cnn.engine.config import OPTIONAL_ENTRIES

    return key in OPTIONAL_ENTRIES and runner_kind(preset) == "neural"


def get_runner(preset: dict, neural: "NeuralRunner"):
    """The runner object for ``preset`` (``neural`` is the configured :class:`NeuralRunner`)."""
    kind = runner_kind(preset)
    if kind == "neural":
        return neural
    if kind == "classic":
        try:
            from r2cnn.classic.runner import ClassicRunner
        except ImportError as e:
            raise R2CNNError(f"preset {preset.get('preset')!r} needs the classic runner (r2cnn.classic.runner), "
                             f"which is not available: {e}") from None
        return ClassicRunner()
    raise R2CNNError(f"preset {preset.get('preset')!r}: unknown runner {kind!r} (neural, classic)")


def read_json(path: Path, kind: type = dict):
    """A JSON file an experiment wrote (a ``kind``); an empty, torn or foreign one is a one-line error naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = "empty" if path.stat().st_size == 0 else f"not JSON: {str(e).splitlines()[0]}"
        raise R2CNNError(f"{path}: damaged ({reason}); remove it (or its row's folder) and run again") from None
    except OSError as e:
        raise R2CNNError(f"{path}: cannot read ({e.strerror})") from None
    if not isinstance(data, kind):
        raise R2CNNError(f"{path}: damaged (it holds a JSON {type(data).__name__}, not a {kind.__name__}); remove "
                         f"it (or its row's folder) and run again")
    return data


def write_json_atomic(path: Path, data) -> None:
    with AtomicWriter(path, compress=False) as f:
        f.write(json.dumps(data, indent=1).encode())


def read_speed(model_path: Path) -> dict:
    f = Path(model_path).parent / SPEED_FILE
    return read_json(f) if f.is_file() else {}


class NeuralRunner:
    """Trains with :func:`r2cnn.engine.train.train` (exact resume from ``last.pt``) and predicts with the
    selected checkpoint (``best.pt``, chosen on the validation split)."""

    def __init__(self, device: str = "cpu", workers: int | None = None, checkpoint_every: int = 100,
                 progress: bool | None = None, batch_size: int = 128, log_every: int = 10):
        self.device, self.workers, self.checkpoint_every = device, workers, checkpoint_every
        self.progress, self.batch_size, self.log_every = progress, batch_size, log_every

    def train(self, preset: dict, data: Path, out: Path, *, seed: int, fold: int | None, epochs: int | None,
              steps: int | None, max_minutes: float | None, init_from: Path | None, resume: bool,
              train_subset: int | None) -> Path:
        from r2cnn.data.store import SketchStore
        from r2cnn.engine.train import TrainOptions, train
        from r2cnn.experiments.protocols import subset_view

        out = Path(out)
        if resume and not (out / "last.pt").exists():
            shutil.rmtree(out)  # interrupted before its first checkpoint: nothing to resume
            resume = False
        engine_fold = fold
        if train_subset is not None:
            # beside the run folder, not in it: the engine is given a run folder only to create or resume
            view = out.with_name(f"{out.name}.data")
            if not (resume and (view / "manifest.json").exists()):
                subset_view(SketchStore(data), view, fold, train_subset)
            data, engine_fold = view, None
        config = {k: v for k, v in preset.items() if k != "preset"}
        opts = TrainOptions(preset=preset["preset"], data=str(data), out=str(out), epochs=epochs, steps=steps,
                            max_minutes=max_minutes, resume=resume, seed=seed, fold=engine_fold,
                            init_from=None if init_from is None else str(init_from), device=self.device,
                            workers=self.workers, checkpoint_every=self.checkpoint_every, progress=self.progress,
                            log_every=self.log_every, config_overrides=config)
        result = train(opts)
        best = Path(result["best_path"])
        write_json_atomic(best.parent / SPEED_FILE, training_speed(out / "log.jsonl", int(config["batch_size"])))
        return best

    def predict(self, model_path: Path, data: Path, split: str, fold: int | None) -> dict:
        import torch

        from r2cnn.data.loader import make_loader
        from r2cnn.data.store import SketchStore
        from r2cnn.engine.factory import build_transform, load_model
        from r2cnn.engine.precision import denormals_flushed

        device = torch.device(self.device)
        model, ckpt = load_model(str(model_path), device)
        store = SketchStore(data)
        if list(ckpt["classes"]) != list(store.classes):
            raise R2CNNError(f"{model_path}: trained on other classes than the store {data}")
        index = store.indices(split, fold=fold)
        loader = make_loader(store, None, indices=index, batch_size=self.batch_size,
                             transform=build_transform(ckpt["config"], train=False), raster_size=model.raster_size,
                             raster_eps=model.raster_eps, num_workers=self.workers or 0)
        labels, top = [], []
        k = min(5, len(store.classes))
        with torch.no_grad(), denormals_flushed():
            for batch in loader:
                batch = batch.to(device)
                top.append(model(batch).topk(k, dim=1).indices.cpu().numpy())
                labels.append(batch.labels.cpu().numpy())
        return {"index": index, "label": np.concatenate(labels) if labels else np.zeros(0, np.int64),
                "top5": np.concatenate(top) if top else np.zeros((0, k), np.int64), **read_speed(Path(model_path))}


def training_speed(log_path: Path, batch_size: int) -> dict:
    """Median sketches/s over the training log's windows (the first is dropped when there are others: it holds
    the start-up), and the step time of one batch at that rate."""
    rates = []
    if log_path.is_file():
        for line in log_path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("kind") == "train" and rec.get("sketches_per_s"):
                rates.append(float(rec["sketches_per_s"]))
    if len(rates) > 1:
        rates = rates[1:]
    if not rates:
        return {}
    rate = statistics.median(rates)
    return {"sketches_per_second": rate, "step_seconds": batch_size / rate}
