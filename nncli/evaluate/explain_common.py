"""What text and image explanations share: the integrated-gradients step schedule and its convergence test, the
method check, the number of random draws faithfulness compares against, and writing the run directory."""

from __future__ import annotations

from nncli.core.atomic import atomic_write_bytes, atomic_write_text
from nncli.core.errors import UsageError
from nncli.core.report import Timer, now
from nncli.core.rundir import RunDir, recording

RANDOM_DRAWS = 10


def ig_schedule(steps: int, budget: int) -> list[int]:
    """Integrated-gradients step counts to try in turn (a saturated softmax can change within a sliver of the path),
    within a compute budget of steps."""
    return [n for n in (steps, steps * 4, steps * 16, steps * 64) if n <= budget] or [steps]


def ig_converged(delta: float, gap: float) -> bool:
    """Do the attributions add up to p(input) - p(baseline) = `gap`, within 5% (of at least 0.1)?"""
    return abs(delta) <= 0.05 * max(abs(gap), 0.1)


def check_methods(methods: list[str], allowed: tuple[str, ...]) -> None:
    bad = [m for m in methods if m not in allowed]
    if bad:
        raise UsageError(f"--method {bad[0]}: unknown", f"choose from {', '.join(allowed)} (or all)")


def write_outputs(out: RunDir, report: dict, timer: Timer, files, artifacts: dict[str, str]) -> None:
    """The run's files (`files()`: name -> text or bytes, made while report.json says running) then report.json."""
    with recording(out, report):
        for name, content in files().items():
            (atomic_write_text if isinstance(content, str) else atomic_write_bytes)(out / name, content)
        report["artifacts"] = {**artifacts, "report": "report.json"}
        report.update(status="succeeded", exit_code=0, finished_at=now(), timings={"wall_seconds": timer()})
        out.write_json("report.json", report)
        out.complete()
