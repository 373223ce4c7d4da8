"""Data-parallel training (deepae.distributed) on the CPU with gloo: 2 processes give the
losses of 1 at the same global batch, through the command line (`--nproc`, torchrun's
launcher), plain torchrun as two "nodes" on 127.0.0.1, and the library under torchrun
(DDP, the neighbour loss); a killed process; Ctrl-C; bad input. The oracle throughout is
one process training on the same batches."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from deepae import cli, distributed, threads
from deepae import run as runs
from deepae.errors import ConfigError
from deepae.neighbours import NeighbourLoss
from deepae.run import checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "mnist-small.npz"
DEEPAE = [sys.executable, "-m", "deepae"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TIMEOUT = 180  # seconds any one command may take here; each takes a few
N_TRAIN = 999  # 999 % 64 = 39: the last batch splits unevenly (19 + 20), the hard case
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "agg"}
for _name in (*distributed.ENV_VARS, "MASTER_ADDR", "MASTER_PORT", distributed.TIMEOUT_ENV):
    ENV.pop(_name, None)  # whatever runs pytest, the commands start outside any group


def train_args(data, folder: Path, epochs: int) -> list[str]:
    return ["train", "--dataset", str(data), "--epochs", str(epochs), "--batch-size", "64",
            "--latent-activation", "linear", "--device", "cpu", "--no-progress",
            "--no-evaluate", "--runs-dir", str(folder.parent), "--name", folder.name]  # fmt: skip


def call(cmd, *, env=None, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def history(folder: Path) -> np.ndarray:
    """(epochs, 2): loss and val_loss of each epoch of a run folder."""
    return np.array([(r.loss, r.val_loss) for r in runs.read_history(folder)])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The fixture's first N_TRAIN training and 200 test digits, as a .npz."""
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    with np.load(FIXTURE) as d:
        np.savez(path, x_train=d["x_train"][:N_TRAIN], y_train=d["y_train"][:N_TRAIN],
                 x_test=d["x_test"][:200], y_test=d["y_test"][:200])  # fmt: skip
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> np.ndarray:
    """The oracle: 3 epochs in one process, through the command line."""
    folder = tmp_path_factory.mktemp("one") / "run"
    done = call([*DEEPAE, *train_args(data, folder, 3)])
    assert done.returncode == 0, done.stderr
    return history(folder)


# -- (a) two processes through --nproc, and resuming with another number ----------------------


def test_two_processes_give_the_losses_of_one_and_resume_alone(tmp_path, data, reference):
    folder = tmp_path / "two"
    done = call([*DEEPAE, *train_args(data, folder, 2), "--nproc", "2"])
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(history(folder), reference[:2], rtol=1e-3)
    assert done.stdout.count("Epoch 1/2") == 1  # rank 0 alone prints
    assert "Traceback" not in done.stderr and "rank1" not in done.stderr
    expected = {"config.json", "model.safetensors", "history.csv", "checkpoint.safetensors",
                "run.json", "metrics.json", "latent.png", "reconstructions.png", "manifold.png",
                "interpolation.png", "loss.png", "explorer.html", "report.html"}  # fmt: skip
    assert {p.name for p in folder.iterdir()} - {".lock"} == expected
    # Another number of processes at the same global batch continues the same run.
    resumed = call([*DEEPAE, "train", "--resume", str(folder), "--epochs", "3", "--no-progress",
                    "--no-evaluate"])  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_allclose(history(folder), reference, rtol=1e-3)


# -- (b) two "nodes" on one machine, through plain torchrun ------------------------------------


def test_two_nodes_through_torchrun(tmp_path, data, reference):
    folder, port = tmp_path / "nodes", free_port()

    def node(rank: int) -> list[str]:
        return [*TORCHRUN, "--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id",
                "deepae-test", "-m", "deepae", *train_args(data, folder, 2)]  # fmt: skip

    launches = [
        subprocess.Popen(
            node(r), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
        )  # fmt: skip
        for r in (0, 1)
    ]
    outputs = [p.communicate(timeout=TIMEOUT) for p in launches]
    assert [p.returncode for p in launches] == [0, 0], [err for _, err in outputs]
    np.testing.assert_allclose(history(folder), reference[:2], rtol=1e-3)
    assert sum(out.count("Epoch 2/2") for out, _ in outputs) == 1  # global rank 0's lines
    assert runs.read_status(folder)["status"] == "complete"
    assert (folder / "explorer.html").is_file() and (folder / "model.safetensors").is_file()


