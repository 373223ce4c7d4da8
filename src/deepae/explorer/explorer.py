"""explorer.html: one self-contained page to walk the latent space of a trained model.

The page shows a scatter of training codes and runs the decoder itself, in JavaScript,
on whatever point the cursor is over. Everything it needs is inside the one file:

- the decoder's dense layers (weights as base64 of little-endian float32, described by
  JSON: name, in, out, activation); BatchNorm layers are folded into the Dense before them;
- a stratified sample of training codes (plane coordinates, float32) and their labels;
- the images of the first `images` of those points, zlib-compressed, for the "nearest
  training image" panel (the browser inflates them with DecompressionStream);
- the plane: for latent sizes other than 2, plane point (u, v) decodes as the code
  mean + u * pc1 + v * pc2 (see deepae.latent).

The HTML, CSS and JavaScript live beside this module (template.html,
explorer.css, explorer.js) and are inlined, so the page makes no request at all and
works from file://. docs/explorer.md explains the choices and the size budget.
"""

from __future__ import annotations

import base64
import html
import json
import math
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from deepae import fsio, latent, plots
from deepae.data import MAX_CLASSES
from deepae.errors import ConfigError, DeepAEError
from deepae.evaluate import collapse_note, dead_unit_indices, zero_fractions
from deepae.model import ACTIVATION_MODULES

FILE_NAME = "explorer.html"
DEFAULT_POINTS = 10000  # scatter points: dense enough to see every cluster, fast to draw
MAX_PAGE_BYTES = 3_000_000  # budget for the whole file; embedded images give way first
ZLIB_LEVEL = 6  # 10,000 MNIST images: 1.64 MB at level 6, 1.61 MB at 9 but 15x slower
FORMAT = "deepae-explorer"
FORMAT_VERSION = 1

_ACTIVATION_NAMES = {cls: name for name, cls in ACTIVATION_MODULES.items()}


