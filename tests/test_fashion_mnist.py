"""Fashion-MNIST's class names, checked against the images they name (not against a list).

Measured on the real data (Debian's dataset-fashion-mnist), mean image of each class in
[0, 1], training set:
- ink in the top third (rows 0-8): Sneaker 0.014, the least of all ten classes (Sandal
  0.042 next); Bag 0.141 (handles and tops). Sneakers are low shoes.
- bottom rows 20-27, the centre columns 13-14 against the darker of columns 8-10 and
  17-19: Trouser 0.63 (the gap between the legs), every other class 1.02 or more.
The thresholds below sit halfway or further from every measured value.
"""

from pathlib import Path

import numpy as np
import pytest

from deepae.data import load_dataset

SYSTEM = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def mean_images(tmp_path_factory):
    """Class name -> mean training image (28, 28) in [0, 1], by the names deepae gives."""
    assert SYSTEM.is_dir(), "install it: scripts/ensure-test-deps.sh (make test runs it)"
    d = load_dataset("fashion-mnist", cache_dir=tmp_path_factory.mktemp("cache"))
    x, y = d.x_train, d.y_train
    return {d.class_names[c]: x[y == c].mean(0, dtype=np.float64) / 255 for c in np.unique(y)}


def top_third(image: np.ndarray) -> float:
    return float(image[:9].mean())


def leg_gap(image: np.ndarray) -> float:
    """Bottom centre columns over the darker of the two column bands beside them."""
    bottom = image[20:28]
    return float(bottom[:, 13:15].mean() / min(bottom[:, 8:11].mean(), bottom[:, 17:20].mean()))


def test_sneakers_are_low_shoes_and_bags_are_not(mean_images):
    tops = {name: top_third(m) for name, m in mean_images.items()}
    assert tops["Sneaker"] < 0.03
    assert min(tops, key=tops.get) == "Sneaker"
    assert tops["Bag"] > 0.08


def test_trousers_have_a_gap_between_the_legs(mean_images):
    gaps = {name: leg_gap(m) for name, m in mean_images.items()}
    assert gaps["Trouser"] < 0.8
    assert all(g > 0.9 for name, g in gaps.items() if name != "Trouser"), gaps
