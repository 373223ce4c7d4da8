"""deepae.evaluate: every metric against an independent computation (by hand, brute-force
NumPy, an SVD, torch's BCE), then `evaluate_run` and `deepae evaluate` on real MNIST."""

import dataclasses
import json
import math
import shutil
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from deepae import evaluate as ev
from deepae import run as runs
from deepae import tables
from deepae.api import Autoencoder
from deepae.cli import main

# -- reconstruction -------------------------------------------------------------------------


def test_reconstruction_metrics_by_hand():
    x = np.array([[0.0, 1.0], [1.0, 0.5]])
    x_hat = np.array([[0.25, 0.5], [0.5, 0.5]])
    m = ev.reconstruction_metrics(x, x_hat, np.array([3, 7]), class_names=tuple("0123456789"))
    # BCE per pixel: -ln 0.75, -ln 0.5, -ln 0.5, -(0.5 ln 0.5 + 0.5 ln 0.5) = ln 2
    assert m["bce"] == pytest.approx((-math.log(0.75) + 3 * math.log(2)) / 4, rel=1e-12)
    assert m["mse"] == pytest.approx((0.0625 + 0.25 + 0.25 + 0) / 4, rel=1e-12)
    assert m["psnr"] == pytest.approx(10 * math.log10(1 / 0.140625), rel=1e-12)
    assert m["mse_per_class"] == pytest.approx({"3": 0.15625, "7": 0.125}, rel=1e-12)


def test_reconstruction_metrics_uint8_images_and_clipping():
    x = np.array([[[255, 0]]], dtype=np.uint8)  # one 1x2 image: pixels 1 and 0
    x_hat = np.array([[[1.2, -0.1]]])  # PCA's reconstructions can leave [0, 1]
    m = ev.reconstruction_metrics(x, x_hat)
    assert m["mse"] == pytest.approx((0.04 + 0.01) / 2)  # MSE: unclipped
    eps = ev.BCE_EPS
    assert m["bce"] == pytest.approx(-math.log(1 - eps), abs=1e-12)  # BCE: clipped to [eps, 1-eps]
    worst = ev.reconstruction_metrics(np.array([[1.0]]), np.array([[0.0]]))
    assert worst["bce"] == pytest.approx(-math.log(eps))  # finite, as Keras'
    assert "mse_per_class" not in m
    assert ev.reconstruction_metrics(x, x / 255)["psnr"] is None  # perfect: no finite PSNR


def test_bce_is_the_training_loss(mnist_small):
    # The trainer computes BCE from logits with torch; evaluate from the reconstructions.
    ae = Autoencoder(latent_activation="linear", seed=1)
    x = mnist_small.x_test[:500]
    xt = torch.from_numpy(x.reshape(500, -1).astype(np.float32) / 255)
    with torch.no_grad():
        expected = torch.nn.functional.binary_cross_entropy_with_logits(ae.net.logits(xt), xt)
    assert ev.reconstruction_metrics(x, ae.reconstruct(x))["bce"] == pytest.approx(
        expected.item(), rel=1e-5
    )


# -- neighbourhoods -------------------------------------------------------------------------


def brute_knn_predict(train, train_labels, test, k, exclude_self=False):
    d = ((test[:, None, :] - train[None, :, :]) ** 2).sum(-1)  # (M, N)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]  # (M, k)
    # majority vote; argmax of the counts gives the smallest label on ties
    return np.array([np.bincount(train_labels[row]).argmax() for row in nearest])


@pytest.mark.parametrize("k", [1, 5])
def test_knn_accuracy_matches_brute_force(k):
    rng = np.random.default_rng(k)
    train, test = rng.normal(size=(300, 2)), rng.normal(size=(80, 2))
    train_labels = (train[:, 0] > 0) * 2 + rng.integers(0, 2, 300)  # 4 classes, some signal
    test_labels = (test[:, 0] > 0) * 2 + rng.integers(0, 2, 80)
    expected = (brute_knn_predict(train, train_labels, test, k) == test_labels).mean()
    assert ev.knn_accuracy(train, train_labels, test, test_labels, k) == pytest.approx(expected)
    loo = brute_knn_predict(train, train_labels, train, k, exclude_self=True) == train_labels
    assert ev.knn_accuracy(train, train_labels, None, None, k) == pytest.approx(loo.mean())


