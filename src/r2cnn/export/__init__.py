"""Take a trained model anywhere: ONNX and TorchScript export, and one loaded-model API over every format.

Public API::

    export_checkpoint(checkpoint, fmt, out) -> metadata     # "onnx" or "torchscript"; writes out and out.json
    export_model(model, classes, config, fmt, out) -> metadata
    load(path) -> LoadedModel                              # best.pt (checkpoint), model.onnx, model.pt (TorchScript)
    LoadedModel.predict(strokes, top_k=5) -> Prediction    # labels, probabilities, points, per-point attention

The exported graph is the whole inference path of one sketch, made of plain tensor ops
(:class:`~r2cnn.export.inference.InferenceModel`): normalised points ``(N, 3)`` -> attention (the BiLSTM without
packed sequences) -> NLR (:mod:`r2cnn.raster.dense`, the same pixels as :func:`r2cnn.raster.rasterize`) -> CNN ->
logits ``(1, K)``, plus the per-point attention ``(N,)``. The input contract (coordinate normalisation, pen-state
layout), the class names and the canvas are written beside it (:func:`~r2cnn.export.exporters.describe`).
Which registered models export: :func:`~r2cnn.export.inference.unsupported_reason`.

Exporters: TorchScript is ``torch.jit.trace`` (deprecated by torch in favour of ``torch.export``, still supported
in torch 2.14); ONNX uses torch's TorchScript-based exporter (``dynamo=False``, opset 17), because the rasteriser's
chunk loop over a dynamic number of segments has to stay a loop (an ONNX ``Loop``).
"""

from r2cnn.export.exporters import FORMATS, describe, export_checkpoint, export_model
from r2cnn.export.inference import InferenceModel, unsupported_reason
from r2cnn.export.loaded import LoadedModel, Prediction, load

__all__ = ["FORMATS", "InferenceModel", "LoadedModel", "Prediction", "describe", "export_checkpoint", "export_model",
           "load", "unsupported_reason"]
