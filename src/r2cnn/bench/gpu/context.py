"""What each section's process gets (:class:`Context`: the run's settings, the scratch folder, the figures it
records) and how a section ends other than by running (:class:`Skip`, :class:`Failed`)."""

from __future__ import annotations

import json
from pathlib import Path

from r2cnn.bench.gpu.plan import Sizes


class Skip(Exception):
    """The section cannot run here; its message is the reason."""


class Failed(Exception):
    """A check of the section failed; its message says which."""


class Context:
    """What a section process gets: the run's settings, the scratch folder, and ``record(**figures)`` (written to
    the result file at once, so a section stopped at its cap keeps what it had measured)."""

    def __init__(self, context: Path, result: Path):
        data = json.loads(context.read_text())
        self.device: str = data["device"]
        self.quick: bool = data["quick"]
        self.work = Path(data["work"])
        self.root = Path(data["root"])
        self.cuda_tests: list[str] | None = data.get("cuda_tests")
        self.collection_errors: list[str] = data.get("collection_errors", [])
        self.sizes = Sizes.of(self.quick)
        self.result = result
        self.figures: dict = {}

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def record(self, **figures) -> None:
        self.figures.update(figures)
        self.write("running")

    def write(self, status: str) -> None:
        self.result.write_text(json.dumps({"status": status, "figures": self.figures}, indent=1, default=str))

    def require_cuda(self) -> None:
        import torch

        if self.cuda and not torch.cuda.is_available():
            raise Failed(f"torch {torch.__version__} sees no CUDA device (torch.version.cuda = {torch.version.cuda})")
