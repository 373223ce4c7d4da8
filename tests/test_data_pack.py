"""Datasets larger than memory: a uint8 .npy is memory-mapped (deepae.data.ImageRows), read
a batch at a time by training (deepae.batches.MappedImages) and a chunk at a time by
everything else; `deepae data pack` writes any source as such a file. The oracle is the
in-memory path: the same images as an array give the same batches, losses and weights."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib import format as npy_format
from PIL import Image

from deepae import Autoencoder, train
from deepae.batches import MappedImages, chunks, gatherer
from deepae.cli import main
from deepae.data import ImageRows, as_rows, flatten_images, holdout_split, load_dataset
from deepae.data._base import split_data
from deepae.data.arrays import map_npy
from deepae.data.folders import load_image_folder
from deepae.errors import ConfigError, DataError
from deepae.run.pipeline import data_fingerprint

FIXTURE = Path(__file__).parent / "fixtures" / "mnist-small.npz"
FAST = dict(hidden_sizes=(16,), latent_activation="linear", batch_size=64)


@pytest.fixture(scope="module")
def digits():
    """The fixture's 2,500 digits (N, 28, 28) uint8 and their labels, in one array each."""
    with np.load(FIXTURE) as z:
        x = np.concatenate([z["x_train"], z["x_test"]])
        return x, np.concatenate([z["y_train"], z["y_test"]])


@pytest.fixture
def fit_inputs(monkeypatch):
    """The training images each call of deepae.train.fit receives, as it receives them."""
    seen, real_fit = [], train.fit

    def spy(trainer, x_train, *args, **kwargs):
        seen.append(x_train)
        return real_fit(trainer, x_train, *args, **kwargs)

    monkeypatch.setattr(train, "fit", spy)
    return seen


@pytest.fixture
def bare(tmp_path, digits):
    """digits saved as a plain .npy (+ NAME.labels.npy beside it)."""
    path = tmp_path / "digits.npy"
    np.save(path, digits[0])
    np.save(tmp_path / "digits.labels.npy", digits[1])
    return path


def test_a_uint8_npy_is_mapped_and_a_float_one_read(tmp_path, digits):
    np.save(tmp_path / "u.npy", digits[0][:20])
    np.save(tmp_path / "f.npy", digits[0][:20] / np.float32(255))
    assert isinstance(map_npy(tmp_path / "u.npy"), np.memmap)
    assert not isinstance(map_npy(tmp_path / "f.npy"), np.memmap)
    d = load_dataset(tmp_path / "u.npy")
    assert isinstance(d.x_train, ImageRows) and d.x_train.dtype == np.uint8
    f = load_dataset(tmp_path / "f.npy")
    assert type(f.x_train) is np.ndarray and f.x_train.dtype == np.float32


def test_image_rows_index_like_the_array(digits):
    x = digits[0][:50]
    rows = ImageRows(x).select(np.arange(5, 45))  # a split: positions 5..44 of x
    want = x[5:45]
    assert rows.shape == want.shape and len(rows) == 40 and rows.dtype == np.uint8
    np.testing.assert_array_equal(rows[3], want[3])
    np.testing.assert_array_equal(rows[-1], want[-1])
    np.testing.assert_array_equal(rows[[7, 2, 7]], want[[7, 2, 7]])
    np.testing.assert_array_equal(np.asarray(rows[10:20]), want[10:20])
    assert isinstance(rows[10:20], ImageRows)  # a view, nothing read
    np.testing.assert_array_equal(np.asarray(rows), want)
    np.testing.assert_array_equal(np.stack(list(rows)), want)
    np.testing.assert_array_equal(np.concatenate(list(rows.chunks(7))), want)
    with pytest.raises(IndexError):
        rows[40]


KEYS = {
    "mask": lambda y: y == 3,  # the images of one class, NumPy's idiom
    "int array": lambda y: np.array([4, 0, 4], np.int32),
    "empty list": lambda y: [],
    "numpy int": lambda y: np.int64(6),
    "image and row": lambda y: (0, 5),
    "image, row and column": lambda y: (-2, 5, 9),
    "slice and row": lambda y: (slice(2, 9), 3),
    "list, all rows, column": lambda y: ([1, 2], slice(None), 4),
    "0-d index": lambda y: np.array(3),
    "2-D indices": lambda y: np.array([[0, 1], [2, 3]]),
    "2-D indices and row": lambda y: (np.array([[0, 1], [2, 3]]), 1),
}


