"""``r2cnn bench encoder``: one training step (forward and backward) of the attention encoder's bidirectional LSTM.

Rows, on the same batch of built-in sketches in the same run:

- ``nn.LSTM(bidirectional=True)`` on a ``PackedSequence``, all of torch's threads: the anchor, the standard way;
- :class:`r2cnn.models.encoder.BiLSTM` (each direction on the padded batch, the backward one on a copy reversed
  within each length) with all of torch's threads;
- the same on one thread (at the CPU presets' size a time step is too little work to share between threads).

Medians of wall-clock time and of process CPU time (all threads): a thread that only waits at barriers shows as
CPU time without a shorter wall time. Each figure is also given as a ratio to the anchor's.
"""

from __future__ import annotations

import argparse

HELP = "BiLSTM training step: flipped-copy BiLSTM (all threads / one thread) vs packed nn.LSTM"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=int, default=64, help="sketches per batch")
    p.add_argument("--hidden", type=int, default=32, help="LSTM hidden size (the cpu presets': 32; the paper's: 512)")
    p.add_argument("--layers", type=int, default=2, help="LSTM layers")
    p.add_argument("--repeat", type=int, default=10, help="timed steps per row (the median is reported)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def _run(args) -> int:
    import json
    import statistics
    import time
    from pathlib import Path

    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    from r2cnn.data import builtin
    from r2cnn.data.transforms import normalize
    from r2cnn.errors import R2CNNError
    from r2cnn.models.encoder import INPUT_FEATURES, BiLSTM, PackedLayout, point_offsets
    from r2cnn.sketch import SketchBatch

    if min(args.batch, args.hidden, args.layers, args.repeat) < 1:
        raise R2CNNError("bench encoder: --batch, --hidden, --layers and --repeat must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    per_class = -(-args.batch // len(builtin.CLASSES))
    sketches = [normalize(s) for s in builtin.generate(per_class, seed=0)][:args.batch]
    batch = SketchBatch.from_sketches(sketches, labels=[-1] * len(sketches))  # timing needs no labels
    x = point_offsets(batch.points, batch.offsets)
    layout = PackedLayout.from_offsets(batch.offsets)
    lengths = batch.offsets[1:] - batch.offsets[:-1]
    torch.manual_seed(0)
    packed = nn.LSTM(INPUT_FEATURES, args.hidden, args.layers, bidirectional=True, batch_first=True)
    flipped = BiLSTM(INPUT_FEATURES, args.hidden, args.layers)
    flipped.load_lstm_state_dict(packed.state_dict())

    def packed_step():
        seq = pack_padded_sequence(layout.pad(x), lengths, batch_first=True, enforce_sorted=False)
        out, (h, _) = packed(seq)
        (out.data.sum() + h.sum()).backward()

    blocks = PackedLayout.from_offsets(batch.offsets, buckets=True)

    def flipped_step(threads: int, lay=layout):
        def step():
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                out, final = flipped(x, lay)
                (out.sum() + final.sum()).backward()
            finally:
                torch.set_num_threads(previous)
        return step

    threads = torch.get_num_threads()
    rows = {f"packed nn.LSTM, {threads} threads (anchor)": packed_step,
            f"flipped BiLSTM, {threads} threads": flipped_step(threads),
            "flipped BiLSTM, 1 thread": flipped_step(1),
            f"flipped BiLSTM, {len(blocks.groups)} length blocks, 1 thread (training)": flipped_step(1, blocks)}
    times = {}
    for name, step in rows.items():
        step()  # warm-up: allocator, kernel selection
        wall, cpu = [], []
        for _ in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            step()
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        times[name] = (1000 * statistics.median(wall), 1000 * statistics.median(cpu))
    anchor = next(iter(times.values()))
    print(f"bench encoder: BiLSTM {args.layers}x{args.hidden} training step, {args.batch} built-in sketches "
          f"({int(lengths.sum())} points, longest {int(lengths.max())}), median of {args.repeat}")
    print(f"{'':56s} {'wall ms':>9s} {'x anchor':>9s} {'cpu ms':>9s} {'x anchor':>9s}")
    for name, (wall, cpu) in times.items():
        print(f"{name:56s} {wall:9.1f} {wall / anchor[0]:9.2f} {cpu:9.1f} {cpu / anchor[1]:9.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"batch": args.batch, "hidden": args.hidden, "layers": args.layers,
                                               "threads": threads,
                                               "rows": {k: {"wall_ms": w, "cpu_ms": c} for k, (w, c) in times.items()}},
                                              indent=1))
    return 0


def run(args) -> int:
    """The benchmark, with subnormals flushed to zero as training does (and the caller's setting restored)."""
    from r2cnn.engine.precision import denormals_flushed

    with denormals_flushed():
        return _run(args)
