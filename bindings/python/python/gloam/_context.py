"""The handler's view of its call: :class:`Context`, internal calls, payload conversion."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Executor
from typing import Optional, Union

from . import _gloam

__all__ = ["Context", "Payload", "to_bytes"]

#: What a handler may return and what ``invoke`` accepts: bytes-like objects, or ``str``
#: (encoded as UTF-8).
Payload = Union[bytes, bytearray, memoryview, str]


def to_bytes(value: object, what: str) -> bytes:
    """Return ``value`` as ``bytes``: bytes-like objects as they are, ``str`` as UTF-8.

    Anything else raises :class:`TypeError` whose message names ``what`` and the type found.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(
        f"{what} must be bytes, bytearray, memoryview or str, not {type(value).__name__}"
    )


class Context:
    """What a handler sees of the call it runs, and how it calls other functions.

    A ``Context`` is valid while its handler runs. In ``async def`` handlers make internal calls
    with ``await ctx.invoke(...)`` (several may run at once, e.g. with ``asyncio.gather``); in
    plain ``def`` handlers, which run on a thread of their own, use ``ctx.invoke_sync(...)``.
    """

    __slots__ = ("_worker", "_call", "_invokers", "_loop_thread")

    def __init__(
        self,
        worker: _gloam.Worker,
        call: _gloam.Call,
        invokers: Executor,
        loop_thread: int,
    ) -> None:
        """Wrap ``call`` received by ``worker``; the runtime creates contexts, not users."""
        self._worker = worker
        self._call = call
        self._invokers = invokers
        self._loop_thread = loop_thread

    @property
    def function(self) -> str:
        """The name of the function being run (``GLOAM_FUNCTION``)."""
        return self._worker.function

    @property
    def call_id(self) -> int:
        """The call's 64-bit id.

        An asynchronous call keeps it when it runs again after an engine restart: deduplicate
        on it.
        """
        return self._call.call_id

    @property
    def method(self) -> str:
        """The gRPC method this call is for (``""`` for a plain function).

        ``"SayHello"`` for ``/demo.Greeter/SayHello`` served by function ``grpc:demo.Greeter``;
        the request is that method's raw protobuf message: parse it with your generated
        ``_pb2`` code.
        """
        return self._call.method

    @property
    def worker_id(self) -> int:
        """The id of the logical worker running the call."""
        return self._worker.id

    @property
    def max_payload(self) -> int:
        """The largest input or output, in bytes, the engine accepts."""
        return self._worker.max_payload

    @property
    def deadline_ns(self) -> int:
        """The deadline in ``CLOCK_MONOTONIC`` nanoseconds (``time.monotonic_ns()``); 0: none."""
        return self._call.deadline_ns

    @property
    def deadline(self) -> Optional[float]:
        """The deadline on the ``time.monotonic()`` clock, in seconds; ``None`` when unset."""
        ns = self._call.deadline_ns
        return ns / 1e9 if ns else None

    def remaining(self) -> Optional[float]:
        """Seconds left until the deadline (never negative); ``None`` when there is none."""
        ns = self._call.deadline_ns
        if not ns:
            return None
        return max(0, ns - _gloam.now_ns()) / 1e9

    async def invoke(self, name: str, data: Payload = b"") -> bytes:
        """Call function ``name`` with ``data`` through the engine and return its output.

        The internal call inherits this call's deadline. The wait happens on a thread with the
        GIL released, so the event loop keeps running other handlers and other calls.

        Raises the :class:`gloam.GloamError` subclass of the failure: for example
        :class:`gloam.FunctionNotFound`, :class:`gloam.PayloadTooLarge`,
        :class:`gloam.HandlerFailed` (the callee raised), :class:`gloam.Timeout`. Left
        uncaught, it fails this call with the same kind and message (a callee's timeout is
        this call's ``TIMEOUT``, HTTP 504), for the kinds that are outcomes of a call; see the
        package README.
        """
        payload = to_bytes(data, "invoke data")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._invokers, self._worker.invoke, self._call, name, payload
        )

    def invoke_sync(self, name: str, data: Payload = b"") -> bytes:
        """Like :meth:`invoke`, but blocks the calling thread until the answer.

        For plain ``def`` handlers. Calling it on the event loop's thread (from an ``async def``
        handler) raises :class:`RuntimeError`: it would stall every logical worker of the
        process; use ``await ctx.invoke(...)`` there.
        """
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "ctx.invoke_sync() would block the event loop; "
                "use `await ctx.invoke(...)` in async handlers"
            )
        return self._worker.invoke(self._call, name, to_bytes(data, "invoke data"))

    def __repr__(self) -> str:
        """Show the function and call id."""
        return f"<gloam.Context function={self.function!r} call_id={self.call_id:#x}>"
