"""``r2cnn bench data``: ndjson parsing and loader throughput, each next to an anchor measured in the same run.

- parse: :func:`r2cnn.data.formats.read_sketches` on simplified ndjson vs. a plain ``json.loads`` loop over the
  same lines of the same file (the anchor: the least any JSON reader must do).
- loader: :func:`r2cnn.data.loader.make_loader` with 1 worker (normalise only; with and without the raster
  geometry at 224) vs. reading the same sketches from the store in the main process (the anchor).
- built-in: :func:`r2cnn.data.builtin.generate` making ``--builtin-sketches`` sketches vs. the ``json.loads`` loop
  of the parse group over as many ndjson lines of those same sketches (the anchor): is generating a sketch cheaper
  than reading one from a file?

Data: the data folder's ``quickdraw/qd5/train`` (found as :mod:`r2cnn.bench._paths` says) when present, else the
built-in generator's sketches.

With ``--store DIR`` (a prepared store, e.g. the full-size QuickDraw rehearsal of docs/architecture.md, "Scale")
it times the loader instead, over ``--loader-sketches`` sketches drawn at random from the store's train split:

- anchor: ``store[i]`` plus each preset's training transform in the main process;
- per ``--presets`` entry (default the paper's QuickDraw preset and the CPU preset): ``make_loader`` with
  ``--workers`` worker processes, that preset's training transform (augmentation) and its model's raster geometry
  (canvas and stroke width: 224 for the paper's, 64 for the CPU preset), batches of the preset's size. Each row
  also gives sketches/s per worker and sketches per CPU-second of the main process and its workers together (the
  per-core rate a GPU node's data-loading cores are planned with; on a shared machine the wall-clock rate also
  depends on the share of a core each process got).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HELP = "data benchmarks: ndjson parse vs json.loads, loader (1 worker, +/- geometry) vs reading the store"

QD5_TRAIN = "quickdraw/qd5/train"  # under the data folder (r2cnn.bench._paths)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, help=f"folder of simplified ndjson files (default: the data folder's "
                                             f"{QD5_TRAIN} when present, else built-in data)")
    p.add_argument("--sketches", type=int, default=20000, help="sketches to parse (default 20000)")
    p.add_argument("--loader-sketches", type=int, default=4000, help="sketches through the loader (default 4000)")
    p.add_argument("--builtin-sketches", type=int, default=1200,
                   help="sketches the built-in generator makes (default 1200, a multiple of its class count)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--raster-size", type=int, default=224, help="geometry size for the loader row (default 224)")
    p.add_argument("--work-dir", type=Path, help="where to write the sample file and store (default: a temp dir)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--store", type=Path, help="time the loader over this prepared store's train split instead")
    p.add_argument("--presets", default="qd-r2cnn-resnet50,cpu-r2cnn-paper",
                   help="with --store: presets whose transform, canvas and batch size the loader rows use "
                        "(default: qd-r2cnn-resnet50 and cpu-r2cnn-paper)")
    p.add_argument("--workers", type=int, default=1, help="with --store: loader worker processes (default 1)")


def _sample_ndjson(args, path: Path) -> str:
    """Write ``args.sketches`` simplified-ndjson lines to ``path``; returns a description of the data."""
    from r2cnn.bench._paths import find_data

    data = args.data if args.data is not None else find_data(QD5_TRAIN)
    if data is not None and not Path(data).is_dir():
        from r2cnn.errors import R2CNNError
        raise R2CNNError(f"{data}: not a folder of simplified ndjson files")
    with open(path, "wb") as out:
        if data is not None:
            files = sorted(Path(data).glob("*.ndjson"))
            per_file = -(-args.sketches // max(len(files), 1))
            for f in files:
                with open(f, "rb") as src:
                    for _, line in zip(range(per_file), src):
                        out.write(line if line.endswith(b"\n") else line + b"\n")
            return f"{data} ({len(files)} files)"
        from r2cnn.data.builtin import CLASSES, generate
        for i, sk in enumerate(generate(-(-args.sketches // len(CLASSES)), seed=0)):
            out.write(_ndjson_line(sk, i))
        return "built-in generator"


def _ndjson_line(sketch, key_id: int) -> bytes:
    """One simplified-ndjson line (integer coordinates) for ``sketch``."""
    drawing = [[st[:, 0].astype(int).tolist(), st[:, 1].astype(int).tolist()] for st in sketch.strokes()]
    return json.dumps({"word": sketch.label, "key_id": str(key_id), "drawing": drawing}).encode() + b"\n"


def _timed(fn) -> tuple[int, float]:
    """``(fn(), seconds)``; ``fn`` returns the number of sketches it handled."""
    t = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t


def _cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and all its descendants (loader workers): on a
    shared machine sketches per CPU-second is the per-core rate, whatever share of a core each process got."""
    import psutil

    total = 0.0
    for p in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            c = p.cpu_times()
        except psutil.Error:
            continue
        total += c.user + c.system
    return total


