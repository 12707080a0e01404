"""The drawing page in a real browser: headless Chromium (Debian's package) driven through Playwright against the
real server (``r2cnn serve`` on 127.0.0.1, a free port). Skips with the reason when Chromium or Playwright is
missing; ``.ci/run`` installs both."""

import json
import os
import urllib.request
from pathlib import Path

import numpy as np

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ENV = dict(os.environ, R2CNN_NO_REEXEC="1", OMP_NUM_THREADS="1")
INK = (17, 17, 17)
# Where the screenshots go (docs/figures is made with R2CNN_SCREENSHOTS=docs/figures); default: the test's tmp dir.
SCREENSHOTS = os.environ.get("R2CNN_SCREENSHOTS")
PHONE = dict(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=1)


def _screenshot(page, tmp_path, name, full_page=True):
    shot = Path(SCREENSHOTS or tmp_path) / name
    page.screenshot(path=str(shot), full_page=full_page)
    print(f"screenshot: {shot}")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def _open(browser, url, **context):
    """A new page on ``url``, once it knows the model; ``errors`` collects script errors, answers >= 400 and any
    request that leaves the server (the page must work offline)."""
    page = browser.new_context(**{"viewport": {"width": 1000, "height": 640}, **context}).new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("request", lambda r: None if r.url.startswith(url) else errors.append(f"outside: {r.url}"))
    page.goto(url)
    page.wait_for_function("document.getElementById('model').textContent.startsWith('model ')")
    return page, errors


def _draw(page, points):
    """Drag the mouse through ``points`` given as fractions of the canvas; returns them in canvas pixels."""
    box = page.locator("#canvas").bounding_box()
    width = page.evaluate("document.getElementById('canvas').width")
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    return [(fx * width, fy * width) for fx, fy in points]


def _wait_for_strokes(page, n, coloured):
    page.wait_for_function(f"(c => c.dataset.predictedStrokes === '{n}' && c.dataset.colouredStrokes === "
                           f"'{coloured}')(document.getElementById('canvas'))", timeout=60_000)


def _assert_no_answer(page):
    """No answer shown, and nothing left of the last one: no top-5, no attention colours or range line, no
    "answered by ..." line."""
    assert page.locator("#predictions li").count() == 0
    assert page.get_attribute("#canvas", "data-predicted-strokes") == "0"
    assert page.get_attribute("#canvas", "data-engine") is None
    assert page.evaluate("window.sketchPage.attention()") is None
    assert page.text_content("#range") == ""
    assert "answered by" not in page.text_content("#engine")


def _pixels_along(page, segment):
    """RGB of canvas pixels sampled along the segment's middle half."""
    (x0, y0), (x1, y1) = segment
    return page.evaluate("""([x0, y0, x1, y1]) => {
        const ctx = document.getElementById('canvas').getContext('2d');
        const out = [];
        for (let t = 0.25; t <= 0.75; t += 0.05) {
            const d = ctx.getImageData(Math.round(x0 + t * (x1 - x0)), Math.round(y0 + t * (y1 - y0)), 1, 1).data;
            out.push([d[0], d[1], d[2]]);
        }
        return out;
    }""", [x0, y0, x1, y1])


