"""``r2cnn bench train``: training-step speed of Sketch-R2CNN against its CNN-only twin and a stock ResNet18, the
loader's speed, and (``--concurrent N``) how training holds up when N trainings share the machine.

Anchors (docs/architecture.md "Performance"), timed in the same run on the same batches:

- the CNN-only model with the same backbone, canvas and rasteriser (``r2cnn.presets.cnn_twin``): the figure of merit
  is the ratio of step times (goal on CPU: R2CNN <= 1.5x CNN-only);
- torchvision's ResNet18 as it ships (7x7/2 stem and max-pool, full width, one input channel) on 64x64 images at the
  same batch size: a fixed network, so a preset's speed is a ratio that carries from machine to machine instead of
  an absolute time.

The models' steps alternate, and medians are reported, so that load from other processes affects all alike. The
data loader (the preset's transform, raster geometry in its workers) is timed on its own over the same number of
batches, worker start-up included, as sketches/s next to the step's: the loader keeps up when its sketches/s exceed
the R2CNN step's.

Concurrency (``--concurrent N``): for R2CNN and then for its CNN-only twin, one training process alone and then N at
once. Each process trains as ``r2cnn train`` does (a fresh interpreter with the launcher's environment, a live loader
with the preset's workers, forward, backward, update) and the N start their timed steps together, after their
warm-up steps. A step is timed from asking the loader for a batch to the end of the update. Each process's median
step time is reported as its rate over the lone process's: N processes that keep the cores busy can each reach about
1/N; the goal is 80% of that even share (0.4x for 2 processes), and R2CNN no worse than its CNN-only twin.
"""

from __future__ import annotations

import argparse
import time

from r2cnn.engine.timing import make_step, timed

HELP = ("sketches/s of R2CNN vs its CNN-only twin (same backbone) and a stock ResNet18 per training step, of the data "
        "loader, and of N concurrent trainings vs one")
