"""The run pipeline: train a model into a run folder, continue a stopped one, and reload a
finished one with its data. What each file holds is run/files.py's business; the figures
and pages are run/figures.py's, run/report.py's and deepae.explorer's.

Everything a run computes (history, codes, metrics, evaluation) is handed on in memory:
each file is written once per event, and nothing is read back that the run still holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepae import distributed, fsio, storage, tables, train
from deepae import evaluate as evaluation
from deepae.api import Autoencoder
from deepae.config import ModelConfig, TrainConfig, replace
from deepae.data import LoadedData, image_chunks
from deepae.errors import (
    ConfigError,
    DataError,
    DeepAEError,
    DistributedError,
    MissingExtraError,
    RunError,
    TrainingDiverged,
)
from deepae.run import checkpoint, figures, files, report
from deepae.run.loading import Log, load_data, load_run_data


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
    from the folder's checkpoint (`resume()` checks the run and its data first); `stop()`
    is polled before every step. `evaluate` writes evaluation.json (needs scikit-learn);
    `preset` is recorded in metrics.json. The folder is locked for the run's life: a
    second process training into it gets a RunError."""
    with locked(folder):
        return _train(Path(folder), model_config, train_config, data, log=log,
                      progress=progress, indices=indices, pairs=pairs, resume=resume,
                      stop=stop, evaluate=evaluate, preset=preset)  # fmt: skip


def _train(folder: Path, model_config: ModelConfig, train_config: TrainConfig,
           data: LoadedData, *, log: Log = print, progress: bool = True, indices=None,
           pairs=None, resume: bool = False, stop=None, evaluate: bool = True,
           preset: str | None = None, save_config: bool = False,
           clear: bool = False) -> RunResult:  # fmt: skip
    """train_run's body, with the folder's lock held. Everything is checked (arguments,
    data against the model and the device, the checkpoint) before the first file is
    written; `clear` (an overwrite) empties the folder then, not before."""
    if not distributed.world().is_main:  # a data-parallel run's other ranks write nothing
        return _follow(folder, model_config, train_config, data, resume=resume, stop=stop)
    indices, pairs = _figure_choices(indices, pairs, data)  # before, not after, training
    _check_fits(model_config, data)
    evaluate = evaluate and _can_evaluate(log)
    ae, trainer, record = _model(folder, model_config, train_config, data, resume=resume,
                                 log=log, progress=progress)  # fmt: skip

    def set_status(state_name: str, message: str | None = None) -> None:
        s = ae.train_state
        files.write_status(folder, state_name, epochs_done=s.epoch, epochs=train_config.epochs,
                           step=s.step, data=record, message=message, preset=preset)  # fmt: skip

    if resume:
        done = ae.train_state
        log(f"resuming {folder} after epoch {done.epoch} (+{done.step} steps)")
        fsio.remove_temporaries(folder)  # what a kill -9 mid-write left behind
        files.write_history(folder, done.history)  # the checkpoint's history is the truth
        # run.json before config.json: it holds the new target, so if config.json cannot
        # be written the run reads as unfinished, not as complete with a config ahead of it.
        set_status("training")
        if save_config:
            storage.save_config(folder, model_config, train_config)
    else:
        if clear:
            files.empty_folder(folder)  # the run it replaces goes only now
        storage.save_config(folder, model_config, train_config)  # first: then resumable
        set_status("training")

    def on_epoch_end(rec: train.EpochRecord, state: train.TrainState) -> None:
        # The epoch's line last: whatever befalls the output, the epoch is saved.
        _save_epoch(folder, ae, trainer, state, set_status)
        log(train.format_epoch(rec, train_config.epochs))

    try:
        _fit(ae, data, train_config, progress=progress, stop=stop, on_epoch_end=on_epoch_end)
    except TrainingDiverged as e:
        set_status("failed", str(e))
        raise TrainingDiverged(f"{e}. {_kept(folder, ae.train_state.epoch)}") from None
    except DistributedError as e:  # another rank died: what rank 0 saved stays resumable
        raise DistributedError(f"{e}; {_kept(folder, ae.train_state.epoch)}",
                               reported=e.reported) from None  # fmt: skip
    if ae.train_state.interrupted:
        checkpoint.save(folder, trainer, ae.train_state)
        set_status("interrupted")
        return RunResult(folder, {}, interrupted=True)
    result = _finish(folder, ae, data, evaluate=evaluate, indices=indices, pairs=pairs,
                     preset=preset, log=log, progress=progress)  # fmt: skip
    # Complete, but a collapsed run says so in run.json too (metrics.json: "degenerate").
    note = evaluation.collapse_note(result.metrics["dead_units"], model_config.latent_activation)
    set_status(files.COMPLETE, note or None)
    return result


