"""The `deepae` command line: parse, build a config, call one library function, print.

Heavy imports (PyTorch, Matplotlib) happen inside the commands that need them, so
`deepae --help` answers at once. Errors the user can fix print one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

# Light modules only (no torch, no Matplotlib): `deepae --help` must answer at once.
from deepae import config, distributed, threads
from deepae._version import __version__
from deepae.cli_values import floats, ints, lower, pair, parse_point
from deepae.errors import ConfigError, DeepAEError

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
# deepae.optim.make_schedule: PyTorch's OneCycleLR with its defaults
SCHEDULE_HELP = ("learning-rate schedule: constant, onecycle (the rate up for 30%% of the "
                 "steps, then down; Adam's beta1, or SGD's momentum if set, cycled "
                 "0.95-0.85) or cosine")  # fmt: skip
TRAIN_OPTIONS = [
    ("--epochs", "epochs", int, "passes over the training set"),
    ("--batch-size", "batch_size", int, "images per step"),
    ("--lr", "lr", float, "learning rate (default: the optimizer's Keras default)"),
    ("--optimizer", "optimizer", str, "adam, adamw, adagrad, adadelta, sgd or rmsprop"),
    ("--loss", "loss", str, "bce (binary cross-entropy) or mse"),
    ("--seed", "seed", int, "seed for initialisation and shuffling"),
    ("--device", "device", str, "auto, cpu or cuda"),
    ("--schedule", "schedule", str, SCHEDULE_HELP),
    ("--weight-decay", "weight_decay", float, "L2 weight decay"),
    ("--engine", "engine", str, "auto, fused (hand-written backward, fast) or autograd"),
    ("--precision", "precision", str, "float32, mixed_bfloat16 or auto (bf16 where native)"),
    ("--adam-betas", "adam_betas", "floats", "Adam's beta1,beta2"),
    ("--neighbour-weight", "neighbour_weight", float, "weight of UMAP's graph loss, 0 for none"),
    ("--neighbours", "neighbours", int, "k of the neighbour graph"),
    ("--min-dist", "min_dist", float, "UMAP's min_dist: how tightly neighbours may pack"),
    ("--negative-rate", "negative_rate", int, "in-batch negative samples per edge"),
    ("--validation-freq", "validation_freq", int, "validate every N epochs, and after the last"),
]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MPLBACKEND", "agg")  # commands save figures, never show them
    distributed.quiet_native_logs()  # under torchrun; before PyTorch loads
    threads.default_wait_policy()  # OpenMP reads it when PyTorch loads (deepae.threads)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "data" and not any(a.startswith("-") for a in extra):
        args.operands += extra  # `data pack --image-size 14 SRC OUT`: argparse leaves these
    elif extra:
        command = f"deepae {args.command}"
        parser.exit(EXIT_USAGE, f"{command}: error: unrecognized arguments: {' '.join(extra)} "
                                f"(see {command} --help)\n")  # fmt: skip
    args.argv = sys.argv[1:] if argv is None else list(argv)  # the user's own, for advice
    try:
        return args.func(args) or 0
    except DeepAEError as e:
        print(f"deepae: error: {_message(e, args.command)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C: stop now; every file is written atomically
        print("deepae: interrupted (files already saved are intact)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed (`deepae ... | head`) outside `_say`: stop quietly
        _drop_stdout()
        return 1


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Let "-1.5,2" be a coordinate, not an unknown option (argparse only knows "-1.5"),
        # in any form float() reads ("-1E-3,2", "-1e+2,0", "-1.,2"): whatever starts with
        # "-" and a digit (as Python 3.13's argparse has it). No option of deepae starts with
        # a digit, so nothing else changes meaning; parse_point checks the value.
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    # argparse prints the whole usage before its error; one line is easier to read.
    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Arguments shared by several commands: (names, argparse keyword arguments).
_RUN = (("run",), {"help": "run folder"})
_INDICES = (("--indices",), {"help": "image indices: 110-119 or 3,5,8 (default: 110-119, "
                                     "or the first 10)"})  # fmt: skip
_PAIRS = (("--pairs",), {
    "nargs": "+", "type": pair, "metavar": "I,J",
    "help": "test-image index pairs for interpolation.png (default: a few pairs of different "
    "labels, e.g. the first 0 and the first 1)",
})  # fmt: skip


def _data_args(runs: str = "; or the run's") -> list:
    """The data options; `runs` ends each default that a run's own record replaces (the
    commands that read a run, and train --resume), "" for `data`, which reads none."""
    return [
        (("--dataset",), {"metavar": "mnist|fashion-mnist|PATH",
                          "help": "mnist, fashion-mnist, a folder of images (one subfolder per "
                          f"class, or none), or a .npz/.npy file (default: mnist{runs})"}),
        (("--data-dir",), {"help": "folder with the IDX files or mnist.npz (skips downloads)"}),
        (("--image-size",), {"metavar": "HxW",
                             "help": "resize images to HxW, e.g. 32x32, or one number for "
                             "squares (default: 28x28 for image folders, else the data's own "
                             f"size{runs})"}),
        (("--val-fraction",), {"type": float, "metavar": "F",
                               "help": "share held out for validation from data without a test "
                               f"split (default: 0.1{runs})"}),
        (("--strict",), {"action": "store_true", "help": "stop at the first unreadable file of "
                         "an image folder (default: skip it, warn)"}),
    ]  # fmt: skip


def _split(default: str):
    return (("--split",), {"choices": ("train", "test"), "default": default, "type": lower,
                           "help": f"training or test images (default: {default})"})  # fmt: skip


def _commands() -> dict:
    """name -> (help, function, arguments, config options): the whole command line."""
    presets = ", ".join(config.PRESETS)
    train = [
        (("--name",), {"help": "run name (default: <preset>-<date>-<time>, then -2, -3 "
                                "... when taken)"}),
        (("--preset",), {"metavar": "NAME", "type": lower,
                         "help": f"a named config ({presets}; default: article, the article's "
                         "model and recipe); options given on the command line override it"}),
        (("--no-evaluate",), {"action": "store_true", "help": "skip the final evaluation.json"}),
        (("--runs-dir",), {"help": "folder of run folders (default: runs)"}),
        (("--overwrite",), {"action": "store_true",
                            "help": "replace an existing run (a folder holding a deepae run, "
                                    "not a link)"}),
        (("--resume",), {"metavar": "RUN", "help": "continue a stopped run from its checkpoint"}),
        (("--nproc",), {"type": int, "metavar": "N", "help": "train data-parallel in N processes "
                        "on this machine, through torchrun (default: 1; docs/scale.md)"}),
        _INDICES, (("--no-progress",), {"action": "store_true", "help": "no progress bar"}),
        (("--threads",), {"metavar": "N", "help": "CPU threads while training, or auto (default: "
                          "$DEEPAE_THREADS, else auto: 1 for small steps, all cores for big)"}),
        _PAIRS, *_data_args(),
    ]  # fmt: skip
    return {
        "train": ("train a model and write a run folder", cmd_train, train,
                  MODEL_OPTIONS + TRAIN_OPTIONS),
        "summary": ("print the Keras-style model summary", cmd_summary, [
            (("run",), {"nargs": "?", "help": "a run folder (default: the article's model)"}),
            (("--preset",), {"metavar": "NAME", "type": lower,
                             "help": f"a named config ({presets})"}),
        ], MODEL_OPTIONS),
        "encode": ("write the latent codes of a dataset split", cmd_encode, [
            _RUN, (("--out",), {"help": "output .csv or .npy (default: RUN/codes-SPLIT.csv)"}),
            _split("train"), *_data_args(),
        ], []),
        "decode": ("turn latent points into images", cmd_decode, [
            _RUN, (("points",), {"nargs": "+", "metavar": "X,Y",
                                 "help": "latent coordinates, one number per latent unit: "
                                 "e.g. 0,5 3,1 for a 2-D latent space"}),
            (("--out",), {"help": "output .png or .npy (default: ./decoded.png)"}),
        ], []),
        "reconstruct": ("originals vs reconstructions figure", cmd_reconstruct, [
            _RUN, _INDICES, _split("train"),
            (("--out",), {"help": "output .png (default: RUN/reconstructions-SPLIT.png)"}),
            *_data_args(),
        ], []),
        "plot": ("redraw the figures, explorer and report of a run", cmd_plot,
                 [_RUN, _INDICES, _PAIRS, *_data_args()], []),
        "explore": ("write the interactive latent-space explorer", cmd_explore, [
            _RUN, (("--out",), {"help": "output .html (default: RUN/explorer.html)"}),
            (("--points",), {"type": int, "default": 10000,
                             "help": "training codes in the scatter, at most all of them "
                                     "(default: 10000)"}),
            (("--open",), {"action": "store_true", "help": "open the page in your browser"}),
            *_data_args(),
        ], []),
        "evaluate": ("metrics of a run beside PCA: evaluation.json", cmd_evaluate,
                     [_RUN, _split("test"), *_data_args()], []),
        "data": ("fetch, inspect or pack datasets", cmd_data, [
            (("action",), {"choices": ("fetch", "info", "pack"), "type": lower,
                           "help": "fetch into the cache, describe it, or pack SOURCE into "
                           "OUT.npy (uint8, memory-mapped by training; labels beside it)"}),
            (("operands",), {"nargs": "*", "metavar": "SOURCE OUT.npy",
                             "help": "pack: what to pack (as --dataset takes it) and where"}),
            *_data_args(""),
        ], []),
    }  # fmt: skip


EPILOGS = {
    "train": """environment:
  DEEPAE_THREADS=N|auto  CPU threads while training (as --threads; README "Speed")
  DEEPAE_NATIVE=auto|0|1 the compiled float32 step: when it builds (auto), never (0), or
                         fail unless it loads (1); it is built once, ~30 s, on first use
  DEEPAE_NATIVE_DIR=DIR  where the compiled step is kept (default: <cache>/native)
  DEEPAE_CUDA_GRAPH=0    on a GPU, run steps one kernel at a time instead of as a graph
  DEEPAE_TRITON=0        on a GPU, PyTorch's step instead of the Triton kernels written
                         for the article's shape of net (README "GPU")
  DEEPAE_CACHE=DIR       datasets, neighbour graphs and more (default: ~/.cache/deepae)""",
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="deepae",
        description="Train, look into and use dense autoencoders on image data. "
        "`deepae train` reproduces the article's 784-32-2-32-784 MNIST autoencoder.",
    )
    parser.add_argument("--version", action="version", version=f"deepae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (text, func, arguments, options) in _commands().items():
        p = sub.add_parser(name, help=text, epilog=EPILOGS.get(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        for names, kwargs in arguments:
            p.add_argument(*names, **kwargs)
        _add_config_options(p, options)
        p.set_defaults(func=func)
    return parser


def _add_config_options(p: argparse.ArgumentParser, options) -> None:
    defaults = {
        **config.ModelConfig.__dataclass_fields__,
        **config.TrainConfig.__dataclass_fields__,
    }
    for flag, field, kind, text in options:
        parse = {"ints": ints, "floats": floats, str: lower}.get(kind, kind)
        default = defaults[field].default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        shown = "" if default is None else f" (default: {default})"
        # default=None: an option the user did not give leaves the config's value alone.
        p.add_argument(flag, dest=field, type=parse, default=None, help=text + shown)


# -- commands --------------------------------------------------------------------------------


def cmd_train(args) -> int:
    from deepae import native, run

    # not in (None, False): --name "" is given too, and cannot be honoured either.
    given = [f"--{k.replace('_', '-')}" for k in ("preset", "name", "runs_dir", "overwrite")
             if getattr(args, k) not in (None, False)]  # fmt: skip
    if args.resume and given:
        raise ConfigError(f"--resume continues the saved run in its folder; leave out {given[0]}")
    asked = threads.requested(args.threads)  # --threads, else DEEPAE_THREADS: checked first
    if args.threads is not None:  # the variable reaches the library and a run's workers
        os.environ[threads.ENV] = str(asked or "auto")
    processes = args.nproc if isinstance(args.nproc, int) and args.nproc > 1 else 1
    # Said once, by the command the user ran: not again by each process it launches.
    if not distributed.launched() and (
        warning := asked and threads.oversubscribed(asked, processes)
    ):
        _info(f"warning: {warning}")
    native.mode()  # DEEPAE_NATIVE checked before a run folder is made
    if args.nproc not in (None, 1) and not distributed.launched():  # else torchrun started us
        return distributed.launch(args.nproc, args.argv, warn=_info)
    with distributed.joined() as world, run.StopOnSignal() as stopper:
        common = dict(log=_train_log, progress=not args.no_progress, stop=stopper.requested,
                      evaluate=not args.no_evaluate, pairs=args.pairs, indices=_indices(args),
                      data_options=_data_options(args))  # fmt: skip
        options = _fields(args, MODEL_OPTIONS + TRAIN_OPTIONS)
        if args.resume:
            result = run.resume(args.resume, **common, **options)
        else:
            result = run.start(args.runs_dir or "runs", args.name, preset=args.preset,
                               overwrite=args.overwrite, **common, **options)  # fmt: skip
    if world.rank:  # a data-parallel run's other ranks print nothing (deepae.distributed)
        return 128 + stopper.signum if result.interrupted else 0
    return _report_run(result, stopper, args)


def _report_run(result, stopper, args) -> int:
    """`deepae train`'s last words on a run, and its exit code."""
    from deepae import run

    if result.interrupted:
        _info(
            f"{stopper.name}: training stopped, checkpoint saved in {result.folder}/; "
            f"continue with: deepae train --resume {result.folder}"
        )
        return 128 + stopper.signum
    _say(f"run saved to {result.folder}/")
    for f in result.files:
        _say(f"  {f}")
    if result.metrics.get("degenerate") and not args.resume:
        retry = run.retry_command(result.folder, args.argv)
        _info(f"warning: the latent space collapsed; train again with: {retry}")
    if stopper.signum:  # it came after the last step: the run was finished all the same
        _info(f"{stopper.name} came after training had ended; the run was finished and saved")
    return 0


