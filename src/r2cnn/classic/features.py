"""Local and global features of rasterised sketches (images ``(H, W)`` float32, strokes 1, background 0).

Local descriptors are sampled on a dense grid (Eitz et al. 2012 sample 28x28 points; Schneider and Tuytelaars
2014 use dense SIFT) and come with their positions, as fractions of the canvas, for spatial layouts. Patches
without any stroke give an all-zero descriptor and are dropped, so that blank paper does not dominate the
vocabulary.

- :func:`hog_descriptors`: HOG (scikit-image's cell histograms); each block of ``block x block`` cells with ``orientations`` bins
  is one local descriptor (Eitz et al.: 4x4 cells, 4 orientations, patches 1/8 of the canvas).
- :func:`sift_descriptors`: OpenCV's SIFT computed at grid key points (128 values).
- :func:`global_hog`: one HOG vector of the whole image, resized (a holistic shape feature).
- :class:`AlexNetFeatures`: the fc7 activations of ImageNet AlexNet (AlexNet-SVM).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from r2cnn.errors import MissingResource, R2CNNError

_EMPTY = 1e-6


def hog_descriptors(image: np.ndarray, cell: int = 8, orientations: int = 4, block: int = 4
                    ) -> tuple[np.ndarray, np.ndarray]:
    """-> ``(descriptors (n, block*block*orientations) float32, positions (n, 2) float32 (x, y) in [0, 1])``;
    one descriptor per block position (stride one cell), L2-Hys normalised.

    scikit-image computes the cell orientation histograms (asked for one block spanning the image, so that its
    per-block Python loop runs once and the cells keep their relative magnitudes); the overlapping blocks are
    then cut and normalised here with array operations, as ``hog(..., block_norm="L2-Hys")`` would."""
    from skimage.feature import hog

    h, w = image.shape
    rows, cols = h // cell, w // cell
    cells = hog(image, orientations=orientations, pixels_per_cell=(cell, cell), cells_per_block=(rows, cols),
                block_norm="L1", feature_vector=False)[0, 0]                      # (rows, cols, orientations)
    windows = np.lib.stride_tricks.sliding_window_view(cells, (block, block), axis=(0, 1))
    n_r, n_c = windows.shape[:2]
    # (n_r, n_c, O, block, block) -> scikit-image's block layout (n_r, n_c, block, block, O)
    desc = windows.transpose(0, 1, 3, 4, 2).reshape(n_r * n_c, -1).astype(np.float32)
    keep = np.abs(desc).sum(1) > _EMPTY
    desc = desc[keep]
    desc = desc / np.sqrt((desc ** 2).sum(1, keepdims=True) + 1e-10)             # L2-Hys: L2, clip, L2
    desc = np.minimum(desc, 0.2)
    desc = desc / np.sqrt((desc ** 2).sum(1, keepdims=True) + 1e-10)
    r, c = np.meshgrid(np.arange(n_r), np.arange(n_c), indexing="ij")
    pos = np.stack([(c.ravel() + block / 2) * cell / w, (r.ravel() + block / 2) * cell / h], axis=1)
    return desc, pos[keep].astype(np.float32)


@lru_cache(maxsize=8)
def _grid(h: int, w: int, step: int, size: int) -> np.ndarray:
    half = size / 2
    ys, xs = np.arange(half, h - half + 1e-9, step), np.arange(half, w - half + 1e-9, step)
    return np.array([(x, y) for y in ys for x in xs], dtype=np.float32)


@lru_cache(maxsize=1)
def _sift():
    import cv2
    return cv2.SIFT_create()


def sift_descriptors(image: np.ndarray, step: int = 8, patch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Dense SIFT: OpenCV descriptors at grid points ``step`` pixels apart, each covering ``patch`` x ``patch``
    pixels (its 4x4 spatial bins). -> ``(descriptors (n, 128) float32, positions (n, 2) in [0, 1])``."""
    import cv2

    h, w = image.shape
    grid = _grid(h, w, step, patch)
    # OpenCV's SIFT bins are 3 * (size / 2) pixels wide, so 4 bins cover 6 * size pixels
    keypoints = [cv2.KeyPoint(float(x), float(y), patch / 6) for x, y in grid]
    keypoints, desc = _sift().compute((image * 255).astype(np.uint8), keypoints)
    if desc is None or not len(keypoints):
        return np.zeros((0, 128), np.float32), np.zeros((0, 2), np.float32)
    pos = np.array([k.pt for k in keypoints], dtype=np.float32) / np.array([w, h], dtype=np.float32)
    keep = np.linalg.norm(desc, axis=1) > _EMPTY
    return desc[keep].astype(np.float32), pos[keep]


DESCRIPTORS = {"hog": hog_descriptors, "sift": sift_descriptors}


def describe(image: np.ndarray, name: str, options: dict) -> tuple[np.ndarray, np.ndarray]:
    """The local descriptors ``name`` ("hog" or "sift") of one image with keyword ``options``."""
    if name not in DESCRIPTORS:
        raise R2CNNError(f"unknown local descriptor {name!r}; known: {', '.join(DESCRIPTORS)}")
    return DESCRIPTORS[name](image, **options)


def global_hog(image: np.ndarray, size: int = 64, cell: int = 8, orientations: int = 9) -> np.ndarray:
    """HOG of the whole image resized to ``size`` x ``size`` (area averaging), 2x2-cell blocks -> ``(D,)``."""
    import cv2
    from skimage.feature import hog

    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return hog(small, orientations=orientations, pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
               block_norm="L2-Hys", feature_vector=True).astype(np.float32)


class AlexNetFeatures:
    """ImageNet AlexNet's fc7 activations (after ReLU, 4096 values) of sketch images.

    The sketch is drawn dark on white, as ImageNet photos of drawings are, and normalised with ImageNet's mean
    and standard deviation averaged over the RGB channels; the first convolution's RGB kernels are summed
    (:func:`r2cnn.pretrained.load_pretrained`), so the grey image gets the response of its RGB copy.
    ``weights``: a torchvision ``alexnet-*.pth`` file, or None for torch's hub cache (never downloaded)."""

    MEAN, STD = 0.449, 0.226

    def __init__(self, weights: str | None = None, batch_size: int = 64):
        import torch

        from r2cnn.pretrained import find_imagenet_weights, torchvision_trunk

        self.weights = str(Path(weights)) if weights else str(find_imagenet_weights("alexnet")[0])
        if not Path(self.weights).is_file():
            raise MissingResource(f"AlexNet weights file not found: {self.weights} (nothing is downloaded)")
        self.net = torchvision_trunk("alexnet", 1, pretrained=self.weights)[0].eval()
        self.batch_size = batch_size
        self._torch = torch

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``(B, H, W)`` sketch images -> ``(B, 4096)`` float32."""
        torch = self._torch
        out = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                x = torch.from_numpy(1.0 - images[start:start + self.batch_size])[:, None]
                out.append(torch.flatten(self.net((x - self.MEAN) / self.STD), 1).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 4096), np.float32)
