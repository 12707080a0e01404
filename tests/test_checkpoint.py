"""Checkpoints: weights_only loading, RNG round trip, atomic writes that survive a crash mid-write."""

import os
import random

import numpy as np
import pytest
import torch

from r2cnn.engine import checkpoint as ckpt_mod
from r2cnn.engine.checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state, to_plain
from r2cnn.errors import R2CNNError


def _state(value: float) -> dict:
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, value)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    config = to_plain({"model": "cnn-resnet18", "lr": np.float32(1e-3), "size": (3, 2)})
    return {"format": 1, "config": config, "classes": ["a", "b"],
            "model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(), "step": 7}


def test_roundtrip_weights_only(tmp_path):
    path = tmp_path / "run" / "last.pt"
    state = _state(0.5)
    save_atomic(state, path)
    loaded = load_checkpoint(path)  # weights_only=True inside
    assert loaded["step"] == 7 and loaded["classes"] == ["a", "b"]
    assert loaded["config"] == {"model": "cnn-resnet18", "lr": pytest.approx(1e-3), "size": [3, 2]}
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    torch.load(path, weights_only=True)  # loadable without pickle code execution
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp files left


def test_rng_state_roundtrip():
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    set_rng_state(state)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_crash_during_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic(_state(0.5), path)

    def crash(src, dst):  # the process dies between the temporary file and the rename
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ckpt_mod.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_atomic(_state(9.0), path)
    monkeypatch.undo()
    assert float(load_checkpoint(path)["model"]["weight"][0, 0]) == pytest.approx(0.5, abs=0.01)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_torn_temp_file_from_sigkill_is_ignored(tmp_path):
    """A SIGKILL mid-write leaves only a partial hidden temp file; the checkpoint itself is intact."""
    path = tmp_path / "last.pt"
    save_atomic(_state(0.5), path)
    data = path.read_bytes()
    (tmp_path / ".last.pt.abc.tmp").write_bytes(data[: len(data) // 2])
    assert float(load_checkpoint(path)["model"]["weight"][0, 0]) == pytest.approx(0.5, abs=0.01)


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(R2CNNError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(R2CNNError, match="not a readable r2cnn checkpoint") as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value)
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(R2CNNError, match="not an r2cnn checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_files_get_the_users_default_permissions(tmp_path):
    """Not mkstemp's 0600: a checkpoint is as readable as the logs and reports beside it (0666 less the umask)."""
    old = os.umask(0o027)
    try:
        save_atomic(_state(0.5), tmp_path / "last.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "last.pt").stat().st_mode & 0o777 == 0o640


def test_best_pt_is_the_model_and_last_pt_resumes(tiny_r2cnn_checkpoint):
    from r2cnn.engine.predict import Predictor

    best, last = tiny_r2cnn_checkpoint, tiny_r2cnn_checkpoint.parent / "last.pt"
    kept = load_checkpoint(best)
    assert set(kept) == {"format", "version", "config", "classes", "model", "epoch", "step", "best", "extra"}
    assert set(load_checkpoint(last, training_state=True)) >= set(ckpt_mod.TRAINING_KEYS)
    with pytest.raises(R2CNNError, match="no 'optimizer'"):
        load_checkpoint(best, training_state=True)
    weights = sum(t.numel() * t.element_size() for t in kept["model"].values())
    # Adam keeps two moments per weight: last.pt is about 3x the weights, best.pt about 1x
    assert best.stat().st_size < 1.5 * weights < last.stat().st_size
    assert Predictor(str(best)).classes == kept["classes"]
