"""``r2cnn bench export``: latency per sketch of the exported model (onnxruntime, TorchScript) against PyTorch.

The same model (a preset's, with random weights, or a checkpoint's) classifies the same normalised built-in
sketches one at a time in three ways, in the same run:

- PyTorch: ``model.forward_with_attention`` on a one-sketch batch (numba NLR kernels): the anchor;
- onnxruntime (CPU) on the exported ONNX file (:mod:`r2cnn.export`);
- TorchScript, the exported traced module.

Each row is the median latency per sketch over ``--repeat`` passes and its ratio to the anchor (goal for
onnxruntime: <= 1.0x); the largest logit difference to PyTorch is printed next to it.
"""

from __future__ import annotations

import argparse

HELP = "exported model latency per sketch: onnxruntime and TorchScript vs PyTorch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="cpu-r2cnn", help="model of this preset, random weights (ImageNet off)")
    p.add_argument("--checkpoint", help="a trained checkpoint (default: the --preset model, random weights)")
    p.add_argument("--sketches", type=int, default=48, help="built-in sketches, classified one at a time")
    p.add_argument("--repeat", type=int, default=3, help="passes over the sketches (the median is reported)")
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


def _run(args) -> int:
    import json
    import statistics
    import tempfile
    import time
    import warnings
    from pathlib import Path

    import numpy as np
    import onnxruntime
    import torch

    from r2cnn.data import builtin
    from r2cnn.data.transforms import normalize
    from r2cnn.errors import R2CNNError
    from r2cnn.export import export_model
    from r2cnn.sketch import SketchBatch

    if min(args.sketches, args.repeat) < 1:
        raise R2CNNError("bench export: --sketches and --repeat must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, classes, config = _model(args)
    per_class = -(-args.sketches // len(builtin.CLASSES))
    sketches = [normalize(s) for s in builtin.generate(per_class, seed=1)][:args.sketches]
    options = onnxruntime.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        export_model(model, classes, config, "onnx", Path(tmp) / "model.onnx")
        export_model(model, classes, config, "torchscript", Path(tmp) / "model.pt")
        session = onnxruntime.InferenceSession(str(Path(tmp) / "model.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            scripted = torch.jit.load(str(Path(tmp) / "model.pt"))

    def pytorch(s):
        return model(SketchBatch.from_sketches([s], labels=[-1]))[0].numpy()

    def ort(s):
        return session.run(None, {"points": s.points})[0][0]

    def torchscript(s):
        return scripted(torch.from_numpy(s.points))[0][0].numpy()

    rows = {"PyTorch, numba NLR (anchor)": pytorch, "onnxruntime (CPU)": ort, "TorchScript": torchscript}
    reference = None
    results = {}
    with torch.no_grad():
        for name, run in rows.items():
            logits = [run(s) for s in sketches]  # warm-up, and the logits compared
            reference = logits if reference is None else reference
            diff = max(float(np.abs(a - b).max()) for a, b in zip(logits, reference))
            passes = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                for s in sketches:
                    run(s)
                passes.append((time.perf_counter() - t) / len(sketches))
            results[name] = (1000 * statistics.median(passes), diff)
    anchor = next(iter(results.values()))[0]
    points = [len(s.points) for s in sketches]
    print(f"bench export: {config.get('model')} ({args.checkpoint or args.preset}), {model.raster_size}px canvas, "
          f"{len(sketches)} built-in sketches one at a time ({int(np.mean(points))} points on average, longest "
          f"{max(points)}), median of {args.repeat} passes, torch threads {torch.get_num_threads()}")
    print(f"{'':32s} {'ms/sketch':>10s} {'x anchor':>9s} {'max |logit diff|':>17s}")
    for name, (ms, diff) in results.items():
        print(f"{name:32s} {ms:10.2f} {ms / anchor:9.2f} {diff:17.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": config.get("model"), "sketches": len(sketches),
                                               "rows": {k: {"ms_per_sketch": ms, "ratio": ms / anchor,
                                                            "max_logit_diff": d}
                                                        for k, (ms, d) in results.items()}}, indent=1))
    return 0


def run(args) -> int:
    """The benchmark, with subnormals flushed to zero as inference does (and the caller's setting restored)."""
    from r2cnn.engine.precision import denormals_flushed

    with denormals_flushed():
        return _run(args)