# -- the library under torchrun: DDP for the autograd engine, the neighbour loss ---------------

WORKER = """
import json, sys
from deepae import distributed
from deepae.api import Autoencoder
from deepae.data import load_dataset

out, data = sys.argv[1], sys.argv[2]
world = distributed.join()
(x, _), (x_val, _) = load_dataset(data)
result = {}
for name, options in {"autograd": {"engine": "autograd"},
                      "neighbours": {"neighbour_weight": 1.0, "neighbours": 10}}.items():
    ae = Autoencoder(latent_activation="linear", batch_size=64, epochs=2, device="cpu",
                     **options)
    ae.graph_cache_dir = out
    ae.fit(x, validation_data=x_val, verbose=0)
    graph = ae.trainer.neighbour.graph.sha256 if ae.trainer.neighbour else None
    result[name] = {"history": [[r.loss, r.val_loss] for r in ae.train_state.history],
                    "graph": graph, "engine": ae.trainer.engine_name}
with open(f"{out}/rank{world.rank}.json", "w") as f:
    json.dump(result, f)
distributed.leave()
"""


def test_library_under_torchrun_autograd_and_neighbours(tmp_path, data):
    from deepae.api import Autoencoder
    from deepae.data import load_dataset

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    done = call([*TORCHRUN, "--nproc-per-node", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                 "127.0.0.1:0", str(script), str(tmp_path), str(data)])  # fmt: skip
    assert done.returncode == 0, done.stderr
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    (x, _), (x_val, _) = load_dataset(data)
    one = Autoencoder(latent_activation="linear", batch_size=64, epochs=2, device="cpu",
                      engine="autograd")  # fmt: skip
    one.fit(x, validation_data=x_val, verbose=0)
    expected = [[r.loss, r.val_loss] for r in one.train_state.history]
    for got in ranks:  # every rank holds the global losses
        assert got["autograd"]["engine"] == "autograd"
        np.testing.assert_allclose(got["autograd"]["history"], expected, rtol=1e-3)
    # The neighbour loss: rank 0's graph on both ranks; each rank draws its negatives among
    # its own share of the batch, so the losses match one process in distribution only.
    alone = Autoencoder(latent_activation="linear", batch_size=64, epochs=2, device="cpu",
                        neighbour_weight=1.0, neighbours=10)  # fmt: skip
    alone.graph_cache_dir = tmp_path
    alone.fit(x, validation_data=x_val, verbose=0)
    assert ranks[0]["neighbours"]["graph"] == ranks[1]["neighbours"]["graph"]
    assert ranks[0]["neighbours"]["graph"] == alone.trainer.neighbour.graph.sha256
    assert ranks[0]["neighbours"]["history"] == ranks[1]["neighbours"]["history"]
    last = [alone.train_state.history[-1].loss, alone.train_state.history[-1].val_loss]
    np.testing.assert_allclose(ranks[0]["neighbours"]["history"][-1], last, rtol=0.05)


# -- (c) a process killed mid-run; Ctrl-C ----------------------------------------------------


def _workers(launcher: int) -> dict[int, int]:
    """rank -> pid of the processes torchrun's launcher (in process `launcher`) started."""
    tasks = Path(f"/proc/{launcher}/task").iterdir()
    children = [pid for task in tasks for pid in (task / "children").read_text().split()]
    ranks = {}
    for pid in map(int, children):
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        rank = [e[5:] for e in env if e.startswith(b"RANK=")]
        if rank:
            ranks[int(rank[0])] = pid
    return ranks


