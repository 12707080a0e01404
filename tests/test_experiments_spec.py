"""Experiment specs: the built-in tables parse, bad specs fail with one line naming file, row and field, and rows
run in dependency order."""

import pytest

from r2cnn.experiments.spec import BUILTIN, SpecError, apply_overrides, load_spec, parse_spec


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_specs_parse(name):
    spec = load_spec(name)
    assert spec.name == name and spec.rows
    assert spec.reference in {r.id for r in spec.rows if r.report}
    order = [r.id for r in spec.ordered()]
    for r in spec.rows:
        if r.init_from:
            assert order.index(r.init_from) < order.index(r.id)


def test_table1_names_the_classic_presets():
    presets = {r.preset for r in load_spec("table1").rows}
    for method in ("hog-svm", "ensemble-matching", "mkl-svm", "fisher-vector", "lenet", "alexnet-svm",
                   "alexnet-sketch", "sketchanet-v1"):
        assert f"tub-{method}" in presets
        assert f"cpu-{method}" in {r.preset for r in load_spec("table1-cpu").rows}
        assert f"cpu-{method}" in {r.preset for r in load_spec("table1-cpu-qd").rows}
    qd = load_spec("table1-cpu-qd")
    assert {r.protocol for r in qd.rows} == {"auto"} and not any(r.init_from for r in qd.rows)


def test_table2_cpu_seeds_and_reference():
    spec = load_spec("table2-cpu")
    seeds = {r.id: r.seeds for r in spec.rows}
    assert seeds["r2cnn"] == seeds["cnn"] == seeds["time-encoded"] == (0, 1, 2)
    assert all(len(s) == 1 for k, s in seeds.items() if k not in ("r2cnn", "cnn", "time-encoded"))
    assert spec.reference == "r2cnn"
    assert {r.preset for r in spec.rows} >= {"cpu-r2cnn-paper", "cpu-cnn", "cpu-attentive", "cpu-random-stroke-order",
                                              "cpu-sketching-order", "cpu-late-fusion", "cpu-early-fusion",
                                              "cpu-time-encoded"}


def test_builtin_presets_exist_for_neural_rows():
    from r2cnn.presets import PRESETS

    for name in BUILTIN:
        for row in load_spec(name).rows:
            assert row.preset in PRESETS, (name, row.id)


ROW = '[[rows]]\nid = "a"\npreset = "cpu-cnn"\n'


@pytest.mark.parametrize("text, where, field", [
    ('rows = []', "", "rows"),
    ('colour = "red"\n' + ROW, "", "colour"),
    (ROW + 'seeds = [0, 0]\n', "row a", "seeds"),
    (ROW + 'seeds = []\n', "row a", "seeds"),
    (ROW + 'epochs = 0\n', "row a", "epochs"),
    (ROW + 'epochs = 2\nsteps = 3\n', "row a", "steps"),
    (ROW + 'minutes = -1\n', "row a", "minutes"),
    (ROW + 'protocol = "imagenet"\n', "row a", "protocol"),
    (ROW + 'paper = 180\n', "row a", "paper"),
    (ROW + 'init_from = "b"\n', "row a", "init_from"),
    (ROW + 'epoch = 3\n', "row a", "epoch"),
    (ROW + 'overrides = 3\n', "row a", "overrides"),
    ('[[rows]]\nid = "a b"\npreset = "x"\n', "row a b", "id"),
    ('[[rows]]\nid = "a"\n', "row a", "preset"),
    (ROW + ROW, "row a", "id"),
    ('reference = "zz"\n' + ROW, "", "reference"),
    ('[defaults]\npreset = "x"\n' + ROW, "defaults", "preset"),
])
def test_bad_specs_name_file_row_and_field(tmp_path, text, where, field):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(SpecError) as e:
        load_spec(f)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(f)) and f"field {field!r}" in msg and where in msg, msg


def test_not_toml_and_missing_file(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text("rows = [")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(f)
    with pytest.raises(SpecError, match="neither a built-in spec"):
        load_spec(tmp_path / "missing.toml")


def _rows(*rows):
    return {"rows": [dict(id=i, preset="cpu-cnn", **({"init_from": d} if d else {})) for i, d in rows]}


def test_dependency_order_is_stable_and_topological():
    spec = parse_spec(_rows(("fine", "pre"), ("other", None), ("pre", "base"), ("base", None)))
    assert [r.id for r in spec.ordered()] == ["other", "base", "pre", "fine"]
    assert [r.id for r in spec.ordered(["fine"])] == ["base", "pre", "fine"]
    assert [r.id for r in spec.ordered(["other"])] == ["other"]


def test_dependency_cycle_is_an_error():
    with pytest.raises(SpecError, match="cycle"):
        parse_spec(_rows(("a", "b"), ("b", "a")))


def test_defaults_apply_and_rows_win():
    spec = parse_spec({"defaults": {"seeds": [1, 2], "epochs": 3}, **_rows(("a", None), ("b", None))})
    assert spec.rows[0].seeds == (1, 2) and spec.rows[0].epochs == 3
    spec = parse_spec({"defaults": {"seeds": [1, 2]}, "rows": [{"id": "a", "preset": "p", "seeds": [5]}]})
    assert spec.rows[0].seeds == (5,)


def test_overrides_replace_entries_and_dotted_keys_set_one_entry():
    config = {"lr": 1.0, "model_options": {"canvas": 64, "hidden": 32}}
    out = apply_overrides(config, {"lr": 0.5, "model_options.hidden": 8}, "where")
    assert out == {"lr": 0.5, "model_options": {"canvas": 64, "hidden": 8}}
    assert config["model_options"]["hidden"] == 32  # not modified
    assert apply_overrides(config, {"model_options": {"canvas": 16}}, "w")["model_options"] == {"canvas": 16}
    with pytest.raises(SpecError, match="'nope' is not an entry"):
        apply_overrides(config, {"nope": 1}, "where")
    with pytest.raises(SpecError, match="not a table"):
        apply_overrides(config, {"lr.x": 1}, "where")


def test_list_shows_every_builtin_spec_and_its_rows(capsys):
    from r2cnn.cli import main

    assert main(["experiment", "--list"]) == 0
    text = capsys.readouterr().out
    for name in BUILTIN:
        assert f"{name}: " in text
    assert "hog-svm (cpu-hog-svm)" in text and "r2cnn (cpu-r2cnn-paper)" in text
