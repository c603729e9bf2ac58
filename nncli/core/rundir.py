"""Run directories (GUIDE §4): where a command writes its outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nncli.core.atomic import atomic_write_json, atomic_write_text, disk_error, json_default
from nncli.core.errors import UsageError

RUN_MARKERS = ("report.json", "recipe.yaml")

class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    def prepare(self, *, resume: bool = False, overwrite: bool = False) -> None:
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