def test_knn_accuracy_by_hand():
    train = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    labels = np.array([0, 0, 1, 1, 1])
    test = np.array([[0.4], [1.9], [10.5]])
    # 1-NN: 0 -> 0, 2 -> 1, 10 or 11 -> 1; 3-NN at 0.4: {0, 1, 2} -> 0 0 1 -> 0
    assert ev.knn_accuracy(train, labels, test, np.array([0, 1, 1]), 1) == 1.0
    assert ev.knn_accuracy(train, labels, test, np.array([0, 0, 0]), 1) == pytest.approx(1 / 3)
    assert ev.knn_accuracy(train, labels, test[:1], np.array([0]), 3) == 1.0


def brute_trustworthiness(x, z, k):
    """Venna & Kaski (2001): 1 - 2 / (n k (2n - 3k - 1)) * sum of (rank - k) over points
    that are among the k nearest in z but not in x, ranks counted in x (1 = nearest)."""
    n = len(x)
    dx, dz = cdist(x, x, "sqeuclidean"), cdist(z, z, "sqeuclidean")  # (n, n) each
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dz, np.inf)
    rank_x = np.argsort(np.argsort(dx, axis=1), axis=1) + 1  # (n, n) rank of j for i
    penalty = 0
    for i in range(n):
        for j in np.argsort(dz[i])[:k]:
            penalty += max(rank_x[i, j] - k, 0)
    return 1 - 2 / (n * k * (2 * n - 3 * k - 1)) * penalty


def test_trustworthiness_matches_the_formula():
    rng = np.random.default_rng(0)
    x = rng.random((60, 5)).astype(np.float32)  # floats in [0, 1], as images
    z = x[:, :2] + 0.3 * rng.normal(size=(60, 2))
    got = ev.trustworthiness(x, z, k=5, n_samples=1000)
    assert got == pytest.approx(brute_trustworthiness(x.astype(np.float64), z, 5), abs=1e-6)
    assert ev.trustworthiness(x, x * 3, k=5) == pytest.approx(1.0)  # a scaling keeps order
    # the subset is seeded: same seed, same number; it uses n_samples points
    sub = ev._subset(60, 30, seed=4)
    assert len(sub) == 30 and len(set(sub)) == 30
    expected = brute_trustworthiness(x[sub].astype(np.float64), z[sub], 5)
    assert ev.trustworthiness(x, z, k=5, n_samples=30, seed=4) == pytest.approx(expected, abs=1e-6)


def test_dead_units():
    codes = np.ones((1000, 3))
    codes[:, 0] = 0  # dead
    codes[:995, 1] = 0  # 99.5% zeros: dead
    codes[:500, 2] = 0  # half: alive
    assert ev.dead_units(codes) == 2
    assert ev.dead_units(np.random.default_rng(0).normal(size=(50, 2))) == 0


def test_pca_baseline_matches_an_svd():
    rng = np.random.default_rng(0)
    x_train = rng.random((200, 12)).astype(np.float32)
    x_test = rng.random((30, 12)).astype(np.float32)
    emb = ev.pca_baseline(x_train, x_test, 3)
    mean = x_train.astype(np.float64).mean(0)
    _, _, vt = np.linalg.svd(x_train - mean, full_matrices=False)
    v = vt[:3]  # (3, D) principal axes
    codes = (x_test - mean) @ v.T  # (30, 3), up to one sign per axis
    signs = np.sign((emb.codes * codes).sum(0))
    np.testing.assert_allclose(emb.codes, codes * signs, atol=1e-4)
    np.testing.assert_allclose(emb.reconstruction, codes @ v + mean, atol=1e-4)
    assert emb.train_codes.shape == (200, 3)


def test_missing_scikit_learn_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    with pytest.raises(ev.MissingExtraError, match=r"pip install 'deepae\[eval\]'"):
        ev.knn_accuracy(np.zeros((5, 2)), np.zeros(5), np.zeros((1, 2)), np.zeros(1), 1)


# -- a trained model, end to end ------------------------------------------------------------


@pytest.fixture(scope="module")
def small(mnist_small):
    """A 784-32-2-32-784 model (linear latent) trained 1 epoch on the fixture's 2,000
    images, and the data: those 2,000 training and 500 test images."""
    data = mnist_small
    ae = Autoencoder(latent_activation="linear", epochs=1, seed=0)
    ae.fit(data.x_train, verbose=0)
    return ae, data


