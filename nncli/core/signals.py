"""SIGINT/SIGTERM handling: every signal after a command starts ends it with exit code 130, cleanly.

One handler serves both signals. The CLI installs it before it parses the command line (install()) and it stays
installed until the process exits, so no signal ever reaches Python's default SIGINT handler or SIG_DFL while a
command runs, unwinds, reports or exits. What it does depends on the moment:

- a job with safe points is running (a StopFlag is active): the first signal sets the flag, which the job checks at
  its safe points; a second one raises KeyboardInterrupt at once ("again to stop at once");
- otherwise: KeyboardInterrupt at once, for SIGTERM as for Ctrl-C, so cleanup code (``except``/``finally``) runs;
- inside a deferred() block (a few renames that must happen together): never raises; an interruption due there is
  raised when the block ends;
- once the command is stopping (a KeyboardInterrupt was raised, a StopFlag was acted on) or the process is exiting
  (finish()): the signal is only recorded, so cleanup and the error report are never cut short by a second signal.

finish() turns any signal seen into exit code 130. The handler does no buffered I/O (it writes its one line with
os.write): a handler that prints through sys.stderr while the main thread is writing there fails with RuntimeError
(reentrant call), and the job would report a bogus error instead of the interruption.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    def __init__(self):
        self.reset()
        self.owned = False          # install() was called: the handler stays until the process exits
        self.saved: dict = {}       # handlers to put back when a StopFlag used outside the CLI is restored

    def reset(self) -> None:
        self.received: str | None = None    # the first signal seen
        self.count = 0                      # signals seen
        self.stopping = False               # KeyboardInterrupt raised, or exiting: further signals only recorded
        self.deferred = 0
        self.pending = False                # an interruption due when the deferred block ends
        self.flags: list[StopFlag] = []


_state = _State()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _say(message: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        with contextlib.suppress(OSError):
            os.write(2, f"warning: {message}\n".encode("utf-8", "replace"))


def _handle(signum, frame) -> None:
    s = _state
    name = signal.Signals(signum).name
    s.received, s.count = s.received or name, s.count + 1
    if s.stopping:
        return
    flag = s.flags[-1] if s.flags else None
    if flag is not None and not flag.signal:
        flag.signal = name
        _say(f"{name} received: {flag.message} (again to stop at once)")
        return
    if s.deferred:
        s.pending = True
        return
    s.stopping = True
    raise KeyboardInterrupt


def _set_handlers() -> None:
    for sig in SIGNALS:
        old = signal.signal(sig, _handle)
        if old is not _handle:
            _state.saved.setdefault(sig, old)


def install() -> None:
    """For the CLI, before anything else: SIGINT and SIGTERM go to nncli's handler until the process exits."""
    if not _main_thread():
        return
    _state.reset()
    _state.owned = True
    _set_handlers()


def received() -> str | None:
    """The name of the first signal this command received, if any."""
    return _state.received


def check() -> None:
    """A safe point outside any StopFlag (between the steps of a pipeline): stop here if a signal came."""
    if _state.received:
        _state.stopping = True
        raise KeyboardInterrupt


def job_done() -> None:
    """The command's job has ended, whatever its outcome: a signal from now on is recorded (finish() turns it into
    exit code 130) and never cuts short the report, the error message or the result being printed."""
    _state.stopping = True


def finish(code: int) -> int:
    """The exit code to leave with (130 once any signal was received). From here on signals are ignored: the
    process is exiting, and the interpreter's shutdown would otherwise put SIG_DFL back (a SIGTERM then kills it)."""
    _state.stopping = True
    if _main_thread() and _state.owned:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    return 130 if _state.received else code


@contextlib.contextmanager
def deferred():
    """A block no signal interrupts (say, two renames that swap a directory into place); an interruption that came
    meanwhile is raised as KeyboardInterrupt when it ends (an active StopFlag keeps just its flag, as usual)."""
    s = _state
    s.deferred += 1
    try:
        yield
    finally:
        s.deferred -= 1
    if not s.deferred and s.pending and not s.stopping:
        s.pending = False
        s.stopping = True
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block, SIGTERM raises KeyboardInterrupt like Ctrl-C does, so cleanup code runs for both."""
    if not _main_thread() or _state.owned:
        yield          # the CLI's handler does exactly this already
        return
    old = {sig: signal.signal(sig, _handle) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


class StopFlag:
    """SIGINT/SIGTERM set a flag that the job checks at safe points (raising from a signal handler in the middle of
    native code can abort the process instead of cleaning up); a second signal stops at once."""

    def __init__(self, message: str):
        self.signal: str | None = None
        self.message = message
        self._installed = False

    def install(self) -> StopFlag:
        if _main_thread() and not self._installed:
            if not _state.owned and not _state.flags:   # outside the CLI (a library call, a test): ours until restore()
                _state.reset()
                _set_handlers()
            self.signal = self.signal or _state.received   # asked to stop before this job began: stop at its first safe point
            _state.flags.append(self)
            self._installed = True
        return self

    def check(self) -> None:
        if self.signal:
            _state.stopping = True   # the job stops here: its cleanup is not cut short by another signal
            raise KeyboardInterrupt

    def restore(self) -> None:
        """The job is over. Under the CLI the handler stays (a signal from now on interrupts at once); outside it, the
        handlers found at install() are put back once no StopFlag is left."""
        if not self._installed:
            return
        self._installed = False
        if self.signal:               # the job saw its signal and is ending: what follows (reports) runs to the end
            _state.stopping = True
        if self in _state.flags:
            _state.flags.remove(self)
        if not _state.owned and not _state.flags and _main_thread():
            for sig, old in _state.saved.items():
                signal.signal(sig, old)
            _state.saved = {}

    def __enter__(self) -> StopFlag:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()


_held: set[str] = set()


def hold(point: str) -> None:
    """Test hook, free when unused: when `point` is one of the comma-separated names in NNCLI_TEST_HOLD, write
    "<pid> <point>" to the file named by NNCLI_TEST_HOLD_FILE (if set), then wait until one more signal has arrived
    (or 60 s pass), so a test interrupts the process at exactly this moment. The first time at each point only."""
    import time

    if point not in os.environ.get("NNCLI_TEST_HOLD", "").split(",") or point in _held:
        return
    _held.add(point)
    seen = _state.count
    marker = os.environ.get("NNCLI_TEST_HOLD_FILE")
    if marker:
        with open(marker + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {point}")
        os.replace(marker + ".tmp", marker)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _state.count == seen:
        time.sleep(0.01)
