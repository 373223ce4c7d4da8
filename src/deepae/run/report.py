"""report.html: one page per run folder with everything a reader needs to judge the run.

The figures first, then the evaluation (the side-by-side table `deepae evaluate` prints),
the final metrics, the loss history, the Keras-style model summary, the config and a link
to the explorer, all handed in by the caller
(`ReportInputs`): the page is built from what the run holds in memory, not read back from
its files. It links only to files in its own folder, by relative path, so the folder can
be zipped and shared and the page still works.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from deepae import evaluate, fsio, tables
from deepae.run import files
from deepae.train import EpochRecord


@dataclass(frozen=True)
class ReportInputs:
    """What the report shows; None where the run has no such thing (yet)."""

    summary: str  # the Keras-style model summary table
    config: dict[str, Any]  # config.json's content
    history: Sequence[EpochRecord]
    metrics: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    data_name: str | None


def read_inputs(folder: str | Path) -> ReportInputs:
    """What the report of a run shows, read from the run folder's files."""
    from deepae import model, storage

    net, train_config = storage.load_model(folder)
    status = files.read_status(folder) or {}
    return ReportInputs(
        summary=model.summary(net),
        config=storage.config_dict(net.config, train_config),
        history=files.read_history(folder),
        metrics=files.read_metrics(folder),
        evaluation=files.read_evaluation(folder),
        data_name=(status.get("data") or {}).get("name"),
    )


def build_report(folder: str | Path, inputs: ReportInputs) -> str:
    """The report of the run in `folder` as an HTML string."""
    folder = Path(folder)
    name = folder.resolve().name
    metrics, evaluation = inputs.metrics, inputs.evaluation
    # What a reader looks at first: the pictures, then how good the model is.
    parts = [
        f"<h1>Run <code>{_esc(name)}</code></h1>",
        _collapse_banner(metrics, inputs.config),
        _intro(folder, inputs.data_name),
        _section("Figures", _figures(folder)),
    ]
    if evaluation is not None:
        parts.append(_section("Evaluation", _evaluation(evaluation)))
    parts += [
        _section("Final metrics", _table(metrics) if metrics else _missing(files.METRICS_FILE)),
        _section("Loss per epoch", _history(folder, inputs.history)),
        _section("Model", f"<pre>{_esc(inputs.summary)}</pre>"),
        _section("Configuration", _table(inputs.config)),
        _section("Files", _files(folder)),
    ]
    return _page(f"deepae run {name}", "\n".join(parts))


def write_report(folder: str | Path, inputs: ReportInputs) -> Path:
    """Write folder/report.html atomically; returns its path."""
    path = Path(folder) / files.REPORT_FILE
    fsio.write_text(path, build_report(folder, inputs))
    return path


# -- sections ------------------------------------------------------------------------------


def _collapse_banner(metrics: dict[str, Any] | None, config: dict[str, Any]) -> str:
    """A banner above everything when a latent unit of the run is dead (metrics.json's
    "dead_units"; for older runs, its "dead_latent_fractions")."""
    metrics = metrics or {}
    dead = metrics.get("dead_units")
    if not isinstance(dead, list):
        try:
            dead = evaluate.dead_unit_indices(metrics.get("dead_latent_fractions") or [])
        except TypeError:  # a hand-edited file: no banner rather than no report
            dead = []
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    note = evaluate.collapse_note(dead, model.get("latent_activation", "relu"))
    return f"<p class=banner role=alert><b>Warning:</b> {_esc(note)}</p>" if note else ""


def _intro(folder: Path, data_name: str | None) -> str:
    made = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    lines = [f"<p class=muted>Report written {made}. Data: {_esc(data_name or '?')}.</p>"]
    if (folder / files.EXPLORER_FILE).is_file():
        lines.append(
            '<p><a class=button href="explorer.html">Open the latent-space explorer</a> '
            "Hover over the plane and watch the decoder draw, live in your browser, offline.</p>"
        )
    else:
        lines.append(
            f"<p class=muted>No explorer.html yet: <code>deepae explore {_esc(str(folder))}"
            "</code> writes it.</p>"
        )
    return "\n".join(lines)


def _history(folder: Path, history: Sequence[EpochRecord]) -> str:
    if not history:
        return _missing(files.HISTORY_FILE)
    head = "<tr><th>epoch</th><th>loss</th><th>val_loss</th><th>seconds</th></tr>"
    # Rounded as history.csv stores them, so the page and the file agree.
    body = "".join(
        f"<tr><td>{r.epoch}</td><td>{_fmt(round(r.loss, 6))}</td>"
        f"<td>{_fmt(None if r.val_loss is None else round(r.val_loss, 6))}</td>"
        f"<td>{_fmt(round(r.seconds, 3))}</td></tr>"
        for r in history
    )
    plot = _figure(folder, files.LOSS_FIGURE, "Training and validation loss per epoch.")
    return f"{plot}<table class=grid>{head}{body}</table>"


