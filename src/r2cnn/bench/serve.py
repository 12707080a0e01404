"""``r2cnn bench serve``: a bounded load test of ``r2cnn serve`` on loopback, against ``Predictor.predict``.

The server runs as a child process (``r2cnn serve --port 0``) so that its event loop, thread pool and model compete
with the load generator only for the cores, as they would with real clients. One sketch (``--sketch`` or a
built-in one) is posted to ``/api/predict`` ``--requests`` times by ``--concurrency`` clients at once; every answer
must be a 200 with the top-k and the attention. The anchor (docs/architecture.md "Performance") is
``Predictor.predict`` on the same sketch in this process, in the same run, its calls alternating with requests
sent one at a time.

Reported: errors; latency p50/p99 one request at a time (the end-to-end cost of a request: JSON, HTTP, validation,
inference with attention) and under the concurrent load (which includes the wait behind requests in front: the
server runs one inference at a time); throughput; each as a ratio to the anchor's p50. Also the CPU time of a
request in the server against that of a ``Predictor.predict`` call: on a machine shared with other work, wall
times swing with the scheduler (a process that sleeps between requests is favoured over one that computes without
pause), CPU times much less.
"""

from __future__ import annotations

import argparse
import time

HELP = "load test of r2cnn serve on loopback (latency p50/p99, errors) against Predictor.predict"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="a trained checkpoint (default: the one `r2cnn demo` made)")
    p.add_argument("--requests", type=int, default=500, help="requests in the concurrent load (default 500)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    p.add_argument("--sequential", type=int, default=50,
                   help="requests one at a time, alternating with as many Predictor.predict calls (default 50)")
    p.add_argument("--sketch", help="a sketch file (first sketch is used; default: a built-in house)")
    p.add_argument("--threads", type=int, help="torch and numba threads, here and in the server (default: theirs)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def _load(url: str, payload: dict, requests: int, concurrency: int) -> tuple[list[float], list[str], float]:
    """Post ``payload`` ``requests`` times with ``concurrency`` in flight; latencies (s), errors, wall time (s)."""
    import asyncio

    import httpx

    async def main():
        latencies, errors = [], []
        todo = iter(range(requests))
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120.0) as client:
            async def worker():
                for _ in todo:
                    start = time.perf_counter()
                    try:
                        r = await client.post("api/predict", json=payload)
                        ok = r.status_code == 200 and len(r.json()["top"]) > 0
                        if not ok:
                            errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                    except (httpx.HTTPError, ValueError, KeyError) as e:
                        errors.append(f"{type(e).__name__}: {e}")
                    latencies.append(time.perf_counter() - start)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return latencies, errors, time.perf_counter() - start

    return asyncio.run(main())


def _alternate(predictor, sketch, url: str, payload: dict, n: int, server) -> dict:
    """``n`` calls of ``predictor.predict(sketch)`` and ``n`` requests one at a time, alternating so that load from
    other processes affects both alike (after 5 untimed ones of each).

    -> ``dict(direct=[s], http=[s], errors=[str], direct_cpu_s, server_cpu_s)``: wall times of each call and
    request, and the CPU time (all threads) of the ``n`` calls in this process and of the ``n`` requests in the
    server process (``server`` a :class:`psutil.Process`). On a shared machine CPU time is the steadier figure."""
    import httpx

    out = dict(direct=[], http=[], errors=[], direct_cpu_s=0.0)
    with httpx.Client(base_url=url, timeout=120.0) as client:
        for i in range(n + 5):
            if i == 5:
                server_cpu = sum(server.cpu_times()[:2])  # user + system, all its threads
            cpu, start = time.process_time(), time.perf_counter()
            predictor.predict(sketch)
            cpu, middle = time.process_time() - cpu, time.perf_counter()
            try:
                r = client.post("api/predict", json=payload)
                if r.status_code != 200 or not r.json()["top"]:
                    out["errors"].append(f"HTTP {r.status_code}: {r.text[:200]}")
            except (httpx.HTTPError, ValueError, KeyError) as e:
                out["errors"].append(f"{type(e).__name__}: {e}")
            if i >= 5:
                out["direct"].append(middle - start)
                out["http"].append(time.perf_counter() - middle)
                out["direct_cpu_s"] += cpu
    # the server is idle while this process predicts, so its CPU time over the loop is that of the n requests
    out["server_cpu_s"] = sum(server.cpu_times()[:2]) - server_cpu
    return out


