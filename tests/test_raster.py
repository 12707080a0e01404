"""Neural Line Rasterisation (r2cnn.raster): contract, every backend against the reference, gradients, edge cases,
determinism and a sanity check against cv2.polylines."""

import itertools
import pickle

import numpy as np
import pytest
import torch

import r2cnn.raster as R
from r2cnn.errors import R2CNNError
from r2cnn.raster.geometry import segment_ends
from r2cnn.sketch import Sketch, SketchBatch

SIZES, EPSILONS, CHANNELS, OVERLAPS = (56, 112, 224, 256), (0.5, 1.0, 2.0), (1, 8), ("last", "max")
# Default run: every size, eps, C and overlap appears at least once; the full cross product is marked slow.
FAST_CASES = [(56, 0.5, 8, "last"), (112, 1.0, 1, "max"), (224, 1.0, 1, "last"), (224, 1.0, 8, "max"),
              (256, 2.0, 8, "last"), (56, 2.0, 1, "max")]
SLOW_CASES = [c for c in itertools.product(SIZES, EPSILONS, CHANNELS, OVERLAPS) if c not in FAST_CASES]
FAST_BACKENDS = ["cpu"]


def batch_of(sketches) -> SketchBatch:
    sketches = [s if isinstance(s, Sketch) else Sketch(s) for s in sketches]
    return SketchBatch.from_sketches(sketches, labels=[-1] * len(sketches))  # rasterising needs no labels


