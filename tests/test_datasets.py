"""deepae.datasets, deepae.images and deepae.arrays: every source `load_dataset` takes,
checked against arrays built by hand (and Pillow as the oracle for resizing), and every
bad input ending in one DataError that names the file."""

import os
import pickle
import re
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format
from PIL import Image

from deepae import load_dataset
from deepae.data import describe, holdout_split, parse_image_size
from deepae.data import folders as images_mod
from deepae.data.arrays import open_npz, read_npy
from deepae.errors import ConfigError, DataError

RNG = np.random.default_rng(7)


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def labelled(tmp_path):
    """A folder with class subfolders b/ and a/ (3 and 4 gray 28 x 28 PNGs): the arrays
    by relative path, in the sorted order the loader must keep."""
    folder, arrays = tmp_path / "labelled", {}
    for cls, n in (("b", 3), ("a", 4)):
        for i in range(n):
            arrays[f"{cls}/{i}.png"] = RNG.integers(0, 256, (28, 28), dtype=np.uint8)
            save_png(folder / cls / f"{i}.png", arrays[f"{cls}/{i}.png"])
    return folder, dict(sorted(arrays.items()))


def load(source, cache, **kwargs):
    return load_dataset(source, cache_dir=cache, **kwargs)


def both(d) -> np.ndarray:
    """Train and validation images of a split load, back in the original order."""
    return np.concatenate([d.x_train, d.x_test])


# -- image folders ---------------------------------------------------------------------------


def test_class_subfolders_become_sorted_labels(labelled, cache):
    folder, arrays = labelled
    d = load(folder, cache, val_fraction=0.25)
    assert d.class_names == ("a", "b")
    assert d.x_train.dtype == np.uint8 and d.x_train.shape[1:] == (28, 28)
    assert (len(d.x_train), len(d.x_test)) == (5, 2)  # round(7 * 0.25) = 2 held out
    train, val = holdout_split(7, val_fraction=0.25, seed=0)
    expected = np.stack(list(arrays.values()))  # a/0..a/3, b/0..b/2
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(d.x_train, expected[train])
    np.testing.assert_array_equal(d.x_test, expected[val])
    np.testing.assert_array_equal(d.y_train, labels[train])
    np.testing.assert_array_equal(d.y_test, labels[val])
    assert d.name == "labelled" and d.source == "image folder" and d.path == folder


def test_a_linked_class_folder_is_a_class_and_a_link_loop_is_skipped(labelled, tmp_path, cache):
    folder, arrays = labelled
    elsewhere = tmp_path / "elsewhere" / "c"
    for i in range(2):
        save_png(elsewhere / f"{i}.png", RNG.integers(0, 256, (28, 28), dtype=np.uint8))
    (folder / "c").symlink_to(elsewhere, target_is_directory=True)
    (folder / "a" / "again").symlink_to(folder, target_is_directory=True)  # a loop
    logs = []
    d = load_dataset(folder, cache_dir=cache, log=logs.append)
    assert d.class_names == ("a", "b", "c")
    assert np.bincount(np.concatenate([d.y_train, d.y_test])).tolist() == [4, 3, 2]  # once each
    assert any("a/again" in line and "read already" in line for line in logs)


def test_a_folder_name_that_is_not_utf8_is_a_printable_class(tmp_path, cache):
    folder = tmp_path / "latin1"
    for name in (b"caf\xe9", b"tea"):  # an old zip's Latin-1 name, and a plain one
        for i in range(2):
            raw = os.path.join(os.fsencode(folder), name, b"%d.png" % i)
            save_png(Path(os.fsdecode(raw)), RNG.integers(0, 256, (28, 28), dtype=np.uint8))
    d = load_dataset(folder, cache_dir=cache)
    assert d.class_names == ("caf\\xe9", "tea")
    d.class_names[0].encode("utf-8")  # drawable text: no lone surrogates left


def test_a_flat_folder_is_unlabelled(tmp_path, cache):
    for i in range(5):
        save_png(tmp_path / "flat" / f"{i}.png", np.full((28, 28), i, np.uint8))
    d = load(tmp_path / "flat", cache)
    assert d.y_train is None and d.y_test is None and d.class_names is None
    assert sorted(both(d)[:, 0, 0].tolist()) == [0, 1, 2, 3, 4]
    assert describe(d)["classes"] == "none (unlabelled)"


