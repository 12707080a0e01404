"""The drawing page in a real browser: headless Chromium (Debian's package) driven through Playwright against the
real server (``r2cnn serve`` on 127.0.0.1, a free port). Skips with the reason when Chromium or Playwright is
missing; ``.ci/run`` installs both."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ENV = dict(os.environ, R2CNN_NO_REEXEC="1", OMP_NUM_THREADS="1")
INK = (17, 17, 17)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1000, "height": 640})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
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

        shot = Path(tempfile.gettempdir()) / "r2cnn-serve-page.png"
        page.screenshot(path=str(shot), full_page=True)
        shutil.copy(shot, tmp_path / shot.name)
        print(f"screenshot: {shot}")

        page.click("#undo")
        _wait_for_strokes(page, 1, 1)
        assert items.count() == 5
        page.click("#clear")
        _wait_for_strokes(page, 0, 0)
        assert items.count() == 0

        sketch = tmp_path / "house.ndjson"
        sketch.write_text('{"word": "house", "drawing": [[[0, 50, 100], [50, 0, 50]], [[10, 10, 90, 90], '
                          '[50, 100, 100, 50]]]}\n')
        page.set_input_files("#file", str(sketch))
        _wait_for_strokes(page, 2, 2)
        assert items.count() == 5 and 'labelled "house"' in page.text_content("#status")

        bad = tmp_path / "broken.svg"
        bad.write_text("<svg")
        page.set_input_files("#file", str(bad))
        page.wait_for_function("document.getElementById('status').classList.contains('error')")
        assert page.text_content("#status").startswith("broken.svg: malformed XML")
        assert errors == []


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
