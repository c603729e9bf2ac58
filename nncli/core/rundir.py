"""Run directories (GUIDE §4): where a command writes its outputs, and the rules that keep a user's files safe.

- nncli recognises its own run directories by a marker it writes itself (MARKER), never by file names a user
  may have (report.json, recipe.yaml).
- Nothing is replaced before every input has been validated (callers prepare() last), only nncli's own run
  directories are replaced, and a replaced run is first renamed aside (a hidden sibling): it is deleted once the
  new run is complete, and kept (and its place said) when the new run fails.
- An output may never be, contain, or lie inside an input.
- One process at a time writes a run directory: an advisory lock (fcntl.flock on LOCK inside), released at exit.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import shutil
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nncli.core.atomic import atomic_write_json, atomic_write_text, disk_error, json_default
from nncli.core.errors import ExitCode, InputError, NncliError, UsageError
from nncli.core.outputs import refuse_aliasing
from nncli.core.signals import deferred

MARKER = ".nncli-run.json"          # written by nncli into every directory it creates as a run directory
LOCK = ".nncli-run.lock"            # the advisory lock inside it (holds the pid of the writer)
ASIDE = ".nncli-old-"               # a replaced run waits in the hidden sibling .<name>.nncli-old-<time>-<pid>
LEGACY_FILES = ("report.json", "recipe.yaml")

_HELD: dict[str, list] = {}         # lock files this process holds: resolved path -> [fd, owner]; re-entry adopts it
_OPEN: list[RunDir] = []            # run directories prepared by this process and not yet released


class RunDir:
    def __init__(self, path: str | Path, *, command: str | None = None):
        self.path = Path(path)
        self.command = command
        self.previous: Path | None = None     # the replaced run, renamed aside until complete()
        self._fd: int | None = None
        self._completed = False

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    # ------------------------------------------------------------------------------------------ preparing
    def check(self, *, resume: bool = False, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()) -> None:
        """Every refusal prepare() would make, touching nothing (commands call it early to fail fast)."""
        p = self.path
        refuse_aliasing(p, inputs)
        if p.exists() and not p.is_dir():
            raise UsageError(f"output path {p} exists and is a file", "choose a directory path for --output")
        busy = holder_of(p)
        if busy is not None:
            raise in_use(p, busy)
        if resume:
            if not p.is_dir() or _empty(p):
                raise InputError(f"nothing to resume in {p}: the directory is missing or empty", "run without --resume")
            if not is_run_dir(p):
                raise UsageError(f"cannot resume {p}: it is not an nncli run directory (no {MARKER})", _not_ours_hint(p))
            return
        if not p.is_dir() or _empty(p):
            return
        if not is_run_dir(p):
            raise UsageError(f"output directory {p} exists, is not empty and is not an nncli run directory (no {MARKER})",
                             _not_ours_hint(p) + "; --overwrite replaces only nncli's own run directories")
        if not overwrite:
            raise UsageError(f"output directory {p} exists and is not empty",
                             "pass --overwrite to replace it (the old run is kept until the new one completes), "
                             "--resume to continue the run, or choose another --output")
        if p.is_symlink():
            raise UsageError(f"output directory {p} is a symbolic link; --overwrite would replace the link, not the run",
                             f"pass the real directory ({p.resolve()})")
        here = Path.cwd().resolve()
        if here == p.resolve() or p.resolve() in here.parents:
            raise UsageError(f"output directory {p} is (or contains) the current directory; it cannot be replaced from inside",
                             "run the command from another directory, or choose another --output")

    def prepare(self, *, resume: bool = False, overwrite: bool = False,
                inputs: Iterable[str | Path | None] = ()) -> RunDir:
        """Call only after every input has been validated. Refuses (UsageError, exit 2, one line naming the path and
        the fix): an output that is, contains or lies inside any input (resolved paths; None inputs and hub ids that
        are not local paths ignored); an existing file; an existing non-empty directory without --overwrite (or
        --resume); --overwrite of a directory that has no MARKER (it is not nncli's). With --overwrite of an nncli run
        directory: take its lock, rename it aside (a hidden sibling), create the new one. With --resume: the existing
        run directory (marker required). Writes MARKER {command, created_at, nncli_version, pid} and takes an advisory
        lock (held until release() or process exit); a directory locked by another live process -> UsageError
        "... is in use by pid N (...)" exit 2."""
        inputs = list(inputs)
        self.check(resume=resume, overwrite=overwrite, inputs=inputs)
        p = self.path
        _warn_kept(p)
        if resume:
            self._lock()
            self._write_marker(keep_created=True)
        elif p.is_dir() and not _empty(p):
            with deferred():              # the old run moved aside is always recorded (kept, and the user told where)
                self._replace()
        else:
            self._create()
        if self not in _OPEN:
            _OPEN.append(self)
        _test_hold(p)
        return self

    def _create(self) -> None:
        p = self.path
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise disk_error(e, p) from e
        self._lock()
        others = [c for c in p.iterdir() if c.name != LOCK]
        if others:   # another process filled it between our check and our lock: judge it again, as it is now
            self.release()
            self.check(overwrite=False)
            raise UsageError(f"output directory {p} was filled by another process meanwhile", "choose another --output")
        self._write_marker()

    def _replace(self) -> None:
        p = self.path
        self._lock()                      # the old run's lock: nobody else may be writing it while we move it
        stem = f".{p.name}{ASIDE}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        names = (p.with_name(stem + (f"-{n}" if n else "")) for n in range(1000))
        aside = next(a for a in names if not a.exists())
        try:
            os.rename(p, aside)
        except OSError as e:
            self.release()
            raise disk_error(e, p) from e
        old_fd = self._unlock_keep()
        self.previous = aside
        try:
            self._create()
        finally:
            if old_fd is not None:
                os.close(old_fd)

    # ------------------------------------------------------------------------------------------ ending
    def complete(self) -> None:
        """The run finished (succeeded, or failed a gate): delete the moved-aside old run."""
        self._completed = True
        if self.previous is not None and self.previous.exists():
            shutil.rmtree(self.previous, ignore_errors=True)
        self.previous = None

    def release(self) -> None:
        """Let go of the lock. A replaced run whose successor did not complete stays aside, and the user is told where."""
        if self.previous is not None and not self._completed:
            if _finished(self.path):     # the command finished but did not say so (older callers): same as complete()
                self.complete()
            elif self.previous.exists():
                _warn_previous(self.path, self.previous)
        fd = self._unlock_keep()
        if fd is not None:
            os.close(fd)
        if self in _OPEN:
            _OPEN.remove(self)

    # ------------------------------------------------------------------------------------------ writing
    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text)

    def append_jsonl(self, name: str, obj: Any) -> None:
        try:
            with open(self.path / name, "a", encoding="utf-8") as f:
                f.write(json.dumps(obj, default=json_default) + "\n")
        except OSError as e:
            raise disk_error(e, self.path / name) from e

    # ------------------------------------------------------------------------------------------ marker and lock
    def _write_marker(self, keep_created: bool = False) -> None:
        from nncli import __version__
        from nncli.core.report import now

        old = read_marker(self.path) if keep_created else None
        marker = {"command": self.command or (old or {}).get("command") or "unknown",
                  "created_at": (old or {}).get("created_at") or now(), "nncli_version": __version__, "pid": os.getpid()}
        if keep_created:
            marker["resumed_at"] = now()
        self.write_json(MARKER, marker)

    def _lock(self) -> None:
        import fcntl

        f = self.path / LOCK
        key = str(f.resolve())
        if key in _HELD:                  # this process holds it already (an earlier command in the same process)
            held = _HELD[key]
            if held[1] is not self:
                held[1]._fd = None
                held[1] = self
            self._fd = held[0]
            return
        try:
            fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise disk_error(e, f) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise in_use(self.path, _pid_in(f)) from None
            raise disk_error(e, f) from e
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _HELD[key] = [fd, self]
        self._fd = fd

    def _unlock_keep(self) -> int | None:
        """Forget the lock without closing it: the caller closes the fd (which releases the flock)."""
        fd, self._fd = self._fd, None
        for k, v in list(_HELD.items()):
            if v[0] == fd:
                del _HELD[k]
        return fd


# ---------------------------------------------------------------------------------------------- questions

def is_run_dir(path: str | Path) -> bool:
    """True for a directory nncli created as a run directory (it holds nncli's MARKER)."""
    return read_marker(path) is not None


def read_marker(path: str | Path) -> dict | None:
    try:
        m = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and "nncli_version" in m else None


def holder_of(path: str | Path) -> int | None:
    """The pid of another live process holding the run directory's lock, or None (free, or held by this process)."""
    import fcntl

    f = Path(path) / LOCK
    if not f.is_file() or str(f.resolve()) in _HELD:
        return None
    try:
        fd = os.open(f, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _pid_in(f) or -1
    finally:
        os.close(fd)
    return None


def in_use(path: Path, pid: int | None) -> UsageError:
    who = f"pid {pid}" if pid and pid > 0 else "another process"
    return UsageError(f"output directory {path} is in use by {who} (another nncli command is writing to it)",
                      "wait until it finishes, or choose another --output")


def _empty(p: Path) -> bool:
    return all(c.name == LOCK for c in p.iterdir())


def _pid_in(f: Path) -> int | None:
    try:
        return int(f.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _not_ours_hint(p: Path) -> str:
    if any((p / name).exists() for name in LEGACY_FILES):
        return ("if it is a run of an earlier nncli version (they carry no marker), delete it yourself, or choose another "
                "--output")
    return "choose a new or empty --output directory"


def _finished(p: Path) -> bool:
    try:
        r = json.loads((p / "report.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(r, dict) and (r.get("status") == "succeeded" or (r.get("status") == "failed" and r.get("exit_code") == 5))


def _warn_previous(p: Path, previous: Path) -> None:
    from nncli.core import console

    console.warn(f"the run that was in {p} before --overwrite is kept in {previous} (the new run did not complete); "
                 f"to go back: rm -r {p} && mv {previous} {p}")


def _warn_kept(p: Path) -> None:
    """Runs kept aside by an earlier --overwrite that did not complete: say where they are (nncli never deletes them)."""
    try:
        kept = sorted(p.parent.glob(f".{p.name}{ASIDE}*")) if p.parent.is_dir() else []
    except OSError:
        return
    mine = {d.previous for d in _OPEN}
    for k in kept:
        if k not in mine:
            from nncli.core import console

            console.warn(f"an earlier run of {p} is kept in {k} (an --overwrite that did not complete); delete it when done")


def release_all() -> None:
    """Release every run directory this process prepared (the CLI calls it at the end of each command)."""
    for d in list(_OPEN):
        d.release()


atexit.register(release_all)


# ---------------------------------------------------------------------------------------------- recording

@contextmanager
def recording(out: RunDir | None, report):
    """report.json says running while the block runs; any exception marks it status failed (exit code of the error,
    the error message in report["error"]) or interrupted (130) and re-raises; nothing is marked succeeded here."""
    if out is not None and out.path.is_dir():
        out.write_json("report.json", report)
    try:
        yield report
    except BaseException as e:
        if out is not None and report.get("status") == "running" and out.path.is_dir():
            with deferred():   # a signal now would leave report.json saying running
                _record_failure(out, report, e)
        raise


def _record_failure(out: RunDir, report: dict, e: BaseException) -> None:
    from nncli.core.report import now

    interrupted = isinstance(e, KeyboardInterrupt) or getattr(e, "code", None) == ExitCode.INTERRUPTED
    code = ExitCode.INTERRUPTED if interrupted else (e.code if isinstance(e, NncliError) else ExitCode.INTERNAL)
    report.update(status="interrupted" if interrupted else "failed", exit_code=int(code), finished_at=now(),
                  error=getattr(e, "message", None) or f"{type(e).__name__}: {e}")
    if out.previous is not None:
        report.update(previous_run=str(out.previous))
    try:
        out.write_json("report.json", report)
    except Exception:   # the original error matters more than a report we could not write
        pass


def _test_hold(path: Path) -> None:
    """Test hook, free when unused: with NNCLI_TEST_HOLD_LOCK=FILE (and, if set, only for a directory named
    NNCLI_TEST_HOLD_NAME), write this pid to FILE once the lock is held, then wait (at most 120 s) until FILE is
    deleted, so a test can start a second process against a directory in use, or interrupt a command right there."""
    f = os.environ.get("NNCLI_TEST_HOLD_LOCK")
    if not f or os.environ.get("NNCLI_TEST_HOLD_NAME", path.name) != path.name:
        return
    Path(f).write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while Path(f).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