def random_sketches(n: int, seed: int, max_points: int = 40) -> list[Sketch]:
    """Random walks with dots, repeated points, zero-length segments, an empty sketch and points off the canvas."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        m = int(rng.integers(0, max_points)) if k else 0  # the first sketch is empty
        xy = np.cumsum(rng.normal(0, 0.15, (m, 2)), 0) + rng.uniform(-0.8, 0.8, 2)
        xy = np.clip(xy, -1.3, 1.3)
        if m > 3:
            xy[2] = xy[1]  # a repeated point: zero-length segment
        pen = (rng.random(m) < 0.2).astype(np.float32)
        if m > 6:
            pen[4:6] = 1  # point 5 is a one-point stroke: a dot
        out.append(Sketch(np.column_stack([xy, pen]).astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def real_batch(shared_data) -> SketchBatch:
    from r2cnn.bench.raster import sample_sketches
    return batch_of(sample_sketches(48, shared_data / "quickdraw" / "qd5" / "valid"))


def assert_same_geometry(ref: R.Geometry, got: R.Geometry) -> None:
    got = got.to("cpu")
    assert (ref.size, ref.eps, ref.overlap) == (got.size, got.eps, got.overlap)
    assert torch.equal(ref.pixel.long(), got.pixel.long()), "stroke pixels differ"
    assert torch.equal(ref.segment.long(), got.segment.long()), "owners differ"
    assert torch.equal(ref.segment_ptr, got.segment_ptr)
    torch.testing.assert_close(got.alpha, ref.alpha, atol=1e-6, rtol=0)
    if ref.overlap == "max":
        assert torch.equal(ref.pixel_order.long(), got.pixel_order.long())


def render_and_grad(geo, intensities, upstream, backend):
    a = intensities.clone().requires_grad_(True)
    img = R.render(geo, a, backend=backend)
    (grad,) = torch.autograd.grad(img, a, upstream)
    return img.detach(), grad


def check_backend(batch, size, eps, channels, overlap, backend, device="cpu", seed=0):
    """``backend`` on ``device`` equals the reference: same pixels and owners, values and gradients within 1e-6."""
    ref = R.geometry(batch.points, batch.offsets, size, eps, overlap, backend="reference")
    got = R.geometry(batch.points.to(device), batch.offsets.to(device), size, eps, overlap, backend=backend)
    assert_same_geometry(ref, got)
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(batch.points.shape[0], channels, generator=g)
    upstream = torch.randn(batch.batch_size, channels, size, size, generator=g)
    img_ref, _ = render_and_grad(ref, a, upstream, "reference")
    img, _ = render_and_grad(got, a.to(device), upstream.to(device), backend)
    assert img.shape == (batch.batch_size, channels, size, size)
    torch.testing.assert_close(img.cpu(), img_ref, atol=1e-6, rtol=0)
    # gradients are sums of up to thousands of terms, each backend in its own order: compare them in float64
    _, grad_ref = render_and_grad(ref, a.double(), upstream.double(), "reference")
    _, grad = render_and_grad(got, a.double().to(device), upstream.double().to(device), backend)
    torch.testing.assert_close(grad.cpu(), grad_ref, atol=1e-10, rtol=1e-10)
    return ref


# ---------------------------------------------------------------------------------------------------------------
# the contract

def test_to_pixel_convention():
    xy = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    assert R.to_pixel(xy, (10, 20)).tolist() == [[0, 0], [20, 10], [10, 5]]
    assert R.to_pixel(xy.numpy(), 8).tolist() == [[0, 0], [8, 8], [4, 4]]


def test_segments_follow_strokes_and_never_join_sketches():
    pts = torch.tensor([[0, 0, 0], [0.1, 0, 1], [0.2, 0, 1], [0.3, 0, 0],   # sketch 0: stroke, dot, unterminated
                        [0.4, 0, 0], [0.5, 0, 1]])                           # sketch 1 starts at index 4
    _, _, end = segment_ends(pts, torch.tensor([0, 4, 4, 6]), 8)
    assert end.tolist() == [1, -1, 2, 3, 5, -1]


def test_horizontal_segment_pixels_and_alpha():
    # u from 2.5 to 6.5 on row 3 (v = 3.5) of a 16x16 image (exact in float32); eps = 1 reaches rows 2..4 and
    # one pixel beyond each end on row 3 (distance exactly eps counts)
    pts = torch.tensor([[2.5 / 8 - 1, 3.5 / 8 - 1, 0], [6.5 / 8 - 1, 3.5 / 8 - 1, 1]])
    geo = R.geometry(pts, torch.tensor([0, 2]), 16, eps=1.0, backend="reference")
    covered = torch.zeros(16 * 16, dtype=torch.bool).index_fill_(0, geo.pixel.long(), True).view(16, 16)
    expect = torch.zeros(16, 16, dtype=torch.bool)
    expect[2:5, 2:7] = True
    expect[3, 1] = expect[3, 7] = True
    assert torch.equal(covered, expect)
    img = R.render(geo, torch.tensor([[0.0], [4.0]]))[0, 0]
    assert img[3, 1:8].tolist() == [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 4.0]  # eq. (1), alpha clamped beyond the ends


@pytest.mark.parametrize("backend", ["reference", *FAST_BACKENDS])
def test_dot_covers_pixels_within_eps(backend):
    pts = torch.tensor([[0.0625, -0.0625, 1.0]])  # u = 8.5, v = 7.5 on a 16x16 image, exact in float32
    img = R.rasterize(pts, torch.tensor([0, 1]), torch.tensor([[2.0]]), 16, eps=2.0, backend=backend)[0, 0]
    rows, cols = torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="ij")
    inside = (cols - 8.5) ** 2 + (rows - 7.5) ** 2 <= 4  # includes the 4 pixels at distance exactly eps
    assert torch.equal(img, torch.where(inside, 2.0, 0.0))


@pytest.mark.parametrize("backend", ["reference", *FAST_BACKENDS])
def test_overlap_last_and_max(backend):
    # two crossing strokes; the second is later in drawing order
    pts = torch.tensor([[-0.5, 0, 0], [0.5, 0, 1], [0, -0.5, 0], [0, 0.5, 1]])
    a = torch.tensor([[3.0], [3.0], [1.0], [1.0]])
    last = R.rasterize(pts, torch.tensor([0, 4]), a, 16, backend=backend)[0, 0]
    assert last[8, 8] == 1.0 and last[8, 5] == 3.0  # crossing pixel: the later stroke wins
    big = R.rasterize(pts, torch.tensor([0, 4]), a, 16, overlap="max", backend=backend)[0, 0]
    assert big[8, 8] == 3.0 and big[5, 8] == 1.0


def test_image_layout_and_dtype():
    batch = batch_of(random_sketches(3, seed=1))
    a = torch.rand(batch.points.shape[0], 8, dtype=torch.float64)
    img = R.rasterize(batch.points, batch.offsets, a, (24, 40))
    assert img.shape == (3, 8, 24, 40) and img.dtype == torch.float64
    assert img.is_contiguous(memory_format=torch.channels_last)
    half = a.to(torch.bfloat16).requires_grad_(True)
    img16 = R.rasterize(batch.points, batch.offsets, half, (24, 40))
    assert img16.dtype == torch.bfloat16
    img16.sum().backward()
    assert half.grad.dtype == torch.bfloat16 and half.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------------
# every backend equals the reference

@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("size,eps,channels,overlap", FAST_CASES)
def test_backend_matches_reference_random(backend, size, eps, channels, overlap):
    check_backend(batch_of(random_sketches(12, seed=size + channels)), size, eps, channels, overlap, backend)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("size,eps,channels,overlap", FAST_CASES[:4])
def test_backend_matches_reference_real(real_batch, backend, size, eps, channels, overlap):
    check_backend(real_batch, size, eps, channels, overlap, backend)


@pytest.mark.slow
@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("size,eps,channels,overlap", SLOW_CASES)
def test_backend_matches_reference_all(real_batch, backend, size, eps, channels, overlap):
    check_backend(real_batch, size, eps, channels, overlap, backend)
    check_backend(batch_of(random_sketches(12, seed=size)), size, eps, channels, overlap, backend)


# ---------------------------------------------------------------------------------------------------------------
# gradients (eq. 3)

@pytest.mark.parametrize("backend", ["reference", *FAST_BACKENDS])
@pytest.mark.parametrize("overlap", OVERLAPS)
def test_gradcheck(backend, overlap):
    batch = batch_of(random_sketches(4, seed=3, max_points=12))
    geo = R.geometry(batch.points, batch.offsets, 12, 1.5, overlap, backend=backend)
    a = torch.rand(batch.points.shape[0], 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: R.render(geo, x, backend=backend), (a,))


def test_gradient_is_eq3():
    """For a single segment, dL/da_i = sum (1 - alpha_k) dI_k and dL/da_{i+1} = sum alpha_k dI_k."""
    pts = torch.tensor([[-0.5, -0.2, 0], [0.4, 0.3, 1]])
    geo = R.geometry(pts, torch.tensor([0, 2]), 32, backend="reference")
    a = torch.rand(2, 1, requires_grad=True)
    up = torch.rand(1, 1, 32, 32)
    R.render(geo, a).backward(up)
    g = up.flatten()[geo.pixel.long()]
    expect = torch.stack([(g * (1 - geo.alpha)).sum(), (g * geo.alpha).sum()])
    torch.testing.assert_close(a.grad[:, 0], expect)


# ---------------------------------------------------------------------------------------------------------------
# edge cases

@pytest.mark.parametrize("backend", ["reference", *FAST_BACKENDS])
def test_zero_length_segments_and_repeats_draw_like_a_dot(backend):
    dot = torch.tensor([[0.1, 0.2, 1.0]])
    repeated = torch.tensor([[0.1, 0.2, 0.0], [0.1, 0.2, 0.0], [0.1, 0.2, 1.0]])
    images = [R.rasterize(p, torch.tensor([0, len(p)]), torch.ones(len(p), 1), 32, backend=backend)
              for p in (dot, repeated)]
    assert images[0].sum() > 0 and torch.equal(images[0], images[1])


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_points_outside_the_canvas_clip(backend):
    pts = torch.tensor([[-3.0, 0.0, 0], [3.0, 0.0, 1], [5.0, 5.0, 0], [6.0, 5.0, 1]])  # crossing; fully outside
    check_backend(batch_of([pts.numpy()]), 32, 1.0, 1, "last", backend)
    img = R.rasterize(pts, torch.tensor([0, 4]), torch.ones(4, 1), 32, backend=backend)[0, 0]
    assert torch.equal((img > 0).sum(1), torch.tensor([0] * 15 + [32, 32] + [0] * 15))  # rows 15, 16 (v=16 +- 1)


@pytest.mark.parametrize("backend", ["reference", *FAST_BACKENDS])
def test_empty_batch_and_empty_sketches(backend):
    img = R.rasterize(torch.zeros(0, 3), torch.tensor([0, 0, 0]), torch.zeros(0, 3), 16, backend=backend)
    assert img.shape == (2, 3, 16, 16) and not img.any()
    geo = R.geometry(torch.zeros(0, 3), torch.tensor([0]), 16, backend=backend)
    assert R.render(geo, torch.zeros(0, 1), backend=backend).shape == (0, 1, 16, 16)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_long_sketch(backend):
    rng = np.random.default_rng(0)
    xy = np.clip(np.cumsum(rng.normal(0, 0.02, (10_000, 2)), 0), -1, 1)
    pen = (rng.random(10_000) < 0.01).astype(np.float32)
    check_backend(batch_of([np.column_stack([xy, pen]).astype(np.float32)]), 112, 1.0, 1, "last", backend)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_large_batch_equals_sketch_by_sketch(backend):
    sketches = random_sketches(3000, seed=5, max_points=30)
    batch = batch_of(sketches)
    a = torch.rand(batch.points.shape[0], 1)
    img = R.rasterize(batch.points, batch.offsets, a, 32, backend=backend)
    for b in range(0, 3000, 373):
        lo, hi = int(batch.offsets[b]), int(batch.offsets[b + 1])
        alone = R.rasterize(batch.points[lo:hi], torch.tensor([0, hi - lo]), a[lo:hi], 32, backend=backend)
        assert torch.equal(img[b:b + 1], alone)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_points_raise_clear_error(bad):
    pts = torch.zeros(5, 3)
    pts[3, 1] = bad
    with pytest.raises(R2CNNError, match=r"point 3 \(sketch 1 of the batch\) has a NaN or infinite coordinate"):
        R.geometry(pts, torch.tensor([0, 2, 5]), 16)


@pytest.mark.parametrize("call,match", [
    (lambda: R.geometry(torch.zeros(4, 2), torch.tensor([0, 4]), 16), "points must be"),
    (lambda: R.geometry(torch.zeros(4, 3), torch.tensor([0, 3]), 16), "offsets must rise"),
    (lambda: R.geometry(torch.zeros(4, 3), torch.tensor([0, 4]), 0), "size"),
    (lambda: R.geometry(torch.zeros(4, 3), torch.tensor([0, 4]), 16, eps=0), "eps"),
    (lambda: R.geometry(torch.zeros(4, 3), torch.tensor([0, 4]), 16, overlap="sum"), "overlap"),
    (lambda: R.geometry(torch.zeros(4, 3), torch.tensor([0, 4]), 16, backend="gl"), "unknown backend"),
    (lambda: R.render(R.geometry(torch.zeros(4, 3), torch.tensor([0, 4]), 16), torch.zeros(3, 1)), "intensities"),
])
def test_bad_arguments_raise(call, match):
    with pytest.raises(R2CNNError, match=match):
        call()


def test_geometry_is_small_picklable_and_movable():
    batch = batch_of(random_sketches(8, seed=2))
    geo = R.geometry(batch.points, batch.offsets, 64, overlap="max")
    back = pickle.loads(pickle.dumps(geo))
    assert_same_geometry(geo, back)
    assert_same_geometry(geo, geo.to("cpu"))
    assert geo.pixel.dtype == geo.segment.dtype == torch.int32
    assert geo.nbytes() <= 16 * geo.num_entries + 8 * (batch.points.shape[0] + 1) + 8 * (batch.batch_size + 1)
    if torch.cuda.is_available():
        assert geo.pin_memory().pixel.is_pinned()


# ---------------------------------------------------------------------------------------------------------------
# determinism

@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("overlap", OVERLAPS)
def test_bit_identical_on_any_number_of_threads(backend, overlap, monkeypatch):
    import numba

    from r2cnn.raster import cpu
    monkeypatch.setattr(cpu, "PARALLEL_MIN_POINTS", 0)  # use the multi-threaded drivers even for small jobs
    monkeypatch.setattr(cpu, "PARALLEL_MIN_ENTRIES", 0)
    monkeypatch.setattr(cpu, "PARALLEL_MIN_BACKWARD", 0)
    batch = batch_of(random_sketches(64, seed=7, max_points=60))
    a = torch.rand(batch.points.shape[0], 8, generator=torch.Generator().manual_seed(0))
    up = torch.randn(64, 8, 64, 64, generator=torch.Generator().manual_seed(1))
    results = []
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    try:
        for threads in (1, 2, 2, 1):
            torch.set_num_threads(threads)
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            geo = R.geometry(batch.points, batch.offsets, 64, 1.0, overlap, backend=backend)
            results.append((geo, *render_and_grad(geo, a, up, backend)))
    finally:
        torch.set_num_threads(torch_threads)
        numba.set_num_threads(numba_threads)
    for geo, img, grad in results[1:]:
        assert_same_geometry(results[0][0], geo)
        assert torch.equal(img, results[0][1]) and torch.equal(grad, results[0][2])


def _entries_in_worker(batch):
    return R.geometry(batch.points, batch.offsets, 64).num_entries


def test_geometry_in_forked_workers_after_parallel_use(monkeypatch):
    """Data-loader workers compute geometry; numba's OpenMP pool aborts a forked child that uses it after its parent
    did, so workers must take the single-threaded path."""
    import multiprocessing

    from r2cnn.raster import cpu
    monkeypatch.setattr(cpu, "PARALLEL_MIN_POINTS", 0)
    monkeypatch.setattr(cpu, "PARALLEL_MIN_ENTRIES", 0)
    monkeypatch.setattr(cpu, "PARALLEL_MIN_BACKWARD", 0)
    batch = batch_of(random_sketches(16, seed=8))
    expect = _entries_in_worker(batch)  # starts the thread pool here, in the parent
    R.render(R.geometry(batch.points, batch.offsets, 64), torch.rand(batch.points.shape[0], 8))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(_entries_in_worker, [batch] * 2) == [expect] * 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_reference_on_cuda_equals_reference_on_cpu():
    batch = batch_of(random_sketches(6, seed=11))
    check_backend(batch, 32, 1.0, 2, "last", "reference", "cuda")


# ---------------------------------------------------------------------------------------------------------------
# sanity against a standard line drawer

def cv2_masks(batch: SketchBatch, size: int, thickness: int) -> np.ndarray:
    """``cv2.polylines`` of each stroke; cv2 puts pixel centres on integers, hence the -0.5 shift (4 fraction bits)."""
    import cv2

    shift = 4
    masks = np.zeros((batch.batch_size, size, size), np.uint8)
    for b in range(batch.batch_size):
        sketch = Sketch(batch.sketch_points(b).numpy())
        strokes = [np.round((R.to_pixel(s, size) - 0.5) * (1 << shift)).astype(np.int32) for s in sketch.strokes()]
        cv2.polylines(masks[b], strokes, False, 1, thickness, cv2.LINE_8, shift)
    return masks.astype(bool)


def test_stroke_mask_matches_cv2_polylines(real_batch, record_property):
    """cv2's "2 px" lines are about 3 px wide (on a 45-degree line it fills pixels 1.41 px from the centre line),
    while eps = 1 keeps pixel centres within 1 px (a 2 px wide line): at eps = 1 nearly all our stroke pixels lie
    inside cv2's mask (IoU ~0.68, recorded), and at eps = 1.5 the two masks agree with IoU >= 0.9."""
    theirs = cv2_masks(real_batch, 224, thickness=2)
    ones = torch.ones(real_batch.points.shape[0], 1)
    ious = {}
    for eps in (1.0, 1.5):
        ours = R.rasterize(real_batch.points, real_batch.offsets, ones, 224, eps=eps)[:, 0].numpy() > 0
        ious[eps] = (ours & theirs).sum() / (ours | theirs).sum()
        record_property(f"iou_cv2_polylines_2px_eps{eps}", float(ious[eps]))
        print(f"IoU with cv2.polylines (2 px) on {real_batch.batch_size} QuickDraw sketches, eps={eps}: "
              f"{ious[eps]:.4f}; share of our pixels inside cv2's: {(ours & theirs).sum() / ours.sum():.4f}")
        if eps == 1.0:
            assert (ours & theirs).sum() >= 0.995 * ours.sum()
    assert ious[1.5] >= 0.9


