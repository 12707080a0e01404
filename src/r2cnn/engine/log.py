"""Run log: one JSON object per line in ``RUN/log.jsonl``, optionally mirrored to TensorBoard.

Records carry ``kind`` ("train" every ``log_every`` steps, "valid" after each validation, "event" for
start/resume/stop), ``step`` and ``epoch``; every numeric field of a record becomes a TensorBoard scalar
``<kind>/<field>``. Only rank 0 creates a :class:`RunLog`; other ranks get a disabled one.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from r2cnn.data.formats.common import write_file
from r2cnn.errors import R2CNNError


class RunLog:
    def __init__(self, run_dir: str | Path | None, *, tensorboard: bool = False, resume_step: int | None = None):
        """``run_dir=None`` disables logging (non-zero ranks). With ``resume_step`` the existing log is kept up
        to that step: records that a killed run wrote after its last checkpoint are dropped, since the resumed
        run writes them again, and so is a torn last line (a kill in the middle of an append)."""
        self.path = Path(run_dir) / "log.jsonl" if run_dir is not None else None
        self.writer = None
        if self.path is None:
            return
        if tensorboard:  # before log.jsonl is touched: a run that cannot start must not leave a run behind
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise R2CNNError("--tensorboard needs the 'tensorboard' package: pip install tensorboard") from e
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [line for line, record in _read_records(self.path) if record.get("step", 0) <= resume_step]
            write_file(self.path, "".join(line + "\n" for line in kept))
        elif resume_step is None:
            write_file(self.path, "")
        if tensorboard:
            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)

    def write(self, kind: str, **fields) -> None:
        if self.path is None:
            return
        record = {"kind": kind, "time": round(time.time(), 3), **fields}
        self._append((json.dumps(record, allow_nan=True) + "\n").encode())
        if self.writer is not None and "step" in fields:
            for key, value in fields.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"{kind}/{key}", value, fields["step"])

    def _append(self, data: bytes) -> None:
        """Append one record; on a full disk, cut the log back to its whole records and say so in one line."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view):]
            except OSError as e:
                try:
                    os.ftruncate(fd, end)
                except OSError:  # the reader drops a torn last line anyway
                    pass
                raise R2CNNError(f"{self.path}: cannot write ({e.strerror or e}); the records before this one "
                                 f"are kept") from None
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _read_records(path: Path) -> list[tuple[str, dict]]:
    """(line, record) for each line of a run log. A last line that is not JSON is what a kill during an append
    leaves and is dropped; a bad line before it is damage this module did not do and is an error."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break
            raise R2CNNError(f"{path}:{number}: not a JSON record; the run log is damaged (move it away to resume "
                             f"without it)") from None
        if not isinstance(record, dict):
            raise R2CNNError(f"{path}:{number}: not a JSON object; the run log is damaged")
        records.append((line, record))
    return records
