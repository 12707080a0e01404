"""sketch-r2cnn: Sketch-R2CNN (Li et al., IEEE TVCG 2020) for vector sketch recognition.

The data path runs one way, formats -> store -> transforms -> loader -> raster -> models -> engine -> cli, and the
imports with it: the layers are import-linter contracts in pyproject.toml (docs/architecture.md "Layers").
"""

from r2cnn.errors import R2CNNError, SketchFormatError
from r2cnn.sketch import Sketch, SketchBatch
from r2cnn.version import __version__

__all__ = ["R2CNNError", "Sketch", "SketchBatch", "SketchFormatError", "__version__", "load"]


def load(path, device: str = "cpu", *, trust_code: bool = False):
    """A model ready to classify: ``r2cnn.load("best.pt" | "model.onnx").predict(strokes)``.

    A checkpoint (``torch.load(weights_only=True)``) and an ONNX file are data and load as they are. A TorchScript
    file (``r2cnn export --format torchscript``) is code that runs when it loads: it is refused with a one-line
    :class:`R2CNNError` unless ``trust_code=True`` says you trust it, ``r2cnn.load("model.pt", trust_code=True)``.
    Details: :func:`r2cnn.export.load` (imported on first use, so ``import r2cnn`` stays light)."""
    from r2cnn.export import load as _load

    return _load(path, device, trust_code=trust_code)