def test_stroke_width_is_two_eps(real_batch):
    """Away from the ends, a stroke is 2 * eps wide: area ~ 2 eps * length (+ the round caps, pi eps^2 each)."""
    uv = R.to_pixel(real_batch.points, 224)
    _, _, end = segment_ends(real_batch.points, real_batch.offsets, 224)
    seg = end > torch.arange(len(end))
    length = (uv[end[seg]] - uv[seg]).norm(dim=1).sum().item()
    for eps in (1.0, 2.0):
        area = R.geometry(real_batch.points, real_batch.offsets, 224, eps).num_entries
        assert 2 * eps * length * 0.85 < area < 2 * eps * length * 1.05


@pytest.mark.parametrize("overlap", ["last", "max"])
def test_cpu_render_reuses_a_dropped_image_and_never_one_in_use(overlap, monkeypatch):
    """The CPU forward keeps its last image per shape and, once the caller has dropped it, clears only its stroke
    pixels for the next render: every render still equals a fresh one, whether the previous image was dropped, is
    still held, or was changed in place."""
    import r2cnn.raster.cpu as K

    g = torch.Generator().manual_seed(5)
    monkeypatch.setattr(K, "HOT_IMAGE_BYTES", 0)  # every image is big enough to be reused (kernels read it at call)

    def batch(n_points):
        pts = torch.rand(n_points, 3, generator=g) * 2 - 1
        pts[:, 2] = (torch.rand(n_points, generator=g) < 0.2).float()
        return pts, torch.tensor([0, n_points // 3, n_points])

    def fresh(pts, offs, a):
        K.clear_pool()
        return R.rasterize(pts, offs, a, 40, overlap=overlap, backend="cpu").clone()

    sketches = [batch(n) for n in (30, 80, 12, 50)]
    intens = [torch.rand(len(p), 2, generator=g) for p, _ in sketches]
    want = [fresh(p, o, a) for (p, o), a in zip(sketches, intens)]
    K.clear_pool()
    pointers = set()
    for (p, o), a, w in zip(sketches, intens, want):  # each dropped before the next: reused every time
        img = R.rasterize(p, o, a, 40, overlap=overlap, backend="cpu")
        assert torch.equal(img, w)
        pointers.add(img.untyped_storage().data_ptr())
        del img
    assert len(pointers) == 1  # one buffer served all four
    held = R.rasterize(*sketches[0], intens[0], 40, overlap=overlap, backend="cpu")
    other = R.rasterize(*sketches[1], intens[1], 40, overlap=overlap, backend="cpu")
    assert torch.equal(held, want[0]) and torch.equal(other, want[1])  # the held image was not reused
    assert held.untyped_storage().data_ptr() != other.untyped_storage().data_ptr()
    del other
    changed = R.rasterize(*sketches[2], intens[2], 40, overlap=overlap, backend="cpu")
    changed.add_(1.0)  # every pixel now non-zero: reusing it would need a full clear
    del changed
    again = R.rasterize(*sketches[3], intens[3], 40, overlap=overlap, backend="cpu")
    assert torch.equal(again, want[3])
