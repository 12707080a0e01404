"""The input contract of a sketch: the forms every entry point accepts and the one set of checks they all pass.

The bottom layer of the package (it imports only numpy and :mod:`r2cnn.errors`): :class:`~r2cnn.sketch.Sketch`,
the format readers (:mod:`r2cnn.data.formats`) and the predict entry points (:class:`r2cnn.engine.predict.Predictor`,
:meth:`r2cnn.export.LoadedModel.predict`, ``POST /api/predict``) all check a drawing here, so the same input gets
the same answer and the same one-line :class:`~r2cnn.errors.SketchFormatError` everywhere.

Forms (:func:`sketch_points`):

- a drawing as Quick, Draw! stores it: strokes ``[xs, ys]`` (simplified) or ``[xs, ys, ts]`` (raw; ``ts`` in ms),
  each a list (or a 1-D array) of numbers, in any coordinate range, y down;
- points: an ``(N, 3)`` array of x, y, pen_end (1 on the last point of each stroke, else 0); over JSON, a list of
  ``[x, y, pen_end]`` rows.

Checks: numbers only (no strings, booleans or nulls: ``"5"`` is refused, not read as 5), finite once in float32, no
empty drawing or stroke, equal lengths within a stroke, at most :data:`MAX_STROKES` strokes and :data:`MAX_POINTS`
points. The counts are checked before any number is read, so a drawing of a million points is refused at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from r2cnn.errors import R2CNNError, SketchFormatError

# QuickDraw's .bin stores point and stroke counts as u16; anything larger is not a sketch but a broken file.
MAX_POINTS = 65535
MAX_STROKES = 65535
FLOAT32_MAX = float(np.finfo(np.float32).max)

# What the predict entry points call the input in their messages (Python and HTTP alike).
INPUT = "sketch"


def points_from_strokes(xy: np.ndarray, lengths: np.ndarray, source: str, *, line: int | None = None,
                        record: int | None = None) -> np.ndarray:
    """Points ``(N, 3)`` float32 (x, y, pen_end) from concatenated stroke coordinates.

    ``xy``: ``(N, 2)`` any real dtype, strokes concatenated in drawing order; ``lengths``: ``(S,)`` points per
    stroke. Raises :class:`SketchFormatError` for an empty drawing, an empty stroke, too many points or
    strokes, and coordinates that are not finite once in float32.
    """
    where = dict(line=line, record=record)
    if len(lengths) == 0:
        raise SketchFormatError(source, "empty drawing", field="drawing", **where)
    if len(lengths) > MAX_STROKES:
        raise SketchFormatError(source, "too many strokes", field="drawing", detail=f"{len(lengths)} > {MAX_STROKES}", **where)
    if lengths.min() <= 0:
        raise SketchFormatError(source, "empty stroke", field=f"drawing[{int(np.argmin(lengths))}]", **where)
    n = len(xy)
    if n > MAX_POINTS:
        raise SketchFormatError(source, "too many points", field="drawing", detail=f"{n} > {MAX_POINTS}", **where)
    if xy.dtype.kind == "f":  # integer inputs are always finite in float32; floats may be NaN, inf or too big
        finite = (np.abs(xy) <= FLOAT32_MAX).all(axis=1)  # False for NaN too
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise SketchFormatError(source, "non-finite coordinate", field="drawing", detail=f"point {bad}", **where)
    points = np.zeros((n, 3), np.float32)
    points[:, :2] = xy
    points[np.cumsum(lengths) - 1, 2] = 1.0
    return points


def checked_drawing(drawing, source: str, lineno: int | None):
    """A drawing of JSON values (lists, ints, floats) walked element by element: ``(xy (N, 2) float64, lengths
    (S,) int64, t (N,) float64 or None)``, or the precise :class:`SketchFormatError` naming the field. The ndjson
    reader's slow path (its fast path gives the same result for a valid drawing) and :func:`drawing_points`'s."""

    def fail(reason, field="drawing", detail=None):
        raise SketchFormatError(source, reason, line=lineno, field=field, detail=detail)

    if type(drawing) is not list:
        fail("drawing is not a list of strokes")
    if not drawing:
        fail("empty drawing")
    if len(drawing) > MAX_STROKES:
        fail("too many strokes", detail=f"{len(drawing)} > {MAX_STROKES}")
    arity = None
    columns: list[list[float]] = [[], [], []]
    lengths = []
    for i, stroke in enumerate(drawing):
        if type(stroke) is not list or len(stroke) not in (2, 3):
            fail("stroke is not [xs, ys] or [xs, ys, ts]", f"drawing[{i}]")
        if arity is None:
            arity = len(stroke)
        elif len(stroke) != arity:
            fail("raw and simplified strokes mixed", f"drawing[{i}]")
        for c, values in enumerate(stroke):
            if type(values) is not list:
                fail("not a list of numbers", f"drawing[{i}][{c}]")
            for j, v in enumerate(values):
                if type(v) not in (int, float):
                    fail("not a number", f"drawing[{i}][{c}][{j}]", type(v).__name__)
                if not abs(v) <= FLOAT32_MAX:  # NaN, inf, or not finite once in float32 (also huge ints)
                    fail("non-finite coordinate", f"drawing[{i}][{c}][{j}]", repr(v))
            columns[c] += values
        n = len(stroke[0])
        if len(stroke[1]) != n:
            fail("x/y length mismatch", f"drawing[{i}]", f"{n} x, {len(stroke[1])} y")
        if arity == 3 and len(stroke[2]) != n:
            fail("x/t length mismatch", f"drawing[{i}]", f"{n} x, {len(stroke[2])} t")
        if n == 0:
            fail("empty stroke", f"drawing[{i}]")
        lengths.append(n)
    if len(columns[0]) > MAX_POINTS:
        fail("too many points", detail=f"{len(columns[0])} > {MAX_POINTS}")
    xy = np.array(columns[:2], np.float64).T
    t = np.array(columns[2], np.float64) if arity == 3 else None
    return xy, np.array(lengths, np.int64), t


def _count_points(drawing: list, source: str) -> None:
    """Refuse too many strokes or points from the lengths alone, before a single number is read: the longest
    column of each stroke counts (a stroke whose columns differ is refused later, by :func:`checked_drawing`)."""
    if len(drawing) > MAX_STROKES:
        raise SketchFormatError(source, "too many strokes", field="drawing", detail=f"{len(drawing)} > {MAX_STROKES}")
    total = 0
    for stroke in drawing:
        if isinstance(stroke, (list, tuple, np.ndarray)) and len(stroke) in (2, 3):
            total += max((len(c) for c in stroke
                          if isinstance(c, (list, tuple)) or (isinstance(c, np.ndarray) and c.ndim >= 1)), default=0)
    if total > MAX_POINTS:
        raise SketchFormatError(source, "too many points", field="drawing", detail=f"{total} > {MAX_POINTS}")


def _plain(value):
    """Lists, tuples, arrays and numpy scalars as JSON-like values (lists, ints, floats, ...), for
    :func:`checked_drawing`; anything else is kept as it is, for the check to name."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def drawing_points(drawing, source: str = INPUT, *, line: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(points (N, 3) float32, t (N,) float64 or None)`` for a drawing of strokes ``[xs, ys]`` or ``[xs, ys,
    ts]``: lists, tuples or arrays of numbers (numpy numbers too), as Python code or a JSON body hands it in.
    Raises :class:`SketchFormatError` naming ``source`` and the field."""
    if isinstance(drawing, np.ndarray):  # (S, 2 or 3, n): strokes of equal length; other shapes are named below
        if drawing.ndim >= 1 and len(drawing) > MAX_STROKES:
            raise SketchFormatError(source, "too many strokes", field="drawing", line=line,
                                    detail=f"{len(drawing)} > {MAX_STROKES}")
        drawing = list(drawing) if drawing.ndim >= 1 else drawing.item()
    if isinstance(drawing, (list, tuple)):
        _count_points(drawing, source)
    xy, lengths, t = checked_drawing(_plain(drawing), source, line)
    return points_from_strokes(xy, lengths, source, line=line), t


def array_points(points, source: str = INPUT) -> np.ndarray:
    """An ``(N, 3)`` array of x, y, pen_end (numpy, or anything with a ``shape`` that ``np.asarray`` reads: a
    torch tensor) checked and as float32: the shape first (so a huge array is refused before it is read), then the
    count, numbers only, finite in float32, and pen_end 0 or 1. An array of strings, booleans or objects is walked
    as :func:`rows_points` walks JSON rows, so both name the same element."""
    def fail(reason, detail=None):
        raise SketchFormatError(source, reason, field="points", detail=detail)

    shape = tuple(getattr(points, "shape", ()))
    if len(shape) != 2 or shape[1] != 3:
        fail("wrong shape", f"{shape}, expected (N, 3): x, y, pen_end")
    if shape[0] == 0:
        fail("empty drawing")
    if shape[0] > MAX_POINTS:
        fail("too many points", f"{shape[0]} > {MAX_POINTS}")
    array = np.asarray(points)
    if array.dtype.kind not in "iuf":
        return rows_points(array.tolist(), source)
    if array.dtype.kind == "f":
        finite = (np.abs(array[:, :2]) <= FLOAT32_MAX).all(axis=1)  # False for NaN too
        if not finite.all():
            fail("non-finite coordinate", f"point {int(np.flatnonzero(~finite)[0])}")
    pen = array[:, 2]
    off = (pen != 0) & (pen != 1)
    if off.any():
        fail("pen_end not 0 or 1", f"point {int(np.flatnonzero(off)[0])}")
    return np.ascontiguousarray(array, dtype=np.float32)


def rows_points(rows, source: str = INPUT) -> np.ndarray:
    """``[[x, y, pen_end], ...]``, a JSON body's form of the ``(N, 3)`` array, checked as :func:`array_points`
    checks the array (the same messages): the count and the shape before any value is read, then numbers only (a
    boolean or a string is refused, not read as 1 or a number)."""
    def fail(reason, field="points", detail=None):
        raise SketchFormatError(source, reason, field=field, detail=detail)

    if type(rows) is not list:
        fail("wrong shape", detail=f"{type(rows).__name__}, expected (N, 3) rows [x, y, pen_end]")
    if len(rows) > MAX_POINTS:
        fail("too many points", detail=f"{len(rows)} > {MAX_POINTS}")
    widths = {len(row) if type(row) is list else -1 for row in rows}
    if len(widths) > 1 or -1 in widths:
        fail("wrong shape", detail="rows of different lengths, expected (N, 3): x, y, pen_end")
    if rows and widths != {3}:
        fail("wrong shape", detail=f"({len(rows)}, {widths.pop()}), expected (N, 3): x, y, pen_end")
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if type(v) not in (int, float):
                fail("not a number", f"points[{i}][{j}]", type(v).__name__)
    return array_points(np.array(rows, np.float64).reshape(len(rows), 3), source)


def sketch_points(value, source: str = INPUT) -> np.ndarray:
    """Points ``(N, 3)`` float32 from any accepted form (module docstring): an ``(N, 3)`` array (anything with a
    2-D ``shape``: numpy, torch), a :class:`~r2cnn.sketch.Sketch` (its points checked), or a drawing (anything
    else: a list or tuple of strokes, an ``(S, 2|3, n)`` array). An ``(N, 2)`` array is refused with "expected
    (N, 3)"."""
    points = getattr(value, "points", None)
    if isinstance(points, np.ndarray) and hasattr(value, "stroke_bounds"):  # a Sketch
        return array_points(points, source)
    if len(getattr(value, "shape", (0, 0, 0))) == 2:
        return array_points(value, source)
    return drawing_points(value, source)[0]


def check_top_k(top_k: Any) -> int:
    """``top_k`` as an int >= 1 (more than the number of classes gives them all); a string, a boolean, a float or
    anything < 1 is a one-line :class:`R2CNNError`, in Python as over HTTP."""
    if isinstance(top_k, (int, np.integer)) and not isinstance(top_k, (bool, np.bool_)) and top_k >= 1:
        return int(top_k)
    raise R2CNNError(f"top_k: expected a whole number >= 1, got {top_k!r}"[:120])