@pytest.mark.parametrize("key", list(KEYS))
def test_image_rows_take_numpys_other_indexes(digits, key):
    x, y = digits[0][:50], digits[1][:50]
    rows = ImageRows(x).select(np.arange(5, 45))  # a split, against its array: the oracle
    want, labels = x[5:45], y[5:45]
    index = KEYS[key](labels)
    np.testing.assert_array_equal(np.asarray(rows[index]), want[index])
    if key == "mask":
        assert isinstance(rows.select(index), ImageRows)
        np.testing.assert_array_equal(np.asarray(rows.select(index)), want[index])


@pytest.mark.parametrize(
    "key",
    [np.ones(3, bool), np.array([1.0, 2.0]), ([0, 1], [2, 3]), (Ellipsis, 0), (0, [1, 2])],
)
def test_image_rows_refuse_indexes_they_would_misread(digits, key):
    # ([0, 1], [2, 3]) is NumPy's (image 0, row 2) and (image 1, row 3): arrays after the
    # first combine with it, which only the whole array can do; refused, never misread.
    rows = ImageRows(digits[0][:50])
    with pytest.raises(IndexError, match="boolean index of shape|indexed by|ints and slices"):
        rows[key]


def test_mapped_loading_equals_in_memory_loading(bare, digits):
    x, y = digits
    mapped = load_dataset(bare)
    assert isinstance(mapped.x_train, ImageRows) and mapped.source == "npy file"
    train_idx, val_idx = holdout_split(len(x), val_fraction=0.1, seed=0)
    np.testing.assert_array_equal(np.asarray(mapped.x_train), x[train_idx])
    np.testing.assert_array_equal(np.asarray(mapped.x_test), x[val_idx])
    np.testing.assert_array_equal(mapped.y_test, y[val_idx])  # labels from digits.labels.npy
    memory = split_data(x, y, None, bare, "npy file", {"val_fraction": 0.1, "seed": 0})
    assert data_fingerprint(mapped) == data_fingerprint(memory)


def test_mapped_batches_equal_in_memory_batches(bare, digits):
    rows = load_dataset(bare).x_train
    tensor = torch.from_numpy(flatten_images(np.asarray(rows)))  # (N, D): the in-memory path
    source = MappedImages(rows)
    assert tuple(source.shape) == tuple(tensor.shape) and source.numel() == tensor.numel()
    from_file, from_memory = gatherer(source), gatherer(tensor)
    gen = torch.Generator().manual_seed(0)
    for size in (64, 64, 13):  # the same buffer twice, then a last, smaller batch
        idx = torch.randperm(len(rows), generator=gen)[:size]
        assert torch.equal(from_file(idx), from_memory(idx))
        assert torch.equal(source[idx], tensor[idx])
    for a, b in zip(chunks(source, 500), chunks(tensor, 500), strict=True):
        assert torch.equal(a, b)
    view = source[100:300]
    assert isinstance(view, MappedImages) and torch.equal(view[torch.arange(5)], tensor[100:105])


@pytest.mark.parametrize("engine", ["fused", "autograd"])
def test_training_on_a_mapped_file_equals_training_in_memory(bare, engine, fit_inputs):
    d = load_dataset(bare)
    mapped, memory = (Autoencoder(epochs=2, engine=engine, **FAST) for _ in range(2))
    h_mapped = mapped.fit(d.x_train, validation_data=d.x_test, verbose=0)
    h_memory = memory.fit(np.asarray(d.x_train), validation_data=np.asarray(d.x_test), verbose=0)
    assert isinstance(fit_inputs[0], MappedImages) and isinstance(fit_inputs[1], torch.Tensor)
    assert h_mapped.history == h_memory.history  # the same losses, to the bit
    for a, b in zip(mapped.get_weights(), memory.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mapped.encode(d.x_test), memory.encode(np.asarray(d.x_test)))
    assert mapped.evaluate(d.x_test) == memory.evaluate(np.asarray(d.x_test))


