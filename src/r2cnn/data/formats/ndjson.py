"""QuickDraw ndjson, one JSON object per line, simplified or raw, told apart per record.

- simplified: ``"drawing": [[[x0, x1, ...], [y0, y1, ...]], ...]`` (ints 0..255 after Google's RDP);
- raw: ``"drawing": [[[x...], [y...], [t...]], ...]`` (screen pixels, floats; t in ms since the first point).

Every other field (word, countrycode, timestamp, recognized, key_id, and any extra) is kept in ``meta`` as
read; raw timestamps go to ``meta["t"]``, float64 ``(N,)`` aligned with the points. The writer emits the same
layout (compact separators, ``word`` first, ``drawing`` last), so Google's own lines read and write back
byte for byte.

Speed: this is the path the full QuickDraw (about 50M lines) goes through. A line is decoded with orjson when
installed (json otherwise), then the drawing is flattened with list concatenation and converted by
``array.array`` (a C loop that also refuses anything but numbers); only a record that fails this fast path is
walked element by element to name what is wrong.
"""

from __future__ import annotations

import json
from array import array
from functools import partial
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from r2cnn.data.formats.common import (ORIGIN_KEYS, READ_ERRORS, check_writable, file_label, open_read, origin,
                                       unreadable, write_stream)
from r2cnn.errors import ErrorPolicy, SketchFormatError
from r2cnn.sketch import Sketch
from r2cnn.strokes import FLOAT32_MAX, MAX_POINTS, MAX_STROKES, points_from_strokes
from r2cnn.strokes import checked_drawing as _checked_drawing  # the slow path: walks a drawing, names the field

try:  # about 2-3x faster than json on QuickDraw lines; optional
    import orjson as _orjson

    _loads = _orjson.loads
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _loads = json.loads

# The longest line read as a record, newline included: 96 bytes per point at MAX_POINTS points, 6 MiB (Google's
# raw records take under 50). A longer line is a bad record; it is passed over in pieces of this size, never held
# whole, so memory stays bounded whatever a file holds: parsing a line takes at most about 31 bytes of Python
# objects per byte (a line of empty lists), under 200 MiB. The writer refuses a longer line.
MAX_LINE_BYTES = 96 * (MAX_POINTS + 1)

# Field -> accepted types. Google's files use these types; other types would break downstream code.
_FIELD_TYPES = {"word": (str,), "countrycode": (str,), "timestamp": (str, int, float), "recognized": (bool,),
                "key_id": (str, int)}


def parse_ndjson_line(line: bytes | str, source: str, lineno: int, *, label=None, default_label=None) -> Sketch:
    """One ndjson record -> :class:`Sketch`, or :class:`SketchFormatError` naming ``source:lineno`` and the field.

    ``label`` overrides the record's ``word``; ``default_label`` (e.g. the file stem) is used when a record has
    no ``word``. ``meta`` holds every field but ``drawing``, plus ``source``, ``line`` and, for raw records, ``t``.
    """
    try:
        record = _loads(line)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SketchFormatError(source, "malformed JSON", line=lineno, detail=str(e).splitlines()[0][:80]) from None
    if type(record) is not dict:
        raise SketchFormatError(source, "record is not a JSON object", line=lineno)
    if "drawing" not in record:
        raise SketchFormatError(source, "missing field", line=lineno, field="drawing")
    drawing = record.pop("drawing")
    for name, types in _FIELD_TYPES.items():
        value = record.get(name)
        if value is not None and type(value) not in types:
            raise SketchFormatError(source, "wrong field type", line=lineno, field=name,
                                    detail=f"{type(value).__name__}, expected {'/'.join(t.__name__ for t in types)}")
    parsed = None if _may_hold_bools(line) else _fast_drawing(drawing)
    if parsed is None:
        xy, lengths, t = _checked_drawing(drawing, source, lineno)
        parsed = points_from_strokes(xy, lengths, source, line=lineno), t
    points, t = parsed
    record["source"] = source
    record["line"] = lineno
    if t is not None:
        record["t"] = t
    if label is None:
        label = record.get("word", default_label)
    return Sketch(points, label, record)


def _may_hold_bools(line: bytes | str) -> bool:
    """Whether ``true``/``false`` may occur in the drawing. ``array`` and numpy take a bool among numbers for
    0/1, so such records take the checked path. Inside JSON strings quotes are escaped, so the first
    ``"drawing"`` in the text is at or before the drawing key; Google puts the drawing last, so its lines
    never match."""
    key, yes, no = ('"drawing"', "true", "false") if isinstance(line, str) else (b'"drawing"', b"true", b"false")
    start = max(line.find(key), 0)
    return line.find(yes, start) >= 0 or line.find(no, start) >= 0


def _numbers(values: list) -> np.ndarray | None:
    """A list of JSON numbers as int64 or float64 ``(n,)``; ``None`` if anything else is in it or a number is not
    finite in float32. ``array`` converts in C and refuses non-numbers (strings, None, lists, dicts)."""
    try:
        return np.frombuffer(array("q", values), np.int64)  # QuickDraw simplified: all ints
    except (TypeError, OverflowError):
        pass
    try:
        a = np.frombuffer(array("d", values), np.float64)
    except (TypeError, OverflowError):
        return None
    return a if (np.abs(a) <= FLOAT32_MAX).all() else None  # also False for NaN


