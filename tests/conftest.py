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

