"""Mixed precision: which autocast dtype a run uses, and the autocast context.

CUDA: the config's ``amp`` (bf16 or fp16). CPU: bf16 when the config asks for it and the processor multiplies bf16
natively (AVX512-BF16 or AMX, :func:`cpu_bf16_native`), where oneDNN's bf16 convolutions run about twice as fast as
fp32 (the half-width ResNet18 of the CPU presets: 311 -> 170 ms a training step at batch 64 on a 2-core EPYC);
elsewhere fp32, since emulated bf16 is slower than fp32. fp16 is CUDA only. The RNN stays in fp32 on the CPU
(:func:`r2cnn.models.encoder.fp32_on_cpu`): only the CNN runs in bf16.
"""

from __future__ import annotations

import contextlib
import functools
import re
from pathlib import Path

import torch

from r2cnn.errors import R2CNNError


@functools.lru_cache(maxsize=1)
def cpu_bf16_native() -> bool:
    """Whether this CPU has bf16 dot products (the ``avx512_bf16`` or ``amx_bf16`` flag of ``/proc/cpuinfo``) and
    torch has oneDNN to use them. False where the flags cannot be read (other systems): fp32 is the safe side."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", info)) and torch.backends.mkldnn.is_available()


def amp_dtype(config: dict, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for the config's ``amp`` on ``device`` (module docstring), None for full precision."""
    amp = (config.get("amp") or "none").lower()
    if amp not in ("bf16", "fp16", "none"):
        raise R2CNNError(f"--amp must be bf16, fp16 or none, not {amp!r}")
    if amp == "none":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if device.type == "cpu" and amp == "bf16" and cpu_bf16_native():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision when ``dtype`` is bf16/fp16; a no-op context otherwise."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def flush_denormals() -> None:
    """Treat subnormal floats (|x| < 1.2e-38) as zero in CPU arithmetic (FTZ/DAZ), for the rest of the process.

    For programs that own their process (benchmarks); library code uses the scoped :func:`denormals_flushed`.
    Why: once subnormal values appear (tiny gradients through the LSTM and in Adam's second moments), every
    operation touching them takes a slow microcode path; measured on this 2-core machine, cpu-r2cnn training ran at
    1-2 sketches/s without and 200-350 sketches/s with this setting (same data, same steps). Values this small do
    not matter for training. Call it before the first parallel op: threads inherit the setting when created.
    """
    torch.set_flush_denormal(True)


def denormals_are_flushed() -> bool:
    """Whether this thread's CPU arithmetic flushes subnormals to zero (torch has no getter: a subnormal is
    multiplied and the result tells)."""
    return (torch.full((1,), 1e-40, dtype=torch.float32) * 2.0).item() == 0.0


@contextlib.contextmanager
def denormals_flushed():
    """:func:`flush_denormals` for the duration of a ``with`` block, then the caller's setting again.

    Train, evaluate and predict run inside it, so that a program importing ``r2cnn`` keeps IEEE arithmetic
    outside those calls. The setting is per thread: intra-op worker threads that torch creates inside the block
    inherit it, as they would inherit any setting of the thread that starts them.
    """
    before = denormals_are_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)
