"""The core's log events in Python's ``logging``, delivered by a thread of their own.

The core logs from its own threads, sometimes while holding its own locks; taking the GIL
there could deadlock with a Python thread that holds the GIL and waits for such a lock. So the
native layer never takes the GIL: it puts formatted records into a bounded queue (dropping
and counting them when it is full) and writes a byte to a wake-up descriptor. The daemon
thread started here sleeps in ``os.read`` on that descriptor, then takes the records and logs
them to ``logging.getLogger("gloam")`` — with the GIL, but holding no core lock. Records still
queued when the interpreter exits are logged by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import traceback
from typing import Optional

from . import _gloam

__all__ = ["drain", "install_logging"]

_lock = threading.Lock()
_thread: Optional[threading.Thread] = None
# Held while a batch is taken and logged: the exit-time drain waits for the logging thread's
# batch in progress instead of finishing (and losing it) first. Reentrant, for a handler that
# drains.
_draining = threading.RLock()


def install_logging() -> None:
    """Forward the core's ``tracing`` events to ``logging.getLogger("gloam")``.

    Idempotent. ``GLOAM_LOG`` (``tracing`` directives, default ``info``) selects the events;
    Python's logging then applies its own levels and handlers. Does nothing when the process
    already has another global ``tracing`` subscriber.
    """
    global _thread
    with _lock:
        if _thread is not None:
            return
        fd = _gloam.install_logging()
        if fd is None:
            return
        _thread = threading.Thread(target=_drain_forever, args=(fd,), name="gloam-log", daemon=True)
        _thread.start()
        atexit.register(drain)


def drain() -> int:
    """Log the queued records now (on the calling thread); return how many there were.

    The logging thread calls it whenever records arrive; call it yourself to flush them at a
    point of your choosing (e.g. before a test inspects the log). Records the queue had to drop
    since the last drain are reported as one warning.
    """
    with _draining:
        records, dropped = _gloam.take_log_records()
        logger = logging.getLogger("gloam")
        if dropped:
            logger.warning("%d log records of the Gloam core were dropped (queue full)", dropped)
        for level, line in records:
            logger.log(level, "%s", line)
        return len(records)


def _drain_forever(fd: int) -> None:
    """Wait for wake-ups on ``fd`` and drain the queue, for the life of the process."""
    while True:
        try:
            if not os.read(fd, 4096):
                return  # the other end is gone: nothing will come any more
        except OSError:
            return
        try:
            drain()
        except Exception:  # a broken handler must not stop the logging thread
            traceback.print_exc(file=sys.stderr)
