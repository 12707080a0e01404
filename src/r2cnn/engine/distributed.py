"""Distributed data parallel set-up for ``torchrun --nproc_per_node N -m r2cnn train ...``.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; this module turns them
into a process group (NCCL on GPUs, gloo on CPU), a device per process, and the few collectives the engine
needs. Without those variables everything degrades to one process and no collective runs.

Batch normalisation under DDP: each rank sees only its shard of the global batch, so plain BN would
normalise with per-rank statistics and training would differ from one process with the same global batch.
:func:`convert_sync_batchnorm` replaces BN layers with synchronised ones (``torch.nn.SyncBatchNorm`` on CUDA,
:class:`GlooSyncBatchNorm` on CPU, where torch's has no kernel), so N processes x batch b train the same model
as one process x batch N*b, up to floating-point summation order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes logs, checkpoints and progress bars."""
        return self.rank == 0


def init_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when launched by torchrun; returns the rank info and this rank's device.

    ``device`` is "cpu" or "cuda" (one GPU per process, chosen by LOCAL_RANK).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), torch.device(device)
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device == "cuda":
        torch.cuda.set_device(info.local_rank)
        dev = torch.device("cuda", info.local_rank)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dev = torch.device("cpu")
        dist.init_process_group("gloo")
    return info, dev


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place, also returned); a no-op in one process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s Python object on every rank (e.g. a stop decision taken from rank 0's clock)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class _AllReduceSum(torch.autograd.Function):
    """y = sum over ranks of x; every rank's loss depends on y, so dL/dx = sum over ranks of dL_r/dy."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def combine_moments(count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor):
    """Statistics of the union of R parts from each part's own: Chan, Golub and LeVeque's parallel variance.

    ``count (R, 1)``, ``mean (R, C)``, ``m2 (R, C)`` (sum of squared deviations from the part's own mean) ->
    ``(n (1,), mean (C,), m2 (C,))`` of all parts together, with ``m2 = sum m2_r + sum n_r (mean_r - mean)^2``.
    Each term is a sum of squares of deviations, so nothing cancels: E[x^2] - mean^2 in float32 loses the
    variance of data with a large mean (1e4 +- 0.1: x^2 carries 8 digits, the variance sits below them).
    """
    n = count.sum(0)
    total_mean = (count * mean).sum(0) / n.clamp(min=1)
    m2 = m2.sum(0) + (count * (mean - total_mean) ** 2).sum(0)
    return n, total_mean, m2


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover all ranks (CPU / gloo counterpart of ``nn.SyncBatchNorm``).
    Outside training or without a process group it is an ordinary batch norm.

    Each rank computes its per-channel (count, mean, M2) and puts them in its row of a ``(world, 2C + 1)`` table;
    summing the tables with :class:`_AllReduceSum` (autograd-aware) gathers every rank's row, and
    :func:`combine_moments` merges them, so gradients flow through the global statistics as they would in one
    process over the whole batch.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        out_dtype = x.dtype
        x = x.float()  # statistics in fp32, as the running buffers are (under bf16 autocast the input is bf16)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = (1, c) + (1,) * (x.dim() - 2)
        count = x.numel() // c
        local_mean = x.sum(dims) / max(count, 1)
        local_m2 = ((x - local_mean.view(shape)) ** 2).sum(dims)
        row = torch.cat([x.new_full((1,), float(count)), local_mean, local_m2])[None]
        table = x.new_zeros(dist.get_world_size(), 2 * c + 1)
        table = table.index_copy(0, torch.tensor([dist.get_rank()], device=x.device), row)
        table = _AllReduceSum.apply(table)
        n, mean, m2 = combine_moments(table[:, :1], table[:, 1:c + 1], table[:, c + 1:])
        var = m2 / n  # biased, as batch norm normalises with
        if self.track_running_stats:
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(m2.detach() / (n - 1).clamp(min=1), momentum)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(out_dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every batch-norm layer by its synchronised version for this device (see module docstring)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_gloo(model)


def _convert_gloo(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlooSyncBatchNorm):
        out = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
        if module.track_running_stats:
            out.running_mean.copy_(module.running_mean)
            out.running_var.copy_(module.running_var)
            out.num_batches_tracked.copy_(module.num_batches_tracked)
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_gloo(child))
    return out
