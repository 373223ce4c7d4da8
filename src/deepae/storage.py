"""One format for a saved model, written and read only here.

A model folder holds `config.json` (the model and training configs, format version) and
`model.safetensors` (the weights). safetensors stores raw tensors and cannot run code, so
loading a file from a stranger is safe; nothing here ever unpickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from deepae import fsio
from deepae._version import __version__
from deepae.config import ModelConfig, TrainConfig, from_dict, to_dict
from deepae.errors import ConfigError, RunError
from deepae.model import AutoencoderNet

FORMAT = "deepae-model"
FORMAT_VERSION = 1  # bump when the layout changes; readers refuse newer versions
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MAX_WEIGHTS_BYTES = 4 * 2**30  # more than any dense model that fits a machine's memory


def save_model(folder: str | Path, net: AutoencoderNet, train_config: TrainConfig) -> None:
    """Write config.json and model.safetensors into `folder` (each atomically)."""
    folder = Path(folder)
    # Contiguous CPU copies: the fused engine keeps parameters as views of one buffer,
    # and safetensors refuses tensors that share memory.
    save_weights(folder, net)
    save_config(folder, net.config, train_config)


def save_weights(folder: str | Path, net: AutoencoderNet) -> None:
    """Write model.safetensors alone (a run wrote its config.json when it started)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    data = save_safetensors(tensors, metadata={"format": FORMAT, "version": str(FORMAT_VERSION)})
    fsio.write_bytes(Path(folder) / WEIGHTS_FILE, canonical_safetensors(data))


def canonical_safetensors(data: bytes) -> bytes:
    """The safetensors file `data` with its header in one canonical form, so that the same
    tensors and metadata always give the same bytes.

    safetensors keeps the metadata in a Rust HashMap, whose order changes from one save to
    the next. The header (8-byte little-endian length, then JSON) is written again with
    sorted keys and compact separators, padded with spaces to a multiple of 8 bytes as the
    format requires (the data that follows stays aligned); the data bytes are kept, and
    their offsets, relative to the end of the header, stay valid."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def save_config(folder: str | Path, model: ModelConfig, train: TrainConfig) -> None:
    """Write config.json alone: a run writes it first, so even a crash is resumable."""
    fsio.write_json(Path(folder) / CONFIG_FILE, config_dict(model, train))


def config_dict(model: ModelConfig, train: TrainConfig) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deepae_version": __version__,
        "model": to_dict(model),
        "train": to_dict(train),
    }


def load_config(folder: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """Read and check config.json of a model folder."""
    path = Path(folder) / CONFIG_FILE
    if not Path(folder).is_dir():
        raise RunError(f"no run folder at {folder}; give the path of a folder `deepae train` wrote")
    data = fsio.read_json(path, fix="retrain or restore it from a copy", within=folder)
    if data is None:
        raise RunError(
            f"{path} is missing; {folder} is not a saved model (or training never got to save)"
        )
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RunError(f'{path} is not a deepae model config (no "format": "{FORMAT}")')
    version = data.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise RunError(
            f"{path} has format version {version!r}, newer than this deepae understands "
            f"({FORMAT_VERSION}); upgrade deepae to read it"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RunError(f"{path} has format version {version!r}, which no deepae wrote (1 to "
                       f"{FORMAT_VERSION}); restore the file from a copy, or retrain")  # fmt: skip
    try:
        return from_dict(ModelConfig, data.get("model")), from_dict(TrainConfig, data.get("train"))
    except ConfigError as e:
        raise RunError(f"{path}: {e}") from None


def load_weights(folder: str | Path, net: AutoencoderNet) -> None:
    """Load model.safetensors into `net`, checking names and shapes against it."""
    path = Path(folder) / WEIGHTS_FILE
    try:
        raw = fsio.read_bytes(path, max_bytes=MAX_WEIGHTS_BYTES, fix="retrain or restore it",
                              within=folder)  # fmt: skip
        tensors = load_safetensors(raw)
    except FileNotFoundError:
        raise RunError(
            f"{path} is missing; retrain, or resume the run if it has a checkpoint"
        ) from None
    except (SafetensorError, ValueError, OSError) as e:
        raise RunError(
            f"{path} is not a readable safetensors file ({e}); it may be truncated or "
            "corrupt: retrain or restore it from a copy"
        ) from None
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise RunError(
            f"{path} does not match its config.json (missing: {missing or 'none'}, "
            f"unexpected: {extra or 'none'}); the files come from different models"
        )
    for name, value in tensors.items():
        if value.shape != expected[name].shape or value.dtype != expected[name].dtype:
            raise RunError(
                f"{path}: tensor {name} has shape {tuple(value.shape)} {value.dtype}, config.json "
                f"says {tuple(expected[name].shape)} {expected[name].dtype}"
            )
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise RunError(f"{path}: tensor {name} holds NaN or infinite values, which no "
                           "trained model has; retrain or restore it from a copy")  # fmt: skip
    with torch.no_grad():
        net.load_state_dict(tensors)


def load_model(folder: str | Path) -> tuple[AutoencoderNet, TrainConfig]:
    """Rebuild the net of a saved model folder, with its weights, on the CPU."""
    model_config, train_config = load_config(folder)
    net = AutoencoderNet(model_config)
    load_weights(folder, net)
    return net, train_config
