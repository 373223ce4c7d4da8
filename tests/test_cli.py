"""The command line, end to end: one real training run on MNIST that every other command
then reads, and each command's error paths (one line on stderr, exit code 2)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from safetensors.numpy import load_file

from deepae import native
from deepae.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "mnist-small.npz"


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist):
    """`deepae train` for one epoch on the real data; returns the run folder."""
    runs_dir = tmp_path_factory.mktemp("runs")
    code = main(["train", "--runs-dir", str(runs_dir), "--name", "t", "--epochs", "1",
                 "--no-progress", "--latent-activation", "linear"])  # fmt: skip
    assert code == 0
    return runs_dir / "t"


def numpy_forward(run, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An oracle for the fixture's model (784-32-2-32-784, ReLU, linear latent), written in
    NumPy from the weights file alone: x (N, 784) -> (codes (N, 2), output logits (N, 784))."""
    w = load_file(run / "model.safetensors")

    def dense(h, name):
        return h @ w[f"{name}.weight"].T.astype(np.float64) + w[f"{name}.bias"]

    z = dense(np.maximum(dense(x.astype(np.float64), "encoder.0"), 0), "encoder.2")
    logits = dense(np.maximum(dense(z, "decoder.body.0"), 0), "decoder.body.2")
    return z, logits


