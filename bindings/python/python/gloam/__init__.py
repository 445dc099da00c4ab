"""Gloam's Python SDK: serve functions on a Gloam engine and call other functions.

A program holds handlers by name; the engine's launcher tells each process which one to serve::

    import gloam

    async def foo(ctx: gloam.Context, data: bytes) -> bytes:
        out = await ctx.invoke("Bar", data)
        return b"From function Bar: " + out

    def bar(ctx: gloam.Context, data: bytes) -> bytes:
        return b"Hello, " + (data or b"World")

    if __name__ == "__main__":
        gloam.serve({"Foo": foo, "Bar": bar})

Handlers are ``def`` (run on a thread; call others with ``ctx.invoke_sync``) or ``async def``
(run on the event loop; call others with ``await ctx.invoke``). Errors are
:class:`GloamError` subclasses, one per error kind; one that a handler lets through (e.g. the
:class:`Timeout` of an internal call) fails its call with that kind, not ``HANDLER_FAILED``.
"""

from ._context import Context, Payload
from ._errors import (
    FunctionNotFound,
    FunctionUnavailable,
    GloamError,
    HandlerFailed,
    InternalError,
    InvalidArgument,
    InvalidConfig,
    IoError,
    Overloaded,
    PayloadTooLarge,
    ProtocolError,
    Shutdown,
    Timeout,
    WorkerCrashed,
)
from ._gloam import __version__
from ._serve import Handler, handler, serve, serve_async

__all__ = [
    "Context",
    "FunctionNotFound",
    "FunctionUnavailable",
    "GloamError",
    "Handler",
    "HandlerFailed",
    "InternalError",
    "InvalidArgument",
    "InvalidConfig",
    "IoError",
    "Overloaded",
    "Payload",
    "PayloadTooLarge",
    "ProtocolError",
    "Shutdown",
    "Timeout",
    "WorkerCrashed",
    "__version__",
    "handler",
    "serve",
    "serve_async",
]
