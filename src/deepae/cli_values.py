"""Parsers of command-line values: coordinates, comma-separated lists, case-insensitive
names. Each raises what argparse or the CLI turns into one line and exit 2."""

from __future__ import annotations

import argparse

from deepae.errors import ConfigError

# The largest float32 (numpy.finfo(numpy.float32).max): the model decodes float32 codes,
# and a larger coordinate would become infinity there.
FLOAT32_MAX = 3.4028234663852886e38


def positive_int(text: str) -> int:
    """An argparse type (the scripts' counts): a whole number >= 1, refused in one line
    before any work."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def parse_point(text: str, size: int) -> list[float]:
    """'0,5' -> [0.0, 5.0], checked against the latent size and float32's range."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != size or not all(abs(v) <= FLOAT32_MAX for v in values):  # NaN too
        example = ",".join(["0.5"] * size)
        raise ConfigError(
            f"coordinate {text!r} is not {size} comma-separated finite numbers (e.g. {example}; "
            f"at most {FLOAT32_MAX:.3g} in size, float32's range)"
        )
    return values


def listing(kind, what: str, count: int | None = None):
    """A parser of comma-separated values of `kind` ('3,18'), `count` of them if given."""

    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            values = ()
        if not values or (count is not None and len(values) != count):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return values

    return parse


ints = listing(int, "comma-separated integers")
floats = listing(float, "comma-separated numbers")
pair = listing(int, "two indices I,J such as 3,18", 2)


def lower(text: str) -> str:
    return text.lower()  # choices are case-insensitive: --optimizer Adam is adam
