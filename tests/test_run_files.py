"""deepae.run.files: each file of a run folder round-trips through its writer and reader,
and a damaged file is a RunError that says what to do."""

import dataclasses
import json
import re
import time

import pytest

from deepae.errors import RunError
from deepae.run import files
from deepae.train import EpochRecord

# -- run.json ---------------------------------------------------------------------------


def test_status_round_trip(tmp_path):
    data = {"dataset": "mnist", "n_train": 4000, "sha256": "ab" * 32}
    files.write_status(
        tmp_path,
        "interrupted",
        epochs_done=2,
        epochs=5,
        step=7,
        data=data,
        message="Ctrl-C",
        preset="best2d",
    )
    record = files.read_status(tmp_path)
    updated = record.pop("updated")
    assert record == {
        "status": "interrupted",
        "epochs_done": 2,
        "epochs": 5,
        "step": 7,
        "data": data,
        "message": "Ctrl-C",
        "preset": "best2d",
    }
    time.strptime(updated, "%Y-%m-%dT%H:%M:%S%z")  # a timestamp, or ValueError
    assert json.loads((tmp_path / "run.json").read_text())["epochs_done"] == 2


def test_status_without_message_or_data(tmp_path):
    files.write_status(tmp_path, "complete", epochs_done=5, epochs=5)
    record = files.read_status(tmp_path)
    assert "message" not in record
    assert (record["status"], record["step"], record["data"]) == ("complete", 0, None)


def test_read_status_without_run_json_is_none(tmp_path):
    assert files.read_status(tmp_path) is None


@pytest.mark.parametrize("content", ['["complete"]', '{"epochs": 5}', '"complete"'])
def test_read_status_refuses_what_is_not_a_status_record(tmp_path, content):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(RunError, match="not a deepae run status file"):
        files.read_status(tmp_path)


def test_read_status_of_corrupt_json_is_run_error(tmp_path):
    (tmp_path / "run.json").write_text('{"status": ')
    with pytest.raises(RunError, match="corrupt"):
        files.read_status(tmp_path)


def test_require_complete_passes_for_a_complete_run_or_a_plain_model(tmp_path):
    files.require_complete(tmp_path)  # no run.json: a saved model
    files.write_status(tmp_path, "complete", epochs_done=5, epochs=5)
    files.require_complete(tmp_path)


def test_require_complete_says_where_the_run_stopped_and_how_to_resume(tmp_path):
    files.write_status(tmp_path, "interrupted", epochs_done=2, epochs=5, step=7, message="SIGINT")
    (tmp_path / files.CHECKPOINT_FILE).write_bytes(b"")  # its content is not read here
    with pytest.raises(RunError) as info:
        files.require_complete(tmp_path)
    message = str(info.value)
    assert "interrupted after epoch 2 of 5 (+7 steps): SIGINT" in message
    assert f"deepae train --resume {tmp_path}" in message


def test_a_run_that_failed_before_its_first_checkpoint_is_not_sent_to_resume(tmp_path):
    files.write_status(tmp_path, "failed", epochs_done=0, epochs=5, message="loss is nan")
    with pytest.raises(RunError) as info:
        files.require_complete(tmp_path)
    message = str(info.value)
    assert "(failed after epoch 0 of 5: loss is nan)" in message
    assert "no checkpoint to resume from: train it again" in message and "--resume" not in message


def test_require_complete_omits_steps_at_an_epoch_boundary(tmp_path):
    files.write_status(tmp_path, "failed", epochs_done=3, epochs=10)
    with pytest.raises(RunError, match=re.escape("(failed after epoch 3 of 10);")):
        files.require_complete(tmp_path)


# -- history.csv ------------------------------------------------------------------------


def test_history_round_trip_at_the_stored_precision(tmp_path):
    history = [
        EpochRecord(epoch=1, loss=0.123456789, val_loss=0.2345678, seconds=1.23456,
                    train_seconds=1.0),
        EpochRecord(epoch=2, loss=0.1, val_loss=None, seconds=2.0, train_seconds=1.9),
    ]  # fmt: skip
    files.write_history(tmp_path, history)
    assert (tmp_path / "history.csv").read_text().splitlines() == [
        "epoch,loss,val_loss,seconds",
        "1,0.123457,0.234568,1.235",
        "2,0.100000,,2.000",
    ]
    assert files.read_history(tmp_path) == [
        EpochRecord(epoch=1, loss=0.123457, val_loss=0.234568, seconds=1.235,
                    train_seconds=1.235),
        EpochRecord(epoch=2, loss=0.1, val_loss=None, seconds=2.0, train_seconds=2.0),
    ]  # fmt: skip


def test_read_history_without_a_file_is_empty(tmp_path):
    assert files.read_history(tmp_path) == []


@pytest.mark.parametrize(
    "content",
    [
        "epoch,loss,val_loss,seconds\n1,abc,,1.0\n",
        "epoch,loss,val_loss,seconds\nabc,0.1,,1.0\n",
        "epoch,loss\n1,0.1\n",  # columns missing
        "epoch,loss,val_loss,seconds\n1,0.1\n",  # row cut short
        "epoch,loss,val_loss,seconds\n1,1e308,,1.0\n",  # breaks the loss figure's axis
        "epoch,loss,val_loss,seconds\n1,0.1,-1e308,1.0\n",
        "epoch,loss,val_loss,seconds\n1,nan,,1.0\n",
        "epoch,loss,val_loss,seconds\n1,0.1,,inf\n",
    ],
)
def test_corrupt_history_is_run_error(tmp_path, content):
    (tmp_path / "history.csv").write_text(content)
    with pytest.raises(RunError, match="history.csv is corrupt"):
        files.read_history(tmp_path)


