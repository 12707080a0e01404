"""Loading decides by what the caller asks for (r2cnn.load): a TorchScript file is code and runs only with
trust_code=True; checkpoints and ONNX files are data. Exported files get the checkpoints' permissions, and a missing
onnx package is one line naming the extra."""

import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Tuple

import pytest
import torch

import r2cnn
from r2cnn.cli import main
from r2cnn.data.builtin import CLASSES
from r2cnn.errors import R2CNNError

DRAWING = [[[10, 60, 110], [20, 90, 20]], [[30, 90], [50, 50]]]


class _WritesOnLoad(torch.nn.Module):
    """A TorchScript model with r2cnn's metadata whose ``__setstate__`` (run by ``torch.jit.load``) writes the
    file ``marker``: what a hostile model file can do."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.logits = torch.arange(len(CLASSES), dtype=torch.float32).reshape(1, -1)

    def forward(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.logits.clone(), torch.ones(points.shape[0])

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, torch.Tensor, bool]:
        return self.marker, self.logits, self.training

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, torch.Tensor, bool]) -> None:
        self.marker, self.training = state[0], state[2]
        written = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8)
        written.fill_(65)
        self.logits = state[1] + written[:1].float() * 0  # used, so the write is not optimised away


def _hostile_model(path: Path, marker: Path) -> Path:
    meta = {"classes": list(CLASSES), "has_attention": False, "input": {"preprocess": {}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notices
        torch.jit.save(torch.jit.script(_WritesOnLoad(str(marker))), str(path),
                       _extra_files={"r2cnn.json": json.dumps(meta)})
    return path


def _checkpoint(path: Path) -> Path:
    """A checkpoint of the cpu-cnn preset's model with random weights (no training needed to load it)."""
    from r2cnn.engine.checkpoint import CHECKPOINT_FORMAT, save_atomic
    from r2cnn.engine.factory import build_model
    from r2cnn.presets import get_preset

    config = get_preset("cpu-cnn")
    torch.manual_seed(0)
    model = build_model(config, len(CLASSES), pretrained=False)
    save_atomic({"format": CHECKPOINT_FORMAT, "config": config, "classes": list(CLASSES),
                 "model": model.state_dict()}, path)
    return path


@pytest.mark.parametrize("name", ["model.pt", "best.pt", "weights.bin"])
def test_torchscript_runs_no_code_without_trust_code(tmp_path, name):
    marker = tmp_path / "marker"
    path = _hostile_model(tmp_path / name, marker)
    assert not marker.exists()
    with pytest.raises(R2CNNError) as e:
        r2cnn.load(path)
    assert not marker.exists()  # nothing of the file ran
    message = str(e.value)
    assert "\n" not in message and "TorchScript" in message and "trust_code=True" in message
    model = r2cnn.load(path, trust_code=True)  # the caller trusts it: it loads, and its code runs
    assert marker.read_bytes() == b"AAAA"
    assert model.engine == "torchscript" and model.predict(DRAWING).label == CLASSES[-1]


def test_help_of_load_says_when_code_runs():
    for doc in (r2cnn.load.__doc__, r2cnn.export.load.__doc__):
        assert "trust_code=True" in doc and "TorchScript" in doc and "weights_only=True" in doc


def test_checkpoint_option_given_torchscript_is_one_line_and_runs_nothing(tmp_path):
    """``--checkpoint model.pt`` (TorchScript): one line, no torch warning before it, and no code run."""
    marker = tmp_path / "marker"
    path = _hostile_model(tmp_path / "model.pt", marker)
    sketch = tmp_path / "s.ndjson"
    sketch.write_text('{"word": "x", "drawing": [[[0, 10], [0, 10]]]}\n')
    run = subprocess.run([sys.executable, "-W", "default", "-m", "r2cnn", "predict", "--checkpoint", str(path),
                          str(sketch)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "a TorchScript file" in run.stderr and "trust_code" in run.stderr
    assert not marker.exists()


def test_a_checkpoint_with_a_stray_code_entry_loads_as_a_checkpoint(tmp_path):
    path = _checkpoint(tmp_path / "best.pt")
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(f"{z.namelist()[0].split('/')[0]}/code/__torch__.py", "def forward(self): pass\n")
    for trust in (False, True):
        model = r2cnn.load(path, trust_code=trust)
        assert model.engine == "pytorch" and model.predict(DRAWING).label in CLASSES


def test_a_damaged_torchscript_file_is_one_line_even_when_trusted(tmp_path):
    path = _hostile_model(tmp_path / "model.pt", tmp_path / "marker")
    with zipfile.ZipFile(path) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:  # the same archive, its compiled code gone
        for name, data in entries.items():
            if "/code/" not in name:
                z.writestr(name, data)
    with pytest.raises(R2CNNError) as e:
        r2cnn.load(path, trust_code=True)
    assert "\n" not in str(e.value) and "not a loadable TorchScript file" in str(e.value)


def test_exported_files_have_the_checkpoints_permissions(tmp_path):
    checkpoint = _checkpoint(tmp_path / "best.pt")
    umask = os.umask(0o022)
    try:
        for fmt, out in (("torchscript", tmp_path / "model.pt"), ("onnx", tmp_path / "model.onnx")):
            if fmt == "onnx":
                pytest.importorskip("onnx")
            assert main(["export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out)]) == 0
            for written in (out, Path(f"{out}.json"), checkpoint):
                assert oct(written.stat().st_mode & 0o777) == oct(0o644), written
    finally:
        os.umask(umask)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_export_onnx_without_the_onnx_package_names_the_extra(tmp_path, monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else find_spec(name, *a))
    checkpoint = _checkpoint(tmp_path / "best.pt")
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'sketch-r2cnn[export]'" in err
    assert not (tmp_path / "m.onnx").exists()
