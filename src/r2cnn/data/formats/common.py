"""What every format shares: size limits, point validation, labels from paths, atomic output files.

Readers build a :class:`~r2cnn.sketch.Sketch` through :func:`r2cnn.strokes.points_from_strokes` (the ndjson fast
path through an equivalent check, compared with it by the fuzz tests), so one set of rules, the input contract of
:mod:`r2cnn.strokes` (non-empty, finite, at most :data:`MAX_POINTS` points), holds for every format and for the
predict entry points.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import urllib.parse
import zlib
from pathlib import Path
from typing import IO, Callable, Iterable

import numpy as np

from r2cnn.errors import ErrorPolicy, R2CNNError, SketchFormatError
from r2cnn.sketch import Sketch
from r2cnn.strokes import FLOAT32_MAX, MAX_POINTS, MAX_STROKES, points_from_strokes  # noqa: F401 (the readers' names)

# Keys the readers add to ``meta`` to say where a record came from; writers never copy them into a record.
ORIGIN_KEYS = ("source", "line", "record")


def origin(sketch: Sketch, index: int, fallback: str) -> dict:
    """``SketchFormatError`` location keywords for a sketch being written: where it was read from, if known."""
    meta = sketch.meta
    if "source" in meta:
        return dict(source=meta["source"], line=meta.get("line"), record=meta.get("record"))
    return dict(source=fallback, record=index)


def check_writable(sketch: Sketch, index: int, fallback: str) -> None:
    """Writers refuse what readers would refuse: a sketch with no points, or with NaN/inf coordinates."""
    if len(sketch.points) == 0:
        raise SketchFormatError(**origin(sketch, index, fallback), reason="empty drawing", field="points")
    if not np.isfinite(sketch.points).all():
        raise SketchFormatError(**origin(sketch, index, fallback), reason="non-finite coordinate", field="points")


def integer_points(sketch: Sketch, index: int, fallback: str, lo: int, hi: int, *, round_coords: bool,
                   what: str) -> np.ndarray:
    """x, y as int64 ``(N, 2)`` for integer formats; raises :class:`SketchFormatError` when a coordinate is not
    an integer (unless ``round_coords``) or lies outside ``[lo, hi]``: writing must never change data silently."""
    check_writable(sketch, index, fallback)
    xy = sketch.points[:, :2].astype(np.float64)
    if round_coords:
        xy = np.rint(xy)
    elif not np.array_equal(xy, np.rint(xy)):
        raise SketchFormatError(**origin(sketch, index, fallback), reason="coordinate not an integer",
                                field="points", detail=f"{what} stores integers; use --round or simplify first")
    if xy.min() < lo or xy.max() > hi:
        raise SketchFormatError(**origin(sketch, index, fallback), reason="coordinate out of range", field="points",
                                detail=f"{what} stores {lo}..{hi}; got {xy.min():g}..{xy.max():g}")
    return xy.astype(np.int64)


# Longest file name written, in bytes: 255 (ext4, APFS, NTFS) less room for AtomicWriter's ".NAME.partPID".
MAX_NAME_BYTES = 255 - 24
# Characters that cannot or should not be in a file name on some system (separators, control characters,
# Windows' reserved ones, lone surrogates), the escape character itself, and a leading dot ("." and "..").
_UNSAFE_IN_NAME = re.compile(r'[\x00-\x1f\x7f%/\\:*?"<>|\ud800-\udfff]|^\.')


def class_name(label, suffix: str = "") -> str:
    """The file or folder name for a class label, one path component inside the output folder.

    Unsafe characters are percent-encoded (``a/b`` -> ``a%2Fb``, ``..`` -> ``%2E.``), so distinct labels give
    distinct names and :func:`file_label` reads the label back. A name that would not fit the file system
    together with ``suffix`` is cut and ends in ``~`` and 16 hex digits of the label's sha1 (still distinct, no
    longer reversible). ``None`` and ``""`` are ``unlabeled``."""
    text = "unlabeled" if label is None or label == "" else str(label)
    name = _UNSAFE_IN_NAME.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogatepass")),
                               text)
    budget = MAX_NAME_BYTES - len(suffix.encode())
    if len(name.encode()) > budget:
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        name = name.encode()[:budget - 17].decode("utf-8", "ignore") + "~" + digest
    return name


def class_label(name: str) -> str:
    """The label a file or folder name written by :func:`class_name` stands for (``a%2Fb`` -> ``a/b``)."""
    return urllib.parse.unquote(name)


def file_label(path: Path) -> str:
    """The class a one-class-per-file name stands for: ``car.ndjson``, ``car.bin.gz`` -> ``car``."""
    return class_label(file_stem(path))


def natural_key(path: Path) -> list:
    """Sort key that puts ``2.svg`` before ``10.svg``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def file_stem(path: Path) -> str:
    """The class a one-class-per-file name stands for: ``car.ndjson`` and ``car.bin.gz`` -> ``car``."""
    return Path(path.stem).stem if path.suffix == ".gz" else path.stem


