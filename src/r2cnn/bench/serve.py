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

Under load (``--burst N``, ``--slow-bodies N``; docs/architecture.md "Serving under load"): ``N`` requests of a
drawing of ``--burst-points`` points posted at once, then ``N`` connections that each send all but one byte of a
``--slow-body-bytes`` body and stall, while ``/health`` is polled every 0.5 s. Reported: how each burst request
was answered (200, the documented 503 with ``Retry-After`` and a JSON ``message``, anything else: an error), the
``/health`` latency during each phase against the same poll on the idle server (its anchor), how long each slow
connection stayed open against the server's request timeout and what it was answered, and the server's RSS idle
(after a warm-up predict of the burst's drawing), at its peak and after each phase (once the server has been idle
for a second). ``--server-malloc`` picks the server's malloc settings (see "Serving under load").
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
    p.add_argument("--burst", type=int, default=0, metavar="N",
                   help="also post N predicts of --burst-points points at once, /health polled meanwhile (0: none)")
    p.add_argument("--burst-points", type=int, default=20000, help="points in the burst's drawing")
    p.add_argument("--slow-bodies", type=int, default=0, metavar="N",
                   help="also open N connections that each send all but one byte of a body, then stall (0: none)")
    p.add_argument("--slow-body-bytes", type=int, default=1_999_000, help="the slow bodies' Content-Length")
    p.add_argument("--request-timeout", type=float, help="the server's --request-timeout (default: its own)")
    p.add_argument("--server-malloc", choices=list(SERVER_MALLOC), default="launcher",
                   help="the server's malloc settings: launcher (what `r2cnn serve` gets), glibc (none), training "
                        "(MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ as training has them)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


# The server's malloc environment, by --server-malloc: variables set (a value) or removed (None).
SERVER_MALLOC = {
    "launcher": {},  # r2cnn.launch's choice for `serve`, applied below by _server_env
    "glibc": {"MALLOC_MMAP_THRESHOLD_": None, "MALLOC_TRIM_THRESHOLD_": None},
    "training": {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"},
}
HEALTH_EVERY = 0.5  # seconds between /health polls


def _server_env(choice: str) -> dict:
    """The environment of the server process: this one's, with the malloc settings of ``choice`` (``launcher``:
    exactly what the launcher gives ``r2cnn serve`` when the user set none)."""
    from r2cnn.launch import launch_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    settings = launch_env("serve") if choice == "launcher" else SERVER_MALLOC[choice]
    env.update({k: v for k, v in settings.items() if v is not None})
    return dict(env, R2CNN_NO_REEXEC="1")


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


def _big_drawing(points: int) -> dict:
    """A predict request of ``points`` points: strokes of 200 points (fewer in the last), random walks in
    Quick, Draw!'s 0..255 box, seeded."""
    import numpy as np

    rng = np.random.default_rng(0)
    drawing, left = [], points
    while left > 0:
        n = min(200, left)
        xy = np.clip(128 + np.cumsum(rng.normal(0, 3, (n, 2)), axis=0), 0, 255).round(1)
        drawing.append([xy[:, 0].tolist(), xy[:, 1].tolist()])
        left -= n
    return {"drawing": drawing, "top_k": 5}


def _poll_health(url: str, ready, stop, out) -> None:
    """In its own process (so that the load generator's work does not delay it): GET /health every HEALTH_EVERY s
    until ``stop`` is set, then send ``(latencies, errors)`` through ``out``."""
    import httpx

    latencies, errors = [], []
    with httpx.Client(base_url=url, timeout=60.0) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                r = client.get("health")
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
            latencies.append(time.perf_counter() - start)
            ready.set()
            stop.wait(max(0.0, HEALTH_EVERY - (time.perf_counter() - start)))
    out.send((latencies, errors))


class _Watch:
    """While in it: /health polled every HEALTH_EVERY s by another process (the first poll, on the idle server,
    is left out), the server's RSS sampled every 0.1 s by a thread."""

    def __init__(self, url: str, server):
        self.url, self.server = url, server
        self.health: list[float] = []
        self.health_errors: list[str] = []
        self.peak_rss = 0

    def __enter__(self):
        import multiprocessing
        import threading

        context = multiprocessing.get_context("spawn")
        self._ready, self._stop = context.Event(), context.Event()
        self._results, sender = context.Pipe(duplex=False)
        self._poller = context.Process(target=_poll_health, args=(self.url, self._ready, self._stop, sender),
                                       daemon=True)
        self._poller.start()
        sender.close()
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        if not self._ready.wait(120):
            raise RuntimeError("the /health poller did not start")
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._sampling.set()
        self._sampler.join()
        latencies, self.health_errors = self._results.recv() if self._results.poll(120) else ([], ["no results"])
        self.health = latencies[1:]
        self._poller.join(30)

    def _sample(self):
        while not self._sampling.is_set():
            self.peak_rss = max(self.peak_rss, self.server.memory_info().rss)
            self._sampling.wait(0.1)


def _settled_rss(server, quiet: float = 1.0, wait: float = 10.0) -> int:
    """The server's RSS once it has been idle ``quiet`` s, its lowest within ``wait`` s (sampled every 0.1 s)."""
    time.sleep(quiet)
    lowest, deadline = server.memory_info().rss, time.monotonic() + wait - quiet
    while time.monotonic() < deadline:
        time.sleep(0.1)
        lowest = min(lowest, server.memory_info().rss)
    return lowest


def _is_documented_503(status: int, headers, body: bytes) -> bool:
    import json

    try:
        message = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        return False
    return status == 503 and headers.get("retry-after", "").isdigit() and isinstance(message, str)


async def _burst(url: str, payload: dict, n: int) -> dict:
    """``n`` predicts of ``payload`` posted at once, one connection each."""
    import json

    import httpx

    body = json.dumps(payload).encode()
    answers = {"200": 0, "503": 0}
    errors, latencies = [], []
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600.0) as client:
        async def one():
            start = time.perf_counter()
            try:
                r = await client.post("api/predict", content=body, headers={"Content-Type": "application/json"})
                if r.status_code == 200 and r.json()["top"]:
                    answers["200"] += 1
                    latencies.append(time.perf_counter() - start)
                elif _is_documented_503(r.status_code, r.headers, r.content):
                    answers["503"] += 1
                else:
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except (httpx.HTTPError, ValueError, KeyError) as e:
                errors.append(f"{type(e).__name__}: {e}")

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - start
    return dict(answers=answers, errors=errors, latencies=latencies, wall=wall)


async def _slow_bodies(url: str, n: int, size: int) -> dict:
    """``n`` connections that each send a request head and ``size - 1`` of its ``size`` body bytes, then stall:
    how long each stays open (from its connection) and its answer's status."""
    from urllib.parse import urlsplit

    where = urlsplit(url)
    head = (f"POST /api/predict HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    chunk = b" " * 65536
    open_for, statuses = [], {}

    async def one():
        start = time.perf_counter()
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        try:
            writer.write(head)
            left = size - 1
            while left > 0:
                writer.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
                await writer.drain()
            answer = await reader.read()  # until the server closes the connection
        except (ConnectionError, OSError):
            answer = b""
        finally:
            writer.close()
        open_for.append(time.perf_counter() - start)
        status = answer.split(b" ", 2)[1].decode("latin-1") if answer.startswith(b"HTTP/1.1 ") else "closed"
        statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one() for _ in range(n)))
    return dict(open_for=open_for, statuses=statuses)


