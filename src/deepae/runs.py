"""Run folders: what `deepae train` writes and every other command reads.

runs/<name>/
  config.json, model.safetensors   the model (deepae.storage)
  run.json                         training status: training/interrupted/failed/complete
  checkpoint.safetensors           weights + optimizer + position, after every epoch
  history.csv                      epoch, loss, val_loss, seconds
  metrics.json                     final losses, dead latent units, timings, data source
  evaluation.json                  test-set metrics beside PCA (deepae.evaluate)
  latent.png, reconstructions.png, loss.png
  manifold.png, interpolation.png  the decoder over a grid of the plane, and along lines
  explorer.html                    the interactive latent-space explorer (deepae.explorer)
  report.html                      one page with all of the above (deepae.report)
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepae import checkpoint, fsio, latent, status, storage, train
from deepae import evaluate as evaluation
from deepae.api import Autoencoder
from deepae.config import ModelConfig, TrainConfig
from deepae.errors import RunError

HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
DEFAULT_INDICES = tuple(range(110, 120))  # the article's originals-vs-reconstructions
DEAD_THRESHOLD = evaluation.DEAD_THRESHOLD  # exactly 0 for more than this share: dead


@dataclass
class RunResult:
    folder: Path
    metrics: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False  # stopped early by `stop()`; a checkpoint was saved


def train_run(
    folder: str | Path,
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: Any,
    *,
    log: Callable[[str], None] = print,
    progress: bool = True,
    indices: Sequence[int] = DEFAULT_INDICES,
    pairs: Sequence[Sequence[int]] | None = None,
    resume: bool = False,
    stop: Callable[[], bool] | None = None,
    evaluate: bool = True,
    preset: str | None = None,
) -> RunResult:
    """Train on `data` (a deepae.data.LoadedData), then save the model, history, metrics,
    figures, explorer and report into `folder`. `log` receives the epoch lines and
    warnings; `pairs` are test-image index pairs for interpolation.png. `evaluate` writes
    evaluation.json (needs scikit-learn); `preset` is recorded in metrics.json."""
    folder = Path(folder)
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
        status.write(folder, state_name, epochs_done=s.epoch, epochs=train_config.epochs,
                     step=s.step, data=record, message=message)  # fmt: skip

    set_status("training")

    def on_epoch_end(rec: train.EpochRecord, state: train.TrainState) -> None:
        log(train.format_epoch(rec, train_config.epochs))
        write_history(folder, state.history)
        checkpoint.save(folder, trainer, state)
        ae.train_state = state
        set_status("training")

    try:
        ae.fit(data.x_train, data.x_test, verbose=0, progress=progress,
               on_epoch_end=on_epoch_end, stop=stop)  # fmt: skip
    except train.TrainingDiverged as e:
        set_status("failed", str(e))
        raise train.TrainingDiverged(
            f"{e}. The checkpoint of the last good epoch ({ae.train_state.epoch}) is kept in "
            f"{folder}"
        ) from None
    if ae.train_state.interrupted:
        checkpoint.save(folder, trainer, ae.train_state)
        set_status("interrupted")
        return RunResult(folder, {}, interrupted=True)
    ae.save(folder)
    codes = ae.encode(data.x_train)  # (N, latent)
    metrics = run_metrics(ae, codes, data)
    metrics["preset"] = preset
    warnings = dead_latent_warnings(metrics["dead_latent_fractions"], model_config)
    for w in warnings:
        log(f"warning: {w}")
    fsio.write_json(folder / METRICS_FILE, metrics)
    files = [write_evaluation(folder, evaluation.evaluate_run(ae, data), log)] if evaluate else []
    files += write_figures(folder, ae, data, codes=codes, indices=indices, pairs=pairs)
    files += write_pages(folder, ae, data, codes=codes)
    set_status(status.COMPLETE)
    return RunResult(folder, metrics, [folder / f for f in _CORE_FILES] + files, warnings)


_CORE_FILES = (
    "config.json", "model.safetensors", HISTORY_FILE, METRICS_FILE, checkpoint.CHECKPOINT_FILE,
    status.STATUS_FILE,
)  # fmt: skip


def run_metrics(ae: Autoencoder, codes: np.ndarray, data: Any) -> dict[str, Any]:
    """The numbers `metrics.json` holds for a trained model."""
    history = ae.history
    epoch_seconds = [r.train_seconds for r in history]
    trainer = ae.trainer
    return {
        "epochs": len(history),
        "loss": history[-1].loss if history else None,
        "val_loss": history[-1].val_loss if history else None,
        "loss_name": ae.train_config.loss,
        "dead_latent_fractions": train.dead_latent_fractions(_torch(codes)),
        "train_seconds": sum(epoch_seconds),
        "median_epoch_seconds": statistics.median(epoch_seconds) if epoch_seconds else None,
        "engine": trainer.engine_name if trainer else None,
        "device": str(trainer.device) if trainer else None,
        "data": data_record(data),
    }


def write_evaluation(
    folder: str | Path, result: dict[str, Any], log: Callable[[str], None] | None = None
) -> Path:
    """Save `deepae.evaluate.evaluate_run`'s result as evaluation.json (test split) or
    evaluation-train.json, and hand its table to `log`; returns the path."""
    name = "evaluation.json" if result["split"] == "test" else f"evaluation-{result['split']}.json"
    fsio.write_json(Path(folder) / name, result)
    if log is not None:
        log(evaluation.format_table(result))
    return Path(folder) / name


def _can_evaluate(log: Callable[[str], None]) -> bool:
    try:
        evaluation.require_sklearn()
    except evaluation.MissingExtraError as e:
        log(f"warning: {e}; training without the final evaluation")
        return False
    return True


def data_record(data: Any) -> dict[str, Any]:
    """What run.json and metrics.json say about the data a run was trained on: where it
    came from, and (`load_args`) how deepae.datasets.load_dataset loads it again."""
    path = getattr(data, "path", None)
    record = {"name": data.name, "source": data.source, "path": None if path is None else str(path)}
    return {**record, **(getattr(data, "load_args", None) or {})}


def dead_latent_warnings(fractions: Sequence[float], model_config: ModelConfig) -> list[str]:
    """One warning per dead latent unit, with the fix."""
    out = []
    for unit, frac in enumerate(fractions):
        if frac > DEAD_THRESHOLD:
            hint = (
                "train with --latent-activation linear (or another --seed)"
                if model_config.latent_activation == "relu"
                else "try another --seed"
            )
            out.append(
                f"latent unit {unit} is dead: exactly 0 for {frac:.1%} of training images, "
                f"so the latent space has collapsed; {hint}"
            )
    return out


def write_history(folder: Path, history: Sequence[train.EpochRecord]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", "loss", "val_loss", "seconds"])
    for r in history:
        val = "" if r.val_loss is None else f"{r.val_loss:.6f}"
        writer.writerow([r.epoch, f"{r.loss:.6f}", val, f"{r.seconds:.3f}"])
    fsio.write_text(folder / HISTORY_FILE, buf.getvalue())


def read_history(folder: str | Path) -> list[dict[str, Any]]:
    path = Path(folder) / HISTORY_FILE
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [
            {
                "epoch": int(r["epoch"]),
                "loss": float(r["loss"]),
                "val_loss": float(r["val_loss"]) if r["val_loss"] else None,
                "seconds": float(r["seconds"]),
            }
            for r in rows
        ]
    except FileNotFoundError:
        return []
    except (KeyError, ValueError, TypeError) as e:
        raise RunError(f"{path} is corrupt ({e}); delete it or retrain") from None


def read_metrics(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / METRICS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is corrupt ({e}); rerun `deepae plot` or retrain") from None


def write_figures(
    folder: str | Path,
    ae: Autoencoder,
    data: Any,
    *,
    codes: np.ndarray | None = None,
    indices: Sequence[int] = DEFAULT_INDICES,
    pairs: Sequence[Sequence[int]] | None = None,
) -> list[Path]:
    """Draw latent.png, reconstructions.png, manifold.png, interpolation.png and loss.png
    into `folder`; returns the paths."""
    from deepae import plots

    folder = Path(folder)
    codes = ae.encode(data.x_train) if codes is None else codes
    xy, axis_labels, note = plane(codes)
    figures = {
        "latent.png": plots.plot_latent(
            xy,
            data.y_train,
            class_names=data.class_names,
            axis_labels=axis_labels,
            title=f"{len(xy):,} training codes{note}",
        ),  # fmt: skip
        "reconstructions.png": reconstruction_figure(ae, data, indices),
        "manifold.png": manifold_figure(ae, codes),
        "interpolation.png": interpolation_figure(ae, data, pairs),
    }
    history = read_history(folder)
    if history:
        figures["loss.png"] = plots.plot_loss(
            [h["epoch"] for h in history],
            [h["loss"] for h in history],
            [h["val_loss"] for h in history],
            loss_name=ae.train_config.loss,
        )
    paths = []
    for name, fig in figures.items():
        paths.append(save_figure(fig, folder / name))
    return paths


def reconstruction_figure(ae: Autoencoder, data: Any, indices: Sequence[int]):
    from deepae import plots

    n = len(data.x_train)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise RunError(f"--indices {bad} out of range: the training set has {n} images (0-{n - 1})")
    idx = np.asarray(indices, dtype=np.int64)
    originals = data.x_train[idx]
    labels = None if data.y_train is None else [_label(data, y) for y in data.y_train[idx]]
    return plots.plot_reconstructions(originals, ae.reconstruct(originals), labels)


def manifold_figure(ae: Autoencoder, codes: np.ndarray, size: int = latent.MANIFOLD_SIZE):
    """manifold.png: the decoder on a size x size grid over the 1st-99th percentiles of the
    training codes' plane coordinates (see deepae.latent)."""
    from deepae import plots

    view = latent.fit_plane(codes)
    us, vs = latent.manifold_grid(view.project(codes), size)
    lo, hi = (_ordinal(p) for p in latent.PERCENTILES)
    title = f"decoder on a {size} x {size} grid over the {lo}-{hi} percentile of the codes"
    return plots.plot_manifold(
        latent.decode_grid(ae, view, us, vs), us, vs,
        axis_labels=view.axis_labels, title=title + view.note.replace(" (", "\n("),
    )  # fmt: skip


