"""The conformance cases every Gloam binding implements, under the shared names."""

from __future__ import annotations

import os

from conftest import MAX_PAYLOAD, Engine, error_of, poll


def test_echo(engine: Engine) -> None:
    """Echo returns its input, through a sync handler and an async one."""
    assert engine.post("Echo", b"hello") == (200, b"hello")
    assert engine.post("EchoAsync", b"hello") == (200, b"hello")
    assert engine.post("Bar", b"you") == (200, b"Hello, you")


def test_empty_input(engine: Engine) -> None:
    """An empty input reaches the handler as ``b""``; an empty output is a 200."""
    assert engine.post("Echo", b"") == (200, b"")
    assert engine.post("Bar", b"") == (200, b"Hello, World")
    assert engine.post("Nop", b"ignored") == (200, b"")
    assert engine.post("Probe", b"Echo:") == (200, b"")


def test_inline_edge_960_and_961(engine: Engine) -> None:
    """960 bytes travel inline, 961 through shared memory: both arrive intact, both ways."""
    for size in (959, 960, 961):
        data = bytes(i % 251 for i in range(size))
        assert engine.post("Echo", data) == (200, data)
        # Internal call: input and output of exactly `size` bytes.
        assert engine.post("Probe", b"Echo:" + data) == (200, data)


def test_shm_payload_2mib(engine: Engine) -> None:
    """A 2 MiB payload goes through shared memory, externally and in an internal call."""
    data = os.urandom(2 * 1024 * 1024)
    assert engine.post("Echo", data) == (200, data)
    assert engine.post("Probe", b"Echo:" + data) == (200, data)
    assert engine.post("ProbeSync", b"RustEcho:" + data) == (200, data)


def test_oversize(engine: Engine) -> None:
    """Over the limit: HTTP 413; an internal call raises ``gloam.PayloadTooLarge``."""
    code, body = engine.post("Echo", b"x" * (MAX_PAYLOAD + 1))
    assert code == 413, body
    assert error_of(body)[0] == "PAYLOAD_TOO_LARGE"
    code, body = engine.post("Oversize")
    assert code == 200, body
    assert body.startswith(b"raised PayloadTooLarge kind=PAYLOAD_TOO_LARGE: "), body
    assert str(MAX_PAYLOAD + 1).encode() in body


def test_handler_error(engine: Engine) -> None:
    """A raising handler gives HTTP 500 with ``Type: message``; the worker lives on."""
    for _ in range(2):
        code, body = engine.post("Fail", b"x")
        assert code == 500, body
        kind, message = error_of(body)
        assert kind == "HANDLER_FAILED"
        assert "ValueError: Fail was called" in message
    assert engine.function_status("Fail")["workers"] >= 1
    # Seen from a caller: gloam.HandlerFailed with the callee's message.
    code, body = engine.post("Probe", b"Fail:x")
    assert code == 200, body
    assert body.startswith(b"raised HandlerFailed kind=HANDLER_FAILED: "), body
    assert b"ValueError: Fail was called" in body
    assert engine.post("Echo", b"after") == (200, b"after")


def test_internal_call(engine: Engine) -> None:
    """Python→Python (Foo→Bar) and Python→Rust (→ RustEcho) internal calls."""
    assert engine.post("Foo", b"x") == (200, b"From function Bar: Hello, x")
    assert engine.post("Foo", b"") == (200, b"From function Bar: Hello, World")
    assert engine.post("InvokeOther", b"RustEcho:payload") == (200, b"payload")
    assert engine.post("Probe", b"RustEcho:from python") == (200, b"from python")


def test_concurrent_internal_calls(engine: Engine) -> None:
    """Three internal calls at once with ``asyncio.gather``, answers matched to callers."""
    assert engine.post("Fanout", b"x") == (200, b"x#0;x#1;x#2")
    for i in range(5):
        data = b"round%d" % i
        assert engine.post("Fanout", data) == (200, b";".join(data + b"#%d" % j for j in range(3)))


