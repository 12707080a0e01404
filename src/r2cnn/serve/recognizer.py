"""Recognition for the web page: strokes in, top-k classes and per-point attention out, one request at a time.

The server answers with a checkpoint in PyTorch (:class:`~r2cnn.engine.predict.Predictor`) or with an exported
ONNX model in onnxruntime (:func:`load_onnx`, through :func:`r2cnn.load`). An ONNX file is checked before it is
served: it loads in onnxruntime, carries r2cnn's metadata, and its JSON sidecar says the same; given with a
checkpoint, :func:`check_same_model` makes sure both are one model.

The model sees the sketch after its evaluation transform (normalised, and for some presets simplified or with its
strokes reordered), so its attention belongs to *those* points. :func:`attention_at` carries it back to the points
the person drew: exactly when the transform kept every point in place (the usual case), else from the nearest
point the model saw.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from r2cnn.data.formats.common import points_from_strokes
from r2cnn.data.transforms import normalize
from r2cnn.errors import R2CNNError
from r2cnn.export.loaded import LoadedModel
from r2cnn.sketch import Sketch

# Pairs of points compared at once by the nearest-neighbour search (bounds its memory to ~32 MB of float64).
_PAIRS_PER_CHUNK = 1 << 22


def attention_at(points: np.ndarray, seen: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """Attention at each input point.

    Args:
        points: ``(N, 3)`` the input sketch, normalised like the model's input (x, y in [-1, 1], pen_end).
        seen: ``(M, 3)`` the points the model saw (after its evaluation transform).
        attention: ``(M, C)`` the model's attention at ``seen``.

    Returns:
        ``(N, C)``: ``attention`` itself when ``seen`` is ``points`` (same count and places), otherwise the
        attention of the nearest seen point (points the transform dropped, strokes it reordered).
    """
    if seen.shape == points.shape and np.allclose(seen, points, atol=1e-5):
        return attention
    nearest = np.empty(len(points), np.int64)
    step = max(1, _PAIRS_PER_CHUNK // max(1, len(seen)))
    for start in range(0, len(points), step):
        diff = points[start:start + step, None, :2].astype(np.float64) - seen[None, :, :2]
        nearest[start:start + step] = np.einsum("nmk,nmk->nm", diff, diff).argmin(axis=1)
    return attention[nearest]


class Recognizer:
    """A model behind a lock, for a server's worker threads.

    ``model`` is a checkpoint's :class:`~r2cnn.engine.predict.Predictor` (``engine`` "pytorch") or an exported
    model from :func:`load_onnx` (a :class:`~r2cnn.export.loaded.LoadedModel`, ``engine`` "onnxruntime").
    Inference keeps no state between calls, but two requests at once would only compete for the same cores; the
    lock serves them one after the other and keeps the model's use single-threaded. ``has_attention`` is found by
    one prediction at start-up (which also warms the model up).
    """

    def __init__(self, model, source: str = ""):
        self.model = model
        self.source = source
        self.classes: list[str] = list(model.classes)
        self.transform = model.transform  # the evaluation transform (r2cnn.data.transforms.SketchTransform)
        if isinstance(model, LoadedModel):
            self.engine: str = model.engine
            self.model_name: str = str(model.metadata.get("model") or "?")
        else:
            self.engine = "pytorch"
            self.model_name = model.config.get("model", "?")
        self._lock = threading.Lock()
        probe = self.recognize([np.array([[0.0, 0.0], [1.0, 1.0]])], top_k=1)
        self.has_attention: bool = probe["attention"] is not None

    def recognize(self, strokes: Sequence[np.ndarray], top_k: int = 5, source: str = "request") -> dict:
        """Top-k classes and per-point attention for a drawing.

        Args:
            strokes: ``S`` arrays ``(n_i, 2)`` of x, y in any coordinate range (y down), in drawing order.
            top_k: how many classes (at most the model's number of classes).
            source: names the drawing in a :class:`~r2cnn.errors.SketchFormatError` (empty drawing or stroke,
                coordinates not finite in float32, too many points).

        Returns:
            ``dict(top=[(class, probability), ...], attention=S lists of n_i floats or None, channels=C or
            None)``: the attention is the mean over the model's C channels, in [0, 1]; None for a model without
            per-point attention.
        """
        lengths = np.array([len(s) for s in strokes], np.int64)
        xy = np.concatenate(strokes) if len(strokes) else np.zeros((0, 2))
        sketch = Sketch(points_from_strokes(xy, lengths, source))
        top, seen, attention, channels = self._predict(sketch, top_k)
        if attention is None:
            return dict(top=top, attention=None, channels=None)
        normalised = normalize(sketch, self.transform.margin).points
        per_point = attention_at(normalised, seen, attention).mean(axis=1)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return dict(top=top, channels=channels,
                    attention=[per_point[bounds[i]:bounds[i + 1]].tolist() for i in range(len(lengths))])

    def _predict(self, sketch: Sketch, top_k: int):
        """``(top, points the model saw (M, 3), attention (M, C) or None, C or None)`` from either engine."""
        if isinstance(self.model, LoadedModel):
            with self._lock:
                out = self.model.predict(sketch, top_k)
            if out.attention is None:
                return list(zip(out.labels, out.probabilities)), out.points, None, None
            # an export's attention output is already the mean over its channels (r2cnn.export.exporters.describe)
            attention = out.attention.reshape(len(out.points), -1)
            channels = int(self.model.metadata.get("attention_channels") or attention.shape[1])
            return list(zip(out.labels, out.probabilities)), out.points, attention, channels
        with self._lock:
            out = self.model.predict_with_attention(sketch, top_k)
        if out["attention"] is None:
            return out["top"], out["points"], None, None
        return out["top"], out["points"], out["attention"], int(out["attention"].shape[1])


def load_onnx(path: str | Path) -> LoadedModel:
    """An exported ONNX model for the server, checked before it is announced or served.

    The file must be named ``*.onnx``, load in onnxruntime (:func:`r2cnn.load`: data only, never code) with the
    export's metadata, and its JSON sidecar (:func:`r2cnn.serve.browser.sidecar_of`, read by the page) must say
    exactly what the file's own metadata says. Anything else (a TorchScript ``.pt``, a checkpoint, a truncated
    file, another export's sidecar) is a one-line :class:`R2CNNError` naming the file.
    """
    from r2cnn import load
    from r2cnn.serve.browser import sidecar_of

    path = Path(path)
    if not path.is_file():
        raise R2CNNError(f"{path}: no such ONNX file (make one with `r2cnn export --format onnx`)")
    if path.suffix != ".onnx":
        raise R2CNNError(f"{path}: --onnx takes an ONNX file (*.onnx, from `r2cnn export --format onnx`); serve a "
                         "checkpoint with --checkpoint (a TorchScript file is not served)")
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            raise R2CNNError(f"{path}: a zip archive (a TorchScript export or a PyTorch checkpoint), not an ONNX "
                             "model: export one with `r2cnn export --format onnx`, or serve a checkpoint with "
                             "--checkpoint")
    sidecar = sidecar_of(path)
    try:
        described = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise R2CNNError(f"{sidecar}: not readable JSON ({' '.join(str(e).split())})") from None
    if not isinstance(described, dict):
        raise R2CNNError(f"{sidecar}: not the JSON object `r2cnn export` writes")
    model = load(path)
    if model.engine != "onnxruntime":  # load() goes by the .onnx name; never another engine here
        raise R2CNNError(f"{path}: not loaded as ONNX (engine {model.engine})")
    for key in sorted(set(described) | set(model.metadata)):
        if described.get(key) != model.metadata.get(key):
            raise R2CNNError(f"{sidecar}: its {key!r} is not the one recorded in {path.name} "
                             f"({_short(described.get(key))} vs {_short(model.metadata.get(key))}): the sidecar "
                             "belongs to another export; export the model again")
    return model


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# The built-in sketches on which a checkpoint and an ONNX model given together must agree, and by how much:
# each class's log-probability (its logit less the log-sum-exp of all logits: the logits up to their common
# shift), largest absolute difference. On the CPU the tests' tiny R2CNN (tests/conftest.py, 6 steps) and its ONNX
# export differ by 2e-7; the same run trained 7 steps differs from that export by 0.046. On a GPU the checkpoint
# runs with TF32 convolutions where the card has them, hence the wider tolerance there.
SAME_MODEL_CLASSES = ("house", "star", "fish", "cup")
SAME_MODEL_TOLERANCE = {"cpu": 1e-3, "other": 2e-2}


def check_same_model(predictor, exported: LoadedModel, checkpoint: str, onnx: str) -> float:
    """Raise a one-line :class:`R2CNNError` unless ``exported`` (an ONNX model from :func:`load_onnx`) is the
    model of ``predictor`` (a :class:`~r2cnn.engine.predict.Predictor`): the same classes in the same order, the
    same preset and model, the same evaluation transform, and log-probabilities within
    :data:`SAME_MODEL_TOLERANCE` on the built-in sketches of :data:`SAME_MODEL_CLASSES`. Returns the largest
    log-probability difference found. ``checkpoint`` and ``onnx`` name the files in the message."""
    import torch

    from r2cnn.data import builtin
    from r2cnn.engine.precision import denormals_flushed
    from r2cnn.sketch import SketchBatch

    def refuse(why: str):
        raise R2CNNError(f"--onnx {onnx} is not the model of --checkpoint {checkpoint}: {why}; export this "
                         f"checkpoint (`r2cnn export --checkpoint {checkpoint} --format onnx`), or pass only one "
                         "of the two")

    if exported.classes != list(predictor.classes):
        same = sorted(exported.classes) == sorted(predictor.classes)
        refuse(f"its {len(exported.classes)} classes are not the checkpoint's {len(predictor.classes)}"
               + (" (same names, another order)" if same else ""))
    for key in ("preset", "model"):
        if exported.metadata.get(key) != predictor.config.get(key):
            refuse(f"its {key} is {exported.metadata.get(key)!r}, the checkpoint's {predictor.config.get(key)!r}")
    if exported.transform != predictor.transform:
        refuse("its evaluation transform (input.preprocess) is not the checkpoint's eval_transform")
    rng = np.random.default_rng(0)
    sketches = [builtin.draw(name, rng) for name in SAME_MODEL_CLASSES]
    prepared = [predictor.transform(s, np.random.default_rng(0)) for s in sketches]
    batch = SketchBatch.from_sketches(prepared, labels=[-1] * len(prepared)).to(predictor.device)
    with torch.no_grad(), denormals_flushed():
        expected = torch.log_softmax(predictor.model(batch).double(), dim=1).cpu().numpy()
    order = {name: i for i, name in enumerate(exported.classes)}
    worst = 0.0
    for sketch, row in zip(sketches, expected):
        out = exported.predict(sketch, top_k=len(exported.classes))
        got = np.empty(len(exported.classes))
        got[[order[name] for name in out.labels]] = np.log(np.maximum(out.probabilities, 1e-300))
        worst = max(worst, float(np.abs(got - row).max()))
    tolerance = SAME_MODEL_TOLERANCE["cpu" if predictor.device.type == "cpu" else "other"]
    if not worst <= tolerance:
        refuse(f"their log-probabilities on {len(sketches)} built-in sketches differ by up to {worst:.3g} "
               f"(the same model's agree within {tolerance:g})")
    return worst