def decoder_layers(net: nn.Module) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The decoder of an AutoencoderNet as plain dense layers for the page.

    Returns (layers, weights): each layer is {name, in, out, activation, params,
    weight_offset, bias_offset}, offsets in floats into `weights`, a flat float32 array
    holding each kernel (out, in) row-major then its bias. The last layer carries the
    decoder's output activation. Eval-mode BatchNorm is folded into the Dense before it:
    W' = s * W, b' = s * (b - running_mean) + beta, s = gamma / sqrt(running_var + eps).
    """
    dense: list[dict[str, Any]] = []
    for module in net.decoder.body:
        if isinstance(module, nn.Linear):
            w = module.weight.detach().double().cpu().numpy()  # (out, in)
            b = module.bias.detach().double().cpu().numpy()  # (out,)
            dense.append({"w": w, "b": b, "activation": "linear", "params": {}})
        elif isinstance(module, nn.BatchNorm1d):
            layer = dense[-1]
            s = module.weight.detach().double().cpu().numpy() / np.sqrt(
                module.running_var.double().cpu().numpy() + module.eps
            )
            layer["w"] = layer["w"] * s[:, None]
            layer["b"] = s * (layer["b"] - module.running_mean.double().cpu().numpy())
            layer["b"] = layer["b"] + module.bias.detach().double().cpu().numpy()
        elif type(module) in _ACTIVATION_NAMES:
            dense[-1]["activation"] = _ACTIVATION_NAMES[type(module)]
            dense[-1]["params"] = _activation_params(module)
        else:
            raise DeepAEError(
                f"the explorer cannot run a {type(module).__name__} layer in the page; "
                "only Dense, BatchNorm and the activations of deepae.model are supported"
            )
    if net.decoder.output_activation != "linear":
        dense[-1]["activation"] = net.decoder.output_activation
    layers, chunks, offset = [], [], 0
    for i, layer in enumerate(dense):
        n_out, n_in = layer["w"].shape
        layers.append({
            "name": f"decoder_dense_{i + 1}", "in": n_in, "out": n_out,
            "activation": layer["activation"], "params": layer["params"],
            "weight_offset": offset, "bias_offset": offset + n_out * n_in,
        })  # fmt: skip
        chunks += [layer["w"].ravel(), layer["b"]]
        offset += n_out * n_in + n_out
    return layers, np.concatenate(chunks).astype("<f4")


def build_explorer(
    ae: Any,
    x_train: np.ndarray,
    y_train: np.ndarray | None,
    *,
    class_names: tuple[str, ...] | list[str] | None = None,
    points: int = DEFAULT_POINTS,
    seed: int = 0,
    codes: np.ndarray | None = None,
    title: str = "deepae explorer",
    max_bytes: int = MAX_PAGE_BYTES,
) -> str:
    """The explorer page as one HTML string.

    ae: a trained `deepae.Autoencoder`; x_train: images (N, H, W) uint8 (an array, or
    deepae.data.ImageRows, of which only the sampled images are read); y_train: labels
    (N,) or None, class numbers or any others (strings: see plots.class_numbers), at most
    MAX_CLASSES (256) classes, numbered 0-255 (more: ConfigError); codes:
    ae.encode(x_train) (N, latent) if already computed. The scatter shows `points`
    training codes, a sample stratified by label (seeded); their images are embedded too,
    as many as fit in `max_bytes` (a stratified prefix)."""
    if points < 1:
        raise ConfigError(f"points must be at least 1, got {points}", field="points")
    if y_train is not None:  # strings and the like: numbered and named as latent.png does
        y_train, class_names = plots.class_numbers(y_train, class_names)
        _check_class_count(y_train)
    codes = ae.encode(x_train) if codes is None else codes  # (N, latent)
    view = latent.fit_plane(codes)
    order = latent.stratified_order(y_train, len(codes), seed=seed)[:points]  # (P,)
    xy = view.project(codes[order])  # (P, 2)
    meta = _page_meta(ae, view, xy, order, y_train, class_names, title)
    images = x_train[order].reshape(len(order), -1)  # (P, H * W) uint8
    if images.dtype != np.uint8:  # float images in [0, 1] (deepae.datasets): 8 bits show them
        images = np.rint(images * 255).astype(np.uint8)
    meta["images"] = {"count": len(images), "encoding": "zlib", "pixels": images.shape[1]}
    # A collapsed latent space (dead units) is said above the plot, as report.html does.
    note = collapse_note(
        dead_unit_indices(zero_fractions(codes)), ae.model_config.latent_activation
    )
    template = _page_template(title, note)
    budget = max_bytes - len(_fill(template, meta, "").encode())
    blob, meta["images"]["count"] = _fit_images(images, budget)
    return _fill(template, meta, blob)


def write_explorer(
    folder: str | Path,
    ae: Any,
    data: Any,
    *,
    out: str | Path | None = None,
    points: int = DEFAULT_POINTS,
    seed: int = 0,
    codes: np.ndarray | None = None,
) -> Path:
    """Write the explorer of the model `ae` trained on `data` (a LoadedData) to `out`
    (default: folder/explorer.html), atomically; returns the path."""
    folder = Path(folder)
    path = Path(out) if out is not None else folder / FILE_NAME
    html = build_explorer(
        ae, data.x_train, data.y_train, class_names=data.class_names, points=points,
        seed=seed, codes=codes, title=f"deepae explorer: {folder.resolve().name}",
    )  # fmt: skip
    fsio.write_text(path, html)
    return path


# -- the page's data ----------------------------------------------------------------------


def _page_meta(ae, view, xy, order, y_train, class_names, title) -> dict[str, Any]:
    layers, weights = decoder_layers(ae.net)
    labels = None if y_train is None else np.asarray(y_train)[order]
    n_classes = 0 if labels is None else int(labels.max()) + 1
    names = [str(name) for name in ([] if class_names is None else class_names)][:n_classes]
    names += [str(c) for c in range(len(names), n_classes)]
    # The figures' colours (deepae.plots.palette), sized for every class of the dataset,
    # not only those in the sample, so that class c looks the same here and in latent.png.
    n_all = 1 if y_train is None else plots.class_count(y_train, class_names)
    colors = plots.palette(n_all)[: max(n_classes, 1)]
    lo, hi = np.percentile(xy, [0.1, 99.9], axis=0)  # (2,) each: the view ignores outliers
    pad = np.where(hi > lo, (hi - lo) * 0.06, 1.0)  # 1.0: an axis without spread (1-D latent)
    cfg = ae.model_config
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "title": title,
        # Shown as rows x columns: all leading dimensions stacked, the last one across.
        "image_shape": [math.prod(cfg.image_shape[:-1]), cfg.image_shape[-1]],
        "latent_size": cfg.latent_size,
        "architecture": _architecture(cfg),
        "plane": {
            "mean": view.mean.tolist(),
            "axes": view.axes.tolist(),
            "labels": list(view.axis_labels),
            "pca": view.is_pca,
        },
        "decoder": {"layers": layers, "weights": _b64(weights.tobytes())},
        "points": {
            "count": len(xy),
            "xy": _b64(xy.astype("<f4").tobytes()),
            "labels": None if labels is None else _b64(labels.astype(np.uint8).tobytes()),
            "index": _b64(order.astype("<u4").tobytes()),
        },
        "classes": names,
        "palette": colors,
        "view": {
            "x0": lo[0] - pad[0],
            "x1": hi[0] + pad[0],
            "y0": lo[1] - pad[1],
            "y1": hi[1] + pad[1],
        },  # fmt: skip
    }


def _check_class_count(labels: np.ndarray) -> None:
    """Refuse class numbers the page's uint8 labels cannot hold (they would wrap: 256 -> 0).

    Refused rather than widened: every deepae dataset has at most MAX_CLASSES classes
    (labels are uint8 from the loaders on), so one byte a point keeps the common page small
    and its format as it is; and a legend of hundreds of classes in 'turbo' hues that can
    no longer be told apart would not show them anyway."""
    top = int(labels.max()) if labels.size else -1
    if top >= MAX_CLASSES:
        raise ConfigError(
            f"y_train: {len(np.unique(labels))} classes, numbered up to {top}; the explorer "
            f"shows at most {MAX_CLASSES} classes, numbered 0-{MAX_CLASSES - 1} (as deepae's "
            "datasets are): renumber or merge the classes, or pass y_train=None",
            field="y_train",
        )


def _architecture(cfg) -> str:
    enc = " - ".join(map(str, (cfg.input_size, *cfg.hidden_sizes, cfg.latent_size)))
    dec = " - ".join(map(str, (*cfg.decoder_sizes, cfg.input_size)))
    return f"{enc} - {dec} (hidden {cfg.hidden_activation}, latent {cfg.latent_activation})"


def _fit_images(images: np.ndarray, budget: int) -> tuple[str, int]:
    """Base64 of the zlib-compressed first `count` images, count as large as fits `budget`
    characters; MNIST compresses about 5x, so 10,000 digits take ~2.2 MB."""
    count = len(images)
    while count > 0:
        blob = _b64(zlib.compress(images[:count].tobytes(), ZLIB_LEVEL))
        if len(blob) <= budget:
            return blob, count
        count = min(count - 1, math.floor(count * budget / len(blob) * 0.98))
    return "", 0


def _page_template(title: str, banner: str = "") -> str:
    """The page with its CSS, script, title and `banner` (a warning, if any) inlined; data
    placeholders left in."""
    files = resources.files("deepae.explorer")
    page = (files / "template.html").read_text(encoding="utf-8")
    css = (files / "explorer.css").read_text(encoding="utf-8")
    js = (files / "explorer.js").read_text(encoding="utf-8")
    page = page.replace("/*__DEEPAE_CSS__*/", css).replace("/*__DEEPAE_JS__*/", js)
    if banner:
        text = html.escape(banner).replace("_", "&#95;")
        warning = f'<p id="banner" class="banner" role="alert"><b>Warning:</b> {text}</p>'
        page = page.replace("<!--__DEEPAE_BANNER__-->", warning)
    # Escaped, with "_" as an entity too, so that a run named like a placeholder
    # ("__DEEPAE_DATA__") is not filled in by `_fill`.
    return page.replace("__DEEPAE_TITLE__", html.escape(title).replace("_", "&#95;"))


def _fill(template: str, meta: dict, images_blob: str) -> str:
    # The JSON goes in last, so nothing inside it is ever taken for a placeholder. Every
    # "<" is written \u003c (the same string to JSON.parse), so no class or run name can
    # close the <script> element holding it ("</script>") or open an HTML comment that
    # swallows the rest of the page ("<!--<script>"); JSON has no "<" outside strings.
    payload = json.dumps(meta, separators=(",", ":")).replace("<", "\\u003c")
    return template.replace("__DEEPAE_IMAGES__", images_blob).replace("__DEEPAE_DATA__", payload)


def _activation_params(module: nn.Module) -> dict[str, Any]:
    """The parameters of an activation module that the page's JavaScript needs."""
    return {name: getattr(module, name) for name in _ACTIVATION_PARAMS.get(type(module), ())}


# Activation module -> the attributes its JavaScript twin in explorer.js takes.
_ACTIVATION_PARAMS = {nn.LeakyReLU: ("negative_slope",), nn.ELU: ("alpha",),
                      nn.GELU: ("approximate",)}  # fmt: skip


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