def test_mapped_evaluation_agrees_with_in_memory_evaluation(bare, monkeypatch):
    from deepae import evaluate as ev

    monkeypatch.setattr(ev, "EVAL_CHUNK", 64)  # several chunks of the 250 test images
    d = load_dataset(bare)
    x_train, x_test = np.asarray(d.x_train), np.asarray(d.x_test)
    ae = Autoencoder(epochs=1, **FAST)
    ae.fit(x_train, verbose=0)
    mapped = ev.reconstruction_metrics(d.x_test, ae.reconstruct, d.y_test)
    memory = ev.reconstruction_metrics(x_test, ae.reconstruct(x_test), d.y_test)
    for key in ("bce", "mse", "psnr"):
        assert mapped[key] == pytest.approx(memory[key], rel=1e-9)
    assert mapped["mse_per_class"] == pytest.approx(memory["mse_per_class"], rel=1e-9)
    # 2,250 training images: the "sample" of PCA_FIT_SAMPLES is all of them
    pca_mapped, pca_memory = (
        ev.pca_baseline(d.x_train, d.x_test, 2),
        ev.pca_baseline(x_train, x_test, 2),
    )
    np.testing.assert_allclose(pca_mapped.codes, pca_memory.codes, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pca_mapped.train_codes, pca_memory.train_codes, atol=1e-4)
    np.testing.assert_allclose(pca_mapped.reconstruction(x_test[:5]),
                               pca_memory.reconstruction[:5], atol=1e-5)  # fmt: skip


def test_a_numpy_memmap_given_to_fit_is_read_batch_by_batch(tmp_path, digits, fit_inputs):
    np.save(tmp_path / "x.npy", digits[0][:300])
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    ae = Autoencoder(epochs=1, **FAST)
    ae.fit(x, np.load(tmp_path / "x.npy", mmap_mode="r"), validation_split=0.2, verbose=0)
    assert isinstance(fit_inputs[0], MappedImages) and len(fit_inputs[0]) == 240
    with pytest.raises(ConfigError, match="the target must be the images themselves"):
        ae.fit(x, np.load(tmp_path / "x.npy", mmap_mode="r")[::-1], verbose=0)
    assert ae.encode(x).shape == (300, 2)


@pytest.mark.parametrize("layout", ["held-out split", "packed"])
def test_a_whole_run_on_a_mapped_file_never_reads_every_image(
    tmp_path, bare, monkeypatch, fit_inputs, layout
):
    """The structural check: training, validation, encoding, evaluation, figures (latent.png
    sampled) and the explorer all run with ImageRows.__array__ (reading every image at
    once) forbidden."""
    from deepae import run
    from deepae.run import figures

    path = bare
    if layout == "packed":
        path = tmp_path / "small.npy"
        assert main(["data", "pack", str(FIXTURE), str(path)]) == 0
    data = load_dataset(path)
    monkeypatch.setattr(figures, "LATENT_POINTS", 500)

    def everything(self, *args, **kwargs):
        raise AssertionError("every image of a mapped file was read at once")

    monkeypatch.setattr(ImageRows, "__array__", everything)
    result = run.start(tmp_path / "runs", "r", data=data, epochs=1, progress=False,
                       log=lambda _: None, **FAST)  # fmt: skip
    assert isinstance(fit_inputs[0], MappedImages)
    names = {p.name for p in result.files}
    assert {"latent.png", "explorer.html", "evaluation.json", "report.html"} <= names
    assert result.evaluation["model"]["knn5_accuracy"] is not None


def test_the_folder_cache_is_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(12):
        (tmp_path / "imgs" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (28, 28), np.uint8)).save(
            tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png"
        )
    first = load_image_folder(tmp_path / "imgs", cache_dir=tmp_path / "cache")
    again = load_image_folder(tmp_path / "imgs", cache_dir=tmp_path / "cache")
    assert not first.cached and again.cached
    assert isinstance(first.images, np.memmap) and isinstance(again.images, np.memmap)
    np.testing.assert_array_equal(first.images, again.images)
    d = load_dataset(tmp_path / "imgs", cache_dir=tmp_path / "cache")
    assert isinstance(d.x_train, ImageRows)