def test_grayscale_is_itu_601_luma(tmp_path, cache):
    # Pillow's L = R * 299/1000 + G * 587/1000 + B * 114/1000, in 16-bit fixed point.
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 200, 90), (255, 255, 255)]
    for i, rgb in enumerate(colours):
        save_png(tmp_path / "rgb" / f"{i}.png", np.full((50, 70, 3), rgb, np.uint8))
    d = load(tmp_path / "rgb", cache, val_fraction=0.2)
    got = sorted(int(v) for v in both(d)[:, 14, 14])
    want = sorted((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16 for r, g, b in colours)
    assert got == want == [29, 76, 131, 150, 255]  # 0.299 * 10 + 0.587 * 200 + ... = 130.65
    assert all((im == im[0, 0]).all() for im in both(d))  # a flat colour stays flat


def test_resize_matches_pillow_by_hand(tmp_path):
    rgba = RNG.integers(0, 256, (45, 61, 4), dtype=np.uint8)
    path = save_png(tmp_path / "x.png", rgba)
    want = np.asarray(Image.fromarray(rgba).convert("L").resize((20, 30), Image.Resampling.LANCZOS))
    got = images_mod.read_image(path, (30, 20))  # (H, W)
    assert got.shape == (30, 20)
    np.testing.assert_array_equal(got, want)


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 25700, 65535]], np.uint16).repeat(4, axis=0)  # (4, 4)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    np.testing.assert_array_equal(images_mod.read_image(path, (4, 4))[0], [0, 1, 100, 255])


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_float_gray_in_unit_or_byte_range_is_scaled_to_bytes(tmp_path, scale):
    # By hand: 0.5 x 255 = 127.5 rounds to 128 (half to even), 0.2 x 255 = 51.
    values = np.array([[0.0, 0.2, 0.5, 1.0]], np.float32).repeat(4, axis=0) * np.float32(scale)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode == "F"
    np.testing.assert_array_equal(images_mod.read_image(path, (4, 4))[0], [0, 51, 128, 255])


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (-0.5, "outside [0, 1] and [0, 255]"),
        (300.0, "outside"),
        (np.nan, "NaN or infinite"),
    ],  # fmt: skip
)
def test_float_gray_of_unknown_range_is_unreadable(tmp_path, value, why):
    values = np.full((4, 4), 0.5, np.float32)
    values[1, 2] = value
    path = tmp_path / "odd.tif"
    Image.fromarray(values).save(path)
    with pytest.raises(DataError, match=re.escape(why)):
        images_mod.read_image(path, (4, 4))


def test_image_size_option(labelled, cache):
    d = load(labelled[0], cache, image_size="14x21")
    assert d.x_train.shape[1:] == (14, 21)
    assert d.load_args["image_size"] == [14, 21]


@pytest.mark.parametrize(
    ("value", "size"), [(28, (28, 28)), ("32x24", (32, 24)), ("16", (16, 16)), ((8, 9), (8, 9))]
)
def test_parse_image_size(value, size):
    assert parse_image_size(value) == size


@pytest.mark.parametrize("value", [0, "0x5", "abc", "28x", (28,), "28x28x3", 5000, True])
def test_parse_image_size_rejects(value):
    with pytest.raises(ConfigError, match="image size"):
        parse_image_size(value)


