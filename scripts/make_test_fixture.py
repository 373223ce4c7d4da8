"""Write tests/fixtures/mnist-small.npz: the first 2,000 training and 500 test digits of
MNIST, in Keras' layout (x_train, y_train, x_test, y_test, uint8), compressed.

    python scripts/make_test_fixture.py

The unit tests train and evaluate on this subset, so they need neither the network nor the
47 MB of full MNIST; tests/test_data.py checks that the fixture is exactly this prefix of
the verified dataset, so it cannot drift from what this script makes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from deepae.data import load_idx_dataset

N_TRAIN, N_TEST = 2000, 500
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mnist-small.npz"


def main() -> None:
    # No options: the parser is there so that --help (or a stray argument) answers
    # without rewriting the tracked fixture.
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.parse_args()
    d = load_idx_dataset("mnist")
    arrays = {
        "x_train": d.x_train[:N_TRAIN], "y_train": d.y_train[:N_TRAIN],
        "x_test": d.x_test[:N_TEST], "y_test": d.y_test[:N_TEST],
    }  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # A temporary file beside OUT, then a rename: a reader (or a crash) never sees half a
    # file. A file object, since savez_compressed would add ".npz" to a name without it.
    fd, tmp = tempfile.mkstemp(dir=OUT.parent, prefix=f".{OUT.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp's file is private; the fixture is for everyone
        os.replace(tmp, OUT)
    except BaseException:
        os.unlink(tmp)
        raise
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