# What reading a damaged or unreadable file raises (a truncated .gz: EOFError; bad gzip data: OSError, zlib.error).
READ_ERRORS = (OSError, EOFError, zlib.error)


def unreadable(source: str, error: BaseException) -> SketchFormatError:
    return SketchFormatError(source, "unreadable file", detail=f"{type(error).__name__}: {error}"[:100])


def open_read(path: Path) -> IO[bytes]:
    """Binary reader; ``*.gz`` is decompressed on the fly (Google also serves gzip-compressed files)."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def make_folder(path: Path) -> None:
    """``mkdir -p``; a file in the way or a missing permission is a one-line :class:`R2CNNError`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise R2CNNError(f"{path}: cannot create the folder ({_os_reason(path, e)})") from None


def _os_reason(path: Path, error: OSError) -> str:
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    return f"{blocker} is a file, not a folder" if blocker is not None else error.strerror or str(error)


class AtomicWriter:
    """A binary output file written under a temporary name in its folder and, on success, flushed to disk (fsync),
    renamed into place and the rename made durable (fsync of the folder): a failed, interrupted or power-cut write
    leaves the old file or the new one, never a half-written file that looks complete. ``*.gz`` is compressed
    (``compress`` overrides the suffix). Operating-system errors (no space, no permission, a folder in the way)
    are one-line :class:`R2CNNError`. The project's one atomic writer: also a context manager,
    ``with AtomicWriter(path) as f: ...`` (commits on success, discards on any exception)."""

    def __init__(self, path: Path, compress: bool | None = None):
        self.path = Path(path)
        make_folder(self.path.parent)
        self._tmp = self.path.with_name(f".{self.path.name}.part{os.getpid()}")
        try:
            raw = open(self._tmp, "wb")
        except OSError as e:
            raise self._error(e) from None
        if compress is None:
            compress = self.path.suffix == ".gz"
        self.file: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) if compress else raw
        self._raw = raw

    def _error(self, e: OSError) -> R2CNNError:
        return R2CNNError(f"{self.path}: cannot write ({_os_reason(self.path, e)})")

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as e:
            raise self._error(e) from None

    def commit(self) -> None:
        try:
            if self.file is not self._raw:
                self.file.close()
            self._raw.close()
            replace_durably(self._tmp, self.path)
        except BaseException as e:  # the old file at ``path`` is untouched; only the temporary file goes
            self._raw.close()
            self._tmp.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise self._error(e) from None
            raise

    def discard(self) -> None:
        if self.file is not self._raw:
            self.file.close()
        self._raw.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> IO[bytes]:
        return self.file

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def replace_durably(tmp: Path, path: Path) -> None:
    """Rename the finished, closed file ``tmp`` onto ``path`` so that a power cut leaves the old file or the whole
    new one: fsync ``tmp``'s data, ``os.replace``, fsync the folder (the rename itself). ``tmp`` may be a folder
    built in one go (a store): the files directly in it are fsynced first, then the folder. The last step is not
    possible on every platform or file system, hence its guard."""
    tmp = Path(tmp)
    files = [p for p in tmp.iterdir() if p.is_file() and not p.is_symlink()] if tmp.is_dir() else []
    for name in [*files, tmp]:
        fd = os.open(name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, path)
    try:
        fd = os.open(Path(path).parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_one_label(labels: dict, target: Path, sketch: Sketch, what: str) -> None:
    """A single output file of a format without a label field must hold one class (the file stem is the class)."""
    first = labels.setdefault(target, sketch.label)
    if first != sketch.label:
        raise R2CNNError(f"{target}: {what} has no label field, so one file holds one class; got {first!r} and "
                         f"{sketch.label!r}: write to a folder instead")


def write_stream(path: Path, sketches: Iterable[Sketch], encode: Callable[[Sketch, int, str], bytes], *,
                 policy: ErrorPolicy, per_class: bool, suffix: str, one_label: bool) -> tuple[int, list[Path]]:
    """Append ``encode(sketch, index, target)`` for each sketch to ``path``, or with ``per_class`` to
    ``path/<label><suffix>``. A record ``encode`` rejects goes to ``policy``; files appear only when all went
    well. ``one_label``: the format has no label field, so a single file must hold one class.
    Returns (sketches written, files written)."""
    writers: dict[Path, AtomicWriter] = {}
    labels: dict[Path, object] = {}
    written = 0
    try:
        for i, sketch in enumerate(sketches):
            target = path / f"{class_name(sketch.label, suffix)}{suffix}" if per_class else path
            if one_label and not per_class:
                check_one_label(labels, target, sketch, suffix)
            try:
                data = encode(sketch, i, str(target))
            except SketchFormatError as e:
                policy.handle(e)
                continue
            if target not in writers:
                writers[target] = AtomicWriter(target)
            writers[target].write(data)
            written += 1
        for w in writers.values():
            w.commit()
    except BaseException:
        for w in writers.values():
            w.discard()
        raise
    return written, list(writers)
