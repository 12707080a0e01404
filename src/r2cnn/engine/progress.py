"""Progress lines: what a training run prints between epochs where no progress bar is drawn."""

from __future__ import annotations

import time

from r2cnn.engine.clock import Clock


PROGRESS_STEPS, PROGRESS_SECONDS = 50, 30.0


class ProgressLines:
    """Off a terminal the progress bar is not drawn, so a log file or CI output would show nothing between
    epochs: there, a line every ``every`` steps (None: every :data:`PROGRESS_STEPS` steps or
    :data:`PROGRESS_SECONDS` seconds) with the loss, accuracy and speed since the last line and the time left for
    the whole run (wall time per step so far, validation included; the time budget caps it)."""

    def __init__(self, enabled: bool, every: int | None, total_steps: int, start_step: int, clock: "Clock"):
        self.enabled = enabled and every != 0
        self.every, self.total_steps, self.start_step, self.clock = every, total_steps, start_step, clock
        self.start = self.last = time.perf_counter()
        self.loss = self.correct = self.n = 0.0

    def update(self, step: int, epoch: int, loss_sum: float, correct: float, n: float) -> None:
        if not self.enabled:
            return
        self.loss, self.correct, self.n = self.loss + loss_sum, self.correct + correct, self.n + n
        now = time.perf_counter()
        due = step % self.every == 0 if self.every else (step % PROGRESS_STEPS == 0
                                                         or now - self.last >= PROGRESS_SECONDS)
        if not due and step < self.total_steps:
            return
        left = (self.total_steps - step) * (now - self.start) / max(step - self.start_step, 1)
        if self.clock.budget is not None:
            left = min(left, max(self.clock.budget - (now - self.clock.start), 0.0))
        print(f"step {step}/{self.total_steps} (epoch {epoch}): loss {self.loss / self.n:.4f}, accuracy "
              f"{self.correct / self.n:.4f}, {self.n / max(now - self.last, 1e-9):.0f} sketches/s, "
              f"{_eta(left)} left", flush=True)
        self.last, self.loss, self.correct, self.n = now, 0.0, 0.0, 0.0


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
