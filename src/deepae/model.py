"""The network: a dense encoder and a mirror-image decoder that share one module tree.

`AutoencoderNet.encoder` maps (N, D) images to (N, latent) codes and `.decoder` maps codes
back to (N, D) images. Both are submodules of the full net, so training the net trains
them: the same weight tensors, as with the article's Keras `Model`s built on shared layers.
"""

from __future__ import annotations

import torch
from torch import nn

from deepae.config import ModelConfig

# Name (deepae.config.ACTIVATIONS, the one list) -> torch module; shared by the model,
# the summary and the explorer page's export.
ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "linear": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
}


class Decoder(nn.Module):
    """Codes (N, latent) -> images (N, D). `logits` skips the output activation so the loss
    can be computed stably from logits, as Keras does for a sigmoid output."""

    def __init__(self, body: nn.Sequential, output_activation: str):
        super().__init__()
        self.body = body
        self.output_activation = output_activation

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)  # (N, D)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.body(z)  # (N, D)
        return torch.sigmoid(out) if self.output_activation == "sigmoid" else out


class AutoencoderNet(nn.Module):
    """The full autoencoder; `encoder` and `decoder` are its two halves."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        enc_sizes = (config.input_size, *config.hidden_sizes, config.latent_size)
        dec_sizes = (config.latent_size, *config.decoder_sizes, config.input_size)
        self.encoder = _dense_stack(
            enc_sizes, config.hidden_activation, config.latent_activation, config.batch_norm
        )
        # The decoder's last Dense has no activation here: Decoder applies the output one.
        self.decoder = Decoder(
            _dense_stack(dec_sizes, config.hidden_activation, "linear", config.batch_norm),
            config.output_activation,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))  # (N, D) -> (N, D)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder.logits(self.encoder(x))  # (N, D) -> (N, D)

    def codes_and_logits(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes of x (N, latent) and the logits (n, D) of its first n rows, in one pass
        (deepae.train's steps: a neighbour loss needs codes of all, a reconstruction of n)."""
        z = self.encoder(x)  # (N, latent)
        return z, self.decoder.logits(z[:n])  # (n, D)


def _dense_stack(
    sizes: tuple[int, ...], hidden_act: str, last_act: str, batch_norm: bool
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        layers.append(nn.Linear(n_in, n_out))
        if batch_norm and not last:
            layers.append(nn.BatchNorm1d(n_out))
        act = last_act if last else hidden_act
        if act != "linear":  # keep the stack minimal: nn.Identity layers would only cost time
            layers.append(ACTIVATION_MODULES[act]())
    return nn.Sequential(*layers)


def init_keras(net: nn.Module, generator: torch.Generator) -> None:
    """Keras' Dense defaults: Glorot-uniform kernels, zero biases (BatchNorm: 1 and 0).

    Glorot uniform draws from U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio
    2010), which is `nn.init.xavier_uniform_`. The generator makes it reproducible and
    independent of the device the model later moves to.
    """
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight, generator=generator)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build(config: ModelConfig, seed: int = 0) -> AutoencoderNet:
    """A freshly initialised net on the CPU."""
    net = AutoencoderNet(config)
    init_keras(net, torch.Generator().manual_seed(seed))
    return net


_KERAS_NAMES = {nn.Linear: "Dense", nn.BatchNorm1d: "BatchNormalization"}


def summary_rows(net: AutoencoderNet) -> list[tuple[str, str, str, int, int]]:
    """Keras-style rows: (name, type, output shape, trainable params, non-trainable params).

    Activations are folded into their Dense layer, as Keras' `Dense(activation=...)` does;
    BatchNorm's running mean and variance count as non-trainable, as in Keras.
    """
    rows = [("input_1", "InputLayer", f"(None, {net.config.input_size})", 0, 0)]
    counts: dict[str, int] = {}
    layers = [m for m in (*net.encoder, *net.decoder.body) if type(m) in _KERAS_NAMES]
    for m in layers:
        kind = _KERAS_NAMES[type(m)]
        key = "dense" if kind == "Dense" else "batch_normalization"
        counts[key] = counts.get(key, 0) + 1
        width = m.out_features if isinstance(m, nn.Linear) else m.num_features
        trainable = sum(p.numel() for p in m.parameters())
        frozen = sum(b.numel() for n, b in m.named_buffers() if n != "num_batches_tracked")
        rows.append((f"{key}_{counts[key]}", kind, f"(None, {width})", trainable, frozen))
    return rows


def summary(net: AutoencoderNet, title: str = "autoencoder") -> str:
    """The Keras `model.summary()` table as text."""
    rows = summary_rows(net)
    rule, thick = "_" * 65, "=" * 65
    lines = [f'Model: "{title}"', rule, f"{'Layer (type)':<29}{'Output Shape':<26}Param #", thick]
    for i, (name, kind, shape, trainable, frozen) in enumerate(rows):
        lines.append(f"{f'{name} ({kind})':<29}{shape:<26}{trainable + frozen}")
        lines.append(rule if i < len(rows) - 1 else thick)
    trainable = sum(r[3] for r in rows)
    frozen = sum(r[4] for r in rows)
    lines += [
        f"Total params: {trainable + frozen:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {frozen:,}",
        rule,
    ]
    return "\n".join(lines)
