"""The packed store: exact points, dtypes, splits and folds, reruns, interrupted builds, every source format."""

import json
import pickle
import struct

import numpy as np
import pytest

from r2cnn.cli import main
from r2cnn.data.store import reader, splits, writer
from r2cnn.data.store import SketchStore, build_store, prepare
from r2cnn.errors import ErrorPolicy, R2CNNError
from r2cnn.sketch import Sketch


def _random_sketches(n, classes=3, seed=0, lo=0, hi=256, floats=False, key0=5_000_000_000_000_000):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        strokes = []
        for _ in range(int(rng.integers(1, 4))):
            xy = rng.uniform(lo, hi, (int(rng.integers(1, 6)), 2))
            strokes.append(xy if floats else np.floor(xy))
        out.append(Sketch.from_strokes(strokes, label=f"class{i % classes}", meta={"key_id": str(key0 + i)}))
    return out


def _write_ndjson(path, sketches, word=None):
    with open(path, "w") as f:
        for s in sketches:
            drawing = [[[int(v) for v in st[:, 0]], [int(v) for v in st[:, 1]]] for st in s.strokes()]
            rec = {"word": word or s.label, "countrycode": "DE", "timestamp": "2017-03-01 00:00:00.0",
                   "recognized": True, "key_id": s.meta["key_id"], "drawing": drawing}
            f.write(json.dumps(rec) + "\n")


@pytest.fixture
def ndjson_dir(tmp_path):
    """Two class files (cat: 90 sketches, dog: 30) of simplified ndjson with key_ids."""
    d = tmp_path / "nd"
    d.mkdir()
    sk = _random_sketches(120, classes=1)
    _write_ndjson(d / "cat.ndjson", sk[:90], "cat")
    _write_ndjson(d / "dog.ndjson", sk[90:], "dog")
    return d, sk


# ------------------------------------------------------------------------------------------ store contents
def test_points_labels_and_key_ids_are_exact(tmp_path):
    sketches = _random_sketches(50)
    st = build_store(sketches, tmp_path / "s")
    assert len(st) == 50 and st.classes == ["class0", "class1", "class2"]
    assert st.points.dtype == np.uint8 and st.labels.dtype == np.int16 and st.key_ids.dtype == np.int64
    for i, s in enumerate(sketches):
        got = st[i]
        assert np.array_equal(got.points, s.points) and got.points.dtype == np.float32
        assert st.classes[got.label] == s.label and got.meta["key_id"] == s.meta["key_id"]
    assert len(pickle.dumps(st)) < 500  # workers receive the path, not the arrays
    assert np.array_equal(pickle.loads(pickle.dumps(st))[7].points, sketches[7].points)


@pytest.mark.parametrize("kwargs, dtype", [(dict(lo=-300, hi=300), np.int16), (dict(floats=True), np.float32),
                                           (dict(lo=0, hi=70000), np.float32)])
def test_points_dtype_follows_content(tmp_path, monkeypatch, kwargs, dtype):
    monkeypatch.setattr(writer, "_FLUSH_POINTS", 16)  # many flushes: the first chunks may fit uint8
    sketches = _random_sketches(5, hi=200, key0=1) + _random_sketches(40, seed=1, **kwargs)
    st = build_store(sketches, tmp_path / "s")
    assert st.points.dtype == dtype
    for i, s in enumerate(sketches):
        assert np.array_equal(st[i].points, s.points)


def test_string_and_missing_key_ids(tmp_path):
    sketches = _random_sketches(3)
    sketches[0].meta["key_id"] = "airplane/1.svg"
    del sketches[1].meta["key_id"]
    st = build_store(sketches, tmp_path / "s")
    assert st.key_ids.dtype.kind == "S"
    assert [st[i].meta.get("key_id") for i in range(3)] == ["airplane/1.svg", None, sketches[2].meta["key_id"]]


