"""Shared fixtures. Real data lives in ../shared/data (never copied here); tests that need it skip without it."""

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from _skips import pytest_sessionfinish  # noqa: F401  (the hook: the run ends with one line on what was skipped)

# $R2CNN_SHARED_DATA first, as the benchmarks look (r2cnn.bench._paths): where ../shared is absent (a GPU machine
# that gets only the checkout), the variable says where the data is
SHARED_DATA = Path(os.environ.get("R2CNN_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")

# Without a GPU the Triton kernels run in Triton's CPU interpreter. The variable is read when the kernels are
# decorated, i.e. when r2cnn.raster.triton_kernels is first imported, which any test module may do: set it here,
# before any test module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Hypothesis: `ci` (the default, `make test`, `.ci/run`) draws the same examples on every run, so a commit passes
# or fails for good; `explore` (`make test-explore`) draws fresh random ones, 10x more, to find new cases, which
# then become explicit @example()s. HYPOTHESIS_PROFILE picks another. (A test that sets its own max_examples keeps
# it in both; tests/test_formats_fuzz.py takes its count from FUZZ_N.)
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True, database=None, max_examples=100)
settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real QuickDraw, TU-Berlin and sketch-rnn files); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sketch data not found at {SHARED_DATA} (only present on the developers' machines)")
    return SHARED_DATA


# A tiny model (same code path as the CPU presets, much smaller), trained a few steps on built-in sketches: enough
# for tests that need a real checkpoint but not a good one (figures, report, web server, benchmarks).
TINY_MODEL = {"canvas": 32, "width": 8, "stem": "small", "hidden": 16, "layers": 1, "dropout": 0.0}


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    from r2cnn.data.store import prepare

    out = tmp_path_factory.mktemp("tiny") / "store"
    prepare([], out, builtin=12, split_sizes=(8, 2, 2), log=lambda *a: None, progress=False)
    return out


def _tiny_checkpoint(store: Path, out: Path, preset: str) -> Path:
    from r2cnn.engine.train import TrainOptions, train

    result = train(TrainOptions(preset=preset, data=str(store), out=str(out), steps=6, batch_size=16, lr=3e-3,
                                seed=0, workers=0, log_every=1, progress=False,
                                config_overrides={"model_options": TINY_MODEL, "lr_schedule": "constant"}))
    return Path(result["best_path"])


@pytest.fixture(scope="session")
def tiny_r2cnn_checkpoint(tiny_store, tmp_path_factory) -> Path:
    """An R2CNN checkpoint (per-point attention) trained 6 steps on built-in sketches."""
    return _tiny_checkpoint(tiny_store, tmp_path_factory.mktemp("tiny-r2cnn"), "cpu-r2cnn")


@pytest.fixture(scope="session")
def tiny_cnn_checkpoint(tiny_store, tmp_path_factory) -> Path:
    """A CNN-only checkpoint (no per-point attention) trained 6 steps on built-in sketches."""
    return _tiny_checkpoint(tiny_store, tmp_path_factory.mktemp("tiny-cnn"), "cpu-cnn")


@pytest.fixture(scope="session")
def tiny_runs(tiny_store, tiny_r2cnn_checkpoint, tiny_cnn_checkpoint):
    """The tiny store and the run directories of both tiny models, R2CNN (``r2cnn``) and its CNN-only twin
    (``cnn``), for the figure and report tests."""
    from types import SimpleNamespace

    return SimpleNamespace(store=tiny_store, r2cnn=tiny_r2cnn_checkpoint.parent, cnn=tiny_cnn_checkpoint.parent)