def test_holdout_split_is_seeded_disjoint_and_complete():
    train, val = holdout_split(1000, val_fraction=0.1, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert not set(train) & set(val) and set(train) | set(val) == set(range(1000))
    assert list(train) == sorted(train) and list(val) == sorted(val)
    again = holdout_split(1000, val_fraction=0.1, seed=3)
    np.testing.assert_array_equal(val, again[1])
    assert set(val) != set(holdout_split(1000, val_fraction=0.1, seed=4)[1])


def test_split_seed_reaches_the_loader(tmp_path, cache):
    x = RNG.integers(0, 256, (50, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    a, b = (load(tmp_path / "x.npy", cache, seed=s) for s in (0, 1))
    np.testing.assert_array_equal(a.x_test, x[holdout_split(50, val_fraction=0.1, seed=0)[1]])
    assert not np.array_equal(a.x_test, b.x_test)


def test_second_load_comes_from_the_cache_without_opening_images(labelled, cache, monkeypatch):
    first = load(labelled[0], cache)
    assert first.source == "image folder"

    def no_open(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(Image, "open", no_open)
    second = load(labelled[0], cache)
    assert second.source == "image folder (cached)"
    np.testing.assert_array_equal(both(first), both(second))
    np.testing.assert_array_equal(second.y_train, first.y_train)
    assert second.class_names == first.class_names
    assert len(list((cache / "folders").glob("*.npy"))) == 1


def test_a_changed_file_invalidates_the_cache(labelled, cache):
    folder, arrays = labelled
    load(folder, cache)
    stat = (folder / "a/0.png").stat()
    save_png(folder / "a/0.png", np.full((28, 28), 7, np.uint8))
    os.utime(folder / "a/0.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    d = load(folder, cache)
    assert d.source == "image folder"
    assert (both(d) == 7).all(axis=(1, 2)).sum() == 1
    save_png(folder / "c/new.png", np.zeros((28, 28), np.uint8))  # a new class appears
    d = load(folder, cache)
    assert d.class_names == ("a", "b", "c") and len(both(d)) == 8
    assert len(list((cache / "folders").glob("*.npy"))) == 1  # old entries are replaced


def test_a_broken_cache_entry_is_read_again(labelled, cache):
    load(labelled[0], cache)
    (npy,) = (cache / "folders").glob("*.npy")
    npy.write_bytes(npy.read_bytes()[:-10])
    lines = []
    d = load(labelled[0], cache, log=lines.append)
    assert d.source == "image folder" and len(both(d)) == 7
    assert any("broken cache entry" in line for line in lines)


def test_an_unwritable_cache_costs_only_speed(labelled, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    lines = []
    d = load(labelled[0], blocker, log=lines.append)
    assert len(both(d)) == 7
    assert any("not caching" in line for line in lines)


# -- arrays ------------------------------------------------------------------------------------


def test_keras_style_npz_is_used_as_split(tmp_path, cache):
    x_train, x_test = (
        RNG.integers(0, 256, (8, 5, 6), np.uint8),
        RNG.integers(0, 256, (3, 5, 6), np.uint8),
    )
    y_train, y_test = np.arange(8) % 3, np.array([2, 0, 1])
    np.savez(tmp_path / "k.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             class_names=np.array(["cat", "dog", "emu"]))  # fmt: skip
    d = load(tmp_path / "k.npz", cache)
    np.testing.assert_array_equal(d.x_train, x_train)
    np.testing.assert_array_equal(d.x_test, x_test)
    np.testing.assert_array_equal(d.y_test, y_test)
    assert d.y_train.dtype == np.uint8 and d.class_names == ("cat", "dog", "emu")
    assert d.source == "npz file" and d.name == "k"


@pytest.mark.parametrize(("images", "labels"), [("images", "labels"), ("x", "y"), ("arr_0", None)])
def test_unsplit_npz_forms(tmp_path, cache, images, labels):
    x = RNG.integers(0, 256, (20, 3, 3), np.uint8)
    arrays = {images: x} | ({labels: np.arange(20) % 4} if labels else {})
    np.savez(tmp_path / "u.npz", **arrays)
    d = load(tmp_path / "u.npz", cache)
    train, val = holdout_split(20, val_fraction=0.1, seed=0)
    np.testing.assert_array_equal(d.x_train, x[train])
    if labels:
        np.testing.assert_array_equal(d.y_test, (np.arange(20) % 4)[val])
    else:
        assert d.y_train is None


def test_string_labels_become_class_names(tmp_path, cache):
    names = np.array(["zebra", "ant", "zebra", "moth"] * 5)
    np.savez(tmp_path / "s.npz", images=RNG.integers(0, 256, (20, 2, 2), np.uint8), labels=names)
    d = load(tmp_path / "s.npz", cache)
    assert d.class_names == ("ant", "moth", "zebra")
    train, _ = holdout_split(20, val_fraction=0.1, seed=0)
    assert [d.class_names[v] for v in d.y_train] == names[train].tolist()


@pytest.mark.parametrize(
    "shape", [(12, 4, 4), (12, 4, 4, 1), (12, 16)], ids=["NHW", "NHW1", "flat"]
)
def test_npy_shapes_and_float_images(tmp_path, cache, shape):
    x = RNG.random(shape)  # float64 in [0, 1)
    np.save(tmp_path / "f.npy", x)
    d = load(tmp_path / "f.npy", cache)
    assert d.x_train.dtype == np.float32 and d.x_train.shape[1:] == (4, 4)
    np.testing.assert_allclose(np.sort(both(d).ravel()), np.sort(x.ravel()), rtol=1e-6)
    assert d.y_train is None and d.source == "npy file"


def test_a_fortran_ordered_npy_loads_and_is_said_to_be_slow(tmp_path):
    # Mapped, an F-ordered file scatters each image over the whole file; the images are
    # still right (the oracle: the array saved), and the load says how to make it fast.
    x = RNG.integers(0, 256, (40, 6, 6), dtype=np.uint8)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    np.save(tmp_path / "c.npy", x)
    logs = []
    d = load_dataset(tmp_path / "f.npy", log=logs.append)
    order = np.argsort(np.concatenate(holdout_split(40, val_fraction=0.1, seed=0)))
    np.testing.assert_array_equal(both(d)[order], x)
    (line,) = [m for m in logs if m.startswith("warning: ")]
    assert "is stored in Fortran order" in line and "numpy.ascontiguousarray" in line
    with pytest.warns(UserWarning, match="is stored in Fortran order"):
        load_dataset(tmp_path / "f.npy")  # no log: a Python warning, as for folders
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(tmp_path / "c.npy", log=logs.append)  # C order: nothing to say
    assert len([m for m in logs if m.startswith("warning: ")]) == 1


def test_arrays_are_resized_on_request(tmp_path, cache):
    x = RNG.random((10, 8, 8)).astype(np.float32)
    np.save(tmp_path / "f.npy", x)
    d = load(tmp_path / "f.npy", cache, image_size=4)
    want = np.asarray(Image.fromarray(x[0]).resize((4, 4), Image.Resampling.LANCZOS))
    first = both(d)[np.argsort(np.concatenate(holdout_split(10, val_fraction=0.1, seed=0)))][0]
    np.testing.assert_allclose(first, np.clip(want, 0, 1), rtol=1e-6)
    assert d.x_train.dtype == np.float32 and d.x_train.min() >= 0 and d.x_train.max() <= 1


def test_load_args_say_how_to_load_again(labelled, cache, monkeypatch):
    monkeypatch.chdir(labelled[0].parent)
    d = load("labelled", cache, val_fraction=0.3, seed=5)
    assert d.load_args == {"dataset": str(labelled[0]), "image_size": None,
                           "val_fraction": 0.3, "seed": 5, "data_dir": None}  # fmt: skip
    again = load(d.load_args.pop("dataset"), cache, **d.load_args)
    np.testing.assert_array_equal(again.x_test, d.x_test)


# -- Fashion-MNIST, for real (Debian's dataset-fashion-mnist; `make test` installs it) ------


def test_fashion_mnist_from_the_debian_package(tmp_path):
    system = Path("/usr/share/datasets/fashion-mnist")
    assert system.is_dir(), "install it: scripts/ensure-test-deps.sh (make test runs it)"
    d = load_dataset("fashion-mnist", cache_dir=tmp_path)
    assert d.source == f"system {system}"
    assert d.x_train.shape == (60000, 28, 28) and d.x_test.shape == (10000, 28, 28)
    # Zalando's README: labels of the first images, and the train pixel mean 0.2860.
    assert d.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert d.x_train.mean() / 255 == pytest.approx(0.2860, abs=1e-4)
    assert d.class_names[0] == "T-shirt/top" and d.class_names[9] == "Ankle boot"
    from deepae.plots import plot_latent

    fig = plot_latent(RNG.random((10, 2)), d.y_train[:10], class_names=d.class_names)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"T-shirt/top", "Ankle boot", "Sandal"} <= set(legend)
    from deepae import Autoencoder
    from deepae.explorer import build_explorer

    page = build_explorer(Autoencoder(), d.x_train[:50], d.y_train[:50], class_names=d.class_names)
    assert '"classes":["T-shirt/top","Trouser","Pullover","Dress","Coat","Sandal"' in page


# -- bad input: one DataError naming the file --------------------------------------------------


def test_missing_path_and_unknown_name(tmp_path, cache):
    with pytest.raises(DataError, match="neither a dataset name"):
        load(tmp_path / "nope", cache)
    with pytest.raises(DataError, match="cifar10: neither a dataset name"):
        load("cifar10", cache)


def test_empty_folders(tmp_path, cache):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no image files"):
        load(tmp_path / "empty", cache)
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".DS_Store").write_bytes(b"\0\1")
    with pytest.raises(DataError, match="hidden: no image files"):
        load(tmp_path / "hidden", cache)


@pytest.fixture
def messy(tmp_path):
    """Ten good PNGs and one truncated PNG, one text file, one FIFO, one loose file."""
    folder = tmp_path / "messy"
    for i in range(10):
        save_png(folder / "digits" / f"{i}.png", np.full((28, 28), i, np.uint8))
    noise = save_png(tmp_path / "noise.png", RNG.integers(0, 256, (28, 28), dtype=np.uint8))
    (folder / "digits" / "cut.png").write_bytes(noise.read_bytes()[:600])  # of ~800
    (folder / "digits" / "notes.txt").write_text("not an image")
    os.mkfifo(folder / "digits" / "pipe")
    save_png(folder / "loose.png", np.zeros((28, 28), np.uint8))
    return folder


def test_a_class_folder_without_readable_images_is_named_in_a_warning(labelled, cache):
    folder, _ = labelled
    (folder / "c").mkdir()
    (folder / "d").mkdir()
    (folder / "d" / "notes.txt").write_text("not an image")
    lines = []
    d = load(folder, cache, log=lines.append)
    assert d.class_names == ("a", "b")
    assert [line for line in lines if "class folder" in line] == [
        f"warning: {folder}: 2 class folder(s) hold no readable image and are not classes "
        "of this dataset: c, d"
    ]
    lines.clear()
    (folder / "c").rmdir()
    (folder / "d" / "notes.txt").unlink()
    (folder / "d").rmdir()
    load(folder, cache, log=lines.append)
    assert not [line for line in lines if "class folder" in line]


def test_bad_files_are_skipped_with_one_warning(messy, cache):
    lines = []
    d = load(messy, cache, log=lines.append)
    assert len(both(d)) == 10
    (warning,) = lines
    assert "skipped 4 of 14 files" in warning and "and 1 more" in warning
    lines.clear()
    found = images_mod.load_image_folder(messy, cache_dir=cache, log=lines.append)
    assert found.cached and lines == [warning]  # from the cache: the same warning again
    assert {rel: why.split(" (")[0] for rel, why in found.skipped} == {
        "digits/cut.png": "image file is truncated",
        "digits/notes.txt": "not an image file Pillow can read",
        "digits/pipe": "not a regular file",
        "loose.png": "not in a class subfolder",
    }


def test_without_a_log_skipped_files_are_a_python_warning(messy, cache):
    # The README: unreadable files are skipped with one warning. A library call without
    # `log` hears it as Python's warnings do; with `log`, the log has it and Python's none.
    os.unlink(messy / "digits" / "pipe")
    with pytest.warns(UserWarning) as heard:
        d = load(messy, cache)
    assert len(d.x_train) + len(d.x_test) == 10
    assert len(heard) == 1  # one warning for all of them, as the log's one line
    said = str(heard[0].message)
    assert said.startswith(f"{messy}: skipped 3 of 13 files that are not readable images: ")
    assert "digits/cut.png" in said and "loose.png" in said
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(messy, cache, log=lines.append)
    assert any(line.startswith(f"warning: {messy}: skipped 3 of 13") for line in lines)


def test_strict_stops_at_the_first_bad_file(messy, cache):
    with pytest.raises(DataError, match=r"digits/cut\.png: .*without strict \(--strict\) to skip"):
        os.unlink(messy / "digits" / "pipe")
        os.unlink(messy / "loose.png")
        load(messy, cache, strict=True)
    with pytest.warns(UserWarning, match="skipped"):  # fills the cache; strict must still
        load(messy, cache)  # fail on a cache hit
    with pytest.raises(DataError, match=r"cut\.png"):
        load(messy, cache, strict=True)


def test_a_folder_of_no_images(tmp_path, cache):
    for i in range(3):
        (tmp_path / "junk" / f"{i}.png").parent.mkdir(exist_ok=True)
        (tmp_path / "junk" / f"{i}.png").write_bytes(os.urandom(100))
    with pytest.raises(DataError, match=r"junk: none of its 3 files is a readable image"):
        load(tmp_path / "junk", cache)


def test_too_few_images_to_split(tmp_path, cache):
    save_png(tmp_path / "one" / "a.png", np.zeros((28, 28), np.uint8))
    with pytest.raises(DataError, match="only 1 image"):
        load(tmp_path / "one", cache)


def save_npz(tmp_path, **arrays):
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


X = np.zeros((10, 4, 4), np.uint8)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((10,), np.uint8)}, r"images of shape \(10,\)"),
        ({"images": np.zeros((10, 4, 4, 3), np.uint8)}, r"images of shape \(10, 4, 4, 3\)"),
        ({"images": np.zeros((10, 15), np.uint8)}, "15 values are not square"),
        ({"images": np.zeros((0, 4, 4), np.uint8)}, "with N, H, W at least 1"),
        ({"images": np.zeros((10, 4, 4), np.int64)}, "dtype int64; use uint8"),
        ({"images": np.zeros((10, 4, 4), bool)}, "dtype bool"),
        ({"images": np.full((10, 4, 4), 255.0)}, r"must lie in \[0, 1\] \(the BCE loss"),
        ({"images": np.full((10, 4, 4), np.nan)}, "NaN"),
        ({"images": X, "labels": np.zeros(9, int)}, "9 labels for 10 images"),
        ({"images": X, "labels": np.full(10, 256)}, "class numbers must lie in 0-255"),
        ({"images": X, "labels": np.full(10, -1)}, "class numbers"),
        ({"images": X, "labels": np.zeros(10)}, "labels of dtype float64"),
        ({"images": X, "labels": np.zeros((10, 2), int)}, r"labels of shape \(10, 2\)"),
        ({"x_train": X, "x_test": X, "y_train": np.zeros(10, int)}, "not both y_train and y_test"),
        ({"x_train": X, "x_test": np.zeros((2, 5, 5), np.uint8)}, "same size and dtype"),
        ({"a": X, "b": X}, "holds a, b; expected x_train and x_test"),
        ({"images": X, "labels": np.arange(10), "class_names": np.array(["x"])}, "no entry"),
    ],
)
def test_bad_arrays(tmp_path, cache, arrays, message):
    path = save_npz(tmp_path, **arrays)
    with pytest.raises(DataError, match=message) as err:
        load(path, cache)
    assert str(path) in str(err.value)


def test_object_arrays_are_refused_and_never_unpickled(tmp_path, cache):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    array = np.empty(1, dtype=object)
    array[0] = Payload()
    np.save(tmp_path / "evil.npy", array, allow_pickle=True)
    with pytest.raises(DataError, match="object arrays would need pickle"):
        load(tmp_path / "evil.npy", cache)
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload())).close()  # the payload is live: it does fire
    assert marker.exists()


