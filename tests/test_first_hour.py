"""A new user's first hour: short trainings warm up for a fraction of the run, a result at chance says so, the
built-in split is one rule, one numbering in the figures, and ``r2cnn presets`` / ``--dry-run`` say what to use."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from r2cnn.cli import main
from r2cnn.presets import PRESETS, RECOMMENDED, preset_groups


def test_presets_lists_groups_recommended_first_and_marked(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("recommended on a CPU")
    marked = [line.split()[1] for line in lines if line.startswith("* ")]
    assert marked == list(RECOMMENDED) == [line.split()[1] for line in lines[1:3]]
    listed = [line.split()[0] for line in lines if line.startswith("  ")]
    assert sorted(listed + marked) == sorted(PRESETS)  # every preset once
    titles = [title for title, _ in preset_groups()]
    assert [line[:-1] for line in lines if line.endswith(":") and not line.startswith(" ")] == titles
    assert titles[1].startswith("the paper's systems") and titles[-1].startswith("classic")
    groups = dict(preset_groups())
    assert "cpu-r2cnn-paper" in groups[titles[1]] and "tub-hog-svm" in groups[titles[-1]]
    assert "cpu-attentive" in groups[titles[2]]


def test_presets_listing_imports_no_torch():
    """The default listing reads the presets' data only; torch (and building models) is what made it slow."""
    code = ("import sys; from r2cnn.cli import main; assert main(['presets']) == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "* cpu-r2cnn" in done.stdout


def test_dry_run_marks_the_reference_row_and_prints_each_rows_overrides(tiny_store, tmp_path, capsys):
    spec = tmp_path / "study.toml"
    spec.write_text('name = "study"\ntitle = "a study"\nreference = "kept"\n\n'
                    '[[rows]]\nid = "paper"\nlabel = "the paper\'s design"\npreset = "cpu-r2cnn-paper"\n\n'
                    '[[rows]]\nid = "kept"\nlabel = "kept"\npreset = "cpu-attention-time-encoded"\n'
                    'overrides = { "model_options.fixed_dropout" = 0.5, lr = 2e-3 }\n')
    assert main(["experiment", str(spec), "--data", str(tiny_store), "--dry-run", "--measure-steps", "0"]) == 0
    out = capsys.readouterr().out
    assert "| kept (reference) " in out and "| paper " in out
    trains = {line.split("  ")[1].strip(): line.split("  ")[-1].strip() for line in out.splitlines()
              if line.startswith("  ")}
    assert trains == {"paper": "cpu-r2cnn-paper (as it is)",
                      "kept (reference)": "cpu-attention-time-encoded + model_options.fixed_dropout=0.5, lr=0.002"}


# ------------------------------------------------------------------------------ results within noise of chance
def test_chance_warning_follows_the_binomial_bound():
    from r2cnn.engine.chance import chance_bound, chance_warning

    assert abs(chance_bound(864, 12) - (1 / 12 + 1.96 * (1 / 12 * 11 / 12 / 864) ** 0.5)) < 1e-12
    line = chance_warning(0.0833, 864, 12, what="valid top-1", causes="too few steps")
    assert line.startswith("warning: valid top-1 0.0833 over 864 sketches is within noise of chance (1/12")
    assert line.endswith("too few steps") and "\n" not in line
    assert chance_warning(0.03, 864, 12, what="x", causes="y") is not None  # below chance is no better
    assert chance_warning(0.11, 864, 12, what="x", causes="y") is None  # above the bound (0.1018)
    assert chance_warning(0.5, 24, 12, what="x", causes="y") is None
    assert chance_warning(0.0, 0, 12, what="x", causes="y") is None and chance_warning(1.0, 5, 1, what="x",
                                                                                       causes="y") is None


TINY = '{"canvas": 32, "width": 8, "stem": "small", "hidden": 16, "layers": 1, "dropout": 0.0}'


def test_a_run_left_at_chance_says_so_in_train_and_evaluate(tiny_store, tmp_path, capsys):
    """A learning rate of 1e-9 leaves the model where it started: guessing. train and evaluate say so in one line
    each, and evaluate lists every one of the 12 classes."""
    run = tmp_path / "run"
    assert main(["train", "--preset", "cpu-cnn", "--data", str(tiny_store), "--out", str(run), "--steps", "2",
                 "--batch-size", "16", "--lr", "1e-9", "--workers", "0", "--print-every", "0",
                 "--set", f"model_options={TINY}"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "best valid top-1" in warnings[0] and "within noise of chance" in warnings[0]
    assert "too few steps (2)" in warnings[0] and "learning rate" in warnings[0]
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(tiny_store), "--split", "valid",
                 "--partial", "1"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "valid top-1 of" in warnings[0] and "within noise of chance" in warnings[0]
    from r2cnn.data.builtin import CLASSES

    listed = [line.split("|")[1].strip() for line in captured.out.splitlines() if line.startswith("| ")][1:]
    assert sorted(listed) == sorted(CLASSES) and "shown" not in captured.out


def test_evaluate_says_how_many_classes_it_shows_and_where_all_are():
    from r2cnn.commands.evaluate import CLASSES_SHOWN, format_report

    k = CLASSES_SHOWN + 5
    report = {"checkpoint": "c.pt", "data": "d", "split": "test", "count": 100, "top1": 0.5, "top5": 0.9,
              "sketches_per_s": 10.0, "per_class": {f"class{i}": i / k for i in range(k)}}
    text = format_report(report, full="out/report.json")
    assert f"{CLASSES_SHOWN} of {k} classes shown; all in out/report.json" in text
    assert "| class0 " in text and f"| class{k - 1} " not in text  # the lowest first
    assert "--json FILE or --out DIR" in format_report(report)


# ------------------------------------------------------------------------------ the built-in split: one rule
def test_builtin_stores_split_by_one_rule(tmp_path, capsys):
    from r2cnn.data import builtin
    from r2cnn.data.store import SketchStore

    assert builtin.split_sizes(30) == (20, 5, 5)  # `r2cnn demo --per-class 30` splits by it
    assert builtin.split_sizes(60) == (48, 6, 6) and builtin.split_sizes(10) == (6, 2, 2)
    assert main(["prepare", "--builtin", "60", "--out", str(tmp_path / "b")]) == 0
    store = SketchStore(tmp_path / "b")
    n = len(builtin.CLASSES)
    assert [len(store.indices(s)) for s in ("train", "valid", "test")] == [48 * n, 6 * n, 6 * n]
    # with --split-sizes, the sizes given
    assert main(["prepare", "--builtin", "20", "--split-sizes", "12,4,4", "--out", str(tmp_path / "c")]) == 0
    assert len(SketchStore(tmp_path / "c").indices("test")) == 4 * n


# ------------------------------------------------------------------------------ figures: one numbering, colour bars
def test_visualize_names_a_sketch_one_way_and_the_overview_has_colour_bars(tiny_runs, tmp_path, monkeypatch):
    from r2cnn.viz import figures
    from r2cnn.viz.visualize import visualize

    saved = {}
    monkeypatch.setattr(figures, "save", lambda fig, stem, formats=("png", "svg"): saved.update({stem.name: fig}) or [])
    result = visualize(str(tiny_runs.r2cnn / "best.pt"), str(tiny_runs.store), tmp_path, index=[3, 11],
                       deletion_ks=[], log=lambda *a: None)
    assert [r["position"] for r in result["sketches"]] == [3, 11]
    assert sorted(saved) == ["overview", "sketch-test-11", "sketch-test-3"]
    title = saved["sketch-test-11"]._suptitle.get_text()
    assert "(test #11)" in title and str(result["sketches"][1]["store_index"]) not in title.split("#11")[1]
    overview = saved["overview"]
    assert [t for ax in overview.axes if (t := ax.get_title()).startswith("#")] == [
        f"#3: {result['sketches'][0]['label']}", f"#11: {result['sketches'][1]['label']}"]
    bars = [ax.get_ylabel() for ax in overview.axes if ax.get_ylabel()]
    assert bars == ["attention", "order: 1 first point, 0 last"]


# ------------------------------------------------------------------------------ warm-up: a fraction of a short run
def test_warmup_takes_at_most_a_tenth_of_the_run():
    from r2cnn.engine.optim import WARMUP_CAP, parse_schedule
    from r2cnn.presets import get_preset

    cpu = get_preset("cpu-r2cnn")["lr_schedule"]
    assert cpu == {"name": "cosine", "warmup": 100} and WARMUP_CAP == 0.1
    assert parse_schedule(cpu, 35).warmup_steps == 4  # a short run: 10 % of it
    assert parse_schedule(cpu, 200).warmup_steps == 20
    assert parse_schedule(cpu, 1000).warmup_steps == parse_schedule(cpu, 50000).warmup_steps == 100  # a full run
    assert parse_schedule({**cpu, "warmup_cap": 1}, 200).warmup_steps == 100  # as given
    assert parse_schedule({"name": "cosine", "warmup": 0.05}, 1000).warmup_steps == 50  # a fraction below the cap
    short = parse_schedule(cpu, 35)
    assert [round(short(s), 3) for s in range(4)] == [0.25, 0.499, 0.744, 0.982]  # warm, then the cosine
    # with a time budget the warm-up also ends once 10 % of the budget has passed
    timed = parse_schedule(cpu, 5000)
    timed.time_fraction = 0.05
    assert timed(0) > 0.49
    timed.time_fraction = 0.1
    assert timed(1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1)))
    # the paper's presets (constant rate, no warm-up) are not changed by the cap
    paper = parse_schedule(get_preset("qd-r2cnn-resnet50")["lr_schedule"], 35)
    assert paper.warmup_steps == 0 and paper(0) == paper(34) == 1.0


def test_a_warmup_cap_outside_0_1_is_one_line(tiny_store, tmp_path, capsys):
    assert main(["train", "--preset", "cpu-cnn", "--data", str(tiny_store), "--out", str(tmp_path / "r"),
                 "--steps", "1", "--set", 'lr_schedule={"warmup_cap": 0}']) == 2
    assert "lr_schedule must be" in capsys.readouterr().err


def test_train_help_says_what_amp_does_on_a_cpu(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "mixed precision on CUDA (default" not in text
    assert "on a CPU bf16 runs the CNN in bf16 where the processor has native bf16" in text
