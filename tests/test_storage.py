"""Saved models: corrupt, truncated, foreign or planted files are refused, never run."""

import json
import pickle

import pytest

from deepae import Autoencoder
from deepae.errors import RunError


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "model"
    Autoencoder(hidden_sizes=(8,)).save(folder)
    return folder


def test_missing_folder_and_files(tmp_path, saved):
    with pytest.raises(RunError, match="no run folder"):
        Autoencoder.load(tmp_path / "nope")
    (saved / "model.safetensors").unlink()
    with pytest.raises(RunError, match="model.safetensors is missing"):
        Autoencoder.load(saved)


def test_truncated_weights(saved):
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(RunError, match="truncated or corrupt"):
        Autoencoder.load(saved)


def test_corrupt_and_foreign_configs(saved):
    path = saved / "config.json"
    good = json.loads(path.read_text())
    path.write_text('{"format": "deepae-model", "format_')
    with pytest.raises(RunError, match="config.json is corrupt"):
        Autoencoder.load(saved)
    path.write_text(json.dumps({**good, "format_version": 99}))
    with pytest.raises(RunError, match="newer than this deepae"):
        Autoencoder.load(saved)
    path.write_text(json.dumps({"something": "else"}))
    with pytest.raises(RunError, match="not a deepae model config"):
        Autoencoder.load(saved)
    path.write_text(json.dumps({**good, "model": {**good["model"], "latent_size": "two"}}))
    with pytest.raises(RunError, match="latent_size"):
        Autoencoder.load(saved)


def test_weights_that_do_not_match_the_config(saved, tmp_path):
    other = tmp_path / "other"
    Autoencoder(hidden_sizes=(16,)).save(other)
    (saved / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(RunError, match="shape"):
        Autoencoder.load(saved)


class _Payload:
    """Unpickling this would create a marker file: the test checks it never happens."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_planted_pickle_is_refused_and_never_executed(saved, tmp_path):
    marker = tmp_path / "pwned"
    (saved / "model.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(RunError, match="not a readable safetensors file"):
        Autoencoder.load(saved)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(marker))).close()  # the payload is live: it does fire
    assert marker.exists()


LIAR = b'{"w": {"dtype": "F32", "shape": [9999, 9999], "data_offsets": [0, 399920004]}}'


@pytest.mark.parametrize(
    "blob",
    [
        b"",  # empty
        b"\x00" * 7,  # shorter than the 8-byte header length
        (2**60).to_bytes(8, "little") + b"{}",  # a header length that lies (would be 1 EiB)
        (10).to_bytes(8, "little") + b'{"a": 1}  ',  # a header that is JSON but not tensors
        len(LIAR).to_bytes(8, "little") + LIAR + bytes(16),  # offsets past the end of the file
    ],
    ids=["empty", "short", "length-lie", "foreign-json", "offset-lie"],
)
def test_weights_whose_header_lies(saved, blob):
    (saved / "model.safetensors").write_bytes(blob)
    with pytest.raises(RunError, match="not a readable safetensors file") as err:
        Autoencoder.load(saved)
    assert "\n" not in str(err.value)
