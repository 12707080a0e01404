"""``r2cnn report RUN_DIR``: one static HTML page that opens offline, with every section of the run."""

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser

import pytest
from PIL import Image

from r2cnn.errors import R2CNNError
from r2cnn.viz.report import build_report


class Page(HTMLParser):
    """Collects tags, their attributes and the headings of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.headings, self._in_heading = [], [], False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_heading = tag == "h2"

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append(data.strip())
            self._in_heading = False


@pytest.fixture(scope="module")
def report(tiny_runs, tmp_path_factory):
    """The report of the tiny R2CNN run, made on a copy of the run directory (the report writes report.json)."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(tiny_runs.r2cnn, run)
    lines = []
    path = build_report(run, data=str(tiny_runs.store), examples=3, detailed=1, deletion_ks=(1,), log=lines.append)
    return run, path, lines


def test_report_is_one_offline_page_with_every_section(report, tiny_runs):
    run, path, lines = report
    assert path == run / "report.html"
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert page.headings == ["Run", "Training curves", "Confusion matrix", "Per-class accuracy", "Worst classes",
                             "Attention", "Partial sketches"]
    outside_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "//" not in outside_images and "http" not in outside_images  # no URL of any kind, not even a namespace
    tags = {t for t, _ in page.tags}
    assert ("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}) in page.tags  # phones
    run_table = text.split("<h2>Run</h2>", 1)[1].split("</table>", 1)[0]
    assert "<th></th>" not in run_table and run_table.count('<th scope="row">') == 6  # each row headed by its key
    assert not tags & {"script", "link", "iframe", "object", "embed", "a"}
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert len(images) >= 7
    for src in images:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    evaluation = json.loads((run / "report.json").read_text())  # the evaluation it ran, kept for next time
    assert evaluation["split"] == "test" and evaluation["count"] == 24 and len(evaluation["partial"]) == 4
    assert f"{evaluation['top1']:.4f}" in text
    assert any(line.startswith("evaluating") for line in lines)
    assert any("most attended removed" in line for line in lines)  # the deletion check table


def test_report_reuses_the_saved_evaluation_and_finds_the_store(report, capsys):
    from r2cnn.cli import main

    run, _, _ = report
    out = run / "again.html"
    assert main(["report", str(run), "--out", str(out), "--examples", "1", "--deletion-k", ""]) == 0
    printed = capsys.readouterr().out
    assert "evaluating" not in printed and f"report: {out}" in printed
    assert "Deletion check" not in out.read_text()


def test_report_of_a_cnn_only_run_says_it_has_no_attention(tiny_runs, tmp_path):
    path = build_report(tiny_runs.cnn, data=str(tiny_runs.store), out=tmp_path / "cnn.html", log=lambda *_: None)
    assert "without per-point attention" in path.read_text()


def test_report_bad_input_is_one_line(tiny_runs, tmp_path):
    def error(run, **kw) -> str:
        with pytest.raises(R2CNNError) as caught:
            build_report(run, log=lambda *_: None, **kw)
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert "not a directory" in error(tmp_path / "missing")
    assert "no log.jsonl" in error(tmp_path)
    run = tmp_path / "run"
    shutil.copytree(tiny_runs.r2cnn, run, ignore=shutil.ignore_patterns("report*"))
    assert "pass --data STORE" in error(run)
    assert "not a sketch store" in error(run, data=str(tmp_path))
    assert "checkpoint not found" in error(run, data=str(tiny_runs.store), checkpoint=str(tmp_path / "none.pt"))
    (run / "log.jsonl").write_text('{"kind": "train", "step": 1}\n{oops\n')
    assert "log.jsonl:2: not a JSON record" in error(run, data=str(tiny_runs.store))
