"""Gloam's Python example functions (the same set as every language's example).

- ``Foo`` (async): calls ``Bar`` internally, returns ``From function Bar: `` + its output.
- ``Bar``: ``Hello, `` + input, or ``Hello, World`` for an empty input.
- ``Nop``: empty output. ``Echo``: the input back.
- ``Fail``: raises ``ValueError("Fail was called")`` (the caller sees HTTP 500).
- ``Crash``: aborts the process (the caller sees HTTP 502; the launcher restarts it).
- ``Sleep`` (async): input = milliseconds as decimal text; sleeps, returns ``slept N ms``.
- ``Fanout`` (async): three concurrent internal calls to ``Echo`` with ``<input>#0``,
  ``<input>#1``, ``<input>#2``; returns their outputs joined with ``;``.
- ``InvokeOther`` / ``CallRust``: input ``Name:payload`` calls function ``Name`` with
  ``payload`` and returns its output (used by the cross-language matrix).
- ``PassOn``: the same from a plain ``def`` handler with ``ctx.invoke_sync``. Neither catches
  the ``gloam`` exception of a failed call: it passes on with its kind (a callee's
  ``gloam.Timeout`` gives this call's caller HTTP 504, a crash 502).
- ``BenchInternal`` (async, ``await ctx.invoke``) / ``BenchInternalSync`` (``ctx.invoke_sync``):
  input ``N`` or ``Target:N`` (default 10000 calls to ``Nop``); makes N/10 (at most 1000)
  unmeasured internal calls, then N sequential ones timed with ``time.perf_counter_ns``, and
  returns the distribution as JSON like the Rust ``BenchInternal``: ``{"target","count",
  "p50_us","p90_us","p99_us","p999_us","max_us","mean_us","per_s"}`` (nearest-rank).

Start it with ``gloam up`` (``command = "python3"``, ``args = [".../main.py"]``); the function
served is ``GLOAM_HANDLER`` or else ``GLOAM_FUNCTION``.
"""

from __future__ import annotations

import asyncio
import math
import os
import time

import gloam


async def foo(ctx: gloam.Context, data: bytes) -> bytes:
    """Call ``Bar`` with the input and prefix its output."""
    out = await ctx.invoke("Bar", data)
    return b"From function Bar: " + out


def bar(ctx: gloam.Context, data: bytes) -> bytes:
    """Greet the input, or the world."""
    return b"Hello, " + (data or b"World")


def nop(ctx: gloam.Context, data: bytes) -> bytes:
    """Return nothing."""
    return b""


def echo(ctx: gloam.Context, data: bytes) -> bytes:
    """Return the input."""
    return data


def fail(ctx: gloam.Context, data: bytes) -> bytes:
    """Fail the call."""
    raise ValueError("Fail was called")


def crash(ctx: gloam.Context, data: bytes) -> bytes:
    """Kill the whole worker process."""
    os.abort()


async def sleep(ctx: gloam.Context, data: bytes) -> str:
    """Sleep for the number of milliseconds given as input."""
    ms = int(data or b"0")
    await asyncio.sleep(ms / 1000)
    return f"slept {ms} ms"


async def fanout(ctx: gloam.Context, data: bytes) -> bytes:
    """Make three internal calls to ``Echo`` at once and join their outputs."""
    outs = await asyncio.gather(*(ctx.invoke("Echo", data + b"#%d" % i) for i in range(3)))
    return b";".join(outs)


async def invoke_other(ctx: gloam.Context, data: bytes) -> bytes:
    """Call the function named before the first ``:`` of the input with the rest."""
    name, sep, payload = data.partition(b":")
    if not sep:
        raise ValueError("expected input `Name:payload`")
    return await ctx.invoke(name.decode(), payload)


def pass_on(ctx: gloam.Context, data: bytes) -> bytes:
    """Call the function named before the first ``:`` and let its failure through.

    A ``gloam.Timeout`` (or any ``gloam`` error of the internal call) left uncaught fails this
    call with that error's kind and message.
    """
    name, sep, payload = data.partition(b":")
    if not sep:
        raise ValueError("expected input `Name:payload`")
    return ctx.invoke_sync(name.decode(), payload)


def _bench_args(data: bytes) -> tuple[str, int]:
    """Parse ``N`` or ``Target:N`` (default ``Nop``, 10000) for the ``BenchInternal`` handlers."""
    text = data.decode().strip()
    target, sep, num = text.rpartition(":")
    if not sep:
        target = "Nop"
    n = int(num) if num else 10_000
    if n < 1:
        raise ValueError("BenchInternal: N must be at least 1")
    return target, n


def _bench_json(target: str, ns: list[int], total_ns: int) -> str:
    """Summarise the measured call times (ns) as the JSON every ``BenchInternal`` answers."""
    ns.sort()
    n = len(ns)

    def at(q: float) -> float:
        rank = math.ceil(q * n)
        return ns[min(max(rank, 1), n) - 1] / 1e3

    mean = sum(ns) / n / 1e3
    return (
        f'{{"target":"{target}","count":{n},"p50_us":{at(0.5):.2f},"p90_us":{at(0.9):.2f},'
        f'"p99_us":{at(0.99):.2f},"p999_us":{at(0.999):.2f},"max_us":{at(1.0):.2f},'
        f'"mean_us":{mean:.2f},"per_s":{n / (total_ns / 1e9):.0f}}}'
    )


async def bench_internal(ctx: gloam.Context, data: bytes) -> str:
    """Time N sequential ``await ctx.invoke`` calls to the target (see the module doc)."""
    target, n = _bench_args(data)
    for _ in range(min(n // 10, 1000)):
        await ctx.invoke(target)
    ns = [0] * n
    clock = time.perf_counter_ns
    start = clock()
    for i in range(n):
        t0 = clock()
        await ctx.invoke(target)
        ns[i] = clock() - t0
    return _bench_json(target, ns, clock() - start)


def bench_internal_sync(ctx: gloam.Context, data: bytes) -> str:
    """Time N sequential ``ctx.invoke_sync`` calls to the target (see the module doc)."""
    target, n = _bench_args(data)
    for _ in range(min(n // 10, 1000)):
        ctx.invoke_sync(target)
    ns = [0] * n
    clock = time.perf_counter_ns
    start = clock()
    for i in range(n):
        t0 = clock()
        ctx.invoke_sync(target)
        ns[i] = clock() - t0
    return _bench_json(target, ns, clock() - start)


def method(ctx: gloam.Context, data: bytes) -> bytes:
    """Answer the gRPC method this call is for (``""`` for a plain function)."""
    return ctx.method.encode()


HANDLERS: dict[str, gloam.Handler] = {
    "Foo": foo,
    "Bar": bar,
    "Nop": nop,
    "Echo": echo,
    "Fail": fail,
    "Crash": crash,
    "Sleep": sleep,
    "Fanout": fanout,
    "InvokeOther": invoke_other,
    "CallRust": invoke_other,
    "PassOn": pass_on,
    "BenchInternal": bench_internal,
    "BenchInternalSync": bench_internal_sync,
    "Method": method,
}

if __name__ == "__main__":
    gloam.serve(HANDLERS)
