"""The core's log events reach ``logging`` without the GIL ever being taken under a core lock.

Each case runs ``log_probe.py`` in a fresh interpreter with ``GLOAM_LOG=debug`` (the log
subscriber is per process) and a hard timeout, so a deadlock fails the case instead of hanging
the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

from conftest import EXTERNAL_FUNCTION, Engine

LOG_PROBE = Path(__file__).resolve().parent / "log_probe.py"
HARD_TIMEOUT = 50.0  # below the suite's per-test timeout (60 s)


def run_probe(args: List[str]) -> str:
    """Run ``log_probe.py ARGS`` with ``GLOAM_LOG=debug``; return its output, failing on error."""
    try:
        done = subprocess.run(
            [sys.executable, str(LOG_PROBE), *args],
            env={**os.environ, "GLOAM_LOG": "debug"},
            capture_output=True,
            text=True,
            timeout=HARD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"log_probe {args} hung for {HARD_TIMEOUT} s: {exc}") from None
    assert done.returncode == 0, f"log_probe {args}: exit {done.returncode}\n{done.stderr}"
    return done.stdout


def test_core_threads_log_without_the_gil() -> None:
    """A record logged by a core thread arrives while a Python thread holds on to the GIL."""
    assert run_probe(["nogil"]).startswith("nogil ok")


def test_a_full_log_queue_drops_and_counts() -> None:
    """Far more records than the queue holds, none drained: the rest is dropped and counted."""
    assert run_probe(["overflow"]).startswith("overflow ok")


def test_wake_close_and_recv_while_the_core_logs(engine: Engine) -> None:
    """Real workers received on, woken and closed from several threads while the core logs."""
    out = run_probe(["stress", str(engine.ipc_root), EXTERNAL_FUNCTION])
    assert out.startswith("stress ok"), out
