"""The web server's API (FastAPI TestClient): predictions and attention, the page's files, and every kind of bad
input answered with a clear 4xx (never a crash)."""

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="fastapi is not installed (pip install 'sketch-r2cnn')")
from fastapi.testclient import TestClient  # noqa: E402

from r2cnn.presets import get_preset  # noqa: E402
from r2cnn.serve.app import MAX_POINTS, MAX_STROKES, STATIC  # noqa: E402

# Two strokes in screen-like coordinates: a "V" and a bar.
DRAWING = [[[10, 60, 110, 160], [10, 80, 10, 90]], [[30, 90, 140], [50, 52, 50]]]


@pytest.fixture(scope="module")
def predictor(tiny_r2cnn_checkpoint):
    from r2cnn.engine.predict import Predictor

    return Predictor(str(tiny_r2cnn_checkpoint))


def _client(predictor, **limits) -> TestClient:
    from r2cnn.serve import Limits, Recognizer, create_app

    return TestClient(create_app(Recognizer(predictor, source="tiny.pt"), Limits(**limits)))


@pytest.fixture(scope="module")
def client(predictor):
    return _client(predictor)


def _sketch(drawing):
    from r2cnn.sketch import Sketch

    return Sketch.from_strokes([np.column_stack(s) for s in drawing])


