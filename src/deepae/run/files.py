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

import contextlib
import csv
import errno
import fcntl
import io
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from deepae import fsio
from deepae.errors import ConfigError, RunError
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
MAX_HISTORY_BYTES = 16 * 2**20  # ~40 bytes an epoch: far more epochs than anyone trains
COMPLETE = "complete"
STATUSES = ("training", "interrupted", "failed", COMPLETE)
# Every file a run folder holds: what a command's output must never overwrite.
RUN_FILES = (*MODEL_FILES, CHECKPOINT_FILE, STATUS_FILE, HISTORY_FILE, METRICS_FILE,
             EVALUATION_FILE, EXPLORER_FILE, REPORT_FILE, *FIGURES, LOSS_FIGURE)  # fmt: skip


def output_path(out: str | Path | None, folder: str | Path, default: str,
                suffixes: Sequence[str]) -> Path:  # fmt: skip
    """Where a command that reads the run in `folder` writes its output: `out`, or
    folder/default. ConfigError (field "out") when the name does not end in one of
    `suffixes`, or when it is the name of a file of a run folder (RUN_FILES, evaluation-*.json)
    other than `default`: `--out RUN/config.json` must not destroy the run."""
    path = Path(out) if out is not None else Path(folder) / default
    name = path.name.lower()
    if path.suffix not in suffixes:
        raise ConfigError(
            f"out {path}: use a {' or '.join(suffixes)} file name, e.g. {Path(folder) / default}",
            field="out",
        )
    ours = name in RUN_FILES or (name.startswith("evaluation") and name.endswith(".json"))
    if ours and name != default.lower():
        raise ConfigError(
            f"out {path}: {path.name} is a file of a run folder and would be overwritten; "
            f"choose another name, e.g. {Path(folder) / default}",
            field="out",
        )
    return path


# -- run.json ---------------------------------------------------------------------------


def write_status(folder: str | Path, status: str, *, epochs_done: int, epochs: int,
                 step: int = 0, data: dict[str, Any] | None = None,
                 message: str | None = None, preset: str | None = None) -> None:  # fmt: skip
    """Record the run's state (atomically, like every file of a run); `preset`, the
    named config it started from, so that a resumed run's metrics.json names it too."""
    record = {
        "status": status,
        "epochs_done": epochs_done,
        "epochs": epochs,
        "step": step,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": data,
        "preset": preset,
    }
    if message:
        record["message"] = message
    fsio.write_json(Path(folder) / STATUS_FILE, record)


def read_status(folder: str | Path) -> dict[str, Any] | None:
    """The run's status record, or None for a folder without one."""
    if Path(folder).exists() and not Path(folder).is_dir():  # not "run.json is unreadable"
        raise RunError(f"{folder} is a file, not a run folder; give the path of a folder "
                       "`deepae train` wrote")  # fmt: skip
    path = Path(folder) / STATUS_FILE
    record = fsio.read_json(path, fix="delete it if the run finished", within=folder)
    if record is None:
        return None
    if not isinstance(record, dict) or record.get("status") not in STATUSES:
        raise RunError(f"{path} is not a deepae run status file (no status of "
                       f"{', '.join(STATUSES)}); restore it, or start a new run")  # fmt: skip
    data = record.get("data")
    bad = (["the record itself"] if not isinstance(data, dict | None) else
           [k for k, ok in _DATA_FIELDS.items() if data and data.get(k) is not None
            and not ok(data[k])])  # fmt: skip
    if bad:
        raise RunError(f"{path}: its data record is damaged ({bad[0]}), so the run's data is "
                       "unknown; restore it, or start a new run")  # fmt: skip
    return record


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


# What each value of run.json's data record may be (None: not recorded), as
# deepae.run.pipeline.data_record writes it and deepae.run.loading.load_data reads it.
_DATA_FIELDS: dict[str, Callable[[Any], bool]] = {
    **dict.fromkeys(
        ("name", "source", "path", "dataset", "data_dir", "sha256"), lambda v: isinstance(v, str)
    ),  # fmt: skip
    **dict.fromkeys(("n_train", "n_test", "seed"), _whole),
    "val_fraction": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1,
    "image_size": lambda v: (
        _whole(v) or (isinstance(v, list) and len(v) == 2 and all(_whole(d) for d in v))
    ),  # fmt: skip
}