def run_cli(*args):
    """The real console entry point in a subprocess: exit code, stdout, stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "deepae.cli", *map(str, args)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def test_train_writes_the_run_folder(run, mnist, capsys):
    names = {p.name for p in run.iterdir()}
    expected = {"config.json", "model.safetensors", "history.csv", "metrics.json"}
    assert expected | {"latent.png", "reconstructions.png", "loss.png"} <= names
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1"]
    assert set(rows[0]) == {"epoch", "loss", "val_loss", "seconds"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["loss"] == pytest.approx(float(rows[0]["loss"]), abs=1e-6)
    assert len(metrics["dead_latent_fractions"]) == 2
    assert json.loads((run / "run.json").read_text())["data"]["name"] == "mnist"
    assert "data" not in metrics  # run.json holds the data record, once
    assert metrics["engine"] == "fused"
    # the article's model in float32 on an x86-64 CPU with AVX2 trains on the compiled step
    assert metrics["native_step"] == (native.unsupported() is None)
    assert metrics["whole_step"] == ("compiled" if metrics["native_step"] else None)
    assert metrics["triton_step"] is False  # CUDA only
    # val_loss is the binary cross-entropy of the saved model on the 10,000 test images,
    # recomputed in float64 from the weights: mean(softplus(logits) - x * logits).
    x = mnist.x_test.reshape(len(mnist.x_test), -1) / 255.0
    _, logits = numpy_forward(run, x)
    bce = np.mean(np.logaddexp(0, logits) - x * logits)
    assert float(rows[0]["val_loss"]) == pytest.approx(bce, rel=1e-4)


def test_figures_have_the_expected_size(run):
    # The article's 13 x 10 inch scatter, at 100 dpi; ten columns of digits over two rows.
    assert imread(run / "latent.png").shape[:2] == (1000, 1300)
    assert imread(run / "reconstructions.png").shape[:2] == (460, 2000)
    assert imread(run / "loss.png").shape[:2] == (450, 700)


def test_encode_to_csv_and_npy(run, mnist, tmp_path, capsys):
    assert main(["encode", str(run), "--out", str(tmp_path / "z.npy"), "--split", "test"]) == 0
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (10_000, 2) and z.dtype == np.float32
    want, _ = numpy_forward(run, mnist.x_test.reshape(10_000, -1) / 255.0)
    np.testing.assert_allclose(z, want, rtol=1e-4, atol=1e-4)
    assert main(["encode", str(run), "--out", str(tmp_path / "z.csv"), "--split", "test"]) == 0
    with open(tmp_path / "z.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["label"]) for r in rows[:5]] == list(mnist.y_test[:5])
    np.testing.assert_allclose([float(rows[3]["z1"])], [z[3, 1]], rtol=1e-6)


def test_decode_points_to_png_and_npy(run, tmp_path):
    assert main(["decode", str(run), "0,5", "-1.5,2", "--out", str(tmp_path / "d.npy")]) == 0
    images = np.load(tmp_path / "d.npy")
    assert images.shape == (2, 28, 28)
    from deepae import Autoencoder

    np.testing.assert_array_equal(images, Autoencoder.load(run).decode([[0, 5], [-1.5, 2]]))
    assert main(["decode", str(run), "0,5", "--out", str(tmp_path / "d.png")]) == 0
    assert imread(tmp_path / "d.png").shape[:2] == (230, 400)


def test_reconstruct_and_plot(run, tmp_path):
    out = tmp_path / "r.png"
    assert main(["reconstruct", str(run), "--indices", "0-4", "--out", str(out)]) == 0
    assert imread(out).shape[:2] == (460, 1000)  # five columns
    (run / "latent.png").unlink()
    assert main(["plot", str(run)]) == 0
    assert (run / "latent.png").exists()


def test_summary_command(run, capsys):
    assert main(["summary"]) == 0
    assert "Total params: 51,154" in capsys.readouterr().out
    assert main(["summary", "--hidden-sizes", "64", "--latent-size", "3"]) == 0
    out = capsys.readouterr().out
    assert f"Total params: {784 * 64 + 64 + 64 * 3 + 3 + 3 * 64 + 64 + 64 * 784 + 784:,}" in out
    assert main(["summary", str(run)]) == 0
    assert "51,154" in capsys.readouterr().out


def test_help_needs_no_torch():
    code = "import sys, deepae.cli; deepae.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("command", ["train", "summary", "encode", "decode", "reconstruct",
                                     "plot", "data"])  # fmt: skip
def test_every_command_has_help(command):
    code, out, _ = run_cli(command, "--help")
    assert code == 0
    assert "usage: deepae " + command in out


def test_train_help_names_every_environment_variable_training_reads():
    from deepae import cuda_graph, threads

    code, out, _ = run_cli("train", "--help")
    assert code == 0
    names = [threads.ENV, native.ENV, native.DIR_ENV, cuda_graph.ENV, "DEEPAE_CACHE"]
    for name in names:
        assert f"\n  {name}=" in out, name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["encode", "{missing}"], "no run folder"),
        (["decode", "{run}", "1,x"], "not 2 comma-separated finite numbers"),
        (["decode", "{run}", "1,2,3"], "not 2 comma-separated"),
        (["decode", "{run}", "1,2", "--out", "{tmp}/x.txt"], "use a .png or .npy"),
        (["reconstruct", "{run}", "--indices", "59990-60005"], "out of range"),
        (["reconstruct", "{run}", "--indices", "5-2"], "--indices"),
        (["train", "--epochs", "0", "--runs-dir", "{tmp}"], "epochs must be positive"),
        (["train", "--optimizer", "nadam", "--runs-dir", "{tmp}"], "optimizer must be one of"),
        (["train", "--epochs", "ten"], "invalid int value"),
        (["train", "--runs-dir", "{runs}", "--name", "t"], "already exists"),
        (["train", "--data-dir", "{tmp}/nothing", "--runs-dir", "{tmp}"], "nothing"),
        (["train", "--name", "", "--runs-dir", "{tmp}"], "name '' is not a folder name"),
        (["train", "--name", " x", "--runs-dir", "{tmp}"], "no space at either end"),
        (
            ["train", "--epochs", "0", "--runs-dir", "{tmp}"],
            "epochs must be positive (a whole number, 1 or more), got 0 (--epochs)",
        ),
        # the field is "out", but data has no --out: no flag is named
        (
            ["data", "pack", str(FIXTURE), "{tmp}/o.txt"],
            "must be a .npy (its labels go beside it as o.labels.npy)\n",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run, tmp_path, args, message):
    fill = {"run": run, "runs": run.parent, "tmp": tmp_path, "missing": tmp_path / "nope"}
    code, out, err = run_cli(*[a.format(**fill) for a in args])
    assert code == 2
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_a_closed_stdout_drops_the_output_not_the_run(tmp_path):
    """`deepae train | head -1`: the pipe closes after the first line; training goes on,
    quietly, and the run is complete."""
    args = ["train", "--dataset", FIXTURE, "--epochs", "20", "--runs-dir", tmp_path,
            "--name", "r", "--no-progress", "--no-evaluate"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "deepae.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    first = proc.stdout.readline()  # "data: ...", before the first epoch
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert first.startswith("data: ") and proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    status = json.loads((tmp_path / "r" / "run.json").read_text())
    assert (status["status"], status["epochs_done"]) == ("complete", 20)


def test_a_signal_after_training_finishes_the_run_and_says_so(capsys, tmp_path):
    from types import SimpleNamespace

    from deepae.cli import _report_run
    from deepae.run import RunResult

    late = SimpleNamespace(signum=2, name="SIGINT")  # StopOnSignal's, after the last step
    done = RunResult(tmp_path, {"degenerate": False}, files=[tmp_path / "model.safetensors"])
    assert _report_run(done, late, SimpleNamespace(resume=None, argv=[])) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"run saved to {tmp_path}/")
    assert err == "SIGINT came after training had ended; the run was finished and saved\n"


def test_unknown_arguments_point_to_the_commands_own_help():
    code, _, err = run_cli("train", "--bogus", "3")
    assert code == 2
    assert err == ("deepae train: error: unrecognized arguments: --bogus 3 "
                   "(see deepae train --help)\n")  # fmt: skip


def test_preset_and_dataset_names_are_case_insensitive(capsys):
    assert main(["summary", "--preset", "BEST2D"]) == 0
    assert "Total params: 600,594" in capsys.readouterr().out  # best2d's 784-256-256-128-2
    assert main(["data", "info", "--dataset", "MNIST"]) == 0
    assert "train-images-idx3-ubyte" in capsys.readouterr().out


def test_plot_with_a_damaged_metrics_file_changes_no_figure(cli_run_copy, capsys):
    (cli_run_copy / "metrics.json").write_text("garbage")
    before = {p.name: p.read_bytes() for p in cli_run_copy.iterdir() if p.suffix == ".png"}
    assert main(["plot", str(cli_run_copy)]) == 2
    err = capsys.readouterr().err
    assert "metrics.json" in err and "delete it" in err and "deepae plot" not in err
    assert {p.name: p.read_bytes() for p in cli_run_copy.iterdir() if p.suffix == ".png"} == before


def test_decode_reads_a_negative_coordinate_in_every_form_float_reads(cli_run, tmp_path):
    # argparse took "-1E-3,2" (capital E), "-1e+2,0" (explicit +) and "-1.,2" (trailing dot)
    # for unknown options; Python's float() reads each.
    points = ["-1E-3,2", "-1e+2,0", "-1.,2", "-.5,-3"]
    out = tmp_path / "d.npy"
    assert main(["decode", str(cli_run), *points, "--out", str(out)]) == 0
    from deepae import Autoencoder

    want = [[float(v) for v in p.split(",")] for p in points]  # the oracle: Python's float()
    assert want == [[-0.001, 2.0], [-100.0, 0.0], [-1.0, 2.0], [-0.5, -3.0]]
    np.testing.assert_array_equal(np.load(out), Autoencoder.load(cli_run).decode(want))


def test_a_coordinate_beyond_float32_is_one_line(cli_run, tmp_path):
    # 1e39 is a finite Python float but infinity as the model's float32: refused up front,
    # not as a NumPy overflow warning and an error about the codes' shape.
    code, out, err = run_cli("decode", cli_run, "1e39,0", "--out", tmp_path / "d.npy")
    assert code == 2 and not (tmp_path / "d.npy").exists()
    assert err.startswith("deepae: error: coordinate '1e39,0' is not 2 comma-separated finite")
    assert len(err.strip().splitlines()) == 1, err
    assert float(np.finfo(np.float32).max) == pytest.approx(3.4028234663852886e38, rel=1e-15)
    assert main(["decode", str(cli_run), "3.4e38,0", "--out", str(tmp_path / "d.npy")]) == 0


@pytest.mark.parametrize(
    "option", [["--latent-size", "0"], ["--hidden-activation", ""], ["--preset", ""]]
)
def test_summary_of_a_run_refuses_every_model_option_given(cli_run, capsys, option):
    # As --latent-size 3 is refused: a value that happens to be falsy is given all the same.
    assert main(["summary", str(cli_run), "--latent-size", "3"]) == 2
    assert "--latent-size cannot change a saved model" in capsys.readouterr().err
    assert main(["summary", str(cli_run), *option]) == 2
    out, err = capsys.readouterr()
    assert f"{option[0]} cannot change a saved model" in err and "Total params" not in out


def test_summary_of_an_empty_preset_name_is_refused(capsys):
    assert main(["summary", "--preset", ""]) == 2
    assert "unknown preset ''; known presets: article" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--name", ""], ["--runs-dir", ""]])
def test_resume_refuses_an_empty_name_or_runs_dir(cli_run, capsys, option):
    assert main(["train", "--resume", str(cli_run), *option, "--no-progress"]) == 2
    assert f"leave out {option[0]}" in capsys.readouterr().err