def test_predict_matches_the_predictor_and_gives_attention_per_point(client, predictor):
    r = client.post("/api/predict", json={"drawing": DRAWING, "top_k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = predictor.predict(_sketch(DRAWING), top_k=5)
    assert [t["class"] for t in body["top"]] == [c for c, _ in expected]
    np.testing.assert_allclose([t["probability"] for t in body["top"]], [p for _, p in expected], rtol=1e-5)
    probs = [t["probability"] for t in body["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    # one value per drawn point, stroke by stroke, equal to the model's own attention (mean over channels)
    assert [len(a) for a in body["attention"]] == [len(xs) for xs, _ in DRAWING]
    direct = predictor.predict_with_attention(_sketch(DRAWING))
    assert body["attention_channels"] == direct["attention"].shape[1]
    np.testing.assert_allclose(sum(body["attention"], []), direct["attention"].mean(axis=1), rtol=1e-5)
    assert all(0 <= v <= 1 for a in body["attention"] for v in a)


def test_coordinate_range_does_not_matter(client):
    """Any coordinate range: the model normalises, so a scaled and shifted copy gets the same answer."""
    moved = [[[3.5 * x - 1000 for x in xs], [3.5 * y + 0.25 for y in ys]] for xs, ys in DRAWING]
    a, b = (client.post("/api/predict", json={"drawing": d}).json() for d in (DRAWING, moved))
    assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
    np.testing.assert_allclose(sum(a["attention"], []), sum(b["attention"], []), atol=1e-4)


def test_a_whole_quickdraw_record_is_accepted_and_top_k_is_capped(client):
    record = {"word": "house", "countrycode": "DE", "recognized": True, "drawing": DRAWING, "top_k": 100}
    body = client.post("/api/predict", json=record).json()
    assert len(body["top"]) == len(client.get("/api/classes").json()["classes"])  # 12 built-in classes < 100
    assert client.post("/api/predict", json={"drawing": [[[5], [5]]]}).status_code == 200  # a single dot


def test_classes_health_docs_and_page(client, predictor):
    model = get_preset("cpu-r2cnn")["model"]  # the tiny checkpoint's preset
    assert client.get("/api/classes").json() == {"classes": predictor.classes, "model": model,
                                                 "has_attention": True, "browser_model": None, "browser_note": None}
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["classes"] == len(predictor.classes)
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="canvas"' in page.text
    for src in re.findall(r'(?:src|href)="((?:static/|favicon)[^"]+)"', page.text):
        assert client.get("/" + src).status_code == 200, src
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")


def test_docs_page_loads_swagger_ui_from_the_package(client):
    """/docs works offline: every script, style sheet and icon it names is served here, none from a CDN."""
    docs = client.get("/docs")
    assert docs.status_code == 200 and "SwaggerUIBundle" in docs.text
    assets = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', docs.text)
    assert len(assets) >= 3 and not [a for a in assets if "//" in a], assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "validator.swagger.io" not in docs.text and '"validatorUrl": null' in docs.text
    assert client.get("/redoc").status_code == 404  # ReDoc only exists on a CDN: not offered


@pytest.mark.parametrize("folder", ["onnxruntime-web", "swagger-ui"])
def test_vendored_files_are_the_recorded_ones(folder):
    """Each vendored file's sha256 is the one its VENDORED.md records, with the version and a licence beside."""
    import hashlib

    vendor = STATIC / "vendor" / folder
    record = (vendor / "VENDORED.md").read_text()
    files = re.findall(r"^\| `([^`]+)`[^|]*\| `([0-9a-f]{64})` \|$", record, re.M)
    assert len(files) >= 2
    for name, digest in files:
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    assert (vendor / "LICENSE").is_file() and re.search(r"\*\*\d+\.\d+\.\d+\*\*", record)


def test_cnn_only_checkpoint_predicts_without_attention(tiny_cnn_checkpoint):
    from r2cnn.engine.predict import Predictor

    client = _client(Predictor(str(tiny_cnn_checkpoint)))
    assert client.get("/api/classes").json()["has_attention"] is False
    body = client.post("/api/predict", json={"drawing": DRAWING}).json()
    assert len(body["top"]) == 5 and body["attention"] is None and body["attention_channels"] is None


def test_concurrent_requests_give_the_same_answers(client):
    drawings = [DRAWING, [[[0, 5, 9], [0, 9, 0]]], DRAWING[:1]]
    expected = [client.post("/api/predict", json={"drawing": d}).json() for d in drawings]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: client.post("/api/predict", json={"drawing": drawings[i % 3]}), range(24)))
    assert all(r.status_code == 200 for r in got)
    for i, r in enumerate(got):
        assert r.json()["top"] == expected[i % 3]["top"]


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


BAD_BODIES = {
    "NaN": ('{"drawing": [[[1, NaN], [2, 3]]]}', "drawing[0][0][1]"),
    "Infinity": ('{"drawing": [[[1, 2], [2, Infinity]]]}', "drawing[0][1][1]"),
    "-Infinity": ('{"drawing": [[[-Infinity], [2]]]}', "drawing[0][0][0]"),
    "beyond float32": ('{"drawing": [[[1e300, 2], [2, 3]]]}', "non-finite coordinate"),
    "string": ('{"drawing": [[[1, "2"], [2, 3]]]}', "drawing[0][0][1]': not a number"),
    "bool": ('{"drawing": [[[true], [2]]]}', "drawing[0][0][0]': not a number"),
    "null": ('{"drawing": [[[null], [2]]]}', "drawing[0][0][0]"),
    "nested number": ('{"drawing": [[[[1]], [2]]]}', "drawing[0][0][0]"),
    "stroke of one list": ('{"drawing": [[[1, 2]]]}', "drawing[0]"),
    "stroke of four lists": ('{"drawing": [[[1], [2], [3], [4]]]}', "drawing[0]"),
    "raw and simplified strokes mixed": ('{"drawing": [[[1], [2], [3]], [[1], [2]]]}', "drawing[1]"),
    "stroke is a number": ('{"drawing": [5]}', "drawing[0]"),
    "x/y lengths differ": ('{"drawing": [[[1, 2, 3], [2, 3]]]}', "x/y length mismatch (3 x, 2 y)"),
    "x/t lengths differ": ('{"drawing": [[[1, 2], [2, 3], [0]]]}', "x/t length mismatch"),
    "empty drawing": ('{"drawing": []}', "empty drawing"),
    "empty stroke": ('{"drawing": [[[], []]]}', "drawing[0]': empty stroke"),
    "no drawing": ('{"strokes": [[[1], [2]]]}', "give one of 'drawing'"),
    "drawing and points": ('{"drawing": [[[1], [2]]], "points": [[1, 2, 1]]}', "give one of 'drawing'"),
    "points of two columns": ('{"points": [[1, 2], [3, 4]]}', "expected (N, 3)"),
    "points with a string": ('{"points": [[1, "2", 1]]}', "points[0][1]': not a number"),
    "pen_end not 0 or 1": ('{"points": [[1, 2, 0.5]]}', "pen_end not 0 or 1"),
    "not an object": ('[[[1], [2]]]', "body"),
    "malformed JSON": ('{"drawing": [[[1, 2], [3, 4]]', "not valid JSON"),
    "empty body": ("", "body"),
    "top_k 0": ('{"drawing": [[[1], [2]]], "top_k": 0}', "top_k"),
    "top_k string": ('{"drawing": [[[1], [2]]], "top_k": "all"}', "top_k"),
    "top_k numeric string": ('{"drawing": [[[1], [2]]], "top_k": "5"}', "top_k"),
    "top_k true": ('{"drawing": [[[1], [2]]], "top_k": true}', "top_k"),
    "top_k float": ('{"drawing": [[[1], [2]]], "top_k": 5.0}', "top_k"),
    "too many strokes": (json.dumps({"drawing": [[[1], [2]]] * (MAX_STROKES + 1)}), "drawing"),
    "too many points in a stroke": (json.dumps({"drawing": [[[0] * (MAX_POINTS + 1)] * 2]}), "too many points"),
    "too many points in all": (json.dumps({"drawing": [[[0] * 100] * 2] * (MAX_POINTS // 100 + 1)}),
                               f"> {MAX_POINTS}"),
}


@pytest.mark.parametrize("name", BAD_BODIES)
def test_bad_drawings_get_422_naming_the_problem(client, name):
    body, named = BAD_BODIES[name]
    r = client.post("/api/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, (r.status_code, r.text)
    message = r.json()["message"]
    assert named in message and "\n" not in message


def test_deeply_nested_json_is_a_4xx_not_a_crash(client):
    r = client.post("/api/predict", content='{"drawing": ' + _nested(100_000) + "}",
                    headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text


def test_body_over_the_limit_is_refused_before_parsing(predictor):
    client = _client(predictor, max_body_bytes=4096)
    small = {"drawing": [[[1.0] * 100, [2.0] * 100]]}
    assert client.post("/api/predict", json=small).status_code == 200
    big = {"drawing": [[[1.0] * 1000, [2.0] * 1000]]}
    r = client.post("/api/predict", json=big)
    assert r.status_code == 413 and "4096 bytes" in r.json()["message"]
    # a declared length over the limit is refused whatever follows, and so is a chunked body with no length
    assert client.post("/api/predict", content=b"x" * 5000, headers={"Content-Length": "5000"}).status_code == 413
    chunks = (b"[" * 1000 for _ in range(10))
    r = client.post("/api/predict", content=chunks, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert client.post("/api/parse?format=svg", content=b"<svg " + b" " * 5000 + b"/>").status_code == 413


def test_parse_reads_ndjson_and_svg_with_the_format_readers(client):
    lines = b'{"word": "cat", "drawing": [[[0, 10, 20], [5, 6, 7]]]}\n{"word": "dog", "drawing": [[[1], [2]]]}\n'
    assert client.post("/api/parse?format=ndjson", content=lines).json() == {
        "drawing": [[[0, 10, 20], [5, 6, 7]]], "label": "cat"}
    assert client.post("/api/parse?format=ndjson&index=1", content=lines).json()["label"] == "dog"
    r = client.post("/api/parse?format=ndjson&index=2&name=x.ndjson", content=lines)
    assert r.status_code == 422 and r.json()["message"] == "x.ndjson: has 2 sketches, no sketch 2"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><path d="M 1 2 L 30 40"/><path d="M 5 5 L 6 9"/></svg>'
    body = client.post("/api/parse?format=svg", content=svg).json()
    assert body == {"drawing": [[[1, 30], [2, 40]], [[5, 6], [5, 9]]], "label": None}


@pytest.mark.parametrize("fmt, content, named", [
    ("ndjson", b'{"word": "cat", "drawing": [[[0, 1], [1e300, 2]]]}', "non-finite coordinate"),
    ("ndjson", b'{"drawing": [[[0, 1], [2]]]}', "x/y length mismatch"),
    ("ndjson", b"\x80\x03cos\nsystem\n.", "malformed JSON"),  # a pickle is data, never unpickled
    ("svg", b"<svg><path d='M 1 2 L'/></svg>", "unparsable path data"),
    ("svg", b"<svg", "malformed XML"),
    # crafted numbers that once gave a traceback (500)
    ("svg", b'<svg><path d="M 0 0 A 1e-300 1e-300 0 1 1 1e300 1e300"/></svg>', "non-finite coordinate"),
    ("svg", b'<svg><path d="M 0 0 C 0 0 0 0 0 0 S 1 1 1e308 1e308"/></svg>', "non-finite coordinate"),
    ("svg", b'<?xml version="1.0" encoding="UTF-7"?><svg/>', "unsupported XML encoding"),
    # 1.7 MB asking for 100M points: refused once past the limit, before sampling the rest (4 GB and 26 s before)
    ("svg", b'<svg><path d="M0 0 ' + b"C0 0 1e6 1e6 0 0 " * 100_000 + b'"/></svg>', "too many points"),
])
def test_parse_errors_name_the_file(client, fmt, content, named):
    r = client.post(f"/api/parse?format={fmt}&name=mine.{fmt}", content=content)
    assert r.status_code == 422
    assert r.json()["message"].startswith(f"mine.{fmt}") and named in r.json()["message"]
    assert "\n" not in r.json()["message"]
    assert client.post("/api/parse?format=pickle", content=content).status_code == 422


def test_attention_is_carried_back_to_the_drawn_points():
    from r2cnn.serve.recognizer import attention_at

    points = np.array([[-1, -1, 0], [-0.9, -0.8, 0], [1, 1, 1], [0.5, -0.5, 1]], np.float32)
    attention = np.array([[0.1], [0.2], [0.3], [0.4]], np.float32)
    assert attention_at(points, points.copy(), attention) is attention
    # the model saw the strokes swapped and a point dropped: each drawn point takes its nearest seen point's value
    seen = points[[3, 0, 2]]
    np.testing.assert_allclose(attention_at(points, seen, attention[[3, 0, 2]]).ravel(), [0.1, 0.1, 0.3, 0.4])


def test_page_colour_map_is_matplotlib_jet():
    colormaps = pytest.importorskip("matplotlib").colormaps
    text = (STATIC / "colormap.js").read_text()
    assert re.search(r'name: "(\w+)"', text).group(1) == "jet"
    table = np.array(json.loads("[" + re.search(r"table: \[(.*?)\n  \],", text, re.S).group(1) + "]"))
    expected = np.round(255 * colormaps["jet"](np.linspace(0, 1, len(table)))[:, :3])
    np.testing.assert_array_equal(table, expected)


def test_serve_without_checkpoint_says_how_to_make_one(tmp_path):
    env = dict(os.environ, R2CNN_NO_REEXEC="1")
    proc = subprocess.run([sys.executable, "-m", "r2cnn", "serve", "--port", "0"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("r2cnn: error: no --checkpoint given") and "r2cnn demo" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_serve_onnx_errors_are_one_line(tiny_r2cnn_checkpoint, tmp_path, capsys):
    from r2cnn.cli import main

    assert main(["serve", "--checkpoint", str(tiny_r2cnn_checkpoint), "--browser-max-mb", "-1"]) == 2
    assert "--browser-max-mb must be a size in MB (>= 0), not -1.0" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(tiny_r2cnn_checkpoint), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "m.onnx: no such ONNX file (make one with `r2cnn export --format onnx`)" in err


def test_bench_serve_small_load_has_no_errors(tiny_r2cnn_checkpoint, tmp_path):
    sketch = tmp_path / "v.ndjson"
    sketch.write_text(json.dumps({"word": "v", "drawing": DRAWING}) + "\n")
    out = tmp_path / "bench.json"
    env = dict(os.environ, R2CNN_NO_REEXEC="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "r2cnn", "bench", "serve", "--checkpoint", str(tiny_r2cnn_checkpoint),
                           "--requests", "16", "--concurrency", "4", "--sequential", "3", "--sketch", str(sketch),
                           "--json", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    assert results["errors"] == 0 and results["requests"] == 16 and results["points"] == 7
    assert [v["n"] for v in results["latency_ms"].values()] == [3, 3, 16]
    assert all(0 < v["p50"] <= v["p99"] for v in results["latency_ms"].values())
    assert results["e2e_p50_over_predict"] > 0 and "end-to-end p50 (1 at a time)" in proc.stdout


# --- Round 3 audit 5: unparsable bodies, Host header, /health, slow clients ---------------------------------

@pytest.mark.parametrize("body, why", [
    (b'{"drawing": [[[' + b"1" * 5000 + b"], [2]]]}", "thousands of digits"),
    (b'{"drawing": ' + _nested(100_000).encode() + b"}", "nested too deeply"),
    (b'{"drawing": [[[1], [2]]], "x": "\xff\xfe"}', "not UTF-8"),
], ids=["5000 digits", "100k deep", "bad UTF-8"])
def test_unparsable_bodies_get_400_with_a_message(client, body, why):
    r = client.post("/api/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, (r.status_code, r.text)
    message = r.json()["message"]
    assert why in message and "\n" not in message, message


def test_other_http_errors_carry_a_message_too(client):
    r = client.get("/no/such/page")
    assert r.status_code == 404 and r.json()["message"] == "Not Found"
    assert client.get("/api/predict").json()["message"] == "Method Not Allowed"


def test_top_k_as_a_json_integer_is_accepted(client):
    r = client.post("/api/predict", json={"drawing": DRAWING, "top_k": 2})
    assert r.status_code == 200 and len(r.json()["top"]) == 2


def test_health_names_the_checkpoint_file_not_its_folder(predictor):
    from r2cnn.serve import Recognizer, create_app

    app = create_app(Recognizer(predictor, source="/home/someone/secret/runs/best.pt"))
    health = TestClient(app).get("/health").json()
    assert health["checkpoint"] == "best.pt" and "secret" not in json.dumps(health)


def test_loopback_server_accepts_only_its_own_host_names(predictor):
    from r2cnn.serve import Limits, Recognizer, create_app
    from r2cnn.serve.server import loopback_hosts

    assert loopback_hosts("0.0.0.0", 8000) is None and loopback_hosts("192.168.1.5", 8000) is None
    assert "localhost" in loopback_hosts("127.0.0.1", 80) and "localhost" not in loopback_hosts("127.0.0.1", 8000)
    app = create_app(Recognizer(predictor, source="tiny.pt"), Limits(), loopback_hosts("127.0.0.1", 8123))
    for host in ("127.0.0.1:8123", "localhost:8123", "[::1]:8123", "LOCALHOST:8123"):
        assert TestClient(app, base_url=f"http://{host}").get("/health").status_code == 200, host
    ok = TestClient(app, base_url="http://127.0.0.1:8123")
    for host in ("evil.example:8123", "127.0.0.1:9999", "127.0.0.1", "localhost", ""):
        r = ok.get("/health", headers={"Host": host})
        assert r.status_code == 400 and "Host header" in r.json()["message"], (host, r.text)
        assert ok.post("/api/predict", json={"drawing": DRAWING}, headers={"Host": host}).status_code == 400


def test_a_client_that_never_finishes_its_request_is_disconnected(predictor, monkeypatch):
    """A slow client (a request head trickled byte by byte, or nothing at all) loses its connection after
    REQUEST_TIMEOUT, while a normal request on another connection is answered."""
    import socket
    import threading
    import time

    from r2cnn.serve import Recognizer, create_app
    from r2cnn.serve import server as srv

    monkeypatch.setattr(srv, "REQUEST_TIMEOUT", 1.0)
    sock = srv.listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = srv.make_server(create_app(Recognizer(predictor, source="tiny.pt")))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        silent = socket.create_connection(("127.0.0.1", port))
        trickle = socket.create_connection(("127.0.0.1", port))
        trickle.settimeout(0.2)
        closed_after = None
        start = time.monotonic()
        for ch in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            try:
                trickle.sendall(bytes([ch]))
                if trickle.recv(1) == b"":
                    closed_after = time.monotonic() - start
                    break
            except socket.timeout:
                continue
            except OSError:
                closed_after = time.monotonic() - start
                break
        assert closed_after is not None and closed_after < 10, closed_after  # the byte trickle did not keep it open
        silent.settimeout(10)
        assert silent.recv(1) == b""  # closed, without a request ever made
        with socket.create_connection(("127.0.0.1", port)) as normal:
            normal.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            normal.settimeout(10)
            assert normal.recv(1000).startswith(b"HTTP/1.1 200")
        silent.close()
        trickle.close()
    finally:
        server.should_exit = True
        thread.join(30)
def _export_stand_in(path: Path, classes) -> Path:
    """Bytes standing in for an ONNX file (the server never reads them) and the export's sidecar."""
    path.write_bytes(b"\0" * 1000)
    path.with_name(path.name + ".json").write_text(json.dumps({"classes": list(classes)}))
    return path


def test_browser_model_is_offered_only_when_the_page_can_run_it(predictor, tmp_path):
    from dataclasses import replace

    from r2cnn.errors import R2CNNError
    from r2cnn.serve import Recognizer, create_app
    from r2cnn.serve.browser import browser_model

    classes, transform = predictor.classes, predictor.transform
    model = _export_stand_in(tmp_path / "model.onnx", classes)
    offered = browser_model(model, classes, transform, max_bytes=1000)
    assert offered.path == model and "the page runs model.onnx" in offered.note
    client = TestClient(create_app(Recognizer(predictor), browser=offered))
    info = client.get("/api/classes").json()
    assert info["browser_model"] == {"url": "browser/model.onnx", "bytes": 1000, "margin": transform.margin,
                                     "runtime": "onnxruntime-web 1.31.1"}
    assert client.get("/" + info["browser_model"]["url"]).content == model.read_bytes()

    too_big = browser_model(model, classes, transform, max_bytes=999)
    assert too_big.path is None and "over the 0 MB the page may load (--browser-max-mb)" in too_big.note
    client = TestClient(create_app(Recognizer(predictor), browser=too_big))
    assert client.get("/api/classes").json()["browser_model"] is None
    assert client.get("/browser/model.onnx").status_code == 404
    for changed, why in ((dict(max_points=448), "simplifies strokes"), (dict(stroke_order="random"), "random order")):
        kept = browser_model(model, classes, replace(transform, **changed), max_bytes=10**9)
        assert kept.path is None and why in kept.note and "stays on the server" in kept.note

    def error(*args) -> str:
        with pytest.raises(R2CNNError) as caught:
            browser_model(*args, transform, 10**9)
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert "no such ONNX file" in error(tmp_path / "none.onnx", classes)
    (tmp_path / "bare.onnx").write_bytes(b"x")
    assert "no sidecar bare.onnx.json or bare.json" in error(tmp_path / "bare.onnx", classes)
    assert "are not the checkpoint's" in error(model, classes[::-1])
    (tmp_path / "model.onnx.json").write_text(json.dumps({"classes": classes, "input": {"coordinates": {
        "margin": 0.08}}}))
    assert "input.coordinates.margin is 0.08, the checkpoint normalises with margin 0.05" in error(model, classes)
    (tmp_path / "model.onnx.json").write_text("{oops")
    assert "model.onnx.json: not readable JSON" in error(model, classes)
