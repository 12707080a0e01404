"""Hardening of the engine and the command line: no run silently wiped, no traceback on bad input, options
checked where they are parsed, and the correctness fixes (nested --set, pretrained weights, BN statistics,
subnormal flag, the README's example)."""

import argparse
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from r2cnn.cli import COMMANDS, _command_parser, main
from r2cnn.engine.checkpoint import load_checkpoint, save_atomic
from r2cnn.errors import R2CNNError

REPO = Path(__file__).resolve().parents[1]
# A tiny R2CNN (the CPU preset's code path, much smaller) so that a run takes seconds.
TINY = '{"canvas": 32, "width": 8, "stem": "small", "hidden": 16, "layers": 1}'


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from r2cnn.data.store import prepare

    out = tmp_path_factory.mktemp("hardening") / "store"
    prepare([], out, builtin=6, split_sizes=(4, 1, 1), log=lambda *a: None, progress=False)
    return out


def train_args(store, out, *extra):
    return ["train", "--preset", "cpu-r2cnn", "--data", str(store), "--out", str(out), "--set",
            f"model_options={TINY}", "--batch-size", "8", "--steps", "2", "--workers", "0", *map(str, extra)]


@pytest.fixture(scope="module")
def run_dir(store, tmp_path_factory):
    """A finished two-step run (last.pt, best.pt, log.jsonl)."""
    out = tmp_path_factory.mktemp("hardening") / "run"
    assert main(train_args(store, out)) == 0
    return out


