"""The thread policy (deepae.threads): the count chosen for given work and cores, against
hand-computed multiply-adds; the overrides (argument, DEEPAE_THREADS, OMP_NUM_THREADS);
and bad counts, which end in one line and exit code 2 before anything is trained."""

import json

import pytest
import torch

from deepae import threads
from deepae.api import Autoencoder
from deepae.cli import main
from deepae.config import resolve
from deepae.errors import ConfigError

# The article's 784-32-2-32-784: 784*32 + 32*2 + 2*32 + 32*784 = 50,304 weights; a step is
# the forward pass, the weight gradients and the input gradients but the first layer's.
ARTICLE_STEP = 32 * (3 * 50_304 - 784 * 32)  # 4,026,368
# best2d's 784-256-256-128-2-128-256-256-784 at batch 512.
BEST2D_WEIGHTS = 2 * (784 * 256 + 256 * 256 + 256 * 128 + 128 * 2)  # 598,528
BEST2D_STEP = 512 * (3 * BEST2D_WEIGHTS - 784 * 256)  # 816,578,560


@pytest.fixture
def two_cores(monkeypatch, tmp_path):
    """A process allowed on 2 cores, without a cgroup CPU quota, OMP_NUM_THREADS or
    DEEPAE_THREADS (what a test sets in the environment is undone after it)."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads, "CGROUP", tmp_path / "no-cgroup", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)  # the command line sets it


def test_the_work_of_a_step_is_counted_by_hand():
    assert threads.step_work(resolve("article")[0], 32) == ARTICLE_STEP
    model, train = resolve("best2d")
    assert threads.step_work(model, train.batch_size) == BEST2D_STEP
    assert threads.step_work(resolve("article")[0], 64) == 2 * ARTICLE_STEP


@pytest.mark.parametrize(
    ("work", "cores", "expected"),
    [
        (ARTICLE_STEP, 2, 1),  # tiny steps: one thread, whatever the cores
        (ARTICLE_STEP, 64, 1),
        (BEST2D_STEP, 2, 2),  # big steps: every usable core
        (BEST2D_STEP, 16, 16),
        (BEST2D_STEP, 1, 1),
        (8 * ARTICLE_STEP, 16, 2),  # the article's model at batch 256: 32M, two threads' worth
        (threads.PARALLEL_WORK - 1, 8, 1),
        (threads.PARALLEL_WORK * 3, 8, 3),
        (0, 4, 1),
    ],
)
def test_the_policy_gives_one_thread_per_parallel_work(work, cores, expected):
    assert threads.choose_threads(work, cores) == expected


def test_an_override_wins_over_the_policy():
    assert threads.choose_threads(ARTICLE_STEP, 2, override=2) == 2
    assert threads.choose_threads(BEST2D_STEP, 16, override=1) == 1


@pytest.mark.parametrize(
    ("omp", "expected"), [(None, 2), ("1", 1), ("8", 2), ("1,4", 1), ("x", 2), ("0", 2), ("²", 2)]
)
def test_omp_num_threads_caps_the_usable_cores(two_cores, omp, expected):
    environ = {} if omp is None else {"OMP_NUM_THREADS": omp}
    assert threads.usable_cores(environ) == expected


def cgroup(folder, files):
    """A fake cgroup root holding `files` ({relative path: text})."""
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


V1 = ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "100000 100000\n"}, 1),  # docker --cpus 1 on cgroup v2
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: rounded up, as joblib does
        ({"cpu.max": "25000 100000\n"}, 1),  # a quarter: still one thread
        ({"cpu.max": "800000 200000\n"}, 4),
        ({"cpu.max": "max 100000\n"}, None),  # no limit
        ({V1[0]: "-1\n", V1[1]: "100000\n"}, None),  # cgroup v1, no limit
        ({V1[0]: "300000\n", V1[1]: "100000\n"}, 3),
        ({V1[0]: "50000\n"}, None),  # a period missing: nothing to read
        ({"cpu.max": "garbage"}, None),
        ({}, None),  # not Linux, or no cgroup filesystem
    ],
)
def test_a_cgroup_cpu_quota_is_read_as_whole_cpus(tmp_path, files, expected):
    assert threads.quota_cores(cgroup(tmp_path, files)) == expected


def test_a_container_cpu_limit_caps_the_threads(two_cores, monkeypatch, tmp_path):
    """16 cores visible, a 1-CPU quota (docker run --cpus 1): best2d's big step gets one
    thread, not 16, and asking for 2 is warned about."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(16)),
                        raising=False)  # fmt: skip
    best2d = resolve("best2d")[0]
    assert threads.for_training(best2d, 512, environ={}) == 16  # no quota (two_cores)
    monkeypatch.setattr(threads, "CGROUP", cgroup(tmp_path, {"cpu.max": "100000 100000\n"}))
    assert threads.usable_cores({}) == 1
    assert threads.for_training(best2d, 512, environ={}) == 1
    assert "2 threads on 1 usable core(s)" in threads.oversubscribed(2)
    monkeypatch.setattr(threads, "CGROUP", cgroup(tmp_path, {"cpu.max": "400000 100000\n"}))
    assert threads.for_training(best2d, 512, environ={"OMP_NUM_THREADS": "8"}) == 4
    assert threads.for_training(best2d, 512, environ={"OMP_NUM_THREADS": "2"}) == 2


