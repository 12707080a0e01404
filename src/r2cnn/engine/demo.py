"""Where ``r2cnn demo`` leaves its runs, and so the checkpoint that ``r2cnn serve`` and ``r2cnn bench serve`` use
when none is given: one place, below the commands that share it."""

from __future__ import annotations

from pathlib import Path

from r2cnn.errors import R2CNNError

DEMO_OUT = Path("runs") / "demo"  # `r2cnn demo`'s default --out
DEMO_CHECKPOINT = DEMO_OUT / "r2cnn" / "best.pt"  # its R2CNN model's best checkpoint


def default_checkpoint() -> Path:
    """The demo's checkpoint, or a one-line error saying how to make one."""
    if not DEMO_CHECKPOINT.is_file():
        raise R2CNNError(f"no --checkpoint given and {DEMO_CHECKPOINT} does not exist: run `r2cnn demo` "
                         f"(or `make demo`) to train one, or pass --checkpoint PATH")
    return DEMO_CHECKPOINT
