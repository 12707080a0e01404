"""Export (r2cnn.export, `r2cnn export`, `r2cnn bench export`) and the loaded-model API (`r2cnn.load`)."""

import doctest
import json
import re
import shlex
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import r2cnn
from r2cnn import models
from r2cnn.cli import main
from r2cnn.data import builtin
from r2cnn.data.transforms import normalize
from r2cnn.engine.factory import build_model
from r2cnn.errors import R2CNNError
from r2cnn.export import InferenceModel, export_checkpoint, export_model, unsupported_reason
from r2cnn.presets import get_preset
from r2cnn.sketch import SketchBatch

pytest.importorskip("onnxruntime")
import onnxruntime  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(canvas=64, width=8, stem="small", hidden=16, layers=2, dropout=0.5)


def normalised_builtin(n: int, seed: int = 3) -> list:
    per_class = -(-n // len(builtin.CLASSES))
    return [normalize(s) for s in builtin.generate(per_class, seed=seed)][:n]


def pytorch_logits(model, sketch) -> np.ndarray:
    with torch.no_grad():
        return model(SketchBatch.from_sketches([sketch], labels=[-1]))[0].numpy()


def random_model(name_or_preset: str, **options):
    """A registry model (or a preset's, ImageNet weights off) with seeded random weights, eval mode."""
    torch.manual_seed(0)
    if name_or_preset in models.list_models():
        return models.create(name_or_preset, len(builtin.CLASSES), **options).eval(), {"model": name_or_preset}
    config = get_preset(name_or_preset)
    return build_model(config, len(builtin.CLASSES), pretrained=False).eval(), config


def exported_runners(model, config, tmp_path):
    """(onnxruntime, TorchScript) callables: normalised points (N, 3) -> (logits (K,), attention (N,))."""
    classes = list(builtin.CLASSES)
    meta_onnx = export_model(model, classes, config, "onnx", tmp_path / "model.onnx")
    meta_ts = export_model(model, classes, config, "torchscript", tmp_path / "model.pt")
    assert meta_onnx["classes"] == meta_ts["classes"] == classes
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        scripted = torch.jit.load(str(tmp_path / "model.pt"))

    def ort(points):
        logits, attention = session.run(None, {"points": points})
        return logits[0], attention

    @torch.no_grad()
    def ts(points):
        logits, attention = scripted(torch.from_numpy(points))
        return logits[0].numpy(), attention.numpy()

    return ort, ts


# --- the exportable encoder (item 2) ---------------------------------------------------------------------------

@pytest.mark.parametrize("layers,channels", [(1, 1), (2, 3)])
def test_single_sketch_encoder_equals_the_training_encoder(layers, channels):
    torch.manual_seed(1)
    encoder = models.AttentionEncoder(hidden_size=32, num_layers=layers, dropout=0.5, channels=channels).eval()
    sketches = normalised_builtin(24)
    batch = SketchBatch.from_sketches(sketches, labels=[-1] * len(sketches))
    with torch.no_grad():
        packed = encoder(batch)
        for b, s in enumerate(sketches):
            alone = encoder.attention_one(torch.from_numpy(s.points))
            lo, hi = int(batch.offsets[b]), int(batch.offsets[b + 1])
            assert alone.shape == (hi - lo, channels)
            assert torch.allclose(alone, packed[lo:hi], rtol=0, atol=1e-6)


# --- parity (item 3) -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["r2cnn-resnet18", "cnn-resnet18", "attention-time-encoded-resnet18",
                                  "time-encoded-resnet18"])
def test_onnx_and_torchscript_equal_pytorch_on_200_sketches(name, tmp_path):
    """A narrow cpu-r2cnn / cpu-cnn / cpu-attention-time-encoded / cpu-time-encoded (64 pixels, 2-layer BiLSTM)
    keeps this quick; the presets themselves are exported in test_required_models_export_in_both_formats."""
    model, config = random_model(name, **SMALL)
    ort, ts = exported_runners(model, config, tmp_path)
    worst = {"onnx": 0.0, "torchscript": 0.0}
    for s in normalised_builtin(200):
        expected = pytorch_logits(model, s)
        for name, run in (("onnx", ort), ("torchscript", ts)):
            logits, attention = run(s.points)
            assert attention.shape == (len(s.points),)
            worst[name] = max(worst[name], float(np.abs(logits - expected).max()))
            assert np.argmax(logits) == np.argmax(expected)
    assert max(worst.values()) <= 1e-4, worst