def _save_epoch(folder: Path, ae: Autoencoder, trainer: train.Trainer, state: train.TrainState,
                set_status: Callable[[str], None]) -> None:  # fmt: skip
    """The checkpoint, history.csv and run.json after an epoch. The checkpoint first: it
    holds the history too, so if a later write fails (a full disk) a resume rewrites
    history.csv from it instead of trusting a file ahead of it. A failed write says what
    the run kept and how to go on from it ("free disk space" alone led to a new run)."""
    kept = state.epoch - 1  # the epoch of the checkpoint on disk, until this one is written
    try:
        checkpoint.save(folder, trainer, state)
        kept += 1
        files.write_history(folder, state.history)
        ae.train_state = state
        set_status("training")
    except DeepAEError as e:
        raise DeepAEError(f"{e}. {_kept(folder, kept)}", field=e.field) from None


def _figure_choices(indices, pairs, data: LoadedData) -> tuple:
    """(indices, pairs) checked against the data: the images of reconstructions.png and
    the pairs of interpolation.png."""
    indices = figures.check_indices(indices, len(data.x_train))
    if pairs is not None:
        from deepae.latent import check_pairs

        pairs = check_pairs(pairs, len(data.x_test))
    return indices, pairs


def _kept(folder: Path, epochs: int) -> str:
    """What a run that stopped on an error left to go on from."""
    if checkpoint.exists(folder):
        return (f"The checkpoint of the last good epoch ({epochs}) is kept in {folder}: "
                f"deepae train --resume {folder} goes on from it")  # fmt: skip
    return f"No epoch finished, so {folder} holds no checkpoint: start the run again"


def _model(folder: Path, model_config: ModelConfig, train_config: TrainConfig,
           data: LoadedData, *, resume: bool, log: Log | None = None,
           progress: bool = False) -> tuple[Autoencoder, train.Trainer, dict]:  # fmt: skip
    """The model, its trainer and the data's record (`data_record`), the same on every rank
    of a data-parallel run: settings and data compared first, the checkpoint (its tensors
    checked before use) read by rank 0 and sent to the others (deepae.distributed)."""
    world = distributed.world()
    record = data_record(data)
    settings = storage.config_dict(model_config, train_config)
    world.check_same("settings or data", json.dumps([settings, record["sha256"]], sort_keys=True))
    ae = Autoencoder(model_config, train_config)
    # A resume reads its checkpoint first: a damaged one is refused before the graph is
    # built, and the graph it names is the one to build (an older version, maybe).
    raw = world.share_bytes(checkpoint.read(folder) if world.is_main else None) if resume else None
    graph = checkpoint.graph_sha256(raw) if resume else None
    try:
        trainer = ae.trainer_for(data.x_train, log=log, progress=progress, graph_sha256=graph)
    except ConfigError as e:  # the processes cannot share its batches (World.check_fits)
        if not (resume and e.field == "batch_size" and world.size > 1):
            raise
        raise ConfigError(
            f"{str(e).split('; ')[0]}; a resumed run keeps its batch_size "
            f"({train_config.batch_size}): resume it in fewer processes (one always fits)",
            field="nproc",
        ) from None
    if resume:
        ae.train_state = checkpoint.load(folder, trainer, raw=raw)
    return ae, trainer, record


def _fit(ae: Autoencoder, data: LoadedData, train_config: TrainConfig, *, progress: bool,
         stop, on_epoch_end=None) -> None:  # fmt: skip
    # train_config.epochs is the run's total; initial_epoch (Keras' form) continues a
    # resumed run from the checkpoint's epoch, mid-epoch included. One call for every rank
    # of a data-parallel run: they must take the same steps.
    ae.fit(data.x_train, validation_data=data.x_test, epochs=train_config.epochs,
           initial_epoch=ae.train_state.epoch, shuffle=train_config.shuffle, verbose=0,
           progress=progress, on_epoch_end=on_epoch_end, stop=stop)  # fmt: skip


