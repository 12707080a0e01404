"""Statistics of an experiment's rows, from the kept test predictions (so they can always be recomputed).

Per row (sub-runs = seeds, or seeds x folds under the TU-Berlin protocol):

- top-1 (and top-5) per sub-run, their mean and sample standard deviation (ddof=1; none for one sub-run). Under
  TU-Berlin the mean over folds is the paper's figure.
- per-sketch correctness ``p_i``: for each test sketch, the fraction of the row's seeds that classify it correctly
  (under TU-Berlin each sketch is tested by exactly one fold per seed, so every sketch of the store counts once).
  The row's accuracy is ``mean(p)``; its 95% interval is a percentile bootstrap over test sketches (resampling
  ``p`` with replacement, ``resamples`` times, fixed seed): it covers the test-set noise, averaged over seeds.
- paired comparison with the reference row, on the test sketches both rows have: ``d_i = p_i - q_i``; the gain
  is ``mean(d)`` and its 95% interval a percentile bootstrap over sketches of ``mean(d)`` (same resampling).
  Averaging over seeds before resampling sketches makes rows with different numbers of seeds comparable and lets
  seed-to-seed variation shrink the per-sketch noise; the interval does not cover the choice of seeds beyond
  that (the per-seed spread is reported next to it).
- McNemar's exact test (two-sided binomial test of the discordant counts b, c with p = 1/2) for each seed both
  rows have (one training run against one, the test's setting); when they share none, their first seeds are
  paired. The table shows the largest p-value over those pairs: a difference is called significant only when
  every pairing says so.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 10000
BOOTSTRAP_SEED = 0
_CHUNK = 256  # resamples drawn at a time (memory: _CHUNK x N indices)


def bootstrap_mean_ci(values, *, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                      seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(values)``: ``resamples`` draws of N indices with replacement from
    ``np.random.default_rng(seed)`` (one ``integers(0, N, N)`` call per resample, in order). ``(nan, nan)`` for no
    values."""
    values = np.asarray(values, np.float64)
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        k = min(_CHUNK, resamples - start)
        means[start:start + k] = values[rng.integers(0, n, size=(k, n))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def mcnemar_exact(correct_a, correct_b) -> dict:
    """McNemar's exact test on paired outcomes: b = a right and b wrong, c = the reverse;
    p = min(1, 2 * P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2) (1 when b + c = 0)."""
    from scipy.stats import binom

    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b, c = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    p = 1.0 if b + c == 0 else min(1.0, 2.0 * float(binom.cdf(min(b, c), b + c, 0.5)))
    return {"b": b, "c": c, "p": p}


def per_seed_correctness(preds: list[dict]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """seed -> (sorted store indices, top-1 correct) over all of that seed's folds."""
    by_seed: dict[int, list[dict]] = {}
    for p in preds:
        by_seed.setdefault(p["seed"], []).append(p)
    out = {}
    for seed, runs in by_seed.items():
        index = np.concatenate([r["index"] for r in runs])
        correct = np.concatenate([r["correct"] for r in runs]).astype(bool)
        order = np.argsort(index, kind="stable")
        out[seed] = (index[order], correct[order])
    return out


def per_sketch(preds: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted store indices, p) with p the fraction of seeds that classify the sketch correctly; only sketches
    that every seed tested."""
    seeds = per_seed_correctness(preds)
    common = None
    for index, _ in seeds.values():
        common = index if common is None else np.intersect1d(common, index)
    total = np.zeros(len(common))
    for index, correct in seeds.values():
        total += correct[np.searchsorted(index, common)]
    return common, total / len(seeds)


def row_stats(preds: list[dict], *, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Accuracy per sub-run, mean, std, bootstrap interval and speed of one row (fractions, not percent)."""
    runs = []
    for p in preds:
        n = len(p["label"])
        top5 = (p["top5"] == p["label"][:, None]).any(axis=1) if n else np.zeros(0, bool)
        runs.append({"seed": p["seed"], "fold": p["fold"], "n": n, "top1": float(np.mean(p["correct"])) if n else
                     float("nan"), "top5": float(np.mean(top5)) if n else float("nan")})
    top1 = np.array([r["top1"] for r in runs])
    index, p = per_sketch(preds)
    lo, hi = bootstrap_mean_ci(p, resamples=resamples)
    steps = [x["step_seconds"] for x in preds if np.isfinite(x["step_seconds"])]
    rates = [x["sketches_per_second"] for x in preds if np.isfinite(x["sketches_per_second"])]
    return {"runs": runs, "top1_mean": float(top1.mean()), "top1_std": float(top1.std(ddof=1)) if len(top1) > 1
            else None, "top5_mean": float(np.mean([r["top5"] for r in runs])),
            "per_sketch_top1": float(p.mean()) if len(p) else float("nan"), "ci95": [lo, hi],
            "test_sketches": int(len(index)), "seeds": sorted({r["seed"] for r in runs}),
            "step_seconds": float(np.mean(steps)) if steps else None,
            "sketches_per_second": float(np.mean(rates)) if rates else None}


def paired_stats(preds: list[dict], ref_preds: list[dict], *, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """This row minus the reference on the test sketches both have: mean difference, bootstrap interval, McNemar."""
    index, p = per_sketch(preds)
    ref_index, q = per_sketch(ref_preds)
    common, ia, ib = np.intersect1d(index, ref_index, return_indices=True)
    d = p[ia] - q[ib]
    lo, hi = bootstrap_mean_ci(d, resamples=resamples)
    seeds, ref_seeds = per_seed_correctness(preds), per_seed_correctness(ref_preds)
    shared = sorted(set(seeds) & set(ref_seeds))
    pairs = [(s, s) for s in shared] or [(min(seeds), min(ref_seeds))]
    tests = []
    for s, r in pairs:
        (ix, cx), (iy, cy) = seeds[s], ref_seeds[r]
        both, ja, jb = np.intersect1d(ix, iy, return_indices=True)
        tests.append({"seed": s, "reference_seed": r, **mcnemar_exact(cx[ja], cy[jb])})
    return {"sketches": int(len(common)), "diff": float(d.mean()) if len(d) else float("nan"), "ci95": [lo, hi],
            "mcnemar": tests, "mcnemar_p_max": max(t["p"] for t in tests),
            "verdict": verdict(lo, hi)}


def verdict(lo: float, hi: float) -> str:
    """"within noise" when the paired interval contains 0, else "better" / "worse" than the reference."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0.0 <= hi:
        return "within noise"
    return "better" if lo > 0 else "worse"
