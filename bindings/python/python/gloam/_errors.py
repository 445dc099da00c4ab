"""Gloam's exceptions: one class per core error kind, all under :class:`GloamError`."""

from __future__ import annotations

from typing import Dict, Type

__all__ = [
    "GloamError",
    "InvalidArgument",
    "InvalidConfig",
    "FunctionNotFound",
    "PayloadTooLarge",
    "HandlerFailed",
    "WorkerCrashed",
    "Timeout",
    "Overloaded",
    "ProtocolError",
    "Shutdown",
    "IoError",
    "InternalError",
    "FunctionUnavailable",
    "error_for",
]


class GloamError(Exception):
    """Base class of every error Gloam raises.

    ``kind`` is the stable upper-snake name of the core's error kind (``"FUNCTION_NOT_FOUND"``,
    ``"TIMEOUT"``, ...), the same string the HTTP gateway puts in its error bodies.
    """

    kind: str = "INTERNAL"

    def __init__(self, message: str = "") -> None:
        """Create the error with a human-readable ``message``."""
        super().__init__(message)
        self.message = message


class InvalidArgument(GloamError):
    """An argument is invalid (a bad function name, a call answered twice, ...)."""

    kind = "INVALID_ARGUMENT"


class InvalidConfig(GloamError):
    """The configuration is invalid (``GLOAM_FUNCTION`` unset, no handler for it, ...)."""

    kind = "INVALID_CONFIG"


class FunctionNotFound(GloamError):
    """The called function is not deployed on this engine; the message names it."""

    kind = "FUNCTION_NOT_FOUND"


class PayloadTooLarge(GloamError):
    """A payload exceeds the configured limit; the message gives both sizes."""

    kind = "PAYLOAD_TOO_LARGE"


class HandlerFailed(GloamError):
    """The called function's handler failed; the message is the handler's."""

    kind = "HANDLER_FAILED"


class WorkerCrashed(GloamError):
    """The worker running the called function died before answering."""

    kind = "WORKER_CRASHED"


class Timeout(GloamError):
    """The call's deadline passed before it finished."""

    kind = "TIMEOUT"


class Overloaded(GloamError):
    """The called function's queue is full; retry later."""

    kind = "OVERLOADED"


class ProtocolError(GloamError):
    """A peer sent bytes that do not decode as a Gloam message."""

    kind = "PROTOCOL_ERROR"


class Shutdown(GloamError):
    """The engine or this worker is shutting down."""

    kind = "SHUTDOWN"


class IoError(GloamError):
    """An operating-system call failed; the message names the operation and the path."""

    kind = "IO"


class InternalError(GloamError):
    """A bug in Gloam. Please report it."""

    kind = "INTERNAL"


class FunctionUnavailable(GloamError):
    """The called function has no worker and its workers cannot start; the message says why."""

    kind = "FUNCTION_UNAVAILABLE"


_BY_KIND: Dict[str, Type[GloamError]] = {
    cls.kind: cls
    for cls in (
        InvalidArgument,
        InvalidConfig,
        FunctionNotFound,
        PayloadTooLarge,
        HandlerFailed,
        WorkerCrashed,
        Timeout,
        Overloaded,
        ProtocolError,
        Shutdown,
        IoError,
        InternalError,
        FunctionUnavailable,
    )
}


def error_for(kind: str, message: str) -> GloamError:
    """Return the exception of the error ``kind`` (e.g. ``"TIMEOUT"``) carrying ``message``.

    An unknown kind gives an :class:`InternalError` whose message names it.
    """
    cls = _BY_KIND.get(kind)
    if cls is None:
        return InternalError(f"{kind}: {message}")
    return cls(message)
