"""``r2cnn.load(path).predict(strokes)``: one API over a checkpoint, an ONNX file and a TorchScript file.

The engine follows from the file's name and what the caller allows (:func:`load`): a checkpoint written by
``r2cnn train`` runs in PyTorch (the training model, NLR kernels included: :class:`r2cnn.engine.predict.Predictor`);
``model.onnx`` runs in onnxruntime; a TorchScript file written by ``r2cnn export``, with ``trust_code=True`` only,
in ``torch.jit``. Each gets the same preprocessing (the evaluation transform recorded
with the model: :func:`r2cnn.data.transforms.normalize`, plus any simplification or stroke-order change) and gives
the same :class:`Prediction`.

Checkpoints load with ``weights_only=True`` and ONNX files are data; a TorchScript file is code as well as weights
and loads only with ``trust_code=True`` (:func:`load`).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch


@dataclass
class Prediction:
    """What :meth:`LoadedModel.predict` returns for one sketch.

    - ``labels``, ``probabilities``: the top-k classes, most likely first, and their softmax probabilities;
    - ``points`` ``(N, 3)`` float32: the sketch as the model saw it (normalised, maybe simplified);
    - ``attention`` ``(N,)`` float32: each of those points' attention (Sec. 3.2; the mean over channels when the
      model has several), or None for a model without per-point attention (CNN-only).
    """

    labels: list[str]
    probabilities: list[float]
    points: np.ndarray
    attention: np.ndarray | None

    @property
    def label(self) -> str:
        """The most likely class."""
        return self.labels[0]


class LoadedModel:
    """A model ready to classify sketches; made by :func:`load`. ``classes`` the class names, ``metadata`` the
    export metadata (:func:`r2cnn.export.exporters.describe`; for a checkpoint its classes, model, preset and
    preprocessing), ``engine`` "pytorch", "onnxruntime" or
    "torchscript"."""

    def __init__(self, engine: str, run, metadata: dict):
        from r2cnn.data.transforms import make_transform

        self.engine = engine
        self._run = run  # normalised points (N, 3) float32 -> (logits (K,), attention (N,) or None)
        self.metadata = metadata
        self.classes: list[str] = list(metadata["classes"])
        self.transform = make_transform(False, **metadata["input"]["preprocess"])

    def predict(self, strokes, top_k: int = 5) -> Prediction:
        """Classify one sketch: ``strokes`` as Quick, Draw!'s ``[[xs, ys], ...]`` or raw ``[[xs, ys, ts], ...]``
        in any coordinate range (y down), a :class:`Sketch` or an ``(N, 3)`` array (x, y, pen_end). The input
        contract of :mod:`r2cnn.strokes` (the one the server's ``/api/predict`` applies): malformed input, more
        than 65,535 points or strokes, and a ``top_k`` that is not a whole number >= 1 are one-line
        :class:`R2CNNError` s, before any model work."""
        from r2cnn.strokes import check_top_k

        top_k = check_top_k(top_k)
        sketch = Sketch.checked(strokes)
        # the evaluation transform is deterministic but for an ablation's random stroke order, kept fixed here
        sketch = self.transform(sketch, np.random.default_rng(0))
        logits, attention = self._run(sketch.points)
        z = logits.astype(np.float64) - logits.max()
        probs = np.exp(z) / np.exp(z).sum()
        top = np.argsort(-probs, kind="stable")[:min(top_k, len(self.classes))]
        return Prediction([self.classes[i] for i in top], [float(probs[i]) for i in top], sketch.points,
                          None if attention is None else attention.astype(np.float32))

    def predict_many(self, sketches: Sequence, top_k: int = 5) -> list[Prediction]:
        return [self.predict(s, top_k) for s in sketches]


def load(path: str | os.PathLike, device: str = "cpu", *, trust_code: bool = False) -> LoadedModel:
    """A model ready to classify sketches, from one of three kinds of file.

    - a checkpoint written by ``r2cnn train`` (``best.pt``, ``last.pt``): loaded with ``torch.load(...,
      weights_only=True)``, plain data (tensors, numbers, strings), and run in PyTorch;
    - ``*.onnx`` from ``r2cnn export --format onnx``: a graph of operators, data only, run by onnxruntime;
    - a TorchScript file from ``r2cnn export --format torchscript``, **only with** ``trust_code=True``.

    A TorchScript file is a program, not data: its code runs when it loads (``__setstate__``) and when it
    predicts, and can read or write any file you can. The caller decides: the file's name picks ONNX (``*.onnx``),
    anything else is read as a checkpoint, and a file that is a TorchScript archive is loaded as one only when
    ``trust_code=True`` says that you trust its code (a file you exported yourself); without it the file is
    refused with a one-line :class:`R2CNNError` and nothing of it runs. Prefer the ONNX export to hand a model
    around. A damaged or foreign file of any kind is a one-line :class:`R2CNNError` too.

    Args:
        path: the model file.
        device: where a checkpoint or TorchScript model runs (``"cpu"``, ``"cuda"``); ONNX runs on the CPU.
        trust_code: allow a TorchScript file, whose code then runs in this process.
    """
    path = Path(path)
    if not path.is_file():
        raise R2CNNError(f"{path}: no such model file")
    if path.suffix == ".onnx":
        return _load_onnx(path)
    from r2cnn.engine.checkpoint import is_torchscript_archive

    if is_torchscript_archive(path):
        if not trust_code:
            raise R2CNNError(f"{path}: a TorchScript file, which is code that runs when it loads; loaded only "
                             "with r2cnn.load(path, trust_code=True) for a file you trust (or use the ONNX export, "
                             "which is data only)")
        return _load_torchscript(path, device)
    return _load_checkpoint(path, device)


def _load_onnx(path: Path) -> LoadedModel:
    from r2cnn.export.exporters import require_extra

    require_extra("onnxruntime", f"{path}: loading an ONNX model")
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for a torn or foreign file
        raise R2CNNError(f"{path}: not a readable ONNX model: {str(e).splitlines()[0]}") from e
    props = session.get_modelmeta().custom_metadata_map
    if "classes" not in props:
        raise R2CNNError(f"{path}: an ONNX model without r2cnn metadata (export it with `r2cnn export`)")
    metadata = {k: json.loads(v) for k, v in props.items()}

    def run(points: np.ndarray):
        logits, attention = session.run(None, {"points": np.ascontiguousarray(points, np.float32)})
        return logits[0], attention if metadata["has_attention"] else None

    return LoadedModel("onnxruntime", run, metadata)


def _load_torchscript(path: Path, device: str) -> LoadedModel:
    import torch

    from r2cnn.export.exporters import METADATA_FILE

    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as e:  # torch raises RuntimeError (with a C++ trace) for a damaged or foreign archive
        first = " ".join(str(e).split())[:160]
        raise R2CNNError(f"{path}: not a loadable TorchScript file ({type(e).__name__}: {first})") from None
    if not extra[METADATA_FILE]:
        raise R2CNNError(f"{path}: a TorchScript file without r2cnn metadata (export it with `r2cnn export`)")

    metadata = json.loads(extra[METADATA_FILE])
    warm_up_torchscript(module, device)

    @torch.no_grad()
    def run(points: np.ndarray):
        logits, attention = module(torch.from_numpy(points).to(device))
        return logits[0].cpu().numpy(), attention.cpu().numpy() if metadata["has_attention"] else None

    return LoadedModel("torchscript", run, metadata)


def warm_up_torchscript(module, device: str = "cpu") -> None:
    """Run a loaded TorchScript model twice on an example sketch: torch's profiling executor profiles the first call
    and compiles the optimised graph on the second, which took about 0.8 s on a 2-core CPU for ``cpu-r2cnn``
    (``r2cnn bench export``), against tens of ms for every later sketch whatever its length; so the first sketch a
    user sends is not the one that pays."""
    import torch

    from r2cnn.export.exporters import example_points

    points = example_points().to(device)
    with torch.no_grad():
        for _ in range(2):
            module(points)


def _load_checkpoint(path: Path, device: str) -> LoadedModel:
    import torch

    from r2cnn.engine.predict import Predictor
    from r2cnn.sketch import SketchBatch

    predictor = Predictor(str(path), device)  # any model of the registry, exportable or not
    metadata = {"format": "checkpoint", "classes": predictor.classes, "model": predictor.config.get("model"),
                "preset": predictor.config.get("preset"),
                "input": {"preprocess": dict(predictor.config.get("eval_transform") or {})}}

    @torch.no_grad()
    def run(points: np.ndarray):
        from r2cnn.engine.precision import denormals_flushed

        batch = SketchBatch.from_sketches([Sketch(points)], labels=[-1]).to(predictor.device)
        with denormals_flushed():
            out = predictor.model.forward_with_attention(batch)
        attention = out.get("attention")
        return (out["logits"][0].float().cpu().numpy(),
                None if attention is None else attention.float().mean(1).cpu().numpy())

    return LoadedModel("pytorch", run, metadata)
