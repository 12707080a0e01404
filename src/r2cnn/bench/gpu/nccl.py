"""Section 7, ``nccl``: a 2-rank ``torchrun`` training over NCCL when 2 GPUs are visible (the rehearsal: over gloo
on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from r2cnn.bench.gpu.context import Context, Failed, Skip
from r2cnn.bench.gpu.plan import PRESET, TINY_OPTIONS
from r2cnn.bench.gpu.train import scratch_store


def section_nccl(ctx: Context) -> None:
    import torch

    if ctx.cuda:
        ctx.require_cuda()
        gpus = torch.cuda.device_count()
        ctx.record(gpus=gpus)
        if gpus < 2:
            raise Skip(f"{gpus} CUDA device visible: a 2-rank NCCL run needs 2")
        backend, extra = "nccl", ["--set", "model_options.pretrained=null", "--workers", "4"]
    else:
        # the rehearsal: the same launch over gloo on the CPU, tiny model
        backend, extra = "gloo", ["--set", f"model_options={json.dumps(dict(TINY_OPTIONS, pretrained=None))}",
                                  "--workers", "0", "--batch-size", "8"]
    store = scratch_store(ctx)
    out = ctx.work / "ddp"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "r2cnn", "train", "--preset", PRESET, "--data", str(store), "--out", str(out), "--overwrite",
            "--steps", str(ctx.sizes.ddp_steps), "--device", ctx.device, "--log-every", "1", "--print-every", "0",
            *extra]
    print(" ".join(argv), flush=True)
    start = time.perf_counter()
    code = subprocess.run(argv, env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()] \
        if (out / "log.jsonl").is_file() else []
    starts = [r for r in records if r.get("event") == "start"]
    done = [r for r in records if r.get("event") == "done"]
    ctx.record(backend=backend, rehearsal=not ctx.cuda, exit_code=code, wall_s=wall,
               world_size=starts[0].get("world_size") if starts else None, steps=done[0]["step"] if done else None,
               headline=f"{backend}: 2 ranks, exit code {code}" + (" (CPU rehearsal)" if not ctx.cuda else ""))
    if code != 0 or not done or ctx.figures["world_size"] != 2:
        raise Failed(f"torchrun with 2 ranks ({backend}) exited with {code}"
                     + ("" if done else ", no 'done' event in its log"))
