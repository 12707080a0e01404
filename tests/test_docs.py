"""The adoption basics stay true as the code moves: the licence file matches the package metadata, CITATION.cff
and the README's BibTeX cite the paper and this version alike, and docs/architecture.md describes every command
that ``r2cnn --help`` lists and every benchmark target."""

import re
from pathlib import Path

import pytest

from r2cnn import cli
from r2cnn.commands.bench import TARGETS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PAPER_TITLE = "Sketch-R2CNN: An RNN-Rasterization-CNN Architecture for Vector Sketch Recognition"
PAPER_AUTHORS = [("Li", "Lei"), ("Zou", "Changqing"), ("Zheng", "Youyi"), ("Su", "Qingkun"), ("Fu", "Hongbo"),
                 ("Tai", "Chiew-Lan")]


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (a whole line, e.g. "## Commands") up to the next heading of the same level."""
    level = heading.split()[0]
    lines = markdown.splitlines()
    assert heading in lines, f"no {heading!r} section"
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(level + " ")), len(lines))
    return "\n".join(lines[start:end])


# ---------------------------------------------------------------------------------------------------- licence

def test_licence_file_is_the_licence_pyproject_declares(project):
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    # PEP 639: an SPDX expression, and the file shipped with the distribution
    assert project["license"] == "MIT"
    assert "LICENSE" in project["license-files"]
    assert text.splitlines()[0] == "MIT License"
    assert re.search(r"^Copyright \(c\) 20\d\d the sketch-r2cnn authors$", text, re.M)
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


# --------------------------------------------------------------------------------------------------- citation

def _cff_value(block: str, key: str, indent: str = "") -> str:
    """A scalar ``key: value`` at ``indent`` in a CFF (YAML) text, unquoted."""
    found = re.findall(rf"^{indent}{re.escape(key)}: *(.+?) *$", block, re.M)
    assert len(found) == 1, f"{key!r} at indent {len(indent)}: {found}"
    return found[0].strip('"')


def test_citation_cff_key_lines(project):
    """Without a YAML library: the top-level keys of CFF 1.2.0 and the paper as ``preferred-citation``."""
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert _cff_value(text, "cff-version") == "1.2.0"
    assert _cff_value(text, "version") == project["version"]
    assert _cff_value(text, "license") == project["license"]
    for key in ("message", "title", "authors", "preferred-citation"):
        assert re.search(rf"^{key}:", text, re.M), key
    paper = text.split("\npreferred-citation:\n", 1)[1]
    assert _cff_value(paper, "type", "  ") == "article"
    assert _cff_value(paper, "title", "  ") == PAPER_TITLE
    assert _cff_value(paper, "journal", "  ") == "IEEE Transactions on Visualization and Computer Graphics"
    assert _cff_value(paper, "year", "  ") == "2020"
    assert re.findall(r"family-names: (\S+)\n +given-names: (\S+)", paper) == PAPER_AUTHORS


def test_citation_cff_parses_as_yaml(project):
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; test_citation_cff_key_lines checks the keys")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert (cff["title"], str(cff["version"]), cff["license"]) == (project["name"], project["version"], "MIT")
    assert cff["authors"]
    paper = cff["preferred-citation"]
    assert (paper["type"], paper["title"], paper["year"]) == ("article", PAPER_TITLE, 2020)
    assert [(a["family-names"], a["given-names"]) for a in paper["authors"]] == PAPER_AUTHORS


def test_readme_bibtex_cites_the_paper_and_this_version(project):
    citing = _section((ROOT / "README.md").read_text(encoding="utf-8"), "## Citing")
    bibtex = re.search(r"```bibtex\n(.*?)```", citing, re.S)
    assert bibtex, "no ```bibtex block under ## Citing"
    paper, software = re.split(r"\n(?=@)", bibtex.group(1).strip())
    assert paper.startswith("@article{")
    authors = re.search(r"author *= *\{(.*)\},", paper).group(1).split(" and ")
    assert authors == [f"{family}, {given}" for family, given in PAPER_AUTHORS]
    assert re.sub(r"[{}]", "", re.search(r"title *= *(\{.*\}),", paper).group(1)) == PAPER_TITLE
    assert re.search(r"year *= *\{2020\}", paper)
    assert re.search(rf"Version {re.escape(project['version'])}\b", software)


# ------------------------------------------------------------------------------------------ architecture.md

def _help_commands(capsys, monkeypatch) -> list[str]:
    """The command names ``r2cnn --help`` prints, one per line under ``COMMAND``."""
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("  COMMAND") + 1
    end = lines.index("", start)
    # a command's line starts 4 spaces in; its wrapped help is indented further
    return [m.group(1) for line in lines[start:end] if (m := re.match(r" {4}([a-z][a-z0-9-]*)\b", line))]


def test_architecture_describes_every_command_in_help(capsys, monkeypatch):
    commands = _help_commands(capsys, monkeypatch)
    assert sorted(commands) == sorted(cli.COMMANDS)  # the help was read, not an empty list
    described = _section((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"), "## Commands")
    missing = [c for c in commands if not re.search(rf"`r2cnn {re.escape(c)}[ `]", described)]
    assert not missing, f"docs/architecture.md '## Commands' does not describe: {', '.join(missing)}"


def test_architecture_names_every_bench_target():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [t for t in TARGETS if f"`{t}`" not in text and f"`bench {t}`" not in text]
    assert not missing, f"docs/architecture.md does not name the bench targets: {', '.join(missing)}"
