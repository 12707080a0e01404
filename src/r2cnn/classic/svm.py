"""SVMs of the classic rows, fitted with scikit-learn and kept as arrays (the model file holds no pickles).

- :class:`LinearSVM`: one-vs-rest linear SVMs (hinge loss) trained by averaged stochastic gradient descent
  (scikit-learn's ``SGDClassifier.partial_fit``) over chunks of a feature matrix that may live on disk, so
  memory does not grow with the number of sketches (Perronnin et al. 2010 train their Fisher-vector SVMs the
  same way). Scores: ``X @ coef.T + intercept``.
- :class:`KernelSVM`: scikit-learn's ``SVC`` (libsvm, one-vs-one) with an RBF kernel, stored as support vectors,
  dual coefficients and intercepts; scores are recomputed from them exactly as ``SVC.decision_function`` with
  ``decision_function_shape="ovr"`` does (votes plus a confidence in (-1/3, 1/3)).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from r2cnn.errors import R2CNNError


class LinearSVM:
    MAX_CHUNK_VALUES = 1 << 24  # scikit-learn works on float64 copies: 128 MB a chunk, whatever the dimension

    def __init__(self, alpha: float = 1e-4, epochs: int = 10, chunk: int = 2048):
        self.alpha, self.epochs, self.chunk = float(alpha), int(epochs), int(chunk)
        self.coef: np.ndarray | None = None       # (K, D)
        self.intercept: np.ndarray | None = None  # (K,)

    def fit(self, rows: Callable[[np.ndarray], np.ndarray], labels: np.ndarray, num_classes: int,
            seed: int) -> None:
        """``rows(index_array) -> (len, D)`` features of those training rows; ``labels`` ``(n,)`` in
        ``[0, num_classes)``. Each epoch visits the rows in a new seeded order, ``chunk`` rows at a time (fewer
        for wide features: at most ``MAX_CHUNK_VALUES`` values)."""
        from sklearn.linear_model import SGDClassifier

        if len(np.unique(labels)) < 2:
            raise R2CNNError("a linear SVM needs training sketches of at least two classes")
        sgd = SGDClassifier(loss="hinge", alpha=self.alpha, average=True, random_state=seed)
        rng = np.random.default_rng(seed)
        classes = np.arange(num_classes)
        width = rows(np.arange(1)).shape[1]
        chunk = max(16, min(self.chunk, self.MAX_CHUNK_VALUES // max(width, 1)))
        for _ in range(self.epochs):
            order = rng.permutation(len(labels))
            for start in range(0, len(order), chunk):
                part = np.sort(order[start:start + chunk])  # sorted: contiguous reads from a memory map
                sgd.partial_fit(rows(part), labels[part], classes=classes)
        coef, intercept = sgd.coef_.astype(np.float32), sgd.intercept_.astype(np.float32)
        if num_classes == 2:  # scikit-learn keeps one hyperplane for two classes
            coef, intercept = np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept])
        self.coef, self.intercept = coef, intercept

    def scores(self, x: np.ndarray) -> np.ndarray:
        """``(B, D)`` -> ``(B, K)``."""
        return np.asarray(x, np.float32) @ self.coef.T + self.intercept

    def state(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "intercept": self.intercept}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.coef, self.intercept = state["coef"], state["intercept"]


class KernelSVM:
    """RBF-kernel SVM; ``gamma`` a number or "scale" (1 / (D * var(X)), scikit-learn's default)."""

    MAX_TRAIN_VALUES = 200_000_000  # libsvm holds the training matrix in memory as float64 (1.6 GB here)

    def __init__(self, C: float = 10.0, gamma: float | str = "scale"):
        self.C, self.gamma = float(C), gamma
        self.arrays: dict[str, np.ndarray] = {}

    def fit(self, x: np.ndarray, labels: np.ndarray, num_classes: int, seed: int) -> None:
        from sklearn.svm import SVC

        if x.size > self.MAX_TRAIN_VALUES:
            raise R2CNNError(f"kernel SVM: {x.shape[0]} x {x.shape[1]} training features exceed the memory bound; "
                             "use a smaller vocabulary or a linear SVM")
        svc = SVC(C=self.C, kernel="rbf", gamma=self.gamma, decision_function_shape="ovr", random_state=seed,
                  cache_size=500).fit(np.asarray(x, np.float64), labels)
        self.arrays = {"support_vectors": svc.support_vectors_.astype(np.float32),
                       "dual_coef": svc.dual_coef_.astype(np.float32),
                       "intercept": svc.intercept_.astype(np.float32),
                       "n_support": svc.n_support_.astype(np.int64),
                       "classes": svc.classes_.astype(np.int64),
                       "gamma": np.array([svc._gamma], np.float64),
                       "num_classes": np.array([num_classes], np.int64)}
        self._svc = svc  # kept for tests that compare with scikit-learn's own decision function

    def pairwise_decisions(self, x: np.ndarray) -> np.ndarray:
        """libsvm's one-vs-one decision values ``(B, P)`` for pairs (i, j), i < j, in libsvm's order; positive
        means class i. Support vectors of class c have ``dual_coef`` rows for each opponent (row ``d`` for
        opponent d < c, ``d - 1`` for d > c)."""
        a = self.arrays
        sv, coef = a["support_vectors"], a["dual_coef"].astype(np.float64)
        x = np.asarray(x, np.float64)
        d2 = (x ** 2).sum(1)[:, None] - 2 * x @ sv.T.astype(np.float64) + (sv.astype(np.float64) ** 2).sum(1)[None]
        kernel = np.exp(-a["gamma"][0] * np.maximum(d2, 0))                  # (B, n_sv)
        starts = np.concatenate([[0], np.cumsum(a["n_support"])])
        k = len(a["n_support"])
        # part[c][:, r]: contribution of class c's support vectors through dual_coef row r
        part = [kernel[:, starts[c]:starts[c + 1]] @ coef[:, starts[c]:starts[c + 1]].T for c in range(k)]
        out = []
        for i in range(k):
            for j in range(i + 1, k):
                out.append(part[i][:, j - 1] + part[j][:, i])
        dec = np.stack(out, axis=1) + a["intercept"]
        # for two classes scikit-learn stores the negated libsvm coefficients (positive = second class)
        return -dec if k == 2 else dec

    def scores(self, x: np.ndarray) -> np.ndarray:
        """``(B, D)`` -> ``(B, K)``: one-vs-one votes plus scikit-learn's bounded confidence tie-breaker, over
        all ``num_classes`` (classes without training sketches score -inf)."""
        a = self.arrays
        dec = self.pairwise_decisions(x)
        k = len(a["n_support"])
        votes = np.zeros((len(dec), k))
        confidence = np.zeros((len(dec), k))
        p = 0
        for i in range(k):
            for j in range(i + 1, k):
                votes[:, i] += dec[:, p] >= 0  # libsvm: class i wins ties
                votes[:, j] += dec[:, p] < 0
                confidence[:, i] += dec[:, p]
                confidence[:, j] -= dec[:, p]
                p += 1
        local = votes + confidence / (3 * (np.abs(confidence) + 1))
        out = np.full((len(dec), int(a["num_classes"][0])), -np.inf)
        out[:, a["classes"]] = local
        return out

    def state(self) -> dict[str, np.ndarray]:
        return dict(self.arrays)

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.arrays = dict(state)