GOOD = [("3", 3), (3, 3), (" 2 ", 2), ("auto", None), ("AUTO", None), (None, None), ("1024", 1024)]


@pytest.mark.parametrize(("value", "expected"), GOOD)
def test_good_thread_counts(value, expected):
    assert threads.parse_threads(value) == expected


@pytest.mark.parametrize(
    "value", ["0", 0, "-1", -1, "abc", "2.5", 2.5, True, "", "1025", "+2", "²", "٣"]
)
def test_bad_thread_counts_name_their_field(value):
    with pytest.raises(ConfigError, match="threads must be a whole number from 1") as e:
        threads.parse_threads(value)
    assert e.value.field == "threads"
    with pytest.raises(ConfigError, match="DEEPAE_THREADS") as e:
        threads.parse_threads(value, field=threads.ENV)
    assert e.value.field == threads.ENV


def test_the_argument_beats_the_environment_which_beats_the_policy():
    env = {threads.ENV: "3"}
    assert threads.requested(None, {}) is None
    assert threads.requested(None, env) == 3
    assert threads.requested(2, env) == 2
    assert threads.requested("auto", env) is None  # an explicit auto is the policy's choice
    with pytest.raises(ConfigError) as e:
        threads.requested(None, {threads.ENV: "many"})
    assert e.value.field == threads.ENV


def test_for_training_reads_the_model_and_the_environment(two_cores):
    article, best2d = resolve("article")[0], resolve("best2d")[0]
    assert threads.for_training(article, 32, environ={}) == 1
    assert threads.for_training(best2d, 512, environ={}) == 2
    assert threads.for_training(best2d, 512, environ={"OMP_NUM_THREADS": "1"}) == 1
    assert threads.for_training(article, 32, environ={threads.ENV: "2"}) == 2
    assert threads.for_training(article, 32, 2, environ={threads.ENV: "1"}) == 2


def test_more_threads_than_cores_is_a_warning(two_cores):
    assert threads.oversubscribed(2) is None
    assert "3 threads on 2 usable core(s)" in threads.oversubscribed(3)
    assert threads.oversubscribed(1, processes=2) is None
    assert "2 threads in each of 2 processes on 2 usable core(s)" in threads.oversubscribed(2, 2)
    assert threads.oversubscribed(1, processes=4) is None  # too many processes: said apart


