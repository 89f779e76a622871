"""Stopping a run cleanly on SIGTERM (a scheduler's stop) or Ctrl-C.

Lightning only sets a flag on SIGTERM and turns Ctrl-C into `exit(1)`, so a scheduler could not
stop a slide run and Ctrl-C said nothing. While `stop_on_signals()` is active, both signals raise
`StopRequested` in the main thread; it is a BaseException, so it passes every `except Exception`
(a cohort's per-slide error handling included) and Lightning's own KeyboardInterrupt path. What
was complete stays: finished slides, and every saved batch of the slide in progress.

While batches are being predicted the stop waits for the end of the current batch
(`StopAtBatchEnd`): raised in the middle of receiving a batch from a DataLoader worker, it would
break the worker's hand-over and make it print a traceback. A second signal stops at once.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator


_state = {"defer": False, "pending": None}


class StopRequested(BaseException):
    """SIGTERM or SIGINT arrived; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(signal.Signals(signum).name)

    @property
    def is_interrupt(self) -> bool:
        return self.signum == signal.SIGINT


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Raise `StopRequested` on SIGTERM/SIGINT in this process while the block runs."""
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield
        return
    owner = os.getpid()

    def handler(signum, frame):
        # Forked DataLoader workers inherit this handler: they leave stopping to the main process,
        # which shuts them down as it unwinds.
        if os.getpid() != owner:
            return
        if _state["defer"] and _state["pending"] is None:
            _state["pending"] = signum  # raised by StopAtBatchEnd at the end of this batch
            return
        raise StopRequested(signum)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, handler)
    _state.update(defer=False, pending=None)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _state.update(defer=False, pending=None)


def raise_pending_stop() -> None:
    signum = _state["pending"]
    if signum is not None:
        _state["pending"] = None
        raise StopRequested(signum)


@contextmanager
def stops_at_batch_ends() -> Iterator[None]:
    """While the block runs, a stop signal waits for `raise_pending_stop()` (called after each batch);
    at the block's end a held one is raised. The plain prediction loop's `StopAtBatchEnd`."""
    _state["defer"] = True
    try:
        yield
    finally:
        _state["defer"] = False
    raise_pending_stop()


def stop_at_batch_end_callback():
    """A Lightning callback that holds a stop signal until the batch in progress is done."""
    import lightning as L

    class StopAtBatchEnd(L.Callback):
        def on_predict_start(self, trainer, pl_module) -> None:
            _state["defer"] = True

        def on_predict_batch_end(self, *args, **kwargs) -> None:
            raise_pending_stop()

        def on_predict_end(self, trainer, pl_module) -> None:
            _state["defer"] = False
            raise_pending_stop()

        def teardown(self, trainer, pl_module, stage) -> None:
            _state["defer"] = False

    return StopAtBatchEnd()


def stop_message(command: str, stop: StopRequested) -> str:
    if stop.is_interrupt:
        return f"ldcsf {command}: interrupted; completed work is kept, rerun the same command to continue"
    return (f"ldcsf {command}: stopped by {signal.Signals(stop.signum).name}; completed work is kept, "
            "rerun the same command to continue")
