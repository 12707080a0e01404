"""Protocol guarantees: TU-Berlin folds are the same on every run, and no test sketch is used for training or
model selection (checked on the sketches the engine actually reads)."""

import numpy as np
import pytest

from r2cnn.data.store import SketchStore, prepare
from r2cnn.errors import R2CNNError
from r2cnn.experiments import protocols
from r2cnn.experiments.runners import NeuralRunner

QUIET = dict(log=lambda *a: None, progress=False)


@pytest.fixture(scope="module")
def kfold_store(tmp_path_factory):
    return prepare([], tmp_path_factory.mktemp("kfold") / "store", builtin=12, folds=3, **QUIET)


@pytest.fixture(scope="module")
def split_store(tmp_path_factory):
    return prepare([], tmp_path_factory.mktemp("splits") / "store", builtin=10, split_sizes=(6, 2, 2), **QUIET)


def test_folds_are_identical_across_builds(kfold_store, tmp_path):
    again = prepare([], tmp_path / "again", builtin=12, folds=3, **QUIET)
    for k in range(3):
        for split in ("train", "valid", "test"):
            assert np.array_equal(kfold_store.indices(split, fold=k), again.indices(split, fold=k))


def test_folds_partition_the_store_and_parts_are_disjoint(kfold_store):
    tests = [kfold_store.indices("test", fold=k) for k in range(3)]
    assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(len(kfold_store)))
    for k in range(3):
        parts = protocols.split_indices(kfold_store, k)
        assert not set(parts["test"]) & (set(parts["train"]) | set(parts["valid"]))
        assert not set(parts["train"]) & set(parts["valid"])
        assert len(parts["valid"]) > 0


def test_protocol_resolution(kfold_store, split_store):
    assert protocols.resolve("auto", kfold_store) == "tuberlin"
    assert protocols.resolve("auto", split_store) == "quickdraw"
    with pytest.raises(R2CNNError, match="k-fold store"):
        protocols.resolve("tuberlin", split_store)
    with pytest.raises(R2CNNError, match="train/valid/test"):
        protocols.resolve("quickdraw", kfold_store)
    assert protocols.subruns("tuberlin", kfold_store, [0, 1]) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert protocols.subruns("quickdraw", split_store, [3]) == [(3, None)]


def test_tuberlin_protocol_simplifies_and_augments_unless_the_preset_says_otherwise():
    config = protocols.protocol_config("tuberlin", {"transform": {"flip": 0.0}, "eval_transform": {}})
    assert config["transform"] == {"max_points": 448, "flip": 0.0, "stroke_removal": 0.3, "deform": 0.5}
    assert config["eval_transform"] == {"max_points": 448}
    assert protocols.protocol_config("quickdraw", {"transform": {}}) == {"transform": {}}


def test_train_subset_is_per_class_fixed_and_inside_train(split_store):
    train = split_store.indices("train")
    labels = np.asarray(split_store.labels)
    a = protocols.per_class_subset(train, labels, 2)
    assert np.array_equal(a, protocols.per_class_subset(train, labels, 2))
    assert set(a) <= set(train)
    assert np.bincount(labels[a]).tolist() == [2] * len(split_store.classes)


@pytest.mark.parametrize("fold", [None, 1])
def test_subset_view_keeps_store_indices(split_store, kfold_store, tmp_path, fold):
    store = split_store if fold is None else kfold_store
    view = SketchStore(protocols.subset_view(store, tmp_path / "view", fold, 3))
    parts = protocols.split_indices(store, fold, 3)
    for split in ("train", "valid", "test"):
        assert np.array_equal(view.indices(split), parts[split])
    i = int(parts["test"][0])
    assert np.array_equal(view.sketch_points(i), store.sketch_points(i)) and view.labels[i] == store.labels[i]


@pytest.mark.parametrize("subset", [None, 3])
def test_no_test_sketch_is_read_for_training_or_selection(kfold_store, tmp_path, monkeypatch, subset):
    """Train a tuberlin sub-run for fold 1 and record every store index the data loader reads."""
    from r2cnn.data import loader
    from r2cnn.presets import get_preset

    seen = []
    original = loader.StoreDataset.__getitem__

    def recording(self, key):
        seen.append(int(key[0]))
        return original(self, key)

    monkeypatch.setattr(loader.StoreDataset, "__getitem__", recording)
    config = protocols.protocol_config("tuberlin", get_preset("cpu-cnn"))
    config["model_options"].update(canvas=16, width=8)
    config.update(batch_size=4, preset="cpu-cnn")
    runner = NeuralRunner(workers=0, progress=False)
    model = runner.train(config, kfold_store.path, tmp_path / "run", seed=0, fold=1, epochs=None, steps=3,
                         max_minutes=None, init_from=None, resume=False, train_subset=subset)
    parts = protocols.split_indices(kfold_store, 1, subset)
    assert seen and set(seen) <= set(parts["train"]) | set(parts["valid"])
    assert set(parts["valid"]) <= set(seen)  # selection read the validation part
    assert not set(seen) & set(kfold_store.indices("test", fold=1))
    seen.clear()
    pred = runner.predict(model, kfold_store.path, "test", 1)
    assert set(seen) == set(pred["index"]) == set(kfold_store.indices("test", fold=1))
    assert pred["top5"].shape == (len(pred["index"]), 5)