CUT_SHORT = """
import os, sys
import numpy as np
from deepae.data import load_dataset
from deepae.errors import DataError

d = load_dataset(sys.argv[1])  # memory-mapped
os.truncate(sys.argv[1], 1000)  # another program cuts the file short
try:
    d.x_train[[5, len(d.x_train) - 1]]  # without the watch: a page past the end, SIGBUS
except DataError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
"""


def test_a_mapped_file_cut_short_while_in_use_is_one_line_not_a_crash(bare):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", CUT_SHORT, str(bare)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, (done.returncode, done.stderr)  # not -SIGBUS
    assert done.stderr.strip().startswith(f"{bare}: the file changed while deepae was reading")
    assert "now 1,000 bytes" in done.stderr


def test_a_mapped_file_rewritten_in_place_is_refused(bare, fit_inputs):
    d = load_dataset(bare)
    with open(bare, "r+b") as f:  # the same size, other images
        f.seek(-784, 2)
        f.write(bytes(784))
    stamp = bare.stat()
    os.utime(bare, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # coarse clocks
    with pytest.raises(DataError, match="changed while deepae was reading its images"):
        Autoencoder(**FAST).fit(d.x_train, epochs=1, verbose=0)
    with pytest.raises(DataError, match="rewritten in place"):
        np.asarray(d.x_test)
    # A memmap NumPy made (np.load(mmap_mode="r"), given to fit) is watched from then on.
    rows = as_rows(np.load(bare, mmap_mode="r"))
    os.utime(bare, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 2 * 10**9))
    with pytest.raises(DataError, match="rewritten in place"):
        rows[0]


# -- deepae data pack ------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["options first", "options between"])
def test_pack_takes_its_options_anywhere(tmp_path, order):
    out = tmp_path / "p.npy"
    args = (["--image-size", "14", str(FIXTURE), str(out)] if order == "options first"
            else [str(FIXTURE), "--image-size", "14", str(out)])  # fmt: skip
    assert main(["data", "pack", *args]) == 0
    # The oracle: the fixture resized as --image-size does when loading it.
    want = load_dataset(FIXTURE, image_size=(14, 14))
    np.testing.assert_array_equal(np.asarray(load_dataset(out).x_train), want.x_train)


def test_pack_round_trips(tmp_path, capsys):
    out = tmp_path / "packed.npy"
    assert main(["data", "pack", str(FIXTURE), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "packed 2,500 images of 28x28 (2,000 training, then 500 test)" in printed
    source, packed = load_dataset(FIXTURE), load_dataset(out)
    assert isinstance(packed.x_train, ImageRows) and packed.source == "packed npy file"
    assert packed.name == source.name == "mnist-small"  # the source's name, not the file's
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(np.asarray(getattr(packed, name)),
                                      getattr(source, name))  # fmt: skip
    assert data_fingerprint(packed) == data_fingerprint(source)  # a run could resume on it
    assert np.load(out).dtype == np.uint8 and np.load(tmp_path / "packed.labels.npy").shape == (
        2500,
    )
    info = json.loads((tmp_path / "packed.json").read_text())
    assert (info["n_train"], info["n_test"], info["class_names"]) == (2000, 500, None)


def test_pack_keeps_class_names_and_the_split_of_a_folder(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(20):
        cls = ("cat", "dog")[i % 2]
        (tmp_path / "pets" / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), np.uint8)).save(
            tmp_path / "pets" / cls / f"{i:02}.png"
        )
    args = ["data", "pack", str(tmp_path / "pets"), str(tmp_path / "pets.npy"), "--image-size",
            "8", "--val-fraction", "0.25"]  # fmt: skip
    assert main([*args, "--dataset", "x"]) == 2  # SOURCE is the operand, not --dataset
    assert main(args) == 0
    folder = load_dataset(tmp_path / "pets", image_size=8, val_fraction=0.25)
    packed = load_dataset(tmp_path / "pets.npy", val_fraction=0.5)  # the pack's split wins
    assert packed.class_names == ("cat", "dog") and len(packed.x_test) == 5
    np.testing.assert_array_equal(np.asarray(packed.x_test), np.asarray(folder.x_test))
    np.testing.assert_array_equal(packed.y_train, folder.y_train)


def test_val_fraction_for_data_with_its_own_split_is_refused(tmp_path, capsys):
    # A Keras-layout .npz and a pack bring their test split: --val-fraction would do nothing.
    rng = np.random.default_rng(2)
    keras = tmp_path / "keras.npz"
    np.savez(keras, x_train=rng.integers(0, 256, (30, 8, 8), np.uint8),
             x_test=rng.integers(0, 256, (10, 8, 8), np.uint8))  # fmt: skip
    assert main(["data", "pack", str(keras), str(tmp_path / "p.npy")]) == 0
    capsys.readouterr()
    train = ["train", "--runs-dir", str(tmp_path / "runs"), "--epochs", "1", "--no-progress"]
    for source, more in ((keras, ""), (tmp_path / "p.npy", "; a pack's split is chosen")):
        assert main([*train, "--dataset", str(source), "--val-fraction", "0.2"]) == 2
        err = capsys.readouterr().err
        assert f"val_fraction is for data without a test split; {source} has its own" in err
        assert more in err and err.count("\n") == 1
    assert main(["data", "pack", str(keras), str(tmp_path / "q.npy"), "--val-fraction", "0.3"]) == 2
    assert "val_fraction is for data without a test split" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "q.npy").exists()


