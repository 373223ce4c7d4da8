"""Keras' fit vocabulary: the `History` that `Autoencoder.fit` returns and the callbacks it
calls, `EarlyStopping` and `CSVLogger` built in.

A callback is any object with some of `on_train_begin(logs)`, `on_epoch_end(epoch, logs)`
and `on_train_end(logs)`; fit sets its `model` attribute to the Autoencoder and its `params`
to the History's (epochs, steps, validation_freq, do_validation) first (through
`set_model` and `set_params` where it has them, as Keras does). `epoch` is 0-based and
counts every epoch the model has trained, and `logs` is {"loss": ..., "val_loss": ...}
(val_loss in the epochs that validate). A callback ends training after the current epoch
by setting `model.stop_training = True`, as Keras' do.
"""

from __future__ import annotations

import csv
import math
import numbers
from pathlib import Path
from typing import Any

from deepae.errors import ConfigError


class History:
    """What `Autoencoder.fit` returns, as Keras' History: `history` maps 'loss' (and
    'val_loss') to one value per epoch of that call, `epoch` lists those epochs (0-based,
    continuing across fits), `params` says how fit ran, `model` is the Autoencoder.
    `records` holds the full `deepae.train.EpochRecord`s (timings included)."""

    def __init__(self, model: Any = None, params: dict[str, Any] | None = None):
        self.model = model
        self.params = dict(params or {})
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.records: list[Any] = []

    def add(self, record: Any) -> dict[str, float]:
        """Append one EpochRecord; returns its logs ({"loss", "val_loss"?})."""
        logs = epoch_logs(record)
        self.epoch.append(record.epoch - 1)
        self.records.append(record)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        return logs

    def __repr__(self) -> str:
        return f"History(epoch={self.epoch}, history={self.history})"

    # deepae's own, not Keras': the History is also the sequence of its EpochRecords.
    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, i):
        return self.records[i]


def epoch_logs(record: Any) -> dict[str, float]:
    """Keras' logs of an epoch: {"loss": ...} and "val_loss" when it was validated."""
    logs = {"loss": record.loss}
    if record.val_loss is not None:
        logs["val_loss"] = record.val_loss
    return logs


class Callback:
    """Base class with every hook doing nothing; subclass and override what you need."""

    model: Any = None
    params: dict[str, Any] = {}  # noqa: RUF012 (replaced, never changed in place)

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        """Called once when fit starts."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Called after each epoch: `epoch` 0-based, `logs` its loss (and val_loss)."""

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        """Called once when fit ends, with the last epoch's logs."""


class EarlyStopping(Callback):
    """Stop when `monitor` ('val_loss' or 'loss') has not improved for `patience` epochs, as
    keras.callbacks.EarlyStopping does (keras/src/callbacks/early_stopping.py, Keras 3):
    an epoch improves when it beats the best by more than `min_delta` (taken as abs()),
    downwards in `mode` 'min' ('auto': 'min' for a loss), upwards in 'max'. With a
    `baseline`, an improvement restarts the patience count only if it also beats the
    baseline: training stops at an epoch that does not improve once `patience` epochs
    have passed since the last that beat both (or since training began). Epochs before
    `start_from_epoch` (0-based, counted as fit counts them) are not watched.
    `restore_best_weights` puts back the weights of the best epoch when training ends,
    stopped early or not, as Keras 3's does (Keras 2 did only when it stopped).
    `stopped_epoch` and `best_epoch` are 0-based epochs (0: did not stop)."""

    def __init__(self, monitor: str = "val_loss", *, min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):  # fmt: skip
        if monitor not in ("loss", "val_loss"):
            raise ConfigError(f"monitor must be 'loss' or 'val_loss', got {monitor!r}",
                              field="monitor")  # fmt: skip
        if mode not in ("auto", "min", "max"):  # Keras warns and takes 'auto'; a typo, here
            raise ConfigError(f"mode must be 'auto', 'min' or 'max', got {mode!r}", field="mode")
        for name, value in (("patience", patience), ("start_from_epoch", start_from_epoch)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}",
                                  field=name)  # fmt: skip
        optional = {"baseline": baseline} if baseline is not None else {}
        for name, value in {"min_delta": min_delta, **optional}.items():
            if not _finite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}", field=name)
        self.monitor, self.mode, self.verbose = monitor, mode, verbose
        self.min_delta = abs(float(min_delta))  # Keras takes abs(min_delta)
        self.baseline = None if baseline is None else float(baseline)
        self.patience, self.start_from_epoch = int(patience), int(start_from_epoch)
        self.restore_best_weights = restore_best_weights
        self.on_train_begin()

    def set_params(self, params: dict[str, Any]) -> None:
        # fit gives every callback its params before any on_train_begin: refused here, a
        # fit leaves the other callbacks untouched (a CSVLogger's file not yet truncated).
        self.params = params
        self._check_monitored()

    def _check_monitored(self) -> None:
        # A fit without validation can never give val_loss: say so before it trains.
        if self.monitor == "val_loss" and self.params.get("do_validation") is False:
            raise self._unmonitored()

    def on_train_begin(self, logs=None) -> None:
        self._check_monitored()
        # Each fit starts afresh, as Keras' "Allow instances to be re-used" means to.
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best = math.inf if self._sign > 0 else -math.inf
        self.best_weights = None

    @property
    def _sign(self) -> int:
        # 1: lower is better (Keras' ops.less); -1: higher is (ops.greater). 'auto' is
        # 'min': both quantities watched here are losses.
        return -1 if self.mode == "max" else 1

    def _improves(self, current: float, reference: float) -> bool:
        # Keras: monitor_op(current - min_delta, reference), min_delta negated for 'min'.
        return self._sign * (current + self._sign * self.min_delta) < self._sign * reference

    def _unmonitored(self) -> ConfigError:
        return ConfigError(
            f"EarlyStopping monitors {self.monitor!r}, which this fit does not compute; "
            "give fit validation_data (or validation_split), or monitor 'loss'",
            field="monitor",
        )

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        current = (logs or {}).get(self.monitor)
        freq = self.params.get("validation_freq", 1)
        if current is None and (epoch + 1) % freq:  # not a validation epoch: as Keras, wait
            return
        if current is None:
            raise self._unmonitored()
        if epoch < self.start_from_epoch:  # Keras' warm-up: not watched at all
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # Keras restarts the patience only when the epoch beats the baseline too.
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None) -> None:
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        # Keras 3 restores here, whether or not training stopped early
        # (keras/src/callbacks/early_stopping.py, EarlyStopping.on_train_end).
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")  # fmt: skip
            self.model.set_weights(self.best_weights)


