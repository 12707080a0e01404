"""Model registry: every name of the paper's tables builds, runs forward and backward, and behaves as described
(CNN-only sees the binary raster, R2CNN's loss reaches the RNN through the NLR, ablations act where the paper
says). Small canvases and hidden sizes keep this fast on 2 CPU cores."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from r2cnn import models, raster
from r2cnn.errors import R2CNNError
from r2cnn.models.backbones import SketchANet
from r2cnn.sketch import Sketch, SketchBatch


def _sketches():
    """Three small normalised sketches (a square, a line + a dot, a zig-zag) in [-1, 1]^2."""
    square = Sketch.from_strokes([np.array([[-.6, -.6], [.6, -.6], [.6, .6], [-.6, .6], [-.6, -.6]])], label=0)
    line_dot = Sketch.from_strokes([np.array([[-.8, 0.], [.8, .1]]), np.array([[0., .5]])], label=1)
    zigzag = Sketch.from_strokes([np.array([[-.9, -.5], [-.3, .5], [.3, -.5], [.9, .5]])], label=2)
    return [square, line_dot, zigzag]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared, loaded machine OpenMP spin-waiting made
    a batch-3 ResNet50 step 10-80x slower with 2 threads than with 1 (measured here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def batch():
    return SketchBatch.from_sketches(_sketches())


def _small(name):
    if "sketchanet" in name:
        return dict(canvas=225, hidden=8)
    if name in ("cnn-alexnet", "cnn-lenet"):  # not ResNets: no width option
        return dict(canvas=64)
    return dict(canvas=64, hidden=8, width=16)  # the registered architecture, narrower (layer counts unchanged)


@pytest.mark.parametrize("name", models.list_models())
def test_every_model_forward_backward(name, batch):
    torch.manual_seed(0)
    model = models.create(name, num_classes=4, **_small(name))
    out = model.forward_with_attention(batch)
    size = model.raster_size
    assert out["logits"].shape == (3, 4)
    channels = {"time": 3, "attention-time": 4, "stroke-thirds": 6, "attention-replaces-binary": 3,
                "attention-gated-time": 3}.get(models.get_spec(name).kind, 1)  # fixed extra channels
    assert out["image"].shape == (3, channels, size, size)
    if out["attention"] is not None:
        assert out["attention"].shape == (batch.points.shape[0], 1)
    nn.functional.cross_entropy(out["logits"], batch.labels).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "every parameter gets a finite gradient"
    model.eval()
    assert torch.equal(model(batch), model.forward_with_attention(batch)["logits"])


def test_paper_canvas_defaults():
    assert models.create("r2cnn-sketchanet", 3, hidden=8).raster_size == 225
    assert models.create("cnn-resnet18", 3).raster_size == 224
    assert models.create("cnn-resnet18", 3).raster_eps == 1.0


def test_r2cnn_gradient_reaches_the_rnn_through_the_nlr(batch):
    torch.manual_seed(0)
    model = models.create("r2cnn-resnet18", 3, canvas=64, hidden=8, width=16, stem="small")
    nn.functional.cross_entropy(model(batch), batch.labels).backward()
    for name, p in model.encoder.named_parameters():
        if "weight" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_r2cnn_image_is_the_nlr_of_its_attention(batch):
    model = models.create("r2cnn-resnet18", 3, canvas=64, hidden=8, width=16, stem="small").eval()
    out = model.forward_with_attention(batch)
    want = raster.rasterize(batch.points, batch.offsets, out["attention"], 64, 1.0)
    assert torch.allclose(out["image"], want)


def test_cnn_only_image_is_the_binary_raster(batch):
    model = models.create("cnn-resnet18", 3, canvas=64, width=16, stem="small")
    image = model.forward_with_attention(batch)["image"]
    want = raster.rasterize(batch.points, batch.offsets, torch.ones(batch.points.shape[0], 1), 64, 1.0)
    assert torch.equal(image, want)
    assert set(image.unique().tolist()) == {0.0, 1.0}


def test_in_channels_is_the_attention_channel_count(batch):
    model = models.create("r2cnn-resnet18", 3, in_channels=3, canvas=64, hidden=8, width=16, stem="small")
    out = model.forward_with_attention(batch)
    assert out["attention"].shape == (batch.points.shape[0], 3) and out["image"].shape == (3, 3, 64, 64)
    cnn = models.create("cnn-resnet18", 3, in_channels=2, canvas=64, width=16, stem="small")
    assert cnn.forward_with_attention(batch)["image"].shape == (3, 2, 64, 64)


def test_precomputed_geometry_is_used_when_it_matches(batch, monkeypatch):
    model = models.create("cnn-resnet18", 3, canvas=64, width=16, stem="small")
    batch.geometry = raster.geometry(batch.points, batch.offsets, 64, 1.0)
    expected = model.forward_with_attention(batch)["image"]

    def fail(*args, **kwargs):
        raise AssertionError("geometry recomputed although the batch carries a matching one")

    monkeypatch.setattr(raster, "geometry", fail)
    assert torch.equal(model.forward_with_attention(batch)["image"], expected)


def test_mismatched_geometry_is_recomputed(batch):
    model = models.create("cnn-resnet18", 3, canvas=64, width=16, stem="small")
    batch.geometry = raster.geometry(batch.points, batch.offsets, 32, 1.0)  # another canvas
    assert model.forward_with_attention(batch)["image"].shape == (3, 1, 64, 64)
    batch.geometry = raster.geometry(batch.points, batch.offsets, 64, 2.0)  # another eps
    want = raster.rasterize(batch.points, batch.offsets, torch.ones(batch.points.shape[0], 1), 64, 1.0)
    assert torch.equal(model.forward_with_attention(batch)["image"], want)


def test_sketching_order_intensities_fall_linearly_from_first_to_last_point(batch):
    values = models.sketching_order_intensities(batch.offsets, batch.points.shape[0])
    assert torch.allclose(values[:5], torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))   # square: 5 points
    assert torch.allclose(values[5:8], torch.tensor([1.0, 0.5, 0.0]))             # line + dot: 3 points
    assert values[8] == 1.0 and values[-1] == 0.0
    one = models.sketching_order_intensities(torch.tensor([0, 1]), 1)
    assert one.tolist() == [1.0]                                                    # a one-point sketch
    model = models.create("attention-sketching-order", 3, canvas=64, width=16)
    image = model.forward_with_attention(batch)["image"]
    assert 0.0 < image[image > 0].min() < 0.5 and image.max() == 1.0


def test_attentive_resnet_mask_is_a_spatial_softmax_on_c2(batch):
    model = models.create("attentive-resnet50", 3, canvas=64, width=16)
    mask = model.forward_with_attention(batch)["feature_attention"]
    assert mask.shape == (3, 1, 16, 16)                  # C2 is 1/4 of the canvas (56x56 at 224)
    assert torch.allclose(mask.sum(dim=(1, 2, 3)), torch.ones(3))


def test_early_fusion_attention_map_matches_c2(batch):
    model = models.create("two-branch-early-fusion", 3, canvas=64, hidden=8, width=16)
    assert model.fusion_eps == 0.5
    out = model.forward_with_attention(batch)
    amap = out["attention_map"]
    assert amap.shape == (3, 1, 16, 16)
    want = raster.rasterize(batch.points, batch.offsets, out["attention"], 16, 0.5)
    assert torch.allclose(amap, want)


def test_late_fusion_classifier_sees_cnn_and_rnn_features():
    model = models.create("two-branch-late-fusion", 3, canvas=64, hidden=8, width=16)
    assert model.classifier.in_features == 16 * 8 * 4 + 2 * 8    # ResNet50 stage-4 channels + 2 directions


def test_random_stroke_order_records_its_transform():
    model = models.create("random-stroke-order", 3, canvas=64, hidden=8, width=16)
    assert model.transform_requirements == {"stroke_order": "random"}
    assert isinstance(model, models.R2CNN)


def test_config_rebuilds_the_same_model():
    model = models.create("r2cnn-resnet18", 7, canvas=64, hidden=8, width=16, stem="small")
    again = models.create(**model.config)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert again.raster_size == 64 and model.get_classifier().out_features == 7


def test_sketchanet_layer_sizes_follow_yu_et_al():
    net = SketchANet(in_channels=1)
    x = torch.zeros(1, 1, 225, 225)
    sizes = []
    for layer in net.features:
        x = layer(x)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            sizes.append(x.shape[-1])
    assert sizes == [71, 35, 31, 15, 15, 15, 15, 7, 1, 1]
    assert x.shape[1] == net.out_features == 512


def test_resnet_width_and_small_stem():
    model = models.create("cnn-resnet18", 3, canvas=64, width=16, stem="small")
    c2 = model.backbone.c2(torch.zeros(1, 1, 64, 64))
    assert c2.shape == (1, 16, 32, 32)                   # 3x3/2 stem, no max-pool
    assert model.backbone.out_features == 128


def test_any_torchvision_model_by_name(batch):
    model = models.create("cnn-mobilenet_v3_small", 3, canvas=64)
    assert model(batch).shape == (3, 3)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1


@pytest.mark.parametrize("name, options, message", [
    ("no-such-model", {}, "unknown model"),
    ("cnn-resnet18", {"hiden": 3}, "unknown model option"),
    ("cnn-sketchanet", {"canvas": 64}, "at least 222"),
    ("cnn-resnet18", {"overlap": "first"}, "overlap"),
    ("cnn-resnet18", {"stem": "tiny"}, "stem"),
    ("cnn-resnet18", {"pretrained": "/nonexistent/weights.pth"}, "not found"),
    ("cnn-sketchanet", {"pretrained": True}, "no ImageNet weights"),
    ("cnn-mobilenet_v3_small", {"width": 16}, "ResNets only"),
    ("attention-time-encoded-resnet18", {"fixed_dropout": 1.0}, "fixed_dropout must be a probability"),
])
def test_bad_requests_are_user_errors(name, options, message):
    with pytest.raises(R2CNNError, match=message):
        models.create(name, 3, **options)


def test_missing_imagenet_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(R2CNNError, match="no ImageNet weights for resnet18"):
        models.create("cnn-resnet18", 3, pretrained="imagenet")


def _saved_torchvision_resnet18(path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), path)
    return reference.state_dict()


def test_pretrained_weights_from_a_file(tmp_path):
    path = tmp_path / "resnet18-test.pth"
    state = _saved_torchvision_resnet18(path)
    rgb = models.create("cnn-resnet18", 5, in_channels=3, pretrained=str(path))
    own = rgb.backbone.net.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key
    grey = models.create("cnn-resnet18", 5, in_channels=1, pretrained=str(path))
    conv1 = grey.backbone.net.conv1.weight
    assert conv1.shape == (64, 1, 7, 7)
    assert torch.allclose(conv1, state["conv1.weight"].sum(dim=1, keepdim=True))   # grey = R = G = B
    assert torch.equal(grey.backbone.net.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])


def test_pretrained_weights_found_in_the_hub_cache(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    state = _saved_torchvision_resnet18(tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    model = models.create("r2cnn-resnet18", 5, pretrained="imagenet", hidden=8, canvas=64)
    assert torch.equal(model.backbone.net.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_pretrained_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "resnet18-test.pth"
    _saved_torchvision_resnet18(path)
    with pytest.raises(R2CNNError, match="do not fit resnet34"):
        models.create("cnn-resnet34", 5, pretrained=str(path))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(R2CNNError, match="cannot load"):
        models.create("cnn-resnet18", 5, pretrained=str(tmp_path / "junk.pth"))


@pytest.mark.slow
def test_paper_resnet50_at_224(batch):
    """The paper's configuration (Table 1-3): ResNet50 on a 224 canvas, one forward/backward at batch 3."""
    model = models.create("r2cnn-resnet50", 345, hidden=512)
    logits = model(batch)
    assert logits.shape == (3, 345)
    logits.sum().backward()
    assert model.encoder.sequence.rnn.forward_layers[0].weight_ih_l0.grad.abs().sum() > 0