def one_line_error(capsys, argv) -> str:
    """Run ``r2cnn ARGV`` in this process; it must fail with exactly one ``r2cnn: error:`` line."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("r2cnn: error: "), err
    assert "Traceback" not in err and "\x1b" not in err
    return lines[0]


# --- Security and data loss 4: an existing run folder is never wiped without being asked -------------------

def test_train_refuses_a_run_folder_that_holds_a_run(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(store, out)) == 0
    capsys.readouterr()
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    log_before = (out / "log.jsonl").read_text()
    line = one_line_error(capsys, train_args(store, out))
    assert "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # untouched
    assert (out / "log.jsonl").read_text() == log_before


def test_train_overwrite_clears_what_train_wrote_and_nothing_else(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(store, out)) == 0
    (out / "notes.txt").write_text("mine")
    (out / "tensorboard").mkdir()
    (out / ".last.pt.abc.tmp").write_bytes(b"torn")
    old_best = load_checkpoint(out / "best.pt")["model"]
    assert main(train_args(store, out, "--overwrite", "--seed", "5")) == 0
    events = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["kind"] == "event"]
    assert [e["event"] for e in events] == ["start", "done"]  # one run's log, not two
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "tensorboard").exists() and not (out / ".last.pt.abc.tmp").exists()
    new_best = load_checkpoint(out / "best.pt")
    assert new_best["config"]["seed"] == 5
    assert any(not torch.equal(old_best[k], v) for k, v in new_best["model"].items())
    assert "cannot" not in capsys.readouterr().err
    assert "not allowed with" in one_line_error(capsys, train_args(store, out, "--overwrite", "--resume"))


# --- Security and data loss 5: --resume after a kill in the middle of a log append -------------------------

def test_resume_truncates_a_torn_last_log_line(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(store, out)) == 0
    with (out / "log.jsonl").open("a") as f:
        f.write('{"kind": "train", "time": 1.5, "st')  # what a kill during an append leaves
    assert main(["train", "--resume", "--data", str(store), "--out", str(out), "--workers", "0"]) == 0
    lines = (out / "log.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is JSON again
    assert records[-1]["event"] == "done" and records[-2]["event"] == "resume"
    capsys.readouterr()


def test_resume_refuses_a_log_damaged_before_its_last_line(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(store, out)) == 0
    lines = (out / "log.jsonl").read_text().splitlines()
    lines[1] = lines[1][:10]
    (out / "log.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    line = one_line_error(capsys, ["train", "--resume", "--data", store, "--out", out, "--workers", "0"])
    assert f"{out / 'log.jsonl'}:2:" in line


# --- No traceback, ever ------------------------------------------------------------------------------------

def _foreign_checkpoints(folder: Path) -> dict:
    """Files a user may pass as --checkpoint that are not ours -> a word the error must contain."""
    (folder / "empty.pt").write_bytes(b"")
    torch.save({"model": {}, "config": {"model": "cnn-resnet18"}}, folder / "no_classes.pt")
    torch.save({"a": np.zeros(3)}, folder / "numpy.pt")  # needs numpy's reconstructor: refused by weights_only
    torch.save(torch.nn.Linear(2, 2).state_dict(), folder / "state_dict.pt")
    torch.save([1, 2], folder / "list.pt")
    good = folder / "good.pt"
    torch.save({"model": {}, "config": {"model": "cnn-resnet18"}, "classes": ["a"]}, good)
    (folder / "torn.pt").write_bytes(good.read_bytes()[:200])
    (folder / "text.pt").write_text("hello, I am a text file\n")
    return {"empty.pt": "empty file", "no_classes.pt": "'classes'", "numpy.pt": "numpy", "state_dict.pt": "no ",
            "list.pt": "not a dict", "torn.pt": "truncated", "text.pt": "not a PyTorch file"}


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_checkpoints_that_are_not_ours_are_one_line(store, tmp_path, capsys, command):
    for name, word in _foreign_checkpoints(tmp_path).items():
        path = tmp_path / name
        argv = (["evaluate", "--checkpoint", path, "--data", store] if command == "evaluate"
                else ["predict", "--checkpoint", path, tmp_path / "x.ndjson"])
        line = one_line_error(capsys, argv)
        assert str(path) in line and word in line, line
        assert "weights_only" not in line and "trust" not in line, line


def test_a_checkpoint_whose_weights_do_not_fit_its_config(run_dir, store, tmp_path, capsys):
    ckpt = load_checkpoint(run_dir / "best.pt")
    ckpt["classes"] = ckpt["classes"] + ["extra"]  # the classifier has one class fewer than the names
    save_atomic(ckpt, tmp_path / "odd.pt")
    assert "do not fit" in one_line_error(capsys, ["predict", "--checkpoint", tmp_path / "odd.pt", "x.ndjson"])


def test_torch_load_failures_are_described_in_whole_words():
    from r2cnn.errors import describe_load_failure

    long = RuntimeError("first sentence of a long message " + "word " * 60 + ". second")
    text = describe_load_failure(long)
    assert text == "not a PyTorch file (RuntimeError)"  # too long to show: left out whole, never cut
    assert describe_load_failure(KeyError("101")) == "not a PyTorch file (KeyError: '101')"
    assert describe_load_failure(ValueError("")) == "not a PyTorch file (ValueError)"


@pytest.mark.parametrize("extra, message", [
    (["--set", "lr={bad"], "not JSON"),
    (["--set", 'lr="fast"'], "config entry lr must be a number > 0"),
    (["--set", "batch_size=2.5"], "config entry batch_size must be an integer"),
    (["--set", "lr_schedule={\"warmup\": \"x\"}"], "config entry lr_schedule"),
    (["--set", "transform={\"flipp\": 0.5}"], "transform option flipp"),
    (["--lr", "-1"], "argument --lr: must be > 0, not -1"),
    (["--lr", "nan"], "argument --lr: must be a finite number"),
    (["--epochs", "0"], "argument --epochs: must be at least 1"),
    (["--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["--workers", "-1"], "argument --workers: must be 0 or more"),
    (["--max-minutes", "0"], "argument --max-minutes: must be > 0"),
    (["--steps", "abc"], "argument --steps: not an integer"),
    (["--set", 'model_options={"hidden": -5}'], "model option hidden must be an integer from 1 to 4096, not -5"),
    (["--set", 'model_options={"dropout": 1.5}'], "model option dropout"),
    (["--set", 'model_options={"canvas": "big"}'], "model option canvas"),
])
def test_bad_train_options_are_one_line(store, tmp_path, capsys, extra, message):
    argv = ["train", "--preset", "cpu-r2cnn", "--data", store, "--out", tmp_path / "run", "--steps", "1",
            "--workers", "0", *extra]
    if "--steps" in extra or "--epochs" in extra:
        del argv[argv.index("--steps"):argv.index("--steps") + 2]
    line = one_line_error(capsys, argv)
    assert message in line, line
    assert not (tmp_path / "run" / "log.jsonl").exists()


@pytest.mark.parametrize("argv, message", [
    (["predict", "--checkpoint", "c.pt", "x.ndjson", "--batch-size", "0"], "--batch-size: must be at least 1"),
    (["predict", "--checkpoint", "c.pt", "x.ndjson", "--top-k", "0"], "--top-k: must be at least 1"),
    (["evaluate", "--checkpoint", "c.pt", "--data", "d", "--workers", "-2"], "--workers: must be 0 or more"),
    (["demo", "--minutes", "-1"], "--minutes: must be > 0"),
    (["predict", "--checkpoint", "c.pt", "x.ndjson", "--device", "tpu"], "invalid choice"),
])
def test_bad_options_of_other_commands_are_one_line(capsys, argv, message):
    assert message in one_line_error(capsys, argv)


def test_output_paths_under_an_existing_file_are_one_line(run_dir, store, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    line = one_line_error(capsys, train_args(store, blocker / "run"))  # refused where the run's lock would go
    assert line == f"r2cnn: error: {blocker}: cannot create the folder ({blocker} is a file, not a folder)"
    assert "a file is in the way" in one_line_error(capsys, train_args(store, blocker))
    ckpt = run_dir / "best.pt"
    line = one_line_error(capsys, ["evaluate", "--checkpoint", ckpt, "--data", store, "--json", blocker / "r.json"])
    assert line == f"r2cnn: error: {blocker}: cannot create the folder ({blocker} is a file, not a folder)"
    line = one_line_error(capsys, ["evaluate", "--checkpoint", ckpt, "--data", store, "--out", blocker / "eval"])
    assert str(blocker / "eval") in line


def test_os_errors_on_paths_the_user_did_not_give_keep_their_traceback():
    from r2cnn.cli import user_path_error

    args = argparse.Namespace(out="runs/x", data="data/store", files=["a.ndjson"])
    assert user_path_error(NotADirectoryError(20, "Not a directory", "runs/x/log.jsonl"), args) \
        == "runs/x/log.jsonl: Not a directory (a file is where a folder is needed)"
    assert user_path_error(PermissionError(13, "Permission denied", "a.ndjson"), args) == "a.ndjson: Permission denied"
    assert user_path_error(FileNotFoundError(2, "No such file", "/usr/lib/r2cnn/own.json"), args) is None
    assert user_path_error(OSError("no file name"), args) is None
    assert user_path_error(FileExistsError(17, "File exists", "runs/xy"), args) is None  # not runs/x
    assert user_path_error(FileExistsError(17, "File exists", "runs"), args) == \
        "runs: File exists (a file is where a folder is needed)"  # a folder on the way to runs/x


# --- Correctness: nested --set, --set values, pretrained weights --------------------------------------------

def test_set_model_options_merges_into_the_presets_options(store, tmp_path):
    from r2cnn.commands.train import parse_overrides
    from r2cnn.engine.config import TrainOptions, make_config
    from r2cnn.presets import get_preset

    overrides = parse_overrides(['model_options={"hidden": 128}', 'lr_schedule={"warmup": 7}'])
    config = make_config(TrainOptions(preset="cpu-r2cnn", data=str(store), out=str(tmp_path),
                                      config_overrides=overrides))
    preset = get_preset("cpu-r2cnn")
    assert config["model_options"] == {**preset["model_options"], "hidden": 128}
    assert config["model_options"]["canvas"] == 64 and config["model_options"]["width"] == 32
    assert config["model_options"]["stem"] == "small"
    assert config["lr_schedule"] == {"name": "cosine", "warmup": 7}


def test_set_values_are_json_or_a_bare_word():
    from r2cnn.commands.train import parse_overrides

    assert parse_overrides(["lr_schedule=cosine", "lr=1e-3", "grad_clip=null", "optimizer=\"sgd\""]) == \
        {"lr_schedule": "cosine", "lr": 1e-3, "grad_clip": None, "optimizer": "sgd"}
    for bad in ("lr={bad", "model_options={'hidden': 64}", "lr=1e-3x", "x=[1,"):
        with pytest.raises(R2CNNError, match="is not JSON"):
            parse_overrides([bad])


def _tiny_checkpoint(folder: Path, store: Path, pretrained) -> Path:
    """A checkpoint of an untrained torchvision-layout ResNet18 whose config names ``pretrained`` weights."""
    from r2cnn import models
    from r2cnn.data.store import SketchStore

    classes = list(SketchStore(store).classes)
    options = {"canvas": 32, "pretrained": pretrained}
    model = models.create("cnn-resnet18", len(classes), canvas=32)
    config = {"model": "cnn-resnet18", "model_options": options, "eval_transform": {}, "batch_size": 8, "amp": "none"}
    path = folder / "pretrained_run.pt"
    save_atomic({"format": 1, "config": config, "classes": classes, "model": model.state_dict()}, path)
    return path


def test_a_checkpoint_evaluates_where_its_pretrained_file_is_absent(store, tmp_path):
    from r2cnn.engine.evaluate import evaluate_checkpoint
    from r2cnn.engine.predict import Predictor

    path = _tiny_checkpoint(tmp_path, store, str(tmp_path / "gone" / "resnet18-f37072fd.pth"))
    report = evaluate_checkpoint(str(path), str(store), partial=(1.0,), progress=False)
    assert report["count"] > 0 and 0 <= report["top1"] <= 1
    sketch = load_sketch(store)
    assert len(Predictor(str(path)).predict(sketch, top_k=2)) == 2


def load_sketch(store):
    from r2cnn.data.store import SketchStore

    return SketchStore(store)[0]


def _hub_with(tmp_path, monkeypatch, names) -> Path:
    folder = tmp_path / "checkpoints"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return folder


def test_imagenet_weights_are_chosen_by_name_not_by_file_order(tmp_path, monkeypatch):
    from r2cnn.pretrained import find_imagenet_weights

    v1, v2 = "resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"  # torchvision's IMAGENET1K_V1 and _V2 files
    folder = _hub_with(tmp_path, monkeypatch, [v1, v2, "resnet50-ffffffff.pth"])  # sorted last: a stranger
    assert find_imagenet_weights("resnet50", "IMAGENET1K_V1") == (folder / v1, "ResNet50_Weights.IMAGENET1K_V1")
    assert find_imagenet_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V2") == \
        (folder / v2, "ResNet50_Weights.IMAGENET1K_V2")
    assert find_imagenet_weights("resnet50") == (folder / v2, "ResNet50_Weights.IMAGENET1K_V2")  # torchvision's
    (folder / v2).unlink()
    with pytest.raises(R2CNNError, match=r"IMAGENET1K_V2.*present: resnet50-0676ba61.pth \(IMAGENET1K_V1\)"):
        find_imagenet_weights("resnet50")
    with pytest.raises(R2CNNError, match="no torchvision weights 'IMAGENET1K_V9'; known: IMAGENET1K_V1"):
        find_imagenet_weights("resnet50", "IMAGENET1K_V9")


def test_the_model_says_which_imagenet_weights_it_loaded(tmp_path, monkeypatch):
    import torchvision

    from r2cnn import models

    folder = _hub_with(tmp_path, monkeypatch, [])
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), folder / "resnet18-f37072fd.pth")
    model = models.create("cnn-resnet18", 3, canvas=32, pretrained="IMAGENET1K_V1")
    assert model.backbone.pretrained_source == f"ResNet18_Weights.IMAGENET1K_V1 ({folder / 'resnet18-f37072fd.pth'})"
    assert models.create("cnn-resnet18", 3, canvas=32).backbone.pretrained_source is None


# --- Correctness: batch-norm statistics across ranks ------------------------------------------------------

def test_combine_moments_matches_float64_on_data_with_a_large_mean():
    from r2cnn.engine.distributed import combine_moments

    gen = torch.Generator().manual_seed(0)
    parts = [1e4 + 0.1 * torch.randn(n, 3, generator=gen) for n in (5, 17, 1)]  # float32, unequal ranks
    count = torch.tensor([[float(len(p))] for p in parts])
    mean = torch.stack([p.mean(0) for p in parts])
    m2 = torch.stack([((p - p.mean(0)) ** 2).sum(0) for p in parts])
    n, total_mean, total_m2 = combine_moments(count, mean, m2)
    every = torch.cat(parts).double()
    assert n.item() == 23
    assert torch.allclose(total_mean.double(), every.mean(0), rtol=0, atol=1e-3)
    truth = every.var(0, unbiased=False)  # about 0.01
    assert torch.allclose((total_m2 / n).double(), truth, rtol=1e-2)  # float32 means: quantum 1e-3 at 1e4
    flat = torch.cat(parts)
    naive = (flat * flat).mean(0) - flat.mean(0) ** 2  # E[x^2] - mean^2 in float32: the variance is lost
    assert not torch.allclose(naive.double(), truth, rtol=0.1)


def _sync_bn_rank(rank: int, init: str, shards: list, result_dir: str) -> None:
    import torch.distributed as dist

    from r2cnn.engine.distributed import GlooSyncBatchNorm

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=len(shards))
    try:
        bn = GlooSyncBatchNorm(shards[rank].shape[1]).train()
        x = shards[rank].clone().requires_grad_(True)
        y = bn(x)
        (y * torch.arange(1.0, y.shape[1] + 1)[None, :, None, None]).sum().backward()
        torch.save({"y": y.detach(), "grad": x.grad, "running_var": bn.running_var}, f"{result_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gloo_sync_batchnorm_of_two_ranks_matches_float64_on_data_with_a_large_mean(tmp_path):
    """Two gloo processes with unequal shards of 1e4 + small noise: the normalised output, its gradient and the
    running variance match one float64 batch norm over the whole batch (the E[x^2] - mean^2 formula returned
    noise or NaN here)."""
    import torch.multiprocessing as mp

    gen = torch.Generator().manual_seed(1)
    batch = 1e4 + 0.1 * torch.randn(24, 4, 3, 3, generator=gen)
    shards = [batch[:7], batch[7:]]
    mp.spawn(_sync_bn_rank, args=(f"file://{tmp_path}/pg", shards, str(tmp_path)), nprocs=2, join=True)
    out = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]

    x = batch.double().requires_grad_(True)
    ref_bn = torch.nn.BatchNorm2d(4, eps=1e-5).double().train()
    ref = ref_bn(x)
    (ref * torch.arange(1.0, 5.0, dtype=torch.float64)[None, :, None, None]).sum().backward()
    y = torch.cat([o["y"] for o in out]).double()
    grad = torch.cat([o["grad"] for o in out]).double()
    assert torch.isfinite(y).all()
    assert (y - ref.detach()).abs().max() < 2e-2  # float32 input quantised at 1e4: ulp 1e-3 against sd 0.1
    assert torch.allclose(grad, x.grad, rtol=0.05, atol=5.0)
    assert torch.allclose(out[0]["running_var"].double(), ref_bn.running_var, rtol=1e-2)


# --- Correctness: the subnormal flag is the caller's ------------------------------------------------------

def _flushing() -> bool:
    return (torch.full((1,), 1e-40) * 2.0).item() == 0.0


@pytest.mark.parametrize("before", [False, True])
def test_predict_and_evaluate_leave_the_subnormal_setting_as_they_found_it(run_dir, store, before):
    from r2cnn.engine.evaluate import evaluate_checkpoint
    from r2cnn.engine.predict import Predictor

    torch.set_flush_denormal(before)
    try:
        predictor = Predictor(str(run_dir / "best.pt"))
        predictor.predict(load_sketch(store))
        assert _flushing() == before
        evaluate_checkpoint(str(run_dir / "best.pt"), str(store), partial=(1.0,), progress=False)
        assert _flushing() == before
    finally:
        torch.set_flush_denormal(False)


def test_train_leaves_the_subnormal_setting_as_it_found_it(store, tmp_path):
    from r2cnn.engine.train import TrainOptions, train

    assert not _flushing()
    train(TrainOptions(preset="cpu-r2cnn", data=str(store), out=str(tmp_path), steps=1, batch_size=8, workers=0,
                       progress=False, config_overrides={"model_options": json.loads(TINY)}))
    assert not _flushing()


# --- The README's Python example runs as written ----------------------------------------------------------

def _readme_python() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_readme_example_imports_only_what_it_uses():
    tree = ast.parse(_readme_python())
    imported = {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert imported <= used, imported - used


def test_readme_example_runs_as_written(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
               R2CNN_NO_REEXEC="1", OMP_NUM_THREADS="1")
    (tmp_path / "example.py").write_text(_readme_python())
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    top = ast.literal_eval(proc.stdout.strip().splitlines()[-1])  # the printed [(class, probability), ...]
    from r2cnn.data.builtin import CLASSES

    assert len(top) == 5 and all(c in CLASSES and 0 < p < 1 for c, p in top)
    assert (tmp_path / "runs" / "r2cnn-py" / "best.pt").is_file()


# --- Interfaces: --help and --device --------------------------------------------------------------------

OWN_COMMANDS = ("train", "evaluate", "predict", "presets", "demo")


def _options(parser):
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("name", OWN_COMMANDS)
def test_every_option_says_what_it_does_and_its_default(name):
    _, parser = _command_parser(name)
    text = parser.format_help()
    for action in _options(parser):
        assert action.help, f"r2cnn {name} {action.option_strings[0]} has no help"
        says_default = "default" in action.help
        if action.required or isinstance(action, argparse._StoreTrueAction) or action.default == []:
            continue
        if action.default is None:
            assert says_default, f"r2cnn {name} {action.option_strings[0]}: say the default in words"
        elif not says_default:
            assert f"(default: {action.default})" in " ".join(text.split()), (name, action.option_strings)


def _parsers(name, parser):
    """The parser of ``r2cnn NAME`` and those of its sub-commands (``bench raster`` ...)."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from _parsers(f"{name} {sub}", subparser)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_defaults_in_every_command(name):
    for title, parser in _parsers(name, _command_parser(name)[1]):
        text = " ".join(parser.format_help().split())
        for action in _options(parser):
            default = action.default
            if default is None or default is False or default == [] or "default" in (action.help or ""):
                continue
            if action.help:
                assert f"(default: {default})" in text, (title, action.option_strings)