# -- metrics.json and evaluation.json ---------------------------------------------------


def test_metrics_round_trip(tmp_path):
    metrics = {"loss": 0.1834, "val_loss": None, "dead_latent_units": [1], "timing": {"s": 9}}
    path = files.write_metrics(tmp_path, metrics)
    assert path == tmp_path / "metrics.json"
    assert files.read_metrics(tmp_path) == metrics


def test_read_metrics_without_a_file_is_empty(tmp_path):
    assert files.read_metrics(tmp_path) == {}


def test_read_metrics_of_a_json_list_is_run_error(tmp_path):
    (tmp_path / "metrics.json").write_text("[0.1, 0.2]")
    with pytest.raises(RunError, match="not a deepae metrics file"):
        files.read_metrics(tmp_path)


def test_evaluation_file_names():
    assert files.evaluation_file("test") == "evaluation.json"
    assert files.evaluation_file("train") == "evaluation-train.json"


def test_evaluation_round_trip(tmp_path):
    result = {"split": "test", "n": 1000, "autoencoder": {"bce": 0.17}, "pca": {"bce": 0.2}}
    assert files.write_evaluation(tmp_path, result) == tmp_path / "evaluation.json"
    assert files.read_evaluation(tmp_path) == result


def test_an_evaluation_of_another_split_has_its_own_file(tmp_path):
    result = {"split": "train", "n": 4000}
    path = files.write_evaluation(tmp_path, result)
    assert path == tmp_path / "evaluation-train.json"
    assert json.loads(path.read_text()) == result
    assert files.read_evaluation(tmp_path) is None  # reads the test split only


def test_read_evaluation_of_a_json_list_is_run_error(tmp_path):
    (tmp_path / "evaluation.json").write_text("[]")
    with pytest.raises(RunError, match="not a deepae evaluation file"):
        files.read_evaluation(tmp_path)


@pytest.mark.parametrize(
    "record",
    [
        {"status": 3, "epochs_done": 1, "epochs": 2, "data": None},
        {"status": "finished", "epochs_done": 1, "epochs": 2, "data": None},
        {"status": "interrupted", "epochs_done": 1, "epochs": 2, "data": "mnist"},
        *(
            {"status": "interrupted", "epochs_done": 1, "epochs": 2, "data": {key: value}}
            for key, value in [
                ("data_dir", 5),
                ("dataset", ["a"]),
                ("dataset", {"a": 1}),
                ("val_fraction", "x"),
                ("val_fraction", 1.5),
                ("seed", 0.5),
                ("image_size", [28]),
                ("n_train", True),
                ("sha256", 7),
            ]
        ),
    ],
)
def test_a_damaged_status_record_is_a_run_error(tmp_path, record):
    # A resume must never fall back to other data because run.json lost its data record.
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(RunError, match="restore it, or start a new run"):
        files.read_status(tmp_path)


def test_the_data_records_deepae_writes_are_read(tmp_path, mnist_small):
    from deepae.run.pipeline import data_record

    for data in (mnist_small, dataclasses.replace(mnist_small, load_args={
            "dataset": "d.npz", "image_size": [14, 14], "val_fraction": 0.2, "seed": 3,
            "data_dir": None})):  # fmt: skip
        record = {"status": "complete", "epochs_done": 1, "epochs": 1,
                  "data": data_record(data)}  # fmt: skip
        (tmp_path / "run.json").write_text(json.dumps(record))
        assert files.read_status(tmp_path)["data"] == record["data"]


@pytest.mark.parametrize(
    ("split", "dataset", "name"),
    [
        ("test", None, "evaluation.json"),
        ("train", None, "evaluation-train.json"),
        ("test", "fashion-mnist", "evaluation-fashion-mnist-test.json"),
        ("train", "my pets/2", "evaluation-my_pets_2-train.json"),
    ],  # fmt: skip
)
def test_evaluation_files_say_split_and_other_data(split, dataset, name):
    assert files.evaluation_file(split, dataset) == name


def test_no_two_evaluations_share_a_file():
    # A file train.npz is the dataset "train": its test split must not take the name of
    # the run's own train split, nor "X-train" the name of X's train split.
    datasets = [None, "train", "test", "X", "X-train", "X-test", "X-train-test", "data"]
    names = {files.evaluation_file(s, d) for d in datasets for s in ("test", "train")}
    assert len(names) == 2 * len(datasets)


@pytest.mark.parametrize("text", ["garbage\n", "", "epoch,loss\n1,0.2\n"])
def test_a_history_file_that_is_not_deepaes_is_corrupt(tmp_path, text):
    (tmp_path / files.HISTORY_FILE).write_text(text)
    with pytest.raises(RunError, match="history.csv is corrupt .*header"):
        files.read_history(tmp_path)
