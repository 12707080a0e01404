"""Shared fixtures. Real data lives in ../shared/data (never copied here); tests that need it skip without it."""

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Without a GPU the Triton kernels run in Triton's CPU interpreter. The variable is read when the kernels are
# decorated, i.e. when r2cnn.raster.triton_kernels is first imported, which any test module may do: set it here,
# before any test module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real QuickDraw, TU-Berlin and sketch-rnn files); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sketch data not found at {SHARED_DATA} (only present on the developers' machines)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """A small built-in store and two tiny models trained for a few steps on it, R2CNN (``r2cnn``) and its CNN-only
    twin (``cnn``): real checkpoints and run directories for the figure and report tests, made in seconds."""
    from types import SimpleNamespace

    from r2cnn.data.store import prepare
    from r2cnn.engine.train import TrainOptions, train

    root = tmp_path_factory.mktemp("tiny_runs")
    prepare([], root / "store", builtin=12, split_sizes=(8, 2, 2), log=lambda *a: None, progress=False)
    tiny = {"canvas": 32, "width": 8, "stem": "small", "hidden": 16, "layers": 1, "dropout": 0.0}
    for preset, name in (("cpu-r2cnn", "r2cnn"), ("cpu-cnn", "cnn")):
        train(TrainOptions(preset=preset, data=str(root / "store"), out=str(root / name), steps=4, batch_size=8,
                           lr=3e-3, seed=0, workers=0, log_every=1, progress=False,
                           config_overrides={"model_options": tiny, "lr_schedule": "constant"}))
    return SimpleNamespace(store=root / "store", r2cnn=root / "r2cnn", cnn=root / "cnn")