def test_device_means_the_same_in_every_command():
    devices = []
    for name in ("train", "evaluate", "predict", "demo", "visualize", "report", "serve", "experiment"):
        (action,) = [a for a in _options(_command_parser(name)[1]) if a.dest == "device"]
        devices.append((action.default, tuple(action.choices), action.help))
    assert len(set(devices)) == 1 and devices[0][0] == "auto"


# --- Round 3 audit 3: one experiment per folder, and a folder keeps its spec ------------------------------------

EXPERIMENT_SPEC = '[[rows]]\nid = "only"\npreset = "cpu-cnn"\n'


def _experiment_args(store, spec, out, *extra):
    return ["experiment", spec, "--data", store, "--out", out, "--steps", "1", "--workers", "0", "--bootstrap",
            "50", "--set", "batch_size=4", "--set", "model_options.canvas=16", "--set", "model_options.width=8",
            *extra]


def test_a_second_experiment_on_one_folder_is_refused(store, tmp_path, capsys):
    from r2cnn.data.store import one_writer_at_a_time

    spec = tmp_path / "one.toml"
    spec.write_text(EXPERIMENT_SPEC)
    out = tmp_path / "exp"
    with one_writer_at_a_time(out, print, command="r2cnn experiment", wait=False):  # as a running experiment does
        line = one_line_error(capsys, _experiment_args(store, spec, out))
        assert "another `r2cnn experiment` is writing this folder" in line and str(out) in line
        with pytest.raises(R2CNNError, match="another"):  # the same in one process (a second thread)
            with one_writer_at_a_time(out, print, command="r2cnn experiment", wait=False):
                pass
    assert not (out / "rows").exists()  # nothing was trained by the refused run
    assert main([str(a) for a in _experiment_args(store, spec, out)]) == 0  # and once the lock is gone, it runs
    assert not list(tmp_path.glob(".*.lock"))