def test_pack_of_float_unlabelled_images_rounds_to_8_bits(tmp_path, digits, capsys):
    x = digits[0][:40]
    np.save(tmp_path / "f.npy", x / np.float32(255))
    (tmp_path / "out.labels.npy").write_bytes(b"stale")  # an earlier pack's labels go
    assert main(["data", "pack", str(tmp_path / "f.npy"), str(tmp_path / "out.npy")]) == 0
    assert "rounded to 8 bits" in capsys.readouterr().out
    assert not (tmp_path / "out.labels.npy").exists()
    packed, source = load_dataset(tmp_path / "out.npy"), load_dataset(tmp_path / "f.npy")
    assert packed.y_train is None
    np.testing.assert_array_equal(np.asarray(packed.x_train), np.rint(source.x_train * 255))


def test_a_pack_that_fails_leaves_the_earlier_pack_whole(tmp_path, capsys, monkeypatch):
    import errno

    from deepae.data import pack as pack_mod

    out = tmp_path / "out.npy"
    assert main(["data", "pack", str(FIXTURE), str(out)]) == 0
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(files) == {"out.npy", "out.labels.npy", "out.json"}
    unlabelled = tmp_path / "f.npy"
    np.save(unlabelled, np.zeros((30, 28, 28), np.uint8))
    calls = {"n": 0}

    def full(images):  # the disk fills up after the first chunk of images
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return images

    monkeypatch.setattr(pack_mod, "CHUNK", 10)
    monkeypatch.setattr(pack_mod, "_as_uint8", full)
    assert main(["data", "pack", str(unlabelled), str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p != unlabelled} == files
    monkeypatch.undo()
    again, source = load_dataset(out), load_dataset(FIXTURE)
    np.testing.assert_array_equal(again.y_test, source.y_test)
    np.testing.assert_array_equal(np.asarray(again.x_train), source.x_train)


def test_a_pack_killed_mid_write_leaves_temporaries_the_next_pack_removes(tmp_path, capsys):
    """A real SIGKILL while the images are written: the next pack to the same file removes
    what it left, and nothing of a process that still runs, another machine's or a user's."""
    import signal
    import subprocess
    import sys

    from deepae import fsio

    out = tmp_path / "out.npy"
    killed = (  # a pack's three temporaries open, then SIGKILL before any is renamed
        "import os, signal, sys\n"
        "from deepae import fsio\n"
        "from deepae.data.arrays import info_path, labels_path\n"
        "from pathlib import Path\n"
        "out = Path(sys.argv[1])\n"
        "with fsio.atomic_path(info_path(out), owned=True) as a, "
        "fsio.atomic_path(labels_path(out), suffix='.npy', owned=True) as b, "
        "fsio.atomic_path(out, suffix='.npy', owned=True) as c:\n"
        "    open(c, 'wb').write(b'half an image')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-c", killed, str(out)], timeout=60)
    assert done.returncode == -signal.SIGKILL
    left = {p.name for p in tmp_path.iterdir()}
    assert len(left) == 3 and all(".tmp" in name for name in left)
    machine, pid = fsio._owner().rsplit(".", 1)
    kept = {
        f".out.npy.{machine}.{pid}-abcdefgh.tmp.npy",  # this process: alive
        ".out.npy.another-host.999999999-abcdefgh.tmp.npy",  # no such PID here: not ours
        f".out.npy.{machine}1.999999999-abcdefgh.tmp.npy",  # another PID space (a container)
        ".out.npy.draft.tmp",  # a user's own
        ".out2.npy.x.1-abcdefgh.tmp.npy",  # another file's
    }
    for name in kept:
        (tmp_path / name).write_bytes(b"")
    assert main(["data", "pack", str(FIXTURE), str(out)]) == 0
    assert "removed 3 temporary file(s) left by a pack to the same file that was killed" in (
        capsys.readouterr().out
    )
    assert {p.name for p in tmp_path.iterdir()} == kept | {"out.npy", "out.labels.npy",
                                                          "out.json"}  # fmt: skip
    np.testing.assert_array_equal(np.asarray(load_dataset(out).x_test),
                                  load_dataset(FIXTURE).x_test)  # fmt: skip


