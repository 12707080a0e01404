"""One input contract for every predict entry point (r2cnn.strokes): the same table of inputs, good and bad, given
to Predictor.predict, LoadedModel.predict (an ONNX export) and POST /api/predict gets the same outcome and, for a
bad input, the same one-line message."""

import json

import numpy as np
import pytest

import r2cnn
from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch

pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

XS, YS = [10, 60, 110, 160], [10, 80, 10, 90]
DRAWING = [[XS, YS], [[30, 90, 140], [50, 52, 50]]]
RAW = [[XS, YS, [0, 16, 33, 49]], [[30, 90, 140], [50, 52, 50], [400, 420, 437]]]
POINTS = np.array([[x, y, 0] for x, y in zip(XS, YS)] + [[30, 50, 0], [90, 52, 0], [140, 50, 1]], np.float32)
POINTS[3, 2] = 1
NAN, INF = float("nan"), float("inf")

# name -> (Python input, the message every entry point gives, or None: classified like DRAWING)
CASES = {
    "simplified strokes": (DRAWING, None),
    "raw strokes [xs, ys, ts]": (RAW, None),
    "(N, 3) array": (POINTS, None),
    "integer (N, 3) array": (POINTS.astype(np.int64), None),
    "(N, 2) array": (POINTS[:, :2], "sketch: field 'points': wrong shape ((7, 2), expected (N, 3): x, y, pen_end)"),
    "string number": ([[[1, "2"], [3, 4]]], "sketch: field 'drawing[0][0][1]': not a number (str)"),
    "boolean": ([[[True], [2]]], "sketch: field 'drawing[0][0][0]': not a number (bool)"),
    "null": ([[[None], [2]]], "sketch: field 'drawing[0][0][0]': not a number (NoneType)"),
    "nested number": ([[[[1]], [2]]], "sketch: field 'drawing[0][0][0]': not a number (list)"),
    "NaN": ([[[1, NAN], [2, 3]]], "sketch: field 'drawing[0][0][1]': non-finite coordinate (nan)"),
    "infinity": ([[[1, 2], [2, -INF]]], "sketch: field 'drawing[0][1][1]': non-finite coordinate (-inf)"),
    "beyond float32": ([[[1e300], [2]]], "sketch: field 'drawing[0][0][0]': non-finite coordinate (1e+300)"),
    "NaN in points": (np.array([[0, 0, 0], [NAN, 1, 1]]), "sketch: field 'points': non-finite coordinate (point 1)"),
    "pen_end 0.5": (np.array([[0, 0, 0.5]]), "sketch: field 'points': pen_end not 0 or 1 (point 0)"),
    "string in points": (np.array([["1", "2", "1"]]), "sketch: field 'points[0][0]': not a number (str)"),
    "empty drawing": ([], "sketch: field 'drawing': empty drawing"),
    "empty points": (np.zeros((0, 3)), "sketch: field 'points': empty drawing"),
    "empty stroke": ([[[], []]], "sketch: field 'drawing[0]': empty stroke"),
    "stroke is a number": ([5], "sketch: field 'drawing[0]': stroke is not [xs, ys] or [xs, ys, ts]"),
    "stroke of four lists": ([[[1], [2], [3], [4]]], "sketch: field 'drawing[0]': stroke is not [xs, ys] or [xs, ys, ts]"),
    "drawing is a number": (5, "sketch: field 'drawing': drawing is not a list of strokes"),
    "x/y lengths differ": ([[[1, 2, 3], [2, 3]]], "sketch: field 'drawing[0]': x/y length mismatch (3 x, 2 y)"),
    "x/t lengths differ": ([[[1, 2], [2, 3], [0]]], "sketch: field 'drawing[0]': x/t length mismatch (2 x, 1 t)"),
    "raw and simplified mixed": ([[[1], [2], [0]], [[1], [2]]],
                                 "sketch: field 'drawing[1]': raw and simplified strokes mixed"),
    "65,536 points": ([[[0] * 65536, [0] * 65536]], "sketch: field 'drawing': too many points (65536 > 65535)"),
    "65,536 strokes": ([[[0], [0]]] * 65536, "sketch: field 'drawing': too many strokes (65536 > 65535)"),
}
# name -> (top_k, message); the sketch is DRAWING
TOP_K = {
    "string": ("5", "top_k: expected a whole number >= 1, got '5'"),
    "zero": (0, "top_k: expected a whole number >= 1, got 0"),
    "boolean": (True, "top_k: expected a whole number >= 1, got True"),
    "float": (2.0, "top_k: expected a whole number >= 1, got 2.0"),
    "more than the classes": (1000, None),
}


