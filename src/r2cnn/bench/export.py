"""``r2cnn bench export``: latency per sketch of the exported model (onnxruntime, TorchScript) against PyTorch, on
sketches of different lengths as users send them.

The same model (a preset's, with random weights, or a checkpoint's) classifies the same normalised sketches one at a
time in three ways, in the same run:

- PyTorch: ``model.forward_with_attention`` on a one-sketch batch (numba NLR kernels): the anchor;
- onnxruntime (CPU) on the exported ONNX file (:mod:`r2cnn.export`);
- TorchScript, the exported traced module.

The sketches are built-in ones resampled to ``--lengths`` points, each length once per pass, in the order given:
a TorchScript module specialises and optimises its graph for every new input length, so a bench that repeats one
length hides what a user pays, whose every sketch has a new length. Pass ``p`` adds ``p`` points to every length,
so no length is ever seen twice in the process, and starts from freshly loaded modules (one warm-up sketch of
another length first, so the one-off start-up is not counted; TorchScript also gets the two calls on an example
sketch that :func:`r2cnn.load` gives it, :func:`r2cnn.export.loaded.warm_up_torchscript`). Each row is the median over
``--repeat`` passes of one sketch's latency, its ratio to the anchor, and TorchScript's ratio to onnxruntime (the
goal was <= 1.5x per sketch); the largest logit difference to PyTorch is printed below.
"""

from __future__ import annotations

import argparse

HELP = "exported model latency per sketch, at 10 lengths: onnxruntime and TorchScript vs PyTorch"

LENGTHS = (40, 57, 73, 91, 108, 124, 143, 160, 181, 200)  # points per sketch: what Quick, Draw! drawings have
WARM_UP_LENGTH = 30


