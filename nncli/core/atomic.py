"""Atomic writes (temp file, then rename): a crash leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nncli.core.errors import EnvironmentProblem


def disk_error(e: OSError, what: Path) -> EnvironmentProblem:
    if e.errno == errno.ENOSPC:
        return EnvironmentProblem(f"disk full while writing {what}",
                                  "free disk space, or choose another --output on a larger disk")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return EnvironmentProblem(f"cannot write {what}: {e.strerror}", "choose a writable --output directory")
    return EnvironmentProblem(f"cannot write {what}: {e.strerror or e}", "check the output location")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise disk_error(e, path) from e


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=json_default) + "\n")


def json_default(o):
    if hasattr(o, "to_dict") and hasattr(o, "model_dump"):   # a RunReport
        return o.to_dict()
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set):
        return sorted(o)
    return str(o)


@contextmanager
def atomic_dir(final: Path):
    """Yield a temp directory next to `final`; on success it replaces `final` in one rename."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    except OSError as e:
        raise disk_error(e, final) from e
    try:
        yield tmp
        old = final.with_name(f".{final.name}.old")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise disk_error(e, final) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