def test_an_object_array_inside_an_npz_is_named_as_such_not_as_a_corrupt_entry(tmp_path, cache):
    # DataError is a ValueError too, and zip entries catch ValueError as damage: the
    # entry's own reason must come through.
    images = np.empty(4, dtype=object)
    np.savez(tmp_path / "odd.npz", x_train=images, allow_pickle=True)
    with pytest.raises(DataError, match="object arrays would need pickle") as err:
        load(tmp_path / "odd.npz", cache)
    assert "corrupt zip entry" not in str(err.value)
    assert isinstance(err.value, ValueError)


def npy_bytes(shape, dtype="<u1", data=b"") -> bytes:
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    import io

    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def test_lying_npy_header_is_refused_before_allocating(tmp_path):
    path = tmp_path / "liar.npy"
    path.write_bytes(npy_bytes((100_000, 1000, 1000), data=bytes(16)))  # claims 100 GB
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"claims shape \(100000, 1000, 1000\).*holds 16"):
            read_npy(path)
        assert tracemalloc.get_traced_memory()[1] < 10_000_000
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "not a .npy array"),
        (b"\x93NUMPY\x01\x00", "not a .npy array"),
        (b"PK\x03\x04 not numpy", "not a .npy array"),
        (npy_bytes((2, 2), data=bytes(3)), "truncated"),
        (npy_bytes((2, 2), data=bytes(5)), "trailing bytes"),
        (npy_bytes((-4,), data=b""), "negative dimension"),
        (npy_bytes((2,), dtype=[("a", "<u1")], data=bytes(2)), "not supported"),
    ],
)
def test_bad_npy_files(tmp_path, cache, blob, message):
    path = tmp_path / "bad.npy"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=message) as err:
        load(path, cache)
    assert str(path) in str(err.value)


