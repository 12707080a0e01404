"""Write a trained model as ONNX or TorchScript, with its class names and input contract beside it.

Both formats come from one trace of :class:`~r2cnn.export.inference.InferenceModel` (``torch.jit.trace``; the
rasteriser inside is scripted, so its chunk loop survives as a loop and ``N`` stays dynamic):

- TorchScript: the traced module, saved with the metadata as the extra file ``r2cnn.json``;
- ONNX: the traced module through torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``,
  opset :data:`OPSET`), the metadata in the model's ``metadata_props`` (one entry per key, JSON values). The
  dynamo exporter (``dynamo=True``, which needs ``onnxscript``) cannot take a data-dependent loop over chunks, so
  it is not used.

Beside either file ``F``, ``F.json`` holds the same metadata (:func:`describe`), for a page or an app that reads
the contract before loading the model. Both get the permissions of any file the user creates (0666 less the
umask), as checkpoints do. ONNX needs the ``onnx`` package, from the ``export`` extra (``pip install
'sketch-r2cnn[export]'``, which also brings onnxruntime for :func:`r2cnn.load`); without it ``--format onnx`` is a
one-line error saying so.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from r2cnn.data.formats.common import AtomicWriter, write_file
from r2cnn.errors import R2CNNError

FORMATS = ("onnx", "torchscript")
OPSET = 17
METADATA_FILE = "r2cnn.json"  # TorchScript extra file holding the metadata


def describe(model, classes: list[str], config: dict, fmt: str) -> dict:
    """The sidecar metadata of a trained ``model`` (:class:`~r2cnn.models.SketchClassifier`): class names, the input contract (layout, coordinate normalisation), the outputs,
    the canvas, the preset and the package version."""
    from r2cnn.version import __version__
    from r2cnn.export.inference import InferenceModel

    inference = InferenceModel(model, scripted=False)  # raises for a model the export does not cover
    eval_transform = dict(config.get("eval_transform") or {})
    margin = float(eval_transform.get("margin", 0.05))
    size = model.raster_size
    if inference.has_attention:
        attention = (f"per-point attention a_i in (0, 1) (paper Sec. 3.2), the mean over the {inference.channels} "
                     "channels" if inference.channels > 1 else "per-point attention a_i in (0, 1) (paper Sec. 3.2)")
    else:
        attention = "all ones: this model has no per-point attention (CNN-only)"
    return {
        "format": fmt,
        "classes": list(classes),
        "input": {
            "name": "points", "shape": ["N", 3], "dtype": "float32",
            "layout": "x, y, pen_end (1 on the last point of each stroke, else 0); strokes in drawing order",
            "coordinates": {
                "description": "r2cnn.data.transforms.normalize: the bounding box's longest side is fitted into "
                               "[-1 + margin, 1 - margin] and centred on the origin: x' = (x - (xmin + xmax) / 2) "
                               "* s, y' = (y - (ymin + ymax) / 2) * s with s = (2 - 2 * margin) / max(xmax - xmin, "
                               "ymax - ymin) (s = 0 when all points coincide); y points down, as in QuickDraw",
                "margin": margin, "range": [-1.0, 1.0], "y_axis": "down"},
            "preprocess": eval_transform,  # make_transform(False, **this): simplification, stroke order, margin
        },
        "outputs": [
            {"name": "logits", "shape": [1, len(classes)], "description": "class scores; softmax gives probabilities"},
            {"name": "attention", "shape": ["N"], "description": attention},
        ],
        "has_attention": inference.has_attention,
        "attention_channels": inference.channels,
        "canvas": {"size": [size, size], "eps": model.raster_eps, "overlap": model.overlap,
                   "pixels": "u = (x + 1) / 2 * W, v = (y + 1) / 2 * H; pixel (r, j) has its centre at (j + 0.5, "
                             "r + 0.5)"},
        "model": config.get("model"),
        "model_options": dict(config.get("model_options") or {}),
        "preset": config.get("preset"),
        "package_version": __version__,
        **({"opset": OPSET} if fmt == "onnx" else {}),
    }


def example_points() -> torch.Tensor:
    """A normalised built-in sketch ``(N, 3)``: the example input the trace runs on (its N does not stick)."""
    import numpy as np

    from r2cnn.data import builtin
    from r2cnn.data.transforms import normalize

    return torch.from_numpy(normalize(builtin.draw("house", np.random.default_rng(0))).points)


def trace(model) -> torch.jit.ScriptModule:
    """The traced :class:`~r2cnn.export.inference.InferenceModel` of a trained model (eval mode)."""
    from r2cnn.export.inference import InferenceModel

    inference = InferenceModel(model).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice and tracer warnings on shape reads
        return torch.jit.trace(inference, (example_points(),), check_trace=False)


def export_model(model, classes: list[str], config: dict, fmt: str, out: str | os.PathLike) -> dict:
    """Write ``model`` (a trained :class:`~r2cnn.models.SketchClassifier`) to ``out`` as ``fmt`` ("onnx" or
    "torchscript") and the metadata to ``out + ".json"``; returns the metadata. Raises :class:`R2CNNError` (one
    line) for a model the export does not cover."""
    if fmt not in FORMATS:
        raise R2CNNError(f"export: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        require_extra("onnx", "export --format onnx")
    out = Path(out)
    model = model.eval()
    meta = describe(model, classes, config, fmt)
    traced = trace(model)
    # torch's writers get file objects: given a file name, a full disk aborts the process (torch.jit.save) or
    # leaves the file torn; AtomicWriter turns it into one line and removes the temporary file
    with AtomicWriter(out, compress=False) as f:
        if fmt == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.save's deprecation notice
                torch.jit.save(traced, f, _extra_files={METADATA_FILE: json.dumps(meta)})
        else:
            f.write(_onnx_bytes(traced, meta))
    write_file(Path(f"{out}.json"), json.dumps(meta, indent=2) + "\n")
    return meta


def require_extra(module: str, what: str) -> None:
    """A one-line :class:`R2CNNError` naming the ``export`` extra when ``module`` (onnx, onnxruntime) is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise R2CNNError(f"{what} needs the {module} package: pip install 'sketch-r2cnn[export]' (onnx and "
                         "onnxruntime)")


def export_checkpoint(checkpoint: str | os.PathLike, fmt: str, out: str | os.PathLike) -> dict:
    """:func:`export_model` for the trained model of a checkpoint written by ``r2cnn train``."""
    from r2cnn.classic.modelfile import is_classic_model
    from r2cnn.engine.factory import load_model

    if is_classic_model(checkpoint):
        raise R2CNNError(f"{checkpoint}: a classic model (features + SVM, Table 1) is not a neural network; "
                         "export covers the neural models")
    model, ckpt = load_model(str(checkpoint))
    return export_model(model, list(ckpt["classes"]), ckpt["config"], fmt, out)


def _onnx_bytes(traced: torch.jit.ScriptModule, meta: dict) -> bytes:
    """The ONNX model of ``traced`` with ``meta`` in its metadata, serialised (in memory: a model of the paper's
    sizes is tens of MB, well under protobuf's 2 GB limit)."""
    import io

    import onnx

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(traced, (example_points(),), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["points"], output_names=["logits", "attention"],
                          dynamic_axes={"points": {0: "N"}, "attention": {0: "N"}})
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    return proto.SerializeToString()