def _fast_drawing(drawing):
    """``(points (N, 3) float32, t (N,) float64 or None)`` for a valid drawing; ``None`` for anything unusual,
    which :func:`_checked_drawing` then diagnoses. This is the hot loop of reading QuickDraw."""
    if type(drawing) is not list or not 0 < len(drawing) <= MAX_STROKES or type(drawing[0]) is not list:
        return None
    arity = len(drawing[0])
    if arity not in (2, 3):
        return None
    xs, ys, ts, ends = [], [], [], []
    total = 0
    for stroke in drawing:
        if type(stroke) is not list or len(stroke) != arity:
            return None
        x, y = stroke[0], stroke[1]
        if type(x) is not list or type(y) is not list:
            return None
        n = len(x)
        if n == 0 or len(y) != n:
            return None
        xs += x
        ys += y
        total += n
        ends.append(total - 1)
        if arity == 3:
            t = stroke[2]
            if type(t) is not list or len(t) != n:
                return None
            ts += t
    if total > MAX_POINTS:
        return None
    xy = _numbers(xs + ys)
    t = _numbers(ts) if arity == 3 else None
    if xy is None or (arity == 3 and t is None):
        return None
    points = np.zeros((total, 3), np.float32)
    points[:, 0] = xy[:total]
    points[:, 1] = xy[total:]
    points[ends, 2] = 1.0
    return points, None if t is None else t.astype(np.float64)


def read_ndjson(path: Path, *, policy: ErrorPolicy, label=None) -> Iterator[Sketch]:
    """Stream the records of one ndjson file (``.gz`` too). Blank lines are not records and are passed over; a
    line longer than :data:`MAX_LINE_BYTES` is a bad record ("line too long")."""
    source = str(path)
    stem = file_label(path)
    try:
        with open_read(path) as f:
            for lineno, line in enumerate(iter(partial(f.readline, MAX_LINE_BYTES + 1), b""), 1):
                if len(line) > MAX_LINE_BYTES:
                    policy.handle(SketchFormatError(source, "line too long", line=lineno,
                                                    detail=f"over {MAX_LINE_BYTES} bytes; a record has at most "
                                                           f"{MAX_POINTS} points"))
                    while line and not line.endswith(b"\n"):  # the rest of the line, a piece at a time
                        line = f.readline(MAX_LINE_BYTES)
                    continue
                if line.isspace():
                    continue
                try:
                    yield parse_ndjson_line(line, source, lineno, label=label, default_label=stem)
                except SketchFormatError as e:
                    policy.handle(e)
    except READ_ERRORS as e:
        policy.handle(unreadable(source, e))


def _json_numbers(values: np.ndarray) -> list:
    """JSON numbers: ints where integral (Google writes ``675``), else the float64 value of the float32, which
    is exactly how Google's raw files spell them (``163.9000015258789``). Either reads back as the same value:
    integral values past int64 (float32 reaches 3.4e38) are written as Python's exact ints, never cast."""
    values = values.astype(np.float64)
    if np.array_equal(values, np.trunc(values)) and (np.abs(values) < 2.0**63).all():
        return values.astype(np.int64).tolist()  # the common case, in one C loop
    return [int(v) if v.is_integer() else v for v in values.tolist()]


def _jsonable(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def ndjson_line(sketch: Sketch, index: int = 0, fallback: str = "<sketch>") -> bytes:
    """One record, newline-terminated. Raw (``[xs, ys, ts]``) when ``meta["t"]`` is present, else simplified.

    ``word`` is the label when it is a string; other meta fields (except where the sketch was read from) follow
    in their order, ``drawing`` last, as in Google's files. A line over :data:`MAX_LINE_BYTES` is refused, as
    the reader would refuse it.
    """
    check_writable(sketch, index, fallback)
    meta = sketch.meta
    t = meta.get("t")
    if t is not None and len(t) != len(sketch.points):
        raise SketchFormatError(**origin(sketch, index, fallback), reason="timestamps not aligned with points", field="t",
                                detail=f"{len(t)} t, {len(sketch.points)} points")
    record = {}
    word = sketch.label if isinstance(sketch.label, str) else meta.get("word")
    if word is not None:
        record["word"] = word
    for key, value in meta.items():
        if key not in ORIGIN_KEYS and key not in ("word", "t", "drawing"):
            record[key] = value
    strokes = []
    bounds = sketch.stroke_bounds
    for s in range(len(bounds) - 1):
        part = sketch.points[bounds[s]:bounds[s + 1]]
        stroke = [_json_numbers(part[:, 0]), _json_numbers(part[:, 1])]
        if t is not None:
            stroke.append(_json_numbers(np.asarray(t)[bounds[s]:bounds[s + 1]]))
        strokes.append(stroke)
    record["drawing"] = strokes
    line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=_jsonable).encode() + b"\n"
    if len(line) > MAX_LINE_BYTES:
        raise SketchFormatError(**origin(sketch, index, fallback), reason="line too long",
                                detail=f"{len(line)} bytes as ndjson, over {MAX_LINE_BYTES}")
    return line


def write_ndjson(path: Path, sketches: Iterable[Sketch], *, policy: ErrorPolicy, per_class: bool) -> tuple[int, list[Path]]:
    """Write one file, or with ``per_class`` one ``<label>.ndjson`` per class inside the folder ``path``.
    Returns (sketches written, files written)."""
    return write_stream(path, sketches, ndjson_line, policy=policy, per_class=per_class, suffix=".ndjson",
                        one_label=False)
