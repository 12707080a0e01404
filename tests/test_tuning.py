"""Tuning mode of ``r2cnn experiment``: trains as usual, reports the validation split carved from
train, and never reads the test split: not its indices, not one of its sketches."""

import csv
import json

import numpy as np
import pytest

from r2cnn.cli import main
from r2cnn.data.builtin import CLASSES, generate
from r2cnn.data.store import SketchStore, build_store
from r2cnn.data.store.splits import SPLIT_CODE
from r2cnn.errors import R2CNNError
from r2cnn.experiments import protocols

TINY = ["--set", "batch_size=8", "--set", "model_options.canvas=16", "--set", "model_options.width=8",
        "--set", "model_options.hidden=8", "--workers", "0", "--bootstrap", "200"]
SPEC = """
name = "tiny-tuning"
reference = "r2cnn"
mode = "tuning"
[defaults]
seeds = [0]
[[rows]]
id = "cnn"
preset = "cpu-cnn"
[[rows]]
id = "r2cnn"
preset = "cpu-r2cnn"
seeds = [0, 1]
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three built-in classes, 10 sketches each: 6 train, 2 valid, 2 test per class."""
    sketches = generate(10, seed=1, classes=list(CLASSES[:3]))
    return build_store(sketches, tmp_path_factory.mktemp("data") / "store", split_sizes=(6, 2, 2))


def _test_indices(store) -> set[int]:
    """The store's test sketches, read from its split file (not through the instrumented API)."""
    return set(np.flatnonzero(np.load(store.path / "splits.npy") == SPLIT_CODE["test"]).tolist())


def test_tuning_mode_never_reads_the_test_split(store, tmp_path, monkeypatch, capsys):
    asked, read = [], []
    indices, getitem = SketchStore.indices, SketchStore.__getitem__

    def spy_indices(self, split, fold=None):
        asked.append(split)
        return indices(self, split, fold=fold)

    def spy_getitem(self, i):
        read.append(int(i))  # store indices are those of the source store in every view
        return getitem(self, i)

    monkeypatch.setattr(SketchStore, "indices", spy_indices)
    monkeypatch.setattr(SketchStore, "__getitem__", spy_getitem)
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC)
    out = tmp_path / "exp"
    assert main(["experiment", str(spec), "--data", str(store.path), "--out", str(out), "--steps", "2",
                 "--train-subset", "4", *TINY]) == 0
    assert "test" not in asked and {"train", "valid"} <= set(asked)
    assert read and not set(read) & _test_indices(store)

    valid = set(indices(store, "valid").tolist())
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "tuning" and [r["id"] for r in results["rows"]] == ["cnn", "r2cnn"]
    for r in results["rows"]:
        assert r["split"] == "valid" and r["test_sketches"] == len(valid)
    for sub in ("cnn/seed0", "r2cnn/seed0", "r2cnn/seed1"):
        predicted = np.load(out / "rows" / sub / "predictions.npz")["index"]
        assert set(predicted.tolist()) == valid
    assert {row["split"] for row in csv.DictReader((out / "results.csv").open())} == {"valid"}
    md = (out / "results.md").read_text()
    assert "Figures on: validation split carved from the training data" in md and "test split of" not in md
    # the same folder cannot be reported as a test-mode experiment
    spec.write_text(SPEC.replace('mode = "tuning"\n', ""))
    capsys.readouterr()
    assert main(["experiment", str(spec), "--data", str(store.path), "--out", str(out), "--report-only"]) == 2
    assert "ran in tuning mode" in capsys.readouterr().err


def test_the_tuning_view_refuses_to_give_out_test_indices(store, tmp_path):
    view = SketchStore(protocols.subset_view(store, tmp_path / "view", None, None, seal_test=True))
    assert view.test_sealed and not SketchStore(store.path).test_sealed
    for split in ("test", "unused", "all"):
        with pytest.raises(R2CNNError, match="sealed"):
            view.indices(split)
    assert np.array_equal(view.indices("train"), store.indices("train"))
    assert np.array_equal(view.indices("valid"), store.indices("valid"))


def test_test_mode_names_its_test_split(store, tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC.replace('mode = "tuning"\n', "").replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "exp"
    assert main(["experiment", str(spec), "--data", str(store.path), "--out", str(out), "--steps", "1",
                 *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "test" and {r["split"] for r in results["rows"]} == {"test"}
    assert "Figures on: test split of store" in (out / "results.md").read_text()
    # `--tuning` on a folder run in test mode is refused rather than mixing splits
    capsys.readouterr()
    assert main(["experiment", str(spec), "--data", str(store.path), "--out", str(out), "--report-only",
                 "--tuning"]) == 2
    assert "ran in test mode" in capsys.readouterr().err


def test_dry_run_in_tuning_mode_does_not_count_the_test_split(store, tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC)
    assert main(["experiment", str(spec), "--data", str(store.path), "--dry-run", "--measure-steps", "0"]) == 0
    assert "/sealed" in capsys.readouterr().out


def test_spec_mode_is_checked(tmp_path):
    from r2cnn.experiments.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match="'mode'"):
        parse_spec({"mode": "peek", "rows": [{"id": "a", "preset": "cpu-cnn"}]})
