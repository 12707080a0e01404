"""QuickDraw's binary ``.bin`` format (simplified drawings), one file per class (the class is the file stem).

Per record, little-endian, as Google's ``binary_file_parser.py`` reads it::

    key_id u64 | countrycode 2 bytes | recognized u8 | timestamp u32 (Unix s) | n_strokes u16
    per stroke: n_points u16 | x u8[n_points] | y u8[n_points]

``meta`` gets the same fields as ndjson gives (key_id as a decimal string, timestamp as
``"YYYY-MM-DD HH:MM:SS UTC"``), so sketches read from either look alike. The format has no sub-second
timestamps: writing an ndjson timestamp drops its fraction.
"""

from __future__ import annotations

import re
import struct
from functools import partial
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from r2cnn.data.formats.common import (MAX_POINTS, READ_ERRORS, file_label, integer_points, open_read, origin,
                                       points_from_strokes, unreadable, write_stream)
from r2cnn.errors import ErrorPolicy, SketchFormatError
from r2cnn.sketch import Sketch

_HEADER = struct.Struct("<Q2sBIH")
_COUNT = struct.Struct("<H")
_U16_MAX = 65535
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)? UTC")


def read_bin(path: Path, *, policy: ErrorPolicy, label=None) -> Iterator[Sketch]:
    """Stream the records of one ``.bin`` file. A truncated record ends the file (there is no way to find the
    next record after it); in skip mode it is counted like any other bad record."""
    source = str(path)
    label = file_label(path) if label is None else label
    try:
        with open_read(path) as f:
            record = 0
            while True:
                try:
                    sketch = _read_record(f, source, record, label)
                except SketchFormatError as e:
                    policy.handle(e)
                    if e.reason == "truncated record":
                        return
                    record += 1
                    continue
                if sketch is None:
                    return
                yield sketch
                record += 1
    except READ_ERRORS as e:
        policy.handle(unreadable(source, e))


def _read_exactly(f, n: int, source: str, record: int, field: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise SketchFormatError(source, "truncated record", record=record, field=field,
                                detail=f"{len(data)} of {n} bytes")
    return data


def _read_record(f, source: str, record: int, label) -> Sketch | None:
    """One record, or ``None`` at a clean end of file. A bad record is read to its end before raising, so the
    next record starts in the right place; past :data:`MAX_POINTS` points its strokes are read one at a time
    (at most 128 KiB, the u16 bound) and dropped, so memory stays bounded whatever the counts declare."""
    head = f.read(_HEADER.size)
    if not head:
        return None
    if len(head) != _HEADER.size:
        raise SketchFormatError(source, "truncated record", record=record, field="header",
                                detail=f"{len(head)} of {_HEADER.size} bytes")
    key_id, country, recognized, timestamp, n_strokes = _HEADER.unpack(head)
    xs, ys, lengths = [], [], []
    total = 0
    for s in range(n_strokes):
        (n,) = _COUNT.unpack(_read_exactly(f, 2, source, record, f"strokes[{s}].n_points"))
        xy = np.frombuffer(_read_exactly(f, 2 * n, source, record, f"strokes[{s}]"), np.uint8)
        total += n
        lengths.append(n)
        if total <= MAX_POINTS:  # past it the record is refused below; its strokes are read on but not kept
            xs.append(xy[:n])
            ys.append(xy[n:])
    if recognized > 1:
        raise SketchFormatError(source, "recognized not 0 or 1", record=record, field="recognized", detail=str(recognized))
    if total > MAX_POINTS:
        raise SketchFormatError(source, "too many points", record=record, field="drawing",
                                detail=f"{total} > {MAX_POINTS}")
    xy = np.stack([np.concatenate(xs), np.concatenate(ys)], axis=1) if xs else np.zeros((0, 2), np.uint8)
    points = points_from_strokes(xy, np.array(lengths, np.int64), source, record=record)
    meta = {"countrycode": country.rstrip(b"\0").decode("latin-1"),
            "timestamp": datetime.fromtimestamp(timestamp, timezone.utc).strftime(_TIME_FORMAT),
            "recognized": bool(recognized), "key_id": str(key_id), "source": source, "record": record}
    return Sketch(points, label, meta)


def _timestamp_seconds(value, sketch: Sketch, index: int, fallback: str) -> int:
    """ndjson's ``"2017-03-10 22:17:57.57466 UTC"`` (or a number of seconds) -> whole Unix seconds."""
    if value is None:
        return 0
    try:
        if isinstance(value, str):
            m = _TIMESTAMP.fullmatch(value)
            seconds = int(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
        else:
            seconds = int(value)
        if not 0 <= seconds < 2**32:
            raise ValueError("outside u32")
    except (AttributeError, ValueError, TypeError, OverflowError):  # no match, bad date, NaN, huge, not a number
        raise SketchFormatError(**origin(sketch, index, fallback), reason="timestamp does not fit bin",
                                field="timestamp", detail=repr(value)[:40]) from None
    return seconds


def bin_record(sketch: Sketch, index: int, fallback: str, *, round_coords: bool = False) -> bytes:
    """Encode one sketch; coordinates must be integers in 0..255 (QuickDraw simplified), ``key_id`` a u64,
    ``countrycode`` at most 2 ASCII characters. Missing fields are written as zeros."""
    meta = sketch.meta
    xy = integer_points(sketch, index, fallback, 0, 255, round_coords=round_coords, what="bin").astype(np.uint8)
    try:
        key_id = int(meta.get("key_id", 0))
        country = str(meta.get("countrycode", "")).encode("ascii")
        if not 0 <= key_id < 2**64 or len(country) > 2:
            raise ValueError
    except (ValueError, TypeError, OverflowError):  # UnicodeEncodeError is a ValueError
        raise SketchFormatError(**origin(sketch, index, fallback), reason="metadata does not fit bin",
                                field="key_id/countrycode", detail=f"{meta.get('key_id')!r}, {meta.get('countrycode')!r}") from None
    bounds = sketch.stroke_bounds
    lengths = np.diff(bounds)
    if len(lengths) > _U16_MAX or lengths.max() > _U16_MAX:  # the format's counters are u16
        what = "strokes" if len(lengths) > _U16_MAX else "points"
        raise SketchFormatError(**origin(sketch, index, fallback), reason=f"too many {what} for bin", field="points",
                                detail=f"bin counts {what} per {'sketch' if what == 'strokes' else 'stroke'} "
                                       f"in 16 bits (at most {_U16_MAX})")
    parts = [_HEADER.pack(key_id, country, int(bool(meta.get("recognized", False))),
                          _timestamp_seconds(meta.get("timestamp"), sketch, index, fallback), len(bounds) - 1)]
    for s in range(len(bounds) - 1):
        stroke = xy[bounds[s]:bounds[s + 1]]
        parts += [_COUNT.pack(len(stroke)), stroke[:, 0].tobytes(), stroke[:, 1].tobytes()]
    return b"".join(parts)


def write_bin(path: Path, sketches: Iterable[Sketch], *, policy: ErrorPolicy, per_class: bool,
              round_coords: bool = False) -> tuple[int, list[Path]]:
    """Write ``<label>.bin`` per class inside folder ``path`` (``per_class``), or one file (all sketches must
    then share a label: the format has no label field). Returns (sketches written, files written)."""
    return write_stream(path, sketches, partial(bin_record, round_coords=round_coords), policy=policy,
                        per_class=per_class, suffix=".bin", one_label=True)
