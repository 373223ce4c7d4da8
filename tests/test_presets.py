"""Presets: named configs that resolve to the right values, can be overridden field by
field, and drive `deepae train --preset`."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from deepae import config as presets
from deepae import model
from deepae.cli import main
from deepae.config import ModelConfig, TrainConfig
from deepae.errors import ConfigError


def test_article_is_the_defaults():
    assert presets.DEFAULT_PRESET == "article"
    assert presets.resolve() == (ModelConfig(), TrainConfig())
    assert presets.resolve("article") == (ModelConfig(), TrainConfig())


# Each preset's recipe as its docs state it (docs/best2d.md, docs/umap2d.md), typed here by
# hand: fields not named keep the article's defaults.
DOCUMENTED = {
    "article": ({}, {}),
    "best2d": (
        {"hidden_sizes": (256, 256, 128), "latent_activation": "linear"},
        {"lr": 4e-3, "adam_betas": (0.9, 0.99), "schedule": "onecycle", "batch_size": 512,
         "epochs": 90, "precision": "auto"},
    ),
    "umap2d": (
        {"hidden_sizes": (256, 256, 128), "latent_activation": "linear"},
        {"neighbour_weight": 10.0, "neighbours": 10, "negative_rate": 10, "min_dist": 0.0,
         "lr": 3e-3, "adam_betas": (0.9, 0.99), "schedule": "onecycle", "batch_size": 512,
         "epochs": 130, "validation_freq": 10, "precision": "auto"},
    ),
}  # fmt: skip


def test_every_preset_is_its_documented_recipe():
    assert set(presets.PRESETS) == set(DOCUMENTED)
    for name, (model_changes, train_changes) in DOCUMENTED.items():
        m, t = presets.resolve(name)
        assert m == dataclasses.replace(ModelConfig(), **model_changes), name
        assert t == dataclasses.replace(TrainConfig(), **train_changes), name
        assert m.latent_size == 2  # every preset draws a plane
        assert model.build(m).encoder(torch.zeros(3, m.input_size)).shape == (3, 2)
        # The network's decoder mirrors the encoder (docs/best2d.md: 2-128-256-256-784).
        assert m.decoder_sizes == tuple(reversed(m.hidden_sizes)), name


def test_overrides_win_and_none_is_ignored():
    m, t = presets.resolve("best2d", epochs=3, seed=7, hidden_sizes=(16,), lr=None)
    _, preset_train = presets.resolve("best2d")
    assert (t.epochs, t.seed, m.hidden_sizes) == (3, 7, (16,))
    assert t.lr == preset_train.lr  # None: keep the preset's
    assert t.schedule == preset_train.schedule


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown preset 'fast'; known presets: article, best2d"):
        presets.resolve("fast")


def test_unknown_field_is_refused():
    with pytest.raises(ConfigError, match="unknown config field"):
        presets.resolve("article", learning_rate=1.0)


def test_bad_override_value_fails_like_a_config():
    with pytest.raises(ConfigError, match="epochs must be positive"):
        presets.resolve("best2d", epochs=0)


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory, mnist_small):
    """2,000 training and 500 test MNIST images as a Keras-layout .npz."""
    path = tmp_path_factory.mktemp("data") / "small-mnist_small.npz"
    np.savez(
        path,
        x_train=mnist_small.x_train[:2000],
        y_train=mnist_small.y_train[:2000],
        x_test=mnist_small.x_test[:500],
        y_test=mnist_small.y_test[:500],
    )
    return path


def test_train_with_a_preset_and_overrides(small_npz, tmp_path, capsys):
    args = ["train", "--preset", "best2d", "--dataset", str(small_npz), "--runs-dir",
            str(tmp_path), "--epochs", "1", "--hidden-sizes", "16,8", "--adam-betas", "0.8,0.9",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("best2d-")  # the default run name carries the preset
    config = json.loads((folder / "config.json").read_text())
    _, preset_train = presets.resolve("best2d")
    assert config["model"]["hidden_sizes"] == [16, 8]  # overridden
    assert config["model"]["latent_activation"] == "linear"  # from the preset
    assert config["train"]["epochs"] == 1
    assert config["train"]["adam_betas"] == [0.8, 0.9]  # overridden
    assert config["train"]["schedule"] == preset_train.schedule
    assert config["train"]["lr"] == preset_train.lr
    assert json.loads((folder / "metrics.json").read_text())["preset"] == "best2d"
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert evaluation["n"] == 500
    assert "5-NN accuracy" in capsys.readouterr().out  # the table is printed


def test_train_default_preset_is_article(small_npz, tmp_path):
    args = ["train", "--dataset", str(small_npz), "--runs-dir", str(tmp_path), "--epochs",
            "1", "--no-progress", "--no-evaluate"]  # fmt: skip
    assert main(args) == 0
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("article-")
    assert json.loads((folder / "metrics.json").read_text())["preset"] == "article"
    assert not (folder / "evaluation.json").exists()


def test_unknown_preset_on_the_command_line(tmp_path, capsys):
    assert main(["train", "--preset", "nope", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'nope'; known presets: article, best2d" in err
    assert not any(tmp_path.iterdir())


def test_preset_cannot_change_on_resume(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--preset", "best2d"]) == 2
    assert "leave out --preset" in capsys.readouterr().err
