"""Reproduce the article: its exact model and recipe, its epoch lines next to ours.

    make reproduce          # or: python scripts/reproduce.py [--seed 0] [--device auto]

The article (Keras, batch 32, Adam, 10 epochs) printed epoch 1 loss 0.2133 / val_loss
0.2098 and epoch 10 loss 0.1983 / val_loss 0.1985. This trains the same model with the same
defaults on the same data and prints Keras-style lines, then both final results.
"""

from __future__ import annotations

import argparse
import sys

from deepae import Autoencoder, load_mnist
from deepae.errors import DeepAEError
from deepae.evaluate import zero_fractions
from deepae.train import resolve_device

ARTICLE = {1: (0.2133, 0.2098), 10: (0.1983, 0.1985)}  # epoch -> (loss, val_loss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed (0)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (auto)")
    args = parser.parse_args()
    try:
        return reproduce(args.seed, args.device)
    except DeepAEError as e:  # a bad seed or device, MNIST that cannot be read: one line
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2


def reproduce(seed: int, device: str) -> int:
    """Train the article's model with `seed` on `device`; print its epochs beside the article's."""
    ae = Autoencoder(seed=seed, device=device)
    resolve_device(device)  # 'cuda' without a GPU: refused before loading MNIST
    (x_train, _), (x_test, _) = load_mnist()
    ae.summary()
    history = ae.fit(x_train, validation_data=x_test)
    print(f"\n{'epoch':>5}  {'article loss':>12}  {'ours':>7}  {'article val':>11}  {'ours':>7}")
    for epoch, (loss, val) in ARTICLE.items():
        r = history[epoch - 1]
        print(f"{epoch:>5}  {loss:>12.4f}  {r.loss:>7.4f}  {val:>11.4f}  {r.val_loss:>7.4f}")

    dead = zero_fractions(ae.encode(x_train))
    print("fraction of training codes at exactly 0 per latent unit:", [f"{d:.3f}" for d in dead])
    return 0


if __name__ == "__main__":
    sys.exit(main())
