"""Sketch file formats: read and write QuickDraw ndjson (raw and simplified), sketch-rnn ``.npz``, QuickDraw
``.bin`` and SVG (TU-Berlin), streaming, every record validated (docs/architecture.md "The data path").

>>> for sketch in read_sketches("qd5/valid"):            # a file or a folder of them
...     sketch.points, sketch.label, sketch.meta["line"]
>>> write_sketches("out/", sketches, fmt="npz")           # one <class>.npz per class

A bad record raises :class:`~r2cnn.errors.SketchFormatError` naming file, line or record, and field; with
``policy=ErrorPolicy("skip")`` it is counted by reason instead and reading goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from r2cnn.data.formats.binary import read_bin, write_bin
from r2cnn.data.formats.common import MAX_POINTS, MAX_STROKES, natural_key
from r2cnn.data.formats.ndjson import ndjson_line, parse_ndjson_line, read_ndjson, write_ndjson
from r2cnn.data.formats.npz import read_npz, write_npz
from r2cnn.data.formats.svg import read_svg, svg_document, write_svg
from r2cnn.errors import ErrorPolicy, R2CNNError
from r2cnn.sketch import Sketch

__all__ = ["FORMATS", "MAX_POINTS", "MAX_STROKES", "detect_format", "find_sketch_files", "ndjson_line",
           "parse_ndjson_line", "read_sketches", "svg_document", "write_sketches"]

FORMATS = ("ndjson", "npz", "bin", "svg")
_SUFFIXES = {".ndjson": "ndjson", ".json": "ndjson", ".jsonl": "ndjson", ".npz": "npz", ".bin": "bin", ".svg": "svg"}
_READERS = {"ndjson": read_ndjson, "npz": read_npz, "bin": read_bin, "svg": read_svg}
_WRITERS = {"ndjson": write_ndjson, "npz": write_npz, "bin": write_bin, "svg": write_svg}


def _suffix_format(path: Path) -> str | None:
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    fmt = _SUFFIXES.get(suffixes[0].lower()) if suffixes else None
    if fmt in ("npz", "svg") and path.suffix == ".gz":
        return None  # compressed only where the format is a stream
    return fmt


def detect_format(path: str | Path) -> str:
    """The format of a file from its extension: ``.ndjson``/``.json``/``.jsonl`` (optionally ``.gz``) ->
    ``"ndjson"``, ``.npz`` -> ``"npz"``, ``.bin`` (``.bin.gz``) -> ``"bin"``, ``.svg`` -> ``"svg"``."""
    fmt = _suffix_format(Path(path))
    if fmt is None:
        raise R2CNNError(f"{path}: cannot tell the sketch format from the extension "
                         f"(known: {', '.join(sorted(_SUFFIXES))}, .ndjson.gz, .bin.gz); name it: --format FMT for "
                         f"`r2cnn predict`, --from/--to FMT for `r2cnn convert` ({', '.join(FORMATS)})")
    return fmt


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise R2CNNError(f"unknown sketch format {fmt!r}; choose from {', '.join(FORMATS)}")
    return fmt


def find_sketch_files(path: str | Path, fmt: str | None = None) -> list[tuple[Path, str]]:
    """``[(file, format)]`` for a file, or for every sketch file under a folder (recursively, in natural order:
    ``2.svg`` before ``10.svg``); with ``fmt`` only files of that format. Files of other types are not sketch
    files and are left out."""
    path = Path(path)
    if path.is_file():
        return [(path, _check_format(fmt) if fmt else detect_format(path))]
    if not path.is_dir():
        if path.exists():  # a named pipe, a device, a socket: reading one could block or never end
            raise R2CNNError(f"{path}: is not a regular file ({_file_kind(path)}); give a sketch file or a folder")
        raise R2CNNError(f"{path}: no such file or folder")
    found = [(p, _suffix_format(p)) for p in sorted(path.rglob("*"), key=natural_key) if p.is_file()]
    found = [(p, f) for p, f in found if f is not None and (fmt is None or f == _check_format(fmt))]
    if not found:
        raise R2CNNError(f"{path}: no {fmt or 'sketch'} files in this folder")
    return found


def _file_kind(path: Path) -> str:
    import stat

    mode = path.stat().st_mode
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a file or folder")


def read_sketches(path: str | Path, *, fmt: str | None = None, policy: ErrorPolicy | None = None,
                  label=None) -> Iterator[Sketch]:
    """Stream the sketches in a file or a folder of files (see :func:`find_sketch_files`).

    Args:
        path: a ``.ndjson``/``.npz``/``.bin``/``.svg`` file, or a folder (e.g. ``qd5/valid`` with one file per
            class, or TU-Berlin's ``svg/<class>/<id>.svg`` tree).
        fmt: ``"ndjson" | "npz" | "bin" | "svg"``; default from each file's extension.
        policy: what to do with a bad record (default: raise :class:`~r2cnn.errors.SketchFormatError`).
        label: overrides every sketch's label. Default: ndjson ``word`` (the file stem when absent); npz and bin
            the file stem; SVG the parent folder's name.

    Yields:
        :class:`~r2cnn.sketch.Sketch` with ``points`` float32 ``(N, 3)`` in the file's own coordinates and
        ``meta`` = the record's fields plus ``source`` and ``line`` (ndjson) or ``record`` (npz, bin; npz also
        ``split``); raw ndjson adds ``t``, float64 ``(N,)`` timestamps in ms.
    """
    policy = ErrorPolicy() if policy is None else policy
    for file, file_fmt in find_sketch_files(path, fmt):
        yield from _READERS[file_fmt](file, policy=policy, label=label)


def write_sketches(path: str | Path, sketches: Iterable[Sketch], *, fmt: str | None = None,
                   policy: ErrorPolicy | None = None, round_coords: bool = False) -> tuple[int, list[Path]]:
    """Write sketches to one file, or to a folder with one file per class.

    ``path`` with a sketch extension is one file (format from it unless ``fmt``); otherwise it is a folder and
    ``fmt`` is required: ndjson/npz/bin write ``<label>.<ext>`` per class, svg writes ``<label>/<id>.svg``.
    npz and bin have no label field, so one such file must hold one class. Integer formats (npz: int16
    offsets, bin: 0..255) refuse non-integer coordinates unless ``round_coords``. A sketch that cannot be
    written goes to ``policy``. Files are written under a temporary name and renamed when complete.

    Returns:
        (number of sketches written, files written).
    """
    path = Path(path)
    policy = ErrorPolicy() if policy is None else policy
    suffix_fmt = _suffix_format(path)
    per_class = suffix_fmt is None or path.is_dir()
    if fmt is None:
        if per_class:
            raise R2CNNError(f"{path}: a folder; name the output format (--to {'|'.join(FORMATS)})")
        fmt = suffix_fmt
    fmt = _check_format(fmt)
    kwargs = {"round_coords": round_coords} if fmt in ("npz", "bin") else {}
    return _WRITERS[fmt](path, sketches, policy=policy, per_class=per_class, **kwargs)
