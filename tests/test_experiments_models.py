"""The models and CPU presets the experiment tables add: time-encoded images and Table 2's CPU twins."""

import numpy as np
import pytest
import torch

from r2cnn.engine.factory import build_model
from r2cnn.models import create, time_encoding_intensities
from r2cnn.presets import get_preset
from r2cnn.sketch import Sketch, SketchBatch

CPU_TWINS = ["cpu-attentive", "cpu-random-stroke-order", "cpu-sketching-order", "cpu-late-fusion",
             "cpu-early-fusion", "cpu-time-encoded", "cpu-attention-time-encoded", "cpu-r2cnn-stroke",
             "cpu-attention-replaces-binary", "cpu-attention-gated-time"]


def _sketch(strokes):
    return Sketch.from_strokes([np.asarray(s, np.float32) for s in strokes], 0)


def test_time_encoding_by_hand():
    # sketch 0: strokes of 3 and 1 points; sketch 1: one stroke of 2 points; sketch 2: three 1-point strokes
    a = _sketch([[[0, 0], [0.5, 0], [1, 0]], [[0, 1]]])
    b = _sketch([[[0, 0], [1, 1]]])
    c = _sketch([[[0, 0]], [[1, 0]], [[0, 1]]])
    batch = SketchBatch.from_sketches([a, b, c])
    t = time_encoding_intensities(batch.points, batch.offsets)
    stroke = [1, 1, 1, 0, 1, 1, 1, 0.5, 0]
    point = [1, 0.5, 0, 1, 1, 0, 1, 1, 1]
    assert t[:, 0].tolist() == pytest.approx(stroke)
    assert t[:, 1].tolist() == pytest.approx(point)


@pytest.mark.parametrize("name", CPU_TWINS)
def test_cpu_twins_share_cpu_r2cnn_backbone_canvas_and_budget(name):
    twin, base = get_preset(name), get_preset("cpu-r2cnn")
    # all but cpu-r2cnn's fixed_dropout, which acts on channels the twins do not draw
    assert twin["model_options"] == {k: v for k, v in base["model_options"].items() if k != "fixed_dropout"}
    for key in ("batch_size", "lr", "epochs", "lr_schedule", "grad_clip", "optimizer"):
        assert twin[key] == base[key], key
    assert twin["model"].endswith("resnet18")


def test_random_stroke_order_twin_shuffles_in_training_and_evaluation():
    p = get_preset("cpu-random-stroke-order")
    assert p["transform"]["stroke_order"] == p["eval_transform"]["stroke_order"] == "random"


@pytest.mark.parametrize("name, channels", [("cpu-time-encoded", 3), ("cpu-attention-time-encoded", 4),
                                            ("cpu-attention-replaces-binary", 3), ("cpu-attention-gated-time", 3),
                                            ("cpu-r2cnn-stroke", 1), ("cpu-r2cnn-c3", 3),
                                            ("cpu-early-fusion", 1), ("cpu-late-fusion", 1), ("cpu-attentive", 1)])
def test_cpu_twins_forward(name, channels):
    config = get_preset(name)
    config["model_options"].update(canvas=16, width=8, hidden=8)
    torch.manual_seed(0)
    model = build_model(config, 4)
    batch = SketchBatch.from_sketches([_sketch([[[-0.5, -0.5], [0.5, 0.5]], [[0.5, -0.5], [-0.5, 0.5]]]),
                                       _sketch([[[0, -0.8], [0, 0.8]]])])
    out = model.forward_with_attention(batch)
    assert out["logits"].shape == (2, 4) and out["image"].shape == (2, channels, 16, 16)
    out["logits"].sum().backward()


def test_time_encoded_image_channels():
    model = create("time-encoded-resnet18", 3, canvas=16, width=8, stem="small").eval()
    batch = SketchBatch.from_sketches([_sketch([[[-0.8, 0], [0.8, 0]], [[0, -0.8], [0, 0.8]]])])
    image = model.forward_with_attention(batch)["image"][0]
    binary, stroke, point = image
    assert set(torch.unique(binary).tolist()) == {0.0, 1.0}
    assert ((stroke > 0) <= (binary > 0)).all() and ((point > 0) <= (binary > 0)).all()
    # the first (horizontal) stroke is at 1 in the stroke channel, the second (vertical) at 0 except where it wins
    assert stroke[8, 1] == pytest.approx(1.0) and stroke[1, 8] == pytest.approx(0.0)