def require_complete(folder: str | Path) -> None:
    """Raise a RunError that says how to continue, unless the run finished training."""
    record = read_status(folder)
    if record is None or record["status"] == COMPLETE:
        return
    where = f"after epoch {record.get('epochs_done')} of {record.get('epochs')}"
    if record.get("step"):
        where += f" (+{record['step']} steps)"
    why = f": {record['message']}" if record.get("message") else ""
    if (Path(folder) / CHECKPOINT_FILE).exists():
        advice = f"continue it with: deepae train --resume {folder}"
    else:  # it stopped before its first checkpoint: nothing to go on from
        advice = "it left no checkpoint to resume from: train it again"
    raise RunError(f"run {folder} is incomplete ({record['status']} {where}{why}); {advice}")


# -- history.csv ------------------------------------------------------------------------


HISTORY_COLUMNS = ["epoch", "loss", "val_loss", "seconds"]


def write_history(folder: str | Path, history: Sequence[EpochRecord]) -> None:
    """history.csv: epoch, loss, val_loss (empty when not validated), seconds."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for r in history:
        val = "" if r.val_loss is None else f"{r.val_loss:.6f}"
        writer.writerow([r.epoch, f"{r.loss:.6f}", val, f"{r.seconds:.3f}"])
    fsio.write_text(Path(folder) / HISTORY_FILE, buf.getvalue())


def _plausible(text: str) -> float:
    """A loss or a time of history.csv: finite and below 1e30 (deepae writes losses of
    images in [0, 1] and seconds; 1e308 would only break the loss figure's axis)."""
    value = float(text)
    if not abs(value) < 1e30:  # NaN too
        raise ValueError(f"{text!r} is no loss or time deepae writes")
    return value


def read_history(folder: str | Path) -> list[EpochRecord]:
    """The epochs of history.csv ([] without one), as the EpochRecords that wrote it
    (train_seconds is not stored: it reads as `seconds`)."""
    path = Path(folder) / HISTORY_FILE
    try:
        raw = fsio.read_bytes(path, max_bytes=MAX_HISTORY_BYTES, fix="delete it or retrain",
                              within=folder)  # fmt: skip
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8"), newline=""))
        rows = list(reader)
        if reader.fieldnames != HISTORY_COLUMNS:  # an empty file, or not deepae's
            raise ValueError(f"its header is {reader.fieldnames}, not {HISTORY_COLUMNS}")
        return [
            EpochRecord(
                epoch=int(r["epoch"]),
                loss=_plausible(r["loss"]),
                val_loss=_plausible(r["val_loss"]) if r["val_loss"] else None,
                seconds=_plausible(r["seconds"]),
                train_seconds=_plausible(r["seconds"]),
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
    fix = "delete it (the report then shows no metrics) or train the run again"
    value = fsio.read_json(path, fix=fix, within=folder)
    if value is not None and not isinstance(value, dict):
        raise RunError(f"{path} is not a deepae metrics file; {fix}")
    return value or {}


def evaluation_file(split: str, dataset: str | None = None) -> str:
    """evaluation.json for the test split of the run's own data, evaluation-SPLIT.json
    for another split; evaluation-DATASET-SPLIT.json for other data (its name made safe
    for a file name). Other data always names its split: without it, a dataset called
    `train` (a file train.npz) on its test split would overwrite the run's own
    evaluation-train.json, and `X-train` would take the name of X's train split."""
    if dataset is None:
        return "evaluation.json" if split == "test" else f"evaluation-{split}.json"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("._") or "data"
    return f"evaluation-{name}-{split}.json"


def write_evaluation(folder: str | Path, result: dict[str, Any],
                     dataset: str | None = None) -> Path:  # fmt: skip
    """Save `deepae.evaluate.evaluate_run`'s result (on other data than the run's own,
    `dataset` names it); returns the path."""
    path = Path(folder) / evaluation_file(result["split"], dataset)
    fsio.write_json(path, result)
    return path


def read_evaluation(folder: str | Path) -> dict[str, Any] | None:
    """evaluation.json (test split), or None without one."""
    path = Path(folder) / EVALUATION_FILE
    value = fsio.read_json(path, fix="rerun `deepae evaluate`", within=folder)
    if value is not None and not isinstance(value, dict):
        raise RunError(f"{path} is not a deepae evaluation file; rerun `deepae evaluate`")
    return value


# -- the run's lock, and leftovers ------------------------------------------------------

LOCK_FILE = ".lock"


@contextlib.contextmanager
def locked(folder: str | Path, *, tidy: bool = False) -> Iterator[Path]:
    """Hold the run folder's lock while the block runs (creating the folder if needed), so
    two processes never train into the same folder: the second gets a RunError at once.
    `tidy`: when the block fails, remove the folder if it holds nothing but the lock (a
    new run refused before it wrote anything), while the lock is still held: a process
    refused the lock never touches another's folder.

    An advisory `flock` on folder/.lock: the kernel drops it when the process ends, however
    it ends (kill -9 included), so a crashed run never leaves a stale lock behind. Readers
    that write into a finished run (evaluate, plot, explore) hold it shared (`reading`)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _open_lock(folder)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EINVAL):
            raise RunError(f"{folder / LOCK_FILE} is not a regular file (a link?); deepae "
                           "follows no links in a run folder: remove it") from None  # fmt: skip
        raise RunError(
            f"cannot write {folder}/: {e.strerror or e}; choose a writable runs folder "
            "(nothing already saved was changed)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RunError(
                f"another deepae process is training or reading {folder}; wait for it to "
                "finish, or choose another name",
                field="name",
            ) from None
        try:
            yield folder
        except BaseException:
            if tidy:
                remove_if_unused(folder)
            raise
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def reading(folder: str | Path) -> Iterator[Path]:
    """The run's lock, shared, for a command that reads a finished run and writes results
    into it (evaluation.json, figures, pages): readers run together, but not beside a
    training of the run, which would change the model under them (and a resume removes
    temporary files a reader is writing). Every run deepae trains has its lock file; a
    folder without one (a model saved by Autoencoder.save) is read without it, and gets
    none."""
    folder = Path(folder)
    try:
        fd = _open_lock(folder, create=False)
    except OSError:
        yield folder
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            raise RunError(f"another deepae process is training in {folder}; wait for it to "
                           "finish") from None  # fmt: skip
        yield folder
    finally:
        os.close(fd)


def _open_lock(folder: Path, *, create: bool = True) -> int:
    """folder/.lock opened (`create`: made if missing), never through a link (a crafted
    run folder could make deepae create a file elsewhere): OSError unless it is a regular
    file."""
    # O_NONBLOCK: a FIFO planted as .lock would block the open until a writer came.
    flags = (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(folder / LOCK_FILE, flags, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{LOCK_FILE} is not a regular file")
    return fd


def remove_if_unused(folder: str | Path) -> None:
    """Remove a run folder that holds nothing but its lock (a run refused before it wrote
    anything); anything else is left alone."""
    folder = Path(folder)
    try:
        if {entry.name for entry in folder.iterdir()} <= {LOCK_FILE}:
            (folder / LOCK_FILE).unlink(missing_ok=True)
            folder.rmdir()
    except OSError:  # gone, or something was written meanwhile: keep what is there
        pass


def empty_folder(folder: str | Path) -> None:
    """Remove everything in a run folder but its lock (call it holding `locked`). An
    overwrite killed halfway must leave neither the old run's checkpoint (a resume would
    take it up), nor a folder without run.json and config.json (which --overwrite refuses
    as no run's): the checkpoint goes first, those two last."""
    order = {CHECKPOINT_FILE: 0, STATUS_FILE: 2, CONFIG_FILE: 3}  # the rest: 1
    for entry in sorted(Path(folder).iterdir(), key=lambda e: order.get(e.name, 1)):
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
