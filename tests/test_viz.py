"""``r2cnn visualize`` and :mod:`r2cnn.viz`: attention maps, stroke importance, deletion check, figure files."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from matplotlib import colormaps

from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch
from r2cnn.viz.attention import AttentionModel, stroke_importance
from r2cnn.viz.deletion import deletion_check, strokes_to_remove, without_strokes
from r2cnn.viz.figures import CMAP, colour_code

ENV = dict(os.environ, R2CNN_NO_REEXEC="1", OMP_NUM_THREADS="1")


def r2cnn(*args):
    return subprocess.run([sys.executable, "-m", "r2cnn", *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=300)


def assert_png(path):
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as im:
        im.verify()


def assert_svg(path):
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", path


@pytest.fixture(scope="module")
def model(tiny_runs):
    return AttentionModel(str(tiny_runs.r2cnn / "best.pt"))


@pytest.fixture(scope="module")
def views(model, tiny_runs):
    from r2cnn.data.store import SketchStore

    store = SketchStore(tiny_runs.store)
    return model.views([store[int(i)] for i in store.indices("test")[:5]])


def test_stroke_importance_is_the_mean_attention_of_each_stroke():
    attention = np.array([[0.1], [0.3], [0.5], [0.9], [0.2], [0.7]])
    bounds = np.array([0, 2, 5, 6])  # strokes of 2, 3 and 1 points
    np.testing.assert_allclose(stroke_importance(attention, bounds), [0.2, (0.5 + 0.9 + 0.2) / 3, 0.7])
    two_channels = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])  # C > 1: the mean over channels too
    np.testing.assert_allclose(stroke_importance(two_channels, np.array([0, 1, 3])), [0.5, 0.5])


def test_view_importance_matches_its_per_point_attention(views):
    for view in views:
        b = view.sketch.stroke_bounds
        by_hand = [float(np.mean(view.attention[b[s]:b[s + 1]])) for s in range(len(b) - 1)]
        np.testing.assert_allclose(view.importance, by_hand, rtol=1e-6)
        assert view.attention.shape == (view.sketch.num_points, 1)
        assert ((view.attention >= 0) & (view.attention <= 1)).all()


def test_colour_coded_map_leaves_non_stroke_pixels_uncoloured(views):
    for view in views:
        values, mask = view.attention_map[0], view.stroke_mask
        assert mask.any() and (~mask).any()
        assert (values[~mask] == 0).all()  # the NLR gives non-stroke pixels attention 0 (paper Fig. 4)
        rgba = colour_code(values, mask)
        assert rgba.shape == (*values.shape, 4)
        assert (rgba[~mask] == [1.0, 1.0, 1.0, 0.0]).all()  # uncoloured: transparent white
        np.testing.assert_allclose(rgba[mask], colormaps[CMAP](np.clip(values[mask], 0, 1)))
        assert (rgba[mask][:, 3] == 1.0).all()
        # stroke pixels whose value is 0 (the last point of the sketching-order encoding) are still coloured
        order = colour_code(view.order_map, mask)
        assert (order[mask][:, 3] == 1.0).all() and (order[~mask] == [1.0, 1.0, 1.0, 0.0]).all()


def test_strokes_to_remove_ranks_by_attention_and_keeps_one_stroke():
    importance = np.array([0.2, 0.9, 0.5, 0.9])
    assert strokes_to_remove(importance, 1, "most").tolist() == [1]  # tie between 1 and 3: drawing order
    assert strokes_to_remove(importance, 2, "least").tolist() == [0, 2]
    assert len(strokes_to_remove(importance, 10, "most")) == 3  # at most S - 1
    assert len(strokes_to_remove(np.array([0.4]), 2, "random", np.random.default_rng(0))) == 0
    sketch = Sketch.from_strokes([np.zeros((2, 2)), np.ones((3, 2)), np.full((1, 2), 2.0)])
    cut = without_strokes(sketch, np.array([1]))
    assert cut.num_strokes == 2 and cut.num_points == 3
    np.testing.assert_array_equal(cut.points, sketch.points[[0, 1, 5]])


def test_deletion_check_with_nothing_removed_is_plain_accuracy(model, tiny_runs):
    from r2cnn.data.store import SketchStore
    from r2cnn.engine.evaluate import evaluate_checkpoint

    store = SketchStore(tiny_runs.store)
    sketches = [store[int(i)] for i in store.indices("test")]
    result = deletion_check(model, sketches, (1, 2), progress=False)
    plain = evaluate_checkpoint(str(tiny_runs.r2cnn / "best.pt"), str(tiny_runs.store), split="test",
                                partial=(1.0,), progress=False)["top1"]
    assert result["ks"] == [0, 1, 2] and result["count"] == len(sketches)
    for arm in ("most", "least", "random"):
        assert result["top1"][arm]["0"] == pytest.approx(plain)
        assert all(0.0 <= result["top1"][arm][k] <= 1.0 for k in ("1", "2"))
    # the most-attended arm, recomputed by hand for k = 1
    prepared = model.prepare(sketches)
    out = model.run(prepared)
    o = out["offsets"]
    cut = [without_strokes(s, strokes_to_remove(stroke_importance(out["attention"][o[b]:o[b + 1]], s.stroke_bounds),
                                                1, "most")) for b, s in enumerate(prepared)]
    by_hand = float(np.mean(model.predict_prepared(cut) == np.array([s.label for s in sketches])))
    assert result["top1"]["most"]["1"] == pytest.approx(by_hand)


def test_visualize_writes_png_svg_and_json_with_comparison(tiny_runs, tmp_path):
    out = tmp_path / "vis"
    proc = r2cnn("visualize", "--checkpoint", tiny_runs.r2cnn / "best.pt", "--data", tiny_runs.store,
                 "--compare", tiny_runs.cnn / "best.pt", "--index", 0, 3, "--deletion-k", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "most attended removed" in proc.stdout and "test #3" in proc.stdout
    for stem in ("sketch-test-0", "sketch-test-3", "overview", "deletion"):
        assert_png(out / f"{stem}.png")
        assert_svg(out / f"{stem}.svg")
    records = json.loads((out / "sketches.json").read_text())["sketches"]
    assert [r["position"] for r in records] == [0, 3]
    for r in records:
        assert len(r["top3"]) == len(r["compare_top3"]) == 3 and r["stroke_importance"]
        assert r["correct"] == (r["top3"][0]["class"] == r["label"])
    deletion = json.loads((out / "deletion.json").read_text())
    assert deletion["ks"] == [0, 1] and deletion["count"] == 24


def test_failures_mode_draws_only_misclassified_sketches(tiny_runs, tmp_path):
    from r2cnn.viz.visualize import visualize

    result = visualize(str(tiny_runs.r2cnn / "best.pt"), str(tiny_runs.store), tmp_path, failures=3,
                       deletion_ks=(), log=lambda *_: None)
    assert 1 <= len(result["sketches"]) <= 3  # a model trained for 4 steps gets some of 24 wrong
    assert all(r["correct"] is False for r in result["sketches"])
    assert result["deletion"] is None and not (tmp_path / "deletion.json").exists()


def test_attention_per_channel_when_c_is_more_than_one(tmp_path, views):
    from r2cnn import models
    from r2cnn.engine.checkpoint import save_atomic
    from r2cnn.viz.figures import save, sketch_figure

    options = {"canvas": 24, "width": 8, "stem": "small", "hidden": 8, "layers": 1, "in_channels": 3}
    torch.manual_seed(0)
    net = models.create("r2cnn-resnet18", 12, **options)
    save_atomic({"model": net.state_dict(), "config": {"model": "r2cnn-resnet18", "model_options": options},
                 "classes": [f"c{i}" for i in range(12)], "step": 0}, tmp_path / "c3.pt")
    model = AttentionModel(str(tmp_path / "c3.pt"))
    view = model.views([views[0].sketch])[0]
    assert view.attention.shape[1] == 3 and view.attention_map.shape == (3, 24, 24)
    fig = sketch_figure(view, model.classes)
    titles = [ax.get_title() for ax in fig.axes]
    assert {"channel 0", "channel 1", "channel 2"} <= set(titles)
    png, svg = save(fig, tmp_path / "c3")
    assert_png(png)
    assert_svg(svg)


def one_line_error(capsys, *args) -> str:
    """Run the CLI in this process; it must fail with status 2 and one line on stderr, which is returned."""
    from r2cnn.cli import main

    assert main([str(a) for a in args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("r2cnn: error:"), lines
    return lines[0]


def test_cnn_only_checkpoint_has_no_attention_one_line(tiny_runs, tmp_path, capsys):
    line = one_line_error(capsys, "visualize", "--checkpoint", tiny_runs.cnn / "best.pt", "--data", tiny_runs.store,
                          "--out", tmp_path)
    assert "without per-point attention" in line and "--compare" in line
    with pytest.raises(R2CNNError, match="deletion check needs one"):
        deletion_check(AttentionModel(str(tiny_runs.cnn / "best.pt")), [Sketch(np.zeros((2, 3)), 0)])


@pytest.mark.parametrize("extra, message", [
    (["--checkpoint", "{tmp}/missing.pt"], "checkpoint not found"),
    (["--checkpoint", "{tmp}/junk.pt"], "not a readable r2cnn checkpoint"),
    (["--data", "{tmp}"], "not a sketch store"),
    (["--index", "24"], "out of range, split 'test' has 24 sketches"),
    (["--sample", "0"], "--sample must be at least 1"),
    (["--deletion-k", "1,x"], "--deletion-k expects comma-separated integers"),
    (["--compare", "{tmp}/junk.pt"], "not a readable r2cnn checkpoint"),
])
def test_bad_input_is_one_line(tiny_runs, tmp_path, capsys, extra, message):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    base = {"--checkpoint": tiny_runs.r2cnn / "best.pt", "--data": tiny_runs.store, "--out": tmp_path / "out"}
    extra = [a.format(tmp=tmp_path) for a in extra]
    args = [x for k, v in base.items() if k not in extra for x in (k, v)] + extra
    assert message in one_line_error(capsys, "visualize", *args)
