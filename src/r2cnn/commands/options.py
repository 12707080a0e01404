"""Option types and options shared by the commands, checked where argparse parses them.

A bad value is refused by argparse with the option's name (``argument --lr: must be > 0, not -1``), which the
command line prints as one line; nothing downstream sees it.
"""

from __future__ import annotations

import argparse
import math

DEVICES = ("auto", "cpu", "cuda")


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (epochs, steps, batch size, top-k)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (worker processes, "every N steps" where 0 means never)."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rate, minutes)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda``, the same default and meaning in every command."""
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where the model runs: auto is cuda when a CUDA device is available, else cpu")


def resolve_device(name: str) -> str:
    """``--device`` as a torch device name; asking for CUDA where there is none is the user's error."""
    import torch

    from r2cnn.errors import R2CNNError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise R2CNNError("--device cuda: no CUDA device is available")
    return name
