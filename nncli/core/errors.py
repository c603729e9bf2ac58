"""Exit codes (a public contract, GUIDE §3) and the one exception type library code raises."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    INPUT = 3
    ENVIRONMENT = 4
    GATE = 5
    INTERRUPTED = 130


class NncliError(Exception):
    """An error nncli expected: it carries a one-line message, a hint (what to do next) and an exit code."""

    code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str | None = None, *, code: ExitCode | None = None, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or []
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class Problems:
    """Every problem at once: each `with problems:` block records the NncliError it raises and the code goes on;
    raise_all() then raises the one problem, or all of them as one error with a line each."""

    def __init__(self, summary: str = "problems found before training"):
        self.summary = summary
        self.errors: list[NncliError] = []

    def __enter__(self) -> Problems:
        return self

    def __exit__(self, kind, error, tb) -> bool:
        if isinstance(error, NncliError):
            self.errors.append(error)
            return True
        return False

    def raise_all(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise NncliError(f"{len(self.errors)} {self.summary}", "fix them all, then run again",
                             code=max(e.code for e in self.errors),
                             details=[e.message + (f" ({e.hint})" if e.hint else "") for e in self.errors])


class UsageError(NncliError):
    code = ExitCode.USAGE


class InputError(NncliError):
    code = ExitCode.INPUT


class EnvironmentProblem(NncliError):
    code = ExitCode.ENVIRONMENT


class GateFailed(NncliError):
    """The job ran, but a threshold did not hold. The report has already been written."""

    code = ExitCode.GATE

    def __init__(self, message: str, hint: str | None = None, *, report: dict | None = None, **kw):
        super().__init__(message, hint, **kw)
        self.report = report


class Interrupted(NncliError):
    code = ExitCode.INTERRUPTED


EXTRAS = ("demo", "tensorboard", "explain", "sweep", "audit", "mlflow", "dev")   # [project.optional-dependencies]


def install_command(extra: str | None = None) -> str:
    """The pip line that installs nncli (with an extra) under its distribution name."""
    from nncli import DISTRIBUTION

    return f"pip install '{DISTRIBUTION}[{extra}]'" if extra else f"pip install '{DISTRIBUTION}'"


def missing_extra(package: str, extra: str | None) -> EnvironmentProblem:
    """A missing dependency: one of an optional extra (EXTRAS), or a core one (extra None or "core": a broken install)."""
    if extra not in EXTRAS:
        return EnvironmentProblem(f"the dependency '{package}' is not installed (nncli needs it; the install is incomplete)",
                                  f"reinstall: {install_command()} (or pip install {package})")
    return EnvironmentProblem(f"the optional dependency '{package}' is not installed",
                              f"install it with: {install_command(extra)}")
