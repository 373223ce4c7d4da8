"""The `deepae` command line: parse, build a config, call one library function, print.

Heavy imports (PyTorch, Matplotlib) happen inside the commands that need them, so
`deepae --help` answers at once. Errors the user can fix print one line and exit 2.
"""

from __future__ import annotations

import argparse
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
        "--runs-dir", default="runs", help="folder that holds run folders (default: runs)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument(
        "--indices", default="110-119", help="training images to reconstruct (default: 110-119)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
        "--indices", default="110-119", help="image indices: 110-119 or 3,5,8 (default: 110-119)"
    )
    p.add_argument("--split", choices=("train", "test"), default="train", help="(default: train)")
    p.add_argument("--out", help="output .png (default: RUN/reconstructions-SPLIT.png)")
    _add_data_options(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("plot", help="redraw the figures of a saved run", **fmt)
    p.add_argument("run", help="run folder")
    p.add_argument(
        "--indices", default="110-119", help="training images to reconstruct (default: 110-119)"
    )
    _add_data_options(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("data", help="fetch or inspect datasets", **fmt)
    p.add_argument("action", choices=("fetch", "info"), help="fetch into the cache, or describe it")
    _add_data_options(p)
    p.set_defaults(func=cmd_data)
    return parser


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None, help="dataset name (default: mnist, or the run's)")
    p.add_argument("--data-dir", help="folder with the IDX files or mnist.npz (skips downloads)")


def _add_config_options(p: argparse.ArgumentParser, options) -> None:
    from deepae.config import ModelConfig, TrainConfig  # stdlib-only module: fast

    defaults = {**ModelConfig.__dataclass_fields__, **TrainConfig.__dataclass_fields__}
    for flag, field, kind, text in options:
        parse = _ints if kind == "ints" else kind
        default = defaults[field].default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        shown = "" if default is None else f" (default: {default})"
        # default=None: an option the user did not give leaves the config's value alone.
        p.add_argument(flag, dest=field, type=parse, default=None, help=text + shown)


# -- commands --------------------------------------------------------------------------------


def cmd_train(args) -> int:
    from deepae import data, runs
    from deepae.config import ModelConfig, TrainConfig, replace

    model_config = replace(ModelConfig(), **_fields(args, MODEL_OPTIONS))
    train_config = replace(TrainConfig(), **_fields(args, TRAIN_OPTIONS))
    indices = parse_indices(args.indices)
    folder = _new_run_folder(args)
    loaded = data.load_idx_dataset(args.dataset or "mnist", args.data_dir, log=_info)
    _info(f"data: {loaded.name} from {loaded.source} ({loaded.path})")
    result = runs.train_run(
        folder, model_config, train_config, loaded,
        log=print, progress=not args.no_progress, indices=indices,
    )  # fmt: skip
    print(f"run saved to {folder}/")
    for f in result.files:
        print(f"  {f}")
    return 0


def cmd_summary(args) -> int:
    from deepae import model, storage
    from deepae.config import ModelConfig, replace

    if args.run:
        net, _ = storage.load_model(args.run)
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
    from deepae.api import Autoencoder
    from deepae.plots import plot_image_grid

    ae = Autoencoder.load(args.run)
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
    indices = parse_indices(args.indices)
    bad = [i for i in indices if not 0 <= i < len(x)]
    if bad:
        return _usage_error(f"--indices {bad} out of range for {len(x)} {args.split} images")
    labels = None if y is None else [runs._label(loaded, v) for v in y[indices]]
    fig = plots.plot_reconstructions(x[indices], ae.reconstruct(x[indices]), labels)
    out = Path(args.out) if args.out else Path(args.run) / f"reconstructions-{args.split}.png"
    runs.save_figure(fig, out)
    print(f"wrote {out}")
    return 0


def cmd_plot(args) -> int:
    from deepae import runs

    ae, loaded = _load_run_and_data(args)
    for path in runs.write_figures(args.run, ae, loaded, indices=parse_indices(args.indices)):
        print(f"wrote {path}")
    return 0


def cmd_data(args) -> int:
    from deepae import data

    name = args.dataset or "mnist"
    if args.action == "fetch":
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


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated integers") from None
    return values


def _fields(args, options) -> dict:
    return {field: getattr(args, field) for _, field, _, _ in options}


def _new_run_folder(args) -> Path:
    from deepae.errors import ConfigError

    name = args.name or time.strftime("article-%Y%m%d-%H%M%S")
    folder = Path(args.runs_dir) / name
    if folder.exists() and any(folder.iterdir()) and not args.overwrite:
        raise ConfigError(
            f"run folder {folder} already exists; choose another --name or pass --overwrite"
        )
    return folder


def _load_run_and_data(args):
    from deepae import data, runs
    from deepae.api import Autoencoder

    ae = Autoencoder.load(args.run)
    recorded = runs.read_metrics(args.run).get("data", {}).get("name", "mnist")
    loaded = data.load_idx_dataset(args.dataset or recorded, args.data_dir, log=_info)
    return ae, loaded


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