def test_drawing_gives_top5_and_attention_colours(browser, tiny_r2cnn_checkpoint, tmp_path):
    from r2cnn.serve.server import serve_subprocess

    with serve_subprocess(tiny_r2cnn_checkpoint, env=ENV) as (url, _):
        assert url.startswith("http://127.0.0.1:")
        page, errors = _open(browser, url)
        roof = _draw(page, [(0.2, 0.5), (0.5, 0.2), (0.8, 0.5)])
        _wait_for_strokes(page, 1, 1)
        walls = _draw(page, [(0.25, 0.5), (0.25, 0.85), (0.75, 0.85), (0.75, 0.5)])
        _wait_for_strokes(page, 2, 2)

        items = page.locator("#predictions li")
        assert items.count() == 5
        classes = page.evaluate("fetch('api/classes').then(r => r.json()).then(b => b.classes)")
        names = items.locator(".name").all_text_contents()
        probs = [float(p) for p in [items.nth(i).locator(".probability").get_attribute("data-probability")
                                    for i in range(5)]]
        assert set(names) <= set(classes) and len(set(names)) == 5
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(text.endswith("%") for text in items.locator(".probability").all_text_contents())

        # the strokes are redrawn in attention colours: along them, no pixel is left in ink or white
        for segment in (roof[0:2], roof[1:3], walls[0:2], walls[1:3]):
            for rgb in _pixels_along(page, segment):
                assert max(abs(a - b) for a, b in zip(rgb, INK)) > 40 and rgb != [255, 255, 255], rgb
                assert max(rgb) - min(rgb) > 60, rgb  # a saturated colour of the map, not a grey

        _screenshot(page, tmp_path, "serve-page.png")

        page.click("#undo")
        _wait_for_strokes(page, 1, 1)
        assert items.count() == 5
        assert page.text_content("#engine") == "answered by the server"
        page.click("#clear")
        _wait_for_strokes(page, 0, 0)
        assert items.count() == 0
        _assert_no_answer(page)

        sketch = tmp_path / "house.ndjson"
        sketch.write_text('{"word": "house", "drawing": [[[0, 50, 100], [50, 0, 50]], [[10, 10, 90, 90], '
                          '[50, 100, 100, 50]]]}\n')
        page.set_input_files("#file", str(sketch))
        _wait_for_strokes(page, 2, 2)
        assert items.count() == 5 and 'labelled "house"' in page.text_content("#status")

        # a file that cannot be read after one that could: its error alone, not beside the house's top-5
        bad = tmp_path / "broken.svg"
        bad.write_text("<svg")
        page.set_input_files("#file", str(bad))
        page.wait_for_function("document.getElementById('status').classList.contains('error')")
        assert page.text_content("#status").startswith("broken.svg: malformed XML")
        _assert_no_answer(page)
        assert page.evaluate("window.sketchPage.drawing()") == []
        assert len(errors) == 1 and errors[0].startswith("422 ") and "/api/parse?" in errors[0]  # that file's


def test_cnn_only_page_says_there_is_no_attention(browser, tiny_cnn_checkpoint):
    from r2cnn.serve.server import serve_subprocess

    with serve_subprocess(tiny_cnn_checkpoint, env=ENV) as (url, _):
        page, errors = _open(browser, url)
        assert "no per-point attention" in page.text_content("#status")
        stroke = _draw(page, [(0.2, 0.2), (0.8, 0.7)])
        _wait_for_strokes(page, 1, 0)
        assert page.locator("#predictions li").count() == 5
        assert "no per-point attention" in page.text_content("#status")
        assert all(max(abs(a - b) for a, b in zip(rgb, INK)) < 40 for rgb in _pixels_along(page, stroke))
        assert errors == []


def _sketch_of(drawing):
    """The server's reading of a drawing [[xs, ys], ...] (r2cnn.serve.recognizer.Recognizer)."""
    from r2cnn.data.formats.common import points_from_strokes
    from r2cnn.sketch import Sketch

    xy = np.concatenate([np.column_stack(s) for s in drawing])
    return Sketch(points_from_strokes(xy, np.array([len(xs) for xs, _ in drawing]), "page"))


def test_class_list_is_visible_undo_key_and_favicon(browser, tiny_r2cnn_checkpoint, tmp_path):
    from r2cnn.serve.server import serve_subprocess

    with serve_subprocess(tiny_r2cnn_checkpoint, env=ENV) as (url, _):
        page, errors = _open(browser, url, **PHONE)
        info = page.evaluate("fetch('api/classes').then(r => r.json())")
        # what can I draw? said on the page, without opening anything
        assert page.locator("#can-draw").is_visible()
        assert page.text_content("#can-draw") == "You can draw: " + ", ".join(info["classes"])
        assert page.text_content("#model") == f"model {info['model']}, {len(info['classes'])} classes"
        # a phone gets the page at its own width, nothing wider than the screen
        assert page.evaluate("[window.innerWidth, document.documentElement.scrollWidth]") == [390, 390]
        _draw(page, [(0.2, 0.3), (0.8, 0.3)])
        _wait_for_strokes(page, 1, 1)
        _draw(page, [(0.5, 0.1), (0.5, 0.9)])
        _wait_for_strokes(page, 2, 2)
        _screenshot(page, tmp_path, "serve-page-phone.png")
        page.keyboard.press("Control+z")
        _wait_for_strokes(page, 1, 1)
        page.keyboard.press("Control+z")
        _wait_for_strokes(page, 0, 0)
        icon = page.evaluate("fetch('favicon.ico').then(r => [r.status, r.headers.get('content-type')])")
        assert icon[0] == 200 and icon[1].startswith("image/svg+xml")
        assert errors == []


