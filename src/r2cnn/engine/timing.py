"""Timing a training step: a bare step function and a wall clock that waits for the GPU's queued work.

Shared by ``r2cnn bench train`` (:mod:`r2cnn.bench.train`, :mod:`r2cnn.bench.gpu`) and the experiment dry run
(:mod:`r2cnn.experiments.dryrun`), so that both time the same step.
"""

from __future__ import annotations

import time


def sync(device) -> None:
    """Wait for the work queued on ``device`` (a ``torch.device``; nothing to wait for on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    """Seconds that ``fn()`` takes (CUDA work included)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def make_step(model, optimizer, device, dtype):
    """``step(inputs, labels)``: forward, cross-entropy, backward and update, as a training step does."""
    import torch.nn.functional as F

    from r2cnn.engine.precision import autocast

    def step(inputs, labels) -> None:
        with autocast(device, dtype):
            loss = F.cross_entropy(model(inputs).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step
