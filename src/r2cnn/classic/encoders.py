"""Image -> fixed-length vector encoders ("blocks") of the classic rows, and how blocks are normalised and
weighted. Each block keeps its fitted state as plain arrays (:meth:`state` / :meth:`load`), never pickles.

- :class:`BagOfWords`: k-means vocabulary (scikit-learn ``MiniBatchKMeans`` on a sample of descriptors) and
  kernel-codebook soft assignment (Eitz et al. 2012: each descriptor spreads a Gaussian weight, ``sigma``, over
  the words), pooled over a spatial ``layout``: ``"global"`` (one histogram), ``"pyramid"`` (1x1 + 2x2, as in
  spatial pyramid matching) or ``"star"`` (a centre region and rings x sectors around the sketch's centre: the
  star-graph layout of Li et al. 2013).
- :class:`FisherVector`: PCA then a diagonal GMM (scikit-learn) on a sample of descriptors; the improved Fisher
  vector (Perronnin et al. 2010: gradients with respect to means and variances, power and L2 normalisation),
  as Schneider and Tuytelaars 2014 use it.
- :class:`GlobalHOG`, :class:`AlexNetFC7`: vectors computed directly from the image, nothing to fit.

Normalisations (``norm``): ``"l1"`` (histograms, for the RBF SVM of Eitz et al.), ``"hellinger"`` (square root then
L2: a linear SVM on it is a Hellinger-kernel SVM), ``"chi2"`` (scikit-learn's explicit additive chi-squared
feature map then L2: a linear SVM on it approximates a chi-squared kernel SVM), ``"l2"``, ``"power-l2"``.
"""

from __future__ import annotations

import numpy as np

from r2cnn.classic.features import AlexNetFeatures, describe, global_hog
from r2cnn.errors import R2CNNError

STAR_RINGS, STAR_SECTORS = 2, 4


def normalise(x: np.ndarray, how: str) -> np.ndarray:
    """Row-wise normalisation of ``(B, D)`` non-negative (or, for "l2"/"power-l2", any) features."""
    x = np.asarray(x, dtype=np.float32)
    if how == "none":
        return x
    if how == "l1":
        return x / np.maximum(np.abs(x).sum(1, keepdims=True), 1e-12)
    if how == "hellinger":
        x = np.sqrt(np.maximum(x, 0))
    elif how == "chi2":
        from sklearn.kernel_approximation import AdditiveChi2Sampler
        x = AdditiveChi2Sampler(sample_steps=2).fit_transform(np.maximum(x, 0)).astype(np.float32)
    elif how == "power-l2":
        x = np.sign(x) * np.sqrt(np.abs(x))
    elif how != "l2":
        raise R2CNNError(f"unknown normalisation {how!r}; known: none, l1, l2, hellinger, chi2, power-l2")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def layout_bins(pos: np.ndarray, layout: str) -> tuple[np.ndarray, int]:
    """Spatial bins of descriptor positions ``(n, 2)`` in [0, 1]: ``(bins (n, L) int, number of bins)``; a
    descriptor counts once in each of its L columns (L = 2 for the pyramid: its 1x1 and its 2x2 cell)."""
    n = len(pos)
    if layout == "global":
        return np.zeros((n, 1), np.int64), 1
    if layout == "pyramid":
        cell = np.minimum((pos * 2).astype(np.int64), 1)
        return np.stack([np.zeros(n, np.int64), 1 + cell[:, 1] * 2 + cell[:, 0]], axis=1), 5
    if layout == "star":
        # star graph: polar bins around the centre of the sketch's descriptors, radius relative to the sketch
        if n == 0:
            return np.zeros((0, 1), np.int64), 1 + STAR_RINGS * STAR_SECTORS
        d = pos - pos.mean(0)
        r = np.hypot(d[:, 0], d[:, 1])
        r = r / max(float(r.max()), 1e-6)
        ring = np.minimum((r * (STAR_RINGS + 1)).astype(np.int64), STAR_RINGS)  # 0 = centre
        sector = ((np.arctan2(d[:, 1], d[:, 0]) + np.pi) / (2 * np.pi) * STAR_SECTORS).astype(np.int64)
        sector = np.minimum(sector, STAR_SECTORS - 1)
        bins = np.where(ring == 0, 0, 1 + (ring - 1) * STAR_SECTORS + sector)
        return bins[:, None], 1 + STAR_RINGS * STAR_SECTORS
    raise R2CNNError(f"unknown spatial layout {layout!r}; known: global, pyramid, star")


