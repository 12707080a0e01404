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

from r2cnn.errors import ErrorPolicy, R2CNNError, SketchFormatError, write_failure
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
    (``compress`` overrides the suffix). The project's one atomic writer: also a context manager,
    ``with AtomicWriter(path) as f: ...`` (commits on success, discards on any exception).

    Operating-system errors (no space, no permission, a read-only file system, a folder in the way) are one-line
    :class:`R2CNNError` naming the file and what was kept (the file as it was before, or none), with the temporary
    file removed: from :meth:`write` and :meth:`commit`, and from the ``with`` body when what it raised comes from a
    full or read-only disk (:func:`r2cnn.errors.write_failure`: ``torch.save`` into ``f`` reports it as a
    ``RuntimeError``). The first writer into a folder removes the temporary files killed writers left there
    (:func:`remove_stale_parts`)."""

    def __init__(self, path: Path, compress: bool | None = None):
        self.path = Path(path)
        make_folder(self.path.parent)
        remove_stale_parts(self.path.parent)
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
        kept = f"the previous {self.path.name} is kept" if self.path.exists() else "no file was written"
        return R2CNNError(f"{self.path}: cannot write ({_os_reason(self.path.parent, e)}); {kept}")

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as e:
            self.discard()
            raise self._error(e) from None

    def commit(self) -> None:
        try:
            if self.file is not self._raw:
                self.file.close()
            self._raw.close()
            replace_durably(self._tmp, self.path)
        except BaseException as e:  # the old file at ``path`` is untouched; only the temporary file goes
            self.discard()
            if isinstance(e, OSError):
                raise self._error(e) from None
            raise

    def discard(self) -> None:
        """Remove the temporary file; ``path`` stays as it was. Quiet about the disk: closing a file on a full disk
        fails to flush what it buffered, which is being thrown away anyway."""
        for f in (self.file, self._raw):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        try:
            self._tmp.unlink(missing_ok=True)
        except OSError:
            pass

    def __enter__(self) -> IO[bytes]:
        return self.file

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
            return
        self.discard()
        failure = write_failure(value)
        if failure is not None:
            raise self._error(failure) from None


def write_file(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` with :class:`AtomicWriter`: the whole file or the old one, and a
    one-line error naming ``path`` when the disk refuses."""
    with AtomicWriter(Path(path), compress=False) as f:
        f.write(data.encode() if isinstance(data, str) else data)


# AtomicWriter's temporary files, ``.NAME.partPID``; and the folders this process has already swept.
_PART = re.compile(r"\..+\.part([0-9]{1,10})")
_swept: set[Path] = set()


def remove_stale_parts(folder: Path) -> list[Path]:
    """Remove the temporary files of :class:`AtomicWriter` (``.NAME.partPID``) that a killed writer left in
    ``folder``: those whose process is gone, never one of a live process (it is still writing). Done once per folder
    and process (the first writer into it; ``r2cnn train`` when it takes its folder); returns what it removed.
    The process is looked up on this machine only: a folder that writers on other machines share (NFS) or that
    containers with their own process ids share must not be written from both at once. Not on Windows (no
    signal-0 check there)."""
    folder = Path(folder)
    if os.name == "nt" or folder in _swept:
        return []
    _swept.add(folder)
    removed = []
    try:
        names = [e.name for e in os.scandir(folder) if e.name.startswith(".") and ".part" in e.name]
    except OSError:
        return []
    for name in names:
        match = _PART.fullmatch(name)
        if match is None or process_running(int(match.group(1))):
            continue
        try:
            (folder / name).unlink()
            removed.append(folder / name)
        except OSError:  # gone already (another process swept it), or not ours to remove
            pass
    return removed


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 checks without signalling)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it exists but is another user's; or not a valid pid
        return True
    return True


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
