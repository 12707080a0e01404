"""The store loader: identical batches for any num_workers, DDP sharding, exact resume with skip()."""

import numpy as np
import pytest
import torch

from r2cnn.data.loader import ShardedBatchSampler, make_loader, sample_rng
from r2cnn.data.store import build_store
from r2cnn.data.transforms import make_transform, normalize
from r2cnn.sketch import Sketch


# every augmentation on, so that each sample's rng is used (flip, stroke removal, deformation)
AUGMENT = make_transform(train=True, flip=0.5, stroke_removal=0.5, deform=1.0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(1)
    sketches = [Sketch.from_strokes([rng.integers(0, 256, (int(rng.integers(1, 8)), 2)) for _ in range(1 + i % 3)],
                                    label=f"class{i % 4}", meta={"key_id": str(1000 + i)}) for i in range(203)]
    return build_store(sketches, tmp_path_factory.mktemp("loader") / "store", split_sizes=(180, 10, 13))


def _flat(batches):
    return [(b.points.clone(), b.offsets.clone(), b.labels.clone()) for b in batches]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert torch.equal(u, v)


def test_batches_are_packed_store_sketches(store):
    loader = make_loader(store, "train", batch_size=16)
    idx = store.indices("train")
    batch = next(iter(loader))
    assert batch.batch_size == 16 and batch.points.dtype == torch.float32 and batch.offsets.dtype == torch.int64
    for b in range(16):
        assert np.array_equal(batch.sketch_points(b).numpy(), store[idx[b]].points)
        assert int(batch.labels[b]) == store[idx[b]].label
    assert sum(x.batch_size for x in loader) == len(idx)


def test_workers_do_not_change_batches(store):
    runs = []
    for workers in (0, 2):
        loader = make_loader(store, "train", batch_size=24, transform=AUGMENT, shuffle=True, seed=7,
                             num_workers=workers)
        epochs = []
        for epoch in (0, 1):
            loader.batch_sampler.set_epoch(epoch)
            epochs.append(_flat(loader))
        runs.append(epochs)
    for e in (0, 1):
        _assert_same(runs[0][e], runs[1][e])
    assert not torch.equal(runs[0][0][0][0], runs[0][1][0][0])  # a new epoch: new order and augmentation


def test_augmentation_seeded_by_seed_epoch_index():
    a, b = sample_rng(3, 1, 10).random(4), sample_rng(3, 1, 10).random(4)
    assert np.array_equal(a, b)
    for other in (sample_rng(4, 1, 10), sample_rng(3, 2, 10), sample_rng(3, 1, 11)):
        assert not np.array_equal(a, other.random(4))


@pytest.mark.parametrize("drop_last", [False, True])
def test_world_size_2_shards_the_global_batch(store, drop_last):
    one = make_loader(store, "train", batch_size=20, shuffle=True, seed=3, drop_last=drop_last)
    ranks = [make_loader(store, "train", batch_size=10, shuffle=True, seed=3, drop_last=drop_last, rank=r,
                         world_size=2) for r in (0, 1)]
    for loader in (one, *ranks):
        loader.batch_sampler.set_epoch(2)
    whole = [[i for i, _ in b] for b in one.batch_sampler]
    shards = [[[i for i, _ in b] for b in r.batch_sampler] for r in ranks]
    assert [len(list(r.batch_sampler)) for r in ranks] == [len(r) for r in ranks]
    for step, batch in enumerate(whole):
        got = shards[0][step] + (shards[1][step] if step < len(shards[1]) else [])
        assert got == batch  # rank 0 then rank 1 = the one-process global batch, in order
    seen = sorted(i for shard in shards for b in shard for i in b)
    assert seen == sorted(i for b in whole for i in b)
    assert len(set(seen)) == len(seen)
    if not drop_last:
        assert seen == sorted(store.indices("train").tolist())


def test_skip_resumes_exactly(store):
    loader = make_loader(store, "train", batch_size=16, transform=AUGMENT, shuffle=True, seed=5)
    loader.batch_sampler.set_epoch(3)
    full = _flat(loader)
    loader.batch_sampler.set_epoch(3)
    loader.batch_sampler.skip(4)
    assert len(loader) == len(full) - 4
    _assert_same(_flat(loader), full[4:])
    assert len(loader) == len(full)  # the skip applies to one iteration only
    _assert_same(_flat(loader), full)


def test_sampler_len_matches_iteration():
    for n in (0, 1, 7, 40, 41):
        for bs, ws, dl in ((4, 1, False), (4, 1, True), (3, 2, False), (3, 2, True), (5, 4, False)):
            for r in range(ws):
                s = ShardedBatchSampler(np.arange(n), bs, drop_last=dl, rank=r, world_size=ws)
                assert len(s) == len(list(s)), (n, bs, ws, dl, r)


def test_raster_geometry_in_workers_after_the_parent_rasterised(store):
    from r2cnn.raster import geometry

    kwargs = dict(indices=np.arange(8), batch_size=4, raster_size=32, raster_eps=1.0,
                  transform=make_transform(train=False))
    in_process = list(make_loader(store, None, **kwargs))  # the parent runs the (parallel) CPU kernels first
    batches = list(make_loader(store, None, num_workers=1, **kwargs))  # then starts a worker that runs them
    assert [b.batch_size for b in batches] == [4, 4]
    for b, a, start in zip(batches, in_process, (0, 4)):
        assert np.array_equal(b.sketch_points(1).numpy(), normalize(store[start + 1]).points)
        ref = geometry(b.points, b.offsets, 32, 1.0)
        assert b.geometry.size == a.geometry.size == ref.size == (32, 32)
        for name in ("offsets", "pixel", "segment", "alpha", "segment_ptr"):
            assert torch.equal(getattr(b.geometry, name), getattr(ref, name))
            assert torch.equal(getattr(a.geometry, name), getattr(ref, name))


_TRAINER = """
import sys, time
from r2cnn.data.loader import make_loader
if __name__ == "__main__":
    loader = make_loader(sys.argv[1], "train", batch_size=4, num_workers=1)
    it = iter(loader)
    next(it)
    print(*[w.pid for w in it._workers], flush=True)
    time.sleep(120)
"""


def test_workers_exit_when_the_trainer_is_killed(store, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    script = tmp_path / "trainer.py"
    script.write_text(_TRAINER)
    proc = subprocess.Popen([sys.executable, str(script), str(store.path)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, MALLOC_MMAP_THRESHOLD_="1000000000"))
    try:
        workers = [psutil.Process(int(pid)) for pid in proc.stdout.readline().split()]
        assert workers and all(w.is_running() for w in workers)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


def test_bench_data_runs_on_builtin_data(tmp_path, monkeypatch, capsys):
    import argparse
    import json

    from r2cnn.bench import data as bench_data

    from r2cnn.bench import _paths

    monkeypatch.setattr(_paths, "data_roots", lambda: [tmp_path / "absent"])  # no real data: built-in sketches
    parser = argparse.ArgumentParser()
    bench_data.add_arguments(parser)
    args = parser.parse_args(["--sketches", "120", "--loader-sketches", "96", "--batch-size", "32",
                              "--raster-size", "32", "--builtin-sketches", "24", "--json", str(tmp_path / "r.json")])
    assert bench_data.run(args) == 0
    assert "built-in generator" in capsys.readouterr().out
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [r["group"] for r in rows] == ["parse", "parse", "loader", "loader", "loader", "builtin", "builtin"]
    assert rows[1]["sketches"] == rows[0]["sketches"] >= 120 and rows[3]["sketches"] == 64  # first batch: warm-up