def test_evaluate_run_on_a_real_subset(small):
    ae, data = small
    result = ev.evaluate_run(ae, data)
    assert (result["dataset"], result["split"], result["n"]) == ("mnist", "test", 500)
    x = data.x_test.reshape(500, -1) / 255
    # the model's numbers, recomputed from its verbs
    model = result["model"]
    assert model["mse"] == pytest.approx(
        ((ae.reconstruct(data.x_test).reshape(500, -1) - x) ** 2).mean()
    )
    z_train, z_test = ae.encode(data.x_train), ae.encode(data.x_test)
    knn5 = brute_knn_predict(z_train.astype(np.float64), data.y_train, z_test, 5) == data.y_test
    assert model["knn5_accuracy"] == pytest.approx(knn5.mean())
    assert model["dead_units"] == 0
    # all 500 test images (fewer than TRUST_SAMPLES), k = 10
    want = brute_trustworthiness(x.astype(np.float64), z_test.astype(np.float64), ev.TRUST_K)
    assert model["trustworthiness"] == pytest.approx(want, abs=1e-6)
    assert set(model["mse_per_class"]) == set("0123456789")
    # PCA's, recomputed with an SVD
    mean = data.x_train.reshape(2000, -1).mean(0) / 255
    _, _, vt = np.linalg.svd(data.x_train.reshape(2000, -1) / 255 - mean, full_matrices=False)
    pca_recon = (x - mean) @ vt[:2].T @ vt[:2] + mean
    assert result["pca"]["mse"] == pytest.approx(((pca_recon - x) ** 2).mean(), rel=1e-4)
    assert result["pca"]["dead_units"] == 0
    assert result["published"] is None  # the paper's numbers are for the whole test set
    json.dumps(result, allow_nan=False)  # plain JSON


def test_evaluate_run_on_the_training_split(small):
    ae, data = small
    result = ev.evaluate_run(ae, data, split="train", trust_samples=500)
    assert (result["split"], result["n"], result["published"]) == ("train", 2000, None)
    z = ae.encode(data.x_train).astype(np.float64)
    loo = brute_knn_predict(z, data.y_train, z, 1, exclude_self=True) == data.y_train
    assert result["model"]["knn1_accuracy"] == pytest.approx(loo.mean())  # not 1.0
    assert result["trustworthiness"]["samples"] == 500


def test_format_table_shows_model_pca_and_published(small):
    ae, data = small
    result = ev.evaluate_run(ae, data)
    result["published"] = tables.PUBLISHED["mnist"]  # as for the 10,000 test images
    table = tables.format_table(result)
    header = table.splitlines()[1].split()
    assert header[:4] == ["metric", "model", "PCA", "2-D"]
    lines = table.splitlines()
    umap_ae = next(line for line in lines if line.startswith("UMAP/AE"))
    assert umap_ae.split() == ["UMAP/AE", "0.954", "0.940", "0.0360", "0.968"]
    t_sne = next(line for line in lines if line.startswith("t-SNE"))
    assert t_sne.split() == ["t-SNE", "0.950", "0.941", "-", "0.987"]
    row = next(line for line in table.splitlines() if line.startswith("5-NN accuracy"))
    assert row.split()[2:4] == [f"{result['model']['knn5_accuracy']:.3f}",
                                f"{result['pca']['knn5_accuracy']:.3f}"]  # fmt: skip


def test_small_or_unlabelled_data_leaves_metrics_out(small):
    ae, data = small
    tiny = dataclasses.replace(
        data, x_train=data.x_train[:4], y_train=None, x_test=data.x_test[:15], y_test=None
    )
    result = ev.evaluate_run(ae, tiny)
    assert "knn1_accuracy" not in result["model"] and "mse_per_class" not in result["model"]
    assert result["model"]["trustworthiness"] is None  # k=10 needs more than 20 points
    assert result["pca"]["mse"] > 0
    rows = {line.split("  ")[0]: line.split() for line in tables.format_table(result).splitlines()}
    assert rows["trustworthiness (k=10)"][-2:] == ["-", "-"]  # neither model nor PCA has it


def test_train_run_writes_evaluation_json(small_run):
    result = json.loads((small_run.folder / "evaluation.json").read_text())
    assert result["split"] == "test" and result["n"] == len(small_run.data.x_test) == 500
    assert set(result["model"]) >= {"bce", "mse", "psnr", "knn1_accuracy", "knn5_accuracy"}
    metrics = json.loads((small_run.folder / "metrics.json").read_text())
    assert result["model"]["bce"] == pytest.approx(metrics["val_loss"], rel=1e-4)
    assert "Evaluation" in (small_run.folder / "report.html").read_text()


