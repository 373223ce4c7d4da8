"""Reloading a run: its model, the data it was trained on, and what is derived from them
(an evaluation, the codes as a file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deepae import evaluate as evaluation
from deepae import fsio
from deepae.api import Autoencoder
from deepae.data import (
    DATASETS,
    DEFAULT_VAL_FRACTION,
    LoadedData,
    load_dataset,
    own_split_error,
)
from deepae.errors import ConfigError, DataError
from deepae.run import files

Log = Callable[[str], None]


def load_run(folder: str | Path) -> Autoencoder:
    """The trained model of a run folder (or of `Autoencoder.save`'s folder); an unfinished
    run is a RunError that says how to continue it."""
    files.require_complete(folder)
    return Autoencoder.load(folder)


def load_run_data(folder: str | Path, *, log: Log | None = None,
                  **options: Any) -> tuple[Autoencoder, LoadedData]:  # fmt: skip
    """The trained model of a run folder and the data it was trained on, reloaded from
    run.json's record. `options` (dataset, data_dir, image_size, val_fraction, strict)
    override the record, e.g. to look at other data through the same model; data whose
    images do not fit the model is a DataError."""
    ae = load_run(folder)
    status = files.read_status(folder) or {}
    loaded = load_data(status.get("data"), log=log, **options)
    shape, want = loaded.x_train.shape[1:], ae.model_config.image_shape
    if int(np.prod(shape)) != ae.model_config.input_size:
        size = "x".join(map(str, want))
        raise DataError(
            f"{loaded.name} has {'x'.join(map(str, shape))} images but the model of {folder} "
            f"takes {size}; give image_size {size} or the dataset it was trained on",
            field="image_size",
        )
    return ae, loaded


def load_data(recorded: dict | None, *, dataset: str | None = None, data_dir=None,
              image_size=None, val_fraction: float | None = None, strict: bool = False,
              log: Log | None = None) -> LoadedData:  # fmt: skip
    """The dataset that `recorded` (a run's "data" record, see `data_record`) describes,
    with the given options on top; without a record or options: MNIST."""
    rec = recorded if isinstance(recorded, dict) else {}
    named = rec.get("dataset") or rec.get("name")
    if dataset is None and named and named not in DATASETS and not Path(named).exists():
        # Said of the run, not as if the user had mistyped a --dataset they never gave.
        raise DataError(f"{named}, the data the run trained on (run.json names it), is not "
                        "there any more: give where it is now as dataset",
                        field="dataset")  # fmt: skip
    dataset = dataset or named or "mnist"
    # A named dataset comes with its test split and is not a folder: these would do nothing.
    if dataset in DATASETS and val_fraction is not None:  # said before loading anything
        raise own_split_error(dataset)
    if dataset in DATASETS and strict:
        raise ConfigError(f"strict is for image folders; {dataset} is not one: leave it out",
                          field="strict")  # fmt: skip
    # The record describes its own dataset only (a path however it is spelled).
    mine = rec if rec and _same_dataset(dataset, named) else {}
    if data_dir is None and mine.get("data_dir") and Path(mine["data_dir"]).exists():
        data_dir = mine["data_dir"]  # else moved or deleted since: look in the usual places
    loaded = load_dataset(
        dataset, data_dir=data_dir, strict=strict, log=log,
        image_size=image_size if image_size is not None else mine.get("image_size"),
        val_fraction=_first(val_fraction, mine.get("val_fraction"), DEFAULT_VAL_FRACTION),
        seed=_first(mine.get("seed"), 0),
    )  # fmt: skip
    if val_fraction is not None and not loaded.held_out:  # a Keras-layout .npz, a pack
        packed = "; a pack's split is chosen when it is packed" if "pack" in loaded.source else ""
        raise own_split_error(dataset, packed)
    return loaded


def evaluate_run(folder: str | Path, *, split: str = "test", log: Log | None = None,
                 **data_options: Any) -> tuple[dict[str, Any], Path]:  # fmt: skip
    """Evaluate a finished run on a split of its data beside PCA (deepae.evaluate) and save
    the result in the run folder: evaluation[-SPLIT].json for the data it was trained on
    (what the report shows), evaluation-DATASET-SPLIT.json for other data, so that an
    evaluation elsewhere never replaces the run's own. Returns (result, path written).
    The run's lock is held shared (files.reading): a training of the run waits its turn."""
    with files.reading(folder):
        return _evaluate_run(folder, split, log, data_options)


def _evaluate_run(folder, split: str, log: Log | None, data_options: dict[str, Any]):
    ae, data = load_run_data(folder, log=log, **data_options)
    result = evaluation.evaluate_run(ae, data, split=split, progress=True)  # terminal only
    # Without --dataset the data is the run's own, reloaded from its record; with one, it
    # is the run's own if the record names it (and its size).
    record = (files.read_status(folder) or {}).get("data")
    own = (
        data_options.get("dataset") is None
        or not isinstance(record, dict)
        or (record.get("name") == data.name and record.get("n_train") in (None, len(data.x_train)))
    )
    return result, files.write_evaluation(folder, result, dataset=None if own else data.name)


def write_codes(path: str | Path, codes: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """Save codes (N, latent) as .npy, or as .csv with columns index, label (-1 when
    unlabelled), z0, z1, ...; the suffix of `path` chooses. Returns the path."""
    path = Path(path)
    if path.suffix == ".npy":
        with fsio.atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, codes)
    elif path.suffix == ".csv":
        header = "index,label," + ",".join(f"z{i}" for i in range(codes.shape[1]))
        labels = labels if labels is not None else np.full(len(codes), -1)
        lines = [header] + [
            f"{i},{int(lab)}," + ",".join(f"{v:.7g}" for v in row)
            for i, (lab, row) in enumerate(zip(labels, codes, strict=True))
        ]
        fsio.write_text(path, "\n".join(lines) + "\n")
    else:
        raise ConfigError(f"out {path}: use a .csv or .npy file name", field="out")
    return path


def _same_dataset(given: str, recorded: str | None) -> bool:
    """Whether `given` names the recorded dataset: the same name, or a path (relative, with
    ~, through a link) to the file or folder recorded by its absolute path."""
    if given == recorded:
        return True
    if not recorded or not Path(recorded).is_absolute():
        return False
    try:
        return Path(given).expanduser().resolve() == Path(recorded).resolve()
    except (OSError, RuntimeError):  # unreadable, or a link loop
        return False


def _first(*values):
    return next(v for v in values if v is not None)
