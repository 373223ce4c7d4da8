"""report.html and the files a run folder gets from train_run / `deepae plot`: every link
resolves inside the folder, and the page shows what the run's files hold."""

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread

from deepae.cli import main
from deepae.errors import RunError
from deepae.run import report


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("href", "src") and v is not None]


def links_of(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.links


def copy_run(small_run, tmp_path) -> Path:
    return Path(shutil.copytree(small_run.folder, tmp_path / "run"))


def test_train_run_writes_figures_explorer_and_report(small_run):
    names = {p.name for p in small_run.folder.iterdir()}
    assert {"manifold.png", "interpolation.png", "explorer.html", "report.html"} <= names


def test_every_report_link_is_a_file_in_the_run_folder(small_run):
    html = (small_run.folder / "report.html").read_text()
    links = [link for link in links_of(html) if not link.startswith("data:")]
    assert "explorer.html" in links
    for name in (
        "latent.png",
        "reconstructions.png",
        "manifold.png",
        "interpolation.png",
        "loss.png",
    ):
        assert name in links
    for link in links:
        assert "/" not in link and ":" not in link, link  # relative, inside the folder
        assert (small_run.folder / link).is_file(), link


def test_report_shows_config_summary_history_and_metrics(small_run):
    html = (small_run.folder / "report.html").read_text()
    metrics = json.loads((small_run.folder / "metrics.json").read_text())
    assert "Total params: 51,154" in html  # the article's model summary
    assert f"{metrics['val_loss']:.6g}" in html
    assert "<th>latent_activation</th><td>linear</td>" in html  # from config.json
    assert html.count("<tr><td>") >= 2  # one history row per epoch
    assert "<h2>Evaluation</h2>" in html  # train_run writes evaluation.json (deepae.evaluate)


def test_evaluation_json_of_any_shape_is_rendered(small_run, tmp_path):
    folder = copy_run(small_run, tmp_path)
    evaluation = {
        "test": {"bce": 0.2012345678, "mse": 0.05},
        "knn_accuracy": {"k": [1, 5], "accuracy": [0.71, 0.75]},
        "per_class": [{"label": 0, "mse": 0.03}, {"label": 1, "mse": None}],
        "note": "<b>escaped</b>",
    }
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    html = report.build_report(folder, report.read_inputs(folder))
    assert "<h2>Evaluation</h2>" in html
    assert "<th>bce</th><td>0.201235</td>" in html
    assert "<th>k</th><td>1, 5</td>" in html
    assert html.count("<th>label</th>") == 2
    assert "&lt;b&gt;escaped&lt;/b&gt;" in html and "<b>escaped</b>" not in html
    assert 'href="evaluation.json"' in html


def test_report_without_explorer_says_how_to_make_it(small_run, tmp_path):
    folder = copy_run(small_run, tmp_path)
    (folder / "explorer.html").unlink()
    html = report.build_report(folder, report.read_inputs(folder))
    assert "explorer.html" not in links_of(html)
    assert "deepae explore" in html


def test_corrupt_evaluation_json_is_a_clear_error(small_run, tmp_path):
    folder = copy_run(small_run, tmp_path)
    (folder / "evaluation.json").write_text("{not json")
    with pytest.raises(RunError, match="evaluation.json is corrupt"):
        report.build_report(folder, report.read_inputs(folder))


def test_plot_with_pairs_redraws_figures_and_pages(small_run, tmp_path, capsys):
    folder = copy_run(small_run, tmp_path)
    for name in ("interpolation.png", "explorer.html", "report.html"):
        (folder / name).unlink()
    assert main(["plot", str(folder), "--pairs", "0,1", "5,9", "7,3"]) == 0
    out = capsys.readouterr().out
    for name in ("interpolation.png", "manifold.png", "explorer.html", "report.html"):
        assert f"wrote {folder / name}" in out
    # Three rows of 12 images (original, 10 steps, original) of 1.2 inches at 100 dpi.
    assert imread(folder / "interpolation.png").shape[:2] == (3 * 150, 12 * 120)
