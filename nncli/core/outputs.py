"""Where an output may go: never onto, into or around an input; a single output file only with --overwrite."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from nncli.core.errors import UsageError


def _local(p: str | Path) -> Path | None:
    try:
        q = Path(p).expanduser()
        return q.resolve() if q.exists() else None
    except (OSError, ValueError):
        return None


def refuse_aliasing(output: str | Path, inputs: Iterable[str | Path | None], *, what: str = "output") -> None:
    """An output may never be, contain, or lie inside an input (resolved paths; None and non-local names ignored)."""
    out = Path(output).expanduser().resolve()
    for i in inputs:
        if i is None:
            continue
        src = _local(i)
        if src is None:
            continue
        if out == src:
            how = "is"
        elif src in out.parents:
            how = "lies inside"
        elif out in src.parents:
            how = "contains"
        else:
            continue
        raise UsageError(f"{what} {output} {how} the input {i}; nncli never writes over its inputs",
                         "choose an output path outside the model, data and baseline paths it reads")


def prepare_output_file(path: str | Path, *, overwrite: bool, inputs: Iterable[str | Path | None] = (),
                        what: str = "--output", flag: str = "--overwrite") -> Path:
    """For single-file outputs (predict --output, report -o, recipes copy): refuse an input, a directory, or an existing
    file without --overwrite. Nothing is written here; write the file atomically afterwards."""
    p = Path(path)
    refuse_aliasing(p, inputs, what=what)
    if p.is_dir():
        raise UsageError(f"{what} {p} is a directory", f"give {what} a file name, e.g. {p / 'predictions.jsonl'}")
    if p.exists() and not overwrite:
        raise UsageError(f"{what} {p} already exists", f"pass {flag} to replace it, or choose another file name")
    return p