def _start_long_run(data, folder: Path) -> subprocess.Popen:
    """`deepae train --nproc 2` of 400 epochs in a session of its own; returns once two
    epochs (and their checkpoint) are done."""
    proc = subprocess.Popen([*DEEPAE, *train_args(data, folder, 400), "--nproc", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    csv = folder / "history.csv"
    while not (csv.exists() and len(csv.read_text().splitlines()) >= 3):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run did not get going: {proc.communicate()[1]}")
        time.sleep(0.05)
    return proc


def test_a_killed_process_stops_the_others_and_the_run_resumes(tmp_path, data, reference):
    folder = tmp_path / "killed"
    proc = _start_long_run(data, folder)
    try:
        os.kill(_workers(proc.pid)[1], signal.SIGKILL)
        # Bounded: rank 0 must stop on its own, long before its 400 epochs (or the 600 s
        # collective timeout); a hang raises TimeoutExpired here.
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    lines = error_lines(err)  # rank 0's line, and the launcher's naming the signal
    assert 1 <= len(lines) <= 2 and all(line.startswith("deepae: error: ") for line in lines), err
    assert any("SIGKILL" in line for line in lines), err
    # The last checkpoint is whole, and the run continues from it (in two processes again).
    done = runs.read_status(folder)["epochs_done"]
    assert done >= 2 and checkpoint.read(folder)
    before = history(folder)
    resumed = call([*DEEPAE, "train", "--resume", str(folder), "--epochs", str(done + 1),
                    "--nproc", "2", "--no-progress", "--no-evaluate"])  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    after = history(folder)
    assert len(after) == done + 1 and np.array_equal(after[:done], before[:done])
    np.testing.assert_allclose(after[:3], reference[:3], rtol=1e-3)


def test_processes_whose_launcher_is_killed_stop_with_a_checkpoint(tmp_path, data):
    folder = tmp_path / "orphans"
    proc = _start_long_run(data, folder)
    workers = _workers(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # it cannot pass anything on: the ranks see it gone
    try:  # the pipes close when the last rank (each holds them) has exited
        proc.communicate(timeout=60)
    finally:
        for pid in workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    status = runs.read_status(folder)
    assert status["status"] == "interrupted" and status["epochs_done"] < 400
    assert checkpoint.read(folder)


def test_ctrl_c_stops_every_process_after_the_same_step(tmp_path, data):
    folder = tmp_path / "stopped"
    proc = _start_long_run(data, folder)
    try:
        os.kill(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the launcher
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert error_lines(err) == [
        f"SIGINT: training stopped, checkpoint saved in {folder}/; continue with: deepae "
        f"train --resume {folder}"
    ]
    status = runs.read_status(folder)
    assert status["status"] == "interrupted"
    assert (status["epochs_done"] * 16 + status["step"]) % distributed.STOP_EVERY == 0


# -- (d) bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("nproc", ["0", "-2"])
def test_nproc_below_one_is_one_line(nproc, capsys):
    assert cli.main(["train", "--nproc", nproc]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (
        f"deepae: error: nproc must be a whole number of processes >= 1, got {nproc} (--nproc)\n"
    )


def test_more_processes_than_cores_is_a_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads, "CGROUP", tmp_path)  # no CPU quota, whatever the machine's
    said = []
    assert distributed.check_nproc(3, said.append) == 3
    assert said == ["warning: 3 processes on the 2 cores this process may use: they will "
                    "share cores, and each will train slower"]  # fmt: skip
    said.clear()
    distributed.check_nproc(2, said.append)
    assert said == []


def test_a_container_cpu_quota_counts_as_the_cores(monkeypatch, tmp_path):
    # Two cores in the affinity, but a cgroup v2 quota of one CPU (docker run --cpus 1).
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    monkeypatch.setattr(threads, "CGROUP", tmp_path)
    said = []
    distributed.check_nproc(2, said.append)
    assert said == ["warning: 2 processes on the 1 cores this process may use: they will "
                    "share cores, and each will train slower"]  # fmt: skip


def test_a_batch_that_does_not_split_is_one_line(tmp_path, data):
    done = call([*DEEPAE, *train_args(data, tmp_path / "odd", 1), "--nproc", "2",
                 "--batch-size", "63"])  # fmt: skip
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        "deepae: error: batch_size 63 does not split evenly over 2 processes; give a multiple "
        "of 2 (each process takes batch_size/2 images of every batch) (--batch-size)"
    ]


def test_a_warning_every_process_meets_is_printed_once(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    for i, image in enumerate(np.load(FIXTURE)["x_train"][:60]):
        (folder / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"c{i % 2}" / f"{i}.png")
    (folder / "c0" / "notes.txt").write_text("not an image")  # skipped, with a warning
    args = train_args(folder, tmp_path / "run", 1)
    done = call([*DEEPAE, *args, "--batch-size", "8", "--nproc", "2"])
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("c0/notes.txt") == 1, done.stderr  # rank 0's, not rank 1's too


def _by_hand(rank: int, port: int, args: list[str], timeout_s: str = "30") -> subprocess.Popen:
    """A process started with torchrun's variables set by hand (rank 0 hosts the store)."""
    env = {**ENV, "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           distributed.TIMEOUT_ENV: timeout_s}  # fmt: skip
    return subprocess.Popen([*DEEPAE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip


def test_an_unreachable_rendezvous_is_one_line_within_the_timeout(tmp_path, data):
    proc = _by_hand(1, free_port(), train_args(data, tmp_path / "alone", 1), timeout_s="2")
    _, err = proc.communicate(timeout=60)  # the default timeout (600 s) would overrun this
    assert proc.returncode == 2
    (line,) = error_lines(err)
    assert line.startswith("deepae: error: process 1 of 2 could not join the others at 127.0.0.1")
    assert "within 2 s" in line and distributed.TIMEOUT_ENV in line


def test_processes_started_with_different_settings_are_one_line(tmp_path, data):
    port = free_port()
    procs = [_by_hand(r, port, train_args(data, tmp_path / "mixed", 1 + r)) for r in (0, 1)]
    (_, err0), (_, err1) = (p.communicate(timeout=TIMEOUT) for p in procs)
    assert [p.returncode for p in procs] == [2, 2]
    assert error_lines(err0) == [
        "deepae: error: the processes of this run were started with different settings or data "
        "(process 1 differs from process 0); start every process with the same command line "
        "and the same data"
    ]
    assert error_lines(err1) == []  # rank 0 says it for both
    assert not (tmp_path / "mixed" / "config.json").exists()


def test_a_bad_timeout_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match="DEEPAE_DIST_TIMEOUT='soon' is not a number"):
        distributed.timeout_seconds()
    # --nproc: the launcher says it, before any process starts (each would say it again)
    assert cli.main(["train", "--nproc", "2", "--epochs", "1"]) == cli.EXIT_USAGE
    (line,) = capsys.readouterr().err.splitlines()
    assert "DEEPAE_DIST_TIMEOUT='soon' is not a number" in line
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "2.5")
    assert distributed.timeout_seconds() == 2.5


# -- the rules, without processes --------------------------------------------------------------


@pytest.mark.parametrize(("n", "size"), [(64, 2), (39, 2), (48, 3), (5, 4)])
def test_ranks_take_contiguous_rows_that_cover_the_batch(n, size):
    parts = [distributed.World(r, size).rows(n) for r in range(size)]
    assert [i for p in parts for i in range(n)[p]] == list(range(n))
    assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1
    assert distributed.World().rows(n) == slice(0, n)


def test_batches_must_split_over_the_ranks():
    world, cpu = distributed.World(0, 4), torch.device("cpu")
    world.check_fits(64, 1000, cpu)  # last batch 40: 10 each
    with pytest.raises(ConfigError, match="batch_size 30 does not split evenly over 4"):
        world.check_fits(30, 1000, cpu)
    # 1026 % 64 = 2 images: 1 each for 2 processes, by hand; 2 is the most that fit
    with pytest.raises(ConfigError, match="holds 2 of the 1026 .* train in 2 process.*--nproc 2"):
        world.check_fits(64, 1026, cpu)
    # 1028 % 64 = 4, and batch norm needs 2 images a rank: 2 processes at most
    with pytest.raises(ConfigError, match="holds 4 of the 1028 images, fewer than 8.*--nproc 2"):
        world.check_fits(64, 1028, cpu, batch_norm=True)
    with pytest.raises(ConfigError, match="holds 1 of the 1025 .*--nproc 1"):
        world.check_fits(64, 1025, cpu)
    world.check_fits(64, 1025, cpu, edges=True)  # a neighbour loss's steps: 64 edges each
    # 33 % 32 = 1 image, and batch norm needs 2: no number of processes fits, none named
    with pytest.raises(
        ConfigError, match="holds 1 of the 33 images, fewer than 8 for 4 processes; give a"
    ):
        world.check_fits(32, 33, cpu, batch_norm=True)
    distributed.World().check_fits(63, 1000, cpu)  # alone, anything goes


def test_every_process_needs_a_gpu_of_its_own(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    distributed.World(1, 4, local_rank=1).check_fits(64, 1000, torch.device("cuda"))
    with pytest.raises(ConfigError, match="3 or more processes on a machine with 2 GPU"):
        distributed.World(2, 4, local_rank=2).check_fits(64, 1000, torch.device("cuda"))
    distributed.World(2, 4, local_rank=2).check_fits(64, 1000, torch.device("cpu"))


def test_alone_nothing_is_exchanged():
    world = distributed.World()
    grad = torch.ones(3)
    world.reduce_gradient_(grad, 1.0)
    assert torch.equal(world.sum_(grad), torch.ones(3))
    stop = lambda: True  # noqa: E731
    assert world.agreed_stop(stop) is stop
    assert world.share_text("runs/a") == "runs/a" and world.share_bytes(b"x") == b"x"
    world.check_same("settings", "anything")
    assert distributed.world() == distributed.World()  # no process group here


def test_each_rank_gets_its_edges_and_negatives_among_its_own_tails():
    steps, batch, repeats = 3, 8, 2
    heads = torch.arange(steps * batch).view(steps, batch)
    negatives = torch.randint(0, batch, (steps, repeats * batch), generator=torch.Generator())
    loss = types.SimpleNamespace(negative_rate=repeats)
    whole = (heads, heads + 100, negatives)
    assert NeighbourLoss.share(loss, whole, slice(0, batch)) is whole
    h, t, neg = NeighbourLoss.share(loss, whole, slice(4, 8))
    assert torch.equal(h, heads[:, 4:]) and torch.equal(t, heads[:, 4:] + 100)
    # Row j of the negatives pairs with head j % n, as in the whole batch (R copies of it).
    expected = negatives.view(steps, repeats, batch)[:, :, 4:].reshape(steps, -1) % 4
    assert torch.equal(neg, expected) and int(neg.max()) < 4


# What gloo (torch 2.13) says when a peer goes, as rank 0 of a 2-process group caught it.
GLOO_LOST = {
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed "
    "by peer [127.0.0.1]:41110. This is typically caused by a remote worker crashing. Check the "
    "logs of the remote worker before reporting an error. GLHF!": "Connection closed by peer",
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
    "[127.0.0.1]:47526: Connection reset by peer. This is typically caused by a remote worker "
    "hanging or bugs in the application.": "Connection reset by peer",
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out "
    "waiting 4000ms for recv operation to complete": "Timed out waiting 4000ms for recv "
    "operation to complete",
}


@pytest.mark.parametrize(("raw", "reason"), GLOO_LOST.items(), ids=["closed", "reset", "timeout"])
def test_a_lost_peer_is_said_in_words_not_as_its_port(monkeypatch, raw, reason):
    monkeypatch.delenv("MASTER_ADDR", raising=False)  # no store to ask why: gloo's reason
    error = distributed.World(1, 2)._lost(RuntimeError(raw))
    assert f"lost contact with the others ({reason}): another process" in str(error)


def test_a_resume_that_cannot_share_its_batches_names_the_processes(tmp_path, monkeypatch):
    # A run trained alone on 129 images at batch 64 ends each epoch with 1 image: two
    # processes cannot share it, and a resume may not change batch_size, so the advice is
    # the number of processes. Two ranks stood in for (rank 0's view; no collectives run
    # before the trainer refuses).
    from deepae.config import ModelConfig, TrainConfig
    from deepae.data import load_dataset

    with np.load(FIXTURE) as d:
        np.savez(tmp_path / "d.npz", x_train=d["x_train"][:129], x_test=d["x_test"][:20])
    digits = load_dataset(tmp_path / "d.npz")
    quiet = dict(log=lambda _: None, progress=False, evaluate=False)
    model, train = ModelConfig(hidden_sizes=(16,)), TrainConfig(epochs=2, batch_size=64)
    runs.train_run(tmp_path / "r", model, train, digits, stop=lambda: True, **quiet)

    class TwoRanks(distributed.World):
        def check_same(self, what, text):
            pass

        def share_bytes(self, data):
            return data

    monkeypatch.setattr(distributed, "world", lambda: TwoRanks(0, 2))
    with pytest.raises(ConfigError) as e:
        runs.resume(tmp_path / "r", digits, **quiet)
    assert str(e.value).startswith("the last batch of each epoch holds 1 of the 129 images")
    assert "a resumed run keeps its batch_size (64): resume it in fewer processes" in str(e.value)
    assert "give a batch_size" not in str(e.value) and e.value.field == "nproc"
