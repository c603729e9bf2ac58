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

    def install(self) -> StopFlag:
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

    def __enter__(self) -> StopFlag:
        global _active
        _active = self
        return self.install()

    def __exit__(self, *exc) -> None:
        global _active
        _active = None
        self.restore()


_active: StopFlag | None = None
_held: set[str] = set()


def hold(point: str) -> None:
    """Test hook, free when unused: when NNCLI_TEST_HOLD equals `point`, write the file named by NNCLI_TEST_HOLD_FILE
    (if set) with this process's pid, then wait until the active StopFlag has seen a signal (or 60 s pass)."""
    import os
    import time

    if os.environ.get("NNCLI_TEST_HOLD") != point or point in _held:
        return
    _held.add(point)
    marker = os.environ.get("NNCLI_TEST_HOLD_FILE")
    if marker:
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (_active is not None and _active.signal):
        time.sleep(0.01)