@pytest.mark.parametrize("strokes", [
    [[(0.1, 0.2), (0.3, 0.4), (0.5, 0.1)]],                                 # one stroke
    [[(0.1, 0.2)]],                                                         # a dot
    [[(0.1, 0.2), (0.3, 0.4)], [(0.5, 0.5)], [(0.2, 0.9), (0.8, 0.8), (0.6, 0.1), (0.0, 0.0)]],
], ids=["one-stroke", "dot", "three-strokes"])
def test_time_encoding_of_one_sketch_equals_the_batched_one(strokes):
    """The export path's stroke- and point-order channels are the training path's, also at the edge cases."""
    from r2cnn.export.inference import TimeEncoding

    def batched(points):  # the training path's values for a batch of this one sketch
        return models.time_encoding_intensities(points, torch.tensor([0, len(points)]))

    rows = [(x, y, float(i == len(stroke) - 1)) for stroke in strokes for i, (x, y) in enumerate(stroke)]
    points = torch.tensor(rows, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation notice
        scripted = torch.jit.script(TimeEncoding())
    for module in (TimeEncoding(), scripted):
        assert torch.equal(module(points), batched(points))
    missing_last_pen_end = points.clone()
    missing_last_pen_end[-1, 2] = 0.0
    assert torch.equal(TimeEncoding()(missing_last_pen_end), batched(missing_last_pen_end))
    for s in normalised_builtin(20, seed=5):
        pts = torch.from_numpy(s.points)
        assert torch.equal(TimeEncoding()(pts), batched(pts))


def test_attention_output_is_the_mean_of_the_models_attention_channels():
    torch.manual_seed(0)
    model = models.create("r2cnn-resnet18", len(builtin.CLASSES), in_channels=3, **SMALL).eval()
    s = normalised_builtin(1)[0]
    with torch.no_grad():
        expected = model.encoder(SketchBatch.from_sketches([s], labels=[-1])).mean(1).numpy()
        _, attention = InferenceModel(model).eval()(torch.from_numpy(s.points))
    np.testing.assert_allclose(attention.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("preset", ["cpu-r2cnn", "cpu-cnn", "qd-r2cnn-resnet50"])
def test_required_models_export_in_both_formats(preset, tmp_path):
    model, config = random_model(preset)
    ort, ts = exported_runners(model, config, tmp_path)
    meta = json.loads((tmp_path / "model.onnx.json").read_text())
    assert meta["has_attention"] == (preset != "cpu-cnn")
    assert meta["canvas"]["size"] == [model.raster_size] * 2 and meta["model"] == config["model"]
    for s in normalised_builtin(3, seed=11):
        expected = pytorch_logits(model, s)
        for run in (ort, ts):
            logits, attention = run(s.points)
            np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
            if preset == "cpu-cnn":
                assert (attention == 1).all()


def test_every_registered_model_exports_or_says_why_in_one_line(tmp_path):
    """Supported kinds run the tensor-only path equal to the model; the others raise a one-line reason."""
    sketch = normalised_builtin(1, seed=4)[0]
    for name in models.list_models():
        reason = unsupported_reason(name)
        small = name.endswith("resnet18") or name.startswith(("cnn-lenet",))
        options = {"canvas": 64, "width": 8, "stem": "small", "hidden": 8} if name.endswith("resnet18") else {}
        if reason is not None:
            assert "\n" not in reason
            model, _ = random_model(name, **options)
            with pytest.raises(R2CNNError, match=re.escape(reason)):
                export_model(model, list(builtin.CLASSES), {"model": name}, "onnx", tmp_path / "unused.onnx")
        elif small:
            model, _ = random_model(name, **options)
            with torch.no_grad():
                logits, _ = InferenceModel(model, scripted=False).eval()(torch.from_numpy(sketch.points))
            np.testing.assert_allclose(logits[0].numpy(), pytorch_logits(model, sketch), rtol=0, atol=1e-4)
    assert unsupported_reason("cnn-resnet50") is None and unsupported_reason("two-branch-late-fusion")


def test_classic_model_file_is_a_one_line_error(tmp_path):
    with pytest.raises(R2CNNError, match="classic model"):
        export_checkpoint(tmp_path / "svm.npz", "onnx", tmp_path / "m.onnx")


# --- the command and the metadata --------------------------------------------------------------------------------

def test_export_command_writes_model_and_sidecar(tiny_r2cnn_checkpoint, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(tiny_r2cnn_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    meta = json.loads(Path(f"{out}.json").read_text())
    assert meta["format"] == "onnx" and sorted(meta["classes"]) == sorted(builtin.CLASSES) and meta["preset"] == "cpu-r2cnn"
    assert meta["input"]["shape"] == ["N", 3] and meta["input"]["coordinates"]["margin"] == 0.05
    assert [o["name"] for o in meta["outputs"]] == ["logits", "attention"] and meta["has_attention"]
    import onnx
    props = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert props == meta
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--format", "onnx", "--checkpoint", "missing.pt"], "checkpoint not found"),
    (["--format", "tflite", "--checkpoint", "missing.pt"], "invalid choice"),
])
def test_export_command_errors_are_one_line(argv, message, tmp_path, capsys):
    assert main(["export", *argv, "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bench_export_reports_ratios(capsys):
    assert main(["bench", "export", "--lengths", "20,35", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "x anchor" in out and "TorchScript / onnxruntime" in out
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [20, 35]  # one sketch per length, of exactly that many points


# --- the loaded-model API (item 5) ---------------------------------------------------------------------------

STROKES = [[[10, 60, 110, 60, 10], [20, 90, 20, 5, 20]], [[30, 90], [50, 50]], [[200], [200]]]


def test_load_predicts_alike_from_checkpoint_onnx_and_torchscript(tiny_r2cnn_checkpoint, tmp_path):
    export_checkpoint(tiny_r2cnn_checkpoint, "onnx", tmp_path / "model.onnx")
    export_checkpoint(tiny_r2cnn_checkpoint, "torchscript", tmp_path / "model.pt")
    results = {path: r2cnn.load(path, trust_code=True).predict(STROKES, top_k=3)
               for path in (tiny_r2cnn_checkpoint, tmp_path / "model.onnx", tmp_path / "model.pt")}
    ckpt, *exported = results.values()
    assert len(ckpt.labels) == 3 and all(label in builtin.CLASSES for label in ckpt.labels)
    assert ckpt.points.shape == (8, 3) and ckpt.attention.shape == (8,)
    for r in exported:
        assert r.labels == ckpt.labels
        np.testing.assert_allclose(r.probabilities, ckpt.probabilities, atol=1e-5)
        np.testing.assert_allclose(r.attention, ckpt.attention, atol=1e-5)
    assert [r2cnn.load(p, trust_code=True).engine for p in results] == ["pytorch", "onnxruntime", "torchscript"]


def test_cnn_only_model_has_no_attention(tiny_cnn_checkpoint, tmp_path):
    export_checkpoint(tiny_cnn_checkpoint, "onnx", tmp_path / "cnn.onnx")
    for path in (tiny_cnn_checkpoint, tmp_path / "cnn.onnx"):
        assert r2cnn.load(path).predict(STROKES).attention is None


@pytest.mark.parametrize("strokes,message", [([[[1, 2], [3]]], r"drawing\[0\]': x/y length mismatch"),
                                             ([5], r"drawing\[0\]': stroke is not"), ([], "empty drawing")])
def test_bad_strokes_are_one_line_errors(tiny_r2cnn_checkpoint, strokes, message):
    with pytest.raises(R2CNNError, match=message):
        r2cnn.load(tiny_r2cnn_checkpoint).predict(strokes)


def test_load_of_a_missing_or_foreign_file_is_a_one_line_error(tmp_path):
    with pytest.raises(R2CNNError, match="no such model file"):
        r2cnn.load(tmp_path / "nothing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(R2CNNError, match="not a readable ONNX model"):
        r2cnn.load(tmp_path / "junk.onnx")


def test_readme_python_api_example(tiny_r2cnn_checkpoint, tmp_path, monkeypatch):
    """The README's "Python API" block, as a doctest, on the checkpoint the example above it trains, after the
    `r2cnn export` command the README gives."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Python API"):]
    command = re.search(r"`(r2cnn export [^`]+)`", section).group(1)
    block = re.search(r"```pycon\n(.*?)```", section, flags=re.S).group(1)
    (tmp_path / "runs" / "r2cnn-py").mkdir(parents=True)
    shutil.copy(tiny_r2cnn_checkpoint, tmp_path / "runs" / "r2cnn-py" / "best.pt")
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(command)[1:]) == 0
    test = doctest.DocTestParser().get_doctest(block, {}, "README", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