def _under_load(url: str, server, args, timeout: float) -> dict:
    """The burst and slow-body phases (docs/architecture.md "Serving under load"), with the server's RSS."""
    import httpx

    mb = 1e6
    payload = _big_drawing(args.burst_points)
    with httpx.Client(base_url=url, timeout=600.0) as client:  # warm-up: the burst's drawing once
        start = time.perf_counter()
        client.post("api/predict", json=payload).raise_for_status()
        one_big = time.perf_counter() - start
    with _Watch(url, server) as idle:  # the anchor: the same poll, on the idle server
        time.sleep(6 * HEALTH_EVERY)
    idle_health = idle.health
    out = {"request_timeout_s": timeout, "idle_rss_mb": _settled_rss(server) / mb, "burst_points": args.burst_points,
           "big_predict_s": one_big, "idle_health_ms": [1000 * h for h in idle_health]}
    if args.burst:
        with _Watch(url, server) as watch:
            burst = asyncio.run(_burst(url, payload, args.burst))
        out["burst"] = {"requests": args.burst, "answers": burst["answers"], "errors": len(burst["errors"]),
                        "first_error": burst["errors"][0] if burst["errors"] else None,
                        "health_errors": len(watch.health_errors), "wall_s": burst["wall"],
                        "ok_latency_p50_s": _percentile(burst["latencies"], 50) if burst["latencies"] else None,
                        "health_ms": _summary(watch.health), "peak_rss_mb": watch.peak_rss / mb,
                        "rss_after_mb": _settled_rss(server) / mb}
    if args.slow_bodies:
        with _Watch(url, server) as watch:
            slow = asyncio.run(_slow_bodies(url, args.slow_bodies, args.slow_body_bytes))
        out["slow_bodies"] = {"connections": args.slow_bodies, "body_bytes": args.slow_body_bytes,
                              "statuses": slow["statuses"], "open_s": _summary(slow["open_for"], 1),
                              "closed_within_timeout": sum(t <= timeout + 1.0 for t in slow["open_for"]),
                              "health_errors": len(watch.health_errors), "health_ms": _summary(watch.health),
                              "peak_rss_mb": watch.peak_rss / mb, "rss_after_mb": _settled_rss(server) / mb}
    return out


