"""`r2cnn serve --onnx model.onnx`: an exported model served on its own (onnxruntime on the server, the same file
for the page), checked before it is announced; a checkpoint given beside it must be the same model."""

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="fastapi is not installed (pip install 'sketch-r2cnn')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
from fastapi.testclient import TestClient  # noqa: E402

import r2cnn  # noqa: E402
from r2cnn.cli import main  # noqa: E402
from r2cnn.errors import R2CNNError  # noqa: E402
from r2cnn.presets import get_preset  # noqa: E402

# Two strokes in screen-like coordinates: a "V" and a bar.
DRAWING = [[[10, 60, 110, 160], [10, 80, 10, 90]], [[30, 90, 140], [50, 52, 50]]]
ENV = dict(os.environ, R2CNN_NO_REEXEC="1", OMP_NUM_THREADS="1")
MODEL = get_preset("cpu-r2cnn")["model"]  # the tiny checkpoint's preset's model


@pytest.fixture(scope="module")
def exported(tiny_r2cnn_checkpoint, tmp_path_factory) -> Path:
    """The tiny R2CNN checkpoint exported with `r2cnn export --format onnx` (sidecar beside it)."""
    from r2cnn.export import export_checkpoint

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_checkpoint(tiny_r2cnn_checkpoint, "onnx", out)
    return out


def _args(**given) -> Namespace:
    """`r2cnn serve`'s parsed options, defaults but for ``given``."""
    import argparse

    from r2cnn.commands.serve import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([f"--{k.replace('_', '-')}={v}" for k, v in given.items()])


def _served(**given) -> tuple:
    """The app `r2cnn serve` would run with these options, as a TestClient, and what serves it."""
    from r2cnn.commands.serve import load_served
    from r2cnn.serve import create_app

    recognizer, browser, serves = load_served(_args(**given))
    return TestClient(create_app(recognizer, browser=browser)), recognizer, serves


def _top(answer: dict) -> list:
    return [(t["class"], t["probability"]) for t in answer["top"]]


