"""``r2cnn prepare --simplify-raw --dedupe-key-id``: the qd340-mini store's recipe (simplified files plus the raw
drawings they lack, simplified with Google's pipeline)."""

import json

import numpy as np

from r2cnn.data.store import SketchStore, prepare


def _line(word, key, strokes):
    return json.dumps({"word": word, "countrycode": "US", "timestamp": "2017-03-27 00:14:57.31033 UTC",
                       "recognized": True, "key_id": key, "drawing": strokes})


def test_simplify_raw_and_dedupe_key_id(tmp_path):
    simplified, raw = tmp_path / "simplified", tmp_path / "raw"
    simplified.mkdir(), raw.mkdir()
    (simplified / "ant.ndjson").write_text(_line("ant", "1", [[[0, 255], [0, 100]]]) + "\n")
    xs = [10.5 + 2 * i for i in range(200)]
    ys = [300.25 + 0.5 * i for i in range(200)]
    ts = list(range(200))
    (raw / "ant.ndjson").write_text(_line("ant", "1", [[xs, ys, ts]]) + "\n"      # the same drawing as key 1
                                    + _line("ant", "2", [[xs, ys, ts]]) + "\n")
    store = prepare([simplified, raw], tmp_path / "store", simplify_raw=True, dedupe_key_id=True,
                    split_sizes=(7000, 1000, 2000), log=lambda *a: None, progress=False)
    assert len(store) == 2 and sorted(int(k) for k in store.key_ids) == [1, 2]
    assert store.manifest["duplicate_key_ids_dropped"] == 1 and store.manifest["raw_simplified"] == 1
    assert store.manifest["points_dtype"] == "uint8"
    kept = store[int(np.flatnonzero(np.asarray(store.key_ids) == 2)[0])].points
    # Google's pipeline: top-left aligned, longest side 0..255, a straight line simplified to its two ends
    assert kept[:, 0].min() == 0 and kept[:, :2].max() == 255 and len(kept) == 2


def test_without_the_options_raw_stays_float(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "ant.ndjson").write_text(_line("ant", "2", [[[10.5, 20.0], [3.25, 4.0], [0, 5]]]) + "\n")
    store = prepare([raw], tmp_path / "store", log=lambda *a: None, progress=False)
    assert store.manifest["points_dtype"] == "float32" and "simplify_raw" not in store.manifest["options"]
