"""Continuing a stopped run: the checks that come before anything is written, then the
pipeline's own training loop, with the run's lock held."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepae import storage
from deepae.config import TrainConfig, replace
from deepae.data import LoadedData
from deepae.errors import ConfigError, DataError, RunError
from deepae.run import checkpoint, files
from deepae.run.loading import load_data
from deepae.run.pipeline import Log, RunResult, _train, data_record, locked

RESUME_CHANGES = ("epochs", "device")  # the config fields a resumed run may change


def resume(folder: str | Path, data: LoadedData | None = None, *,
           data_options: dict[str, Any] | None = None, log: Log = print,
           progress: bool = True, stop: Callable[[], bool] | None = None,
           evaluate: bool = True, indices: Sequence[int] | None = None,
           pairs: Sequence[Sequence[int]] | None = None, **changes: Any) -> RunResult:  # fmt: skip
    """Continue the stopped run in `folder` from its checkpoint, up to the epoch count in
    run.json (an interrupted extension finishes every epoch it was asked for), on the data
    it was trained on (`data`, or reloaded from its record in run.json with `data_options`
    on top, see `load_data`; other data is refused by its SHA-256). `changes` may set
    `epochs` (train further; not below the epochs done, nor with a schedule whose shape
    depends on the total) and `device`. Everything is checked before anything is written:
    a refused resume leaves the run exactly as it was. Raises RunError (no checkpoint, a
    damaged one, another process training it), DataError (other data) or ConfigError."""
    folder = Path(folder)
    record = _resumable(folder)
    saved_model, saved_train = storage.load_config(folder)
    given = {k: v for k, v in changes.items() if v is not None}
    fixed = sorted(set(given) - set(RESUME_CHANGES))
    if fixed:
        raise ConfigError(
            f"a resumed run continues its saved configuration; only {' and '.join(RESUME_CHANGES)}"
            f" may change (got {', '.join(fixed)})",
            field=fixed[0],
        )
    done, recorded = (_count(record, key, folder) for key in ("epochs_done", "epochs"))
    target = given.pop("epochs", max(recorded, saved_train.epochs))
    _check_target(folder, saved_train, target, done, record["status"])
    if record.get("step") and target <= done:  # the checkpoint is inside epoch done + 1
        raise ConfigError(f"{folder} stopped inside epoch {done + 1}; give epochs of at least "
                          f"{done + 1} to finish it", field="epochs")  # fmt: skip
    _check_data_recorded(folder, record.get("data"))
    train_config = replace(saved_train, epochs=target, **given)
    # The run's data reloaded from its record, unless the caller gave data or options.
    own = data is None and not any(v not in (None, False) for v in (data_options or {}).values())
    if data is None:
        data = load_data(record.get("data"), log=log, **(data_options or {}))
    _check_same_data(folder, record.get("data"), data, own=own)
    with locked(folder):  # rank 0's alone in a data-parallel run
        return _train(folder, saved_model, train_config, data, log=log, progress=progress,
                      indices=indices, pairs=pairs, resume=True, stop=stop, evaluate=evaluate,
                      preset=_preset(record), save_config=train_config != saved_train)  # fmt: skip


def _resumable(folder: Path) -> dict[str, Any]:
    """run.json's record of a run that has a checkpoint; else a RunError that says what is
    missing: a run that stopped in its first epoch has nothing to go on from (train it
    again), one without run.json cannot say what data it trains on."""
    record = files.read_status(folder) if folder.is_dir() else None
    if record is not None and not checkpoint.exists(folder):
        done = record.get("epochs_done")
        if done == 0 and not record.get("step"):
            raise RunError(f"run {folder} stopped ({record['status']}) before its first epoch "
                           "ended, so it left no checkpoint to resume from: train it again "
                           "(--overwrite replaces it)")  # fmt: skip
        raise RunError(f"{folder}/{files.CHECKPOINT_FILE} is missing, so the run cannot go on "
                       f"after epoch {done}: restore it, or train the run again")  # fmt: skip
    if record is None and checkpoint.exists(folder):
        raise RunError(f"{folder}/{files.STATUS_FILE} is missing, so the data the run trains "
                       "on is unknown and it cannot be resumed: restore it, or train the run "
                       "again")  # fmt: skip
    if record is None:
        raise RunError(f"{folder} has no checkpoint to resume from; give a run folder that "
                       "`deepae train` wrote")  # fmt: skip
    return record


def _count(record: dict, key: str, folder: Path) -> int:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RunError(f"{folder}/{files.STATUS_FILE}: {key} is {value!r}, not a count; the run "
                       "status is damaged: restore it, or start a new run")  # fmt: skip
    return value


def _check_target(folder: Path, saved: TrainConfig, target: Any, done: int, status: str) -> None:
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise ConfigError(f"epochs must be a positive integer, got {target!r}", field="epochs")
    if target < done:
        raise ConfigError(f"epochs {target} is below the {done} epochs {folder} has done; give "
                          f"at least {done + 1} to train it further", field="epochs")  # fmt: skip
    if target != saved.epochs and saved.schedule != "constant":
        raise ConfigError(
            f"epochs cannot change on resume with the {saved.schedule} schedule (its shape "
            "depends on the total); start a new run",
            field="epochs",
        )
    if status == files.COMPLETE and done >= target:
        raise ConfigError(f"run {folder} is complete ({done} epochs); give epochs above {done} "
                          "to train it further", field="epochs")  # fmt: skip


def _preset(record: dict[str, Any]) -> str | None:
    """The preset run.json names, if it names a known one (runs before it was recorded,
    or an edited file: None)."""
    from deepae.config import PRESETS

    preset = record.get("preset")
    return preset if isinstance(preset, str) and preset in PRESETS else None


def _check_data_recorded(folder: Path, recorded: Any) -> None:
    """run.json must say which data the run trained on (its SHA-256, its image counts, or,
    for runs of earlier deepae versions that recorded neither, the data's name): without
    any of them a resume would load the default data, MNIST, and have nothing to check it
    against."""
    rec = recorded if isinstance(recorded, dict) else {}
    if not any(rec.get(k) for k in ("sha256", "n_train", "n_test", "dataset", "name")):
        raise RunError(f"{folder}/{files.STATUS_FILE} does not say what data the run trained "
                       "on (its data record is damaged); restore it, or start a new "
                       "run")  # fmt: skip


def _check_same_data(folder: Path, recorded: Any, data: LoadedData, *, own: bool) -> None:
    """A run resumes on its own data only: same content, by SHA-256 (runs recorded before
    the hash: the same numbers of images at least). `own`: `data` was loaded from the
    record, so other content means the file changed since."""
    rec = recorded if isinstance(recorded, dict) else {}
    mine = data_record(data)
    same = (
        rec.get("sha256") == mine["sha256"]
        if rec.get("sha256")
        else all(rec.get(k) in (None, mine[k]) for k in ("n_train", "n_test"))
    )
    if not same and own:
        raise DataError(f"{data.path or data.name} no longer holds the data {folder} trained "
                        "on (its SHA-256 is not the one run.json records: changed since?); a "
                        "run resumes on its own data only: restore it, give the run's data as "
                        "dataset, or start a new run", field="dataset")  # fmt: skip
    if not same:
        raise DataError(
            f"{folder} was trained on other data than {data.name} ({data.path}); a run resumes "
            "on its own data only: leave out the data options, or start a new run",
            field="dataset",
        )
