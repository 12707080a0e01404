"""Section 1, ``env``: GPU, driver, torch, CUDA, cuDNN, NCCL, Triton and the other packages' versions, and where the
real sketch data the CUDA tests compare on is (:func:`real_data`, which the plan notes too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from r2cnn.bench.gpu.context import Context


def real_data(root: Path) -> Path | None:
    """The data folder the tests' ``shared_data`` fixture uses (tests/conftest.py), when it holds the sketches the
    CUDA tests compare on."""
    data = Path(os.environ.get("R2CNN_SHARED_DATA") or root.parent / "shared" / "data")
    return data if (data / "quickdraw" / "qd5" / "valid").is_dir() else None


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("torch", "torchvision", "triton", "numpy", "numba", "onnx", "onnxruntime", "pytest", "hypothesis",
                 "opencv-python-headless", "orjson", "fastapi", "sketch-r2cnn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _nccl_version() -> str | None:
    import torch

    try:
        version = torch.cuda.nccl.version()  # a tuple in recent torch, an int in older ones
    except Exception as e:  # noqa: BLE001 - a figure only
        return f"unknown ({type(e).__name__})"
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def section_env(ctx: Context) -> None:
    import platform
    import shutil

    import r2cnn

    data = real_data(ctx.root)
    ctx.record(python=platform.python_version(), executable=sys.executable, r2cnn=r2cnn.__version__,
               r2cnn_from=str(Path(r2cnn.__file__).parent), cpus=os.cpu_count(), packages=_versions(),
               real_data=None if data is None else str(data))
    import torch

    gpu = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "devices": torch.cuda.device_count() if torch.cuda.is_available() else 0}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu.update(name=props.name, capability=f"{props.major}.{props.minor}", memory_gib=round(
            props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
            cudnn=torch.backends.cudnn.version(), bf16=torch.cuda.is_bf16_supported(), nccl=_nccl_version())
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        gpu["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        gpu["driver"] = smi.stdout.split(",")[1].strip() if smi.returncode == 0 and "," in smi.stdout else None
    else:
        gpu["nvidia_smi"] = None
    ctx.record(**gpu, headline=(f"{gpu.get('name', 'no GPU')}, driver {gpu.get('driver')}, torch {torch.__version__} "
                                f"(CUDA {torch.version.cuda}), triton {ctx.figures['packages']['triton']}"))
    print(json.dumps(ctx.figures, indent=1))
    ctx.require_cuda()
