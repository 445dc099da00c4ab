"""A real engine for the suite: ``target/debug/gloam up`` on a private IPC root and port."""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[3]
GLOAM = ROOT / "target" / "debug" / "gloam"
HELLO_RUST = ROOT / "target" / "debug" / "hello-rust"
EXAMPLE = ROOT / "examples" / "hello-python" / "main.py"
PROBES = Path(__file__).resolve().parent / "probe_worker.py"

#: The engine's payload limit in this suite (small, so the oversize cases stay quick).
MAX_PAYLOAD = 4 * 1024 * 1024
READY_TIMEOUT = 60.0

# Functions served by the example program itself, then by the probe program.
EXAMPLE_FUNCTIONS = [
    "Foo",
    "Bar",
    "Nop",
    "Fail",
    "Crash",
    "Sleep",
    "Fanout",
    "InvokeOther",
    "PassOn",
    "Method",
]
PROBE_FUNCTIONS = [
    "Probe",
    "ProbeSync",
    "Oversize",
    "DeadlineProbe",
    "EchoAsync",
    "FooSync",
    "BlockingInAsync",
    "Text",
    "BadOutput",
    "Info",
    "RaiseKind",
]
#: Served by no program of the suite: tests connect their own workers (``gloam._gloam.Worker``).
EXTERNAL_FUNCTION = "LogStress"
# Three logical workers in one process.
MULTI_WORKER_FUNCTIONS = ["Echo", "Rendezvous", "RendezvousSync"]


@dataclass
class Engine:
    """A running engine: its base URL and IPC root."""

    url: str
    ipc_root: Path
    workdir: Path

    def post(
        self, name: str, body: bytes = b"", headers: Optional[Mapping[str, str]] = None
    ) -> Tuple[int, bytes]:
        """POST ``body`` to function ``name``; return the status and the body."""
        return request(self.url, "POST", f"/function/{name}", body, headers)

    def status(self) -> Dict[str, Any]:
        """Return the engine's ``/_/status`` document."""
        code, body = request(self.url, "GET", "/_/status")
        assert code == 200, body
        doc: Dict[str, Any] = json.loads(body)
        return doc

    def function_status(self, name: str) -> Dict[str, Any]:
        """Return the status entry of function ``name``."""
        for entry in self.status()["functions"]:
            if entry["name"] == name:
                return dict(entry)
        raise AssertionError(f"{name} not in /_/status")


def request(
    url: str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Optional[Mapping[str, str]] = None,
    timeout: float = 30.0,
) -> Tuple[int, bytes]:
    """One HTTP request with the standard library; the status and body of the answer."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        hdrs = {"Content-Type": "application/octet-stream", **(headers or {})}
        try:
            conn.request(method, path, body=body, headers=hdrs)
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer (413) and close before reading a large body.
            pass
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def error_of(body: bytes) -> Tuple[str, str]:
    """``(error, message)`` of a JSON error body."""
    doc = json.loads(body)
    return doc["error"], doc["message"]


T = TypeVar("T")


def poll(what: str, check: Callable[[], Optional[T]], timeout: float = 30.0) -> T:
    """Call ``check`` until it returns something other than ``None`` (bounded)."""
    end = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while time.monotonic() < end:
        try:
            got = check()
            if got is not None:
                return got
        except (AssertionError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def _config(tmp: Path) -> str:
    python = _toml_str(sys.executable)
    lines = [
        "[engine]",
        f"ipc_root = {_toml_str(str(tmp / 'ipc'))}",
        'listen = "127.0.0.1:0"',
        f"log_dir = {_toml_str(str(tmp / 'logs'))}",
        f"max_payload = {MAX_PAYLOAD}",
        "",
    ]

    def function(name: str, program: Path, workers: int = 1, *extra: str) -> None:
        lines.extend(
            [
                f"[functions.{name}]",
                f"command = {python}",
                f"args = [{_toml_str(str(program))}]",
                f"min_workers = {workers}",
                f"max_workers = {workers}",
                f"workers_per_process = {workers}",
                *extra,
                "",
            ]
        )

    for name in EXAMPLE_FUNCTIONS:
        function(name, EXAMPLE)
    for name in PROBE_FUNCTIONS:
        function(name, PROBES)
    function("Echo", EXAMPLE, 3)
    function("Rendezvous", PROBES, 3)
    function("RendezvousSync", PROBES, 3)
    # Sleep with its own timeout, far below its callers' (30 s): see test_passed_on_kind.
    function("SleepShort", EXAMPLE, 1, 'env = { GLOAM_HANDLER = "Sleep" }', "timeout_ms = 200")
    function(
        '"grpc:conformance.Methods"',
        EXAMPLE,
        1,
        'env = { GLOAM_HANDLER = "Method" }',
        'grpc_methods = ["First", "Second"]',
    )
    lines.extend([f"[functions.{EXTERNAL_FUNCTION}]", "max_workers = 8", ""])
    lines.extend(
        [
            "[functions.RustEcho]",
            f"command = {_toml_str(str(HELLO_RUST))}",
            'env = { GLOAM_HANDLER = "Echo" }',
            "",
        ]
    )
    return "\n".join(lines)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """Start ``gloam up`` with every test function, yield it, stop it with SIGTERM."""
    for binary in (GLOAM, HELLO_RUST):
        if not binary.exists():
            pytest.fail(f"{binary} is missing: run `cargo build --workspace` first")
    tmp = Path(tempfile.mkdtemp(prefix="gloam-py-"))
    config = tmp / "gloam.toml"
    config.write_text(_config(tmp))
    stderr = open(tmp / "engine.stderr", "wb")
    proc = subprocess.Popen(
        [str(GLOAM), "up", str(config)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: "queue.Queue[Optional[bytes]]" = queue.Queue()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_stdout, daemon=True).start()

    def engine_log() -> str:
        return (tmp / "engine.stderr").read_text(errors="replace")[-4000:]

    url = None
    end = time.monotonic() + READY_TIMEOUT
    while url is None:
        try:
            line = lines.get(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            proc.kill()
            pytest.fail(f"no ready line within {READY_TIMEOUT} s; engine log:\n{engine_log()}")
        if line is None:
            pytest.fail(f"engine exited ({proc.wait()}) before ready; log:\n{engine_log()}")
        text = line.decode(errors="replace").strip()
        if text.startswith("gloam: ready "):
            url = text[len("gloam: ready ") :]
    try:
        yield Engine(url=url, ipc_root=tmp / "ipc", workdir=tmp)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"engine did not stop within 30 s of SIGTERM; log:\n{engine_log()}")
        stderr.close()
        ipc = tmp / "ipc"
        leftovers = [str(p) for p in ipc.iterdir()] if ipc.exists() else []
        assert code == 0, f"engine exited with {code}; log:\n{engine_log()}"
        assert not leftovers, f"IPC root not cleaned: {leftovers}"
        shutil.rmtree(tmp, ignore_errors=True)