def cmd_summary(args) -> int:
    from deepae import model, run

    # Given is not None: --latent-size 0 or --preset "" is given too, and cannot be honoured.
    given = [f"--{f.replace('_', '-')}" for f, v in _fields(args, MODEL_OPTIONS).items()
             if v is not None]  # fmt: skip
    if args.run and (given or args.preset is not None):
        raise ConfigError(f"{', '.join(given) or '--preset'} cannot change a saved model; leave "
                     "it out, or leave out RUN to see another configuration")  # fmt: skip
    if args.run:
        net = run.load_run(args.run).net
    else:
        preset = config.DEFAULT_PRESET if args.preset is None else args.preset
        model_config, _ = config.resolve(preset, **_fields(args, MODEL_OPTIONS))
        net = model.AutoencoderNet(model_config)
    print(model.summary(net))
    return 0


def cmd_encode(args) -> int:
    from deepae import run

    out = run.output_path(args.out, args.run, f"codes-{args.split}.csv", (".csv", ".npy"))
    with run.reading(args.run):  # not beside a training that changes the model
        ae, loaded = run.load_run_data(args.run, log=_info, **_data_options(args))
        x, y = loaded.split(args.split)
        codes = ae.encode(x)  # (N, latent)
        run.write_codes(out, codes, y)
    print(f"wrote {len(codes)} codes of shape {codes.shape[1:]} to {out}")
    return 0


