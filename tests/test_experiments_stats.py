"""Statistics of experiment rows against direct computations on small hand-made cases."""

import numpy as np
import pytest
from scipy.stats import binomtest

from r2cnn.experiments import stats


def test_bootstrap_matches_a_direct_loop_with_the_same_seed():
    values = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1], float)
    lo, hi = stats.bootstrap_mean_ci(values, resamples=1000, seed=7)
    rng = np.random.default_rng(7)
    means = [values[rng.integers(0, len(values), size=len(values))].mean() for _ in range(1000)]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert lo <= values.mean() <= hi


def test_bootstrap_degenerate_cases():
    assert stats.bootstrap_mean_ci(np.ones(5), resamples=50) == (1.0, 1.0)
    assert stats.bootstrap_mean_ci(np.full(4, -0.25), resamples=50) == (-0.25, -0.25)
    assert all(np.isnan(stats.bootstrap_mean_ci([], resamples=10)))


def test_bootstrap_of_two_values_enumerates():
    # resampling [0, 1] twice: means 0, 0.5, 0.5, 1 with probabilities 1/4, 1/2, 1/4 -> 2.5%/97.5% are 0 and 1
    assert stats.bootstrap_mean_ci([0.0, 1.0], resamples=4000) == (0.0, 1.0)


@pytest.mark.parametrize("b, c", [(1, 5), (0, 0), (3, 3), (0, 9), (12, 4), (40, 25)])
def test_mcnemar_exact_against_binomtest(b, c):
    a = np.array([True] * b + [False] * c + [True] * 7 + [False] * 2)
    r = np.array([False] * b + [True] * c + [True] * 7 + [False] * 2)
    out = stats.mcnemar_exact(a, r)
    assert (out["b"], out["c"]) == (b, c)
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert out["p"] == pytest.approx(expected)


def test_mcnemar_by_hand():
    # b=1, c=5: 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * 7/64
    out = stats.mcnemar_exact([1, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1])
    assert out["p"] == pytest.approx(14 / 64)


def _pred(seed, index, correct, fold=None):
    index = np.asarray(index)
    correct = np.asarray(correct, bool)
    label = np.zeros(len(index), np.int64)
    top5 = np.where(correct, 0, 1)[:, None]
    return dict(seed=seed, fold=fold, index=index, label=label, top5=top5, correct=correct,
                step_seconds=float("nan"), sketches_per_second=float("nan"))


def test_per_sketch_accuracy_averages_seeds_and_joins_folds():
    preds = [_pred(0, [4, 2], [1, 0], fold=1), _pred(0, [1, 3], [1, 1], fold=0),
             _pred(1, [1, 2, 3, 4], [0, 0, 1, 1])]
    index, p = stats.per_sketch(preds)
    assert index.tolist() == [1, 2, 3, 4]
    assert p.tolist() == [0.5, 0.0, 1.0, 1.0]
    s = stats.row_stats(preds, resamples=100)
    assert [r["top1"] for r in s["runs"]] == [0.5, 1.0, 0.5]
    assert s["top1_mean"] == pytest.approx(2 / 3)
    assert s["top1_std"] == pytest.approx(np.std([0.5, 1.0, 0.5], ddof=1))
    assert s["per_sketch_top1"] == pytest.approx(0.625) and s["test_sketches"] == 4


def test_paired_comparison_by_hand():
    row = [_pred(0, [0, 1, 2, 3], [1, 1, 1, 0]), _pred(1, [0, 1, 2, 3], [1, 0, 1, 0])]
    ref = [_pred(0, [3, 2, 1, 0], [0, 0, 0, 1])]  # by index: 0:1, 1:0, 2:0, 3:0
    out = stats.paired_stats(row, ref, resamples=500)
    # row per sketch: [1, 0.5, 1, 0]; ref: [1, 0, 0, 0]; d = [0, 0.5, 1, 0]
    assert out["diff"] == pytest.approx(0.375) and out["sketches"] == 4
    lo, hi = stats.bootstrap_mean_ci([0, 0.5, 1, 0], resamples=500)
    assert out["ci95"] == pytest.approx([lo, hi])
    # McNemar on the shared seed 0: row right / ref wrong on sketches 1 and 2 -> b=2, c=0
    assert out["mcnemar"] == [{"seed": 0, "reference_seed": 0, "b": 2, "c": 0, "p": pytest.approx(0.5)}]


def test_verdict():
    assert stats.verdict(-0.01, 0.02) == "within noise"
    assert stats.verdict(0.001, 0.02) == "better"
    assert stats.verdict(-0.03, -0.01) == "worse"