def _evaluation(result: dict[str, Any]) -> str:
    """The side-by-side table `deepae evaluate` prints (tables.table_rows), as HTML, and
    every number of evaluation.json below it, folded."""
    everything = f"<details><summary>all numbers</summary>{_table(result)}</details>"
    try:
        caption, rows = tables.table_caption(result), tables.table_rows(result)
        published = tables.published_rows(result)
    except (KeyError, TypeError, AttributeError, ValueError):  # a hand-edited file
        return _table(result)
    note = ""
    if published:
        title = tables.PUBLISHED_CAPTION.format(dataset=result["dataset"])
        note = f"<p class=muted>{_esc(title)}</p>{_grid(published)}"
    return f"<p class=muted>{_esc(caption)}</p>{_grid(rows)}{note}{everything}"


def _grid(rows: list[list[str]]) -> str:
    """Rows of text (a header first) as an HTML table, first column as row headers."""
    head = "".join(f"<th>{_esc(c)}</th>" for c in rows[0])
    body = "".join(
        f"<tr><th>{_esc(r[0])}</th>{''.join(f'<td>{_esc(c)}</td>' for c in r[1:])}</tr>"
        for r in rows[1:]
    )
    return f"<table class=grid><tr>{head}</tr>{body}</table>"


def _figures(folder: Path) -> str:
    # Only the figures deepae writes: a PNG someone else put in the folder is not linked.
    shown = [_figure(folder, name, text) for name, text in files.FIGURES.items()]
    return "\n".join(f for f in shown if f) or "<p class=muted>No figures yet.</p>"


def _figure(folder: Path, name: str, caption: str) -> str:
    if not (folder / name).is_file():
        return ""
    src = _esc(quote(name))
    return (
        f'<figure><a href="{src}"><img src="{src}" alt="{src}" loading="lazy"></a>'
        f"<figcaption><code>{src}</code>: {_esc(caption)}</figcaption></figure>"
    )


def _files(folder: Path) -> str:
    names = [*files.MODEL_FILES, files.HISTORY_FILE, files.METRICS_FILE, files.EVALUATION_FILE,
             files.EXPLORER_FILE]  # fmt: skip
    items = [
        f'<li><a href="{_esc(quote(n))}">{_esc(n)}</a> ({(folder / n).stat().st_size:,} bytes)</li>'
        for n in names
        if (folder / n).is_file()
    ]
    return f"<ul>{''.join(items)}</ul>"


def _table(value: Any) -> str:
    """Any JSON value as HTML: dicts become two-column tables (nested ones nest), lists
    of numbers or strings a comma-separated line, other lists a numbered list."""
    if isinstance(value, dict):
        if not value:
            return "<span class=muted>(empty)</span>"
        rows = "".join(
            f"<tr><th>{_esc(str(k))}</th><td>{_table(v)}</td></tr>" for k, v in value.items()
        )
        return f"<table class=kv>{rows}</table>"
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return ", ".join(_fmt(v) for v in value) or "<span class=muted>(none)</span>"
        return "<ol>" + "".join(f"<li>{_table(v)}</li>" for v in value) + "</ol>"
    return _fmt(value)


def _fmt(value: Any) -> str:
    if value is None:
        return "<span class=muted>-</span>"
    if isinstance(value, float):
        return f"{value:.6g}"
    return _esc(str(value))


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_esc(title)}</h2>\n{body}\n</section>"


def _missing(name: str) -> str:
    return f"<p class=muted>No {_esc(name)} in this run folder.</p>"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{_esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
{body}
</body>
</html>
"""


_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  color: #1d232b; background: #f4f6f8; max-width: 1100px; margin: 0 auto; padding: 20px 28px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0 0 10px; }
section { background: #fff; border: 1px solid #dfe3e8; border-radius: 8px; padding: 14px 18px;
  margin: 14px 0; overflow-x: auto; }
.muted { color: #5d6875; }
.banner { background: #fdecea; border: 1px solid #d93025; color: #7a1c14; border-radius: 8px;
  padding: 10px 14px; margin: 10px 0; }
a.button { display: inline-block; background: #1f6feb; color: #fff; padding: 6px 14px;
  border-radius: 6px; text-decoration: none; font-weight: 600; margin-right: 8px; }
table { border-collapse: collapse; font-size: 14px; }
table.kv th { text-align: left; font-weight: 600; padding: 3px 14px 3px 0; vertical-align: top;
  color: #3a4450; white-space: nowrap; }
table.kv td { padding: 3px 0; }
table.kv table.kv { margin: 0; }
table.grid th, table.grid td { border-bottom: 1px solid #eceff3; padding: 3px 14px 3px 0;
  text-align: right; }
table.grid tr > th:first-child { text-align: left; }
pre { font-size: 13px; background: #f7f9fb; padding: 10px; border-radius: 6px; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; border: 1px solid #eceff3; }
figcaption { font-size: 13px; color: #5d6875; }
"""