def test_stroke_level_attention_is_one_value_per_stroke(batch):
    torch.manual_seed(0)
    model = models.create("r2cnn-stroke-resnet18", 4, canvas=32, width=8, hidden=8, in_channels=2).eval()
    attention = model.forward_with_attention(batch)["attention"]
    stroke = models.stroke_index(batch.points, batch.offsets)
    assert attention.shape == (batch.points.shape[0], 2) and int(stroke[-1]) == 3  # square, line, dot, zig-zag
    for s in range(4):
        rows = attention[stroke == s]
        assert torch.equal(rows, rows[:1].expand_as(rows))
    # the value is the sigmoid of the stroke's mean logit of the point-level head
    features, _ = model.encoder.sequence(batch)
    logits = model.encoder.head(features)
    assert torch.allclose(attention[stroke == 0][0], torch.sigmoid(logits[stroke == 0].mean(0)), atol=1e-6)


def test_attention_with_the_time_encoded_channels(batch):
    """next: [a, 1, stroke order, point order]; replace: [a, stroke order, point order]; gated: [a, a * orders]."""
    from r2cnn.models import time_encoding_intensities

    torch.manual_seed(0)
    order = time_encoding_intensities(batch.points, batch.offsets)
    for name, extra in (("attention-time-encoded-resnet18", 3), ("attention-replaces-binary-resnet18", 2),
                        ("attention-gated-time-resnet18", 2)):
        model = models.create(name, 4, canvas=32, width=8, hidden=8).eval()  # no dropout: one forward
        out = model.forward_with_attention(batch)
        a = out["attention"]
        fixed = {"attention-time-encoded-resnet18": torch.cat([torch.ones_like(a), order], 1),
                 "attention-replaces-binary-resnet18": order,
                 "attention-gated-time-resnet18": order * a}[name]
        expected = model.render(batch, torch.cat([a, fixed], 1))
        assert out["image"].shape[1] == 1 + extra and torch.allclose(out["image"], expected)