# ------------------------------------------------------------------------------------------ splits and folds
def test_hash_split_sizes_deterministic_disjoint(tmp_path):
    sketches = _random_sketches(300)
    a = build_store(sketches, tmp_path / "a", split_sizes=(70, 10, 5))
    b = build_store(sketches[::-1], tmp_path / "b", split_sizes=(70, 10, 5))  # other order, same split
    parts = {s: a.indices(s) for s in ("train", "valid", "test", "unused")}
    assert [len(parts[s]) for s in ("train", "valid", "test", "unused")] == [210, 30, 15, 45]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(300))
    for s in ("train", "valid", "test"):
        assert sorted(a.key_ids[a.indices(s)].tolist()) == sorted(b.key_ids[b.indices(s)].tolist())
        assert a.manifest["counts"][s] == {f"class{c}": len(parts[s]) // 3 for c in range(3)}
    c = build_store(sketches, tmp_path / "c", split_sizes=(70, 10, 5), seed=1)
    assert sorted(c.key_ids[c.indices("test")].tolist()) != sorted(a.key_ids[a.indices("test")].tolist())


def test_small_class_is_scaled_down(tmp_path):
    st = build_store(_random_sketches(30, classes=1), tmp_path / "s")  # default 70K/2.5K/2.5K
    assert [len(st.indices(s)) for s in ("train", "valid", "test", "unused")] == [28, 1, 1, 0]
    assert splits.scaled_sizes(7500, (70000, 2500, 2500)) == [7000, 250, 250]


def test_given_splits_are_kept(tmp_path):
    sketches = _random_sketches(12)
    for i, s in enumerate(sketches):
        s.meta["split"] = ("train", "valid", "test")[i % 3]
    st = build_store(sketches, tmp_path / "s")
    assert st.indices("valid").tolist() == list(range(1, 12, 3))


def test_kfold_indices(tmp_path):
    st = build_store(_random_sketches(90), tmp_path / "s", folds=3, fold_valid_fraction=0.25)
    assert st.is_kfold and st.num_folds == 3
    tests = [st.indices("test", fold=k) for k in range(3)]
    assert sorted(np.concatenate(tests).tolist()) == list(range(90))  # the test folds partition the data
    for k in range(3):
        tr, va, te = (set(st.indices(s, fold=k).tolist()) for s in ("train", "valid", "test"))
        assert not (tr & va or tr & te or va & te) and len(tr | va | te) == 90
        assert len(te) == 30 and len(va) == 15  # 10 per class per fold; a quarter of the other 20 per class
    assert np.array_equal(st.indices("train"), st.indices("train", fold=0))
    with pytest.raises(R2CNNError, match="fold 3 out of range"):
        st.indices("test", fold=3)
    plain = build_store(_random_sketches(9), tmp_path / "p")
    with pytest.raises(R2CNNError, match="fixed splits"):
        plain.indices("test", fold=1)


# ------------------------------------------------------------------------------------------ prepare: reruns, crashes
def test_prepare_ndjson_rerun_is_noop(ndjson_dir, tmp_path, capsys):
    src, sketches = ndjson_dir
    out = tmp_path / "store"
    st = prepare([src], out, split_sizes=(70, 10, 10), progress=False)
    assert st.classes == ["cat", "dog"] and len(st) == 120
    assert st.manifest["counts"]["train"] == {"cat": 70, "dog": 24}  # dog: 30 * (80, 10, 10) / 90, rounded
    assert np.array_equal(st[95].points, sketches[95].points) and st[95].meta["key_id"] == sketches[95].meta["key_id"]
    assert [d["sketches"] for d in st.manifest["inputs"]] == [90, 30]
    stamp = (out / "manifest.json").stat().st_mtime_ns
    prepare([src], out, split_sizes=(70, 10, 10), progress=False)
    assert "up to date" in capsys.readouterr().out
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    prepare([src], out, split_sizes=(60, 10, 10), progress=False)  # new options: rebuilt
    assert SketchStore(out).manifest["counts"]["train"]["cat"] == 60
    _write_ndjson(src / "dog.ndjson", sketches[90:110], "dog")  # changed source: rebuilt
    assert len(prepare([src], out, split_sizes=(60, 10, 10), progress=False)) == 110
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nd", "store"]  # no temporary or old directories left


def test_interrupted_build_leaves_no_store(ndjson_dir, tmp_path, monkeypatch):
    src, _ = ndjson_dir
    out = tmp_path / "store"

    def boom(self, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.Builder, "finish", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare([src], out, progress=False)
    # no store; the build's checkpoints stay in store.partial for the next prepare to resume (tests/test_scale.py)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["nd", "store.partial"]
    # a killed build (no cleanup at all) leaves a directory without a manifest, which never opens as a store
    half = tmp_path / "store.tmp-dead"
    half.mkdir()
    (half / "points.npy").write_bytes(b"")
    with pytest.raises(R2CNNError, match="not a sketch store"):
        SketchStore(half)
    with pytest.raises(R2CNNError, match="does not exist .*r2cnn prepare"):
        SketchStore(out)


def test_prepare_refuses_to_replace_other_folders(ndjson_dir, tmp_path):
    src, _ = ndjson_dir
    other = tmp_path / "docs"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(R2CNNError, match="not a sketch store"):
        prepare([src], other, progress=False)
    assert (other / "notes.txt").read_text() == "mine"


def test_split_from_source_prefix_and_folders(tmp_path):
    sk = _random_sketches(40, classes=1)
    for split, part in (("train", sk[:30]), ("valid", sk[30:])):
        (tmp_path / "qd" / split).mkdir(parents=True)
        _write_ndjson(tmp_path / "qd" / split / "cat.ndjson", part, "cat")
    a = prepare([f"train={tmp_path / 'qd' / 'train'}", f"valid={tmp_path / 'qd' / 'valid'}"], tmp_path / "a",
                progress=False)
    b = prepare([tmp_path / "qd"], tmp_path / "b", split_from_folders=True, progress=False)
    for st in (a, b):
        assert [len(st.indices(s)) for s in ("train", "valid", "test")] == [30, 10, 0]
        assert set(st.key_ids[st.indices("valid")].tolist()) == {int(s.meta["key_id"]) for s in sk[30:]}


def test_label_field_and_bad_records(tmp_path, capsys):
    sk = _random_sketches(6, classes=2)
    _write_ndjson(tmp_path / "mixed.ndjson", sk)  # word = class0 / class1 in one file
    st = prepare([tmp_path / "mixed.ndjson"], tmp_path / "s", label_field="word", progress=False)
    assert st.classes == ["class0", "class1"] and st.labels.tolist() == [0, 1, 0, 1, 0, 1]
    with open(tmp_path / "mixed.ndjson", "a") as f:
        f.write('{"word": "class0", "drawing": [[[1, 2], [3]]]}\n')
    with pytest.raises(R2CNNError, match="mixed.ndjson:7"):
        prepare([tmp_path / "mixed.ndjson"], tmp_path / "s2", progress=False)
    st = prepare([tmp_path / "mixed.ndjson"], tmp_path / "s2", policy=ErrorPolicy("skip"), progress=False)
    assert len(st) == 6 and sum(st.manifest["skipped"].values()) == 1
    assert "skipped 1 records" in capsys.readouterr().out


def test_cli_prepare(ndjson_dir, tmp_path, capsys):
    src, _ = ndjson_dir
    assert main(["prepare", str(src), "--out", str(tmp_path / "s"), "--split-sizes", "70,10,10"]) == 0
    assert "120 sketches" in capsys.readouterr().out
    assert main(["prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "t")]) == 2
    assert "missing: no such file or folder" in capsys.readouterr().err
    assert main(["prepare", str(src), "--out", str(tmp_path / "t"), "--split-sizes", "1,2"]) == 2


# ------------------------------------------------------------------------------------------ other formats
def test_prepare_npz_keeps_its_splits(tmp_path):
    rng = np.random.default_rng(0)

    def stroke3(n):
        """``n`` sketch-rnn sketches: int16 (dx, dy, pen_lift) rows, the pen lifted after the last point."""
        arr = np.empty(n, dtype=object)
        for i in range(n):
            k = int(rng.integers(3, 9))
            arr[i] = np.column_stack([rng.integers(-20, 20, (k, 2)), np.arange(k) == k - 1]).astype(np.int16)
        return arr

    np.savez(tmp_path / "kanji.npz", train=stroke3(12), valid=stroke3(3), test=stroke3(4))
    st = prepare([tmp_path / "kanji.npz"], tmp_path / "s", progress=False)
    assert st.classes == ["kanji"] and [len(st.indices(s)) for s in ("train", "valid", "test")] == [12, 3, 4]
    assert st.points.dtype in (np.int16, np.float32)


def test_prepare_bin(tmp_path):
    sk = _random_sketches(5, classes=1)
    with open(tmp_path / "owl.bin", "wb") as f:
        for s in sk:
            strokes = s.strokes()
            f.write(struct.pack("<Q2sBIH", int(s.meta["key_id"]), b"DE", 1, 1488326400, len(strokes)))
            for st in strokes:
                f.write(struct.pack("<H", len(st)) + st[:, 0].astype(np.uint8).tobytes() + st[:, 1].astype(np.uint8).tobytes())
    st = prepare([tmp_path / "owl.bin"], tmp_path / "s", progress=False)
    assert st.classes == ["owl"] and len(st) == 5 and st.points.dtype == np.uint8
    for i in range(5):
        assert np.array_equal(st[i].points, sk[i].points) and st[i].meta["key_id"] == sk[i].meta["key_id"]


@pytest.mark.shared_data
def test_prepare_tuberlin_svg_folds(shared_data, tmp_path):
    st = prepare([shared_data / "tuberlin" / "svg"], tmp_path / "s", progress=False)
    assert st.classes == ["airplane", "alarm clock", "angel"] and len(st) == 15 and st.num_folds == 3
    assert st.points.dtype == np.float32
    assert sorted(np.concatenate([st.indices("test", fold=k) for k in range(3)]).tolist()) == list(range(15))


def test_prepare_builtin(tmp_path):
    from r2cnn.data.builtin import CLASSES
    st = prepare([], tmp_path / "s", builtin=4, split_sizes=(2, 1, 1), progress=False)
    assert st.classes == sorted(CLASSES) and len(st) == 4 * len(CLASSES) and st.points.dtype == np.uint8
    assert all(st.manifest["counts"]["test"][c] == 1 for c in CLASSES)


@pytest.mark.shared_data
def test_prepare_qd5_train_valid_folders(shared_data, tmp_path):
    qd5 = shared_data / "quickdraw" / "qd5"
    st = prepare([f"train={qd5 / 'train'}", f"valid={qd5 / 'valid'}"], tmp_path / "s", progress=False)
    assert st.classes == ["backpack", "car", "power_outlet", "shoe", "sun"] and st.points.dtype == np.uint8
    assert len(st.indices("train")) == 36336 and len(st.indices("valid")) == 2500
    assert set(st.manifest["counts"]["valid"].values()) == {500}


def test_no_sketches_is_an_error(tmp_path):
    (tmp_path / "empty.ndjson").write_text("\n")
    with pytest.raises(R2CNNError, match="no sketches to store"):
        prepare([tmp_path / "empty.ndjson"], tmp_path / "s", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.ndjson"]


def test_train_source_gives_up_validation_when_none_is_given(tmp_path, capsys):
    """``train=A test=B --split-sizes T,V,0`` (docs/experiments.md) carves validation out of A per class, by the
    same key_id hash as the plain source ``A``; a store left without validation gets a warning from prepare."""
    sk = _random_sketches(60, classes=2)
    for split, part in (("train", sk[:40]), ("test", sk[40:])):
        (tmp_path / "qd" / split).mkdir(parents=True)
        for c in ("class0", "class1"):
            _write_ndjson(tmp_path / "qd" / split / f"{c}.ndjson", [s for s in part if s.label == c], c)
    train, test = tmp_path / "qd" / "train", tmp_path / "qd" / "test"
    carved = prepare([f"train={train}", f"test={test}"], tmp_path / "a", split_sizes=(30, 5, 0), progress=False)
    plain = prepare([train, f"test={test}"], tmp_path / "b", split_sizes=(30, 5, 0), progress=False)
    for st in (carved, plain):
        assert [len(st.indices(s)) for s in ("train", "valid", "test")] == [34, 6, 20]
    assert carved.key_ids[carved.indices("valid")].tolist() == plain.key_ids[plain.indices("valid")].tolist()
    assert np.bincount(carved.labels[carved.indices("valid")]).tolist() == [3, 3]
    # a given validation source wins: nothing is carved
    given = prepare([f"train={train}", f"valid={test}"], tmp_path / "c", split_sizes=(30, 5, 0), progress=False)
    assert [len(given.indices(s)) for s in ("train", "valid", "test")] == [40, 20, 0]
    # VALID = 0 leaves it empty, and the CLI says how to get one
    assert main(["prepare", f"train={train}", f"test={test}", "--split-sizes", "30,0,0",
                 "--out", str(tmp_path / "d")]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "validation split is empty" in err and "VALID > 0" in err


def test_store_without_validation_is_rebuilt_when_one_can_be_carved(tmp_path, monkeypatch):
    """A store built before train= sources gave up validation is not "up to date" now."""
    sk = _random_sketches(20, classes=1)
    (tmp_path / "tr").mkdir()
    _write_ndjson(tmp_path / "tr" / "cat.ndjson", sk, "cat")
    monkeypatch.setattr(splits, "carve_valid", lambda *a: None)
    old = prepare([f"train={tmp_path / 'tr'}"], tmp_path / "s", split_sizes=(10, 2, 0), progress=False)
    assert len(old.indices("valid")) == 0
    monkeypatch.undo()
    manifest = json.loads((tmp_path / "s" / reader.MANIFEST).read_text())
    del manifest["train_gives_up_valid"]  # as a store written before that rule has it
    (tmp_path / "s" / reader.MANIFEST).write_text(json.dumps(manifest))
    new = prepare([f"train={tmp_path / 'tr'}"], tmp_path / "s", split_sizes=(10, 2, 0), progress=False)
    assert len(new.indices("valid")) == 2
