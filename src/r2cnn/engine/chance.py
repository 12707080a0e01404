"""Is a result within noise of chance? ``train``, ``evaluate`` and ``demo`` print one warning line when it is.

A model that guesses is right on each sketch with probability 1/K (K classes). Over n sketches its top-1 is then
within ``1/K + 1.96 sqrt((1/K)(1 - 1/K)/n)`` 95 % of the time (normal approximation of the binomial); a top-1 at or
below that bound cannot be told from guessing. (On balanced classes, always answering one class also scores 1/K.)
"""

from __future__ import annotations

import math

Z95 = 1.96


def chance_bound(count: int, num_classes: int) -> float:
    """The top-1 a guessing model stays under 95 % of the time over ``count`` sketches of ``num_classes``."""
    p = 1.0 / num_classes
    return p + Z95 * math.sqrt(p * (1.0 - p) / count)


def chance_warning(top1: float, count: int, num_classes: int, *, what: str, causes: str) -> str | None:
    """One line when ``top1`` over ``count`` sketches is within noise of chance, else None (also with fewer than
    two classes or no sketch). ``what`` names the result ("valid top-1 of runs/x/best.pt"), ``causes`` says what
    to check."""
    if num_classes < 2 or count < 1:
        return None
    bound = chance_bound(count, num_classes)
    if top1 > bound:
        return None
    return (f"warning: {what} {top1:.4f} over {count} sketches is within noise of chance (1/{num_classes} = "
            f"{1 / num_classes:.4f}, 95% bound {bound:.4f}): {causes}")