def soft_assign(desc: np.ndarray, centres: np.ndarray, sigma: float) -> np.ndarray:
    """Kernel-codebook weights ``(n, V)``: softmax over words of ``-|d - c|^2 / (2 sigma^2)`` (rows sum to 1)."""
    d2 = (desc ** 2).sum(1)[:, None] - 2 * desc @ centres.T + (centres ** 2).sum(1)[None]
    logits = -np.maximum(d2, 0) / (2 * sigma ** 2)
    logits -= logits.max(1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(1, keepdims=True)


class Block:
    """An encoder: ``fit(samples)`` on local descriptors (when ``descriptor`` is set), ``encode(images)``."""

    descriptor: str | None = None
    descriptor_options: dict = {}

    def __init__(self, norm: str = "l2", **options):
        self.norm = norm

    def fit(self, samples: np.ndarray, seed: int) -> None:
        """``samples``: ``(n, d)`` local descriptors from training images (blocks with a ``descriptor``)."""

    def encode(self, images: np.ndarray) -> np.ndarray:
        """``(B, H, W)`` images -> ``(B, D)`` float32, normalised by ``norm``."""
        return normalise(np.stack([self.encode_one(im) for im in images]), self.norm)

    def encode_one(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`fit` learned from :meth:`state`'s arrays."""


class BagOfWords(Block):
    def __init__(self, descriptor: str = "hog", words: int = 500, sigma: float = 0.1, layout: str = "global",
                 descriptor_options: dict | None = None, norm: str = "l1"):
        super().__init__(norm)
        self.descriptor, self.descriptor_options = descriptor, dict(descriptor_options or {})
        self.words, self.sigma, self.layout = int(words), float(sigma), layout
        layout_bins(np.zeros((0, 2), np.float32), layout)  # validate
        self.centres: np.ndarray | None = None

    def fit(self, samples: np.ndarray, seed: int) -> None:
        from sklearn.cluster import MiniBatchKMeans

        if len(samples) < self.words:
            raise R2CNNError(f"{len(samples)} local descriptors cannot make a vocabulary of {self.words} words: "
                             "use more training sketches or fewer words")
        km = MiniBatchKMeans(self.words, random_state=seed, batch_size=4096, n_init=3).fit(samples)
        self.centres = km.cluster_centers_.astype(np.float32)

    def encode_one(self, image: np.ndarray) -> np.ndarray:
        desc, pos = describe(image, self.descriptor, self.descriptor_options)
        bins, n_bins = layout_bins(pos, self.layout)
        hist = np.zeros((n_bins, self.words), np.float32)
        if len(desc):
            weights = soft_assign(desc, self.centres, self.sigma)
            for level in range(bins.shape[1]):
                np.add.at(hist, bins[:, level], weights)
        return hist.ravel()

    def state(self) -> dict[str, np.ndarray]:
        return {"centres": self.centres}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.centres = state["centres"].astype(np.float32)


class FisherVector(Block):
    def __init__(self, descriptor: str = "sift", pca_dims: int = 64, gaussians: int = 256, layout: str = "global",
                 descriptor_options: dict | None = None, norm: str = "power-l2"):
        super().__init__(norm)
        self.descriptor, self.descriptor_options = descriptor, dict(descriptor_options or {})
        self.pca_dims, self.gaussians, self.layout = int(pca_dims), int(gaussians), layout
        layout_bins(np.zeros((0, 2), np.float32), layout)
        self.arrays: dict[str, np.ndarray] = {}

    def fit(self, samples: np.ndarray, seed: int) -> None:
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        if len(samples) < max(self.gaussians * 2, self.pca_dims):
            raise R2CNNError(f"{len(samples)} local descriptors are too few for a {self.gaussians}-component GMM")
        pca = PCA(self.pca_dims, random_state=seed).fit(samples)
        reduced = pca.transform(samples).astype(np.float64)
        # Sketches repeat the same local patterns (straight strokes, corners): many descriptors coincide, and a
        # component on such a cluster would have zero variance. A variance floor of 1e-3 of the data's average
        # variance (scale-free, unlike scikit-learn's absolute default) keeps every component well defined.
        floor = 1e-3 * float(reduced.var(0).mean())
        try:
            gmm = GaussianMixture(self.gaussians, covariance_type="diag", random_state=seed, max_iter=50,
                                  reg_covar=max(floor, 1e-6)).fit(reduced)
        except ValueError as e:
            raise R2CNNError(f"Fisher vector: the {self.gaussians}-component GMM could not be fitted ({e})") from e
        self.arrays = {"pca_mean": pca.mean_, "pca_components": pca.components_, "means": gmm.means_,
                       "variances": gmm.covariances_, "weights": gmm.weights_}
        self.arrays = {k: np.asarray(v, np.float32) for k, v in self.arrays.items()}

    def posteriors(self, x: np.ndarray) -> np.ndarray:
        """GMM responsibilities ``(n, K)`` of PCA-reduced descriptors ``(n, d)``, from the stored arrays."""
        a = self.arrays
        inv = 1.0 / a["variances"]
        log_p = (-0.5 * ((x ** 2) @ inv.T - 2 * x @ (a["means"] * inv).T + (a["means"] ** 2 * inv).sum(1))
                 - 0.5 * np.log(2 * np.pi * a["variances"]).sum(1) + np.log(a["weights"]))
        log_p -= log_p.max(1, keepdims=True)
        p = np.exp(log_p)
        return p / p.sum(1, keepdims=True)

    def fisher(self, x: np.ndarray) -> np.ndarray:
        """The Fisher vector ``(2 K d,)`` of reduced descriptors ``(n, d)`` (zeros for n = 0)."""
        a = self.arrays
        k, d = a["means"].shape
        if len(x) == 0:
            return np.zeros(2 * k * d, np.float32)
        gamma = self.posteriors(x)                                   # (n, K)
        sigma = np.sqrt(a["variances"])
        n = len(x)
        s0 = gamma.sum(0)[:, None]                                   # (K, 1)
        s1 = gamma.T @ x                                             # (K, d)
        s2 = gamma.T @ (x ** 2)                                      # (K, d)
        mu, var, w = a["means"], a["variances"], a["weights"][:, None]
        g_mu = (s1 - s0 * mu) / sigma / (n * np.sqrt(w))
        g_var = (s2 - 2 * s1 * mu + s0 * (mu ** 2 - var)) / var / (n * np.sqrt(2 * w))
        return np.concatenate([g_mu.ravel(), g_var.ravel()]).astype(np.float32)

    def encode_one(self, image: np.ndarray) -> np.ndarray:
        desc, pos = describe(image, self.descriptor, self.descriptor_options)
        x = (desc - self.arrays["pca_mean"]) @ self.arrays["pca_components"].T
        bins, n_bins = layout_bins(pos, self.layout)
        parts = [self.fisher(x[(bins == b).any(1)]) for b in range(n_bins)]
        return np.concatenate(parts)

    def state(self) -> dict[str, np.ndarray]:
        return dict(self.arrays)

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.arrays = {k: state[k].astype(np.float32) for k in ("pca_mean", "pca_components", "means",
                                                                 "variances", "weights")}


class GlobalHOG(Block):
    def __init__(self, size: int = 64, cell: int = 8, orientations: int = 9, norm: str = "chi2"):
        super().__init__(norm)
        self.options = dict(size=int(size), cell=int(cell), orientations=int(orientations))

    def encode_one(self, image: np.ndarray) -> np.ndarray:
        return global_hog(image, **self.options)


class AlexNetFC7(Block):
    """``weights``: a torchvision ``alexnet-*.pth`` (None: torch's hub cache). The resolved path is part of the
    model's configuration: the weights themselves are not copied into the model file."""

    def __init__(self, weights: str | None = None, norm: str = "l2"):
        super().__init__(norm)
        self.net = AlexNetFeatures(weights)
        self.weights = self.net.weights

    def encode(self, images: np.ndarray) -> np.ndarray:
        return normalise(self.net(images), self.norm)


BLOCKS = {"bow": BagOfWords, "fisher": FisherVector, "global-hog": GlobalHOG, "alexnet-fc7": AlexNetFC7}


def build_block(config: dict) -> Block:
    """A block from its preset entry ``{"kind": ..., options...}``."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in BLOCKS:
        raise R2CNNError(f"unknown feature block {kind!r}; known: {', '.join(BLOCKS)}")
    try:
        return BLOCKS[kind](**config)
    except TypeError as e:
        raise R2CNNError(f"feature block {kind!r}: {e}") from e


def alignment_weights(blocks: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Kernel weights learned by centred kernel-target alignment (Cortes, Mohri and Rostamizadeh 2012, "alignf"):
    ``blocks`` are the explicit feature maps ``(n, D_m)`` of M kernels ``K_m = X_m X_m^T`` on n training sketches;
    the weights ``v >= 0`` maximise the alignment of ``sum v_m K_m`` with the label kernel ``Y Y^T``, i.e. solve
    ``min v^T A v - 2 v^T a`` (A: centred kernels' Frobenius products, a: their products with ``Y Y^T``).
    -> ``(M,)`` weights summing to 1."""
    from scipy.optimize import nnls

    n = len(labels)
    y = (labels[:, None] == np.unique(labels)[None]).astype(np.float64)
    y -= y.mean(0)
    centred = [np.asarray(x, np.float64) - np.asarray(x, np.float64).mean(0) for x in blocks]  # K_c = Xc Xc^T
    kernels = [x @ x.T for x in centred]
    target = y @ y.T
    a = np.array([(k * target).sum() for k in kernels]) / n ** 2
    gram = np.array([[(ki * kj).sum() for kj in kernels] for ki in kernels]) / n ** 2
    chol = np.linalg.cholesky(gram + 1e-10 * np.trace(gram) * np.eye(len(blocks)))
    v, _ = nnls(chol.T, np.linalg.solve(chol, a))
    if v.sum() <= 0:
        return np.full(len(blocks), 1.0 / len(blocks))
    return v / v.sum()
