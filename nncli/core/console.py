"""One stderr console for everything that is not a result: logs, warnings, progress.

stdout carries results only (see cli.emit). Progress bars and colour appear only when stderr is a
terminal; otherwise progress becomes plain periodic log lines that read well in CI logs.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console


@dataclass
class _State:
    quiet: bool = False
    debug: bool = os.environ.get("NNCLI_DEBUG", "") not in ("", "0")


state = _State()
_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None or _console.file is not sys.stderr:
        tty = sys.stderr.isatty()
        _console = Console(file=sys.stderr, force_terminal=tty, no_color=not tty or "NO_COLOR" in os.environ,
                           highlight=False, soft_wrap=not tty)
    return _console


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def log(message: str) -> None:
    if not state.quiet and is_main_process():
        console().print(message, markup=False)


def info(message: str) -> None:
    """A log line that may use Rich markup."""
    if not state.quiet and is_main_process():
        console().print(message)


def warn(message: str) -> None:
    """Warnings are shown even with --quiet: they are what a user must not miss."""
    if is_main_process():
        c = console()
        if c.no_color:
            c.print(f"warning: {message}", markup=False)
        else:
            c.print(f"[bold yellow]warning:[/] {message}", markup=True)


class _PlainProgress:
    """Periodic log lines for non-terminals: at most one line every `every` seconds, plus the last."""

    def __init__(self, total: int, description: str, every: float = 10.0):
        self.total, self.description, self.every = total, description, every
        self.done = 0
        self.start = self.last = time.monotonic()
        self.extra = ""

    def update(self, advance: int = 1, **fields) -> None:
        self.done += advance
        if fields:
            self.extra = " ".join(f"{k}={v}" for k, v in fields.items())
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            elapsed = now - self.start
            eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            log(f"{self.description}: {self.done}/{self.total} ({elapsed:.0f}s elapsed, eta {eta:.0f}s) {self.extra}".rstrip())


class _RichProgress:
    def __init__(self, progress, task):
        self._p, self._t = progress, task

    def update(self, advance: int = 1, **fields) -> None:
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        if extra:
            self._p.update(self._t, advance=advance, extra=extra)
        else:
            self._p.update(self._t, advance=advance)


@contextmanager
def progress(total: int, description: str):
    """A progress reporter with .update(advance, **fields); silent under --quiet and on non-zero ranks."""
    if state.quiet or not is_main_process():
        class _Null:
            def update(self, advance: int = 1, **fields) -> None:
                pass
        yield _Null()
        return
    if not sys.stderr.isatty():
        yield _PlainProgress(total, description)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[extra]}"),
                  console=console(), transient=False, redirect_stdout=False, redirect_stderr=False) as p:
        task = p.add_task(description, total=total, extra="")
        yield _RichProgress(p, task)