def test_stretch_maps_this_sketchs_attention_range_to_the_colour_bar(browser, tiny_r2cnn_checkpoint, tmp_path):
    from r2cnn.serve.server import serve_subprocess

    with serve_subprocess(tiny_r2cnn_checkpoint, env=ENV) as (url, _):
        page, errors = _open(browser, url)
        stroke = _draw(page, [(0.1, 0.2), (0.4, 0.8), (0.6, 0.2), (0.9, 0.8)])
        _wait_for_strokes(page, 1, 1)
        drawing = page.evaluate("window.sketchPage.drawing()")
        answer = page.evaluate("d => fetch('api/predict', {method: 'POST', headers: {'Content-Type': "
                               "'application/json'}, body: JSON.stringify({drawing: d})}).then(r => r.json())",
                               drawing)
        low, high = min(answer["attention"][0]), max(answer["attention"][0])
        assert high - low > 1e-6  # the test needs a sketch whose attention varies
        # stretched by default: this sketch's lowest attention is the colour bar's blue end, its highest the red
        assert page.is_checked("#stretch")
        assert [float(v) for v in page.get_attribute("#canvas", "data-colour-range").split(",")] == \
            pytest.approx([low, high], abs=1e-12)
        digits = 3 if high - low < 0.1 else 2
        assert page.text_content("#scale-low") == f"{low:.{digits}f}"
        assert page.text_content("#scale-high") == f"{high:.{digits}f}"
        assert page.text_content("#range") == f"attention of this sketch: {low:.3f} to {high:.3f}"
        stretched = [p for a, b in zip(stroke, stroke[1:]) for p in _pixels_along(page, (a, b))]
        _screenshot(page, tmp_path, "serve-page-stretch.png")

        page.uncheck("#stretch")  # the fixed scale, one click away
        assert page.get_attribute("#canvas", "data-colour-range") == "0,1"
        assert [page.text_content("#scale-low"), page.text_content("#scale-high")] == ["0.00", "1.00"]
        assert page.text_content("#range") == f"attention of this sketch: {low:.3f} to {high:.3f}"
        fixed = [p for a, b in zip(stroke, stroke[1:]) for p in _pixels_along(page, (a, b))]
        assert stretched != fixed
        # stretched, the segments' colours spread over more of the map: blue and red ends are further apart
        spread = lambda pixels: max(r - b for r, _, b in pixels) - min(r - b for r, _, b in pixels)  # noqa: E731
        assert spread(stretched) > spread(fixed)
        page.check("#stretch")
        assert page.get_attribute("#canvas", "data-colour-range") != "0,1"
        assert errors == []


def test_page_says_when_the_server_stops(browser, tiny_r2cnn_checkpoint):
    """The server stops: the next stroke's status says so, and nothing of the last answer stays (no top-5, no
    "answered by the server"); the drawing stays on the board."""
    from r2cnn.serve.server import serve_subprocess

    with serve_subprocess(tiny_r2cnn_checkpoint, env=ENV) as (url, proc):
        page, errors = _open(browser, url)
        assert page.evaluate("document.body.dataset.offline") in ("off", None)  # no --onnx: no offline cache
        _draw(page, [(0.2, 0.5), (0.5, 0.2), (0.8, 0.5)])
        _wait_for_strokes(page, 1, 1)
        assert page.text_content("#engine") == "answered by the server"
        proc.terminate()
        proc.wait(timeout=30)
        _draw(page, [(0.25, 0.5), (0.25, 0.85), (0.75, 0.85)])
        page.wait_for_function("document.getElementById('status').classList.contains('error')", timeout=60_000)
        assert page.text_content("#status").startswith("The server is not answering (stopped?)")
        _assert_no_answer(page)
        assert len(page.evaluate("window.sketchPage.drawing()")) == 2
        page.click("#clear")
        page.wait_for_function("!document.getElementById('status').classList.contains('error')")
        assert page.text_content("#status") == "Draw with mouse, pen or finger."
        _assert_no_answer(page)
        assert errors == []


def _stroke(j):
    """Stroke j of the test files' sketches: [xs, ys]."""
    return [[10 * j, 10 * j + 50, 10 * j + 20], [0, 30 + 7 * j, 60 - j]]


