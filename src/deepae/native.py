"""The fused engine's step compiled for this machine (`native_step.cpp`), built on first use.

Why: the article's step is ~30 small PyTorch calls and a loss of ~11 passes over the
output; made from C++, with the loss as one vectorised pass, it runs ~1.4x faster
(docs/benchmarks.md). `FusedDenseEngine` uses it where it applies (float32 weights on the
CPU, with float32 or mixed bfloat16 products) and PyTorch's Python calls everywhere else.

Built with PyTorch's own `torch.utils.cpp_extension` (a C++ compiler and ninja; ~30 s,
once per machine, PyTorch and Python version), into a temporary folder, then moved into
`$DEEPAE_NATIVE_DIR` (default `<deepae cache>/native`) under a name that hashes the
source, the flags and the versions: a half-written build is never loaded, two processes
building at once both end with a whole file, and a new PyTorch gets a fresh build. Where
the build fails (no compiler), training says so once and uses the Python step; on CPUs
it is not written for (not x86-64 with AVX2) it uses the Python step without a word.
`DEEPAE_NATIVE`: `0` never use it, `1` fail unless it loads, unset or `auto` use it when
it builds.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

from deepae.data._base import cache_root
from deepae.errors import ConfigError

ENV = "DEEPAE_NATIVE"  # 0 | 1 | auto
DIR_ENV = "DEEPAE_NATIVE_DIR"  # where the built module is kept
NAME = "deepae_native_step"
SOURCE = Path(__file__).with_name("native_step.cpp")
# AVX2 code runs on every x86-64 CPU PyTorch vectorises for (its AVX2 and AVX512 levels);
# CPU_CAPABILITY picks ATen's matching Vectorized<float>, whose exp is PyTorch's own.
FLAGS = ("-O3", "-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2")
# at::parallel_for runs on PyTorch's OpenMP threads only in code compiled with OpenMP; without
# it, it runs serially. On Linux GCC's libgomp is the one PyTorch loads (one runtime, its
# thread count); elsewhere (Apple's clang has no -fopenmp), or where the compiler cannot
# build an OpenMP program (clang without libomp), the loss runs on one thread.
OPENMP = ("-fopenmp",) if sys.platform == "linux" and torch.backends.openmp.is_available() else ()
ACTIVATIONS = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}  # native_step.cpp's codes
LOSSES = {("bce", True): 0, ("mse", True): 1, ("mse", False): 2}  # (loss, sigmoid output?)


class BuildError(RuntimeError):
    """Why the step cannot be built here, in words a user can act on."""


def mode(environ=None) -> str:
    """DEEPAE_NATIVE as one of '0', '1', 'auto'; anything else is a ConfigError."""
    value = (os.environ if environ is None else environ).get(ENV, "auto").strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value not in ("0", "1"):
        raise ConfigError(f"{ENV}={value!r} is not 0, 1 or auto", field=ENV)
    return value


def unsupported() -> str | None:
    """Why this machine cannot run the compiled step, or None."""
    if platform.machine().lower() not in ("x86_64", "amd64") or sys.platform == "win32":
        return f"built for x86-64 Linux and macOS only, not {sys.platform} {platform.machine()}"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return f"needs a CPU with AVX2 (PyTorch reports {capability})"
    return None


def folder() -> Path:
    """Where built modules are kept: $DEEPAE_NATIVE_DIR, else <deepae cache>/native."""
    explicit = os.environ.get(DIR_ENV)
    return Path(explicit).expanduser() if explicit else cache_root() / "native"


def build_key() -> str:
    parts = [SOURCE.read_bytes(), repr(FLAGS + OPENMP).encode(), torch.__version__.encode(),
             sys.version.encode(), platform.machine().encode()]  # fmt: skip
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:20]


@functools.cache
def load() -> ModuleType | None:
    """The compiled module, built if need be; None where it is off, cannot exist (not
    x86-64 with AVX2: silently) or failed to build (then a line on stderr says why, once
    per process: a compiler would fix it). DEEPAE_NATIVE=1 turns either into a
    ConfigError."""
    wanted = mode()
    if wanted == "0":
        return None
    why = unsupported()
    if why is None:
        try:
            return _load_or_build(folder() / f"{NAME}-{build_key()}.so")
        except BuildError as e:
            why = str(e)
        except Exception as e:  # a compiler's or loader's failure, whatever its type
            why = f"{type(e).__name__}: {reason(str(e))}"
    elif wanted == "auto":
        return None
    if wanted == "1":
        raise ConfigError(f"{ENV}=1 but the native step is unavailable ({why})", field=ENV)
    sys.stderr.write(f"deepae: training uses the Python step; the native one is unavailable "
                     f"({why}); {ENV}=0 skips trying\n")  # fmt: skip
    return None


def _load_or_build(path: Path) -> ModuleType:
    if path.is_file():
        try:
            return _import(path)
        except ImportError:
            pass  # damaged or foreign: built again below, and replaced
    compiler = os.environ.get("CXX", "c++")  # what cpp_extension and ninja will run
    if shutil.which((shlex.split(compiler) or [""])[0]) is None:
        raise BuildError(f"no C++ compiler: {compiler} is not on PATH; install g++ or clang++, "
                         "or set CXX")  # fmt: skip
    try:  # the build's own folder beside the result, so that the move is a rename
        path.parent.mkdir(parents=True, exist_ok=True)
        building = tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-")
    except OSError as e:  # read-only, a file, a missing drive
        raise BuildError(f"cannot build in {path.parent} ({e.strerror}: {e.filename}); "
                         f"set {DIR_ENV} to a folder you can write to") from e  # fmt: skip
    sys.stderr.write(f"deepae: compiling the native training step for this machine "
                     f"(once, ~30 s) into {path.parent}\n")  # fmt: skip
    start = time.perf_counter()
    from torch.utils import cpp_extension

    with building as tmp, _ninja_on_path():
        openmp = openmp_flags(Path(tmp))
        with warnings.catch_warnings(), _quiet(logging.getLogger(cpp_extension.__name__)):
            warnings.simplefilter("ignore")  # e.g. the compiler's version notices
            built = cpp_extension.load(NAME, [str(SOURCE)], extra_cflags=[*FLAGS, *openmp],
                                       extra_ldflags=list(openmp), build_directory=tmp,
                                       verbose=False)  # fmt: skip
        os.replace(built.__file__, path)  # atomic: a reader sees no file or a whole one
    sys.stderr.write(f"deepae: native step ready in {time.perf_counter() - start:.0f} s\n")
    return built


def reason(message: str) -> str:
    """The line of a failed build's output that says why: the compiler's first error
    ("native_step.cpp:12:10: fatal error: Python.h: No such file or directory"), else the
    last line (ninja's "build stopped: subcommand failed" says only that it failed)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line.lower()]
    return errors[0] if errors else (lines[-1] if lines else "")


@contextlib.contextmanager
def _quiet(logger: logging.Logger):
    """`logger` says only errors for the block: cpp_extension logs its compiler checks
    ("may be ABI-incompatible", a wall of text for a compiler it does not know by name)
    as warnings, and the build's failure, if any, is said in one line anyway."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def openmp_flags(folder: Path) -> tuple[str, ...]:
    """OPENMP where the C++ compiler PyTorch will run ($CXX, else c++) builds and links an
    OpenMP program, else (): a failed probe costs the loss its threads, not the build.
    Probed rather than retried, since a second `cpp_extension.load` of one name in one
    process gets a versioned module name that `_import` would not find."""
    if not OPENMP:
        return ()
    probe = folder / "openmp_probe.cpp"
    probe.write_text("#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
    command = [os.environ.get("CXX", "c++"), *OPENMP, str(probe), "-o", str(folder / "probe")]
    try:
        built = subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        built = False
    return OPENMP if built else ()


@contextlib.contextmanager
def _ninja_on_path():
    """PyTorch runs `ninja` from PATH; the ninja package (a dependency) installs it beside
    the interpreter, which is not on PATH when a virtual environment is not activated."""
    try:
        import ninja
    except ImportError:  # then a system ninja, if any
        yield
        return
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, old])
    try:
        yield
    finally:
        os.environ["PATH"] = old


def _import(path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(NAME, str(path))
    spec = importlib.util.spec_from_file_location(NAME, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
