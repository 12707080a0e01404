"""Presets of the paper's Table 1 rows before Sketch-a-Net v2 (merged into :data:`r2cnn.presets.PRESETS`).

Classic rows (``"runner": "classic"``, trained by :class:`r2cnn.classic.runner.ClassicRunner`):

- ``canvas``, ``eps``, ``eval_transform``: how sketches are rasterised (the NLR at constant intensity);
- ``fit_images``, ``max_descriptors``: the sample the vocabularies / PCA / GMM are fitted on;
- ``blocks``: feature encoders (:func:`r2cnn.classic.encoders.build_block`), ``combine``: "concat" or "mkl";
- ``classifier``: ``{"kind": "rbf-svm", "C", "gamma"}``, ``{"kind": "linear-svm", "alpha", "epochs"}`` or
  ``{"kind": "ensemble", "members", "alpha", "epochs"}``; ``chunk``: sketches per batch of images.

Neural rows (LeNet, AlexNet-Sketch, Sketch-a-Net v1) are ordinary presets of ``r2cnn train``; their original
papers train from scratch on TU-Berlin, so they use a learning rate for training from scratch (ours).

``tub-*``: TU-Berlin scale (a 256 canvas for local features as in Eitz et al., vocabularies of 500 words, GMMs
of 256 Gaussians, 224/225 canvases for AlexNet and Sketch-a-Net); ``cpu-*``: small twins for a laptop (64x64
canvas, 64 words, 16 Gaussians, few epochs). ``docs/table1.md`` says where each row is simpler than its paper.
"""

from __future__ import annotations

import copy

# Local descriptors at 256x256: 32-pixel patches (1/8 of the canvas, Eitz et al.) every 8 pixels (29 x 29 = 841
# positions, Eitz et al. sample 28 x 28). At 64x64: 16-pixel patches every 4 pixels (13 x 13).
_HOG = {256: dict(cell=8, orientations=4, block=4), 64: dict(cell=4, orientations=4, block=4)}
_SIFT = {256: dict(step=8, patch=32), 64: dict(step=4, patch=16)}


def _classic(description: str, canvas: int, blocks: list, classifier: dict, *, combine: str = "concat",
             tuberlin: bool) -> dict:
    return dict(runner="classic", description=description, canvas=canvas, eps=1.0,
                eval_transform={"max_points": 448} if tuberlin else {},
                fit_images=2000 if tuberlin else 300, max_descriptors=200_000 if tuberlin else 20_000,
                blocks=blocks, combine=combine, classifier=classifier, chunk=256, align_sketches=2000)


def _classic_rows(prefix: str, tuberlin: bool) -> dict[str, dict]:
    canvas = 256 if tuberlin else 64
    words = 500 if tuberlin else 64
    epochs = 10 if tuberlin else 5
    hog, sift = _HOG[canvas], _SIFT[canvas]
    where = "TU-Berlin" if tuberlin else "fast CPU"
    linear = dict(kind="linear-svm", alpha=1e-4, epochs=epochs)
    bow = lambda desc, opts, layout, norm: dict(kind="bow", descriptor=desc, descriptor_options=opts,  # noqa: E731
                                                words=words, sigma=0.2, layout=layout, norm=norm)
    return {
        f"{prefix}-hog-svm": _classic(
            f"{where}: HOG-SVM (Eitz et al. 2012; Table 1): dense HOG, soft bag of {words} words, RBF SVM", canvas,
            [bow("hog", hog, "global", "l1")], dict(kind="rbf-svm", C=10.0, gamma="scale"), tuberlin=tuberlin),
        f"{prefix}-ensemble-matching": _classic(
            f"{where}: Ensemble matching of structured features (Li et al. 2013; Table 1): star-graph HOG "
            "words, per-class k-means ensemble of linear SVMs", canvas,
            [bow("hog", hog, "star", "hellinger")], dict(linear, kind="ensemble", members=4 if tuberlin else 3),
            tuberlin=tuberlin),
        f"{prefix}-mkl-svm": _classic(
            f"{where}: MKL-SVM (Li et al. 2015; Table 1): HOG and SIFT words (pyramids) and global HOG, chi2 "
            "kernels weighted by alignment, SVM", canvas,
            [bow("hog", hog, "pyramid", "chi2"), bow("sift", sift, "pyramid", "chi2"),
             dict(kind="global-hog", size=64 if tuberlin else 32, cell=8, orientations=9, norm="chi2")],
            linear, combine="mkl", tuberlin=tuberlin),
        f"{prefix}-fisher-vector": _classic(
            f"{where}: Fisher vectors (Schneider and Tuytelaars 2014; Table 1): dense SIFT, PCA, GMM Fisher "
            "vector, power + L2, linear SVM", canvas,
            [dict(kind="fisher", descriptor="sift", descriptor_options=sift, pca_dims=64 if tuberlin else 32,
                  gaussians=256 if tuberlin else 16, layout="global", norm="power-l2")],
            linear, tuberlin=tuberlin),
        f"{prefix}-alexnet-svm": _classic(
            f"{where}: AlexNet-SVM (Table 1): ImageNet AlexNet fc7 features, linear SVM (needs torchvision's "
            "alexnet-*.pth)", 224 if tuberlin else 64,
            [dict(kind="alexnet-fc7", weights=None, norm="l2")], linear, tuberlin=tuberlin),
    }


def table1_presets(tuberlin: dict, cpu: dict) -> dict[str, dict]:
    """The classic and early deep rows of Table 1: ``tub-*`` (from the TU-Berlin base preset ``tuberlin``) and
    ``cpu-*`` twins (from the CPU base ``cpu``); the bases are :mod:`r2cnn.presets`' own."""
    presets: dict[str, dict] = {}
    for prefix, base, is_tub in (("tub", tuberlin, True), ("cpu", cpu, False)):
        presets.update(_classic_rows(prefix, is_tub))
        where = "TU-Berlin" if is_tub else "fast CPU"
        for suffix, model, row, options, lr in (
                ("lenet", "cnn-lenet", "LeNet (Table 1), 32x32", {}, 1e-3),
                ("alexnet-sketch", "cnn-alexnet", "AlexNet-Sketch (Table 1): AlexNet trained on sketches",
                 {} if is_tub else {"canvas": 64}, 1e-4),
                ("sketchanet-v1", "cnn-sketchanet-v1", "Sketch-a-Net v1 (Yu et al. 2015; Table 1), one scale",
                 {}, 1e-4 if is_tub else 1e-3)):
            preset = copy.deepcopy(base)
            preset.update(description=f"{where}: {row}", model=model, model_options=options, lr=lr)
            presets[f"{prefix}-{suffix}"] = preset
    return presets