def test_another_spec_into_an_existing_experiment_folder_is_refused(store, tmp_path, capsys):
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(EXPERIMENT_SPEC)
    second.write_text(EXPERIMENT_SPEC)
    out = tmp_path / "exp"
    assert main([str(a) for a in _experiment_args(store, first, out)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.glob("results.*")} | {
        "experiment.json": (out / "experiment.json").read_bytes()}
    for extra in ([], ["--report-only"]):
        line = one_line_error(capsys, _experiment_args(store, second, out, *extra))
        assert str(out) in line and "'first'" in line and "'second'" in line, line
    assert before == {p.name: p.read_bytes() for p in out.glob("results.*")} | {
        "experiment.json": (out / "experiment.json").read_bytes()}
    assert main([str(a) for a in _experiment_args(store, first, out, "--report-only")]) == 0  # its own spec: fine


# --- Round 3 audit 4: sizes bounded, deep --set, --bootstrap, damaged experiment files, durable writes ----------

@pytest.mark.parametrize("setting", ['model_options={"canvas": 100000}', 'model_options={"hidden": 10000000}',
                                     'model_options={"width": 100000}', "batch_size=1000000000"])
def test_huge_sizes_are_one_line_errors_before_anything_is_allocated(store, tmp_path, capsys, setting):
    name = setting.split('"')[1] if '"' in setting else setting.split("=")[0]
    argv = train_args(store, tmp_path / "run", "--set", setting)
    if name == "batch_size":
        argv[argv.index("--batch-size") + 1] = "1000000000"
    line = one_line_error(capsys, argv)
    assert name in line and "from" in line, line


def test_a_checkpoint_with_a_huge_canvas_is_refused_at_predict(run_dir, tmp_path, capsys):
    ckpt = load_checkpoint(run_dir / "best.pt")
    ckpt["config"]["model_options"]["canvas"] = 100000
    save_atomic(ckpt, tmp_path / "huge.pt")
    sketch = tmp_path / "a.ndjson"
    sketch.write_text('{"drawing": [[[0, 10], [0, 10]]], "word": "x"}\n')
    line = one_line_error(capsys, ["predict", "--checkpoint", tmp_path / "huge.pt", sketch])
    assert str(tmp_path / "huge.pt") in line and "canvas" in line and "1024" in line, line


@pytest.mark.parametrize("value", ["[" * 5000, "[" * 5000 + "]" * 5000, "1" * 5000, '{"a":' * 20 + "1" + "}" * 20])
def test_hostile_set_values_are_one_line_errors(capsys, tmp_path, value):
    line = one_line_error(capsys, ["train", "--preset", "cpu-r2cnn", "--data", tmp_path, "--out", tmp_path / "r",
                                   "--set", f"lr={value}"])
    assert "--set lr" in line and len(line) < 300, line


def test_bootstrap_is_bounded(store, tmp_path, capsys):
    line = one_line_error(capsys, ["experiment", "table2-cpu", "--data", store, "--out", tmp_path, "--report-only",
                                   "--bootstrap", "1000000000000"])
    assert "--bootstrap must be at most 100000" in line


def test_damaged_experiment_files_are_one_line_errors_naming_them(store, tmp_path, capsys):
    spec = tmp_path / "one.toml"
    spec.write_text(EXPERIMENT_SPEC)
    out = tmp_path / "exp"
    assert main([str(a) for a in _experiment_args(store, spec, out)]) == 0
    capsys.readouterr()
    preds = out / "rows" / "only" / "seed0" / "predictions.npz"
    good = preds.read_bytes()
    for damage in (good[: len(good) // 2], b"", b"not a zip at all"):
        preds.write_bytes(damage)
        line = one_line_error(capsys, _experiment_args(store, spec, out, "--report-only"))
        assert str(preds) in line and "damaged predictions" in line, line
    preds.write_bytes(good)
    row = out / "rows" / "only" / "row.json"
    for damage in ("", "{\"config\": ", "[1, 2]"):
        row.write_text(damage)
        line = one_line_error(capsys, _experiment_args(store, spec, out))
        assert str(row) in line and "damaged" in line, line


def test_atomic_writes_are_fsynced_through_the_one_helper(tmp_path, monkeypatch):
    """Every atomic writer (checkpoints, classic models, predictions, experiment JSON, results, converted files)
    goes through AtomicWriter, which fsyncs the data before the rename and the folder after it."""
    from r2cnn.classic.modelfile import save_model
    from r2cnn.experiments.execute import save_predictions
    from r2cnn.experiments.runners import write_json_atomic

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    writers = {"ckpt.pt": lambda p: save_atomic({"a": 1}, p),
               "model.npz": lambda p: save_model(p, {"k": 1}, {"part": {"x": np.zeros(2)}}),
               "predictions.npz": lambda p: save_predictions(p, {"index": [0], "label": [1], "top5": [[1]]}, 0, None),
               "row.json": lambda p: write_json_atomic(p, {"a": 1})}
    for name, write in writers.items():
        synced.clear()
        write(tmp_path / name)
        assert any(f".{name}.part" in s for s in synced), (name, synced)  # the data, under its temporary name
        assert str(tmp_path) in synced, (name, synced)  # the folder, after the rename
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# --- Round 3 audit 5: spec ids, predict's text output, resume length, report --out -------------------------------

@pytest.mark.parametrize("rid", ["a\n", "a\nb", "a ", "../a", ".a", ""])
def test_spec_row_ids_must_be_plain_names(rid):
    from r2cnn.experiments.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match="field 'id'"):
        parse_spec({"rows": [{"id": rid, "preset": "cpu-cnn"}]}, source="t.toml")
    assert parse_spec({"rows": [{"id": "a.b-c_1", "preset": "cpu-cnn"}]}).rows[0].id == "a.b-c_1"


def test_predict_quotes_a_file_name_with_a_newline(run_dir, tmp_path, capsys):
    odd = tmp_path / "two\nlines.ndjson"
    odd.write_text('{"drawing": [[[0, 10, 20], [0, 10, 0]]], "word": "x"}\n')
    plain = tmp_path / "plain.ndjson"
    plain.write_text(odd.read_text())
    assert main(["predict", "--checkpoint", str(run_dir / "best.pt"), str(odd), str(plain)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines  # one line per sketch, whatever the names hold
    assert lines[0].startswith(json.dumps(str(odd)) + ":1: ") and lines[1].startswith(f"{plain}:1: ")


def test_resume_with_another_length_says_why_not(store, run_dir, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    before = (run / "last.pt").read_bytes()
    base = ["train", "--data", store, "--out", run, "--resume", "--workers", "0"]
    line = one_line_error(capsys, [*base, "--steps", "25"])
    assert "a run of 2 steps" in line and "--steps 25" in line and "--init-from" in line, line
    assert "--epochs 3" in one_line_error(capsys, [*base, "--epochs", "3"])
    assert (run / "last.pt").read_bytes() == before
    assert main([str(a) for a in [*base, "--steps", "2"]]) == 0  # its own length: resumes (already finished)


def test_report_does_not_replace_a_file_it_did_not_write(tiny_runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_runs.r2cnn, run)
    notes = tmp_path / "existing.txt"
    notes.write_text("my notes\n")
    argv = ["report", run, "--data", tiny_runs.store, "--out", notes, "--examples", "1", "--deletion-k", ""]
    line = one_line_error(capsys, argv)
    assert str(notes) in line and "--force" in line and notes.read_text() == "my notes\n"
    assert "is a folder" in one_line_error(capsys, [*argv[:4], "--out", tmp_path, *argv[6:]])
    assert main([str(a) for a in [*argv, "--force"]]) == 0 and "r2cnn report" in notes.read_text()
    assert main([str(a) for a in argv]) == 0  # its own report: replaced without --force
