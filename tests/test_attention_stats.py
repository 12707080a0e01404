"""``r2cnn visualize --stats`` / :mod:`r2cnn.viz.attention_stats`: what the CNN receives from the RNN."""

import json

import numpy as np
import pytest

from r2cnn.cli import main
from r2cnn.viz.attention_stats import sketch_statistics


def test_sketch_statistics_of_known_attention():
    pen = np.array([0, 0, 1, 0, 1, 0, 0, 1], np.float32)  # strokes of 3, 2 and 3 points
    falling = np.linspace(1.0, 0.0, 8)[:, None]
    s = sketch_statistics(falling, pen)
    assert s["spearman_point_order"][0] == pytest.approx(-1.0)
    assert -1.0 < s["spearman_stroke_index"][0] < -0.8  # ties within a stroke keep it above -1
    assert s["std"][0] == pytest.approx(falling.std()) and s["mean"][0] == pytest.approx(0.5)
    assert s["range_5_95"][0] == pytest.approx(0.9)
    # two channels: one uniform (no spread, no correlation), one rising
    both = np.concatenate([np.full((8, 1), 0.5), falling[::-1]], axis=1)
    s = sketch_statistics(both, pen)
    assert s["std"][0] == 0 and np.isnan(s["spearman_point_order"][0])
    assert s["spearman_point_order"][1] == pytest.approx(1.0)
    assert sketch_statistics(np.ones((1, 1)), np.ones(1)) is None


def test_stats_command_on_the_validation_split_by_default(tiny_runs, tmp_path, capsys):
    out = tmp_path / "stats"
    assert main(["visualize", "--stats", "--checkpoint", str(tiny_runs.r2cnn / "best.pt"), "--data",
                 str(tiny_runs.store), "--out", str(out)]) == 0
    stats = json.loads((out / "attention-stats.json").read_text())
    from r2cnn.data.store import SketchStore

    assert stats["split"] == "valid" and stats["sketches"] == len(SketchStore(tiny_runs.store).indices("valid"))
    assert 0 <= stats["per_sketch"]["std"]["mean"] <= 0.5
    assert -1 <= stats["per_sketch"]["spearman_point_order"]["mean"] <= 1
    assert stats["mean_by_stroke_position"][0]["stroke"] == "1" and len(stats["mean_by_point_decile"]) == 10
    text = capsys.readouterr().out
    assert "Spearman with point order" in text and "on valid" in text
    # the test split only when named
    assert main(["visualize", "--stats", "--split", "test", "--checkpoint", str(tiny_runs.r2cnn / "best.pt"),
                 "--data", str(tiny_runs.store), "--out", str(out)]) == 0
    assert json.loads((out / "attention-stats.json").read_text())["split"] == "test"


def test_stats_of_a_cnn_only_checkpoint_is_one_line(tiny_runs, tmp_path, capsys):
    assert main(["visualize", "--stats", "--checkpoint", str(tiny_runs.cnn / "best.pt"), "--data",
                 str(tiny_runs.store), "--out", str(tmp_path / "s")]) == 2
    assert "without per-point attention" in capsys.readouterr().err
