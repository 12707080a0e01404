"""The Triton backend against the reference: on a CUDA device when there is one, otherwise on CPU tensors through
Triton's interpreter (``TRITON_INTERPRET=1``, set here before the kernels are imported; slow, so small inputs)."""

import os
import sys

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are decorated, i.e. on first import

pytest.importorskip("triton")
import r2cnn.raster as R  # noqa: E402
from test_raster import (FAST_CASES, SLOW_CASES, assert_same_geometry, batch_of, check_backend,  # noqa: E402
                         random_sketches, real_batch, render_and_grad)  # noqa: F401 (real_batch: a fixture)

DEVICE = "cuda" if CUDA else "cpu"
if not CUDA and "r2cnn.raster.triton_kernels" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("triton kernels were imported without the interpreter and there is no GPU", allow_module_level=True)

# interpreter: every program runs in Python, so the sizes stay small there
SMALL = [(24, 0.5, 8, "last"), (32, 1.0, 1, "max"), (28, 2.0, 1, "last"), (20, 1.0, 8, "max")]


@pytest.mark.parametrize("size,eps,channels,overlap", SMALL)
def test_triton_matches_reference_small(size, eps, channels, overlap):
    check_backend(batch_of(random_sketches(5, seed=size, max_points=16)), size, eps, channels, overlap, "triton",
                  DEVICE)


@pytest.mark.skipif(not CUDA, reason="real-size comparisons need a CUDA device (the interpreter is too slow)")
@pytest.mark.parametrize("size,eps,channels,overlap", FAST_CASES)
def test_triton_matches_reference_gpu(real_batch, size, eps, channels, overlap):
    check_backend(real_batch, size, eps, channels, overlap, "triton", DEVICE)
    check_backend(batch_of(random_sketches(12, seed=size)), size, eps, channels, overlap, "triton", DEVICE)


@pytest.mark.slow
@pytest.mark.skipif(not CUDA, reason="real-size comparisons need a CUDA device (the interpreter is too slow)")
@pytest.mark.parametrize("size,eps,channels,overlap", SLOW_CASES)
def test_triton_matches_reference_gpu_all(real_batch, size, eps, channels, overlap):
    check_backend(real_batch, size, eps, channels, overlap, "triton", DEVICE)


@pytest.mark.parametrize("overlap", ["last", "max"])
def test_triton_gradcheck(overlap):
    batch = batch_of(random_sketches(3, seed=4, max_points=8))
    geo = R.geometry(batch.points.to(DEVICE), batch.offsets.to(DEVICE), 10, 1.5, overlap, backend="triton")
    a = torch.rand(batch.points.shape[0], 2, dtype=torch.float64, device=DEVICE, requires_grad=True)
    # fast mode (random projections of the Jacobian): each kernel launch costs ~0.1 s in the interpreter
    assert torch.autograd.gradcheck(lambda x: R.render(geo, x, backend="triton"), (a,), fast_mode=not CUDA)


def test_triton_edge_cases():
    empty = R.rasterize(torch.zeros(0, 3, device=DEVICE), torch.tensor([0, 0], device=DEVICE),
                        torch.zeros(0, 2, device=DEVICE), 8, backend="triton")
    assert empty.shape == (1, 2, 8, 8) and not empty.any()
    pts = torch.tensor([[0.1, 0.2, 1.0], [-3, 0, 0], [3, 0, 1], [0.1, 0.2, 0], [0.1, 0.2, 1]])  # dot, off-canvas, repeat
    check_backend(batch_of([pts[:1].numpy(), pts[1:3].numpy(), pts[3:].numpy()]), 16, 1.0, 2, "last", "triton",
                  DEVICE)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_triton_long_sketch_and_large_batch():
    import numpy as np
    rng = np.random.default_rng(0)
    xy = np.clip(np.cumsum(rng.normal(0, 0.02, (10_000, 2)), 0), -1, 1)
    pen = (rng.random(10_000) < 0.01).astype(np.float32)
    check_backend(batch_of([np.column_stack([xy, pen]).astype(np.float32)]), 112, 1.0, 1, "last", "triton", DEVICE)
    batch = batch_of(random_sketches(3000, seed=5, max_points=30))
    cpu = R.geometry(batch.points, batch.offsets, 32, backend="cpu")
    assert_same_geometry(cpu, R.geometry(batch.points.cuda(), batch.offsets.cuda(), 32, backend="triton"))


@pytest.mark.parametrize("overlap", ["last", "max"])
def test_triton_bit_identical_runs(overlap):
    batch = batch_of(random_sketches(6, seed=9, max_points=20))
    a = torch.rand(batch.points.shape[0], 8, device=DEVICE)
    up = torch.randn(6, 8, 24, 24, device=DEVICE)
    runs = []
    for _ in range(2):
        geo = R.geometry(batch.points.to(DEVICE), batch.offsets.to(DEVICE), 24, 1.0, overlap, backend="triton")
        runs.append((geo, *render_and_grad(geo, a, up, "triton")))
    assert_same_geometry(runs[0][0].to("cpu"), runs[1][0])
    assert torch.equal(runs[0][1], runs[1][1]) and torch.equal(runs[0][2], runs[1][2])


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_auto_backend_on_cuda_is_triton_and_stays_on_device():
    batch = batch_of(random_sketches(4, seed=1))
    img = R.rasterize(batch.points.cuda(), batch.offsets.cuda(), torch.rand(batch.points.shape[0], 1).cuda(), 32)
    assert img.is_cuda
