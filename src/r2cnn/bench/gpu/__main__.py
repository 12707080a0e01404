"""A section's process: ``python -m r2cnn.bench.gpu TASK CONTEXT RESULT`` runs one task of :data:`TASKS` and leaves
its status and figures in RESULT."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from r2cnn.bench.gpu.context import Context, Failed, Skip
from r2cnn.bench.gpu.cuda_tests import collect, section_cuda_tests
from r2cnn.bench.gpu.dry_runs import section_dry_runs
from r2cnn.bench.gpu.env import section_env
from r2cnn.bench.gpu.export import section_export
from r2cnn.bench.gpu.nccl import section_nccl
from r2cnn.bench.gpu.raster import section_raster
from r2cnn.bench.gpu.train import section_train


TASKS = {"collect": collect, "env": section_env, "cuda-tests": section_cuda_tests, "raster": section_raster,
         "train": section_train, "dry-runs": section_dry_runs, "export": section_export, "nccl": section_nccl}


def _child(argv: list[str]) -> int:
    """``python -m r2cnn.bench.gpu TASK CONTEXT RESULT``: run one task, leave its status and figures in RESULT."""
    task, context, result = argv
    ctx = Context(Path(context), Path(result))
    os.chdir(ctx.root)
    try:
        TASKS[task](ctx)
        status = "ran"
    except Skip as e:
        status = f"skipped: {e}"
    except Failed as e:
        status = f"failed: {e}"
    except BaseException as e:  # noqa: BLE001 - recorded as the section's failure, traceback in its log
        traceback.print_exc()
        status = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    ctx.write(status)
    print(f"\n== status: {status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
