"""Table 1's classic rows (r2cnn.classic) and early deep baselines (cnn-lenet, cnn-alexnet, cnn-sketchanet-v1)."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from r2cnn import models
from r2cnn.classic.encoders import alignment_weights, build_block
from r2cnn.classic.features import hog_descriptors, sift_descriptors
from r2cnn.classic.modelfile import load_model, save_model
from r2cnn.classic.runner import ClassicRunner
from r2cnn.classic.svm import KernelSVM, LinearSVM
from r2cnn.data.store import SketchStore, prepare
from r2cnn.errors import R2CNNError
from r2cnn.models.stroke_thirds import stroke_thirds
from r2cnn.presets import PRESETS, get_preset
from r2cnn.sketch import Sketch, SketchBatch

ROWS = ("hog-svm", "ensemble-matching", "mkl-svm", "fisher-vector", "alexnet-svm")
NEURAL = ("lenet", "alexnet-sketch", "sketchanet-v1")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """12 built-in classes x (10 train, 1 valid, 4 test)."""
    out = tmp_path_factory.mktemp("classic") / "store"
    prepare(out=out, builtin=15, split_sizes=(10, 1, 4), seed=0, progress=False, log=lambda *a: None)
    return out


def tiny(name: str, **blocks) -> dict:
    """The CPU preset ``name`` at test size: small fitting sample, small vocabularies and GMMs, few epochs."""
    p = get_preset(name)
    p.update(fit_images=60, max_descriptors=4000, align_sketches=60)
    for b in p["blocks"]:
        b.update({k: v for k, v in dict(words=24, gaussians=4, pca_dims=8).items() if k in b}, **blocks)
    if "epochs" in p["classifier"]:
        p["classifier"]["epochs"] = 4
    return p


def test_presets_name_every_row_with_a_cpu_twin():
    for prefix in ("tub", "cpu"):
        for row in ROWS:
            p = get_preset(f"{prefix}-{row}")
            assert p["runner"] == "classic" and json.loads(json.dumps(p)) == p
            for block in p["blocks"]:
                if block["kind"] != "alexnet-fc7":
                    build_block(block)
        for row in NEURAL:
            p = get_preset(f"{prefix}-{row}")
            assert p.get("runner", "neural") == "neural"
            models.get_spec(p["model"])
    assert get_preset("tub-hog-svm")["canvas"] > get_preset("cpu-hog-svm")["canvas"]
    assert get_preset("tub-hog-svm")["blocks"][0]["words"] == 500


def test_hog_descriptors_are_scikit_image_blocks():
    """Dense HOG equals scikit-image's per-block L2-Hys HOG (non-empty blocks), positions at block centres."""
    from skimage.feature import hog

    image = np.zeros((64, 64), np.float32)
    image[10, 5:60] = 1
    image[20:50, 30] = 1
    desc, pos = hog_descriptors(image, cell=4, orientations=4, block=4)
    ref = hog(image, orientations=4, pixels_per_cell=(4, 4), cells_per_block=(4, 4), block_norm="L2-Hys",
              feature_vector=False).reshape(-1, 64)
    ref = ref[np.abs(ref).sum(1) > 1e-6]
    np.testing.assert_allclose(desc, ref, atol=1e-5)
    assert pos.min() >= 0 and pos.max() <= 1
    empty_desc, _ = sift_descriptors(np.zeros((64, 64), np.float32), step=4, patch=16)
    assert len(empty_desc) == 0 and len(sift_descriptors(image, step=4, patch=16)[0]) > 0


