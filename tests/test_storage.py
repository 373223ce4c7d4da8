"""Saved models: corrupt, truncated, foreign or planted files are refused, never run."""

import json
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from deepae import Autoencoder, storage
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


@pytest.mark.parametrize("version", [0, True, "1", None])
def test_a_format_version_no_deepae_wrote_is_refused(saved, version):
    path = saved / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": version}))
    with pytest.raises(RunError, match="which no deepae wrote"):
        Autoencoder.load(saved)


def test_non_finite_weights_are_refused(saved):
    path = saved / "model.safetensors"
    tensors = load_safetensors(path.read_bytes())
    tensors["encoder.0.bias"][3] = float("nan")
    path.write_bytes(save_safetensors(tensors))
    with pytest.raises(RunError, match="encoder.0.bias holds NaN or infinite values"):
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


# -- byte-reproducible weights -----------------------------------------------------------

SAVE_IN_A_PROCESS = """
import sys
from deepae.config import ModelConfig
from deepae.model import build
from deepae.storage import save_weights
save_weights(sys.argv[1], build(ModelConfig(hidden_sizes=(8,), batch_norm=True), 3))
"""


def test_the_same_net_saved_in_two_processes_gives_the_same_bytes(tmp_path):
    # safetensors orders its metadata differently from one process (and save) to the next.
    blobs = []
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", SAVE_IN_A_PROCESS, str(tmp_path / name)],
                       check=True, timeout=120)  # fmt: skip
        blobs.append((tmp_path / name / "model.safetensors").read_bytes())
    assert blobs[0] == blobs[1]
    raw = blobs[0]
    n = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + n]
    oracle = json.dumps(json.loads(header), sort_keys=True, separators=(",", ":")).encode()
    assert header.rstrip(b" ") == oracle
    assert n % 8 == 0


def test_canonical_bytes_hold_the_same_tensors_and_metadata():
    tensors = {
        "b": torch.arange(3, dtype=torch.int64),
        "a.weight": torch.randn(5, 7),
        "c": torch.ones((), dtype=torch.float16),
    }
    metadata = {"format": "x", "version": "1", "state": '{"k": [1, 2]}', "z": "\u00e9"}
    raw = save_safetensors(tensors, metadata=metadata)
    canonical = storage.canonical_safetensors(raw)
    loaded = load_safetensors(canonical)
    assert loaded.keys() == tensors.keys()
    for k, v in tensors.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v), k
    n = int.from_bytes(canonical[:8], "little")
    assert json.loads(canonical[8 : 8 + n])["__metadata__"] == metadata
    assert canonical[8 + n :] == raw[8 + int.from_bytes(raw[:8], "little") :]  # data kept
    assert {storage.canonical_safetensors(save_safetensors(tensors, metadata=metadata))
            for _ in range(12)} == {canonical}  # fmt: skip
