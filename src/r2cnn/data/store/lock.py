"""One writer at a time per store (or run) folder: an ``flock`` on a file beside it.

One build at a time: ``prepare`` holds an exclusive ``flock`` on ``.DIR.lock`` beside the store (the directory
itself is replaced, so it cannot carry the lock; the file is removed when the build ends) from the up-to-date check
to the rename; a second ``prepare`` into the same directory says it is waiting, then finds the store up to date or
builds its own. ``r2cnn experiment`` and ``r2cnn train`` take the same lock on their run folder and refuse
instead of waiting. The holder writes its process id and command into the lock file, so a refusal names it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from r2cnn.data.formats.common import make_folder, process_running
from r2cnn.errors import R2CNNError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; concurrent builds are then the user's to avoid
    fcntl = None


@contextlib.contextmanager
def one_writer_at_a_time(out: Path, log, *, command: str = "r2cnn prepare", wait: bool = True):
    """Hold an exclusive ``flock`` on ``.OUT.lock`` beside ``out`` while one ``command`` writes ``out``: with
    ``wait``, waiting (and saying so) while another process holds it, else refusing with a one-line
    :class:`R2CNNError`. The kernel releases a lock when its process dies, so a killed writer never leaves a stale
    one. The holder removes the file before releasing it; a waiter that then gets the lock of a removed file opens
    the file again, so two writers never hold locks on two different files. (``prepare`` waits; ``experiment``
    and ``train`` refuse: the second run would only find the first one's work, or mix its checkpoints and log
    with the first one's.)"""
    if fcntl is None:
        yield
        return
    make_folder(out.parent)
    lock_path = out.parent / f".{out.resolve().name}.lock"
    said = False
    while True:
        try:
            f = open(lock_path, "a")
        except OSError as e:
            raise R2CNNError(f"{lock_path}: cannot create the lock file ({e.strerror})") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                f.close()
                holder, pid = _holder(lock_path, command)
                raise R2CNNError(f"{out}: another `{holder}` is writing this folder ({pid}lock: {lock_path}); wait "
                                 f"for it to end, or use another folder") from None
            if not said:
                holder, pid = _holder(lock_path, command)
                log(f"{out}: waiting for another `{holder}` that is writing this folder ({pid}lock: {lock_path})")
                said = True
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            if os.stat(lock_path).st_ino == os.fstat(f.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()
    try:
        os.ftruncate(f.fileno(), 0)
        os.write(f.fileno(), f"{os.getpid()} {command}\n".encode())
    except OSError:  # a full disk: the lock holds all the same, only unnamed
        pass
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        f.close()


def _holder(lock_path: Path, command: str) -> tuple[str, str]:
    """The command holding the lock and ``"process PID, "``, as the lock file says; else ``command`` and ``""``
    (the holder has not written it yet, or the file is not one of ours)."""
    try:
        pid, _, holder = lock_path.read_text(errors="replace").strip().partition(" ")
    except OSError:
        return command, ""
    if not (pid.isdigit() and len(pid) < 11 and holder.startswith("r2cnn ") and len(holder) < 40
            and process_running(int(pid))):  # a dead pid: a killed holder's file, the new one not written yet
        return command, ""
    return holder, f"process {pid}, "