def test_file_picker_reads_every_form_the_python_api_takes(browser, tiny_r2cnn_checkpoint, tmp_path):
    """An 8-sketch ndjson file: the picker says "sketch k of n" and shows the one chosen (sketch k has k strokes),
    whatever its form: a Quick, Draw! record, simplified or raw (ts ignored), a bare drawing [[xs, ys], ...] or
    [[xs, ys, ts], ...], the points rows of the HTTP body; blank lines are passed over. A bad sketch clears the
    answer and keeps the picker; a raw drawing in a .json file loads alone, without a picker."""
    from r2cnn.data.transforms import normalize
    from r2cnn.serve.server import serve_subprocess

    def raw(drawing):
        return [[xs, ys, [100 * i for i in range(len(xs))]] for xs, ys in drawing]

    def rows(drawing):
        return [[x, y, int(i == len(xs) - 1)] for xs, ys in drawing for i, (x, y) in enumerate(zip(xs, ys))]

    drawings = [[_stroke(j) for j in range(k)] for k in range(1, 9)]
    forms = [lambda d: {"word": "cat", "drawing": d}, lambda d: {"word": "dog", "drawing": raw(d)}, lambda d: d,
             lambda d: raw(d), lambda d: {"points": rows(d)}]
    lines = [json.dumps(forms[k % len(forms)](d)) for k, d in enumerate(drawings)]
    lines[5] = '{"drawing": [[[1, 2], [3]]]}'  # sketch 6: x/y length mismatch
    path = tmp_path / "few.ndjson"
    path.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")  # line 4 is blank
    with serve_subprocess(tiny_r2cnn_checkpoint, env=ENV) as (url, _):
        page, errors = _open(browser, url)
        margin = 0.05

        def shown_matches(k):
            got = np.array(page.evaluate("m => Array.from(normalizeStrokes(window.sketchPage.drawing(), m))",
                                         margin)).reshape(-1, 3)
            np.testing.assert_allclose(got, normalize(_sketch_of(drawings[k - 1]), margin).points, atol=2e-3)

        page.set_input_files("#file", str(path))
        _wait_for_strokes(page, 1, 1)
        assert page.locator("#picker").is_visible()
        assert page.text_content("#sketch-of") == "sketch 1 of 8 in few.ndjson"
        assert page.text_content("#status").endswith('Loaded sketch 1 of 8 of few.ndjson (labelled "cat").')
        assert page.is_disabled("#previous-sketch")
        shown_matches(1)
        for k in (2, 3, 4, 5):
            page.click("#next-sketch")
            _wait_for_strokes(page, k, k)
            assert page.text_content("#sketch-of") == f"sketch {k} of 8 in few.ndjson"
            shown_matches(k)
        page.fill("#sketch-number", "8")
        page.press("#sketch-number", "Enter")
        _wait_for_strokes(page, 8, 8)
        assert page.text_content("#sketch-of") == "sketch 8 of 8 in few.ndjson" and page.is_disabled("#next-sketch")
        shown_matches(8)

        page.fill("#sketch-number", "6")
        page.press("#sketch-number", "Enter")
        page.wait_for_function("document.getElementById('status').classList.contains('error')")
        assert page.text_content("#status") == "few.ndjson:7: field 'drawing[0]': x/y length mismatch (2 x, 1 y)"
        _assert_no_answer(page)
        assert page.locator("#picker").is_visible()
        assert page.text_content("#sketch-of") == "sketch 6 of 8 in few.ndjson"
        page.click("#next-sketch")
        _wait_for_strokes(page, 7, 7)

        single = tmp_path / "raw.json"
        single.write_text(json.dumps(raw(drawings[2]), indent=1))  # pretty printed: one JSON value, one sketch
        page.set_input_files("#file", str(single))
        _wait_for_strokes(page, 3, 3)
        assert not page.locator("#picker").is_visible()
        assert page.text_content("#status").endswith("Loaded raw.json.")
        shown_matches(3)
        page.click("#clear")
        _wait_for_strokes(page, 0, 0)
        assert not page.locator("#picker").is_visible()
        assert errors == []


BAD_RECORDS = [
    '{"drawing": [[[1, 2], [3]]]}', '{"drawing": [[[1, "2"], [3, 4]]]}', '{"drawing": []}', '{"word": "cat"}',
    '{"drawing": [[[1, 2], [3, 4]], [[1], [2], [3]]]}', '{"drawing": [[[1], [2], [3, 4]]]}',
    '{"drawing": [[[], []]]}', '{"drawing": [[[1, true], [3, 4]]]}', '{"drawing": [[[1e39], [2]]]}',
    '{"drawing": [[1, 2]]}', '{"word": 5, "drawing": [[[1], [2]]]}', '{"drawing": "x"}', '42',
    '{"drawing": [[[1], [2]]], "recognized": "yes"}', '{"drawing": [[[1, 2], [3, 4]], [[1, 2, 3]]]}',
    '[[[1, 2], [3]]]', '[[[1, 2], [3, 4], [5]]]', '[[[1, 2], [3, 4]], [[1], [null]]]', '{"drawing": [[[1, 2], [3',
]