def _lengths(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected point counts separated by commas, e.g. 40,80") from None
    if not values or min(values) < 2 or max(values) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: point counts must lie in 2..65535")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="cpu-r2cnn", help="model of this preset, random weights (ImageNet off)")
    p.add_argument("--checkpoint", help="a trained checkpoint (default: the --preset model, random weights)")
    p.add_argument("--lengths", type=_lengths, default=list(LENGTHS),
                   help=f"points of each sketch, one sketch per length (default {','.join(map(str, LENGTHS))})")
    p.add_argument("--repeat", type=int, default=3,
                   help="passes, each from freshly loaded modules, pass p at lengths + p (median reported)")
    p.add_argument("--threads", type=int, help="intra-op threads for torch and onnxruntime (default: theirs)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def _model(args):
    import torch

    from r2cnn.data.builtin import CLASSES
    from r2cnn.engine.factory import build_model, load_model
    from r2cnn.presets import get_preset

    if args.checkpoint:
        model, ckpt = load_model(args.checkpoint)
        return model, list(ckpt["classes"]), ckpt["config"]
    config = get_preset(args.preset)
    torch.manual_seed(0)
    return build_model(config, len(CLASSES), pretrained=False).eval(), list(CLASSES), config


def resampled_sketches(lengths: list[int], seed: int = 1) -> list:
    """Normalised built-in sketches (different classes in turn) resampled along their strokes to exactly
    ``lengths[i]`` points each, strokes kept (a stroke gets points in proportion to its share)."""
    import numpy as np

    from r2cnn.data import builtin
    from r2cnn.data.transforms import normalize
    from r2cnn.sketch import Sketch

    sources = [normalize(s) for s in builtin.generate(1, seed=seed)]
    out = []
    for i, n in enumerate(lengths):
        source = sources[i % len(sources)]
        strokes = [s for s in source.strokes() if len(s)][:max(1, n // 2)]
        share = np.array([len(s) for s in strokes], np.float64)
        counts = np.maximum(1, np.floor(share / share.sum() * n)).astype(int)
        counts[np.argmax(counts)] += n - counts.sum()
        parts = []
        for stroke, k in zip(strokes, counts):
            along = np.linspace(0, len(stroke) - 1, k)
            part = np.zeros((k, 3), np.float32)
            part[:, 0] = np.interp(along, np.arange(len(stroke)), stroke[:, 0])
            part[:, 1] = np.interp(along, np.arange(len(stroke)), stroke[:, 1])
            part[-1, 2] = 1.0
            parts.append(part)
        out.append(Sketch(np.concatenate(parts)))
    return out


def _run(args) -> int:
    import json
    import statistics
    import tempfile
    import time
    import warnings
    from pathlib import Path

    from r2cnn.export.exporters import require_extra

    for module in ("onnx", "onnxruntime"):
        require_extra(module, "bench export")
    import numpy as np
    import onnxruntime
    import torch

    from r2cnn.errors import R2CNNError
    from r2cnn.export import export_model
    from r2cnn.export.loaded import warm_up_torchscript
    from r2cnn.sketch import SketchBatch

    if args.repeat < 1:
        raise R2CNNError("bench export: --repeat must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, classes, config = _model(args)
    sketches = resampled_sketches(args.lengths)
    passes = [resampled_sketches([n + p for n in args.lengths]) for p in range(args.repeat)]
    warm_up = resampled_sketches([WARM_UP_LENGTH], seed=2)[0]
    options = onnxruntime.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads

    def pytorch():
        return lambda s: model(SketchBatch.from_sketches([s], labels=[-1]))[0].numpy()

    def ort():
        session = onnxruntime.InferenceSession(str(tmp / "model.onnx"), options, providers=["CPUExecutionProvider"])
        return lambda s: session.run(None, {"points": s.points})[0][0]

    def torchscript():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            scripted = torch.jit.load(str(tmp / "model.pt"))
        warm_up_torchscript(scripted)  # as r2cnn.load does
        return lambda s: scripted(torch.from_numpy(s.points))[0][0].numpy()

    engines = {"PyTorch (anchor)": pytorch, "onnxruntime": ort, "TorchScript": torchscript}
    times = {name: [[] for _ in sketches] for name in engines}
    logits = {}
    with tempfile.TemporaryDirectory() as tmp_name, torch.no_grad():
        tmp = Path(tmp_name)
        export_model(model, classes, config, "onnx", tmp / "model.onnx")
        export_model(model, classes, config, "torchscript", tmp / "model.pt")
        for p, shifted in enumerate(passes):
            for name, make in engines.items():
                run = make()  # freshly loaded, and every length below is new to the process
                run(warm_up)
                for i, sketch in enumerate(shifted):
                    t = time.perf_counter()
                    out = run(sketch)
                    times[name][i].append(time.perf_counter() - t)
                    if p == 0:
                        logits.setdefault(name, {})[i] = out
    ms = {name: [1000 * statistics.median(t) for t in per] for name, per in times.items()}
    anchor_name, onnx_name, ts_name = engines
    diff = {name: max(float(np.abs(logits[name][i] - logits[anchor_name][i]).max()) for i in range(len(sketches)))
            for name in engines}
    print(f"bench export: {config.get('model')} ({args.checkpoint or args.preset}), {model.raster_size}px canvas, "
          f"{len(sketches)} sketches of different lengths, each new to the engine (modules loaded afresh each pass), "
          f"median of {args.repeat} passes, torch threads {torch.get_num_threads()}")
    print(f"{'points':>6s} {'PyTorch ms':>11s} {'onnxruntime ms':>15s} {'x anchor':>9s} {'TorchScript ms':>15s} "
          f"{'x anchor':>9s} {'TorchScript / onnxruntime':>26s}")
    ratios = []
    for i, sketch in enumerate(sketches):
        a, o, s = ms[anchor_name][i], ms[onnx_name][i], ms[ts_name][i]
        ratios.append(s / o)
        print(f"{len(sketch.points):6d} {a:11.2f} {o:15.2f} {o / a:9.2f} {s:15.2f} {s / a:9.2f} {s / o:26.2f}")
    print(f"TorchScript / onnxruntime per sketch: median {statistics.median(ratios):.2f}x, worst {max(ratios):.2f}x "
          f"(goal <= 1.5x); max |logit diff| to PyTorch: onnxruntime {diff[onnx_name]:.2e}, TorchScript "
          f"{diff[ts_name]:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": config.get("model"), "lengths": [len(s.points) for s in sketches], "repeat": args.repeat,
            "ms_per_sketch": ms, "torchscript_over_onnxruntime": ratios,
            "max_logit_diff": {name: diff[name] for name in (onnx_name, ts_name)}}, indent=1))
    return 0


def run(args) -> int:
    """The benchmark, with subnormals flushed to zero as inference does (and the caller's setting restored)."""
    from r2cnn.engine.precision import denormals_flushed

    with denormals_flushed():
        return _run(args)