@pytest.fixture(scope="module")
def entry_points(tiny_r2cnn_checkpoint, tmp_path_factory):
    """name -> predict(sketch, top_k) -> top labels, or the R2CNNError message."""
    from r2cnn.engine.predict import Predictor
    from r2cnn.export import export_checkpoint
    from r2cnn.serve import Recognizer, create_app

    onnx = tmp_path_factory.mktemp("contract") / "model.onnx"
    export_checkpoint(tiny_r2cnn_checkpoint, "onnx", onnx)
    predictor = Predictor(str(tiny_r2cnn_checkpoint))
    loaded = r2cnn.load(onnx)
    client = TestClient(create_app(Recognizer(predictor, source="tiny.pt")))

    def python(predict, labels):
        def run(sketch, top_k):
            try:
                return labels(predict(sketch, top_k=top_k))
            except R2CNNError as e:
                assert "\n" not in str(e)
                return str(e)
        return run

    def http(sketch, top_k):
        form = {"points": sketch.tolist()} if isinstance(sketch, np.ndarray) else {"drawing": sketch}
        r = client.post("/api/predict", content=json.dumps({**form, "top_k": top_k}),
                        headers={"Content-Type": "application/json"})
        if r.status_code == 200:
            return [t["class"] for t in r.json()["top"]]
        assert r.status_code == 422, r.text
        return r.json()["message"]

    return {"Predictor": python(predictor.predict, lambda top: [c for c, _ in top]),
            "LoadedModel (ONNX)": python(loaded.predict, lambda p: p.labels),
            "POST /api/predict": http}


@pytest.mark.parametrize("name", CASES)
def test_every_entry_point_gives_the_same_answer(entry_points, name):
    sketch, message = CASES[name]
    answers = {entry: run(sketch, 3) for entry, run in entry_points.items()}
    if message is None:
        expected = entry_points["Predictor"](DRAWING, 3)
        assert isinstance(expected, list) and len(expected) == 3
        assert answers == dict.fromkeys(entry_points, expected)
    else:
        assert answers == dict.fromkeys(entry_points, message)


@pytest.mark.parametrize("name", TOP_K)
def test_top_k_is_checked_alike(entry_points, name):
    top_k, message = TOP_K[name]
    answers = {entry: run(DRAWING, top_k) for entry, run in entry_points.items()}
    if message is None:
        assert all(len(a) == 12 for a in answers.values()), answers  # every built-in class
    else:
        assert answers == dict.fromkeys(entry_points, message)


def test_a_sketch_object_and_its_strokes_are_the_same_input(entry_points):
    sketch = Sketch.from_quickdraw(RAW)
    run = entry_points["Predictor"]
    assert run(sketch, 3) == run(DRAWING, 3) == entry_points["LoadedModel (ONNX)"](sketch, 3)


def test_a_million_points_are_refused_before_any_value_is_read(entry_points, monkeypatch):
    """The counts are checked first: the element walk is never reached, and an array is never read."""
    import r2cnn.strokes

    def never(*args, **kwargs):
        raise AssertionError("the values were read")

    monkeypatch.setattr(r2cnn.strokes, "checked_drawing", never)
    monkeypatch.setattr(r2cnn.strokes, "_plain", never)

    class Huge:  # an (N, 3) array that fails if anything reads it
        shape = (1_000_000, 3)

        def __array__(self, *args, **kwargs):
            never()

    million = [[[0] * 1_000_000, [0] * 1_000_000]]
    for entry in ("Predictor", "LoadedModel (ONNX)"):
        run = entry_points[entry]
        assert run(Huge(), 5) == "sketch: field 'points': too many points (1000000 > 65535)"
        assert run(million, 5) == "sketch: field 'drawing': too many points (1000000 > 65535)"
