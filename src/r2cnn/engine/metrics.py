"""Classification metrics accumulated over batches: top-k counts and the confusion matrix.

Everything is kept as integer counts so that distributed ranks can simply sum them
(:meth:`ClassificationMetrics.all_reduce`) before the ratios are taken.
"""

from __future__ import annotations

import torch

from r2cnn.engine.distributed import all_reduce_sum


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """Number of samples whose label is among the k highest logits, for each k.

    logits ``(B, K)``, labels ``(B,)`` -> int64 ``(len(ks),)``; a k above K counts as K.
    """
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # (B, kmax), best first
    hit = top == labels[:, None]
    return torch.stack([hit[:, :min(k, kmax)].any(dim=1).sum() for k in ks]).to(torch.int64)


class ClassificationMetrics:
    """Top-1 / top-5 accuracy, per-class accuracy and the confusion matrix over K classes.

    ``confusion[t, p]`` counts samples of true class t predicted as p (rows: truth).
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.top5 = torch.zeros((), dtype=torch.int64)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits, labels = logits.detach().float().cpu(), labels.cpu()
        pred = logits.argmax(dim=1)
        self.confusion += torch.bincount(labels * self.num_classes + pred,
                                         minlength=self.num_classes ** 2).view(self.num_classes, self.num_classes)
        self.top5 += topk_correct(logits, labels, (5,))[0]

    def all_reduce(self) -> "ClassificationMetrics":
        """Sum the counts over distributed ranks (no-op in one process)."""
        packed = torch.cat([self.confusion.flatten(), self.top5.view(1)])
        all_reduce_sum(packed)
        self.confusion = packed[:-1].view(self.num_classes, self.num_classes)
        self.top5 = packed[-1]
        return self

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def top1(self) -> float:
        return float(self.confusion.diagonal().sum()) / max(self.count, 1)

    @property
    def top5_accuracy(self) -> float:
        return float(self.top5) / max(self.count, 1)

    def per_class(self) -> list[float | None]:
        """Recall of each class (None for a class without samples in the split)."""
        totals = self.confusion.sum(dim=1)
        return [float(self.confusion[k, k]) / int(totals[k]) if totals[k] else None for k in range(self.num_classes)]

    def summary(self) -> dict:
        return {"top1": self.top1, "top5": self.top5_accuracy, "count": self.count}