def test_file_messages_are_the_python_ones(browser, tiny_r2cnn_checkpoint, tmp_path):
    """Each bad record of a file, read by the page, gets the message Python gives for it: the ndjson reader's for
    a record, the input contract's (r2cnn.strokes) for a bare drawing, naming the file, the line and the field."""
    from r2cnn.data.formats.ndjson import parse_ndjson_line
    from r2cnn.errors import SketchFormatError
    from r2cnn.serve.server import serve_subprocess
    from r2cnn.strokes import drawing_points

    name = "bad.ndjson"
    expected = []
    for lineno, line in enumerate(BAD_RECORDS, 1):
        with pytest.raises(SketchFormatError) as caught:
            if line.startswith("["):
                drawing_points(json.loads(line), name, line=lineno)
            else:
                parse_ndjson_line(line, name, lineno)
        expected.append(str(caught.value))
    path = tmp_path / name
    path.write_text("\n".join(BAD_RECORDS) + "\n")
    with serve_subprocess(tiny_r2cnn_checkpoint, env=ENV) as (url, _):
        page, errors = _open(browser, url)
        page.set_input_files("#file", str(path))
        for k, message in enumerate(expected, 1):
            if k > 1:
                page.fill("#sketch-number", str(k))
                page.press("#sketch-number", "Enter")
            page.wait_for_function(f"document.getElementById('sketch-of').textContent.startsWith('sketch {k} of')")
            page.wait_for_function("document.getElementById('status').classList.contains('error')")
            shown = page.text_content("#status")
            if "malformed JSON" in message:  # the JSON parser's own words differ
                assert shown.split(" (")[0] == message.split(" (")[0], k
            else:
                assert shown == message, k
        assert errors == []


def test_page_reloads_and_recognises_with_the_server_stopped(browser, tiny_r2cnn_checkpoint, tmp_path):
    """--onnx: a service worker keeps the page, onnxruntime-web and the model in the browser's cache. The server
    killed, a reload still shows the page, says where it came from, and recognises a drawing in the browser (the
    same top-5 as onnxruntime in Python)."""
    from r2cnn.serve.server import serve_subprocess

    model, predictor, margin = _stand_in_beside(tiny_r2cnn_checkpoint, tmp_path)
    with serve_subprocess(None, "--onnx", str(model), env=ENV) as (url, proc):
        page, errors = _open(browser, url)
        page.wait_for_function("document.body.dataset.offline === 'ready'", timeout=120_000)
        proc.kill()
        proc.wait(timeout=30)
        page.reload()
        page.wait_for_function("document.getElementById('model').textContent.startsWith('model ')")
        assert page.evaluate("document.body.dataset.offline") == "cache"
        assert page.text_content("#status").startswith("The server is not answering: this page, its runtime and "
                                                       "the model come from the browser's cache")
        assert page.text_content("#can-draw") == "You can draw: " + ", ".join(predictor.classes)
        page.wait_for_function("document.body.dataset.browserEngine === 'ready'", timeout=120_000)
        _draw(page, [(0.2, 0.5), (0.5, 0.2), (0.8, 0.5)])
        _wait_for_strokes(page, 1, 1)
        assert page.get_attribute("#canvas", "data-engine") == "browser"
        assert page.text_content("#engine") == "answered by the browser (onnxruntime-web 1.31.1, WASM)"
        expected, _ = _onnx_answer(model, page.evaluate("window.sketchPage.drawing()"), margin, predictor.classes)
        shown = _shown(page)
        assert [c for c, _ in shown] == [c for c, _ in expected]
        np.testing.assert_allclose([p for _, p in shown], [p for _, p in expected], atol=1e-6)
        assert errors == []


