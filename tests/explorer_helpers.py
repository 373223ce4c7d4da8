"""Shared by the explorer tests: models with various decoders, and reading a page's data."""

import base64
import json
import math
import re
import zlib

import numpy as np
import torch

from deepae.api import Autoencoder


def page_data(html: str) -> tuple[dict, bytes]:
    """The JSON description and the inflated image bytes embedded in a page."""
    meta = re.search(r'<script type="application/json" id="deepae-data">(.*?)</script>', html, re.S)
    blob = re.search(r'<script type="text/plain" id="deepae-images">(.*?)</script>', html, re.S)
    packed = base64.b64decode(blob[1].strip())
    return json.loads(meta[1]), zlib.decompress(packed) if packed else b""


def decode_with_numpy(layers, weights, z):
    """An independent float64 forward pass over the exported layers."""
    act = {
        "relu": lambda x, p: np.maximum(x, 0),
        "linear": lambda x, p: x,
        "sigmoid": lambda x, p: 1 / (1 + np.exp(-x)),
        "tanh": lambda x, p: np.tanh(x),
        "leaky_relu": lambda x, p: np.where(x >= 0, x, x * p["negative_slope"]),
        "elu": lambda x, p: np.where(x > 0, x, p["alpha"] * np.expm1(np.minimum(x, 0))),
        "gelu": lambda x, p: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),
    }
    h = np.asarray(z, np.float64)
    for layer in layers:
        n_in, n_out, w0 = layer["in"], layer["out"], layer["weight_offset"]
        w = weights[w0 : w0 + n_in * n_out].reshape(n_out, n_in).astype(np.float64)
        b = weights[layer["bias_offset"] : layer["bias_offset"] + n_out].astype(np.float64)
        h = act[layer["activation"]](h @ w.T + b, layer["params"])
    return h


DECODERS = {
    "article": {},
    "deep-tanh": {"hidden_sizes": (64, 16), "hidden_activation": "tanh"},
    "batchnorm-elu": {"hidden_sizes": (48,), "hidden_activation": "elu", "batch_norm": True},
    "gelu-3d": {"latent_size": 3, "hidden_activation": "gelu"},
    "leaky-sigmoid": {"hidden_activation": "leaky_relu", "decoder_hidden_sizes": (8, 40)},
    "linear-output": {"hidden_activation": "sigmoid", "output_activation": "linear"},
}


def make_model(options: dict, seed: int = 0) -> Autoencoder:
    """An untrained model; BatchNorm gets random running statistics so folding matters."""
    ae = Autoencoder(seed=seed, latent_activation="linear", **options)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in ae.net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 3 + 0.2)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
    return ae