def test_bad_npz_files(tmp_path, cache):
    good = save_npz(tmp_path, images=RNG.integers(0, 256, (50, 8, 8), np.uint8)).read_bytes()
    path = tmp_path / "t.npz"
    for blob, message in [
        (good[: len(good) // 2], "not a readable .npz"),  # the central directory is gone
        (b"\x89PNG\r\n\x1a\n" + good[8:], "corrupt zip entry|not a readable"),  # wrong magic
        (good[:100] + bytes([good[100] ^ 1]) + good[101:], "corrupt zip entry"),  # bad CRC
        (b"", "not a readable .npz"),
    ]:
        path.write_bytes(blob)
        with pytest.raises(DataError, match=message) as err:
            load(path, cache)
        assert str(path) in str(err.value)


def test_npz_entry_that_lies_about_its_size(tmp_path, cache):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("images.npy", npy_bytes((2, 2, 2), data=bytes(8)))
    blob = bytearray(path.read_bytes())
    central = blob.rindex(b"PK\x01\x02")  # central directory: uncompressed size at +24
    blob[central + 24 : central + 28] = (2**31).to_bytes(4, "little")
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="more than deflate can expand"):
        load(path, cache)


def test_other_file_types_and_arguments(tmp_path, cache):
    (tmp_path / "x.csv").write_text("1,2,3")
    with pytest.raises(DataError, match="not a folder, .npz or .npy"):
        load(tmp_path / "x.csv", cache)
    with pytest.raises(ConfigError, match="val_fraction"):
        load("mnist", cache, val_fraction=1.0)
    with pytest.raises(ConfigError, match="data_dir is for"):
        load(tmp_path / "x.csv", cache, data_dir=tmp_path)


NOT_REGULAR = {  # what a path can be instead of a file: a FIFO blocks open() forever
    "fifo": os.mkfifo,
    "dev-zero": lambda p: os.symlink("/dev/zero", p),
}


@pytest.mark.parametrize("kind", NOT_REGULAR)
@pytest.mark.parametrize("name", ["x.npy", "x.npz"])
def test_an_array_path_that_is_not_a_regular_file_is_refused_at_once(tmp_path, cache, kind, name):
    import signal

    path = tmp_path / name
    NOT_REGULAR[kind](path)

    def expired(signum, frame):
        raise TimeoutError(f"reading {name} blocked")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(10)
    try:
        with pytest.raises(DataError):  # a link to /dev/zero is refused for its name
            load(path, cache)
        with pytest.raises(DataError, match="not a regular file") as err:
            read_npy(path)
        with pytest.raises(DataError, match="not a regular file"), open_npz(path):
            pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert str(path) in str(err.value)
