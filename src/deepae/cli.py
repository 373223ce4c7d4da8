"""The `deepae` command line: parse, build a config, call one library function, print.

Heavy imports (PyTorch, Matplotlib) happen inside the commands that need them, so
`deepae --help` answers at once. Errors the user can fix print one line and exit 2.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

EXIT_USAGE = 2

# Options that set a config field: (flag, field, type, help). One table drives the parser
# and the config building, so adding a field to the config is one line here.
MODEL_OPTIONS = [
    ("--hidden-sizes", "hidden_sizes", "ints", "encoder hidden layer sizes, e.g. 512,256"),
    ("--latent-size", "latent_size", int, "latent dimensions"),
    ("--hidden-activation", "hidden_activation", str, "activation of hidden layers"),
    ("--latent-activation", "latent_activation", str, "latent activation; linear cannot die"),
    ("--decoder-hidden-sizes", "decoder_hidden_sizes", "ints", "decoder sizes (default: mirror)"),
]
TRAIN_OPTIONS = [
    ("--epochs", "epochs", int, "passes over the training set"),
    ("--batch-size", "batch_size", int, "images per step"),
    ("--lr", "lr", float, "learning rate (default: the optimizer's Keras default)"),
    ("--optimizer", "optimizer", str, "adam, adamw, adagrad, adadelta, sgd or rmsprop"),
    ("--loss", "loss", str, "bce (binary cross-entropy) or mse"),
    ("--seed", "seed", int, "seed for initialisation and shuffling"),
    ("--device", "device", str, "auto, cpu or cuda"),
    ("--schedule", "schedule", str, "learning-rate schedule: constant, onecycle or cosine"),
    ("--weight-decay", "weight_decay", float, "L2 weight decay"),
    ("--engine", "engine", str, "fused (hand-written backward, fast) or autograd"),
    ("--adam-betas", "adam_betas", "floats", "Adam's beta1,beta2"),
]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from deepae.errors import DeepAEError

    try:
        return args.func(args) or 0
    except DeepAEError as e:
        print(f"deepae: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C: stop now; every file is written atomically
        print("deepae: interrupted (files already saved are intact)", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Let "-1.5,2" be a coordinate, not an unknown option (argparse only knows "-1.5").
        # No option of deepae starts with a digit, so nothing else changes meaning.
        self._negative_number_matcher = re.compile(r"^-\d*\.?\d+(e-?\d+)?(,-?\d*\.?\d+(e-?\d+)?)*$")

    # argparse prints the whole usage before its error; one line is easier to read.
    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="deepae",
        description="Train, look into and use dense autoencoders on image data. "
        "`deepae train` reproduces the article's 784-32-2-32-784 MNIST autoencoder.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    fmt: dict = {}

    p = sub.add_parser("train", help="train a model and write a run folder", **fmt)
    p.add_argument("--name", help="run name (default: <preset>-<date>-<time>)")
    p.add_argument(
        "--preset", metavar="NAME",
        help=f"a named config ({', '.join(_preset_names())}; default: article, the "
        "article's model and recipe); options given on the command line override it",
    )  # fmt: skip
    p.add_argument("--no-evaluate", action="store_true", help="skip the final evaluation.json")
    p.add_argument(
        "--runs-dir", default="runs", help="folder that holds run folders (default: runs)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", metavar="RUN", help="continue a stopped run from its checkpoint")
    p.add_argument(
        "--indices", help="training images to reconstruct (default: 110-119, or the first 10)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_pairs_option(p)
    _add_data_options(p)
    _add_config_options(p, MODEL_OPTIONS + TRAIN_OPTIONS)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("summary", help="print the Keras-style model summary", **fmt)
    p.add_argument("run", nargs="?", help="a run folder (default: the article's model)")
    _add_config_options(p, MODEL_OPTIONS)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("encode", help="write the latent codes of a dataset split", **fmt)
    p.add_argument("run", help="run folder")
    p.add_argument("--out", help="output .csv or .npy (default: RUN/codes-SPLIT.csv)")
    p.add_argument("--split", choices=("train", "test"), default="train", help="(default: train)")
    _add_data_options(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="turn latent points into images", **fmt)
    p.add_argument("run", help="run folder")
    p.add_argument("points", nargs="+", metavar="X,Y", help="latent coordinates, e.g. 0,5 3,1")
    p.add_argument("--out", help="output .png or .npy (default: RUN/decoded.png)")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("reconstruct", help="originals vs reconstructions figure", **fmt)
    p.add_argument("run", help="run folder")
    p.add_argument(
        "--indices", help="image indices: 110-119 or 3,5,8 (default: 110-119, or the first 10)"
    )
    p.add_argument("--split", choices=("train", "test"), default="train", help="(default: train)")
    p.add_argument("--out", help="output .png (default: RUN/reconstructions-SPLIT.png)")
    _add_data_options(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("plot", help="redraw the figures, explorer and report of a run", **fmt)
    p.add_argument("run", help="run folder")
    p.add_argument(
        "--indices", help="training images to reconstruct (default: 110-119, or the first 10)"
    )
    _add_pairs_option(p)
    _add_data_options(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("explore", help="write the interactive latent-space explorer", **fmt)
    p.add_argument("run", help="run folder")
    p.add_argument("--out", help="output .html (default: RUN/explorer.html)")
    p.add_argument(
        "--points", type=int, default=10000, help="training codes in the scatter (default: 10000)"
    )
    p.add_argument("--open", action="store_true", help="open the page in your web browser")
    _add_data_options(p)
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("evaluate", help="metrics of a run beside PCA: evaluation.json", **fmt)
    p.add_argument("run", help="run folder")
    p.add_argument("--split", choices=("test", "train"), default="test", help="(default: test)")
    _add_data_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("data", help="fetch or inspect datasets", **fmt)
    p.add_argument("action", choices=("fetch", "info"), help="fetch into the cache, or describe it")
    _add_data_options(p)
    p.set_defaults(func=cmd_data)
    return parser


def _add_pairs_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pairs", nargs="+", type=_pair, metavar="I,J",
        help="test-image index pairs for interpolation.png (default: a few pairs of "
        "different labels, e.g. the first 0 and the first 1)",
    )  # fmt: skip


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default=None, metavar="mnist|fashion-mnist|PATH",
        help="mnist, fashion-mnist, a folder of images (one subfolder per class, or none), "
        "or a .npz/.npy file (default: mnist, or the run's)",
    )  # fmt: skip
    p.add_argument("--data-dir", help="folder with the IDX files or mnist.npz (skips downloads)")
    p.add_argument(
        "--image-size", metavar="HxW",
        help="resize images to HxW, e.g. 32x32, or one number for squares (default: 28x28 "
        "for image folders, else the data's own size; or the run's)",
    )  # fmt: skip
    p.add_argument(
        "--val-fraction", type=float, metavar="F",
        help="share held out for validation from data without a test split (default: 0.1)",
    )  # fmt: skip
    p.add_argument(
        "--strict", action="store_true",
        help="stop at the first unreadable file of an image folder (default: skip it, warn)",
    )  # fmt: skip


def _add_config_options(p: argparse.ArgumentParser, options) -> None:
    from deepae.config import ModelConfig, TrainConfig  # stdlib-only module: fast

    defaults = {**ModelConfig.__dataclass_fields__, **TrainConfig.__dataclass_fields__}
    for flag, field, kind, text in options:
        parse = {"ints": _ints, "floats": _floats}.get(kind, kind)
        default = defaults[field].default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        shown = "" if default is None else f" (default: {default})"
        # default=None: an option the user did not give leaves the config's value alone.
        p.add_argument(flag, dest=field, type=parse, default=None, help=text + shown)


# -- commands --------------------------------------------------------------------------------


def cmd_train(args) -> int:
    from deepae import presets, runs
    from deepae.config import replace
    from deepae.errors import ConfigError

    if args.resume and args.preset:
        raise ConfigError("--resume continues the saved configuration; leave out --preset")
    preset = None if args.resume else args.preset or presets.DEFAULT_PRESET
    if args.resume:
        folder, model_config, train_config, loaded = _resume_setup(args)
    else:
        model_config, train_config = presets.resolve(
            preset, **_fields(args, MODEL_OPTIONS + TRAIN_OPTIONS)
        )
        folder = _new_run_folder(args)
        loaded = _load_data(args)
        h, w = loaded.x_train.shape[1:]  # the model's input size comes from the data
        model_config = replace(model_config, input_size=h * w, image_shape=(h, w))
    _info(f"data: {loaded.name} from {loaded.source} ({loaded.path})")
    indices = _indices(args.indices, len(loaded.x_train))  # checked before, not after, training
    if args.pairs:
        from deepae.latent import check_pairs

        check_pairs(args.pairs, len(loaded.x_test))
    with _StopOnSignal() as stopper:
        result = runs.train_run(
            folder, model_config, train_config, loaded,
            log=print, progress=not args.no_progress, indices=indices, pairs=args.pairs,
            resume=bool(args.resume), stop=stopper.requested,
            evaluate=not args.no_evaluate, preset=preset,
        )  # fmt: skip
    if result.interrupted:
        _info(
            f"{stopper.name}: training stopped, checkpoint saved in {folder}/; "
            f"continue with: deepae train --resume {folder}"
        )
        return 128 + stopper.signum
    print(f"run saved to {folder}/")
    for f in result.files:
        print(f"  {f}")
    return 128 + stopper.signum if stopper.signum else 0


class _StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM ask training to stop after the current step, so the run
    can save a checkpoint; a second signal abandons at once (KeyboardInterrupt)."""

    def __init__(self):
        self.signum = 0

    @property
    def name(self) -> str:
        import signal

        return signal.Signals(self.signum).name if self.signum else ""

    def requested(self) -> bool:
        return self.signum != 0

    def _handle(self, signum, frame) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        import signal

        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for s, handler in self._old.items():
            signal.signal(s, handler)


