"""SIGINT/SIGTERM handling: a flag checked at safe points, so cleanup always runs."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block, SIGTERM raises KeyboardInterrupt like Ctrl-C does, so cleanup code runs for both."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class StopFlag:
    """SIGINT/SIGTERM set a flag that the job checks at safe points (raising from a signal handler in the middle of
    native code can abort the process instead of cleaning up); a second signal stops at once."""

    def __init__(self, message: str):
        self.signal = None
        self.message = message
        self._old = {}

    def install(self) -> "StopFlag":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        import signal

        if self.signal:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        from nncli.core import console

        console.warn(f"{self.signal} received: {self.message} (again to stop at once)")

    def check(self) -> None:
        if self.signal:
            raise KeyboardInterrupt

    def restore(self) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