ANCHOR_SIZE = 64  # the ResNet18 anchor's image side, whatever the preset's canvas
EVEN_SHARE_GOAL = 0.8  # each of N concurrent trainings should keep this fraction of 1/N of the lone rate
STEP_RATIO_GOAL = 1.5  # on CPU: the R2CNN step at most this multiple of its CNN-only twin's
ANCHOR_RATE_GOAL = 1.2  # on CPU: R2CNN's sketches/s at least this multiple of the ResNet18 anchor's (a margin over noise)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="cpu-r2cnn", help="an R2CNN preset (default cpu-r2cnn)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per model (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model first (default 3)")
    p.add_argument("--batch-size", type=int, help="default: the preset's")
    p.add_argument("--workers", type=int, help="data-loader workers (default: the preset's)")
    p.add_argument("--data", help="a prepared store (default: built-in sketches in a temporary store)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    p.add_argument("--concurrent", type=int, default=0, metavar="N",
                   help="then train each model in 1 process and in N processes at once, and report each process's "
                        "step time against the lone one's (default 0: skip)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def resnet18_anchor(num_classes: int):
    """torchvision's ResNet18 for 1-channel images: its own 7x7/2 stem (with one input channel), max-pool and
    widths, untouched otherwise."""
    from torch import nn
    from torchvision.models import resnet18

    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def _training_process(spec: dict, barrier, results) -> None:
    """One process of the concurrency test, in a fresh interpreter: the preset's model, optimiser and loader,
    ``spec["warmup"]`` untimed steps, then wait at ``barrier`` for the others and take ``spec["steps"]`` timed steps.
    Puts ``(spec["index"], [seconds per step])`` on ``results``, or ``(spec["index"], "error message")``."""
    try:
        import torch

        from r2cnn.data.loader import make_loader
        from r2cnn.data.store import SketchStore
        from r2cnn.engine.factory import build_model, build_transform
        from r2cnn.engine.precision import amp_dtype, flush_denormals
        from r2cnn.engine.optim import build_optimizer

        flush_denormals()  # as training does
        if spec["threads"]:
            torch.set_num_threads(spec["threads"])
        device, config = torch.device(spec["device"]), spec["config"]
        store = SketchStore(spec["store"])
        torch.manual_seed(spec["index"])
        model = build_model(config, len(store.classes)).to(device).train()
        step = make_step(model, build_optimizer(config, model), device, amp_dtype(config, device))
        loader = make_loader(store, "train", batch_size=spec["batch_size"], transform=build_transform(config, True),
                             shuffle=True, seed=spec["index"], drop_last=True, num_workers=spec["workers"],
                             raster_size=model.raster_size, raster_eps=model.raster_eps)
        batches = iter(loader)

        def take() -> None:
            batch = next(batches).to(device)
            step(batch, batch.labels)

        for _ in range(spec["warmup"]):
            take()
        barrier.wait()
        results.put((spec["index"], [timed(take, device) for _ in range(spec["steps"])]))
    except Exception as e:  # reported by the parent as one line
        barrier.abort()
        results.put((spec["index"], f"{type(e).__name__}: {e}"))


def _train_together(spec: dict, n: int) -> list[float]:
    """Median seconds per step of each of ``n`` :func:`_training_process` processes run at once."""
    import multiprocessing
    import queue
    import statistics

    from r2cnn.errors import R2CNNError

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter, as a second `r2cnn train` would be
    barrier, results = ctx.Barrier(n), ctx.Queue()
    # Not daemonic: each process's data loader starts worker processes of its own. The finally below joins them.
    procs = [ctx.Process(target=_training_process, args=({**spec, "index": i}, barrier, results))
             for i in range(n)]
    for p in procs:
        p.start()
    got: dict[int, list[float] | str] = {}
    try:
        while len(got) < n:
            try:
                index, value = results.get(timeout=1.0)
                got[index] = value
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    barrier.abort()
                    raise R2CNNError(f"bench train --concurrent: a training process died (exit code {dead[0]})")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    # The first process to fail breaks the barrier for the others: report its error, not theirs.
    errors = sorted((v for v in got.values() if isinstance(v, str)), key=lambda e: e.startswith("BrokenBarrierError"))
    if errors:
        raise R2CNNError(f"bench train --concurrent: a training process failed: {errors[0]}")
    return [statistics.median(got[i]) for i in range(n)]


def _concurrency(args, store_path: str, configs: dict, names: dict, batch_size: int, workers: int, device) -> dict:
    """Per model: the lone process's and each of ``args.concurrent`` concurrent processes' median step time."""
    from r2cnn.engine.report import table

    n = args.concurrent
    goal = EVEN_SHARE_GOAL / n
    out = {"processes": n, "goal_rate_ratio": goal, "models": {}}
    for key, config in configs.items():
        spec = dict(config=config, store=store_path, batch_size=batch_size, workers=workers, device=str(device),
                    threads=args.threads, steps=args.steps, warmup=args.warmup)
        alone = _train_together(spec, 1)[0]
        together = _train_together(spec, n)
        out["models"][key] = {"preset": names[key], "alone_ms": 1000 * alone,
                              "together_ms": [1000 * t for t in together],
                              "rate_ratios": [alone / t for t in together]}
    rows = [(k, m["preset"], f"{m['alone_ms']:.1f}",
             *(f"{t:.1f} ({r:.2f}x)" for t, r in zip(m["together_ms"], m["rate_ratios"])))
            for k, m in out["models"].items()]
    print(f"\nconcurrent trainings: 1 process alone, then {n} at once (median ms per step: loader wait, forward, "
          f"backward, update; rate as a multiple of the lone process's)")
    print(table(rows, ["", "preset", "alone", *(f"process {i + 1} of {n}" for i in range(n))]))
    worst = {k: min(m["rate_ratios"]) for k, m in out["models"].items()}
    each = all(w >= goal for w in worst.values())
    # "No worse" allows 10% for the noise of timing separate runs (a quiet machine measures closer).
    no_worse = worst["R2CNN"] >= 0.9 * worst["CNN-only"]
    print(f"goal {'met' if each else 'MISSED'}: every process >= {goal:.2f}x the lone rate "
          f"({EVEN_SHARE_GOAL:.0%} of an even share of {n})")
    print(f"goal {'met' if no_worse else 'MISSED'}: R2CNN no worse than CNN-only under contention (worst process "
          f"{worst['R2CNN']:.2f}x vs {worst['CNN-only']:.2f}x, 10% allowed for noise)")
    out.update(worst=worst, goal_each_met=each, goal_no_worse_met=no_worse)
    return out


def _run(args) -> int:
    import json
    import math
    import statistics
    import tempfile
    from pathlib import Path

    import torch

    from r2cnn.data.loader import make_loader
    from r2cnn.data.store import SketchStore, prepare
    from r2cnn.engine.factory import build_model, build_transform
    from r2cnn.engine.precision import amp_dtype, denormals_flushed
    from r2cnn.engine.report import table
    from r2cnn.engine.optim import build_optimizer
    from r2cnn.errors import R2CNNError
    from r2cnn.presets import cnn_twin, get_preset

    twin = cnn_twin(args.preset)
    if twin is None:
        raise R2CNNError(f"{args.preset!r} has no CNN-only twin preset to compare with (use an r2cnn preset, "
                         f"e.g. cpu-r2cnn or qd-r2cnn-resnet50)")
    if args.concurrent < 0 or args.steps < 1 or args.warmup < 0:
        raise R2CNNError("bench train: --steps must be >= 1, --warmup and --concurrent >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    configs = {"R2CNN": get_preset(args.preset), "CNN-only": get_preset(twin)}
    names = {"R2CNN": args.preset, "CNN-only": twin, "ResNet18": "torchvision resnet18 (anchor)"}
    batch_size = args.batch_size or configs["R2CNN"]["batch_size"]
    workers = configs["R2CNN"]["num_workers"] if args.workers is None else args.workers
    n_batches = args.steps + args.warmup

    with tempfile.TemporaryDirectory(prefix="r2cnn-bench-") as tmp:
        if args.data:
            store_path = str(args.data)
            store = SketchStore(store_path)
        else:
            from r2cnn.data.builtin import CLASSES
            per_class = math.ceil(n_batches * batch_size / len(CLASSES)) + 1
            store_path = str(Path(tmp) / "store")
            store = prepare([], store_path, builtin=per_class, split_sizes=(per_class, 0, 0),
                            log=lambda *a: None, progress=False)
        torch.manual_seed(0)
        models = {k: build_model(c, len(store.classes)).to(device) for k, c in configs.items()}
        models["ResNet18"] = resnet18_anchor(len(store.classes)).to(device)
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
        del loader
        batches = [b.to(device) for b in batches]
        images = torch.rand(batch_size, 1, ANCHOR_SIZE, ANCHOR_SIZE, generator=torch.Generator().manual_seed(0))
        images = images.to(device)
        inputs = {"R2CNN": lambda b: b, "CNN-only": lambda b: b, "ResNet18": lambda b: images}

        # The anchor trains with the twin's optimiser, in the twin's precision on CUDA and in fp32 on the CPU, where
        # the presets' precision depends on the processor (bf16 only where it is native): a fixed workload there.
        # Where the presets run bf16 on the CPU, "ResNet18 bf16" times the same anchor in bf16 too (shown, no goal).
        anchor_config = configs["CNN-only"] if device.type == "cuda" else {**configs["CNN-only"], "amp": "none"}
        configs_used = {**configs, "ResNet18": anchor_config}
        if device.type == "cpu" and amp_dtype(configs["R2CNN"], device) is not None:
            models["ResNet18 bf16"] = resnet18_anchor(len(store.classes)).to(device)
            models["ResNet18 bf16"].load_state_dict(models["ResNet18"].state_dict())
            configs_used["ResNet18 bf16"] = configs["CNN-only"]
            inputs["ResNet18 bf16"] = inputs["ResNet18"]
            names["ResNet18 bf16"] = "the anchor in bf16 autocast (as the presets)"
        steps = {k: make_step(m.train(), build_optimizer(configs_used[k], m), device,
                               amp_dtype(configs_used[k], device)) for k, m in models.items()}
        times = {k: [] for k in models}
        for i, batch in enumerate(batches):
            for k, step in steps.items():  # alternate, so background load hits every model alike
                t = timed(lambda: step(inputs[k](batch), batch.labels), device)
                if i >= args.warmup:
                    times[k].append(t)

        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["R2CNN"] / med["CNN-only"]
        rate_over_anchor = med["ResNet18"] / med["R2CNN"]  # sketches/s over the anchor's: same batch size

        def figures(k: str) -> dict:
            return {"parameters": sum(p.numel() for p in models[k].parameters()), "step_ms_median": 1000 * med[k],
                    "sketches_per_s": batch_size / med[k], "step_over_anchor": med[k] / med["ResNet18"]}

        results = {
            "preset": args.preset, "twin": twin, "device": str(device), "batch_size": batch_size, "steps": args.steps,
            "threads": torch.get_num_threads(), "raster_size": r2cnn.raster_size,
            "models": {k: {"preset": names[k], "model": configs[k]["model"], **figures(k)} for k in configs},
            "anchor": {"model": f"torchvision resnet18, 1 channel, {ANCHOR_SIZE}x{ANCHOR_SIZE}", **figures("ResNet18")},
            "r2cnn_over_cnn_step_time": ratio, "r2cnn_sketches_per_s_over_anchor": rate_over_anchor,
            "loader": {"workers": workers, "batch_ms": 1000 * loader_s, "sketches_per_s": batch_size / loader_s},
            "precision": {k: str(amp_dtype(configs_used[k], device) or torch.float32).replace("torch.", "")
                          for k in models},
        }
        if "ResNet18 bf16" in models:
            results["anchor_bf16"] = figures("ResNet18 bf16")
        rows = [(k, names[k], results["precision"][k], f"{sum(p.numel() for p in models[k].parameters()) / 1e6:.2f}M",
                 f"{1000 * med[k]:.1f}",
                 f"{batch_size / med[k]:.0f}", f"{med[k] / med['CNN-only']:.2f}x", f"{med[k] / med['ResNet18']:.2f}x")
                for k in models]
        rows.append((f"loader ({workers} workers)", "", "", "", f"{1000 * loader_s:.1f}",
                     f"{batch_size / loader_s:.0f}",
                     f"{loader_s / med['CNN-only']:.2f}x", f"{loader_s / med['ResNet18']:.2f}x"))
        print(f"bench train: {args.preset} vs {twin}, anchor torchvision's ResNet18 ({ANCHOR_SIZE}x{ANCHOR_SIZE}, "
              f"1 channel), batch {batch_size}, {args.steps} steps each (median), {device}, "
              f"{torch.get_num_threads()} threads")
        print(table(rows, ["", "model", "precision", "params", "ms / batch",
                           "sketches/s", "vs CNN-only step", "vs ResNet18 step"]))
        if device.type == "cpu":
            step_ok, rate_ok = ratio <= STEP_RATIO_GOAL, rate_over_anchor >= ANCHOR_RATE_GOAL
            results["goals"] = {f"R2CNN step <= {STEP_RATIO_GOAL}x the CNN-only step": step_ok,
                                f"R2CNN sketches/s >= {ANCHOR_RATE_GOAL}x the ResNet18 anchor's": rate_ok}
            print(f"R2CNN step = {ratio:.2f}x the CNN-only step ({'meets' if step_ok else 'misses'} the "
                  f"<= {STEP_RATIO_GOAL}x goal on CPU)")
            print(f"R2CNN sketches/s = {rate_over_anchor:.2f}x the ResNet18 anchor's ({'meets' if rate_ok else 'misses'}"
                  f" the >= {ANCHOR_RATE_GOAL}x goal on CPU; anchor in fp32)")
            if "ResNet18 bf16" in models:
                print(f"  (the anchor in bf16 too: R2CNN sketches/s = {med['ResNet18 bf16'] / med['R2CNN']:.2f}x its; "
                      f"the presets' bf16 runs on this CPU's native bf16, fp32 where there is none)")
        else:
            print(f"R2CNN step = {ratio:.2f}x the CNN-only step; R2CNN sketches/s = {rate_over_anchor:.2f}x the "
                  f"ResNet18 anchor's")
        if args.concurrent:
            del batches, models, steps
            results["concurrent"] = _concurrency(args, store_path, configs, names, batch_size, workers, device)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def run(args) -> int:
    """The benchmark, with subnormals flushed to zero as training does (and the caller's setting restored)."""
    from r2cnn.engine.precision import denormals_flushed

    with denormals_flushed():
        return _run(args)