def _resume_setup(args):
    """The folder, configs and data of the run that `--resume` continues."""
    from deepae import checkpoint, status, storage
    from deepae.config import replace
    from deepae.errors import ConfigError, RunError

    folder = Path(args.resume)
    record = status.read(folder) if folder.is_dir() else None
    if record is None or not checkpoint.exists(folder):
        raise RunError(f"{folder} has no checkpoint to resume from; give a run folder that "
                       "`deepae train` wrote")  # fmt: skip
    model_config, train_config = storage.load_config(folder)
    given = {k: v for k, v in _fields(args, MODEL_OPTIONS + TRAIN_OPTIONS).items() if v is not None}
    fixed = sorted(set(given) - {"epochs", "device"})
    if fixed:
        flags = ", ".join("--" + f.replace("_", "-") for f in fixed)
        raise ConfigError(f"--resume continues the saved configuration; only --epochs and "
                          f"--device may change (got {flags})")  # fmt: skip
    extending = given.get("epochs", train_config.epochs) != train_config.epochs
    if extending and train_config.schedule != "constant":
        raise ConfigError(f"--epochs cannot change on --resume with the {train_config.schedule} "
                          "schedule (its shape depends on the total); start a new run")  # fmt: skip
    train_config = replace(train_config, **given)
    if record["status"] == status.COMPLETE and record["epochs_done"] >= train_config.epochs:
        raise ConfigError(f"run {folder} is complete ({record['epochs_done']} epochs); "
                          "pass a larger --epochs to train it further")  # fmt: skip
    loaded = _load_data(args, record.get("data"))
    return folder, model_config, train_config, loaded


