"""DDP: two gloo processes under torchrun train the same model as one process with the same global batch.

Batch norm is synchronised under DDP (``GlooSyncBatchNorm`` on CPU, ``nn.SyncBatchNorm`` on CUDA), so the only
differences left are floating-point summation orders; dropout (the RNN's, and fixed_dropout) is switched off
because each rank draws its own dropout masks. Plain SGD keeps updates linear in the gradients (Adam divides by
sqrt(v), which turns last-bit gradient differences on near-zero gradients into visible weight differences). The
RNN learns at 3x the CNN's rate in its own optimiser group: with cpu-r2cnn's 10x on top of this test's large SGD
step (an RNN step of 0.1), three steps already turn last-bit differences into 4e-4 in the first convolution's
weights; at 1-3x they stay within 2e-6.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from r2cnn.engine.checkpoint import load_checkpoint

TINY = '{"canvas": 32, "width": 8, "stem": "small", "hidden": 16, "layers": 1, "dropout": 0.0, "fixed_dropout": 0.0}'
ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_="1000000000", MALLOC_TRIM_THRESHOLD_="1000000000",
           R2CNN_NO_REEXEC="1", OMP_NUM_THREADS="1")


def _train_args(store, out, batch_size):
    return ["train", "--preset", "cpu-r2cnn", "--data", str(store), "--out", str(out), "--steps", "3",
            "--batch-size", str(batch_size), "--workers", "0", "--seed", "2", "--log-every", "1", "--lr", "0.01",
            "--set", f"model_options={TINY}", "--set", "optimizer=sgd", "--set", "lr_schedule=constant",
            "--set", "encoder_lr_scale=3", "--set", 'amp="none"']  # fp32: bf16 rounds differently per batch split


def _records(out, kind):
    return [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_two_gloo_processes_match_one_process(tmp_path):
    from r2cnn.data.store import prepare

    store = tmp_path / "store"
    prepare([], store, builtin=12, split_sizes=(8, 2, 2), log=lambda *a: None, progress=False)
    from r2cnn.cli import main

    assert main(_train_args(store, tmp_path / "one", 8)) == 0  # one process, in this one
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "r2cnn", *_train_args(store, tmp_path / "two", 4)],
                         env=ENV, capture_output=True, text=True, timeout=240)
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    assert ddp.stdout.count("last checkpoint:") == 1  # only rank 0 reports and writes

    one, two = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "two" / "last.pt")
    assert two["extra"]["world_size"] == 2 and one["step"] == two["step"] == 3
    assert len(two["optimizer"]["param_groups"]) == 2  # the RNN in its own group (encoder_lr_scale)
    for name, a in one["model"].items():
        b = two["model"][name]
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5), (name, (a.float() - b.float()).abs().max())
    # metrics are all-reduced: the global loss of every step and the validation counts agree
    loss1 = [r["loss"] for r in _records(tmp_path / "one", "train")]
    loss2 = [r["loss"] for r in _records(tmp_path / "two", "train")]
    assert loss1 == pytest.approx(loss2, rel=1e-4)
    v1, v2 = _records(tmp_path / "one", "valid")[-1], _records(tmp_path / "two", "valid")[-1]
    assert v1["count"] == v2["count"] == 24 and v1["top1"] == pytest.approx(v2["top1"])


def test_gloo_sync_batchnorm_takes_bf16_input_and_keeps_fp32_statistics():
    """Under CPU bf16 autocast the CNN's batch norms get bf16 input: the synchronised one computes its statistics in
    fp32 (its running buffers are fp32) and returns bf16, close to an ordinary batch norm (one process here)."""
    import torch.distributed as dist

    from r2cnn.engine.distributed import GlooSyncBatchNorm

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        x = torch.randn(4, 3, 5, 5) * 2 + 1
        sync, plain = GlooSyncBatchNorm(3).train(), torch.nn.BatchNorm2d(3).train()
        y = sync(x.bfloat16())
        assert y.dtype == torch.bfloat16 and sync.running_mean.dtype == torch.float32
        assert torch.allclose(y.float(), plain(x), atol=0.05)
        assert torch.allclose(sync.running_mean, plain.running_mean, atol=0.02)
    finally:
        dist.destroy_process_group()
