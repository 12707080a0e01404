"""User-facing errors and the skip-and-count policy for bad input records.

Every error a user can cause (a malformed file, a bad option) is an :class:`R2CNNError`; the command line
prints it as one line and exits non-zero, never with a traceback. Bugs stay ordinary exceptions.
"""

from __future__ import annotations

import errno
import re
from collections import Counter
from dataclasses import dataclass, field


class R2CNNError(Exception):
    """An error caused by the user's input or options; printed as one line by the CLI."""


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to a misspelt ``word`` (difflib), else ``""``."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class MissingResource(R2CNNError):
    """A file a run needs and never downloads is absent (ImageNet weights): an experiment skips the row, says why,
    and goes on; ``r2cnn train`` stops with the one line."""


class SketchFormatError(R2CNNError):
    """A record that cannot be read. ``str()`` is one line: ``source:line: field: reason``.

    ``reason`` is short and stable (it is the key under which skipped records are counted);
    ``detail`` adds specifics for the message only.
    """

    def __init__(self, source: str, reason: str, *, line: int | None = None, record: int | None = None,
                 field: str | None = None, detail: str | None = None):
        self.source = str(source)
        self.reason = reason
        self.line = line
        self.record = record
        self.field = field
        self.detail = detail
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
        elif self.record is not None:
            where += f": record {self.record}"
        what = f"field '{self.field}': " if self.field else ""
        tail = f" ({self.detail})" if self.detail else ""
        return f"{where}: {what}{self.reason}{tail}"


# What the place a file is written to raises, not the program: a full disk, a quota, a read-only file system, a file
# over the file system's size limit. Wherever it comes from, it is the user's to fix, and a one-line error.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def write_failure(error: BaseException) -> OSError | None:
    """The :data:`WRITE_ERRNOS` ``OSError`` behind ``error``, else None: ``error`` itself or one in its chain of
    causes: ``torch.save`` to a file object reports a failed ``write`` as ``RuntimeError: [enforce fail at
    inline_container.cc...]`` with the ``OSError`` as its context. (Given a file name instead, torch's writers
    fail in C++ with no ``OSError``, or abort the process: the project's writers hand them file objects.)"""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None


def describe_load_failure(error: Exception) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file (checkpoint, weights), in a few words of our own.

    torch's own messages span lines, carry ANSI escapes and advise retrying with ``weights_only=False``: advice
    that would run the file's code, so it is never passed on. Details are whole sentences, never cut."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    code = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if code:
        return f"it needs Python object {code.group(1)} to load, and files are loaded as plain data only"
    if "central directory" in text or "zip archive" in text:
        return "truncated, or not a PyTorch file"
    first = " ".join(text.split()).split(". ")[0].rstrip(".")
    if not first or "weights_only" in first or len(first) > 160:
        return f"not a PyTorch file ({type(error).__name__})"
    return f"not a PyTorch file ({type(error).__name__}: {first})"


@dataclass
class ErrorPolicy:
    """What readers do with a bad record: ``"raise"`` (default) stops with the error; ``"skip"`` counts it.

    Readers call :meth:`handle` with every :class:`SketchFormatError`; in skip mode it is counted by
    reason and the reader goes on with the next record. ``summary()`` gives the counts for printing.
    """

    mode: str = "raise"
    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in ("raise", "skip"):
            raise R2CNNError(f"--on-error must be 'raise' or 'skip', not {self.mode!r}")

    def handle(self, error: SketchFormatError) -> None:
        if self.mode == "raise":
            raise error
        self.counts[error.reason] += 1
        self.examples.setdefault(error.reason, str(error))

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line per reason, e.g. ``skipped 3 records: 2 x non-finite coordinate (first: a.ndjson:7: ...)``."""
        if not self.counts:
            return "skipped 0 records"
        lines = [f"skipped {self.skipped} records:"]
        for reason, n in self.counts.most_common():
            lines.append(f"  {n} x {reason} (first: {self.examples[reason]})")
        return "\n".join(lines)
