"""Section 4, ``train``: R2CNN and its CNN-only twin trained through ``r2cnn train``'s loop (loss, steps/s, peak
memory, the fp16 GradScaler run), then their steps against a torchvision ResNet50's; with the built-in scratch store
and the training run that sections 6 and 7 use too."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from r2cnn.bench.gpu.context import Context, Failed
from r2cnn.bench.gpu.plan import GOAL_OVER_RESNET50, PRESET, TINY_OPTIONS, TWIN


def scratch_store(ctx: Context) -> Path:
    """The built-in stand-in store of sections 4, 6 and 7: one epoch of the training runs (``steps x batch``
    sketches) plus a validation batch; made once, found up to date afterwards."""
    from r2cnn.data.builtin import CLASSES
    from r2cnn.data.store import prepare

    batch = ctx.sizes.batch or 48
    per_class = math.ceil(ctx.sizes.steps * batch / len(CLASSES))
    valid = max(1, math.ceil(batch / len(CLASSES)))
    path = ctx.work / "store"
    prepare([], path, builtin=per_class + valid, split_sizes=(per_class, valid, 0), progress=False)
    return path


def _train_options(ctx: Context, preset: str, store: Path, out: Path, **kwargs):
    from r2cnn.engine.config import TrainOptions

    overrides = {"model_options": dict(TINY_OPTIONS, pretrained=None)} if ctx.quick else {
        "model_options.pretrained": None}
    s = ctx.sizes
    fields = dict(preset=preset, data=str(store), out=str(out), steps=s.steps, device=ctx.device,
                  workers=s.workers, batch_size=s.batch, lr=s.lr, log_every=s.log_every, progress=False,
                  print_every=50, overwrite=True, config_overrides=overrides)
    fields.update(kwargs)
    return TrainOptions(**fields)


def _losses(run_dir: Path) -> list[float]:
    """The training losses of a run's log, one per logged window."""
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    return [r["loss"] for r in records if r.get("kind") == "train"]


def train_once(ctx: Context, preset: str, store: Path, name: str | None = None, **kwargs) -> dict:
    """Train ``preset`` through the engine's loop into the scratch folder's ``train/NAME`` (default: the preset's
    name); its figures."""
    import statistics

    import torch

    from r2cnn.engine.precision import amp_dtype
    from r2cnn.engine.train import train

    name = name or preset
    out = ctx.work / "train" / name
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats()
    print(f"\n== train {name}: {kwargs.get('steps', ctx.sizes.steps)} steps on {ctx.device}", flush=True)
    start = time.perf_counter()
    result = train(_train_options(ctx, preset, store, out, **kwargs))
    wall = time.perf_counter() - start
    losses = _losses(out)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["sketches_per_s"] for r in records if r.get("kind") == "train"][1:]  # the first window warms up
    config = records[0]["config"]
    precision = amp_dtype(config, torch.device(ctx.device))  # bf16 on a CPU only where it is native
    figures = {"steps": result["step"], "wall_s": wall, "batch_size": config["batch_size"], "amp": config["amp"],
               "precision": str(precision or torch.float32).replace("torch.", ""),
               "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
               "steps_per_s": statistics.median(rates) / config["batch_size"] if rates else None,
               "valid_top1": (result.get("valid") or {}).get("top1"), "checkpoint": result["best_path"]}
    if ctx.cuda:
        figures.update(peak_gpu_memory_gib=torch.cuda.max_memory_allocated() / 2**30,
                       peak_gpu_reserved_gib=torch.cuda.max_memory_reserved() / 2**30)
    print(json.dumps(figures))
    return figures


def _fell(figures: dict) -> bool:
    first, last = figures["loss_first"], figures["loss_last"]
    return first is not None and last is not None and math.isfinite(last) and last < first