@pytest.mark.parametrize("classes", [2, 4])
def test_kernel_svm_from_arrays_matches_scikit_learn(classes):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6)) + np.repeat(np.arange(classes), 80 // classes)[:, None]
    y = np.repeat(np.arange(classes), 80 // classes)
    svm = KernelSVM(C=1.0)
    svm.fit(x, y, classes, seed=0)
    test = rng.normal(size=(30, 6)) * 2
    reloaded = KernelSVM()
    reloaded.load({k: v.copy() for k, v in svm.state().items()})
    ours = reloaded.scores(test)
    expected = svm._svc.decision_function(test)
    if classes == 2:
        assert np.array_equal(ours.argmax(1), (expected > 0).astype(int))
    else:
        np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_linear_svm_two_classes_and_streamed_rows():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-1, 1, (50, 4)), rng.normal(1, 1, (50, 4))]).astype(np.float32)
    y = np.repeat([0, 1], 50)
    svm = LinearSVM(epochs=5, chunk=16)
    svm.fit(lambda rows: x[rows], y, 2, seed=0)
    assert svm.coef.shape == (2, 4) and (svm.scores(x).argmax(1) == y).mean() > 0.8


def test_fisher_vector_fits_on_repeated_descriptors():
    """Sketch descriptors repeat (straight strokes): a GMM with more components than distinct points still fits,
    and the Fisher vector of an image is finite and L2-normalised."""
    from r2cnn.classic.encoders import FisherVector

    rng = np.random.default_rng(0)
    distinct = rng.uniform(0, 100, size=(20, 128)).astype(np.float32)
    samples = distinct[rng.integers(0, 20, 4000)]
    fv = FisherVector(pca_dims=8, gaussians=32, descriptor_options=dict(step=4, patch=16))
    fv.fit(samples, seed=0)
    image = np.zeros((64, 64), np.float32)
    image[20, 5:60] = 1
    image[5:60, 30] = 1
    out = fv.encode(image[None])
    assert out.shape == (1, 2 * 8 * 32) and np.isfinite(out).all() and abs(np.linalg.norm(out) - 1) < 1e-5


def test_alignment_prefers_the_informative_kernel():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)
    informative = np.eye(4)[y] + 0.1 * rng.normal(size=(100, 4))
    noise = rng.normal(size=(100, 8))
    w = alignment_weights([noise, informative], y)
    assert w.shape == (2,) and abs(w.sum() - 1) < 1e-9 and w[1] > 0.8


@pytest.mark.parametrize("row", ROWS[:4])
def test_row_trains_predicts_round_trips_and_beats_chance(row, store, tmp_path):
    runner = ClassicRunner()
    model = runner.train(tiny(f"cpu-{row}"), store, tmp_path / "run", seed=0)
    assert model.name == "model.npz" and not (tmp_path / "run" / "features.tmp.npy").exists()
    with np.load(model, allow_pickle=False) as npz:  # plain arrays only
        assert all(npz[k].dtype != object for k in npz.files)
    with zipfile.ZipFile(model) as z:
        assert all(n.endswith(".npy") for n in z.namelist())
    result = runner.predict(model, store, "test")
    n = len(SketchStore(store).indices("test"))
    assert result["top5"].shape == (n, 5) and result["index"].shape == result["label"].shape == (n,)
    top1 = float((result["top5"][:, 0] == result["label"]).mean())
    assert top1 > 3 / 12, f"{row}: top-1 {top1:.3f} is not clearly above chance (1/12)"
    # round trip through the array format: load, write again, same predictions
    config, parts = load_model(model)
    copy = save_model(tmp_path / "copy.npz", config, parts)
    again = runner.predict(copy, store, "test")
    assert np.array_equal(again["top5"], result["top5"])
    np.testing.assert_allclose(again["scores"], result["scores"], rtol=1e-6)
    # resume reuses the finished model
    assert runner.train(tiny(f"cpu-{row}"), store, tmp_path / "run", seed=0, resume=True) == model


def test_mkl_learns_weights_and_ensemble_has_members(store, tmp_path):
    config, parts = load_model(ClassicRunner().train(tiny("cpu-mkl-svm"), store, tmp_path / "mkl", seed=0))
    w = np.array(config["kernel_weights"])
    assert w.shape == (3,) and abs(w.sum() - 1) < 1e-5 and (w >= 0).all()
    _, parts = load_model(ClassicRunner().train(tiny("cpu-ensemble-matching"), store, tmp_path / "ens", seed=0))
    assert parts["classifier"]["coef"].shape[0] == 12 * get_preset("cpu-ensemble-matching")["classifier"]["members"]


