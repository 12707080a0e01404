"""Section 3, ``raster``: ``r2cnn bench raster`` on the device, the memory-bandwidth floor of the fast backend's
forward+backward at C = 8, and the rasteriser's tests (less the CUDA-only ones section 2 ran)."""

from __future__ import annotations

import argparse
import json

from r2cnn.bench.gpu.context import Context, Failed
from r2cnn.bench.gpu.cuda_tests import check_tests, cuda_test_ids, run_pytest
from r2cnn.bench.gpu.plan import RASTER_TEST_FILES


def section_raster(ctx: Context) -> None:
    ids = cuda_test_ids(ctx)
    ctx.figures.clear()
    if ctx.cuda:
        ctx.require_cuda()
    # the CUDA-only tests ran in section 2; the rehearsal runs a few of the Triton tests in the interpreter (all
    # of its cases take minutes there), the real run both files whole, slow cases included
    files = RASTER_TEST_FILES[:1] if ctx.quick else RASTER_TEST_FILES
    select = ["-m", "not slow", "-k", "gradcheck"] if ctx.quick else ["-m", "slow or not slow"]
    # the bench and its floor first: the tests' run is the longer, and a stop at the cap then loses only it
    bench = _raster_bench(ctx)
    floor = _raster_floor(ctx, bench)
    print(f"\n== pytest {' '.join([*select, *files])} (without the {len(ids)} tests of section 2)", flush=True)
    outcomes = run_pytest(["-q", *select, *files, *[f"--deselect={i}" for i in ids]])
    ctx.record(tests={**outcomes.counts, "files": list(files), "failures": outcomes.failures})
    ctx.record(headline=f"tests {outcomes.counts['passed']} passed, {outcomes.counts['failed']} failed; "
                        + ("floor " + (f"{floor['times_floor']:.1f}x" if floor.get("times_floor") else "n/a")))
    check_tests(outcomes, sum(outcomes.counts[k] for k in ("passed", "failed", "skipped")))


def _raster_bench(ctx: Context) -> dict:
    from r2cnn.bench import raster

    path = ctx.work / "raster_bench.json"
    argv = ["--device", ctx.device, "--repeat", str(ctx.sizes.raster_repeat), "--json", str(path),
            *(["--batch", "8", "--size", "64"] if ctx.quick else [])]
    print(f"\n== r2cnn bench raster {' '.join(argv)}", flush=True)
    parser = argparse.ArgumentParser(prog="r2cnn bench raster")
    raster.add_arguments(parser)
    code = raster.run(parser.parse_args(argv))
    if code != 0:
        raise Failed(f"r2cnn bench raster --device {ctx.device} exited with {code}")
    bench = json.loads(path.read_text())
    ctx.record(bench={k: bench[k] for k in ("config", "times_ms", "goal_figures", "goals")})
    return bench


# bytes/s, HBM peak from the data sheets (the floor's denominator)
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12}


def _raster_floor(ctx: Context, bench: dict) -> dict:
    """Bytes the fast backend's forward+backward at C = 8 must move on the bench's sketches, as time at the GPU's
    peak bandwidth, next to the measured time."""
    import torch

    import r2cnn.raster as R
    from r2cnn.bench._paths import find_data
    from r2cnn.bench.raster import QUICKDRAW_VALID, sample_sketches
    from r2cnn.sketch import SketchBatch

    config = bench["config"]
    device = torch.device(ctx.device)
    batch = SketchBatch.from_sketches(sample_sketches(config["batch"], find_data(QUICKDRAW_VALID, quiet=True)),
                                      labels=[-1] * config["batch"])
    geo = R.geometry(batch.points.to(device), batch.offsets.to(device), config["size"])
    b, (h, w), c, e, p = geo.batch_size, geo.size, 8, geo.num_entries, geo.num_points
    entry = geo.pixel.element_size() + geo.segment.element_size() + geo.alpha.element_size()
    forward = b * h * w * c * 4 + e * entry + e * c * 4 + p * c * 4  # zero the image, read geometry, write, read a
    backward = e * entry + (p + 1) * 8 + e * c * 4 + p * c * 4  # read geometry + CSR, gather grad pixels, write grad
    fast = "triton" if ctx.cuda else "cpu"
    measured_ms = bench["times_ms"].get(f"{fast} forward+backward C=8")
    name = torch.cuda.get_device_name() if ctx.cuda else "cpu"
    peak = next((v for k, v in PEAK_BANDWIDTH.items() if k in name), None)
    floor = {"device": name, "entries": e, "points": p, "forward_mb": forward / 1e6, "backward_mb": backward / 1e6,
             "measured_us": None if measured_ms is None else measured_ms * 1e3, "peak_bytes_per_s": peak}
    if peak and measured_ms:
        floor_us = (forward + backward) / peak * 1e6
        floor.update(floor_us=floor_us, times_floor=measured_ms * 1e3 / floor_us)
    print(f"\n== bandwidth floor (B={b}, {h}x{w}, C=8, overlap=last): {json.dumps(floor)}")
    ctx.record(floor=floor)
    return floor