def cmd_decode(args) -> int:
    from deepae import run

    out = run.output_path(args.out, ".", "decoded.png", (".png", ".npy"))  # not into RUN
    ae = run.load_run(args.run)
    points = [parse_point(p, ae.model_config.latent_size) for p in args.points]
    run.write_decoded(out, ae, points)
    print(f"decoded {len(points)} point(s) to {out}")
    return 0


def cmd_reconstruct(args) -> int:
    from deepae import run

    out = run.output_path(args.out, args.run, f"reconstructions-{args.split}.png", (".png",))
    with run.reading(args.run):
        ae, loaded = run.load_run_data(args.run, log=_info, **_data_options(args))
        x, y = loaded.split(args.split)
        fig = run.reconstruction_figure(ae, x, y, loaded.class_names, _indices(args),
                                        args.split)  # fmt: skip
        run.save_figure(fig, out)
    print(f"wrote {out}")
    return 0


def cmd_plot(args) -> int:
    from deepae import run

    paths = run.redraw(args.run, indices=_indices(args), pairs=args.pairs, log=_info,
                       **_data_options(args))  # fmt: skip
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_explore(args) -> int:
    import webbrowser

    from deepae import run
    from deepae.explorer import write_explorer

    out = run.output_path(args.out, args.run, "explorer.html", (".html",))
    with run.reading(args.run):  # not beside a training that changes the model
        ae, loaded = run.load_run_data(args.run, log=_info, **_data_options(args))
        path = write_explorer(args.run, ae, loaded, out=out, points=args.points)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.open and not webbrowser.open(path.resolve().as_uri()):
        _info(f"no browser could be opened; open {path.resolve()} in one")
    return 0


