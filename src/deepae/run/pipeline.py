"""The run pipeline: train a model into a run folder, continue a stopped one, and reload a
finished one with its data. What each file holds is run/files.py's business; the figures
and pages are run/figures.py's, run/report.py's and deepae.explorer's.

Everything a run computes (history, codes, metrics, evaluation) is handed on in memory:
each file is written once per event, and nothing is read back that the run still holds.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepae import evaluate as evaluation
from deepae import fsio, storage, train
from deepae.api import Autoencoder
from deepae.config import ModelConfig, TrainConfig, replace
from deepae.data import DEFAULT_VAL_FRACTION, LoadedData, load_dataset
from deepae.errors import ConfigError, DataError, MissingExtraError, RunError, TrainingDiverged
from deepae.run import checkpoint, figures, files, report

Log = Callable[[str], None]
RESUME_CHANGES = ("epochs", "device")  # the config fields a resumed run may change


@dataclass
class RunResult:
    folder: Path
    metrics: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False  # stopped early by `stop()`; a checkpoint was saved
    evaluation: dict[str, Any] | None = None


def train_run(
    folder: str | Path,
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: LoadedData,
    *,
    log: Log = print,
    progress: bool = True,
    indices: Sequence[int] | None = None,
    pairs: Sequence[Sequence[int]] | None = None,
    resume: bool = False,
    stop: Callable[[], bool] | None = None,
    evaluate: bool = True,
    preset: str | None = None,
) -> RunResult:
    """Train on `data`, then save the model, history, metrics, evaluation, figures, explorer
    and report into `folder`. `log` receives the epoch lines, tables and warnings;
    `indices` are the training images of reconstructions.png (default: the article's
    110-119), `pairs` the test-image index pairs of interpolation.png. `resume` continues
    from the folder's checkpoint (see `resume` for the checks that come first); `stop()`
    is polled before every step. `evaluate` writes evaluation.json (needs scikit-learn);
    `preset` is recorded in metrics.json."""
    folder = Path(folder)
    indices = figures.check_indices(indices, len(data.x_train))  # before, not after, training
    if pairs is not None:
        from deepae.latent import check_pairs

        pairs = check_pairs(pairs, len(data.x_test))
    evaluate = evaluate and _can_evaluate(log)
    ae = Autoencoder(model_config, train_config)
    trainer = ae.trainer_for(len(data.x_train))
    record = data_record(data)
    if resume:
        ae.train_state = checkpoint.load(folder, trainer)
        done = ae.train_state
        log(f"resuming {folder} after epoch {done.epoch} (+{done.step} steps)")
    else:
        storage.save_config(folder, model_config, train_config)  # first: any crash is resumable

    def set_status(state_name: str, message: str | None = None) -> None:
        s = ae.train_state
        files.write_status(folder, state_name, epochs_done=s.epoch, epochs=train_config.epochs,
                           step=s.step, data=record, message=message)  # fmt: skip

    set_status("training")

    def on_epoch_end(rec: train.EpochRecord, state: train.TrainState) -> None:
        log(train.format_epoch(rec, train_config.epochs))
        files.write_history(folder, state.history)
        checkpoint.save(folder, trainer, state)
        ae.train_state = state
        set_status("training")

    try:
        ae.fit(data.x_train, data.x_test, verbose=0, progress=progress,
               on_epoch_end=on_epoch_end, stop=stop)  # fmt: skip
    except TrainingDiverged as e:
        set_status("failed", str(e))
        raise TrainingDiverged(
            f"{e}. The checkpoint of the last good epoch ({ae.train_state.epoch}) is kept in "
            f"{folder}"
        ) from None
    if ae.train_state.interrupted:
        checkpoint.save(folder, trainer, ae.train_state)
        set_status("interrupted")
        return RunResult(folder, {}, interrupted=True)
    result = _finish(folder, ae, data, evaluate=evaluate, indices=indices, pairs=pairs,
                     preset=preset, log=log)  # fmt: skip
    set_status(files.COMPLETE)
    return result


def _finish(folder: Path, ae: Autoencoder, data: LoadedData, *, evaluate: bool, indices,
            pairs, preset: str | None, log: Log) -> RunResult:  # fmt: skip
    """After the last epoch: weights, metrics, evaluation, figures and pages, in memory."""
    storage.save_weights(folder, ae.net)  # config.json was written when the run started
    codes = ae.encode(data.x_train)  # (N, latent): shared by metrics, evaluation, figures
    metrics = run_metrics(ae, codes, preset)
    warnings = dead_latent_warnings(metrics["dead_latent_fractions"], ae.model_config)
    for w in warnings:
        log(f"warning: {w}")
    written = [files.write_metrics(folder, metrics)]
    result = None
    if evaluate:
        result = evaluation.evaluate_run(ae, data, train_codes=codes)
        written.append(files.write_evaluation(folder, result))
        log(evaluation.format_table(result))
    written += figures.write_figures(folder, ae, data, codes=codes, history=ae.history,
                                     indices=indices, pairs=pairs)  # fmt: skip
    written += write_pages(folder, ae, data, codes=codes, history=ae.history, metrics=metrics,
                           evaluation=result)  # fmt: skip
    core = [folder / f for f in (*files.MODEL_FILES, files.HISTORY_FILE)]
    core += [folder / files.CHECKPOINT_FILE, folder / files.STATUS_FILE]
    return RunResult(folder, metrics, core + written, warnings, evaluation=result)


def write_pages(folder: str | Path, ae: Autoencoder, data: LoadedData, *,
                codes: np.ndarray | None = None, history=None, metrics=None,
                evaluation=None) -> list[Path]:  # fmt: skip
    """Write explorer.html and report.html into `folder` (figures first: the report shows
    them). What is not given (history, metrics, evaluation) is read from the folder."""
    from deepae.explorer import write_explorer

    folder = Path(folder)
    page = write_explorer(folder, ae, data, codes=codes)
    inputs = report.ReportInputs(
        summary=ae.summary(print_fn=None),
        config=storage.config_dict(ae.model_config, ae.train_config),
        history=files.read_history(folder) if history is None else history,
        metrics=files.read_metrics(folder) if metrics is None else metrics,
        evaluation=files.read_evaluation(folder) if evaluation is None else evaluation,
        data_name=data.name,
    )
    return [page, report.write_report(folder, inputs)]


def start(runs_dir: str | Path = "runs", name: str | None = None, *, preset: str | None = None,
          overwrite: bool = False, data: LoadedData | None = None,
          data_options: dict[str, Any] | None = None, log: Log = print,
          **options: Any) -> RunResult:  # fmt: skip
    """Train a new run as `deepae train` does: the configs of `preset` (default: the
    article's) with `options` on top (config fields; None leaves a field alone, and the
    keyword arguments of `train_run`: progress, stop, evaluate, indices, pairs), on `data`
    or on the dataset `data_options` name (see `load_data`; default MNIST), in the folder
    runs_dir/name. The model's input size and image shape come from the data. Everything
    is checked before the folder is touched; `overwrite` replaces an existing run."""
    from deepae.config import DEFAULT_PRESET, MODEL_FIELDS, TRAIN_FIELDS, resolve

    preset = preset or DEFAULT_PRESET
    fields = {k: v for k, v in options.items() if k in MODEL_FIELDS | TRAIN_FIELDS}
    run_options = {k: v for k, v in options.items() if k not in fields}
    model_config, train_config = resolve(preset, **fields)
    if data is None:
        data = load_data(None, log=log, **(data_options or {}))
        log(f"data: {data.name} from {data.source} ({data.path})")
    h, w = data.x_train.shape[1:]
    model_config = replace(model_config, input_size=h * w, image_shape=(h, w))
    indices = figures.check_indices(run_options.pop("indices", None), len(data.x_train))
    folder = new_run_folder(runs_dir, name, preset=preset, overwrite=overwrite)
    return train_run(folder, model_config, train_config, data, log=log, preset=preset,
                     indices=indices, **run_options)  # fmt: skip


def redraw(folder: str | Path, *, indices: Sequence[int] | None = None,
           pairs: Sequence[Sequence[int]] | None = None, log: Log | None = None,
           **data_options: Any) -> list[Path]:  # fmt: skip
    """Draw the figures, explorer and report of a finished run again (from its saved model,
    history and data); returns the paths written."""
    ae, data = load_run_data(folder, log=log, **data_options)
    history = files.read_history(folder)
    paths = figures.write_figures(folder, ae, data, history=history, indices=indices, pairs=pairs)
    return paths + write_pages(folder, ae, data)


def evaluate_run(folder: str | Path, *, split: str = "test", log: Log | None = None,
                 **data_options: Any) -> tuple[dict[str, Any], Path]:  # fmt: skip
    """Evaluate a finished run on a split of its data beside PCA (deepae.evaluate) and save
    the result in the run folder. Returns (result, path of the file written)."""
    ae, data = load_run_data(folder, log=log, **data_options)
    result = evaluation.evaluate_run(ae, data, split=split)
    return result, files.write_evaluation(folder, result)


# -- continuing and reloading runs ----------------------------------------------------------


def resume(folder: str | Path, data: LoadedData | None = None, *,
           data_options: dict[str, Any] | None = None, log: Log = print,
           progress: bool = True, stop: Callable[[], bool] | None = None,
           evaluate: bool = True, indices: Sequence[int] | None = None,
           pairs: Sequence[Sequence[int]] | None = None, **changes: Any) -> RunResult:  # fmt: skip
    """Continue the stopped run in `folder` from its checkpoint, on the data it was trained
    on (`data`, or reloaded from its record in run.json with `data_options` on top, see
    `load_data`). `changes` may set `epochs`
    (train further; not with a schedule whose shape depends on the total) and `device`.
    Raises RunError (no checkpoint, nothing to do) or ConfigError (a change not allowed)."""
    folder = Path(folder)
    record = files.read_status(folder) if folder.is_dir() else None
    if record is None or not checkpoint.exists(folder):
        raise RunError(f"{folder} has no checkpoint to resume from; give a run folder that "
                       "`deepae train` wrote")  # fmt: skip
    model_config, train_config = storage.load_config(folder)
    given = {k: v for k, v in changes.items() if v is not None}
    fixed = sorted(set(given) - set(RESUME_CHANGES))
    if fixed:
        raise ConfigError(
            f"a resumed run continues its saved configuration; only {' and '.join(RESUME_CHANGES)}"
            f" may change (got {', '.join(fixed)})",
            field=fixed[0],
        )
    extending = given.get("epochs", train_config.epochs) != train_config.epochs
    if extending and train_config.schedule != "constant":
        raise ConfigError(
            f"epochs cannot change on resume with the {train_config.schedule} schedule (its "
            "shape depends on the total); start a new run",
            field="epochs",
        )
    train_config = replace(train_config, **given)
    if record["status"] == files.COMPLETE and record["epochs_done"] >= train_config.epochs:
        raise ConfigError(
            f"run {folder} is complete ({record['epochs_done']} epochs); give a larger epochs "
            "to train it further",
            field="epochs",
        )
    if data is None:
        data = load_data(record.get("data"), log=log, **(data_options or {}))
    return train_run(folder, model_config, train_config, data, log=log, progress=progress,
                     indices=indices, pairs=pairs, resume=True, stop=stop,
                     evaluate=evaluate)  # fmt: skip


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
    dataset = dataset or named or "mnist"
    mine = rec if rec and dataset == named else {}  # the record describes its dataset only
    if data_dir is None and mine.get("data_dir") and Path(mine["data_dir"]).exists():
        data_dir = mine["data_dir"]  # else moved or deleted since: look in the usual places
    return load_dataset(
        dataset, data_dir=data_dir, strict=strict, log=log,
        image_size=image_size if image_size is not None else mine.get("image_size"),
        val_fraction=_first(val_fraction, mine.get("val_fraction"), DEFAULT_VAL_FRACTION),
        seed=_first(mine.get("seed"), 0),
    )  # fmt: skip


def new_run_folder(runs_dir: str | Path, name: str | None = None, *, preset: str | None = None,
                   overwrite: bool = False) -> Path:  # fmt: skip
    """The folder of a new run: runs_dir/name (default: <preset>-<date>-<time>). An existing
    non-empty folder is a ConfigError unless `overwrite`, which empties it first."""
    name = name or time.strftime(f"{preset or 'article'}-%Y%m%d-%H%M%S")
    folder = Path(runs_dir) / name
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"run folder {folder} already exists; choose another name or overwrite it",
                field="name",
            )
        shutil.rmtree(folder)
    return folder


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


# -- what a run records -----------------------------------------------------------------


def run_metrics(ae: Autoencoder, codes: np.ndarray, preset: str | None = None) -> dict[str, Any]:
    """The numbers `metrics.json` holds for a trained model."""
    history = ae.history
    epoch_seconds = [r.train_seconds for r in history]
    trainer = ae.trainer
    return {
        "epochs": len(history),
        "loss": history[-1].loss if history else None,
        "val_loss": history[-1].val_loss if history else None,
        "loss_name": ae.train_config.loss,
        "dead_latent_fractions": evaluation.zero_fractions(codes),
        "train_seconds": sum(epoch_seconds),
        "median_epoch_seconds": statistics.median(epoch_seconds) if epoch_seconds else None,
        "engine": trainer.engine_name if trainer else None,
        "device": str(trainer.device) if trainer else None,
        "preset": preset,
    }


def data_record(data: LoadedData) -> dict[str, Any]:
    """What run.json says about the data a run was trained on: where it came from, and
    (`load_args`) how deepae.data.load_dataset loads it again."""
    path = data.path
    record = {"name": data.name, "source": data.source, "path": None if path is None else str(path)}
    return {**record, **(data.load_args or {})}


def dead_latent_warnings(fractions: Sequence[float], model_config: ModelConfig) -> list[str]:
    """One warning per dead latent unit, with the fix."""
    out = []
    for unit, frac in enumerate(fractions):
        if frac > evaluation.DEAD_THRESHOLD:
            hint = (
                "train with latent_activation 'linear' (or another seed)"
                if model_config.latent_activation == "relu"
                else "try another seed"
            )
            out.append(
                f"latent unit {unit} is dead: exactly 0 for {frac:.1%} of training images, "
                f"so the latent space has collapsed; {hint}"
            )
    return out


def _can_evaluate(log: Log) -> bool:
    try:
        evaluation.require_sklearn()
    except MissingExtraError as e:
        log(f"warning: {e}; training without the final evaluation")
        return False
    return True


def _first(*values):
    return next(v for v in values if v is not None)