@pytest.mark.parametrize("name", ["attention-time-encoded-resnet18", "time-encoded-resnet18"])
def test_fixed_dropout_draws_a_sketchs_fixed_channels_as_zeros_in_training_only(name):
    """fixed_dropout: in training each sketch's fixed channels (with the attention: binary and order; on the
    time-encoded image, its order channels) are either all drawn or all zero, both happen in a batch, and the first
    channel (attention or binary) is always drawn; in evaluation the model is the one without it."""
    sketches = _sketches() * 8  # 24 sketches
    batch = SketchBatch.from_sketches(sketches)
    torch.manual_seed(0)
    model = models.create(name, 4, canvas=32, width=8, hidden=8, fixed_dropout=0.5)
    plain = models.create(name, 4, canvas=32, width=8, hidden=8)
    plain.load_state_dict(model.state_dict())
    model.eval(), plain.eval()
    evaluated = model.forward_with_attention(batch)
    assert torch.equal(evaluated["logits"], plain.forward_with_attention(batch)["logits"])
    drawn = evaluated["image"][:, 1:]

    model.train()
    torch.manual_seed(1)
    trained = model.forward_with_attention(batch)
    fixed = trained["image"][:, 1:]
    dropped = [bool((fixed[b] == 0).all()) for b in range(len(sketches))]
    for b in range(len(sketches)):
        assert dropped[b] or torch.allclose(fixed[b], drawn[b])
    assert 0 < sum(dropped) < len(sketches)
    assert all(bool(trained["image"][b, 0].amax() > 0) for b in range(len(sketches)))
    if name.startswith("attention"):  # the loss reaches the RNN through the attention alone on dropped sketches
        trained["logits"][torch.tensor(dropped)].sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
