"""Named configurations: a preset is the changes it makes to the default configs, as data.

    model_config, train_config = resolve("best2d", seed=3)   # any field can be overridden

`article` is the defaults themselves (the article's model and recipe). `best2d` is the best
2-D model found for a 2-core CPU and a 120 s training budget; docs/best2d.md says how it
was found and what each choice bought.
"""

from __future__ import annotations

from typing import Any

from deepae.config import ModelConfig, TrainConfig, replace
from deepae.errors import ConfigError

DEFAULT_PRESET = "article"

# name -> (ModelConfig changes, TrainConfig changes)
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "article": ({}, {}),
    # docs/best2d.md: how it was found and what each choice bought.
    "best2d": (
        {
            "hidden_sizes": (256, 256, 128),  # 3 hidden layers: depth near the latent pays
            "latent_activation": "linear",  # cannot die (REFERENCE.md)
            # no batch norm: better here, and a plain stack trains on the fused engine
        },
        {
            "lr": 4e-3,  # peak rate of the one-cycle schedule
            "adam_betas": (0.9, 0.99),  # shorter memory of squared gradients: lower BCE
            "schedule": "onecycle",
            "batch_size": 512,  # fewer, larger steps: more epochs fit in 120 s
            "epochs": 90,  # ~100 s of training on 2 CPU cores (docs/best2d.md)
        },
    ),
}

_MODEL_FIELDS = set(ModelConfig.__dataclass_fields__)
_TRAIN_FIELDS = set(TrainConfig.__dataclass_fields__)


def resolve(name: str = DEFAULT_PRESET, **overrides: Any) -> tuple[ModelConfig, TrainConfig]:
    """The configs of preset `name`, with `overrides` (fields of either config) on top.

    Overrides that are None are ignored, so unset command-line options keep the preset's
    values. Raises ConfigError for an unknown preset or field.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - _MODEL_FIELDS - _TRAIN_FIELDS)
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(unknown)} for preset {name!r}")
    model_changes, train_changes = PRESETS[name]
    model = replace(ModelConfig(), **model_changes)
    train = replace(TrainConfig(), **train_changes)
    model = replace(model, **{k: v for k, v in overrides.items() if k in _MODEL_FIELDS})
    train = replace(train, **{k: v for k, v in overrides.items() if k in _TRAIN_FIELDS})
    return model, train