def test_model_file_errors_are_one_line(tmp_path):
    with pytest.raises(R2CNNError, match="object array"):
        save_model(tmp_path / "m.npz", {}, {"x": {"y": np.array([{"a": 1}], dtype=object)}})
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(R2CNNError, match="not a classic model"):
        load_model(tmp_path / "bad.npz")
    with pytest.raises(R2CNNError, match="not found"):
        load_model(tmp_path / "missing.npz")


def test_alexnet_svm_with_a_weights_file_and_without_weights(store, tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    with pytest.raises(R2CNNError, match="no ImageNet weights for alexnet"):
        ClassicRunner().train(get_preset("cpu-alexnet-svm"), store, tmp_path / "none", seed=0)
    weights = tmp_path / "alexnet-test.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)
    preset = tiny("cpu-alexnet-svm", weights=str(weights))
    model = ClassicRunner().train(preset, store, tmp_path / "run", seed=0)
    assert load_model(model)[0]["preset"]["blocks"][0]["weights"] == str(weights)
    assert ClassicRunner().predict(model, store, "test")["top5"].shape[1] == 5


def test_cli_train_and_evaluate_a_classic_preset(store, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "r2cnn", *a], capture_output=True, text=True)  # noqa
    out = tmp_path / "run"
    r = run("train", "--preset", "cpu-hog-svm", "--data", str(store), "--out", str(out), "--epochs", "2",
            "--set", "fit_images=40", "--set", "max_descriptors=3000", "--set", "blocks=" + json.dumps(tiny(
                "cpu-hog-svm")["blocks"]))
    assert r.returncode == 0, r.stderr
    r = run("evaluate", "--checkpoint", str(out / "model.npz"), "--data", str(store), "--json", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert "top-1" in r.stdout and report["count"] == 48 and 0 <= report["top1"] <= report["top5"] <= 1
    r = run("evaluate", "--checkpoint", str(tmp_path / "nope.npz"), "--data", str(store))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not found" in r.stderr


def test_stroke_thirds_channels():
    # strokes: 3 in the first sketch, 1 in the second
    pts = np.array([[0, 0, 0], [.1, .1, 1], [.2, .2, 1], [.3, .3, 0], [.4, .4, 1], [0, 0, 1]], np.float32)
    b = SketchBatch.from_sketches([Sketch(pts[:5]), Sketch(pts[5:])])
    got = stroke_thirds(b.points, b.offsets)
    third = [0, 0, 1, 2, 2, 0]
    expected = np.array([[t == k for k in range(3)] + [t <= k for k in range(3)] for t in third], np.float32)
    assert np.array_equal(got.numpy(), expected)


@pytest.mark.parametrize("name,canvas,channels", [("cnn-lenet", 32, 1), ("cnn-alexnet", 224, 1),
                                                   ("cnn-sketchanet-v1", 225, 6)])
def test_early_deep_models(name, canvas, channels):
    model = models.create(name, 7, **({"canvas": 64} if name == "cnn-alexnet" else {}))
    assert model.raster_size == (64 if name == "cnn-alexnet" else canvas)
    sketch = Sketch(np.array([[-.5, -.5, 0], [.5, .5, 1], [.5, -.5, 0], [-.5, .5, 1]], np.float32))
    out = model.forward_with_attention(SketchBatch.from_sketches([sketch, sketch]))
    assert out["logits"].shape == (2, 7) and out["image"].shape[1] == channels
    assert models.create(name, 7).raster_size == canvas


def test_lenet_preset_trains_with_the_engine(store, tmp_path):
    r = subprocess.run([sys.executable, "-m", "r2cnn", "train", "--preset", "cpu-lenet", "--data", str(store),
                        "--out", str(tmp_path / "lenet"), "--steps", "3", "--workers", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "lenet" / "last.pt").is_file()
    assert set(PRESETS) >= {f"{p}-{row}" for p in ("tub", "cpu") for row in ROWS + NEURAL}
