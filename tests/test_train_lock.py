"""``r2cnn train`` holds its run folder as ``r2cnn experiment`` does: a second run into it, from another process, is
refused with one line naming the holder, nothing is written, and the lock goes when the holder dies."""

import os
import signal
import subprocess
import sys

import pytest

from r2cnn.cli import main
from r2cnn.commands.train import one_run_per_folder
from r2cnn.errors import R2CNNError

TINY = '{"canvas": 32, "width": 8, "stem": "small", "hidden": 16, "layers": 1}'

# Another process taking the run folder the way `r2cnn train` does, then waiting to be killed.
HOLD = """
import sys, time
from r2cnn.commands.train import one_run_per_folder
with one_run_per_folder(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(300)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from r2cnn.data.store import prepare

    out = tmp_path_factory.mktemp("lock") / "store"
    prepare([], out, builtin=6, split_sizes=(4, 1, 1), log=lambda *a: None, progress=False)
    return out


def train_args(store, out):
    return ["train", "--preset", "cpu-r2cnn", "--data", str(store), "--out", str(out), "--set",
            f"model_options={TINY}", "--batch-size", "8", "--steps", "2", "--workers", "0"]


def hold(out):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_second_training_into_a_held_folder_is_refused_and_the_lock_dies_with_its_holder(store, tmp_path, capsys):
    out = tmp_path / "run"
    holder = hold(out)
    try:
        code = main(train_args(store, out))
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert err[0] == (f"r2cnn: error: {out}: another `r2cnn train` is writing this folder (process {holder.pid}, "
                          f"lock: {tmp_path / '.run.lock'}); wait for it to end, or use another folder")
        assert not out.exists()  # the refused run wrote nothing
        # an experiment into it is refused by the same lock, and names the training that holds it
        from r2cnn.data.store import one_writer_at_a_time
        with pytest.raises(R2CNNError, match=rf"another `r2cnn train` is writing this folder \(process {holder.pid}"):
            with one_writer_at_a_time(out, print, command="r2cnn experiment", wait=False):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)  # as a killed run: no clean-up of its own
        holder.wait()
    assert main(train_args(store, out)) == 0  # the kernel dropped the dead holder's lock
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert not list(tmp_path.glob(".*.lock"))  # the finished run removed its lock file


def test_only_the_writing_rank_takes_the_lock(tmp_path, monkeypatch):
    """Under torchrun every rank runs the command; rank 0 writes the folder and holds it, the others do not try."""
    out = tmp_path / "run"
    with one_run_per_folder(str(out)):
        monkeypatch.setenv("RANK", "1")
        with one_run_per_folder(str(out)):
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(R2CNNError, match=rf"process {os.getpid()}, lock"):
            with one_run_per_folder(str(out)):
                pass
