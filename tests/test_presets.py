"""Presets (r2cnn.presets): schema, the paper's settings (Sec. 4.1), the CPU pair, and ``r2cnn presets``."""

import json

import pytest

from r2cnn import models
from r2cnn.cli import main
from r2cnn.data.transforms import make_transform
from r2cnn.errors import R2CNNError
from r2cnn.presets import PRESETS, cnn_twin, get_preset

KEYS = {"description", "model", "model_options", "batch_size", "optimizer", "lr", "weight_decay", "epochs",
        "lr_schedule", "grad_clip", "transform", "eval_transform", "num_workers", "amp"}


CPU_FAMILY = {"cpu-r2cnn", "cpu-r2cnn-paper", "cpu-cnn",
              "cpu-attentive", "cpu-random-stroke-order", "cpu-sketching-order",
              "cpu-late-fusion", "cpu-early-fusion", "cpu-time-encoded", "cpu-attention-time-encoded",
              "cpu-r2cnn-stroke", "cpu-attention-replaces-binary", "cpu-attention-gated-time", "cpu-r2cnn-c3",
              "cpu-r2cnn-contrast"}


def test_cpu_family_trains_the_rnn_at_ten_times_the_learning_rate():
    for name in CPU_FAMILY:
        assert get_preset(name)["encoder_lr_scale"] == 10.0, name
    assert "encoder_lr_scale" not in get_preset("qd-r2cnn-resnet50")  # the paper: one learning rate


@pytest.mark.parametrize("name", sorted(n for n, p in PRESETS.items() if p.get("runner", "neural") == "neural"))
def test_schema_and_everything_it_names_exists(name):
    preset = get_preset(name)
    # the CPU presets of cpu-r2cnn's family train the RNN at its own learning rate; the paper's use one rate
    assert set(preset) == (KEYS | {"encoder_lr_scale"} if name in CPU_FAMILY else KEYS)
    assert json.loads(json.dumps(preset)) == preset                  # stored in checkpoints as plain JSON
    assert preset["optimizer"] == "adam" and preset["lr"] > 0 and preset["batch_size"] > 0
    models.get_spec(preset["model"])
    # in_channels (C) is an argument of models.create that model_options may give (cpu-r2cnn-c3)
    assert set(preset["model_options"]) <= set(models.DEFAULT_OPTIONS) | {"in_channels"}
    make_transform(True, **preset["transform"])
    make_transform(False, **preset["eval_transform"])


def test_paper_settings():
    """Sec. 4.1: Adam, batch 48; lr 1e-4 on QuickDraw, 5e-5 on TU-Berlin; TU-Berlin RDP to <= 448 points and
    flip / stroke removal / deformation augmentation; 224 canvas for ResNet50, 225 for Sketch-a-Net v2."""
    for name in ("qd-r2cnn-resnet50", "qd-r2cnn-sketchanet", "qd-cnn-resnet50", "qd-cnn-sketchanet",
                 "qd-two-branch-late-fusion"):
        p = get_preset(name)
        assert (p["lr"], p["batch_size"]) == (1e-4, 48)
    tables_1_2 = ("cnn-sketchanet", "cnn-resnet50", "r2cnn-sketchanet", "r2cnn-resnet50", "attentive-resnet50",
                  "random-stroke-order", "attention-sketching-order", "two-branch-late-fusion",
                  "two-branch-early-fusion")
    for model in tables_1_2:
        p = get_preset(f"tub-{model}")
        assert (p["lr"], p["batch_size"], p["model"]) == (5e-5, 48, model)
        assert p["transform"]["max_points"] == 448 and p["eval_transform"]["max_points"] == 448
        assert min(p["transform"][k] for k in ("flip", "stroke_removal", "deform")) > 0
    assert get_preset("tub-random-stroke-order")["eval_transform"]["stroke_order"] == "random"
    assert get_preset("tub-random-stroke-order")["transform"]["stroke_order"] == "random"
    assert "stroke_order" not in get_preset("tub-r2cnn-resnet50")["transform"]
    assert models.create("r2cnn-sketchanet", 3, hidden=8).raster_size == 225


