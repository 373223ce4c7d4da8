"""Bad input on the command line ends in one line on stderr and exit code 2, never in a
traceback, a hang or a crash, and touches nothing already saved: crafted config files,
deeply nested JSON, sizes that cannot fit in memory, huge index ranges, FIFOs and devices
where files belong, and run names that are not one folder name."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepae.cli import main
from deepae.errors import ConfigError
from deepae.run import figures

FIXTURE = Path(__file__).parent / "fixtures" / "mnist-small.npz"
CLI = [sys.executable, "-m", "deepae.cli"]
TINY = ["--dataset", str(FIXTURE), "--epochs", "1", "--no-progress", "--no-evaluate"]


@pytest.fixture
def run(cli_run_copy):
    return cli_run_copy  # `deepae train --epochs 1` on the fixture, this test's own copy


def cli(capsys, *args):
    """`deepae ARGS` in this process: (exit code, stderr)."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def run_cli(*args, timeout=120):
    """`deepae ARGS` in a real process, bounded in time: (exit code, stderr)."""
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    return proc.returncode, proc.stderr


def assert_one_line(code, err, *phrases):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("deepae: error: "), err
    for phrase in phrases:
        assert phrase in lines[0], err


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- crafted config.json, run.json, metrics.json ----------------------------------------


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("train", "seed", "abc"),
        ("train", "seed", 1.5),
        ("train", "seed", 2**100),
        ("model", "image_shape", [784]),  # 784 pixels, as input_size, but not H x W
    ],
)
@pytest.mark.parametrize("command", [["summary"], ["train", "--epochs", "2", "--resume"]])
def test_a_crafted_config_json_is_one_line(run, capsys, section, field, value, command):
    path = run / "config.json"
    config = json.loads(path.read_text())
    config[section][field] = value
    path.write_text(json.dumps(config))
    before = snapshot(run)
    code, err = cli(capsys, *command, run)
    assert_one_line(code, err, "config.json", field)
    assert snapshot(run) == before


@pytest.mark.parametrize("depth", [500, 100_000])  # 500 parses, then overflowed a reader
@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("config.json", ["summary"]),
        ("config.json", ["train", "--epochs", "2", "--resume"]),
        ("run.json", ["summary"]),
        ("run.json", ["train", "--epochs", "2", "--resume"]),
        ("metrics.json", ["plot"]),
    ],
)
def test_deeply_nested_json_is_one_line(run, capsys, name, command, depth):
    path = run / name
    deep = path.read_text().replace("{", '{"deep": ' + "[" * depth + "]" * depth + ", ", 1)
    path.write_text(deep)
    code, err = cli(capsys, *command, run)
    assert_one_line(code, err, name, "nested too deeply")
    assert path.read_text() == deep


@pytest.mark.parametrize(
    "command",
    [
        ["decode", "{}", "0,1"],
        ["evaluate", "{}"],
        ["summary", "{}"],
        ["plot", "{}"],
        ["explore", "{}"],
        ["encode", "{}"],
        ["reconstruct", "{}"],
    ],  # fmt: skip
)
def test_a_file_given_as_the_run_is_named_as_such(tmp_path, capsys, command):
    # Not "RUN/run.json cannot be read (Not a directory); delete it": that advice is wrong.
    given = tmp_path / "notes.txt"
    given.write_text("not a run")
    code, err = cli(capsys, *[a.format(given) for a in command])
    assert_one_line(code, err, f"{given} is a file, not a run folder")
    assert given.read_text() == "not a run"


def test_a_bad_or_taken_name_is_refused_before_the_data_is_loaded(tmp_path, capsys):
    # The oracle: a dataset that cannot load. Checked first, the name is what is reported.
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.json").write_text("{}")
    missing = tmp_path / "no-such-data"
    for name, phrase in (("../x", "is not a folder name"), ("taken", "already exists")):
        code, err = cli(capsys, "train", "--name", name, "--runs-dir", tmp_path,
                        "--dataset", missing, "--epochs", "1", "--no-progress")  # fmt: skip
        assert_one_line(code, err, phrase)


def test_an_empty_preset_is_refused_not_taken_for_the_article(tmp_path, capsys):
    # `deepae train --preset "$PRESET"` with PRESET unset must not train the article's model.
    code, err = cli(capsys, "train", "--preset", "", "--runs-dir", tmp_path, *TINY)
    assert_one_line(code, err, "unknown preset ''")
    assert list(tmp_path.iterdir()) == []


