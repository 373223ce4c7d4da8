"""deepae.fsio: atomic writes that leave either the old or the new file, and readers that
turn every kind of damage (bad JSON, wrong encoding, FIFOs, devices, huge files) into a
RunError instead of a crash or a hang."""

import contextlib
import errno
import json
import os
import signal

import pytest

from deepae import fsio
from deepae.errors import DeepAEError, RunError


@contextlib.contextmanager
def time_bound(seconds: int):
    """Fail (rather than hang the suite) when the body blocks for `seconds`."""

    def expired(signum, frame):
        pytest.fail(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_write_bytes_round_trip(tmp_path):
    data = bytes(range(256)) * 3
    fsio.write_bytes(tmp_path / "a.bin", data)
    assert (tmp_path / "a.bin").read_bytes() == data
    assert fsio.read_bytes(tmp_path / "a.bin", max_bytes=len(data), fix="-") == data


def test_write_text_is_utf8(tmp_path):
    text = "héllo ✓ 2-D\nline two\n"
    fsio.write_text(tmp_path / "a.txt", text)
    assert (tmp_path / "a.txt").read_bytes() == text.encode("utf-8")


def test_write_json_round_trip(tmp_path):
    obj = {"a": [1, 2.5, None, "x"], "nested": {"ok": True}, "ü": "ß"}
    fsio.write_json(tmp_path / "a.json", obj)
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == obj
    assert fsio.read_json(tmp_path / "a.json") == obj


def test_writers_create_missing_folders_and_replace_old_files(tmp_path):
    path = tmp_path / "new" / "deeper" / "a.txt"
    fsio.write_text(path, "first")
    fsio.write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["a.txt"]


def test_atomic_path_writes_beside_the_target_and_replaces_it_on_success(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with fsio.atomic_path(target, suffix=".png") as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        assert tmp.endswith(".png")
        with open(tmp, "w") as f:
            f.write("new")
        assert target.read_text() == "old"  # nothing visible until the body succeeds
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(ZeroDivisionError), fsio.atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("half of the new")
        1 / 0  # noqa: B018
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_an_os_error_while_writing_becomes_a_deepae_error(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(DeepAEError, match="cannot write") as info, fsio.atomic_path(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert "No space left on device" in str(info.value)
    assert "nothing already saved was changed" in str(info.value)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("below", ["x", "sub/x"])
def test_a_target_under_a_regular_file_cannot_be_written(tmp_path, below):
    (tmp_path / "file").write_text("a plain file")
    target = tmp_path / "file" / below
    with pytest.raises(DeepAEError, match="cannot write"):
        fsio.write_text(target, "y")
    assert (tmp_path / "file").read_text() == "a plain file"


def test_read_json_of_a_missing_file_is_none(tmp_path):
    assert fsio.read_json(tmp_path / "missing.json") is None
    assert fsio.read_json(tmp_path / "no-folder" / "missing.json") is None


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"a": 1', "corrupt"),
        (b"", "corrupt"),
        (b'{"a": "\xff\xfe"}', "corrupt"),  # not UTF-8
        (b"[" * 100_000, "corrupt"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # valid, but too deep
    ],
)
def test_read_json_turns_damage_into_run_error(tmp_path, content, why):
    path = tmp_path / "a.json"
    path.write_bytes(content)
    with pytest.raises(RunError, match=why) as info:
        fsio.read_json(path, fix="retrain it")
    assert str(path) in str(info.value)
    assert str(info.value).endswith("retrain it")


def test_read_json_of_a_fifo_returns_at_once_with_run_error(tmp_path):
    path = tmp_path / "a.json"
    os.mkfifo(path)  # no writer: a blocking open or read would wait forever
    with time_bound(10), pytest.raises(RunError, match="not a regular file"):
        fsio.read_json(path)


def test_read_bytes_refuses_a_file_over_max_bytes(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 101)
    with pytest.raises(RunError, match="101 bytes, more than 100; shrink it"):
        fsio.read_bytes(path, max_bytes=100, fix="shrink it")
    assert fsio.read_bytes(path, max_bytes=101, fix="-") == b"x" * 101


def test_read_bytes_refuses_a_link_to_a_device(tmp_path):
    path = tmp_path / "model.safetensors"
    os.symlink("/dev/zero", path)
    with time_bound(10), pytest.raises(RunError, match="not a regular file; fix it"):
        fsio.read_bytes(path, max_bytes=100, fix="fix it")


def test_read_bytes_of_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fsio.read_bytes(tmp_path / "missing", max_bytes=100, fix="-")


def test_read_json_of_a_folder_is_a_run_error(tmp_path):
    (tmp_path / "run.json").mkdir()
    with pytest.raises(RunError, match="not a regular file"):
        fsio.read_json(tmp_path / "run.json")


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_of_the_umask(tmp_path, mask, mode):
    new, old = tmp_path / "new.json", tmp_path / "old.bin"
    old.write_bytes(b"before")
    os.chmod(old, 0o640)  # an overwritten file gets the umask's mode, not its old one
    with umask(mask):
        fsio.write_json(new, {"a": 1})
        fsio.write_bytes(old, b"after")
        with fsio.atomic_path(tmp_path / "figure.png", suffix=".png") as tmp, open(tmp, "wb") as f:
            f.write(b"png")
    for path in (new, old, tmp_path / "figure.png"):
        assert os.stat(path).st_mode & 0o777 == mode, path
    assert old.read_bytes() == b"after"


def nested(depth: int) -> str:
    return "[" * (depth - 1) + "1" + "]" * (depth - 1)  # a scalar is depth 1


@pytest.mark.parametrize("depth", [fsio.MAX_JSON_DEPTH + 1, 500, 100_000])
def test_read_json_refuses_values_nested_too_deeply(tmp_path, depth):
    # 500 levels parse, but a reader that walks them recursively would overflow the stack.
    path = tmp_path / "metrics.json"
    path.write_text(nested(depth))
    with pytest.raises(RunError, match=r"\(nested too deeply\); rerun it"):
        fsio.read_json(path, fix="rerun it")


def test_read_json_accepts_values_up_to_the_depth_limit(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"a": [{"b": json.loads(nested(fsio.MAX_JSON_DEPTH - 3))}]}))
    assert fsio.read_json(path)["a"][0]["b"] == json.loads(nested(fsio.MAX_JSON_DEPTH - 3))
