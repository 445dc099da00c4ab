"""The test suite's worker program: the example's handlers plus probes.

The probes report what ``gloam`` raised inside a handler; there are sync/async variants and
rendezvous points for the concurrency checks.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from typing import Dict, Optional

import gloam
from gloam._errors import error_for

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples" / "hello-python"))

from main import HANDLERS  # noqa: E402


def _report(exc: gloam.GloamError) -> bytes:
    """Describe a Gloam exception so the test can check class, kind and message."""
    return f"raised {type(exc).__name__} kind={exc.kind}: {exc}".encode()


def _target(data: bytes) -> tuple[str, bytes]:
    name, _, payload = data.partition(b":")
    return name.decode(), payload


async def probe(ctx: gloam.Context, data: bytes) -> bytes:
    """``Name:payload``: invoke and return the output, or describe the exception."""
    name, payload = _target(data)
    try:
        return await ctx.invoke(name, payload)
    except gloam.GloamError as exc:
        return _report(exc)


def probe_sync(ctx: gloam.Context, data: bytes) -> bytes:
    """Like ``probe`` from a plain ``def`` handler with ``invoke_sync``."""
    name, payload = _target(data)
    try:
        return ctx.invoke_sync(name, payload)
    except gloam.GloamError as exc:
        return _report(exc)


async def oversize(ctx: gloam.Context, data: bytes) -> bytes:
    """Invoke ``Echo`` with one byte more than the payload limit."""
    try:
        await ctx.invoke("Echo", b"x" * (ctx.max_payload + 1))
    except gloam.PayloadTooLarge as exc:
        return _report(exc)
    return b"no error"


async def deadline_probe(ctx: gloam.Context, data: bytes) -> bytes:
    """Invoke ``Sleep 3000``, beyond the caller's deadline, and report what it raised.

    The report goes to the file named by the input: the caller has stopped waiting by then.
    """
    try:
        await ctx.invoke("Sleep", b"3000")
    except gloam.GloamError as exc:
        Path(data.decode()).write_text(f"{type(exc).__name__} {exc.kind}")
        raise
    Path(data.decode()).write_text("no error")
    return b"no error"


def raise_kind(ctx: gloam.Context, data: bytes) -> bytes:
    """Raise the ``gloam`` exception of the error kind named by the input (e.g. ``TIMEOUT``)."""
    kind = data.decode()
    raise error_for(kind, f"raised {kind}")


async def echo_async(ctx: gloam.Context, data: bytes) -> bytes:
    """Echo, as a coroutine."""
    return data


def foo_sync(ctx: gloam.Context, data: bytes) -> bytes:
    """``Foo`` as a plain function."""
    return b"From function Bar: " + ctx.invoke_sync("Bar", data)


async def blocking_in_async(ctx: gloam.Context, data: bytes) -> bytes:
    """Misuse: ``invoke_sync`` on the event loop (refused)."""
    return ctx.invoke_sync("Echo", data)


def text(ctx: gloam.Context, data: bytes) -> str:
    """Return a ``str`` (sent as UTF-8)."""
    return "héllo " + data.decode()


def bad_output(ctx: gloam.Context, data: bytes) -> int:
    """Return something that is not bytes-like."""
    return 42


def info(ctx: gloam.Context, data: bytes) -> str:
    """Return the context's fields as JSON."""
    return json.dumps(
        {
            "function": ctx.function,
            "call_id": ctx.call_id,
            "worker_id": ctx.worker_id,
            "deadline": ctx.deadline,
            "remaining": ctx.remaining(),
            "max_payload": ctx.max_payload,
        }
    )


_met: Dict[str, asyncio.Event] = {}
_arrived: Dict[str, int] = {}


async def rendezvous(ctx: gloam.Context, data: bytes) -> bytes:
    """Input ``N:tag``: returns once N calls with this tag run at the same time (bounded)."""
    count, _, tag = data.decode().partition(":")
    event = _met.setdefault(tag, asyncio.Event())
    _arrived[tag] = _arrived.get(tag, 0) + 1
    if _arrived[tag] >= int(count):
        event.set()
    await asyncio.wait_for(event.wait(), 20)
    return b"met"


_barriers: Dict[str, threading.Barrier] = {}
_lock = threading.Lock()


def rendezvous_sync(ctx: gloam.Context, data: bytes) -> bytes:
    """Like ``rendezvous`` for plain handlers, each on its own thread."""
    count, _, tag = data.decode().partition(":")
    with _lock:
        barrier: Optional[threading.Barrier] = _barriers.get(tag)
        if barrier is None:
            barrier = _barriers[tag] = threading.Barrier(int(count), timeout=20)
    barrier.wait()
    return b"met"


ALL: Dict[str, gloam.Handler] = {
    **HANDLERS,
    "Probe": probe,
    "ProbeSync": probe_sync,
    "Oversize": oversize,
    "DeadlineProbe": deadline_probe,
    "EchoAsync": echo_async,
    "FooSync": foo_sync,
    "BlockingInAsync": blocking_in_async,
    "Text": text,
    "BadOutput": bad_output,  # type: ignore[dict-item]
    "Info": info,
    "RaiseKind": raise_kind,
    "Rendezvous": rendezvous,
    "RendezvousSync": rendezvous_sync,
}

if __name__ == "__main__":
    gloam.serve(ALL)
