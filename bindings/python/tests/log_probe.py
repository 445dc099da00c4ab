"""Programs for test_logging.py, each run in a process of its own with ``GLOAM_LOG=debug``.

The core installs one global log subscriber per process and reads ``GLOAM_LOG`` once, so every
scenario gets a fresh interpreter. Each prints one result line on success and exits 0; on
failure it exits non-zero with the reason on stderr. Usage: ``log_probe.py MODE [ARGS]``.

- ``nogil``: a core thread logs while this thread holds the GIL and will not let it go until
  that record arrives — which needs the log path to run without the GIL.
- ``overflow``: core threads log far more than the queue holds while nothing drains it; the
  excess is dropped and counted, and no logging thread blocks.
- ``stress IPC_ROOT FUNCTION``: workers connected to a real engine receive, get woken and are
  closed by several threads at once while core threads log; everything ends, the records
  reach ``logging``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, List

import gloam
from gloam import _gloam
from gloam._logging import drain, install_logging

BOUND = 30.0  # seconds any wait below may last; the pytest timeout is the hard stop


def fail(reason: str) -> None:
    """Report ``reason`` and exit non-zero."""
    print(f"log_probe: {reason}", file=sys.stderr, flush=True)
    sys.exit(1)


def connect_missing(root: str, timeout: float) -> None:
    """Try to connect to an engine that does not exist (the core logs each retry at debug)."""
    try:
        _gloam.Worker("Nobody", root, connect_timeout=timeout)
    except gloam.GloamError:
        return
    fail("connected to an engine that does not exist")


def wait_for(what: str, check: Callable[[], bool]) -> None:
    """Poll ``check`` (bounded) until it holds."""
    end = time.monotonic() + BOUND
    while not check():
        if time.monotonic() > end:
            fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def nogil() -> None:
    """Check that a core thread's record arrives while this thread keeps the GIL."""
    if _gloam.install_logging() is None:
        fail("install_logging: another subscriber is installed")
    root = tempfile.mkdtemp(prefix="gloam-nogil-")
    # Retries for 2 s, logging each one (5, 10, 20 ... 200 ms apart), with the GIL released.
    retrying = threading.Thread(target=connect_missing, args=(root, 2.0))
    retrying.start()
    seen: List[object] = []

    def first_record() -> bool:
        seen.extend(_gloam.take_log_records()[0])
        return bool(seen)

    # The first record: the thread is inside the core, retrying.
    wait_for("the first record", first_record)
    # From now on this thread never blocks and never sleeps, and no other thread gets the GIL
    # for 1000 s. The next retry's record must come anyway.
    sys.setswitchinterval(1000.0)
    end = time.monotonic() + BOUND
    got = 0
    while time.monotonic() < end and not got:
        got = len(_gloam.take_log_records()[0])
    sys.setswitchinterval(0.005)
    retrying.join(BOUND)
    if not got:
        fail("no record arrived while this thread held the GIL: the log path takes the GIL")
    print(f"nogil ok: {len(seen)} + {got} records", flush=True)


def overflow() -> None:
    """More records than the queue holds, nothing draining: drop and count, never block."""
    if _gloam.install_logging() is None:
        fail("install_logging: another subscriber is installed")
    capacity = _gloam.LOG_QUEUE_CAPACITY
    root = tempfile.mkdtemp(prefix="gloam-overflow-")
    threads, attempts = 64, capacity // 64 + 8
    # Each attempt logs its retries (about 3) before it gives up after 20 ms: some 13 000
    # records in all, about three times the capacity.

    def attempt_many() -> None:
        for _ in range(attempts):
            connect_missing(root, 0.02)

    workers = [threading.Thread(target=attempt_many) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(BOUND * 4)
        if t.is_alive():
            fail("a logging thread is stuck")
    records, dropped = _gloam.take_log_records()
    if len(records) != capacity:
        fail(f"{len(records)} records queued, expected the capacity {capacity}")
    if dropped == 0:
        fail(f"nothing dropped after {threads * attempts} attempts")
    if any("engine socket not ready" not in line for _, line in records):
        fail(f"unexpected records: {records[:3]}")
    if _gloam.take_log_records() != ([], 0):
        fail("the queue and the dropped count were not reset by the drain")
    print(f"overflow ok: {len(records)} queued, {dropped} dropped", flush=True)


class Collect(logging.Handler):
    """Keeps the text of every record of the ``gloam`` logger."""

    def __init__(self) -> None:
        """Start empty."""
        super().__init__(logging.DEBUG)
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record``'s message."""
        self.lines.append(record.getMessage())


def stress(ipc_root: str, function: str) -> None:
    """Receive, wake and close real workers from several threads while the core logs."""
    collect = Collect()
    logger = logging.getLogger("gloam")
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    install_logging()
    missing = tempfile.mkdtemp(prefix="gloam-stress-")
    workers = [_gloam.Worker(function, ipc_root) for _ in range(4)]
    stop = threading.Event()
    errors: List[str] = []

    def receive(w: _gloam.Worker) -> None:
        try:
            while True:
                call = w.recv(0.005)
                if call is not None:
                    w.complete(call, call.input)
        except gloam.Shutdown:
            return
        except gloam.GloamError as exc:
            errors.append(f"recv: {exc!r}")

    def wake() -> None:
        while not stop.is_set():
            for w in workers:
                w.wake()

    def retry_logs() -> None:
        while not stop.is_set():
            connect_missing(missing, 0.03)

    threads = [threading.Thread(target=receive, args=(w,)) for w in workers]
    threads += [threading.Thread(target=wake) for _ in range(2)]
    threads += [threading.Thread(target=retry_logs) for _ in range(2)]
    for t in threads:
        t.start()
    # Let the core log a good number of records meanwhile (bounded).
    wait_for(
        "records from the core",
        lambda: sum("not ready" in line for line in collect.lines) >= 50,
    )
    # Close every worker while receivers wait in recv and wakers wake them.
    for w in workers:
        w.close()
        w.close()  # idempotent
    stop.set()
    for t in threads:
        t.join(BOUND)
        if t.is_alive():
            fail(f"{t.name} did not end: a deadlock?")
    drain()
    if errors:
        fail("; ".join(errors))
    if not any("worker ready" in line for line in collect.lines):
        fail(f"no 'worker ready' record among {len(collect.lines)}")
    print(f"stress ok: {len(collect.lines)} records", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "nogil":
        nogil()
    elif mode == "overflow":
        overflow()
    elif mode == "stress" and len(sys.argv) == 4:
        stress(sys.argv[2], sys.argv[3])
    else:
        fail(f"usage: {Path(__file__).name} nogil | overflow | stress IPC_ROOT FUNCTION")