def _summary(values: list[float], scale: float = 1000.0) -> dict:
    return {"n": len(values), "p50": scale * _percentile(values, 50), "p99": scale * _percentile(values, 99),
            "max": scale * max(values)} if values else {"n": 0}


def _print_under_load(load: dict) -> list[str]:
    """Prints the load phases; -> what missed its goal."""
    idle = _percentile(load["idle_health_ms"], 50)
    misses = []
    print(f"under load: server request timeout {load['request_timeout_s']:g} s; a predict of "
          f"{load['burst_points']} points alone {load['big_predict_s']:.2f} s; /health idle p50 {idle:.1f} ms; "
          f"server RSS idle {load['idle_rss_mb']:.0f} MB")
    if "burst" in load:
        b = load["burst"]
        h = b["health_ms"]
        ratio = b["rss_after_mb"] / load["idle_rss_mb"]
        print(f"  burst of {b['requests']} predicts at once: {b['answers']['200']} answered 200, "
              f"{b['answers']['503']} the documented 503, {b['errors']} errors, in {b['wall_s']:.1f} s; /health "
              f"p50 {h['p50']:.0f} ms p99 {h['p99']:.0f} ms max {h['max']:.0f} ms ({h['p99'] / idle:.0f}x idle p50; "
              f"goal p99 <= 1000 ms), {b['health_errors']} failed; RSS peak {b['peak_rss_mb']:.0f} MB, after "
              f"{b['rss_after_mb']:.0f} MB ({ratio:.2f}x idle; goal <= 1.5x)")
        if b["errors"] or b["health_errors"]:
            misses.append("burst errors")
        if h["p99"] > 1000:
            misses.append("/health p99 in the burst")
        if ratio > 1.5:
            misses.append("RSS after the burst")
    if "slow_bodies" in load:
        s = load["slow_bodies"]
        h = s["health_ms"]
        ratio = s["rss_after_mb"] / load["idle_rss_mb"]
        print(f"  {s['connections']} slow bodies ({s['body_bytes'] - 1} of {s['body_bytes']} bytes, then a stall): "
              f"open p50 {s['open_s']['p50']:.1f} s max {s['open_s']['max']:.1f} s "
              f"({s['open_s']['max'] / load['request_timeout_s']:.2f}x the timeout), {s['closed_within_timeout']} "
              f"closed within the timeout (+1 s), answered {s['statuses']}; /health p99 {h['p99']:.0f} ms, "
              f"{s['health_errors']} failed; RSS peak {s['peak_rss_mb']:.0f} MB, after {s['rss_after_mb']:.0f} MB "
              f"({ratio:.2f}x idle)")
        if s["closed_within_timeout"] < s["connections"] or s["health_errors"]:
            misses.append("slow bodies")
        if ratio > 1.5:
            misses.append("RSS after the slow bodies")
    return misses


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
    if min(args.burst, args.slow_bodies) < 0 or not 1 <= args.burst_points <= 20000 or args.slow_body_bytes < 2:
        raise R2CNNError("--burst and --slow-bodies must be >= 0, --burst-points in 1..20000, --slow-body-bytes >= 2")
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    sketch = _sketch(args.sketch)
    payload = {"drawing": [[s[:, 0].tolist(), s[:, 1].tolist()] for s in sketch.strokes()], "top_k": 5}
    env = _server_env(args.server_malloc)
    if args.threads:  # torch's and numba's (the CPU rasteriser's) threads, here and in the server
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        env.update(OMP_NUM_THREADS=str(args.threads), NUMBA_NUM_THREADS=str(args.threads))
    predictor = Predictor(str(checkpoint))

    from r2cnn.serve.server import REQUEST_TIMEOUT

    options = [] if args.request_timeout is None else ["--request-timeout", str(args.request_timeout)]
    load = None
    with serve_subprocess(str(checkpoint), *options, env=env) as (url, process):
        server = psutil.Process(process.pid)
        one = _alternate(predictor, sketch, url, payload, args.sequential, server)
        load_lat, load_err, wall = _load(url, payload, args.requests, args.concurrency)
        if args.burst or args.slow_bodies:
            timeout = REQUEST_TIMEOUT if args.request_timeout is None else args.request_timeout
            load = _under_load(url, server, args, timeout)

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
        "server_malloc": args.server_malloc, "under_load": load,
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
    misses = _print_under_load(load) if load else []
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    if errors:
        print(f"first error: {results['first_error']}")
    if misses:
        print(f"missed: {', '.join(misses)}")
    return 1 if errors or misses else 0