def test_an_orphan_that_cannot_be_removed_is_kept_and_the_pack_goes_on(
    tmp_path, capsys, monkeypatch
):
    """A dead pack's temporary this user may not delete (another user's, in a sticky folder
    such as /tmp; a read-only file system): the pack is written all the same, no traceback."""
    import errno

    from deepae import fsio

    out = tmp_path / "out.npy"
    orphan = tmp_path / f".out.npy.{fsio._machine()}.4194000-abcdefgh.tmp.npy"
    orphan.write_bytes(b"another user's")
    monkeypatch.setattr(fsio, "_alive", lambda pid: False)
    unlink = os.unlink

    def refuse(path, *args, **kwargs):
        if Path(path) == orphan:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refuse)
    assert main(["data", "pack", str(FIXTURE), str(out)]) == 0
    assert "removed" not in capsys.readouterr().out
    assert orphan.read_bytes() == b"another user's"
    np.testing.assert_array_equal(np.asarray(load_dataset(out).x_test),
                                  load_dataset(FIXTURE).x_test)  # fmt: skip


def test_a_pack_cut_short_in_its_sync_keeps_the_earlier_pack(tmp_path, monkeypatch, capsys):
    import errno
    import os

    out = tmp_path / "out.npy"
    assert main(["data", "pack", str(FIXTURE), str(out)]) == 0
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    unlabelled = tmp_path / "f.npy"
    np.save(unlabelled, np.zeros((30, 28, 28), np.uint8))
    real_fsync = os.fsync

    def full(fd):  # the disk fills up when the new images are flushed, at the very end
        if ".out.npy." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    assert main(["data", "pack", str(unlabelled), str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p != unlabelled} == files
    np.testing.assert_array_equal(load_dataset(out).y_test, load_dataset(FIXTURE).y_test)


def test_pack_keeps_another_tools_json_where_the_split_would_go(bare, capsys):
    out = bare.with_name("out.npy")
    notes = out.with_name("out.json")
    notes.write_text(json.dumps({"description": "my notes"}))
    assert main(["data", "pack", str(bare), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{notes} is not a deepae-pack file" in err
    assert json.loads(notes.read_text()) == {"description": "my notes"} and not out.exists()
    notes.unlink()  # a pack's own split is replaced, as before
    assert main(["data", "pack", str(bare), str(out)]) == 0
    assert main(["data", "pack", str(bare), str(out)]) == 0


def test_packing_onto_the_labels_of_the_source_is_refused(bare, capsys):
    labels = bare.with_name("digits.labels.npy")
    before = labels.read_bytes()
    assert main(["data", "pack", str(bare), str(labels)]) == 2
    assert "is a file of the source" in capsys.readouterr().err
    assert labels.read_bytes() == before
    # An .npz has no such files: a pack beside it, of the same name, is no loss.
    npz = bare.with_name("keras.npz")
    np.savez(npz, x_train=np.load(bare)[:20], x_test=np.load(bare)[20:30])
    assert main(["data", "pack", str(npz), str(npz.with_suffix(".npy"))]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "pack", "mnist"], "takes SOURCE and OUT.npy"),
        (["data", "pack", str(FIXTURE), "out.npz"], "must be a .npy"),
        (["data", "info", "mnist"], "takes no SOURCE or OUT"),
    ],
)
def test_pack_arguments_are_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_packing_a_file_onto_itself_is_refused(bare, capsys):
    assert main(["data", "pack", str(bare), str(bare)]) == 2
    assert "is the source itself" in capsys.readouterr().err