def test_service_worker_caches_every_file_of_the_page():
    """sw.js caches every script, style sheet and icon the page names and every file of the runtime, and each
    exists: a file added to the page but not to the worker would be missing after an offline reload, and one the
    worker names but the package lacks would fail its install (no browser needed)."""
    import re

    from r2cnn.serve.app import STATIC

    worker = (STATIC / "sw.js").read_text()
    page = re.findall(r'"([^"]+)"', re.search(r"const PAGE = \[(.*?)\];", worker, re.S).group(1))
    ort = re.search(r'const ORT = "([^"]+)";', worker).group(1)
    runtime = re.findall(r"\$\{ORT\}([^`]+)`", re.search(r"const RUNTIME_FILES = \[(.*?)\];", worker, re.S).group(1))
    named = re.findall(r'(?:src|href)="((?:static/|favicon)[^"]+)"', (STATIC / "index.html").read_text())
    assert "./" in page and set(named) <= set(page), set(named) - set(page)
    assert all((STATIC.parent / f).is_file() for f in page if f.startswith("static/"))
    vendored = {f.name for f in (STATIC.parent / ort).iterdir() if f.suffix in (".js", ".mjs", ".wasm")}
    assert set(runtime) == vendored
    assert f'const ORT_DIR = "{ort}";' in (STATIC / "app.js").read_text()


def test_docs_render_offline(browser, tiny_r2cnn_checkpoint):
    """/docs shows the API with every request answered by the server itself (Swagger UI from the package)."""
    from r2cnn.serve.server import serve_subprocess

    with serve_subprocess(tiny_r2cnn_checkpoint, env=ENV) as (url, _):
        page = browser.new_page()
        outside, failed = [], []
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url)
                   else (outside.append(route.request.url), route.abort()))
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(url + "docs")
        page.wait_for_selector(".opblock-summary-path[data-path='/api/predict']", timeout=30_000)
        assert "Sketch-R2CNN" in page.text_content(".swagger-ui .info")
        assert outside == [] and failed == []


def test_report_fits_a_phone(browser, tiny_runs, tmp_path):
    """The HTML report on a phone: laid out at the phone's width (viewport tag), and its Run table has no empty
    header row."""
    from r2cnn.viz.report import build_report

    path = build_report(tiny_runs.cnn, data=str(tiny_runs.store), out=tmp_path / "report.html",
                        deletion_ks=(), log=lambda *_: None)
    page = browser.new_context(**PHONE).new_page()
    page.goto(path.as_uri())
    assert page.evaluate("window.innerWidth") == 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    run_table = page.locator("h2:text-is('Run') + table")
    assert run_table.locator("th").all_text_contents()[:2] == ["checkpoint", "model"]
    assert all(text.strip() for text in run_table.locator("th").all_text_contents())
    _screenshot(page, tmp_path, "report-phone.png", full_page=False)  # the top: the page is long


# ---------------------------------------------------------------------------------------------------------------
# the in-browser engine (r2cnn serve --onnx)

def _stand_in_beside(checkpoint, tmp_path: Path):
    """``(model, predictor, margin)``: a stand-in ONNX model (:func:`_stand_in_onnx`) at ``tmp_path/stand-in.onnx``
    with the classes and normalisation margin of ``checkpoint``'s predictor."""
    from r2cnn.engine.predict import Predictor

    predictor = Predictor(str(checkpoint))
    model = tmp_path / "stand-in.onnx"
    _stand_in_onnx(model, predictor.classes, predictor.transform.margin)
    return model, predictor, predictor.transform.margin


