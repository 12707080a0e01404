"""``r2cnn bench raster``: geometry, forward, backward of each raster backend vs. standard line drawers.

Times are medians over ``--repeat`` runs on the same 48 real QuickDraw sketches at 224x224 (the data folder's
``quickdraw/qd5/valid``, found as :mod:`r2cnn.bench._paths` says; built-in sketches when it is absent), reported next
to ``cv2.polylines`` (2 px) drawing the same sketches in the same run (docs/architecture.md "Performance"). Anchors: ``cv2.polylines`` 1 px and 2 px, PIL ``ImageDraw.line`` (width 2) and a
naive dense PyTorch rasteriser (distance of every pixel to every segment; an anchor only).

Goals (wall clock, printed with their figures): the fast backend's forward+backward at C=1 within 1.0x
``cv2.polylines`` 2 px, at C=8 within 3x its C=1 time, geometry within 0.1 ms per sketch. The timings the first two
compare are taken first, each pair taking turns repeat after repeat so that other processes' load falls on both
alike: cv2 with C=1, then C=1 with C=8. Each pair is timed apart because C=8's 150 MB (image and its gradient)
evicts C=1's 19 MB from the shared L3 cache: the row "forward+backward C=1, turns with C=8" shows C=1 timed that way,
with its caches cold (as in training, where a CNN's activations run between two renders), and the goal ratios use
the pair that ran together.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "time the differentiable rasteriser's backends against cv2.polylines, PIL and a dense PyTorch version"
QUICKDRAW_VALID = "quickdraw/qd5/valid"  # under the data folder (r2cnn.bench._paths)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, default=None, help="write every time and its ratio to cv2.polylines 2px here")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device for the raster backends")
    p.add_argument("--repeat", type=int, default=20, help="repeats per measurement (the median is reported)")
    p.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: as configured)")
    p.add_argument("--batch", type=int, default=48, help="sketches per batch")
    p.add_argument("--size", type=int, default=224, help="image side in pixels")
    p.add_argument("--data", type=Path, default=None,
                   help=f"folder of QuickDraw simplified .ndjson files (default: the data folder's {QUICKDRAW_VALID}, "
                        "else built-in sketches)")


def sample_sketches(n: int, data_dir: Path | None) -> list:
    """``n`` normalised sketches: the first lines of the QuickDraw ndjson files in ``data_dir``, taken round-robin
    over the files (so several classes appear), or built-in sketches when ``data_dir`` is None."""
    from itertools import islice

    from r2cnn.data.formats import read_sketches
    from r2cnn.data.transforms import normalize

    files = sorted(Path(data_dir).glob("*.ndjson")) if data_dir is not None else []
    if data_dir is not None and not files:
        from r2cnn.errors import R2CNNError
        raise R2CNNError(f"{data_dir}: no .ndjson files (expected a folder of QuickDraw simplified files)")
    if not files:
        from r2cnn.data.builtin import CLASSES, generate
        return [normalize(s) for s in generate(-(-n // len(CLASSES)))[:n]]
    per_file = -(-n // len(files))
    columns = [[normalize(s) for s in islice(read_sketches(f), per_file)] for f in files]
    return [s for group in zip(*columns) for s in group][:n]


def _median_ms(fn, repeat: int, sync=lambda: None) -> tuple[float, float]:
    """Median wall-clock and median process CPU time (all threads) of ``fn``, in ms. On a shared machine the CPU
    time is the steadier figure: it does not count the time other processes hold the cores."""
    return _interleaved_ms({"": fn}, repeat, sync)[""]


def _interleaved_ms(fns: dict, repeat: int, sync=lambda: None) -> dict[str, tuple[float, float]]:
    """:func:`_median_ms` of several callables taking turns, repeat after repeat, so that load from other processes
    falls on each alike (the goals' figures are ratios between them). Each turn runs its callable once untimed
    first: timed right after another's, a callable would find its data flushed from the caches (C=8 writes 77 MB),
    which a run of repeats of one callable does not."""
    import statistics
    import time

    for fn in fns.values():  # warm-up: compilation, allocator
        fn()
    sync()
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            if len(fns) > 1:
                fn()
                sync()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            wall[k].append((time.perf_counter() - t0) * 1e3)
            cpu[k].append((time.process_time() - c0) * 1e3)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def _anchors(batch, size: int) -> dict:
    """Callables drawing every sketch of ``batch`` with cv2 / PIL (pixel coordinates prepared beforehand, as the
    raster backends get their geometry beforehand)."""
    try:
        import cv2
    except ImportError:
        from r2cnn.errors import R2CNNError
        raise R2CNNError("bench raster draws its anchor with OpenCV, which is not installed: "
                         "pip install 'sketch-r2cnn[bench]'") from None
    import numpy as np
    from PIL import Image, ImageDraw

    from r2cnn.raster import to_pixel
    from r2cnn.sketch import Sketch

    shift = 4
    strokes = [[to_pixel(s, size) for s in Sketch(batch.sketch_points(b).numpy()).strokes()]
               for b in range(batch.batch_size)]
    cv2_strokes = [[np.round((s - 0.5) * (1 << shift)).astype(np.int32) for s in sk] for sk in strokes]
    pil_strokes = [[[tuple(p) for p in (s - 0.5).tolist()] for s in sk] for sk in strokes]

    def cv2_draw(thickness):
        def draw():
            for sk in cv2_strokes:
                img = np.zeros((size, size), np.uint8)
                cv2.polylines(img, sk, False, 255, thickness, cv2.LINE_8, shift)
        return draw

    def pil_draw():
        for sk in pil_strokes:
            img = Image.new("L", (size, size))
            draw = ImageDraw.Draw(img)
            for s in sk:
                draw.line(s, fill=255, width=2)

    return {"cv2.polylines 1px": cv2_draw(1), "cv2.polylines 2px": cv2_draw(2), "PIL ImageDraw.line 2px": pil_draw}


def _dense_torch(batch, size: int, device, eps: float = 1.0):
    """Naive dense rasteriser (anchor only): distance from every pixel to every segment of a sketch, the latest
    covering segment wins, eq. (1) for C = 1; forward and backward through autograd."""
    import torch

    from r2cnn.raster.geometry import segment_ends

    u, v, end = segment_ends(batch.points, batch.offsets, size)
    uv = torch.stack([u, v], 1).float().to(device)
    end = end.to(device)
    grid = torch.arange(size, device=device) + 0.5
    centres = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2)
    offsets = batch.offsets.tolist()

    def draw(intensities):
        images = []
        for b in range(batch.batch_size):
            idx = torch.arange(offsets[b], offsets[b + 1], device=device)
            idx = idx[end[idx] >= 0]
            a, bb = uv[idx], uv[end[idx]]
            d = bb - a
            l2 = (d * d).sum(1).clamp_min(1e-12)
            rel = centres[None] - a[:, None]
            t = ((rel * d[:, None]).sum(-1) / l2[:, None]).clamp(0, 1)  # (S, H*W)
            dist2 = ((rel - t[..., None] * d[:, None]) ** 2).sum(-1)
            covered = dist2 <= eps * eps
            rank = torch.where(covered, torch.arange(1, len(idx) + 1, device=device)[:, None], 0)
            owner = rank.argmax(0)
            val = (1 - t) * intensities[idx][:, None] + t * intensities[end[idx]][:, None]
            pixel = val.gather(0, owner[None])[0] * covered.any(0)
            images.append(pixel.view(size, size))
        return torch.stack(images)[:, None]

    return draw


def run(args) -> int:
    import os

    import numba
    import torch

    import r2cnn.raster as R
    from r2cnn.errors import R2CNNError
    from r2cnn.sketch import SketchBatch

    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        print("note: MALLOC_MMAP_THRESHOLD_ is not set; CPU timings include returning memory to the OS "
              "(docs/architecture.md \"Performance\")")
    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise R2CNNError("bench raster: --device cuda but no CUDA device is available")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    from r2cnn.bench._paths import find_data

    data = args.data if args.data is not None else find_data(QUICKDRAW_VALID)
    sketches = sample_sketches(args.batch, data)
    source = f"QuickDraw {data}" if data is not None else "built-in sketches"
    batch = SketchBatch.from_sketches(sketches, labels=[-1] * len(sketches))  # rasterising needs no labels
    size, repeat = args.size, args.repeat
    times: dict[str, tuple[float, float]] = {}

    points, offsets = batch.points.to(device), batch.offsets.to(device)
    backends = ["reference", "triton" if device.type == "cuda" else "cpu"]
    fast = backends[-1]
    anchors = _anchors(batch, size)
    # The goals' figures first, taking turns: after the dense anchor's gigabytes the allocator hands out colder
    # memory (the CPU forward+backward at C=1 measured 0.83 ms before it and 1.08 ms after, cv2 0.70 ms both times).
    fast_geo = R.geometry(points, offsets, size, backend=fast)
    fwd_bwd = {}
    for c in (1, 8):
        a = torch.rand(points.shape[0], c, device=device, requires_grad=True)
        up = torch.ones(batch.batch_size, c, size, size, device=device).contiguous(memory_format=torch.channels_last)
        fwd_bwd[c] = lambda a=a, up=up: torch.autograd.grad(R.render(fast_geo, a, backend=fast), a, up)
    c1, c8, c1_cold = (f"{fast} forward+backward C={c}" for c in ("1", "8", "1, turns with C=8"))
    goal_times = _interleaved_ms({"cv2.polylines 2px": anchors["cv2.polylines 2px"], c1: fwd_bwd[1]}, repeat, sync)
    with_c8 = _interleaved_ms({c1_cold: fwd_bwd[1], c8: fwd_bwd[8]}, repeat, sync)
    goal_times.update(with_c8)
    for name, fn in anchors.items():
        times[name] = _median_ms(fn, repeat)
    dense = _dense_torch(batch, size, device)
    a_dense = torch.rand(batch.points.shape[0], device=device, requires_grad=True)
    few = max(1, repeat // 20)
    times["dense torch forward C=1"] = _median_ms(lambda: dense(a_dense.detach()), few, sync)
    times["dense torch forward+backward C=1"] = _median_ms(lambda: dense(a_dense).sum().backward(), few, sync)

    for backend in backends:
        n = max(1, repeat // 10) if backend == "reference" else repeat
        times[f"{backend} geometry"] = _median_ms(lambda: R.geometry(points, offsets, size, backend=backend), n, sync)
        geo = R.geometry(points, offsets, size, backend=backend)
        for c in (1, 8):
            a = torch.rand(points.shape[0], c, device=device, requires_grad=True)
            up = torch.ones(batch.batch_size, c, size, size, device=device).contiguous(memory_format=torch.channels_last)
            img = R.render(geo, a, backend=backend)
            times[f"{backend} forward C={c}"] = _median_ms(lambda: R.render(geo, a.detach(), backend=backend), n, sync)
            times[f"{backend} backward C={c}"] = _median_ms(
                lambda: torch.autograd.grad(img, a, up, retain_graph=True), n, sync)
            times[f"{backend} forward+backward C={c}"] = _median_ms(
                lambda: torch.autograd.grad(R.render(geo, a, backend=backend), a, up), n, sync)
    times.update(goal_times)

    wall = {k: t[0] for k, t in times.items()}
    cpu = {k: t[1] for k, t in times.items()}
    ratios = {k: t / wall["cv2.polylines 2px"] for k, t in wall.items()}
    cpu_ratios = {k: t / cpu["cv2.polylines 2px"] for k, t in cpu.items()}
    print(f"raster bench: {batch.batch_size} sketches ({source}), {size}x{size}, eps=1, overlap=last, device "
          f"{device}{' ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}, median of {repeat} "
          f"(reference: {max(1, repeat // 10)}, dense: {few}); torch threads {torch.get_num_threads()}, numba threads "
          f"{numba.get_num_threads()}")
    print(f"{'what':42s} {'wall ms':>10s} {'x cv2 2px':>10s} {'cpu ms':>10s} {'x cv2 2px':>10s}")
    for k in times:
        print(f"{k:42s} {wall[k]:10.3f} {ratios[k]:10.2f} {cpu[k]:10.3f} {cpu_ratios[k]:10.2f}")
    # what -> (measured figure, its upper bound), each ratio between two runs that took turns
    figures = {
        f"{fast} forward+backward C=1 vs cv2.polylines 2px": (ratios[f"{fast} forward+backward C=1"], 1.0),
        f"{fast} forward+backward C=8 vs C=1": (wall[c8] / wall[c1_cold], 3.0),
        f"{fast} geometry ms per sketch": (wall[f"{fast} geometry"] / batch.batch_size, 0.1),
    }
    goals = {f"{what} <= {bound:g}": value <= bound for what, (value, bound) in figures.items()}
    for (what, (value, bound)), ok in zip(figures.items(), goals.values()):
        unit = "" if what.endswith("per sketch") else "x"
        print(f"goal {'met' if ok else 'MISSED'} (wall clock): {what} = {value:.2f}{unit} (goal <= {bound:g}{unit})")
    if args.json:
        info = {"batch": batch.batch_size, "size": size, "eps": 1.0, "overlap": "last", "device": str(device),
                "repeat": repeat, "source": source, "torch_threads": torch.get_num_threads(),
                "numba_threads": numba.get_num_threads()}
        if device.type == "cuda":
            info["device_name"] = torch.cuda.get_device_name()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": info, "times_ms": wall, "ratio_to_cv2_polylines_2px": ratios,
                                         "cpu_times_ms": cpu, "cpu_ratio_to_cv2_polylines_2px": cpu_ratios,
                                         "goal_figures": {k: v for k, (v, _) in figures.items()},
                                         "goals": goals}, indent=2))
    return 0
