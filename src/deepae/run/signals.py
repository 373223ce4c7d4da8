"""Stopping a run cleanly on a signal, so that a Ctrl-C or a `kill` leaves a resumable run."""

from __future__ import annotations

import signal


class StopOnSignal:
    """While active, Ctrl-C (SIGINT) or SIGTERM ask training to stop after the current step,
    so the run can save a checkpoint; a second signal abandons at once (KeyboardInterrupt).

        with StopOnSignal() as stopper:
            result = train_run(..., stop=stopper.requested)
        if stopper.signum: ...   # which signal stopped it (0: none)
    """

    def __init__(self):
        self.signum = 0

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def requested(self) -> bool:
        return self.signum != 0

    def _handle(self, signum, frame) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
