"""The line a test run ends with (tests/_skips.py, hooked in by tests/conftest.py): what was skipped or
deselected, why, and the command that enables it."""

import subprocess
import sys
from pathlib import Path

from _skips import skip_summary

TINY_SUITE = '''
import pytest

def test_runs():
    pass

def test_browser():
    pytest.skip("Chromium not found at /usr/bin/chromium (Debian: apt-get install chromium)")

@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_gpu_a():
    pass

@pytest.mark.skipif(True, reason="real-size comparisons need a CUDA device (the interpreter is too slow)")
def test_gpu_b():
    pass

def test_odd():
    pytest.skip("a reason nobody grouped")

@pytest.mark.slow
def test_long():
    pass
'''


def test_skip_summary_groups_reasons_and_names_the_enabling_command():
    line = skip_summary(["Skipped: Chromium not found at /usr/bin/chromium (Debian: apt-get install chromium)",
                         "needs a CUDA device", "Skipped: triton kernels were imported without the interpreter "
                         "and there is no GPU", "real sketch data not found at /x/shared/data (only ...)"],
                        deselected=3, markexpr="not slow")
    assert line == ("skipped: 1 browser test (Chromium not found at /usr/bin/chromium: run `sudo apt-get install "
                    "chromium` (or `.ci/run` as root)), 2 CUDA tests (no CUDA device: run them on a machine with an "
                    "NVIDIA GPU), 1 real-data test (no ../shared/data: put the real sketch data at ../shared/data "
                    "(developers' machines)); deselected: 3 slow tests (run `make test-all`)")
    assert skip_summary([], 0) is None


def test_a_run_ends_with_the_skip_line(tmp_path):
    """A real pytest run of a tiny suite with the hook: its last line is the summary."""
    (tmp_path / "test_tiny.py").write_text(TINY_SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: long\n")
    env_path = str(Path(__file__).parent)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "_skips", "-p", "no:cacheprovider",
                           "-m", "not slow", "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 4 skipped, 1 deselected" in lines[-2]
    assert lines[-1] == ("skipped: 1 browser test (Chromium not found at /usr/bin/chromium: run `sudo apt-get install "
                         "chromium` (or `.ci/run` as root)), 2 CUDA tests (no CUDA device: run them on a machine with "
                         "an NVIDIA GPU), 1 other test (a reason nobody grouped); deselected: 1 slow test (run "
                         "`make test-all`)")