def test_cpu_pair_differs_only_in_the_model_and_what_acts_on_its_fixed_channels():
    r2cnn, cnn = get_preset("cpu-r2cnn"), get_preset("cpu-cnn")
    assert cnn_twin("cpu-r2cnn") == "cpu-cnn" and cnn_twin("qd-r2cnn-resnet50") == "qd-cnn-resnet50"
    for design in ("cpu-attention-replaces-binary", "cpu-attention-gated-time", "cpu-r2cnn-contrast", "cpu-r2cnn-c3"):
        assert cnn_twin(design) == "cpu-cnn", design
    assert cnn_twin("cpu-time-encoded") is None
    assert cnn_twin("cpu-r2cnn-paper") == "cpu-cnn"
    paper = get_preset("cpu-r2cnn-paper")
    # the model, and the one model option that acts only on the fixed channels the twin does not have
    for preset in (r2cnn, paper):
        options = {k: v for k, v in preset["model_options"].items() if k != "fixed_dropout"}
        assert options == cnn["model_options"]
        assert {k: v for k, v in preset.items() if k not in ("model", "model_options", "description")} == \
               {k: v for k, v in cnn.items() if k not in ("model", "model_options", "description")}
    assert models.get_spec(cnn["model"]).kind == "cnn"
    # the CPU preset is the design kept on validation (docs/experiments.md): still RNN -> NLR -> CNN, the attention drawn
    # next to the time-encoded channels, which half the training sketches get as zeros; the paper's design
    # (attention as the only channel) is cpu-r2cnn-paper
    assert r2cnn["model"] == get_preset("cpu-attention-time-encoded")["model"] == "attention-time-encoded-resnet18"
    assert r2cnn["model_options"]["fixed_dropout"] == 0.5
    kept_in_session_9 = get_preset("cpu-attention-time-encoded")
    assert {k: v for k, v in r2cnn.items() if k not in ("model_options", "description")} == \
           {k: v for k, v in kept_in_session_9.items() if k not in ("model_options", "description")}
    assert models.get_spec(r2cnn["model"]).kind == "attention-time"
    assert models.get_spec(paper["model"]).kind == "r2cnn"


def test_get_preset_returns_a_copy_and_rejects_unknown_names():
    get_preset("cpu-r2cnn")["model_options"]["canvas"] = 1
    assert PRESETS["cpu-r2cnn"]["model_options"]["canvas"] == 64
    with pytest.raises(R2CNNError, match="unknown preset"):
        get_preset("no-such-preset")


def test_presets_command_lists_every_preset(capsys):
    assert main(["presets", "--all"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["name", "model", "canvas", "lr", "batch", "description"]
    for name, preset in PRESETS.items():
        row = next(line for line in out.splitlines() if line.split()[0] == name)
        model = preset["model"] if preset.get("runner", "neural") == "neural" else \
            f"classic:{preset['classifier']['kind']}"
        assert row.split()[1] == model
    assert main(["presets", "cpu-cnn"]) == 0
    assert json.loads(capsys.readouterr().out) == get_preset("cpu-cnn")
    assert main(["presets", "nope"]) == 2


PAPER_RESNET50 = sorted(n for n, p in PRESETS.items() if n.startswith(("qd-", "tub-")) and p["description"].startswith("paper")
                        and p.get("runner", "neural") == "neural" and models.get_spec(p["model"]).backbone == "resnet50")


def test_paper_resnet50_presets_start_from_imagenet_and_say_so(capsys):
    assert len(PAPER_RESNET50) == 10  # 3 QuickDraw (Table 3) + 7 TU-Berlin (Tables 1, 2)
    assert main(["presets", "--all"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    for name in PAPER_RESNET50:
        assert get_preset(name)["model_options"]["pretrained"] == "imagenet", name
        assert "from ImageNet weights" in listed[name], name
    assert "pretrained" not in get_preset("qd-cnn-sketchanet")["model_options"]


def test_imagenet_weights_missing_is_one_line_and_null_or_init_from_trains(tiny_store, tmp_path, monkeypatch,
                                                                           capsys):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no weights file, even where one is
    small = ["--data", str(tiny_store), "--steps", "1", "--batch-size", "4", "--workers", "0",
             "--set", "model_options.canvas=32"]
    assert main(["train", "--preset", "qd-cnn-resnet50", "--out", str(tmp_path / "a"), *small]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "hub" / "checkpoints" / "resnet50-") in err
    assert "--set model_options.pretrained=null trains from scratch" in err
    assert main(["train", "--preset", "qd-cnn-resnet50", "--out", str(tmp_path / "b"), *small,
                 "--set", "model_options.pretrained=null"]) == 0
    # fine-tuning from a QuickDraw checkpoint (the paper's TU-Berlin runs) does not need the ImageNet file
    assert main(["train", "--preset", "tub-cnn-resnet50", "--out", str(tmp_path / "c"), *small,
                 "--init-from", str(tmp_path / "b" / "best.pt")]) == 0


def test_an_experiment_row_of_a_paper_resnet50_preset_is_not_run_without_the_weights(tiny_store, tmp_path,
                                                                                     monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "t"\ntitle = "t"\nreference = "cnn"\n[defaults]\nprotocol = "quickdraw"\nseeds = [0]\n'
                    '[[rows]]\nid = "cnn"\npreset = "cpu-cnn"\n[[rows]]\nid = "resnet50"\npreset = "qd-cnn-resnet50"\n')
    out = tmp_path / "exp"
    assert main(["experiment", str(spec), "--data", str(tiny_store), "--out", str(out), "--steps", "1",
                 "--set", "batch_size=8", "--set", "model_options.canvas=32", "--workers", "0",
                 "--bootstrap", "100"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["not_run"]) == ["resnet50"] and "resnet50-" in results["not_run"]["resnet50"]
