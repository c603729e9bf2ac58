"""nncli.core.signals, moment by moment (issue #21): each case is a small process that signals itself at a chosen
point, so the outcome does not depend on timing or load. os.kill on one's own pid is delivered before the next
bytecode runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import os, signal, sys
from nncli.core import signals
def kill(sig=signal.SIGTERM):
    os.kill(os.getpid(), sig)
"""


def run(body: str) -> subprocess.CompletedProcess:
    code = PRELUDE + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_outside_any_job_raises_keyboard_interrupt_and_cleanup_runs(sig):
    r = run(f"""
        signals.install()
        try:
            kill(signal.{sig})
            print("not reached")
        except KeyboardInterrupt:
            kill(signal.SIGINT)          # during cleanup: recorded, not raised
            print("cleaned up")
        sys.exit(signals.finish(0))
    """)
    assert (r.returncode, r.stdout.split()) == (130, ["cleaned", "up"]), r.stderr


def test_a_stop_flag_takes_the_first_signal_the_second_stops_at_once_a_third_is_only_recorded():
    r = run("""
        signals.install()
        try:
            with signals.StopFlag("finishing this step") as stop:
                kill()
                print("flag", stop.signal)
                kill(signal.SIGINT)
                print("not reached")
        except KeyboardInterrupt:
            kill()
            print("cleaned up")
        sys.exit(signals.finish(0))
    """)
    assert r.returncode == 130, r.stderr
    assert r.stdout.split() == ["flag", "SIGTERM", "cleaned", "up"]
    assert r.stderr == "warning: SIGTERM received: finishing this step (again to stop at once)\n"


def test_after_a_flagged_job_ends_no_signal_interrupts_the_report_and_the_exit_code_is_130():
    """The window of issue #21: the job saw its signal and restored its StopFlag; its error report is being written."""
    r = run("""
        signals.install()
        stop = signals.StopFlag("stopping").install()
        kill()
        stop.restore()
        for sig in (signal.SIGINT, signal.SIGTERM):
            kill(sig)
        print("report written")
        sys.exit(signals.finish(0))
    """)
    assert (r.returncode, r.stdout) == (130, "report written\n"), r.stderr


def test_deferred_block_is_never_cut_the_interruption_comes_when_it_ends():
    r = run("""
        signals.install()
        try:
            with signals.deferred():
                kill()
                print("both renames done")
            print("not reached")
        except KeyboardInterrupt:
            print("interrupted after the block")
        sys.exit(signals.finish(0))
    """)
    assert r.returncode == 130, r.stderr
    assert r.stdout.splitlines() == ["both renames done", "interrupted after the block"]


def test_finish_keeps_the_code_without_a_signal_and_ignores_signals_after_it():
    r = run("""
        signals.install()
        code = signals.finish(5)
        kill()
        kill(signal.SIGINT)
        print("exiting")
        sys.exit(code)
    """)
    assert (r.returncode, r.stdout) == (5, "exiting\n"), r.stderr


def test_a_job_that_starts_after_a_signal_stops_at_its_first_safe_point():
    r = run("""
        signals.install()
        with signals.StopFlag("first") as stop:
            kill()
        try:
            signals.check()
        except KeyboardInterrupt:
            print("pipeline stops before the next step")
        with signals.StopFlag("next") as stop:
            print("flag", stop.signal)
        sys.exit(signals.finish(0))
    """)
    assert r.returncode == 130, r.stderr
    assert r.stdout.splitlines() == ["pipeline stops before the next step", "flag SIGTERM"]


def test_outside_the_cli_a_stop_flag_puts_the_previous_handlers_back():
    r = run("""
        before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        with signals.StopFlag("x"):
            print("ours", signal.getsignal(signal.SIGTERM) is not before[1])
        print("restored", (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ours", "True", "restored", "True"]


def test_hold_waits_for_the_next_signal_and_writes_its_marker(tmp_path):
    marker = tmp_path / "m"
    r = run(f"""
        import threading, time
        os.environ.update(NNCLI_TEST_HOLD="a,b", NNCLI_TEST_HOLD_FILE={str(marker)!r})
        signals.install()
        def sender():
            for point in ("a", "b"):
                while not (os.path.exists({str(marker)!r}) and open({str(marker)!r}).read().split()[1:] == [point]):
                    time.sleep(0.01)
                kill()
        threading.Thread(target=sender, daemon=True).start()
        stop = signals.StopFlag("x").install()
        signals.hold("a")
        print("a", stop.signal)
        try:
            signals.hold("b")
        except KeyboardInterrupt:
            print("b interrupted")
        signals.hold("a")   # once per point
        sys.exit(signals.finish(0))
    """)
    assert r.returncode == 130, r.stderr
    assert r.stdout.splitlines() == ["a SIGTERM", "b interrupted"]
    assert marker.read_text().split()[1:] == ["b"]