def _finite(value: Any) -> bool:
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return real and math.isfinite(value)


class CSVLogger(Callback):
    """Write one CSV row per epoch to `filename`, as keras.callbacks.CSVLogger does:
    columns epoch (0-based), loss, val_loss, and "NA" where an epoch has no value (one
    that did not validate), as Keras writes (keras/src/callbacks/csv_logger.py); `append`
    continues an existing file (no second header). Each row is flushed as soon as its
    epoch ends."""

    def __init__(self, filename: str | Path, separator: str = ",", append: bool = False):
        self.filename, self.separator, self.append = Path(filename), separator, append
        self._file = self._writer = self._keys = None
        self._header = True

    def on_train_begin(self, logs=None) -> None:
        has_rows = self.append and self.filename.is_file() and self.filename.stat().st_size
        self.on_train_end()  # a file left open by an earlier fit is closed first, as in Keras
        self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115
        # Each fit chooses its columns afresh; appended rows go under the file's header.
        self._writer, self._keys, self._header = None, None, not has_rows

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        if self._file is None:  # called outside fit: open as fit would
            self.on_train_begin()
        if self._keys is None:
            # A fit that validates every few epochs has no val_loss in the first: the
            # column is there all the same, as in Keras' CSVLogger (appending too).
            validates = getattr(self, "params", {}).get("do_validation", False)
            self._keys = sorted({*logs, *(["val_loss"] if validates else [])})
        if self._writer is None:
            self._writer = csv.writer(self._file, delimiter=self.separator)
            if self._header:
                self._writer.writerow(["epoch", *self._keys])
        keys = self._keys
        self._writer.writerow([epoch, *(repr(logs[k]) if k in logs else "NA" for k in keys)])
        self._file.flush()

    def on_train_end(self, logs=None) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None


class CallbackList:
    """The callbacks of one fit: each gets `model` first, then every hook it has is called
    in order (a hook it lacks is skipped, so any object with some of them will do)."""

    def __init__(self, callbacks: Any, model: Any, params: dict[str, Any] | None = None):
        if callbacks is None:
            callbacks = []
        if not isinstance(callbacks, list | tuple):
            raise ConfigError(f"callbacks must be a list of callbacks, got a "
                              f"{type(callbacks).__name__}", field="callbacks")  # fmt: skip
        self.callbacks = list(callbacks)
        params = {} if params is None else params
        for cb in self.callbacks:
            if hasattr(cb, "set_model"):
                cb.set_model(model)
            else:
                cb.model = model
            if hasattr(cb, "set_params"):
                cb.set_params(params)
            else:
                cb.params = params

    def call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            method = getattr(cb, hook, None)
            if method is not None:
                method(*args)