def test_unknown_function(engine: Engine) -> None:
    """HTTP 404 naming the function; ``ctx.invoke`` raises ``gloam.FunctionNotFound``."""
    code, body = engine.post("Nope", b"x")
    assert code == 404, body
    kind, message = error_of(body)
    assert kind == "FUNCTION_NOT_FOUND"
    assert "Nope" in message
    for probe in ("Probe", "ProbeSync"):
        code, body = engine.post(probe, b"Nope:x")
        assert code == 200, body
        assert body.startswith(b"raised FunctionNotFound kind=FUNCTION_NOT_FOUND: "), body
        assert b"Nope" in body


def test_worker_crash(engine: Engine) -> None:
    """A crashing process gives HTTP 502; the launcher restarts it and calls work again."""
    code, body = engine.post("Crash", b"x")
    assert code == 502, body
    assert error_of(body)[0] == "WORKER_CRASHED"

    def restarted() -> object:
        entry = engine.function_status("Crash")
        return True if entry["workers"] >= 1 and entry["idle"] >= 1 else None

    poll("the Crash worker to be restarted", restarted, timeout=30)
    poll("an Echo call to succeed", lambda: engine.post("Echo", b"ok") == (200, b"ok") or None)
    code, body = engine.post("Crash", b"x")
    assert code == 502, body


def test_deadline(engine: Engine) -> None:
    """A call past its deadline gives HTTP 504; an internal one raises ``gloam.Timeout``.

    The internal call outlives its parent's deadline, so the caller sees ``gloam.Timeout``.
    """
    code, body = engine.post("Sleep", b"2000", {"X-Gloam-Timeout": "200"})
    assert code == 504, body
    assert error_of(body)[0] == "TIMEOUT"

    report = engine.workdir / "deadline-probe.txt"
    code, body = engine.post("DeadlineProbe", str(report).encode(), {"X-Gloam-Timeout": "300"})
    assert code == 504, body
    text = poll("DeadlineProbe's report", lambda: report.read_text() or None, timeout=20)
    assert text == "Timeout TIMEOUT"


def test_passed_on_kind(engine: Engine) -> None:
    """A ``gloam`` exception a handler lets through fails its call with the error's kind.

    ``SleepShort`` times out (its own 200 ms) while its caller still runs: ``PassOn`` (plain
    ``def``, ``invoke_sync``) and ``InvokeOther`` (``async def``, ``await ctx.invoke``) let
    the ``gloam.Timeout`` through, and their caller sees HTTP 504 ``TIMEOUT``.
    """
    for fn in ("PassOn", "InvokeOther"):
        code, body = engine.post(fn, b"SleepShort:2000")
        assert code == 504, (fn, body)
        kind, message = error_of(body)
        assert kind == "TIMEOUT"
        assert "SleepShort" in message and not message.startswith("timeout: "), message
        poll(
            "SleepShort to be idle",
            lambda: engine.function_status("SleepShort")["idle"] >= 1 or None,
        )
    code, body = engine.post("PassOn", b"Crash:x")
    assert code == 502, body
    assert error_of(body)[0] == "WORKER_CRASHED"
    code, body = engine.post("PassOn", b"Nope:x")
    assert code == 404, body
    assert error_of(body)[0] == "FUNCTION_NOT_FOUND"
    # A plain handler error passed on stays HANDLER_FAILED with the callee's message.
    code, body = engine.post("PassOn", b"Fail:x")
    assert code == 500, body
    assert error_of(body) == ("HANDLER_FAILED", "ValueError: Fail was called")
    # Kinds about the handler's own process do not pass on; call outcomes do.
    code, body = engine.post("RaiseKind", b"PROTOCOL_ERROR")
    assert code == 500, body
    assert error_of(body) == ("HANDLER_FAILED", "ProtocolError: raised PROTOCOL_ERROR")
    code, body = engine.post("RaiseKind", b"OVERLOADED")
    assert code == 503, body
    assert error_of(body) == ("OVERLOADED", "raised OVERLOADED")
    poll("Crash to be restarted", lambda: engine.function_status("Crash")["idle"] >= 1 or None)


def test_method_name(engine: Engine) -> None:
    """The gRPC method reaches the handler as ``ctx.method``."""
    methods = "grpc:conformance.Methods"
    assert engine.post(methods, b"", {"X-Gloam-Method": "Second"}) == (200, b"Second")
    assert engine.post(methods) == (200, b"First")
    assert engine.post("Method") == (200, b"")