def test_evaluate_command(small_run, tmp_path, capsys):
    folder = shutil.copytree(small_run.folder, tmp_path / "run")
    (folder / "evaluation.json").unlink()
    assert main(["evaluate", str(folder)]) == 0
    out = capsys.readouterr().out
    result = json.loads((folder / "evaluation.json").read_text())
    assert result["n"] == 500  # the run's own dataset (the fixture's 500 test digits), reloaded
    assert f"{result['model']['mse']:.4f}" in out and "mnist-small test set, 500 images" in out
    assert "published" not in out  # the published numbers are for the full MNIST test set
    assert f"wrote {folder / 'evaluation.json'}" in out


def test_train_run_without_scikit_learn_warns_and_finishes(small, tmp_path, monkeypatch):
    _, data = small
    monkeypatch.setitem(sys.modules, "sklearn", None)
    lines = []
    model, train = ev_configs()
    result = runs.train_run(tmp_path / "r", model, train, data, log=lines.append, progress=False)
    assert any("pip install 'deepae[eval]'" in line for line in lines)
    assert not (tmp_path / "r" / "evaluation.json").exists()
    assert (tmp_path / "r" / "model.safetensors").is_file() and result.metrics["epochs"] == 1


def ev_configs():
    from deepae.config import ModelConfig, TrainConfig

    return ModelConfig(hidden_sizes=(8,), latent_activation="linear"), TrainConfig(epochs=1)


def test_published_rows_are_the_papers_tables():
    # Sainburg, McInnes & Gentner 2021, 2-D: (5-NN, MSE, trustworthiness k=5 on training)
    mnist, fashion = tables.PUBLISHED["mnist"], tables.PUBLISHED["fashion-mnist"]
    assert (mnist["UMAP/AE"]["knn5_accuracy"], mnist["UMAP/AE"]["mse"]) == (0.9537, 0.0360)
    assert (mnist["AE"]["knn5_accuracy"], mnist["PCA"]["mse"]) == (0.7926, 0.0557)
    assert (fashion["UMAP/AE"]["knn5_accuracy"], fashion["UMAP/AE"]["mse"]) == (0.7561, 0.0240)
    assert (fashion["AE"]["knn5_accuracy"], fashion["AE"]["mse"]) == (0.7339, 0.0244)
    assert set(mnist) == set(fashion) == {"UMAP/AE", "P.UMAP", "UMAP", "t-SNE", "AE", "VAE", "PCA"}


@pytest.mark.parametrize("shape", [(28, 28), (14, 14)])
def test_published_numbers_only_beside_28x28_maps_of_the_whole_test_set(mnist_small, mnist,
                                                                        shape):  # fmt: skip
    stride = 28 // shape[0]
    data = dataclasses.replace(
        mnist_small, x_train=mnist_small.x_train[:, ::stride, ::stride],
        x_test=mnist.x_test[:, ::stride, ::stride], y_test=mnist.y_test,
    )  # fmt: skip
    assert data.name == "mnist" and len(data.x_test) == 10_000
    ae = Autoencoder(input_size=shape[0] * shape[1], image_shape=shape, latent_activation="linear")
    result = ev.evaluate_run(ae, data, trust_samples=50)
    want = tables.PUBLISHED["mnist"] if shape == (28, 28) else None
    assert result["published"] == want


def test_a_file_called_mnist_holding_other_digits_gets_no_published_numbers(
    mnist_small, mnist, tmp_path
):
    # 10,000 28 x 28 test digits in a file named mnist.npz load as dataset "mnist"; only
    # MNIST's own test set (images and labels) is what the paper measured.
    from deepae.data import load_dataset

    train = {"x_train": mnist_small.x_train, "y_train": mnist_small.y_train}
    others = np.tile(mnist_small.x_test, (20, 1, 1)), np.tile(mnist_small.y_test, 20)
    relabelled = mnist.x_test, np.roll(mnist.y_test, 1)  # the right images, wrong labels
    real = mnist.x_test, mnist.y_test
    ae = Autoencoder(latent_activation="linear")
    cases = [(others, None), (relabelled, None), (real, tables.PUBLISHED["mnist"])]
    for i, ((x_test, y_test), want) in enumerate(cases):
        folder = tmp_path / str(i)
        folder.mkdir()
        np.savez(folder / "mnist.npz", x_test=x_test, y_test=y_test, **train)
        data = load_dataset(folder / "mnist.npz")
        assert (data.name, data.x_test.shape) == ("mnist", (10_000, 28, 28))
        assert ev.evaluate_run(ae, data, trust_samples=50)["published"] == want
    # The same check decides for both of the paper's datasets, and the name must agree.
    assert ev.is_published_test_set(mnist)
    assert not ev.is_published_test_set(dataclasses.replace(mnist, name="fashion-mnist"))
    assert not ev.is_published_test_set(dataclasses.replace(mnist, name="digits"))
