"""The packed, memory-mapped sketch store built once by ``r2cnn prepare`` and read by the data loader.

One idea per module:

- :mod:`~r2cnn.data.store.reader`: :class:`SketchStore`, the directory format and the checks made on opening;
- :mod:`~r2cnn.data.store.splits`: which split (or fold) each record belongs to;
- :mod:`~r2cnn.data.store.sources`: :func:`prepare`, a store from files and folders, and when it is up to date;
- :mod:`~r2cnn.data.store.writer`: building one in bounded memory and swapping it into place (:func:`build_store`);
- :mod:`~r2cnn.data.store.npy`: append-only ``.npy`` files and the points' narrowest dtype;
- :mod:`~r2cnn.data.store.lock`: one writer at a time per folder (:func:`one_writer_at_a_time`).

The names users and the docs import from ``r2cnn.data.store`` (the four below) are re-exported here.
"""

from r2cnn.data.store.lock import one_writer_at_a_time
from r2cnn.data.store.reader import SketchStore
from r2cnn.data.store.sources import prepare
from r2cnn.data.store.writer import build_store

__all__ = ["SketchStore", "build_store", "one_writer_at_a_time", "prepare"]
