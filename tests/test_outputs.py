"""Readable outputs and a consistent command line: the report's evaluation table, where
`decode` writes, wide figures that wrap, `explore --open` without a browser, and options a
command cannot honour."""

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread

from deepae import tables
from deepae.cli import main


class Tables(HTMLParser):
    """Every <table class=grid> of a page as rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self._open, self._cell = [], [], None  # _open: is each open table grid?

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._open.append(("class", "grid") in attrs)
            if self._open[-1]:
                self.tables.append([])
        elif self._open and self._open[-1] and tag == "tr":
            self.tables[-1].append([])
        elif self._open and self._open[-1] and tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "table" and self._open:
            self._open.pop()
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(self._cell)
            self._cell = None


@pytest.fixture
def run(small_run, tmp_path):
    return Path(shutil.copytree(small_run.folder, tmp_path / "run"))


def test_report_shows_the_terminals_evaluation_table_under_the_figures(small_run):
    html = (small_run.folder / "report.html").read_text()
    result = json.loads((small_run.folder / "evaluation.json").read_text())
    # The oracle: the text table `deepae evaluate` prints, split into its columns.
    text = tables.format_table(result).splitlines()
    expected = [re.split(r"\s{2,}", line.strip()) for line in text[1:] if set(line) != {"-"}]
    expected = expected[: len(tables.table_rows(result))]
    parser = Tables()
    parser.feed(html)
    evaluation = [t for t in parser.tables if t and t[0][0] == "metric"]
    assert evaluation == [expected]
    assert text[0] in html  # the caption line
    order = [html.index(f"<h2>{h}</h2>") for h in ("Figures", "Evaluation", "Model")]
    assert order == sorted(order)


def test_decode_writes_to_the_current_folder(run, tmp_path, monkeypatch, capsys):
    before = sorted(p.name for p in run.iterdir())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["decode", str(run), "0,0", "1,2"]) == 0
    assert imread(work / "decoded.png").shape[1] == 400  # two 2-inch tiles at 100 dpi
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_hundred_reconstructions_wrap_into_rows_of_ten(run, tmp_path):
    out = tmp_path / "r.png"
    assert main(["reconstruct", str(run), "--indices", "0-99", "--split", "TEST",
                 "--out", str(out)]) == 0  # fmt: skip
    # 10 blocks of (original, reconstruction) rows, 10 columns of 2-inch tiles at 100 dpi
    assert imread(out).shape[:2] == (10 * 2 * 230, 10 * 200)


def test_explore_open_without_a_browser_says_where_the_page_is(run, tmp_path, monkeypatch,
                                                               capsys):  # fmt: skip
    import webbrowser

    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    out = tmp_path / "page.html"
    assert main(["explore", str(run), "--out", str(out), "--points", "100", "--open"]) == 0
    err = capsys.readouterr().err
    assert str(out.resolve()) in err and "no browser" in err


def test_summary_of_a_preset(capsys):
    assert main(["summary", "--preset", "best2d"]) == 0
    # 784-256-256-128-2 and its mirror, counted by hand: 299,906 + 300,688 parameters
    assert "Total params: 600,594" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, flag",
    [
        (["train", "--resume", "{run}", "--name", "x"], "--name"),
        (["train", "--resume", "{run}", "--runs-dir", "elsewhere"], "--runs-dir"),
        (["train", "--resume", "{run}", "--overwrite"], "--overwrite"),
        (["data", "info", "--image-size", "8x8"], "--image-size"),
        (["data", "fetch", "--val-fraction", "0.2"], "--val-fraction"),
    ],
)
def test_options_a_command_cannot_honour_are_refused(run, args, flag, capsys):
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main([a.replace("{run}", str(run)) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
