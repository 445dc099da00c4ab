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

Start it with ``gloam up`` (``command = "python3"``, ``args = [".../main.py"]``); the function
served is ``GLOAM_HANDLER`` or else ``GLOAM_FUNCTION``.
"""

from __future__ import annotations

import asyncio
import os

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
}

if __name__ == "__main__":
    gloam.serve(HANDLERS)
