"""The page's in-browser engine: an exported ONNX model that the page runs itself with onnxruntime-web (WASM).

``r2cnn serve --onnx model.onnx`` hands the page the model file (``r2cnn export --format onnx``) when it is no
larger than ``--browser-max-mb``; the page then recognises without asking the server, and keeps doing so with the
server stopped. A larger model, or one whose evaluation transform does more than :func:`r2cnn.data.transforms.
normalize` (simplification, a random stroke order: the page normalises only), stays on the server, and the page
says why.

The export's contract (its JSON sidecar ``model.onnx.json`` or ``model.json``): input ``points`` float32
``(N, 3)``, one sketch normalised as :func:`~r2cnn.data.transforms.normalize` does (the margin in
``input.coordinates.margin``), layout x, y, pen_end (1 on the last point of each stroke); outputs ``logits``
``(1, K)`` and ``attention`` (per point); ``classes`` in the sidecar, which must be the checkpoint's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from r2cnn.errors import R2CNNError

# The vendored runtime (static/vendor/onnxruntime-web/VENDORED.md).
RUNTIME = "onnxruntime-web 1.31.1"


@dataclass(frozen=True)
class BrowserModel:
    """An exported model for the page: ``path`` when it is offered to the page, else None and ``note`` says why.

    ``margin`` is the normalisation margin (:func:`~r2cnn.data.transforms.normalize`) the page must use."""

    path: Path | None
    size: int
    margin: float
    note: str

    def info(self) -> dict | None:
        """What ``/api/classes`` tells the page (None: recognition stays on the server)."""
        if self.path is None:
            return None
        return dict(url="browser/model.onnx", bytes=self.size, margin=self.margin, runtime=RUNTIME)


def sidecar_of(onnx: Path) -> Path:
    """The export's JSON sidecar: ``model.onnx.json``, else ``model.json``."""
    for candidate in (onnx.with_name(onnx.name + ".json"), onnx.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    raise R2CNNError(f"{onnx}: no sidecar {onnx.name}.json or {onnx.stem}.json beside it (r2cnn export writes one)")


def browser_model(onnx: str | Path, classes: list[str], transform, max_bytes: int) -> BrowserModel:
    """Check an exported model against the served checkpoint and decide whether the page gets it.

    Args:
        onnx: the exported ``.onnx`` file.
        classes: the checkpoint's classes (the export's must be the same, in the same order).
        transform: the checkpoint's evaluation transform (:class:`~r2cnn.data.transforms.SketchTransform`).
        max_bytes: a larger model stays on the server.

    Raises :class:`R2CNNError` (one line, naming the file) when the file or its sidecar is missing or unreadable,
    or when it is another model's export.
    """
    path = Path(onnx)
    if not path.is_file():
        raise R2CNNError(f"{path}: no such ONNX file (make one with `r2cnn export --format onnx`)")
    sidecar = sidecar_of(path)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise R2CNNError(f"{sidecar}: not readable JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("classes"), list):
        raise R2CNNError(f"{sidecar}: no 'classes' list")
    if [str(c) for c in meta["classes"]] != list(classes):
        raise R2CNNError(f"{sidecar}: its {len(meta['classes'])} classes are not the checkpoint's {len(classes)} "
                         f"(in order): export this checkpoint, or serve the checkpoint it came from")
    size = path.stat().st_size
    margin = float(transform.margin)
    exported = ((meta.get("input") or {}).get("coordinates") or {}).get("margin", margin)
    if exported != margin:
        raise R2CNNError(f"{sidecar}: input.coordinates.margin is {exported}, the checkpoint normalises with "
                         f"margin {margin}: export this checkpoint again")
    if transform.max_points is not None or transform.rdp_epsilon is not None:
        return BrowserModel(None, size, margin, "the model's evaluation transform simplifies strokes, which the "
                                                "page does not do: recognition stays on the server")
    if transform.stroke_order != "human":
        return BrowserModel(None, size, margin, f"the model sees strokes in {transform.stroke_order} order, which "
                                                "the page does not reproduce: recognition stays on the server")
    if size > max_bytes:
        return BrowserModel(None, size, margin, f"{path.name} is {size / 1e6:.1f} MB, over the "
                                                f"{max_bytes / 1e6:.0f} MB the page may load (--browser-max-mb): "
                                                "recognition stays on the server")
    return BrowserModel(path, size, margin, f"the page runs {path.name} ({size / 1e6:.1f} MB) itself with {RUNTIME}")