def test_nproc_with_too_many_threads_is_warned_once_by_the_launcher(two_cores, monkeypatch,
                                                                     capsys):  # fmt: skip
    from deepae import distributed

    launched = []
    monkeypatch.setattr(distributed, "launch", lambda n, argv, warn: launched.append(n) or 0)
    assert main(["train", "--nproc", "2", "--threads", "2"]) == 0 and launched == [2]
    err = capsys.readouterr().err
    assert err.count("warning: 2 threads in each of 2 processes") == 1, err
    monkeypatch.setenv("RANK", "0")  # a process the launcher started: it says nothing again
    monkeypatch.setattr(distributed, "launched", lambda: True)
    monkeypatch.setattr(distributed, "joined", lambda: (_ for _ in ()).throw(SystemExit(0)))
    with pytest.raises(SystemExit):
        main(["train", "--nproc", "2", "--threads", "2"])
    assert "warning" not in capsys.readouterr().err


def test_using_sets_the_count_and_restores_the_callers():
    before = torch.get_num_threads()
    with threads.using(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_the_wait_policy_is_set_only_when_the_user_did_not():
    environ = {}
    threads.default_wait_policy(environ)
    assert environ == {"GOMP_SPINCOUNT": "1000"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "50"}):
        environ = dict(chosen)
        threads.default_wait_policy(environ)
        assert environ == chosen


# -- through the library and the command line ---------------------------------------------


def test_fit_uses_the_count_it_is_given_and_restores_the_callers(mnist_small, two_cores):
    before = torch.get_num_threads()
    ae = Autoencoder(latent_activation="linear", epochs=1)
    seen = []
    ae.fit(mnist_small.x_train[:64], verbose=0, threads=2,
           on_epoch_end=lambda record, state: seen.append(torch.get_num_threads()))  # fmt: skip
    assert seen == [2] and ae.threads == 2
    assert torch.get_num_threads() == before
    ae.fit(mnist_small.x_train[:64], verbose=0)  # the policy: the article's step is tiny
    assert ae.threads == 1


def test_fit_refuses_a_bad_count_before_training(mnist_small, monkeypatch):
    ae = Autoencoder(epochs=1)
    start = [p.detach().clone() for p in ae.net.parameters()]
    with pytest.raises(ConfigError, match="threads") as e:
        ae.fit(mnist_small.x_train[:64], verbose=0, threads=0)
    assert e.value.field == "threads"
    monkeypatch.setenv(threads.ENV, "-2")
    with pytest.raises(ConfigError, match="DEEPAE_THREADS"):
        ae.fit(mnist_small.x_train[:64], verbose=0)
    assert ae.train_state.epoch == 0
    assert all(torch.equal(a, b.detach()) for a, b in zip(start, ae.net.parameters(), strict=True))


def test_a_run_records_its_threads_in_metrics_not_in_its_config(small_run):
    metrics = json.loads((small_run.folder / "metrics.json").read_text())
    assert metrics["threads"] == 1  # the article's model: a small step
    config = (small_run.folder / "config.json").read_text()
    assert "threads" not in config


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_a_bad_threads_flag_is_one_line_before_anything_runs(tmp_path, capsys, two_cores, value):
    code = main(["train", "--threads", value, "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "threads" in err[0] and err[0].endswith("(--threads)"), err
    assert not (tmp_path / "runs").exists()


def test_a_bad_deepae_threads_is_one_line(tmp_path, capsys, two_cores, monkeypatch):
    monkeypatch.setenv(threads.ENV, "lots")
    code = main(["train", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "DEEPAE_THREADS" in err[0], err
    assert not (tmp_path / "runs").exists()


def test_the_flag_warns_past_the_cores_and_reaches_the_library(tmp_path, capsys, two_cores):
    # --resume of a folder without a checkpoint fails right after the threads are read.
    code = main(["train", "--threads", "3", "--resume", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 2, err
    assert err[0].startswith("warning: 3 threads on 2 usable core(s)")
    assert threads.os.environ[threads.ENV] == "3"  # two_cores' monkeypatch restores it