def resnet50_anchor(num_classes: int):
    """torchvision's ResNet50 as it ships, for 1-channel images (its 7x7/2 stem with one input channel)."""
    import torchvision
    from torch import nn

    model = torchvision.models.resnet50(num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def _step_times(ctx: Context, store: Path) -> dict:
    """Median step of R2CNN, its CNN-only twin and torchvision's ResNet50 on the same device, taking turns on the
    same batches (the anchor on random images of the canvas' size), each in the preset's precision."""
    import statistics

    import torch

    from r2cnn.data.loader import make_loader
    from r2cnn.data.store import SketchStore
    from r2cnn.engine.factory import build_model, build_transform
    from r2cnn.engine.precision import amp_dtype
    from r2cnn.engine.timing import make_step, timed
    from r2cnn.engine.config import make_config
    from r2cnn.engine.optim import build_optimizer

    device = torch.device(ctx.device)
    configs = {k: make_config(_train_options(ctx, p, store, ctx.work / "unused")) for k, p in
               (("R2CNN", PRESET), ("CNN-only", TWIN))}
    data = SketchStore(str(store))
    torch.manual_seed(0)
    models = {k: build_model(c, len(data.classes), pretrained=False).to(device) for k, c in configs.items()}
    canvas = models["R2CNN"].raster_size
    models["ResNet50"] = resnet50_anchor(len(data.classes)).to(device)
    configs["ResNet50"] = configs["CNN-only"]
    batch_size = configs["R2CNN"]["batch_size"]
    n = ctx.sizes.warmup_steps + ctx.sizes.timed_steps
    loader = make_loader(data, "train", batch_size=batch_size, transform=build_transform(configs["R2CNN"], True),
                         shuffle=True, drop_last=True, num_workers=ctx.sizes.workers
                         if ctx.sizes.workers is not None else configs["R2CNN"]["num_workers"],
                         raster_size=canvas, raster_eps=models["R2CNN"].raster_eps)
    batches = [b.to(device) for _, b in zip(range(n), loader)]
    del loader
    images = torch.rand(batch_size, 1, canvas, canvas, generator=torch.Generator().manual_seed(0)).to(device)
    inputs = {"R2CNN": lambda b: b, "CNN-only": lambda b: b, "ResNet50": lambda b: images}
    steps = {k: make_step(m.train(), build_optimizer(configs[k], m), device, amp_dtype(configs[k], device))
             for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats()
    if len(batches) < n:
        raise Failed(f"the store gave {len(batches)} batches of {batch_size}; timing needs {n}")
    for i, batch in enumerate(batches):
        for k, step in steps.items():  # taking turns: whatever else runs falls on each model alike
            t = timed(lambda: step(inputs[k](batch), batch.labels), device)
            if i >= ctx.sizes.warmup_steps:
                times[k].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"batch_size": batch_size, "canvas": canvas, "timed_steps": len(times["R2CNN"]),
           "precision": str(amp_dtype(configs["R2CNN"], device) or torch.float32).replace("torch.", ""),
           "step_ms": {k: 1000 * v for k, v in med.items()},
           "r2cnn_over_resnet50": med["R2CNN"] / med["ResNet50"],
           "cnn_over_resnet50": med["CNN-only"] / med["ResNet50"],
           "r2cnn_over_cnn": med["R2CNN"] / med["CNN-only"],
           "goal_r2cnn_over_resnet50_max": GOAL_OVER_RESNET50,
           # the rehearsal's tiny R2CNN against a full ResNet50 says nothing about the goal
           "goal_met": None if ctx.quick else med["R2CNN"] / med["ResNet50"] <= GOAL_OVER_RESNET50}
    if ctx.cuda:
        out["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(out))
    return out


def section_train(ctx: Context) -> None:
    if ctx.cuda:
        ctx.require_cuda()
    start = time.perf_counter()
    store = scratch_store(ctx)
    ctx.record(store={"path": "scratch", "seconds": time.perf_counter() - start})
    runs = {}
    for preset in (PRESET, TWIN):
        runs[preset] = train_once(ctx, preset, store)
        ctx.record(runs=runs)
    if ctx.cuda and ctx.sizes.fp16_steps:
        from r2cnn.engine.checkpoint import load_checkpoint

        fp16 = train_once(ctx, PRESET, store, f"{PRESET}-fp16", amp="fp16", steps=ctx.sizes.fp16_steps)
        last = load_checkpoint(str(ctx.work / "train" / f"{PRESET}-fp16" / "last.pt"), training_state=True)
        scale = (last.get("scaler") or {}).get("scale")  # the GradScaler's loss scale after the run
        fp16["grad_scale"] = None if scale is None else float(scale)
        ctx.record(fp16_gradscaler=fp16)
    else:
        ctx.record(fp16_gradscaler="skipped: fp16 autocast and the GradScaler are CUDA only")
    speed = _step_times(ctx, store)
    ctx.record(step_vs_resnet50=speed)
    r = runs[PRESET]
    goal = {None: "n/a in the rehearsal", True: "met", False: "MISSED"}[speed["goal_met"]]
    ctx.record(headline=f"R2CNN loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}, "
                        f"{r['steps_per_s'] or float('nan'):.1f} steps/s; step {speed['r2cnn_over_resnet50']:.2f}x "
                        f"ResNet50 (goal <= {GOAL_OVER_RESNET50}x: {goal})")
    checked = dict(runs)
    if isinstance(ctx.figures.get("fp16_gradscaler"), dict):
        checked[f"{PRESET} fp16"] = ctx.figures["fp16_gradscaler"]
    flat = [f"{name} ({f['loss_first']} -> {f['loss_last']})" for name, f in checked.items() if not _fell(f)]
    if flat:
        raise Failed("the loss did not fall for " + ", ".join(flat))
