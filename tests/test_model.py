"""The network: shapes, parameter counts (vs the article's Keras summary and a hand
formula), Keras' initialisation, and encoder/decoder weight sharing."""

import math

import pytest
import torch

from deepae.config import ModelConfig
from deepae.errors import ConfigError
from deepae.model import build, summary, summary_rows


def dense_params(sizes):
    """Hand formula: a Dense layer n_in -> n_out has n_in * n_out weights + n_out biases."""
    return [a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]


def test_article_model_matches_the_keras_summary():
    rows = summary_rows(build(ModelConfig()))
    assert [r[3] for r in rows] == [0, 25120, 66, 96, 25872]  # the article's table
    assert [r[2] for r in rows] == [
        "(None, 784)", "(None, 32)", "(None, 2)", "(None, 32)", "(None, 784)",
    ]  # fmt: skip
    text = summary(build(ModelConfig()))
    assert "Total params: 51,154" in text
    assert "Trainable params: 51,154" in text
    assert "Non-trainable params: 0" in text


@pytest.mark.parametrize(
    ("hidden", "latent", "decoder"),
    [((64, 16), 3, None), ((128,), 2, (8, 256)), ((), 5, None)],
)
def test_parameter_counts_for_any_config(hidden, latent, decoder):
    cfg = ModelConfig(hidden_sizes=hidden, latent_size=latent, decoder_hidden_sizes=decoder)
    dec = decoder if decoder is not None else tuple(reversed(hidden))
    expected = dense_params((784, *hidden, latent)) + dense_params((latent, *dec, 784))
    rows = summary_rows(build(cfg))
    assert [r[3] for r in rows[1:]] == expected
    assert f"Total params: {sum(expected):,}" in summary(build(cfg))


def test_batch_norm_running_stats_count_as_non_trainable():
    rows = summary_rows(build(ModelConfig(hidden_sizes=(16,), batch_norm=True)))
    bn = [r for r in rows if r[1] == "BatchNormalization"]
    assert [(r[3], r[4]) for r in bn] == [(32, 32), (32, 32)]  # gamma+beta, mean+var


def test_shapes_and_output_range():
    net = build(ModelConfig())
    x = torch.rand(5, 784)
    z = net.encoder(x)
    assert z.shape == (5, 2)
    assert (z >= 0).all()  # ReLU latent, as the article
    y = net.decoder(z)
    assert y.shape == (5, 784)
    assert ((y > 0) & (y < 1)).all()
    assert torch.equal(net(x), y)


def test_glorot_uniform_weights_and_zero_biases():
    net = build(ModelConfig(), seed=1)
    for layer in [m for m in net.modules() if isinstance(m, torch.nn.Linear)]:
        fan_out, fan_in = layer.weight.shape
        limit = math.sqrt(6 / (fan_in + fan_out))  # Glorot & Bengio (2010)
        w = layer.weight.detach()
        assert w.abs().max() <= limit
        assert torch.count_nonzero(layer.bias) == 0
        if w.numel() > 10_000:  # U(-a, a) has variance a^2 / 3; 25k draws pin it to ~1%
            assert w.var().item() == pytest.approx(limit**2 / 3, rel=0.03)
            assert w.mean().item() == pytest.approx(0, abs=0.02 * limit)


def test_initialisation_is_seeded():
    a, b, c = build(ModelConfig(), 7), build(ModelConfig(), 7), build(ModelConfig(), 8)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)
        if pa.abs().sum() > 0:
            assert not torch.equal(pa, pc)


def test_encoder_and_decoder_share_weights_with_the_autoencoder():
    net = build(ModelConfig())
    full = dict(net.named_parameters())
    assert full["encoder.0.weight"] is net.encoder[0].weight
    assert full["decoder.body.2.weight"] is net.decoder.body[2].weight
    x = torch.rand(3, 784)
    before = net.encoder(x).clone()
    with torch.no_grad():
        full["encoder.0.bias"].add_(1.0)  # a change to the full model ...
    assert not torch.equal(net.encoder(x), before)  # ... is seen by the encoder


@pytest.mark.parametrize(
    "changes",
    [
        {"latent_size": 0},
        {"hidden_sizes": (32, -1)},
        {"hidden_activation": "swish"},
        {"output_activation": "tanh"},
        {"image_shape": (27, 28)},
    ],
)
def test_bad_configs_are_refused(changes):
    with pytest.raises(ConfigError):
        ModelConfig(**changes)