def cmd_summary(args) -> int:
    from deepae import model
    from deepae.config import ModelConfig, replace

    if args.run:
        net = _load_run(args.run).net
    else:
        net = model.AutoencoderNet(replace(ModelConfig(), **_fields(args, MODEL_OPTIONS)))
    print(model.summary(net))
    return 0


def cmd_encode(args) -> int:
    import numpy as np

    from deepae import fsio

    ae, loaded = _load_run_and_data(args)
    x, y = _split(loaded, args.split)
    codes = ae.encode(x)  # (N, latent)
    out = Path(args.out) if args.out else Path(args.run) / f"codes-{args.split}.csv"
    if out.suffix == ".npy":
        with fsio.atomic_path(out, suffix=".npy") as tmp:
            np.save(tmp, codes)
    elif out.suffix == ".csv":
        header = "index,label," + ",".join(f"z{i}" for i in range(codes.shape[1]))
        labels = y if y is not None else np.full(len(codes), -1)
        lines = [header] + [
            f"{i},{int(lab)}," + ",".join(f"{v:.7g}" for v in row)
            for i, (lab, row) in enumerate(zip(labels, codes, strict=True))
        ]
        fsio.write_text(out, "\n".join(lines) + "\n")
    else:
        return _usage_error(f"--out {out}: use a .csv or .npy file name")
    print(f"wrote {len(codes)} codes of shape {codes.shape[1:]} to {out}")
    return 0


