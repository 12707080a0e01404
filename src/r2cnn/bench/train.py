"""``r2cnn bench train``: training-step speed of Sketch-R2CNN against its CNN-only twin, and the loader's speed.

The anchor (DESIGN.md "Performance rules") is the CNN-only model with the same backbone, canvas and rasteriser
(``r2cnn.presets.cnn_twin``), timed in the same run on the same batches; the figure of merit is the ratio of
step times (goal on CPU: R2CNN <= 1.3x CNN-only). Steps of the two models alternate, and medians are reported,
so that load from other processes affects both alike. The data loader (the preset's transform, raster geometry
in its workers) is timed on its own over the same number of batches, worker start-up included, as sketches/s
next to the step's: the loader keeps up when its sketches/s exceed the R2CNN step's.
"""

from __future__ import annotations

import argparse
import time

HELP = "sketches/s of R2CNN vs its CNN-only twin (same backbone) per training step, and of the data loader"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="cpu-r2cnn", help="an R2CNN preset (default cpu-r2cnn)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per model (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model first (default 3)")
    p.add_argument("--batch-size", type=int, help="default: the preset's")
    p.add_argument("--workers", type=int, help="data-loader workers (default: the preset's)")
    p.add_argument("--data", help="a prepared store (default: built-in sketches in a temporary store)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def _step_fn(model, optimizer, device, dtype):
    import torch
    import torch.nn.functional as F

    from r2cnn.engine.precision import autocast

    def step(batch) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast(device, dtype):
            loss = F.cross_entropy(model(batch).float(), batch.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def run(args) -> int:
    import json
    import math
    import statistics
    import tempfile
    from pathlib import Path

    import torch

    from r2cnn.data.loader import make_loader
    from r2cnn.data.store import SketchStore, prepare
    from r2cnn.engine.factory import build_model, build_transform
    from r2cnn.engine.report import table
    from r2cnn.engine.precision import amp_dtype
    from r2cnn.engine.train import build_optimizer
    from r2cnn.errors import R2CNNError
    from r2cnn.presets import cnn_twin, get_preset

    twin = cnn_twin(args.preset)
    if twin is None:
        raise R2CNNError(f"{args.preset!r} has no CNN-only twin preset to compare with (use an r2cnn preset, "
                         f"e.g. cpu-r2cnn or qd-r2cnn-resnet50)")
    from r2cnn.engine.precision import flush_denormals

    flush_denormals()  # as training does: both models are timed as they would train
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    configs = {"R2CNN": get_preset(args.preset), "CNN-only": get_preset(twin)}
    names = {"R2CNN": args.preset, "CNN-only": twin}
    batch_size = args.batch_size or configs["R2CNN"]["batch_size"]
    workers = configs["R2CNN"]["num_workers"] if args.workers is None else args.workers
    n_batches = args.steps + args.warmup

    with tempfile.TemporaryDirectory(prefix="r2cnn-bench-") as tmp:
        if args.data:
            store = SketchStore(args.data)
        else:
            from r2cnn.data.builtin import CLASSES
            per_class = math.ceil(n_batches * batch_size / len(CLASSES)) + 1
            store = prepare([], Path(tmp) / "store", builtin=per_class, split_sizes=(per_class, 0, 0),
                            log=lambda *a: None, progress=False)
        torch.manual_seed(0)
        models = {k: build_model(c, len(store.classes)).to(device) for k, c in configs.items()}
        r2cnn = models["R2CNN"]
        if (r2cnn.raster_size, r2cnn.raster_eps) != (models["CNN-only"].raster_size, models["CNN-only"].raster_eps):
            raise R2CNNError(f"{args.preset} and {twin} rasterise differently; not a like-for-like comparison")
        loader = make_loader(store, "train", batch_size=batch_size, transform=build_transform(configs["R2CNN"], True),
                             shuffle=True, drop_last=True, num_workers=workers, raster_size=r2cnn.raster_size,
                             raster_eps=r2cnn.raster_eps)
        if len(loader) < n_batches:
            raise R2CNNError(f"the store has {len(loader)} batches of {batch_size}; the bench needs {n_batches}")
        # Timed from the iterator's creation: includes the workers' start-up, so it errs on the slow side
        # (prefetching would flatter a timer started after the first batch).
        start = time.perf_counter()
        batches = [batch for _, batch in zip(range(n_batches), loader)]
        loader_s = (time.perf_counter() - start) / n_batches
        batches = [b.to(device) for b in batches]

        steps = {k: _step_fn(m.train(), build_optimizer(configs[k], m.parameters()), device,
                             amp_dtype(configs[k], device)) for k, m in models.items()}
        times = {k: [] for k in models}
        for i, batch in enumerate(batches):
            for k, step in steps.items():  # alternate, so background load hits both models alike
                t = step(batch)
                if i >= args.warmup:
                    times[k].append(t)

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["R2CNN"] / med["CNN-only"]
    results = {
        "preset": args.preset, "twin": twin, "device": str(device), "batch_size": batch_size, "steps": args.steps,
        "threads": torch.get_num_threads(), "raster_size": r2cnn.raster_size,
        "models": {k: {"preset": names[k], "model": configs[k]["model"],
                       "parameters": sum(p.numel() for p in models[k].parameters()),
                       "step_ms_median": 1000 * med[k], "sketches_per_s": batch_size / med[k]} for k in models},
        "r2cnn_over_cnn_step_time": ratio,
        "loader": {"workers": workers, "batch_ms": 1000 * loader_s, "sketches_per_s": batch_size / loader_s},
    }
    rows = [(k, names[k], f"{results['models'][k]['parameters'] / 1e6:.2f}M", f"{1000 * med[k]:.1f}",
             f"{batch_size / med[k]:.0f}", f"{med[k] / med['CNN-only']:.2f}x") for k in models]
    rows.append((f"loader ({workers} workers)", "", "", f"{1000 * loader_s:.1f}", f"{batch_size / loader_s:.0f}",
                 f"{loader_s / med['CNN-only']:.2f}x"))
    print(f"bench train: {args.preset} vs {twin}, batch {batch_size}, {args.steps} steps each (median), "
          f"{device}, {torch.get_num_threads()} threads")
    print(table(rows, ["", "preset", "params", "ms / batch", "sketches/s", "vs CNN-only step"]))
    verdict = "meets" if ratio <= 1.3 else "misses"
    print(f"R2CNN step = {ratio:.2f}x the CNN-only step ({verdict} the <= 1.3x goal on CPU)"
          if device.type == "cpu" else f"R2CNN step = {ratio:.2f}x the CNN-only step")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0
