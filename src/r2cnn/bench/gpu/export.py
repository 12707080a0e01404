"""Section 6, ``export``: ONNX from section 4's checkpoint, and ``r2cnn.load(...).predict`` on the device against
the CPU and onnxruntime (parity of the probabilities)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from r2cnn.bench.gpu.context import Context, Failed
from r2cnn.bench.gpu.plan import PRESET
from r2cnn.bench.gpu.train import scratch_store, train_once


def _checkpoint(ctx: Context) -> tuple[Path, str]:
    """Section 4's R2CNN checkpoint, or a short run's when section 4 left none."""
    trained = ctx.work / "train" / PRESET / "best.pt"
    if trained.is_file():
        return trained, "section 4's run"
    own = train_once(ctx, PRESET, scratch_store(ctx), "export-own", steps=5)
    return Path(own["checkpoint"]), "a 5-step run of its own (section 4 left no checkpoint)"


def section_export(ctx: Context) -> None:
    import numpy as np

    import r2cnn
    from r2cnn.data.builtin import generate
    from r2cnn.export import export_checkpoint

    if ctx.cuda:
        ctx.require_cuda()
    checkpoint, source = _checkpoint(ctx)
    onnx_path = ctx.work / "export" / "model.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    export_checkpoint(checkpoint, "onnx", onnx_path)
    ctx.record(checkpoint=source, export_s=time.perf_counter() - start, onnx_mb=onnx_path.stat().st_size / 1e6)
    models = {"device": r2cnn.load(checkpoint, ctx.device), "cpu": r2cnn.load(checkpoint, "cpu"),
              "onnx": r2cnn.load(onnx_path)}
    k = len(models["cpu"].classes)
    sketches = generate(math.ceil(ctx.sizes.predict_sketches / 12), seed=123)[:ctx.sizes.predict_sketches]
    probs = {}
    top1 = {}
    for name, model in models.items():
        preds = [model.predict(s, top_k=k) for s in sketches]
        probs[name] = np.array([[dict(zip(p.labels, p.probabilities))[c] for c in model.classes] for p in preds])
        top1[name] = [p.label for p in preds]
    # the CUDA convolutions run in TF32 (torch's default for cuDNN), hence a looser bound than onnxruntime's
    bounds = {"device": 2e-2, "onnx": 1e-3}
    parity = {}
    for name in ("device", "onnx"):
        diff = float(np.abs(probs[name] - probs["cpu"]).max())
        parity[f"{name}_vs_cpu"] = {"max_abs_probability_diff": diff, "bound": bounds[name],
                                    "top1_agree": sum(a == b for a, b in zip(top1[name], top1["cpu"])),
                                    "sketches": len(sketches)}
    ctx.record(parity=parity, device=ctx.device, headline=", ".join(
        f"{n}: max |dp| {p['max_abs_probability_diff']:.1e}, top-1 {p['top1_agree']}/{p['sketches']}"
        for n, p in parity.items()))
    print(json.dumps(parity, indent=1))
    bad = [n for n, p in parity.items() if p["max_abs_probability_diff"] > p["bound"]]
    if bad:
        raise Failed("probabilities differ beyond the bound: " + ", ".join(
            f"{n} {parity[n]['max_abs_probability_diff']:.2e} > {parity[n]['bound']:g}" for n in bad))
