"""Type stubs of the private native module ``gloam._gloam`` (use the ``gloam`` package)."""

from typing import List, Optional, Tuple

__version__: str
INLINE_CAPACITY: int

class Call:
    """A received call; answered once with ``Worker.complete`` or ``Worker.fail``."""

    @property
    def call_id(self) -> int:
        """The 64-bit call id."""
    @property
    def deadline_ns(self) -> int:
        """The deadline as ``CLOCK_MONOTONIC`` nanoseconds; 0 means none."""
    @property
    def method(self) -> str:
        """The gRPC method the call is for (``"SayHello"``); ``""`` for a plain function."""
    @property
    def function_id(self) -> int:
        """The id of the function called."""
    @property
    def input(self) -> bytes:
        """A copy of the input bytes (empty once answered)."""
    @property
    def pending(self) -> bool:
        """Whether the call still waits for its answer."""

class Worker:
    """A logical worker connected to the engine; thread-safe, releases the GIL when waiting."""

    def __init__(self, function: str, ipc_root: str, *, connect_timeout: float = 10.0) -> None:
        """Connect to the engine and perform the handshake."""
    @property
    def id(self) -> int:
        """The worker id the engine assigned."""
    @property
    def function(self) -> str:
        """The function served."""
    @property
    def function_id(self) -> int:
        """The id of the function served."""
    @property
    def max_payload(self) -> int:
        """The largest payload in bytes."""
    @property
    def functions(self) -> List[str]:
        """The names of the functions deployed on the engine."""
    def recv(self, timeout: Optional[float] = None) -> Optional[Call]:
        """Wait for the next call; ``None`` on timeout or wake."""
    def next_call(self) -> Optional[Call]:
        """Wait for the next call of a serve loop; ``None`` once retired or shut down."""
    def wake(self) -> None:
        """Make a waiting ``recv`` return ``None`` (releases the GIL)."""
    def close(self) -> None:
        """Close the worker; waiting and later calls raise ``gloam.Shutdown`` (releases the GIL)."""
    def complete(self, call: Call, output: bytes) -> None:
        """Answer ``call`` with ``output``."""
    def fail(self, call: Call, kind: str, message: str) -> None:
        """Fail ``call`` with an error kind name and a message."""
    def invoke(self, parent: Call, name: str, data: bytes) -> bytes:
        """Call function ``name`` on behalf of ``parent``; blocks with the GIL released."""

def options_from_env() -> Tuple[str, str, str]:
    """Return ``(function, handler, ipc_root)`` from the environment."""

def workers_from_env() -> int:
    """Return the number of logical workers to host (``GLOAM_WORKERS``)."""

def now_ns() -> int:
    """Return ``CLOCK_MONOTONIC`` in nanoseconds."""

LOG_QUEUE_CAPACITY: int

def install_logging() -> Optional[int]:
    """Queue the core's ``tracing`` events; return the wake-up descriptor to ``os.read``.

    ``None`` when another global ``tracing`` subscriber is installed. See ``gloam._logging``.
    """

def take_log_records() -> Tuple[List[Tuple[int, str]], int]:
    """Take the queued ``(level, text)`` records and the count dropped since; never blocks."""

def pass_on(kind: str, message: str) -> Optional[Tuple[str, str]]:
    """Return the ``(kind, message)`` a call fails with when its handler raised ``kind``.

    ``None`` when that kind may not be passed on (only the outcomes of a call may).
    """
