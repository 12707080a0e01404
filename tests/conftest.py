"""Shared fixtures. Real data lives in ../shared/data (never copied here); tests that need it skip without it."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real QuickDraw, TU-Berlin and sketch-rnn files); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sketch data not found at {SHARED_DATA} (only present on the developers' machines)")
    return SHARED_DATA