def cmd_evaluate(args) -> int:
    from deepae import run, tables

    result, path = run.evaluate_run(args.run, split=args.split, log=_info, **_data_options(args))
    print(tables.format_table(result))
    print(f"wrote {path}")
    return 0


def cmd_data(args) -> int:
    from deepae import data

    print(data.data_command(args.action, *args.operands, **_data_options(args), log=_info,
                            progress=True))  # fmt: skip
    return 0


# -- helpers ---------------------------------------------------------------------------------


def _indices(args) -> list[int] | None:
    from deepae.run.figures import parse_indices

    return None if args.indices is None else parse_indices(args.indices)


def _fields(args, options) -> dict:
    return {field: getattr(args, field) for _, field, _, _ in options}


def _data_options(args) -> dict:
    """The data options given on the command line (None: the run's, or the default)."""
    from deepae.data import DATASETS

    dataset = args.dataset
    if dataset and dataset.lower() in DATASETS and not os.path.exists(dataset):
        dataset = dataset.lower()  # --dataset MNIST, as other choices: case-insensitive
    return {"dataset": dataset, "data_dir": args.data_dir, "image_size": args.image_size,
            "val_fraction": args.val_fraction, "strict": args.strict}  # fmt: skip


def _message(e, command: str) -> str:
    """A library error in the command line's terms: the field it names becomes its flag,
    where `command` has that flag."""
    flag = "--" + (e.field or "").replace("_", "-")
    _, _, arguments, options = _commands()[command]
    known = {n for names, _ in arguments for n in names} | {option[0] for option in options}
    return f"{e} ({flag})" if e.field and flag in known and flag not in str(e) else str(e)


def _info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _train_log(message: str) -> None:
    """A training run's lines: warnings on stderr, as other commands give them; the rest
    (epoch lines, tables, files written) on stdout."""
    (_info if message.startswith("warning: ") else _say)(message)


def _say(message: str) -> None:
    """Print a line of a long job's output. If stdout was closed (`deepae train | head -1`),
    the rest of the output is dropped and the work goes on: a run is not lost to a pipe."""
    try:
        print(message, flush=True)
    except BrokenPipeError:
        _drop_stdout()


def _drop_stdout() -> None:
    # Python's advice for a closed pipe: point stdout at /dev/null, so that neither later
    # prints nor the flush at exit raise again (docs: signal, "Note on SIGPIPE").
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
