"""A training run's wall clock against its optional time budget (``max_minutes``)."""

from __future__ import annotations

import time


class Clock:
    """Rank 0's wall clock against an optional budget; the fraction used travels with the step's all-reduce
    so that every rank stops (and anneals its learning rate) at the same step."""

    def __init__(self, max_minutes: float | None, is_main: bool):
        self.budget = max_minutes * 60.0 if max_minutes else None
        self.start = time.perf_counter()
        self.is_main = is_main

    def fraction(self) -> float:
        if self.budget is None or not self.is_main:
            return 0.0
        return (time.perf_counter() - self.start) / self.budget