def interpolation_figure(ae: Autoencoder, data: Any, pairs: Sequence[Sequence[int]] | None = None):
    """interpolation.png: for test-image index pairs (default: latent.default_pairs), the
    images decoded along the straight line between the two codes, originals at the ends."""
    from deepae import plots

    x, y = data.x_test, data.y_test
    if pairs is None:
        pairs = latent.default_pairs(len(x), y)
    pairs = latent.check_pairs(pairs, len(x))
    a, b = (np.array([p[k] for p in pairs]) for k in (0, 1))
    _, decoded = latent.interpolate(ae, x[a], x[b])  # (P, steps, H, W)
    names = [
        f"#{i} \u2192 #{j}" if y is None else f"{_label(data, y[i])} \u2192 {_label(data, y[j])}"
        for i, j in pairs
    ]
    return plots.plot_interpolation(x[a], decoded, x[b], row_labels=names)


def write_pages(
    folder: str | Path, ae: Autoencoder, data: Any, *, codes: np.ndarray | None = None
) -> list[Path]:
    """Write explorer.html and report.html into `folder` (figures first: the report
    shows them); returns the paths."""
    from deepae import explorer, report

    page = explorer.write_explorer(folder, ae, data, codes=codes)
    return [page, report.write_report(folder, ae)]


def plane(codes: np.ndarray) -> tuple[np.ndarray, tuple[str, str], str]:
    """The 2-D view of codes (N, latent): the codes themselves when latent is 2, else the
    first two principal components (so a 3-D or 8-D latent space can still be looked at).
    Returns (points (N, 2), axis labels, a note for titles)."""
    view = latent.fit_plane(codes)
    return view.project(codes), view.axis_labels, view.note


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Save a Matplotlib figure atomically as PNG."""
    with fsio.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def _ordinal(p: float) -> str:
    n = int(p)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{p:g}{suffix}"


def _label(data: Any, y: int) -> str:
    names = getattr(data, "class_names", None)
    return names[int(y)] if names and int(y) < len(names) else str(int(y))


def _torch(codes: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(codes))
