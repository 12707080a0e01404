"""A new user's first hour: short trainings warm up for a fraction of the run, a result at chance says so, the
built-in split is one rule, one numbering in the figures, and ``r2cnn presets`` / ``--dry-run`` say what to use."""

from __future__ import annotations

import subprocess
import sys

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