def cmd_decode(args) -> int:
    import numpy as np

    from deepae import fsio, runs
    from deepae.plots import plot_image_grid

    ae = _load_run(args.run)
    points = [parse_point(p, ae.model_config.latent_size) for p in args.points]
    images = ae.decode(np.array(points, dtype=np.float32))  # (N, H, W)
    out = Path(args.out) if args.out else Path(args.run) / "decoded.png"
    if out.suffix == ".npy":
        with fsio.atomic_path(out, suffix=".npy") as tmp:
            np.save(tmp, images)
    elif out.suffix == ".png":
        titles = ["(" + ", ".join(f"{v:g}" for v in p) + ")" for p in points]
        runs.save_figure(plot_image_grid([images], titles=titles), out)
    else:
        return _usage_error(f"--out {out}: use a .png or .npy file name")
    print(f"decoded {len(points)} point(s) to {out}")
    return 0


def cmd_reconstruct(args) -> int:
    from deepae import plots, runs

    ae, loaded = _load_run_and_data(args)
    x, y = _split(loaded, args.split)
    indices = _indices(args.indices, len(x), args.split)
    labels = None if y is None else [runs._label(loaded, v) for v in y[indices]]
    fig = plots.plot_reconstructions(x[indices], ae.reconstruct(x[indices]), labels)
    out = Path(args.out) if args.out else Path(args.run) / f"reconstructions-{args.split}.png"
    runs.save_figure(fig, out)
    print(f"wrote {out}")
    return 0


def cmd_plot(args) -> int:
    from deepae import runs

    ae, loaded = _load_run_and_data(args)
    indices = _indices(args.indices, len(loaded.x_train))
    paths = runs.write_figures(args.run, ae, loaded, indices=indices, pairs=args.pairs)
    for path in paths + runs.write_pages(args.run, ae, loaded):
        print(f"wrote {path}")
    return 0


def cmd_explore(args) -> int:
    import webbrowser

    from deepae import explorer

    ae, loaded = _load_run_and_data(args)
    path = explorer.write_explorer(args.run, ae, loaded, out=args.out, points=args.points)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    return 0


def cmd_evaluate(args) -> int:
    from deepae import evaluate, runs

    ae, loaded = _load_run_and_data(args)
    result = evaluate.evaluate_run(ae, loaded, split=args.split)
    path = runs.write_evaluation(args.run, result, log=print)
    print(f"wrote {path}")
    return 0


def cmd_data(args) -> int:
    from deepae import data

    name = args.dataset or "mnist"
    if name not in data.DATASETS:  # a folder or array file: read (and cache) it, describe it
        from deepae.datasets import describe

        result = describe(_load_data(args))
    elif args.action == "fetch":
        result = data.fetch(name, data_dir=args.data_dir, log=_info)
    else:
        result = data.info(name)
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
    return 0


# -- helpers ---------------------------------------------------------------------------------


def parse_indices(text: str) -> list[int]:
    """'110-119' -> [110, ..., 119]; '3,5,8' -> [3, 5, 8]; mixed forms allowed."""
    from deepae.errors import ConfigError

    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise ConfigError(f"--indices {text!r}: use numbers and ranges like 110-119 or 3,5,8")
        out += range(int(m[1]), int(m[2] or m[1]) + 1)
    return out


