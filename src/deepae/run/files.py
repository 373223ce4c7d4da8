"""A run folder's files: every name, and the one place each is written and read.

runs/<name>/
  config.json, model.safetensors   the model (deepae.storage)
  run.json                         where training stands, and the data it trains on
  checkpoint.safetensors           weights + optimizer + position (run/checkpoint.py)
  history.csv                      epoch, loss, val_loss, seconds
  metrics.json                     final losses, dead latent units, timings
  evaluation.json                  test-set metrics beside PCA (deepae.evaluate)
  latent.png, reconstructions.png, loss.png, manifold.png, interpolation.png
  explorer.html, report.html

run.json says whether a run finished, so every command can tell a finished run from one
that crashed, was interrupted or diverged, and say how to continue it:

    {"status": "training" | "interrupted" | "failed" | "complete",
     "epochs_done": 3, "epochs": 10, "step": 512, "message": "...", "data": {...}}

A folder without run.json is a plain saved model (`Autoencoder.save`): complete.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepae import fsio
from deepae.errors import RunError
from deepae.storage import CONFIG_FILE, WEIGHTS_FILE
from deepae.train import EpochRecord

STATUS_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
EVALUATION_FILE = "evaluation.json"
EXPLORER_FILE = "explorer.html"
REPORT_FILE = "report.html"
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
LOSS_FIGURE = "loss.png"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE)
COMPLETE = "complete"


# -- run.json ---------------------------------------------------------------------------


def write_status(folder: str | Path, status: str, *, epochs_done: int, epochs: int,
                 step: int = 0, data: dict[str, Any] | None = None,
                 message: str | None = None) -> None:  # fmt: skip
    """Record the run's state (atomically, like every file of a run)."""
    record = {
        "status": status,
        "epochs_done": epochs_done,
        "epochs": epochs,
        "step": step,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": data,
    }
    if message:
        record["message"] = message
    fsio.write_json(Path(folder) / STATUS_FILE, record)


def read_status(folder: str | Path) -> dict[str, Any] | None:
    """The run's status record, or None for a folder without one."""
    path = Path(folder) / STATUS_FILE
    record = fsio.read_json(path, fix="delete it if the run finished")
    if record is not None and (not isinstance(record, dict) or "status" not in record):
        raise RunError(f"{path} is not a deepae run status file")
    return record


def require_complete(folder: str | Path) -> None:
    """Raise a RunError that says how to continue, unless the run finished training."""
    record = read_status(folder)
    if record is None or record["status"] == COMPLETE:
        return
    where = f"after epoch {record.get('epochs_done')} of {record.get('epochs')}"
    if record.get("step"):
        where += f" (+{record['step']} steps)"
    why = f": {record['message']}" if record.get("message") else ""
    raise RunError(
        f"run {folder} is incomplete ({record['status']} {where}{why}); "
        f"continue it with: deepae train --resume {folder}"
    )


# -- history.csv ------------------------------------------------------------------------


def write_history(folder: str | Path, history: Sequence[EpochRecord]) -> None:
    """history.csv: epoch, loss, val_loss (empty when not validated), seconds."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", "loss", "val_loss", "seconds"])
    for r in history:
        val = "" if r.val_loss is None else f"{r.val_loss:.6f}"
        writer.writerow([r.epoch, f"{r.loss:.6f}", val, f"{r.seconds:.3f}"])
    fsio.write_text(Path(folder) / HISTORY_FILE, buf.getvalue())


def read_history(folder: str | Path) -> list[EpochRecord]:
    """The epochs of history.csv ([] without one), as the EpochRecords that wrote it
    (train_seconds is not stored: it reads as `seconds`)."""
    path = Path(folder) / HISTORY_FILE
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [
            EpochRecord(
                epoch=int(r["epoch"]),
                loss=float(r["loss"]),
                val_loss=float(r["val_loss"]) if r["val_loss"] else None,
                seconds=float(r["seconds"]),
                train_seconds=float(r["seconds"]),
            )
            for r in rows
        ]
    except FileNotFoundError:
        return []
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, csv.Error) as e:
        raise RunError(f"{path} is corrupt ({e}); delete it or retrain") from None


# -- metrics.json and evaluation.json ---------------------------------------------------


def write_metrics(folder: str | Path, metrics: dict[str, Any]) -> Path:
    fsio.write_json(Path(folder) / METRICS_FILE, metrics)
    return Path(folder) / METRICS_FILE


def read_metrics(folder: str | Path) -> dict[str, Any]:
    """metrics.json as a dict ({} without one)."""
    path = Path(folder) / METRICS_FILE
    value = fsio.read_json(path, fix="rerun `deepae plot` or retrain")
    if value is not None and not isinstance(value, dict):
        raise RunError(f"{path} is not a deepae metrics file; rerun `deepae plot` or retrain")
    return value or {}


def evaluation_file(split: str) -> str:
    """evaluation.json for the test split, evaluation-SPLIT.json for another."""
    return EVALUATION_FILE if split == "test" else f"evaluation-{split}.json"


def write_evaluation(folder: str | Path, result: dict[str, Any]) -> Path:
    """Save `deepae.evaluate.evaluate_run`'s result; returns the path."""
    path = Path(folder) / evaluation_file(result["split"])
    fsio.write_json(path, result)
    return path


def read_evaluation(folder: str | Path) -> dict[str, Any] | None:
    """evaluation.json (test split), or None without one."""
    path = Path(folder) / EVALUATION_FILE
    value = fsio.read_json(path, fix="rerun `deepae evaluate`")
    if value is not None and not isinstance(value, dict):
        raise RunError(f"{path} is not a deepae evaluation file; rerun `deepae evaluate`")
    return value
