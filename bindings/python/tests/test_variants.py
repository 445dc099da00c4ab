"""Sync and async handlers, the context, output types and logical-worker concurrency."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from conftest import MAX_PAYLOAD, Engine, error_of


def test_sync_handler_invoke_sync(engine: Engine) -> None:
    """A plain ``def`` handler calls another function with ``ctx.invoke_sync``."""
    assert engine.post("FooSync", b"sync") == (200, b"From function Bar: Hello, sync")


def test_async_handler_refuses_invoke_sync(engine: Engine) -> None:
    """``invoke_sync`` on the event loop is refused with a clear message."""
    code, body = engine.post("BlockingInAsync", b"x")
    assert code == 500, body
    assert "RuntimeError: ctx.invoke_sync() would block the event loop" in error_of(body)[1]


def test_str_output_is_utf8(engine: Engine) -> None:
    """A ``str`` result is sent as UTF-8."""
    assert engine.post("Text", b"w\xc3\xb6rld") == (200, "héllo wörld".encode())


def test_bad_output_type(engine: Engine) -> None:
    """A result that is neither bytes-like nor ``str`` fails the call and says why."""
    code, body = engine.post("BadOutput")
    assert code == 500, body
    kind, message = error_of(body)
    assert kind == "HANDLER_FAILED"
    assert "handler result must be bytes, bytearray, memoryview or str, not int" in message


def test_context_fields(engine: Engine) -> None:
    """``ctx.function``, ``call_id``, ``worker_id``, ``deadline``, ``max_payload``."""
    code, body = engine.post("Info", b"", {"X-Gloam-Timeout": "5000"})
    assert code == 200, body
    doc = json.loads(body)
    assert doc["function"] == "Info"
    assert isinstance(doc["call_id"], int) and doc["call_id"] > 0
    assert isinstance(doc["worker_id"], int)
    assert doc["deadline"] is not None
    assert 0 < doc["remaining"] <= 5.0
    assert doc["max_payload"] == MAX_PAYLOAD


def _concurrently(engine: Engine, name: str, inputs: list[bytes]) -> list[tuple[int, bytes]]:
    with ThreadPoolExecutor(len(inputs)) as pool:
        return list(pool.map(lambda data: engine.post(name, data), inputs))


def test_logical_workers_run_async_handlers_concurrently(engine: Engine) -> None:
    """Three logical workers of one process run three async calls at once on one loop.

    Each call returns only once all three are inside the handler.
    """
    results = _concurrently(engine, "Rendezvous", [b"3:async"] * 3)
    assert results == [(200, b"met")] * 3


def test_logical_workers_run_sync_handlers_on_threads(engine: Engine) -> None:
    """Three plain handlers of one process run at once, each on its own thread."""
    results = _concurrently(engine, "RendezvousSync", [b"3:sync"] * 3)
    assert results == [(200, b"met")] * 3