# -- bad files -----------------------------------------------------------------------------


def npy_bytes(shape, dtype, data: bytes) -> bytes:
    import io

    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    npy_format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (npy_bytes((10, 4, 4), "|u1", bytes(100)), "truncated"),
        (npy_bytes((10, 4, 4), "<i8", bytes(1280)), "images of dtype int64; use uint8"),
        (npy_bytes((10, 4, 4), "|b1", bytes(160)), "images of dtype bool"),
        (npy_bytes((10, 4, 4), "<c8", bytes(1280)), "images of dtype complex64"),
    ],
    ids=["truncated", "int64", "bool", "complex"],
)
@pytest.mark.parametrize("command", [["data", "info"], ["train", "--runs-dir", "RUNS"]])
def test_a_bad_npy_is_one_line_and_exit_2(tmp_path, capsys, blob, message, command):
    path = tmp_path / "bad.npy"
    path.write_bytes(blob)
    args = [str(tmp_path / "runs") if a == "RUNS" else a for a in command]
    assert main([*args, "--dataset", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and str(path) in err
    assert err.endswith("(--dataset)")  # the field names the flag to fix
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"n_train": 2000, "n_test": 499}, "n_train \\+ n_test must be 2500"),
        ({"n_train": 0, "n_test": 2500}, "not a deepae-pack 1 split"),
        ({"n_train": 2000, "n_test": 500, "class_names": [1]}, "not a deepae-pack"),
        ({"n_train": 2000, "n_test": 500, "version": 9}, "not a deepae-pack 1 split"),
        ({"n_train": 2000, "n_test": 500, "name": 3}, "not a deepae-pack 1 split"),
        ("{not json", "is corrupt"),
    ],
)
def test_a_damaged_pack_sidecar_is_a_data_error(bare, info, message):
    path = bare.with_name("digits.json")
    if isinstance(info, dict):
        info = json.dumps({"format": "deepae-pack", "version": 1, **info})
    path.write_text(info)
    with pytest.raises(DataError, match=message) as err:
        load_dataset(bare)
    assert err.value.field == "dataset"


def test_another_tools_json_beside_the_npy_is_ignored(bare):
    alone = load_dataset(bare)
    bare.with_name("digits.json").write_text(json.dumps({"description": "my digits"}))
    beside = load_dataset(bare)
    np.testing.assert_array_equal(beside.x_train, alone.x_train)
    np.testing.assert_array_equal(beside.x_test, alone.x_test)


def test_labels_that_do_not_fit_the_images_are_refused(bare):
    np.save(bare.with_name("digits.labels.npy"), np.zeros(7, np.uint8))
    with pytest.raises(DataError, match="7 labels for 2500 images"):
        load_dataset(bare)


def test_pack_shows_a_bar_on_a_terminal(tmp_path, monkeypatch, capsys):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:  # tqdm shows its bar only on a terminal
            return True

    shown = Terminal()
    monkeypatch.setattr(sys, "stderr", shown)
    assert main(["data", "pack", str(FIXTURE), str(tmp_path / "p.npy")]) == 0
    assert "packing" in shown.getvalue() and "/2.50k" in shown.getvalue()  # its total
