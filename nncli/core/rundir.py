"""Run directories (GUIDE §4): where a command writes its outputs."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nncli.core.atomic import atomic_write_json, atomic_write_text, disk_error, json_default
from nncli.core.errors import UsageError

RUN_MARKERS = ("report.json", "recipe.yaml")

class RunDir:
    def __init__(self, path: str | Path, *, command: str | None = None):
        self.path = Path(path)
        self.command = command

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    def prepare(self, *, resume: bool = False, overwrite: bool = False, inputs=()) -> RunDir:
        p = self.path
        if p.exists() and not p.is_dir():
            raise UsageError(f"output path exists and is a file: {p}", "choose a directory path for --output")
        if p.exists() and any(p.iterdir()) and not resume:
            if not overwrite:
                raise UsageError(f"output directory {p} exists and is not empty",
                                 "pass --overwrite to replace it, --resume to continue the run, or choose another --output")
            if not any((p / m).exists() for m in RUN_MARKERS):
                raise UsageError(f"output directory {p} is not an nncli run directory; refusing to delete it with --overwrite",
                                 "choose an empty or new --output directory")
            for child in p.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        try:
            p.mkdir(parents=True, exist_ok=True)
            probe = p / ".nncli-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise disk_error(e, p) from e
        return self

    def complete(self) -> None:
        """The run finished (succeeded, or failed a gate)."""

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


@contextmanager
def recording(out: RunDir | None, report):
    """While the block runs, report.json says running; an exception marks it failed (with the error) or interrupted
    (exit 130), writes it, and re-raises. Nothing is marked succeeded here (finish() does that)."""
    from nncli.core.errors import ExitCode, NncliError
    from nncli.core.report import now

    try:
        yield
    except BaseException as e:
        if out is not None and report.get("status") == "running" and out.path.exists():
            interrupted = isinstance(e, KeyboardInterrupt) or getattr(e, "code", None) == ExitCode.INTERRUPTED
            code = int(ExitCode.INTERRUPTED if interrupted else (e.code if isinstance(e, NncliError) else ExitCode.INTERNAL))
            report.update(status="interrupted" if interrupted else "failed", exit_code=code, finished_at=now(),
                          error=None if interrupted else (getattr(e, "message", None) or f"{type(e).__name__}: {e}"))
            try:
                out.write_json("report.json", report)
            except Exception:   # the original error matters more than a report we could not write
                pass
        raise
