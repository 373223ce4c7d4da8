"""Run folders: what `deepae train` writes and every other command reads.

runs/<name>/
  config.json, model.safetensors   the model (deepae.storage)
  history.csv                      epoch, loss, val_loss, seconds
  metrics.json                     final losses, dead latent units, timings, data source
  latent.png, reconstructions.png, loss.png
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

from deepae import fsio, train
from deepae.api import Autoencoder
from deepae.config import ModelConfig, TrainConfig
from deepae.errors import RunError

HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
DEFAULT_INDICES = tuple(range(110, 120))  # the article's originals-vs-reconstructions
DEAD_THRESHOLD = 0.99  # a latent unit at exactly 0 for more than this share is dead


@dataclass
class RunResult:
    folder: Path
    metrics: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def train_run(
    folder: str | Path,
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: Any,
    *,
    log: Callable[[str], None] = print,
    progress: bool = True,
    indices: Sequence[int] = DEFAULT_INDICES,
) -> RunResult:
    """Train on `data` (a deepae.data.LoadedData), then save the model, history, metrics
    and figures into `folder`. `log` receives the epoch lines and warnings."""
    folder = Path(folder)
    ae = Autoencoder(model_config, train_config)

    def on_epoch_end(record: train.EpochRecord, state: train.TrainState) -> None:
        log(train.format_epoch(record, train_config.epochs))
        write_history(folder, state.history)

    ae.fit(data.x_train, data.x_test, verbose=0, progress=progress, on_epoch_end=on_epoch_end)
    ae.save(folder)
    codes = ae.encode(data.x_train)  # (N, latent)
    metrics = run_metrics(ae, codes, data)
    warnings = dead_latent_warnings(metrics["dead_latent_fractions"], model_config)
    for w in warnings:
        log(f"warning: {w}")
    fsio.write_json(folder / METRICS_FILE, metrics)
    files = write_figures(folder, ae, data, codes=codes, indices=indices)
    return RunResult(folder, metrics, [folder / f for f in _CORE_FILES] + files, warnings)


_CORE_FILES = ("config.json", "model.safetensors", HISTORY_FILE, METRICS_FILE)


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
        "data": {"name": data.name, "source": data.source, "path": str(data.path)},
    }


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
) -> list[Path]:
    """Draw latent.png, reconstructions.png and loss.png into `folder`; returns the paths."""
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


def plane(codes: np.ndarray) -> tuple[np.ndarray, tuple[str, str], str]:
    """The 2-D view of codes (N, latent): the codes themselves when latent is 2, else the
    first two principal components (so a 3-D or 8-D latent space can still be looked at)."""
    if codes.shape[1] == 2:
        return codes, ("z[0]", "z[1]"), ""
    if codes.shape[1] == 1:
        return np.column_stack([codes[:, 0], np.zeros(len(codes))]), ("z[0]", "(none)"), ""
    centred = codes - codes.mean(0)
    _, _, vt = np.linalg.svd(centred[:20000], full_matrices=False)
    return centred @ vt[:2].T, ("PC1", "PC2"), " (first two principal components)"


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Save a Matplotlib figure atomically as PNG."""
    with fsio.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def _label(data: Any, y: int) -> str:
    names = getattr(data, "class_names", None)
    return names[int(y)] if names and int(y) < len(names) else str(int(y))


def _torch(codes: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(codes))
