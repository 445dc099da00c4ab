"""The worker runtime: logical workers on one asyncio event loop, handlers, registration."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import (
    Awaitable,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from . import _gloam
from ._context import Context, Payload, to_bytes
from ._errors import GloamError, InvalidArgument, InvalidConfig, Shutdown
from ._logging import install_logging

__all__ = ["Handler", "handler", "serve", "serve_async"]

_log = logging.getLogger("gloam")

#: A handler: ``def f(ctx, data) -> bytes`` or ``async def f(ctx, data) -> bytes`` (``str`` and
#: other bytes-like results are accepted too).
Handler = Callable[[Context, bytes], Union[Payload, Awaitable[Payload]]]

H = TypeVar("H", bound=Handler)

_registry: Dict[str, Handler] = {}


@overload
def handler(target: H) -> H: ...


@overload
def handler(target: str) -> Callable[[H], H]: ...


def handler(target: Union[H, str]) -> Union[H, Callable[[H], H]]:
    """Register a handler for :func:`serve` called without a mapping.

    Use ``@gloam.handler`` to register a function under its own name, or
    ``@gloam.handler("Name")`` to choose the name::

        @gloam.handler("Foo")
        async def foo(ctx: gloam.Context, data: bytes) -> bytes:
            return b"From function Bar: " + await ctx.invoke("Bar", data)
    """
    if isinstance(target, str):
        name = target

        def register(fn: H) -> H:
            _registry[name] = fn
            return fn

        return register
    _registry[target.__name__] = target
    return target


def serve(
    handlers: Optional[Mapping[str, Handler]] = None, *, workers: Optional[int] = None
) -> None:
    """Serve this process's function until the engine retires its workers or stops.

    ``handlers`` maps handler names to handlers (default: those registered with
    :func:`handler`). The handler run is the one named by ``GLOAM_HANDLER``, or else
    ``GLOAM_FUNCTION``; ``workers`` logical workers are hosted (default ``GLOAM_WORKERS``, or 1).
    ``async def`` handlers run concurrently on one event loop, plain ``def`` handlers on
    threads. Raises :class:`gloam.InvalidConfig` when the environment names no handler of the
    program, and the error of a worker that could not connect.
    """
    asyncio.run(serve_async(handlers, workers=workers))


async def serve_async(
    handlers: Optional[Mapping[str, Handler]] = None, *, workers: Optional[int] = None
) -> None:
    """Like :func:`serve`, as a coroutine on the running event loop."""
    install_logging()
    function, handler_name, ipc_root = _gloam.options_from_env()
    count = _gloam.workers_from_env() if workers is None else workers
    if count < 1:
        raise InvalidArgument(f"invalid argument `workers`: {count} (expected 1 or more)")
    fn = _pick(dict(_registry if handlers is None else handlers), handler_name)
    runtime = _Runtime(count, fn)
    loop = asyncio.get_running_loop()
    connect = functools.partial(_gloam.Worker, function, ipc_root)
    results = await asyncio.gather(
        *(loop.run_in_executor(runtime.receivers, connect) for _ in range(count)),
        return_exceptions=True,
    )
    connected: List[_gloam.Worker] = [r for r in results if isinstance(r, _gloam.Worker)]
    try:
        for r in results:
            if isinstance(r, BaseException):
                raise r
        _log.debug("serving %s with handler %s on %d workers", function, handler_name, count)
        outcomes = await asyncio.gather(
            *(runtime.run(worker) for worker in connected), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
    finally:
        for worker in connected:
            worker.close()
        runtime.shutdown()


def _pick(handlers: Dict[str, Handler], name: str) -> Handler:
    """Return the handler called ``name``, checking that every handler is callable."""
    for key, fn in handlers.items():
        if not callable(fn):
            raise InvalidConfig(f"handler {key!r} is not callable: {fn!r}")
    try:
        return handlers[name]
    except KeyError:
        known = ", ".join(sorted(handlers)) or "none"
        raise InvalidConfig(
            f"this program has no handler for function {name!r} (it has: {known})"
        ) from None


def _is_async(fn: Handler) -> bool:
    """Whether ``fn`` is an ``async def`` function (or a callable object with one)."""
    call = type(fn).__call__ if not inspect.isroutine(fn) else None
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _describe(exc: BaseException) -> str:
    """Return the message a failed call carries: ``TypeName: message``.

    With ``GLOAM_DEBUG=1`` (a function with ``debug = true``) the traceback follows it; it
    always goes to the worker's log.
    """
    text = str(exc)
    name = type(exc).__name__
    described = f"{name}: {text}" if text else name
    if os.environ.get("GLOAM_DEBUG") == "1":
        trace = "".join(traceback.format_tb(exc.__traceback__))
        described += "\nTraceback (most recent call last):\n" + trace.rstrip()
    return described


class _Runtime:
    """Executors and the receive/answer loop shared by the process's logical workers."""

    def __init__(self, count: int, fn: Handler) -> None:
        self.fn = fn
        self.is_async = _is_async(fn)
        self.loop_thread = threading.get_ident()
        # One thread per logical worker waits in `recv` (the GIL released meanwhile).
        self.receivers = ThreadPoolExecutor(count, thread_name_prefix="gloam-recv")
        # Plain handlers: one thread per logical worker runs its receive/answer loop.
        self.handlers = ThreadPoolExecutor(count, thread_name_prefix="gloam-handler")
        # Internal calls waiting for their answer; generous, threads start only when needed.
        self.invokers = ThreadPoolExecutor(max(64, 16 * count), thread_name_prefix="gloam-invoke")

    def shutdown(self) -> None:
        """Stop the executors without waiting (closed workers end their waits)."""
        for pool in (self.receivers, self.handlers, self.invokers):
            pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, worker: _gloam.Worker) -> None:
        """Receive and answer calls on ``worker`` until it is retired or closed."""
        loop = asyncio.get_running_loop()
        if not self.is_async:
            # Plain handlers run on the worker's own thread, right after receiving: no hop to the
            # event loop and back per call (each hop is a thread wake-up, tens of µs).
            await loop.run_in_executor(self.handlers, self._run_sync, worker, loop)
            return
        while (call := await loop.run_in_executor(self.receivers, worker.next_call)) is not None:
            await self.answer(worker, call)

    def _run_sync(self, worker: _gloam.Worker, loop: asyncio.AbstractEventLoop) -> None:
        """Receive and answer calls with a plain handler, on a thread of its own."""
        while (call := worker.next_call()) is not None:
            self._answer_sync(worker, call, loop)

    def _answer_sync(
        self, worker: _gloam.Worker, call: _gloam.Call, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Run a plain handler for ``call`` on this thread and send its answer."""
        ctx = Context(worker, call, self.invokers, self.loop_thread)
        try:
            out = self.fn(ctx, call.input)
            # A plain function may still return an awaitable: finish it on the loop.
            if inspect.isawaitable(out):
                out = asyncio.run_coroutine_threadsafe(_awaited(out), loop).result()
            output = to_bytes(out, "handler result")
        except Exception as exc:
            _handler_failed(worker, call, exc)
            return
        except BaseException:
            _stopping(worker, call)
            raise
        _send(worker.complete, call, output)

    async def answer(self, worker: _gloam.Worker, call: _gloam.Call) -> None:
        """Run the ``async def`` handler for ``call`` and send its output or its failure."""
        ctx = Context(worker, call, self.invokers, self.loop_thread)
        try:
            out = self.fn(ctx, call.input)
            if inspect.isawaitable(out):
                out = await out
            output = to_bytes(out, "handler result")
        except Exception as exc:
            _handler_failed(worker, call, exc)
            return
        except BaseException:
            _stopping(worker, call)
            raise
        _send(worker.complete, call, output)


def _failure(exc: Exception) -> Tuple[str, str]:
    """Return the error kind and message a call fails with when its handler raised ``exc``.

    A :class:`GloamError` let through by the handler (e.g. the :class:`Timeout` of an internal
    call) keeps its kind when that kind is the outcome of a call (``FUNCTION_NOT_FOUND``,
    ``PAYLOAD_TOO_LARGE``, ``HANDLER_FAILED``, ``WORKER_CRASHED``, ``TIMEOUT``, ``OVERLOADED``,
    ``SHUTDOWN``), with its message. Anything else is ``HANDLER_FAILED`` with ``Type: message``.
    """
    if isinstance(exc, GloamError):
        passed = _gloam.pass_on(exc.kind, exc.message)
        if passed is not None:
            return passed
    return "HANDLER_FAILED", _describe(exc)


def _handler_failed(worker: _gloam.Worker, call: _gloam.Call, exc: Exception) -> None:
    """Fail ``call`` with the handler's exception (see :func:`_failure`); the worker lives on."""
    _log.warning("%s: handler failed call %#x", worker.function, call.call_id, exc_info=True)
    _send(worker.fail, call, *_failure(exc))


def _stopping(worker: _gloam.Worker, call: _gloam.Call) -> None:
    """Answer ``call`` on cancellation or interpreter exit: the caller must still get one."""
    _send(worker.fail, call, "SHUTDOWN", "the worker process is stopping")


async def _awaited(value: Awaitable[Payload]) -> Payload:
    """Await ``value`` (lets an arbitrary awaitable run through run_coroutine_threadsafe)."""
    return await value


def _send(answer: Callable[..., None], call: _gloam.Call, *args: object) -> None:
    """Send an answer; a failure is logged (the engine answers the caller regardless)."""
    try:
        answer(call, *args)
    except Shutdown:
        pass
    except GloamError as exc:
        _log.warning("could not answer call %#x: %s", call.call_id, exc)