def _stand_in_onnx(path: Path, classes: list[str], margin: float) -> None:
    """A small ONNX model with the export's interface (``points`` (N, 3) -> ``logits`` (1, K), ``attention``
    (N, 2)) whose answers depend on every input value, pen_end included: logits = sum over points of
    sin(3.7 * points) @ W, attention = sigmoid(points @ A). It checks the page's side of the contract (input
    layout, normalisation, softmax, attention per point) without the real export. Its metadata, in the file and
    in the sidecar, is what ``r2cnn serve --onnx`` checks and the page reads."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    k = len(classes)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["points", "freq"], ["scaled"]), helper.make_node("Sin", ["scaled"], ["wave"]),
         helper.make_node("MatMul", ["wave", "W"], ["per_point"]),
         helper.make_node("ReduceSum", ["per_point", "axis0"], ["logits"], keepdims=1),
         helper.make_node("MatMul", ["points", "A"], ["pre"]), helper.make_node("Sigmoid", ["pre"], ["attention"])],
        "stand-in",
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, k]),
         helper.make_tensor_value_info("attention", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.array(3.7, np.float32), "freq"),
         numpy_helper.from_array(rng.normal(0, 0.3, (3, k)).astype(np.float32), "W"),
         numpy_helper.from_array(np.array([0], np.int64), "axis0"),
         numpy_helper.from_array(rng.normal(0, 2, (3, 2)).astype(np.float32), "A")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    meta = {"format": "onnx", "classes": classes, "model": "stand-in", "has_attention": True,
            "attention_channels": 2, "input": {"coordinates": {"margin": margin}, "preprocess": {"margin": margin}}}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    path.with_name(path.name + ".json").write_text(json.dumps(meta))


def _onnx_answer(path: Path, drawing, margin: float, classes, top_k=5):
    """onnxruntime (Python) on the server's normalisation of ``drawing``: top-k and per-point attention."""
    import onnxruntime

    from r2cnn.data.transforms import normalize

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    points = normalize(_sketch_of(drawing), margin).points
    logits, attention = session.run(["logits", "attention"], {"points": points})
    probs = np.exp(logits[0].astype(np.float64) - logits[0].max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")[:top_k]
    return [(classes[i], float(probs[i])) for i in order], attention.mean(axis=1)


def _shown(page):
    items = page.locator("#predictions li")
    return [(items.nth(i).locator(".name").text_content(),
             float(items.nth(i).locator(".probability").get_attribute("data-probability")))
            for i in range(items.count())]


def test_page_normalises_exactly_as_the_server(browser, tiny_r2cnn_checkpoint):
    """normalize.js against r2cnn.data.transforms.normalize on the same strokes: equal bit for bit (float32),
    pen_end laid out the same way (1 on each stroke's last point)."""
    from r2cnn.data.transforms import normalize
    from r2cnn.serve.server import serve_subprocess

    drawings = [
        [[[10, 60, 110, 160], [10, 80, 10, 90]], [[30, 90, 140], [50, 52, 50]]],
        [[[5.5], [7.25]]],  # one dot: all points coincide
        [[[0.1, 479.9, 240.3], [0.7, 0.7, 0.7]]],  # flat: the width sets the scale
        [[[-1e6, 3e5], [2.5, -7.1]], [[123.4], [-0.3]], [[1, 1, 1], [4, 5, 6]]],
        [[list(np.round(np.linspace(13.3, 402.9, 57), 1)), list(np.round(200 + 150 * np.sin(np.arange(57)), 1))]],
    ]
    with serve_subprocess(tiny_r2cnn_checkpoint, env=ENV) as (url, _):
        page, errors = _open(browser, url)
        for margin in (0.05, 0.0, 0.1):
            for drawing in drawings:
                got = np.array(page.evaluate("([d, m]) => Array.from(normalizeStrokes(d, m))", [drawing, margin]),
                               np.float32).reshape(-1, 3)
                expected = normalize(_sketch_of(drawing), margin).points
                assert expected.dtype == np.float32
                np.testing.assert_array_equal(got, expected)
        assert errors == []


def test_browser_engine_answers_with_the_server_blocked(browser, tiny_r2cnn_checkpoint, tmp_path):
    """A stand-in ONNX model served with --onnx (alone: it is not the checkpoint's model): the page loads it into
    onnxruntime-web, and with /api/predict aborted it answers the same top-5 and attention as onnxruntime in
    Python on the server's normalisation."""
    from r2cnn.serve.server import serve_subprocess

    model, predictor, margin = _stand_in_beside(tiny_r2cnn_checkpoint, tmp_path)
    with serve_subprocess(None, "--onnx", str(model), env=ENV) as (url, _):
        page, errors = _open(browser, url)
        page.wait_for_function("document.body.dataset.browserEngine === 'ready'", timeout=60_000)
        assert "the browser recognises by itself (onnxruntime-web 1.31.1" in page.text_content("#engine")
        blocked = []
        page.route("**/api/predict", lambda route: (blocked.append(route.request.url), route.abort()))
        _draw(page, [(0.2, 0.5), (0.5, 0.2), (0.8, 0.5)])
        _wait_for_strokes(page, 1, 1)
        _draw(page, [(0.25, 0.5), (0.25, 0.85), (0.75, 0.85), (0.75, 0.5)])
        _wait_for_strokes(page, 2, 2)
        assert page.get_attribute("#canvas", "data-engine") == "browser" and blocked == []
        assert page.text_content("#engine") == "answered by the browser (onnxruntime-web 1.31.1, WASM)"
        drawing = page.evaluate("window.sketchPage.drawing()")
        expected, attention = _onnx_answer(model, drawing, margin, predictor.classes)
        shown = _shown(page)
        assert [c for c, _ in shown] == [c for c, _ in expected]
        np.testing.assert_allclose([p for _, p in shown], [p for _, p in expected], atol=1e-6)
        np.testing.assert_allclose(sum(page.evaluate("window.sketchPage.attention()"), []), attention, atol=1e-6)
        # the attention colours are the model's: the page's range line shows its extremes
        assert page.text_content("#range") == \
            f"attention of this sketch: {attention.min():.3f} to {attention.max():.3f}"
        assert errors == []


def test_browser_engine_stays_off_for_a_model_over_the_size_limit(browser, tiny_r2cnn_checkpoint, tmp_path):
    """Over --browser-max-mb the page asks the server, which answers with that ONNX model (served alone)."""
    from r2cnn.serve.server import serve_subprocess

    model, predictor, _ = _stand_in_beside(tiny_r2cnn_checkpoint, tmp_path)
    with serve_subprocess(None, "--onnx", str(model), "--browser-max-mb", "0.0001", env=ENV) as (url, _):
        page, errors = _open(browser, url)
        assert page.evaluate("document.body.dataset.browserEngine") == "off"
        assert "over the 0 MB the page may load (--browser-max-mb)" in page.text_content("#engine")
        _draw(page, [(0.2, 0.2), (0.8, 0.7)])
        _wait_for_strokes(page, 1, 1)
        assert page.get_attribute("#canvas", "data-engine") == "server"
        assert page.text_content("#engine") == "answered by the server"
        expected, _ = _onnx_answer(model, page.evaluate("window.sketchPage.drawing()"), predictor.transform.margin,
                                   predictor.classes)
        shown = _shown(page)
        assert [c for c, _ in shown] == [c for c, _ in expected]
        np.testing.assert_allclose([p for _, p in shown], [p for _, p in expected], atol=1e-6)
        assert errors == []


def _export_onnx(checkpoint: Path, out: Path) -> Path:
    """``r2cnn export --format onnx`` of the checkpoint; skips while this checkout has no export command."""
    from r2cnn.cli import COMMANDS, main

    if "export" not in COMMANDS:
        pytest.skip("no `r2cnn export` in this checkout: the page's offline test needs an "
                    "exported ONNX model")
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("kind", ["r2cnn", "cnn"])
def test_page_recognises_offline_with_the_exported_model(browser, kind, request, tmp_path):
    """With the exported model the page answers the same top-5 as the server (probabilities
    and attention within 1e-4) with /api/predict aborted, and goes on answering once the server has stopped;
    a CNN-only model the same, in ink colour."""
    from r2cnn.serve.server import serve_subprocess

    checkpoint = request.getfixturevalue(f"tiny_{kind}_checkpoint")
    coloured = int(kind == "r2cnn")  # 1 per stroke with attention, else 0
    model = _export_onnx(checkpoint, tmp_path / "model.onnx")
    with serve_subprocess(checkpoint, "--onnx", str(model), env=ENV) as (url, proc):
        page, errors = _open(browser, url)
        page.wait_for_function("document.body.dataset.browserEngine === 'ready'", timeout=120_000)
        page.route("**/api/predict", lambda route: route.abort())
        _draw(page, [(0.2, 0.5), (0.5, 0.2), (0.8, 0.5)])
        _wait_for_strokes(page, 1, coloured)
        _draw(page, [(0.25, 0.5), (0.25, 0.85), (0.75, 0.85), (0.75, 0.5)])
        _wait_for_strokes(page, 2, 2 * coloured)
        assert page.get_attribute("#canvas", "data-engine") == "browser"
        drawing = page.evaluate("window.sketchPage.drawing()")
        request = urllib.request.Request(url + "api/predict", json.dumps({"drawing": drawing}).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:  # the server, asked directly
            server = json.load(response)
        shown = _shown(page)
        assert [c for c, _ in shown] == [t["class"] for t in server["top"]]
        np.testing.assert_allclose([p for _, p in shown], [t["probability"] for t in server["top"]], atol=1e-4)
        if server["attention"] is None:
            assert page.evaluate("window.sketchPage.attention()") is None
        else:
            np.testing.assert_allclose(sum(page.evaluate("window.sketchPage.attention()"), []),
                                       sum(server["attention"], []), atol=1e-4)

        proc.terminate()  # the server stops; the page goes on
        proc.wait(timeout=30)
        page.unroute("**/api/predict")
        _draw(page, [(0.4, 0.6), (0.6, 0.6)])
        _wait_for_strokes(page, 3, 3 * coloured)
        assert page.get_attribute("#canvas", "data-engine") == "browser"
        assert page.locator("#predictions li").count() == 5
        if coloured:
            _screenshot(page, tmp_path, "serve-page-offline.png")
        assert errors == []