def _follow(folder: Path, model_config: ModelConfig, train_config: TrainConfig,
            data: LoadedData, *, resume: bool, stop=None) -> RunResult:  # fmt: skip
    """A data-parallel run's rank > 0: train beside rank 0, which writes and prints."""
    ae, _, _ = _model(folder, model_config, train_config, data, resume=resume)
    _fit(ae, data, train_config, progress=False, stop=stop)
    return RunResult(folder, {}, interrupted=ae.train_state.interrupted)


def locked(folder: str | Path, *, tidy: bool = False) -> contextlib.AbstractContextManager[Path]:
    """The run folder's lock (files.locked), taken by rank 0 alone in a data-parallel run
    (deepae.distributed): the other ranks write nothing into the folder."""
    if distributed.world().is_main:
        return files.locked(folder, tidy=tidy)
    return contextlib.nullcontext(Path(folder))


def _check_fits(model_config: ModelConfig, data: LoadedData) -> None:
    shape = data.x_train.shape[1:]
    if int(np.prod(shape)) != model_config.input_size:
        size = "x".join(map(str, model_config.image_shape))
        raise DataError(
            f"{data.name} has {'x'.join(map(str, shape))} images but the model takes {size}; "
            "give the dataset it was trained on, or an image_size of " + size,
            field="dataset",
        )


def _finish(folder: Path, ae: Autoencoder, data: LoadedData, *, evaluate: bool, indices,
            pairs, preset: str | None, log: Log, progress: bool = False) -> RunResult:  # fmt: skip
    """After the last epoch: weights, metrics, evaluation, figures and pages, in memory."""
    storage.save_weights(folder, ae.net)  # config.json was written when the run started
    codes = ae.encode(data.x_train)  # (N, latent): shared by metrics, evaluation, figures
    metrics = run_metrics(ae, codes, preset)
    warnings = dead_latent_warnings(metrics["dead_latent_fractions"], ae.model_config)
    for w in warnings:
        log(f"warning: {w}")
    written = [files.write_metrics(folder, metrics)]
    _drop_stale_evaluations(folder, evaluate, log)
    result = None
    if evaluate:
        result = evaluation.evaluate_run(ae, data, train_codes=codes, progress=progress)
        written.append(files.write_evaluation(folder, result))
        log(tables.format_table(result))
    history = ae.train_state.history  # every epoch of the run, resumed ones included
    written += figures.write_figures(folder, ae, data, codes=codes, history=history,
                                     indices=indices, pairs=pairs)  # fmt: skip
    written += write_pages(folder, ae, data, codes=codes, history=history, metrics=metrics,
                           evaluation=result)  # fmt: skip
    core = [folder / f for f in (*files.MODEL_FILES, files.HISTORY_FILE)]
    core += [folder / files.CHECKPOINT_FILE, folder / files.STATUS_FILE]
    return RunResult(folder, metrics, core + written, warnings, evaluation=result)


def _drop_stale_evaluations(folder: Path, evaluate: bool, log: Log) -> None:
    """Remove the evaluation files of the model before a resume, and say so: this run
    writes evaluation.json again when it evaluates; the others only `deepae evaluate` does."""
    for stale in sorted(folder.glob("evaluation*.json")):
        stale.unlink()
        again = "deepae evaluate writes it again"
        if evaluate and stale.name == files.EVALUATION_FILE:
            again = "evaluating the new model now"
        log(f"removed {stale.name}, which evaluated the model before this training ({again})")


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

    preset = DEFAULT_PRESET if preset is None else preset  # "" (an unset $PRESET): refused
    fields = {k: v for k, v in options.items() if k in MODEL_FIELDS | TRAIN_FIELDS}
    run_options = {k: v for k, v in options.items() if k not in fields}
    model_config, train_config = resolve(preset, **fields)
    if name is not None and distributed.world().is_main:  # a bad or taken name: before the data
        new_run_folder(runs_dir, name, overwrite=overwrite)
    if data is None:
        data = load_data(None, log=log, **(data_options or {}))
        log(f"data: {data.name} from {data.source} ({data.path})")
    h, w = data.x_train.shape[1:]
    model_config = replace(model_config, input_size=h * w, image_shape=(h, w))
    indices = figures.check_indices(run_options.pop("indices", None), len(data.x_train))
    _check_fits(model_config, data)
    main = distributed.world().is_main  # rank 0 names the folder (the default holds the time)
    made = False
    if main and name is None:  # claimed at once: two runs started in one second differ
        folder, made = _claim_default_folder(runs_dir, preset), True
    elif main:
        folder = new_run_folder(runs_dir, name, overwrite=overwrite)
        made = not folder.exists()
    folder = Path(distributed.world().share_text(str(folder) if main else None))
    # `tidy`: a run refused before a file was written leaves no empty folder behind; only
    # the process that holds the lock tidies, never one refused it.
    with locked(folder, tidy=made):
        if main:  # checked again under the lock: another process may have started
            new_run_folder(runs_dir, folder.name, overwrite=overwrite)
        # An overwrite empties the folder once everything is checked (_train).
        return _train(folder, model_config, train_config, data, log=log, preset=preset,
                      indices=indices, resume=False, clear=main, **run_options)  # fmt: skip