def _store_rows(args) -> tuple[str, list]:
    """The ``--store`` rows (module docstring): ``(description, [(group, what, sketches, seconds)])``."""
    import numpy as np

    from r2cnn.data.loader import make_loader
    from r2cnn.data.store import SketchStore
    from r2cnn.engine.factory import build_model, build_transform
    from r2cnn.presets import get_preset

    store = SketchStore(args.store)
    train = store.indices("train")
    idx = np.sort(np.random.default_rng(0).choice(train, min(args.loader_sketches, len(train)), replace=False))
    idx = idx[np.random.default_rng(1).permutation(len(idx))]  # random access, as a shuffled epoch reads
    setups = []
    for name in [p.strip() for p in args.presets.split(",") if p.strip()]:
        config = dict(get_preset(name), preset=name)
        model = build_model(config, len(store.classes), pretrained=False)
        setups.append((name, build_transform(config, train=True), model.raster_size, model.raster_eps,
                       int(config["batch_size"])))
        del model
    rows = []
    rng = np.random.default_rng(0)

    def anchor(transform):
        for i in idx:
            transform(store[i], rng)
        return len(idx)

    c0 = _cpu_seconds()
    n, t = _timed(lambda: anchor(setups[0][1]))
    rows.append(("loader", f"store[i] + {setups[0][0]} transform, main process (anchor)", n, t,
                 _cpu_seconds() - c0))
    for name, transform, size, eps, batch in setups:
        loader = make_loader(store, None, indices=idx, batch_size=batch, transform=transform,
                             num_workers=args.workers, raster_size=size, raster_eps=eps)
        it = iter(loader)
        first = next(it)  # worker start-up is not part of the throughput
        c0 = _cpu_seconds()
        n, t = _timed(lambda: sum(b.batch_size for b in it))
        rows.append(("loader", f"{name}: {args.workers} worker(s), geometry {size}, batch {batch}", n, t,
                     _cpu_seconds() - c0))
        del it, loader, first
    return f"{args.store} ({len(store)} sketches, train split {len(train)})", rows


def run(args) -> int:
    import tempfile

    import numpy as np

    from r2cnn.data import builtin
    from r2cnn.data.formats import read_sketches
    from r2cnn.data.loader import make_loader
    from r2cnn.data.store import prepare
    from r2cnn.data.transforms import make_transform

    if args.store is not None:
        source, rows = _store_rows(args)
        return _print(args, source, rows)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        tmp = Path(tmp)
        sample = tmp / "sample.ndjson"
        source = _sample_ndjson(args, sample)
        rows = []

        def json_loop(path):
            n = 0
            with open(path, "rb") as f:
                for line in f:
                    json.loads(line)
                    n += 1
            return n

        rows.append(("parse", "json.loads loop (anchor)", *_timed(lambda: json_loop(sample))))
        rows.append(("parse", "read_sketches (validated Sketch)", *_timed(lambda: sum(1 for _ in read_sketches(sample)))))

        store = prepare([sample], tmp / "store", label_field="word", progress=False, log=lambda *_: None)
        idx = store.indices("all")[:args.loader_sketches]
        normalize = make_transform(train=False)
        rng = np.random.default_rng(0)

        def store_loop():
            for i in idx:
                normalize(store[i], rng)
            return len(idx)

        rows.append(("loader", "store[i] + normalize, main process (anchor)", *_timed(store_loop)))
        for label, size in (("no geometry", None), (f"geometry {args.raster_size}", args.raster_size)):
            loader = make_loader(store, None, indices=idx, batch_size=args.batch_size, transform=normalize,
                                 num_workers=1, raster_size=size)
            it = iter(loader)
            first = next(it)  # worker start-up is not part of the throughput
            rows.append(("loader", f"make_loader 1 worker, {label}", *_timed(lambda: sum(b.batch_size for b in it))))
            del it, loader, first

        per_class = max(1, -(-args.builtin_sketches // len(builtin.CLASSES)))
        made = []

        def generate():
            made[:] = builtin.generate(per_class, seed=3)
            return len(made)

        builtin.generate(1, seed=0)  # first use compiles (or loads) kernels: not part of generating
        generated = _timed(generate)
        made_file = tmp / "builtin.ndjson"
        made_file.write_bytes(b"".join(_ndjson_line(sk, i) for i, sk in enumerate(made)))
        rows.append(("builtin", "json.loads loop, same sketches (anchor)", *_timed(lambda: json_loop(made_file))))
        rows.append(("builtin", "builtin.generate", *generated))
    return _print(args, source, rows)


def _print(args, source: str, rows: list) -> int:
    anchors = {}
    results = []
    for group, what, n, t, *cpu in rows:
        rate = n / t if t > 0 else float("inf")
        anchors.setdefault(group, rate)
        results.append({"group": group, "what": what, "sketches": n, "seconds": round(t, 4),
                        "sketches_per_s": round(rate, 1), "ratio_to_anchor": round(rate / anchors[group], 3)})
        if args.store is not None and "worker" in what:
            results[-1]["sketches_per_s_per_worker"] = round(rate / max(args.workers, 1), 1)
        if cpu and cpu[0] > 0:
            results[-1]["cpu_seconds"] = round(cpu[0], 3)
            results[-1]["sketches_per_cpu_s"] = round(n / cpu[0], 1)
    print(f"data: {source} (ratio: sketches/s over the anchor of the same group, same run)")
    print(f"{'group':<7} {'what':<46} {'sketches':>9} {'seconds':>8} {'sketches/s':>11} {'ratio':>6}")
    for r in results:
        per_worker = f"  ({r['sketches_per_s_per_worker']:.0f} per worker)" if "sketches_per_s_per_worker" in r else ""
        if "sketches_per_cpu_s" in r:
            per_worker += f"  {r['sketches_per_cpu_s']:.0f} per CPU-second"
        print(f"{r['group']:<7} {r['what']:<46} {r['sketches']:>9} {r['seconds']:>8.3f} {r['sketches_per_s']:>11.0f} "
              f"{r['ratio_to_anchor']:>6.2f}{per_worker}")
    if args.json:
        args.json.write_text(json.dumps({"data": source, "results": results}, indent=1))
    return 0