def _indices(text: str | None, n: int, split: str = "train") -> list[int]:
    """--indices checked against n images; left out: the article's 110-119, or the first
    ten images of a smaller set."""
    from deepae.errors import ConfigError

    if text is None:
        return list(range(110, 120)) if n >= 120 else list(range(min(10, n)))
    indices = parse_indices(text)
    bad = [i for i in indices if i >= n]
    if bad:
        raise ConfigError(
            f"--indices {bad[:5]} out of range for {n} {split} images (0-{n - 1}); "
            "choose indices in range"
        )
    return indices


def parse_point(text: str, size: int) -> list[float]:
    """'0,5' -> [0.0, 5.0], checked against the latent size."""
    from deepae.errors import ConfigError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != size or not all(abs(v) < float("inf") for v in values):
        example = ",".join(["0.5"] * size)
        raise ConfigError(
            f"coordinate {text!r} is not {size} comma-separated finite numbers (e.g. {example})"
        )
    return values


def _pair(text: str) -> tuple[int, int]:
    try:
        i, j = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not two indices I,J such as 3,18") from None
    return i, j


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated integers") from None
    return values


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated numbers") from None


def _fields(args, options) -> dict:
    return {field: getattr(args, field) for _, field, _, _ in options}


def _preset_names() -> list[str]:
    from deepae.presets import PRESETS  # stdlib-only module: fast

    return list(PRESETS)


def _new_run_folder(args) -> Path:
    from deepae.errors import ConfigError

    name = args.name or time.strftime(f"{args.preset or 'article'}-%Y%m%d-%H%M%S")
    folder = Path(args.runs_dir) / name
    if folder.exists() and any(folder.iterdir()) and not args.overwrite:
        raise ConfigError(
            f"run folder {folder} already exists; choose another --name or pass --overwrite"
        )
    return folder


def _load_run(folder):
    """The trained model of a run folder; an unfinished run is a clear error."""
    from deepae import status
    from deepae.api import Autoencoder

    status.require_complete(folder)
    return Autoencoder.load(folder)


def _load_run_and_data(args):
    from deepae import runs
    from deepae.errors import DataError

    ae = _load_run(args.run)
    metrics = runs.read_metrics(args.run)
    loaded = _load_data(args, metrics.get("data") if isinstance(metrics, dict) else None)
    shape, want = loaded.x_train.shape[1:], ae.model_config.image_shape
    if math.prod(shape) != ae.model_config.input_size:
        raise DataError(
            f"{loaded.name} has {'x'.join(map(str, shape))} images but the model of {args.run} "
            f"takes {'x'.join(map(str, want))}; pass --image-size {'x'.join(map(str, want))} "
            "or the dataset it was trained on"
        )
    return ae, loaded


def _load_data(args, recorded: dict | None = None):
    """The dataset the options name (--dataset, --data-dir, --image-size, --val-fraction,
    --strict). Options left out come from `recorded`, a run's "data" record (metrics.json
    or run.json), so a run's commands load the data it was trained on; then the defaults."""
    from deepae.datasets import DEFAULT_VAL_FRACTION, load_dataset

    rec = recorded if isinstance(recorded, dict) else {}
    dataset = args.dataset or rec.get("dataset") or rec.get("name") or "mnist"
    # The recorded size, split and data dir describe the recorded dataset only.
    same = rec and dataset == (rec.get("dataset") or rec.get("name"))
    mine = rec if same else {}
    data_dir = args.data_dir or mine.get("data_dir")
    if args.data_dir is None and data_dir and not Path(data_dir).exists():
        data_dir = None  # moved or deleted since: look in the cache and the usual places
    return load_dataset(
        dataset, data_dir=data_dir, strict=args.strict, log=_info,
        image_size=args.image_size if args.image_size is not None else mine.get("image_size"),
        val_fraction=_first(args.val_fraction, mine.get("val_fraction"), DEFAULT_VAL_FRACTION),
        seed=_first(mine.get("seed"), 0),
    )  # fmt: skip


def _first(*values):
    return next(v for v in values if v is not None)


def _split(loaded, split: str):
    return (loaded.x_train, loaded.y_train) if split == "train" else (loaded.x_test, loaded.y_test)


def _usage_error(message: str) -> int:
    print(f"deepae: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _version() -> str:
    from deepae import __version__

    return f"deepae {__version__}"


if __name__ == "__main__":
    sys.exit(main())