def _claim_default_folder(runs_dir: str | Path, preset: str | None) -> Path:
    """runs_dir/<preset>-<date>-<time>, made now (mkdir is atomic), or with -2, -3, ...
    after it when another run took that second's name."""
    first = Path(runs_dir) / _default_name(preset)  # taken or not: tried below
    for n in range(1, 1000):
        folder = first if n == 1 else first.with_name(f"{first.name}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:  # another run's folder (or any file of that name)
            continue
        except OSError as e:
            raise RunError(f"cannot write {folder}/: {e.strerror or e}; choose a writable runs "
                           "folder (nothing already saved was changed)") from None  # fmt: skip
    raise RunError(f"no free run folder named {first.name}-N in {runs_dir}; give --name")


def redraw(folder: str | Path, *, indices: Sequence[int] | None = None,
           pairs: Sequence[Sequence[int]] | None = None, log: Log | None = None,
           **data_options: Any) -> list[Path]:  # fmt: skip
    """Draw the figures, explorer and report of a finished run again (from its saved model,
    history and data), holding the run's lock shared (files.reading); returns the paths
    written."""
    with files.reading(folder):
        return _redraw(folder, indices, pairs, log, data_options)


def _redraw(folder, indices, pairs, log: Log | None, data_options: dict[str, Any]) -> list[Path]:
    ae, data = load_run_data(folder, log=log, **data_options)
    # Every file the pages read, read first: a damaged one stops the redraw before it
    # has replaced any figure.
    history, metrics = files.read_history(folder), files.read_metrics(folder)
    evaluation = files.read_evaluation(folder)
    paths = figures.write_figures(folder, ae, data, history=history, indices=indices, pairs=pairs)
    return paths + write_pages(folder, ae, data, history=history, metrics=metrics,
                               evaluation=evaluation)  # fmt: skip


def new_run_folder(runs_dir: str | Path, name: str | None = None, *, preset: str | None = None,
                   overwrite: bool = False) -> Path:  # fmt: skip
    """The folder of a new run: runs_dir/name (default: <preset>-<date>-<time>). An existing
    non-empty folder is a ConfigError unless `overwrite` (then `start` empties it, under the
    run's lock, once everything else is checked). Creates nothing."""
    name = _default_name(preset) if name is None else name
    if name.strip() in ("", ".", "..") or "/" in name or "\0" in name or name != name.strip():
        raise ConfigError(
            f"name {name!r} is not a folder name: give one name (no '/', not '.' or '..', no "
            "space at either end); "
            "the run goes in runs_dir/name",
            field="name",
        )
    folder = Path(runs_dir) / name
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise ConfigError(f"{folder} exists and is not a folder; choose another name", field="name")
    if not _has_run_files(folder):
        return folder
    if not overwrite:
        raise ConfigError(
            f"run folder {folder} already exists; choose another name or overwrite it",
            field="name",
        )
    # An overwrite empties the folder: only a deepae run's, never one reached by a link
    # (it would empty the folder the link points to) or one of other files.
    if folder.is_symlink():
        raise ConfigError(f"{folder} is a link; --overwrite empties no folder through a link: "
                          "remove the link or choose another name", field="name")  # fmt: skip
    if not any((folder / f).exists() for f in (files.STATUS_FILE, storage.CONFIG_FILE)):
        raise ConfigError(f"{folder} holds files but no deepae run (no {files.STATUS_FILE} or "
                          f"{storage.CONFIG_FILE}); --overwrite empties run folders only: "
                          "choose another name", field="name")  # fmt: skip
    return folder


def _default_name(preset: str | None) -> str:
    return time.strftime(f"{preset or 'article'}-%Y%m%d-%H%M%S")


def _has_run_files(folder: Path) -> bool:
    return folder.is_dir() and any(e.name != files.LOCK_FILE for e in folder.iterdir())


# -- what a run records -----------------------------------------------------------------


def run_metrics(ae: Autoencoder, codes: np.ndarray, preset: str | None = None) -> dict[str, Any]:
    """The numbers `metrics.json` holds for a trained model."""
    history = ae.train_state.history
    epoch_seconds = [r.train_seconds for r in history]
    trainer = ae.trainer
    fractions = evaluation.zero_fractions(codes)
    dead = evaluation.dead_unit_indices(fractions)
    gpu_step = trainer.engine.gpu_step if trainer and trainer.engine else None
    return {
        "epochs": len(history),
        "loss": history[-1].loss if history else None,
        "val_loss": history[-1].val_loss if history else None,
        "loss_name": ae.train_config.loss,
        "dead_latent_fractions": fractions,
        # Any dead latent unit makes the run degenerate: the pages show a banner.
        "degenerate": bool(dead),
        "dead_units": dead,
        "train_seconds": sum(epoch_seconds),
        "median_epoch_seconds": statistics.median(epoch_seconds) if epoch_seconds else None,
        "engine": trainer.engine_name if trainer else None,
        # the fused engine's compiled step (deepae.native) or its Python calls
        "native_step": bool(trainer and trainer.engine and trainer.engine.native is not None),
        # what ran each step whole, gather to Adam: "compiled" (deepae.native_train),
        # "cuda_graph" (deepae.cuda_graph) or None (the step a call at a time)
        "whole_step": trainer.whole_step.name if trainer and trainer.whole_step else None,
        # the article's step in Triton kernels on CUDA (deepae.triton_step; DEEPAE_TRITON=0: never)
        "triton_step": gpu_step is not None and not gpu_step.failed,
        "precision": trainer.precision if trainer else None,  # what precision 'auto' became
        "device": str(trainer.device) if trainer else None,
        "threads": ae.threads,  # PyTorch's CPU threads (deepae.threads); not in config.json
        "preset": preset,
    }


def data_record(data: LoadedData) -> dict[str, Any]:
    """What run.json says about the data a run was trained on: where it came from, how
    deepae.data.load_dataset loads it again (`load_args`), how many images, and the
    SHA-256 of its arrays (so a resume can tell its own data from other data)."""
    path = data.path
    record = {"name": data.name, "source": data.source, "path": None if path is None else str(path)}
    record |= {"n_train": len(data.x_train), "n_test": len(data.x_test)}
    return {**record, **(data.load_args or {}), "sha256": data_fingerprint(data)}


def data_fingerprint(data: LoadedData) -> str:
    """SHA-256 over the dtype, shape and bytes of x_train, y_train, x_test and y_test."""
    digest = hashlib.sha256()
    for a in (data.x_train, data.y_train, data.x_test, data.y_test):
        if a is None:
            digest.update(b"none;")
            continue
        digest.update(f"{a.dtype.str}{tuple(a.shape)};".encode())
        for chunk in image_chunks(a):  # images left in their file: read a chunk at a time
            digest.update(memoryview(np.ascontiguousarray(chunk)).cast("B"))
    return digest.hexdigest()


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


def retry_command(folder: str | Path, argv: Sequence[str]) -> str:
    """For a run in `folder` whose latent space collapsed: the `deepae train` command line
    to try instead, from the user's own arguments `argv` (those after `deepae`), in a new
    folder (without --name and --overwrite): with --latent-activation linear where the
    latent layer was ReLU, else with the next --seed."""
    import shlex

    model_config, train_config = storage.load_config(folder)
    fix = ("--latent-activation", "linear")
    if model_config.latent_activation != "relu":
        fix = ("--seed", str(train_config.seed + 1))
    dropped = {"--name": 1, "--overwrite": 0, fix[0]: 1}  # flag -> how many values follow
    kept, skip = [], 0
    for token in argv:
        flag = token.split("=", 1)[0]
        if skip:
            skip -= 1
        elif flag in dropped:
            skip = 0 if "=" in token else dropped[flag]
        else:
            kept.append(token)
    return shlex.join(["deepae", *kept, *fix])


def _can_evaluate(log: Log) -> bool:
    try:
        evaluation.require_sklearn()
    except MissingExtraError as e:
        log(f"warning: {e}; training without the final evaluation")
        return False
    return True
