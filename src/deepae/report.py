"""report.html: one page per run folder with everything a reader needs to judge the run.

The config, the Keras-style model summary, the loss history, the final metrics (and
`evaluation.json`, whatever keys it holds), the figures and a link to the explorer. The
page links only to files in its own folder, by relative path, so the folder can be
zipped and shared and the page still works.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from deepae import fsio, storage
from deepae.errors import RunError

FILE_NAME = "report.html"
EVALUATION_FILE = "evaluation.json"  # written by `deepae evaluate`, if it has been run
# The figures a run folder holds, in reading order, with what each shows.
FIGURES = {
    "latent.png": "The training codes in the latent space, coloured by label (the article's "
    "scatter).",
    "reconstructions.png": "Training images (top) and what the autoencoder makes of them.",
    "manifold.png": "The decoder applied to a grid spanning the 1st-99th percentile of the "
    "training codes: what each region of the plane means.",
    "interpolation.png": "Test images at both ends, and the decoder along the straight line "
    "between their codes.",
}
_DATA_FILES = ("config.json", "model.safetensors", "history.csv", "metrics.json")


def build_report(folder: str | Path, ae: Any = None) -> str:
    """The report of the run in `folder` as an HTML string. `ae` (a deepae.Autoencoder)
    gives the model summary; without it the model is loaded from the folder."""
    folder = Path(folder)
    if ae is None:
        net, _ = storage.load_model(folder)
        summary_text = _summary(net)
    else:
        summary_text = _summary(ae.net)
    config = _read_json(folder / storage.CONFIG_FILE)
    metrics = _read_json(folder / "metrics.json")
    evaluation = _read_json(folder / EVALUATION_FILE)
    name = folder.resolve().name
    parts = [
        f"<h1>Run <code>{_esc(name)}</code></h1>",
        _intro(folder, metrics),
        _section("Final metrics", _table(metrics) if metrics else _missing("metrics.json")),
    ]
    if evaluation is not None:
        parts.append(_section("Evaluation", _table(evaluation)))
    parts += [
        _section("Loss per epoch", _history(folder)),
        _section("Figures", _figures(folder)),
        _section("Model", f"<pre>{_esc(summary_text)}</pre>"),
        _section("Configuration", _table(config) if config else _missing("config.json")),
        _section("Files", _files(folder)),
    ]
    return _page(f"deepae run {name}", "\n".join(parts))


def write_report(folder: str | Path, ae: Any = None) -> Path:
    """Write folder/report.html atomically; returns its path."""
    path = Path(folder) / FILE_NAME
    fsio.write_text(path, build_report(folder, ae))
    return path


# -- sections ------------------------------------------------------------------------------


def _intro(folder: Path, metrics: dict | None) -> str:
    data = (metrics or {}).get("data") or {}
    made = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    lines = [f"<p class=muted>Report written {made}. Data: {_esc(data.get('name', '?'))}.</p>"]
    if (folder / "explorer.html").is_file():
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


def _history(folder: Path) -> str:
    from deepae.runs import read_history  # runs imports this module: import when used

    rows = read_history(folder)
    if not rows:
        return _missing("history.csv")
    head = "<tr><th>epoch</th><th>loss</th><th>val_loss</th><th>seconds</th></tr>"
    body = "".join(
        f"<tr><td>{r['epoch']}</td><td>{_fmt(r['loss'])}</td><td>{_fmt(r['val_loss'])}</td>"
        f"<td>{_fmt(r['seconds'])}</td></tr>"
        for r in rows
    )
    plot = _figure(folder, "loss.png", "Training and validation loss per epoch.")
    return f"{plot}<table class=grid>{head}{body}</table>"


def _figures(folder: Path) -> str:
    known = [_figure(folder, name, text) for name, text in FIGURES.items()]
    others = sorted(
        p.name for p in folder.glob("*.png") if p.name not in FIGURES and p.name != "loss.png"
    )
    extra = [_figure(folder, name, name) for name in others]
    return "\n".join(f for f in known + extra if f) or "<p class=muted>No figures yet.</p>"


def _figure(folder: Path, name: str, caption: str) -> str:
    if not (folder / name).is_file():
        return ""
    src = _esc(name)
    return (
        f'<figure><a href="{src}"><img src="{src}" alt="{src}" loading="lazy"></a>'
        f"<figcaption><code>{src}</code>: {_esc(caption)}</figcaption></figure>"
    )


def _files(folder: Path) -> str:
    names = [*_DATA_FILES, EVALUATION_FILE, "explorer.html"]
    items = [
        f'<li><a href="{_esc(n)}">{_esc(n)}</a> ({(folder / n).stat().st_size:,} bytes)</li>'
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


def _summary(net: Any) -> str:
    from deepae.model import summary

    return summary(net)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is corrupt ({e}); rerun the command that writes it") from None


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
a.button { display: inline-block; background: #1f6feb; color: #fff; padding: 6px 14px;
  border-radius: 6px; text-decoration: none; font-weight: 600; margin-right: 8px; }
table { border-collapse: collapse; font-size: 14px; }
table.kv th { text-align: left; font-weight: 600; padding: 3px 14px 3px 0; vertical-align: top;
  color: #3a4450; white-space: nowrap; }
table.kv td { padding: 3px 0; }
table.kv table.kv { margin: 0; }
table.grid th, table.grid td { border-bottom: 1px solid #eceff3; padding: 3px 14px 3px 0;
  text-align: right; }
pre { font-size: 13px; background: #f7f9fb; padding: 10px; border-radius: 6px; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; border: 1px solid #eceff3; }
figcaption { font-size: 13px; color: #5d6875; }
"""
