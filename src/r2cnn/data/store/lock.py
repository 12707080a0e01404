"""One writer at a time per store (or run) folder: an ``flock`` on a file beside it.

One build at a time: ``prepare`` holds an exclusive ``flock`` on ``.DIR.lock`` beside the store (the directory
itself is replaced, so it cannot carry the lock; the file is removed when the build ends) from the up-to-date check
to the rename; a second ``prepare`` into the same directory says it is waiting, then finds the store up to date or
builds its own. ``r2cnn experiment`` takes the same lock on its run folder and refuses instead of waiting.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from r2cnn.data.formats.common import make_folder
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
    refuses, since the second run would only find the first one's work.)"""
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
                raise R2CNNError(f"{out}: another `{command}` is writing this folder (lock: {lock_path}); wait for "
                                 f"it to end, or use another folder") from None
            if not said:
                log(f"{out}: waiting for another `{command}` that is writing this folder (lock: {lock_path})")
                said = True
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            if os.stat(lock_path).st_ino == os.fstat(f.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        f.close()

