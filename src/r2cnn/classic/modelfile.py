"""The classic rows' model file: one ``.npz`` of plain arrays plus a JSON configuration stored as bytes.

Written atomically (temporary file, fsync, rename) and read with ``numpy.load(allow_pickle=False)``: loading a
model never unpickles anything. Array names are ``"<part>/<name>"`` (e.g. ``"block0/centres"``,
``"classifier/coef"``); the configuration is the ``"config.json"`` entry (UTF-8 bytes as uint8).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from r2cnn.data.formats.common import AtomicWriter
from r2cnn.errors import R2CNNError

FORMAT = "r2cnn-classic-1"
_CONFIG = "config.json"


def save_model(path: Path, config: dict, parts: dict[str, dict[str, np.ndarray]]) -> Path:
    """Write ``parts`` (``{part: {name: array}}``) and ``config`` (JSON types) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{part}/{name}": np.asarray(a) for part, named in parts.items() for name, a in named.items()}
    if any(a.dtype == object for a in arrays.values()):
        raise R2CNNError("classic model: refusing to store an object array (it would need pickle)")
    arrays[_CONFIG] = np.frombuffer(json.dumps(dict(config, format=FORMAT)).encode(), dtype=np.uint8)
    with AtomicWriter(path, compress=False) as f:
        np.savez(f, **arrays)
    return path


def load_model(path: Path) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """-> ``(config, parts)`` as given to :func:`save_model`. Raises :class:`R2CNNError` for a file that is
    missing, not an npz of plain arrays, or not a classic model."""
    path = Path(path)
    if not path.is_file():
        raise R2CNNError(f"classic model file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        config = json.loads(bytes(arrays.pop(_CONFIG)).decode())
    except (OSError, ValueError, KeyError) as e:
        raise R2CNNError(f"{path}: not a classic model file ({type(e).__name__}: {e})") from e
    if config.get("format") != FORMAT:
        raise R2CNNError(f"{path}: unknown classic model format {config.get('format')!r} (expected {FORMAT})")
    parts: dict[str, dict[str, np.ndarray]] = {}
    for key, a in arrays.items():
        part, _, name = key.partition("/")
        parts.setdefault(part, {})[name] = a
    return config, parts


def is_classic_model(path: str | Path) -> bool:
    """Whether ``path`` names a classic model file (by its ``.npz`` suffix), as opposed to a checkpoint."""
    return str(path).endswith(".npz")