def _sketch(path: str | None):
    import numpy as np

    if path is None:
        from r2cnn.data.builtin import draw
        return draw("house", np.random.default_rng(0))
    from r2cnn.data.formats import read_sketches
    from r2cnn.errors import R2CNNError

    for sketch in read_sketches(path):
        return sketch
    raise R2CNNError(f"{path}: no sketch in this file")


def run(args) -> int:
    import json
    import os
    from pathlib import Path

    import psutil
    import torch

    from r2cnn.engine.demo import default_checkpoint
    from r2cnn.engine.predict import Predictor
    from r2cnn.engine.report import table
    from r2cnn.errors import R2CNNError
    from r2cnn.serve.server import serve_subprocess

    if min(args.requests, args.concurrency, args.sequential, args.threads or 1) < 1:
        raise R2CNNError("--requests, --concurrency, --sequential and --threads must be at least 1")
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    sketch = _sketch(args.sketch)
    payload = {"drawing": [[s[:, 0].tolist(), s[:, 1].tolist()] for s in sketch.strokes()], "top_k": 5}
    env = dict(os.environ, R2CNN_NO_REEXEC="1")  # the server gets this process's environment (malloc settings)
    if args.threads:  # torch's and numba's (the CPU rasteriser's) threads, here and in the server
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        env.update(OMP_NUM_THREADS=str(args.threads), NUMBA_NUM_THREADS=str(args.threads))
    predictor = Predictor(str(checkpoint))

    with serve_subprocess(str(checkpoint), env=env) as (url, process):
        one = _alternate(predictor, sketch, url, payload, args.sequential, psutil.Process(process.pid))
        load_lat, load_err, wall = _load(url, payload, args.requests, args.concurrency)

    anchor = _percentile(one["direct"], 50)
    errors = one["errors"] + load_err
    n = args.sequential
    rows_in = {"Predictor.predict (anchor)": one["direct"], "HTTP, 1 at a time": one["http"],
               f"HTTP, {args.concurrency} at a time": load_lat}
    results = {
        "checkpoint": str(checkpoint), "model": predictor.config.get("model"), "points": sketch.num_points,
        "strokes": sketch.num_strokes, "requests": args.requests, "concurrency": args.concurrency,
        "threads": args.threads, "errors": len(errors), "first_error": errors[0] if errors else None,
        "throughput_per_s": args.requests / wall, "wall_ms_per_request": 1000 * wall / args.requests,
        "latency_ms": {k: {"n": len(v), "p50": 1000 * _percentile(v, 50), "p99": 1000 * _percentile(v, 99)}
                       for k, v in rows_in.items()},
        "cpu_ms": {"predict": 1000 * one["direct_cpu_s"] / n, "server_per_request": 1000 * one["server_cpu_s"] / n},
        "e2e_p50_over_predict": _percentile(one["http"], 50) / anchor,
        "loaded_p50_over_predict": _percentile(load_lat, 50) / anchor,
        "wall_per_request_over_predict": wall / args.requests / anchor,
        "server_cpu_over_predict_cpu": one["server_cpu_s"] / max(one["direct_cpu_s"], 1e-9),
    }
    rows = [(k, str(len(v)), f"{1000 * _percentile(v, 50):.1f}", f"{1000 * _percentile(v, 99):.1f}",
             f"{_percentile(v, 50) / anchor:.2f}x") for k, v in rows_in.items()]
    rows.append((f"wall time / request, {args.concurrency} at a time", str(args.requests),
                 f"{results['wall_ms_per_request']:.1f}", "", f"{results['wall_per_request_over_predict']:.2f}x"))
    print(f"bench serve: {checkpoint} ({results['model']}), a sketch of {sketch.num_points} points in "
          f"{sketch.num_strokes} strokes, loopback, threads: {args.threads or 'default'}")
    print(table(rows, ["", "requests", "p50 ms", "p99 ms", "p50 vs predict"]))
    ratio = results["e2e_p50_over_predict"]
    print(f"CPU time: Predictor.predict {results['cpu_ms']['predict']:.1f} ms, the server per request "
          f"{results['cpu_ms']['server_per_request']:.1f} ms ({results['server_cpu_over_predict_cpu']:.2f}x)")
    print(f"end-to-end p50 (1 at a time) = {ratio:.2f}x Predictor.predict "
          f"({'meets' if ratio <= 1.5 else 'misses'} the <= 1.5x goal); throughput {results['throughput_per_s']:.1f} "
          f"requests/s with {args.concurrency} in flight; errors: {len(errors)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    if errors:
        print(f"first error: {results['first_error']}")
        return 1
    return 0