def test_a_seed_past_torchs_range_is_refused_before_the_run_folder(tmp_path, capsys):
    # It used to overflow torch's seed at the first epoch, leaving a stuck "training" run.
    code, err = cli(capsys, "train", *TINY, "--runs-dir", tmp_path, "--name", "s",
                    "--seed", 4611686018427387904)  # fmt: skip
    assert_one_line(code, err, "--seed")
    assert not (tmp_path / "s").exists()


# -- sizes that cannot fit in memory, index ranges that cannot be drawn ---------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["summary", "--hidden-sizes", "1000000000"], "--hidden-sizes"),
        (["summary", "--latent-size", "1000000000"], "--latent-size"),
        (["train", "--hidden-sizes", "1000000000"], "--hidden-sizes"),
        (["train", "--latent-size", "1000000000"], "--latent-size"),
    ],
)
def test_a_model_too_big_for_memory_is_refused_before_allocating(tmp_path, args, flag):
    if args[0] == "train":
        args = [*args, *TINY, "--runs-dir", tmp_path / "runs", "--name", "big"]
    code, err = run_cli(*args)  # a process of its own: terabytes must not be asked for here
    assert_one_line(code, err, flag, "parameters")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["train", "reconstruct", "plot"])
def test_a_huge_index_range_is_refused_without_building_it(run, tmp_path, command):
    args = [command, run] if command != "train" else ["train", *TINY, "--runs-dir", tmp_path]
    before = snapshot(run)
    code, err = run_cli(*args, "--indices", "0-10000000000")
    assert_one_line(code, err, "--indices", "1000")
    assert snapshot(run) == before


def test_check_indices_caps_the_count():
    n = 5000
    assert figures.check_indices(range(figures.MAX_INDICES), n) == list(range(1000))
    with pytest.raises(ConfigError, match="more than the 1000") as info:
        figures.check_indices(list(range(figures.MAX_INDICES + 1)), n)
    assert info.value.field == "indices"
    with pytest.raises(ConfigError):
        figures.check_indices(range(10**10), n)  # refused by its length, never iterated


# -- FIFOs and devices where files belong -----------------------------------------------------

NOT_REGULAR = {  # what a path can be instead of a file: a FIFO blocks open() forever
    "fifo": os.mkfifo,
    "dev-zero": lambda p: os.symlink("/dev/zero", p),
}


@pytest.mark.parametrize("kind", NOT_REGULAR)
@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_a_model_file_that_is_not_regular_is_one_line(run, kind, name):
    (run / name).unlink()
    NOT_REGULAR[kind](run / name)
    code, err = run_cli("summary", run, timeout=60)
    assert_one_line(code, err, name)


@pytest.mark.parametrize("kind", NOT_REGULAR)
@pytest.mark.parametrize("name", ["x.npy", "x.npz"])
def test_a_dataset_that_is_not_a_regular_file_is_one_line(tmp_path, kind, name):
    NOT_REGULAR[kind](tmp_path / name)
    code, err = run_cli("train", *TINY, "--dataset", tmp_path / name, "--runs-dir",
                        tmp_path / "runs", timeout=60)  # fmt: skip
    assert_one_line(code, err)
    assert not (tmp_path / "runs").exists()


def test_idx_files_that_are_fifos_in_the_data_dir_are_one_line(tmp_path):
    from deepae.data import DATASETS

    for fname in DATASETS["mnist"].files.values():
        os.mkfifo(tmp_path / fname)
    code, err = run_cli("train", "--data-dir", tmp_path, "--epochs", "1", "--runs-dir",
                        tmp_path / "runs", timeout=60)  # fmt: skip
    assert_one_line(code, err, str(tmp_path))
    assert not (tmp_path / "runs").exists()


# -- run names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "{tmp}/abs/x", "a/b", ".", "..", "file"])
def test_a_name_that_is_not_one_new_folder_is_refused(tmp_path, capsys, name):
    runs = tmp_path / "deep" / "runs"
    runs.mkdir(parents=True)
    (runs / "file").write_text("keep me")
    code, err = cli(capsys, "train", *TINY, "--runs-dir", runs, "--name",
                    name.format(tmp=tmp_path))  # fmt: skip
    assert_one_line(code, err, "--name")
    assert sorted(p.name for p in runs.iterdir()) == ["file"]
    assert (runs / "file").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_validation_freq_below_one_is_one_line(tmp_path, capsys, value):
    code, err = cli(capsys, "train", *TINY, "--runs-dir", tmp_path, "--validation-freq", value)
    assert_one_line(code, err, "validation_freq must be positive", "--validation-freq")
    assert not any(tmp_path.iterdir())
