"""The tensor-only inference NLR (r2cnn.raster.dense) against the renderer: the same value on every pixel."""

import itertools
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import r2cnn.raster as R
from r2cnn.data import builtin
from r2cnn.data.transforms import normalize
from r2cnn.raster.dense import CHUNK_ELEMENTS, MEMORY_BOUND_MB, DenseRasterizer, chunk_segments, rasterize_dense, segment_table
from r2cnn.raster.geometry import segment_ends

from test_raster import random_sketches

# every eps (0.5 and 1), overlap rule and C of 1 and 3 at two canvas sizes
CASES = list(itertools.product((32, 64), (0.5, 1.0), ("last", "max"), (1, 3)))


def builtin_points(n_per_class: int = 2, seed: int = 5) -> list[torch.Tensor]:
    return [torch.from_numpy(normalize(s).points) for s in builtin.generate(n_per_class, seed=seed)]


def assert_same_pixels(points: torch.Tensor, size: int, eps: float, overlap: str, channels: int, seed: int = 0,
                       chunk: int = 0) -> None:
    a = torch.rand(len(points), channels, generator=torch.Generator().manual_seed(seed))
    expected = R.rasterize(points, torch.tensor([0, len(points)]), a, size, eps, overlap)[0]
    got = rasterize_dense(points, a, size, size, eps, overlap, chunk)
    assert got.shape == expected.shape
    assert torch.equal(got, expected), f"{int((got != expected).sum())} pixels differ"


def test_segment_table_is_segment_ends_of_one_sketch():
    for s in random_sketches(20, seed=3)[1:]:
        p = torch.from_numpy(s.points)
        u, v, end = segment_ends(p, torch.tensor([0, len(p)]), (40, 56))
        got = segment_table(p, 40, 56)
        assert torch.equal(got[0], u) and torch.equal(got[1], v) and torch.equal(got[2], end)


@pytest.mark.parametrize("size,eps,overlap,channels", CASES)
def test_equals_renderer_on_builtin_sketches(size, eps, overlap, channels):
    for k, p in enumerate(builtin_points()):
        assert_same_pixels(p, size, eps, overlap, channels, seed=k)


@pytest.mark.parametrize("overlap", ["last", "max"])
def test_equals_renderer_on_random_walks_with_dots_repeats_and_points_off_canvas(overlap):
    for k, s in enumerate(random_sketches(30, seed=1, max_points=60)):
        assert_same_pixels(torch.from_numpy(s.points), 48, 1.0, overlap, 2, seed=k)


@pytest.mark.parametrize("overlap", ["last", "max"])
def test_chunking_does_not_change_pixels(overlap):
    """Small chunks: the winner carried from chunk to chunk is the renderer's (the latest segment / the max)."""
    for k, p in enumerate(builtin_points(1, seed=9)):
        for chunk in (1, 7):
            assert_same_pixels(p, 64, 1.0, overlap, 1, seed=k, chunk=chunk)


@pytest.mark.parametrize("overlap", ["last", "max"])
def test_points_far_off_the_canvas(overlap):
    far = torch.tensor([[-3.0, 0.0, 0], [3.0, 0.0, 1], [5.0, 5.0, 0], [6.0, 5.0, 1], [-4.0, -4.0, 1]])
    for chunk in (0, 1, 2):
        assert_same_pixels(far, 32, 1.0, overlap, 1, chunk=chunk)


def test_equals_renderer_in_float64():
    p = builtin_points(1)[0]
    a = torch.rand(len(p), 2, dtype=torch.float64)
    expected = R.rasterize(p, torch.tensor([0, len(p)]), a, 64, 1.0, "last")[0]
    assert torch.equal(rasterize_dense(p, a, 64, 64), expected)


def test_empty_sketch_gives_a_blank_image():
    for overlap in ("last", "max"):
        assert not rasterize_dense(torch.zeros(0, 3), torch.zeros(0, 2), 16, 16, 1.0, overlap).any()


@pytest.mark.shared_data
@pytest.mark.parametrize("size,eps,overlap,channels", [(224, 1.0, "last", 1), (224, 0.5, "max", 3),
                                                       (64, 1.0, "max", 1), (64, 0.5, "last", 2)])
def test_equals_renderer_on_real_sketches(shared_data, size, eps, overlap, channels):
    from r2cnn.bench.raster import sample_sketches

    for k, s in enumerate(sample_sketches(16, shared_data / "quickdraw" / "qd5" / "valid")):
        assert_same_pixels(torch.from_numpy(s.points), size, eps, overlap, channels, seed=k)


@pytest.mark.parametrize("size,overlap", [(64, "last"), (64, "max"), (224, "last"), (224, "max")])
def test_scripted_and_onnx_equal_the_renderer(tmp_path, size, overlap):
    """TorchScript and onnxruntime run the same float64 coverage test: the same pixels, for any N (dynamic; at
    224x224 the sketches take several chunks, i.e. several turns of the ONNX Loop)."""
    onnxruntime = pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(DenseRasterizer(size, 1.0, overlap))
    pts = builtin_points(1, seed=2)[:6] + [torch.from_numpy(s.points) for s in random_sketches(3, 4, 200)[1:]]
    a = [torch.rand(len(p), 2) for p in pts]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(scripted, (pts[0], a[0]), str(tmp_path / "nlr.onnx"), dynamo=False, opset_version=17,
                          input_names=["points", "intensities"], output_names=["image"],
                          dynamic_axes={"points": {0: "N"}, "intensities": {0: "N"}})
    session = onnxruntime.InferenceSession(str(tmp_path / "nlr.onnx"), providers=["CPUExecutionProvider"])
    for p, x in zip(pts, a):
        expected = R.rasterize(p, torch.tensor([0, len(p)]), x, size, 1.0, overlap)
        assert torch.equal(scripted(p, x), expected)
        onnx_image = session.run(None, {"points": p.numpy(), "intensities": x.numpy()})[0]
        assert np.array_equal(onnx_image, expected.numpy())


def test_memory_stays_within_the_stated_bound_for_a_long_sketch():
    """2,000 points at 224x224, C = 1, each segment jumping across the canvas (so every chunk is tested against
    the whole canvas, the worst case): the peak resident memory a fresh process gains while rasterising stays
    within MEMORY_BOUND_MB (unchunked, one float64 (segments x pixels) block alone would take 800 MB)."""
    assert chunk_segments(224, 224) == 10 and chunk_segments(1, 1) == CHUNK_ELEMENTS  # the literal is the constant
    code = (
        "import resource, numpy as np, torch\n"
        "from r2cnn.raster.dense import rasterize_dense\n"
        "rng = np.random.default_rng(0)\n"
        "xy = rng.uniform(-1, 1, (2000, 2))\n"
        "p = torch.from_numpy(np.column_stack([xy, rng.random(2000) < 0.02]).astype(np.float32))\n"
        "a = torch.rand(2000, 1)\n"
        "for overlap in ('last', 'max'):\n"
        "    rasterize_dense(p[:3], a[:3], 8, 8, 1.0, overlap)\n"  # imports and kernels warm, tiny canvas
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for overlap in ('last', 'max'):\n"
        "    rasterize_dense(p, a, 224, 224, 1.0, overlap)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    grown = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 timeout=600).stdout)
    assert grown <= MEMORY_BOUND_MB, f"peak grew by {grown:.0f} MB"
