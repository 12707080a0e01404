"""Tests for r2cnn.data.builtin: the procedural sketch generator (the project's embedded default data)."""

import numpy as np
import pytest

from r2cnn.data import builtin
from r2cnn.errors import R2CNNError


@pytest.fixture(scope="module")
def sketches():
    return builtin.generate(30, seed=0)


def _raster(sketch, n=32):
    """A blurred 32x32 image drawn by OpenCV, a line drawer independent of this project (the `test` extra)."""
    import cv2

    img = np.zeros((n, n), np.uint8)
    for stroke in sketch.strokes():
        cv2.polylines(img, [np.rint(stroke * (n - 1) / 255).astype(np.int32)], False, 255, 1)
    return cv2.GaussianBlur(img, (3, 3), 0).ravel().astype(np.float32) / 255


def test_classes():
    assert len(builtin.CLASSES) >= 10
    assert len(set(builtin.CLASSES)) == len(builtin.CLASSES)


def test_generate_shapes_labels_and_grid(sketches):
    assert len(sketches) == 30 * len(builtin.CLASSES)
    assert [s.label for s in sketches[::30]] == builtin.CLASSES
    for s in sketches:
        xy = s.points[:, :2]
        assert s.points.dtype == np.float32 and s.num_points >= 2
        np.testing.assert_array_equal(xy, np.rint(xy))  # ints, like Quick, Draw! simplified
        assert xy.min() >= 0 and xy.max() <= 255
        assert s.points[-1, 2] == 1
        assert s.meta["source"] == "builtin" and s.meta["seed"] == 0
    keys = [s.meta["key_id"] for s in sketches]
    assert len(set(keys)) == len(keys)
    assert keys[31] == builtin.key_id(0, 1, 1)


def test_generate_is_deterministic_and_prefix_stable(sketches):
    again = builtin.generate(30, seed=0)
    for a, b in zip(sketches, again):
        np.testing.assert_array_equal(a.points, b.points)
        assert a.meta == b.meta
    fewer = builtin.generate(5, seed=0, classes=["house"])
    house = builtin.CLASSES.index("house") * 30
    for i, s in enumerate(fewer):  # sketch i of a class does not depend on how many were asked for
        np.testing.assert_array_equal(s.points, sketches[house + i].points)
    lazy = builtin.iterate(30, seed=0)
    assert all(np.array_equal(a.points, b.points) for a, b in zip(sketches, lazy))
    other = builtin.generate(30, seed=1)
    assert sum(np.array_equal(a.points, b.points) for a, b in zip(sketches, other)) == 0
    assert not set(s.meta["key_id"] for s in other) & set(s.meta["key_id"] for s in sketches)


def test_variation_within_classes(sketches):
    for c, name in enumerate(builtin.CLASSES):
        group = sketches[30 * c:30 * (c + 1)]
        assert len({s.num_points for s in group}) >= 8, name
        if name != "spiral":  # mostly a single stroke by nature
            assert len({s.num_strokes for s in group}) >= 3, name
        # stroke order varies too: the first stroke's point count is not always the same
        assert len({len(s.strokes()[0]) for s in group}) >= 5, name


def test_classes_distinguishable_but_not_trivial():
    """Nearest class centroid on 32x32 rasters: far above chance (1/12) but well short of perfect (measured
    0.83 with these sizes; a small CNN reaches about 0.96, see docs/builtin-data.md)."""
    train, test = builtin.generate(60, seed=10), builtin.generate(20, seed=11)
    k = len(builtin.CLASSES)
    xtr, xte = np.stack([_raster(s) for s in train]), np.stack([_raster(s) for s in test])
    ytr, yte = np.repeat(np.arange(k), 60), np.repeat(np.arange(k), 20)
    centroids = np.stack([xtr[ytr == c].mean(axis=0) for c in range(k)])
    pred = np.argmin(((xte[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = float(np.mean(pred == yte))
    assert 0.6 < accuracy < 0.97, accuracy


def test_draw_and_errors():
    s = builtin.draw("star", np.random.default_rng(0))
    assert s.label == "star" and s.num_points > 2
    with pytest.raises(R2CNNError, match="unknown built-in class"):
        builtin.draw("dragon", np.random.default_rng(0))
    with pytest.raises(R2CNNError):
        builtin.generate(1, classes=["dragon"])
    with pytest.raises(R2CNNError):
        builtin.generate(-1)
    assert builtin.generate(0) == []
