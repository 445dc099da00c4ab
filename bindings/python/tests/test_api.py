"""The package itself, without an engine: exceptions, environment, stubs and types."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gloam
import pytest
from gloam import _gloam
from gloam._errors import error_for

ROOT = Path(__file__).resolve().parents[3]

KINDS = {
    "INVALID_ARGUMENT": gloam.InvalidArgument,
    "INVALID_CONFIG": gloam.InvalidConfig,
    "FUNCTION_NOT_FOUND": gloam.FunctionNotFound,
    "PAYLOAD_TOO_LARGE": gloam.PayloadTooLarge,
    "HANDLER_FAILED": gloam.HandlerFailed,
    "WORKER_CRASHED": gloam.WorkerCrashed,
    "TIMEOUT": gloam.Timeout,
    "OVERLOADED": gloam.Overloaded,
    "PROTOCOL_ERROR": gloam.ProtocolError,
    "SHUTDOWN": gloam.Shutdown,
    "IO": gloam.IoError,
    "INTERNAL": gloam.InternalError,
    "FUNCTION_UNAVAILABLE": gloam.FunctionUnavailable,
}


def test_one_exception_class_per_kind() -> None:
    """Every core error kind has its class under ``GloamError`` with its ``kind``."""
    for kind, cls in KINDS.items():
        err = error_for(kind, "msg")
        assert type(err) is cls
        assert isinstance(err, gloam.GloamError)
        assert err.kind == kind and str(err) == "msg"
    unknown = error_for("NEW_KIND", "msg")
    assert type(unknown) is gloam.InternalError and "NEW_KIND" in str(unknown)


def test_environment_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad ``GLOAM_*`` variables raise ``gloam.InvalidConfig`` naming the variable."""
    monkeypatch.delenv("GLOAM_FUNCTION", raising=False)
    with pytest.raises(gloam.InvalidConfig, match="GLOAM_FUNCTION"):
        _gloam.options_from_env()
    monkeypatch.setenv("GLOAM_FUNCTION", "Foo")
    monkeypatch.setenv("GLOAM_HANDLER", "Echo")
    assert _gloam.options_from_env()[:2] == ("Foo", "Echo")
    monkeypatch.setenv("GLOAM_WORKERS", "0")
    with pytest.raises(gloam.InvalidConfig, match="GLOAM_WORKERS"):
        _gloam.workers_from_env()
    monkeypatch.setenv("GLOAM_WORKERS", "3")
    assert _gloam.workers_from_env() == 3


def test_serve_without_handler_names_the_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` refuses an environment that names no handler of the program."""
    monkeypatch.setenv("GLOAM_FUNCTION", "Missing")
    monkeypatch.delenv("GLOAM_HANDLER", raising=False)
    with pytest.raises(gloam.InvalidConfig, match=r"no handler for function 'Missing'.*Echo"):
        gloam.serve({"Echo": lambda ctx, data: data})


def test_connect_without_engine_fails_fast(tmp_path: Path) -> None:
    """A worker whose engine is absent raises a ``GloamError`` after its connect timeout."""
    with pytest.raises(gloam.GloamError):
        _gloam.Worker("Echo", str(tmp_path), connect_timeout=0.2)


def test_decorator_registers_handlers() -> None:
    """``@gloam.handler`` and ``@gloam.handler("Name")`` register for ``serve()``."""
    from gloam import _serve

    @gloam.handler
    def plain(ctx: gloam.Context, data: bytes) -> bytes:
        return data

    @gloam.handler("Named")
    async def named(ctx: gloam.Context, data: bytes) -> bytes:
        return data

    assert _serve._registry["plain"] is plain
    assert _serve._registry["Named"] is named


def test_stub_type_check() -> None:
    """The package, its stubs, the example and the test worker pass ``mypy --strict``."""
    targets = [
        str(Path(gloam.__file__).parent),
        str(ROOT / "examples" / "hello-python" / "main.py"),
    ]
    cache = ROOT / "target" / "mypy-cache-python"
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", f"--cache-dir={cache}", *targets],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_core_logs_reach_python_logging(tmp_path: Path) -> None:
    """``tracing`` events of the core arrive at ``logging.getLogger("gloam")``."""
    script = (
        "import logging, sys\n"
        "logging.basicConfig(\n"
        "    level=logging.DEBUG, stream=sys.stdout, format='%(name)s %(message)s'\n"
        ")\n"
        "from gloam import _gloam\n"
        "from gloam._logging import install_logging\n"
        "install_logging()\n"
        "try:\n"
        f"    _gloam.Worker('Echo', {str(tmp_path)!r}, connect_timeout=0.2)\n"
        "except Exception as exc:\n"
        "    print('raised', type(exc).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GLOAM_LOG": "debug"},
    )
    assert done.returncode == 0, done.stderr
    assert "gloam engine socket not ready, retrying" in done.stdout, done.stdout
