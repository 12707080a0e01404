"""Where the benchmarks find real sketch data by default, the same way in every ``r2cnn bench`` target.

The real data sets (QuickDraw ndjson, TU-Berlin SVGs, sketch-rnn npz) are never part of the package. A benchmark's
default data folder ``<root>/<relative>`` is looked up under these roots, first match wins:

1. ``$R2CNN_SHARED_DATA`` when it is set;
2. ``../shared/data`` beside the source checkout, when the package runs from one (``src/r2cnn`` inside a folder
   with ``pyproject.toml``; not from an installed wheel, whose files live in ``site-packages``);
3. ``../shared/data`` relative to the current directory.

When none has the folder, :func:`find_data` says where it looked and the benchmark uses the built-in sketches.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "R2CNN_SHARED_DATA"


def data_roots() -> list[Path]:
    """The candidate data roots, in the order of the module docstring."""
    roots = []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    package = Path(__file__).resolve().parents[1]  # .../src/r2cnn
    checkout = package.parents[1]
    if package.parent.name == "src" and (checkout / "pyproject.toml").is_file():
        roots.append(checkout.parent / "shared" / "data")
    roots.append(Path.cwd().parent / "shared" / "data")
    return list(dict.fromkeys(roots))  # unique, order kept


def find_data(relative: str, *, quiet: bool = False) -> Path | None:
    """``<root>/<relative>`` for the first root of :func:`data_roots` where that folder exists, else None; when
    absent (and not ``quiet``), a note on stderr says where it looked and that the built-in sketches are used."""
    for root in data_roots():
        if (root / relative).is_dir():
            return root / relative
    if not quiet:
        print(f"note: {not_found(relative)}; using the built-in sketches", file=sys.stderr)
    return None


def not_found(relative: str) -> str:
    """"real data '<relative>' not found (looked under ...; set $R2CNN_SHARED_DATA ...)"."""
    roots = ", ".join(str(root) for root in data_roots())
    return f"real data {relative!r} not found (looked under {roots}; set {ENV_VAR} to the data folder)"