def test_onnx_alone_answers_with_the_onnx_model_never_the_demo_checkpoint(exported, tiny_cnn_checkpoint, tmp_path):
    """The real command in a folder where `r2cnn demo` left another model (a CNN-only one): `serve --onnx` alone
    answers /api/predict with the ONNX model, the same top-5 as `r2cnn.load(model.onnx).predict`, also with the
    page's engine off (--browser-max-mb small: the page asks the server)."""
    demo = tmp_path / "runs" / "demo" / "r2cnn"
    demo.mkdir(parents=True)
    shutil.copy(tiny_cnn_checkpoint, demo / "best.pt")
    proc = subprocess.Popen([sys.executable, "-m", "r2cnn", "serve", "--onnx", str(exported), "--port", "0",
                             "--browser-max-mb", "0.001"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("serving http://127.0.0.1:"), first + proc.stderr.read()
        assert f"ONNX model {exported} in onnxruntime" in first and "with attention" in first
        assert "stays on the server" in proc.stdout.readline()
        url = first.split()[1]

        def get(path: str, body: dict | None = None) -> dict:
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(url + path, data, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())

        health = get("health")
        assert health["checkpoint"] == "model.onnx" and health["engine"] == "onnxruntime"
        assert get("api/classes")["browser_model"] is None
        answer = get("api/predict", {"drawing": DRAWING, "top_k": 5})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    expected = r2cnn.load(exported).predict(DRAWING, top_k=5)
    assert [c for c, _ in _top(answer)] == expected.labels
    np.testing.assert_allclose([p for _, p in _top(answer)], expected.probabilities, rtol=0, atol=1e-6)
    assert [len(a) for a in answer["attention"]] == [4, 3]


def test_every_endpoint_of_the_page_works_with_the_onnx_model_alone(exported, tiny_r2cnn_checkpoint):
    """/, /api/classes, /browser/model.onnx, /api/parse, /health and /api/predict in ONNX-alone mode; its answers
    equal the checkpoint's own server's (top-5 and attention at every drawn point within 1e-5)."""
    client, recognizer, serves = _served(onnx=exported)
    assert serves == f"ONNX model {exported} in onnxruntime" and recognizer.engine == "onnxruntime"
    assert client.get("/").status_code == 200
    info = client.get("/api/classes").json()
    assert info["classes"] == recognizer.classes and info["has_attention"] and info["model"] == MODEL
    assert info["browser_model"]["url"] == "browser/model.onnx" and "the page runs model.onnx" in info["browser_note"]
    assert client.get("/browser/model.onnx").content == exported.read_bytes()
    parsed = client.post("/api/parse?format=ndjson", content=json.dumps({"word": "v", "drawing": DRAWING}))
    assert parsed.status_code == 200 and parsed.json()["drawing"] == DRAWING
    assert client.get("/health").json()["engine"] == "onnxruntime"
    onnx_answer = client.post("/api/predict", json={"drawing": DRAWING, "top_k": 5}).json()

    by_checkpoint, recognizer, serves = _served(checkpoint=tiny_r2cnn_checkpoint)
    assert serves == f"checkpoint {tiny_r2cnn_checkpoint}" and recognizer.engine == "pytorch"
    pytorch_answer = by_checkpoint.post("/api/predict", json={"drawing": DRAWING, "top_k": 5}).json()
    assert [c for c, _ in _top(onnx_answer)] == [c for c, _ in _top(pytorch_answer)]
    np.testing.assert_allclose([p for _, p in _top(onnx_answer)], [p for _, p in _top(pytorch_answer)], atol=1e-5)
    np.testing.assert_allclose(sum(onnx_answer["attention"], []), sum(pytorch_answer["attention"], []), atol=1e-5)
    assert onnx_answer["attention_channels"] == pytorch_answer["attention_channels"]


def test_cnn_only_onnx_alone_has_no_attention(tiny_cnn_checkpoint, tmp_path):
    from r2cnn.export import export_checkpoint

    export_checkpoint(tiny_cnn_checkpoint, "onnx", tmp_path / "cnn.onnx")
    client, recognizer, _ = _served(onnx=tmp_path / "cnn.onnx")
    assert not recognizer.has_attention and client.get("/api/classes").json()["has_attention"] is False
    answer = client.post("/api/predict", json={"drawing": DRAWING}).json()
    assert answer["attention"] is None and answer["attention_channels"] is None
    assert [c for c, _ in _top(answer)] == r2cnn.load(tmp_path / "cnn.onnx").predict(DRAWING).labels


def test_checkpoint_and_its_export_together_serve_the_checkpoint(exported, tiny_r2cnn_checkpoint):
    from r2cnn.engine.predict import Predictor
    from r2cnn.serve.recognizer import SAME_MODEL_TOLERANCE, check_same_model, load_onnx

    assert check_same_model(Predictor(str(tiny_r2cnn_checkpoint)), load_onnx(exported), "c", "o") \
        < SAME_MODEL_TOLERANCE["cpu"] / 100
    client, recognizer, serves = _served(checkpoint=tiny_r2cnn_checkpoint, onnx=exported)
    assert recognizer.engine == "pytorch" and serves == f"checkpoint {tiny_r2cnn_checkpoint}"
    assert client.get("/api/classes").json()["browser_model"]["url"] == "browser/model.onnx"


def test_a_checkpoint_and_another_models_onnx_are_refused_in_one_line(exported, tiny_r2cnn_checkpoint,
                                                                      tiny_cnn_checkpoint, tmp_path, capsys):
    """Another preset, other classes (or their order), another evaluation transform, other weights of the same
    preset: each refused with one line naming both files, before anything is announced."""
    import torch

    from r2cnn.engine.factory import load_model
    from r2cnn.engine.predict import Predictor
    from r2cnn.export import LoadedModel, export_model
    from r2cnn.serve.recognizer import check_same_model, load_onnx

    assert main(["serve", "--checkpoint", str(tiny_cnn_checkpoint), "--onnx", str(exported), "--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"--onnx {exported} is not the model of --checkpoint {tiny_cnn_checkpoint}: its preset is 'cpu-r2cnn', " \
           "the checkpoint's 'cpu-cnn'" in err

    predictor, onnx = Predictor(str(tiny_r2cnn_checkpoint)), load_onnx(exported)

    def refused(metadata: dict) -> str:
        changed = LoadedModel(onnx.engine, lambda points: None, metadata)  # refused before it runs
        with pytest.raises(R2CNNError) as caught:
            check_same_model(predictor, changed, "best.pt", "model.onnx")
        assert "\n" not in str(caught.value)
        return str(caught.value)

    meta = onnx.metadata
    assert "its 12 classes are not the checkpoint's 12 (same names, another order)" in refused(
        {**meta, "classes": meta["classes"][::-1]})
    assert f"its model is 'sketch-a-net', the checkpoint's {MODEL!r}" in refused({**meta, "model": "sketch-a-net"})
    assert "evaluation transform" in refused({**meta, "input": {**meta["input"], "preprocess": {"margin": 0.1}}})

    # the same preset and classes, other weights: only the logits tell
    model, ckpt = load_model(str(tiny_r2cnn_checkpoint))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    export_model(model, list(ckpt["classes"]), ckpt["config"], "onnx", tmp_path / "other.onnx")
    with pytest.raises(R2CNNError, match=r"their log-probabilities on 4 built-in sketches differ by up to .* \(the "
                                         r"same model's agree within 0.001\)"):
        check_same_model(predictor, load_onnx(tmp_path / "other.onnx"), "best.pt", "other.onnx")


def _refusal(argv, capsys) -> str:
    assert main(["serve", *argv, "--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, out + err  # refused before anything is announced
    return err


def test_a_file_that_is_not_a_checked_onnx_export_is_refused_at_start(exported, tiny_r2cnn_checkpoint, tmp_path,
                                                                      capsys):
    """A checkpoint or TorchScript file given as --onnx (by name or renamed), a truncated ONNX file, an ONNX model
    without the export's metadata, a missing sidecar, a sidecar that says something else, --device cuda."""
    import onnx

    def copy(name: str, source: Path = exported, sidecar: dict | None = None) -> Path:
        path = tmp_path / name
        shutil.copy(source, path)
        meta = json.loads(Path(f"{exported}.json").read_text()) if sidecar is None else sidecar
        Path(f"{path}.json").write_text(json.dumps(meta))
        return path

    assert "best.pt: --onnx takes an ONNX file (*.onnx" in _refusal(["--onnx", str(tiny_r2cnn_checkpoint)], capsys)
    zipped = copy("zipped.onnx", tiny_r2cnn_checkpoint)
    assert "zipped.onnx: a zip archive (a TorchScript export or a PyTorch checkpoint), not an ONNX model" in \
        _refusal(["--onnx", str(zipped)], capsys)
    truncated = copy("truncated.onnx")
    truncated.write_bytes(exported.read_bytes()[:exported.stat().st_size // 2])
    assert "truncated.onnx: not a readable ONNX model" in _refusal(["--onnx", str(truncated)], capsys)
    bare = onnx.load(str(exported))
    del bare.metadata_props[:]
    onnx.save(bare, str(copy("bare.onnx")))
    assert "bare.onnx: an ONNX model without r2cnn metadata" in _refusal(["--onnx", str(tmp_path / "bare.onnx")],
                                                                        capsys)
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(exported, lonely)
    assert "no sidecar lonely.onnx.json or lonely.json" in _refusal(["--onnx", str(lonely)], capsys)
    meta = json.loads(Path(f"{exported}.json").read_text())
    other = copy("other.onnx", sidecar={**meta, "format": "torchscript"})
    assert "other.onnx.json: its 'format' is not the one recorded in other.onnx (\"torchscript\" vs \"onnx\")" in \
        _refusal(["--onnx", str(other)], capsys)
    broken = copy("broken.onnx")
    Path(f"{broken}.json").write_text("{oops")
    assert "broken.onnx.json: not readable JSON" in _refusal(["--onnx", str(broken)], capsys)
    assert "--device cuda: an --onnx model alone runs on the CPU (onnxruntime)" in \
        _refusal(["--onnx", str(exported), "--device", "cuda"], capsys)
