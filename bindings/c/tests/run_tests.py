#!/usr/bin/env python3
"""End-to-end conformance cases of the C binding.

Starts a real `gloam up` on a private IPC root with the C test worker, the C example program,
the Nightcore v1 host and (when present) the Rust example, then calls functions over HTTP.
Usage: run_tests.py BUILD_DIR   (BUILD_DIR holds test_worker, hello_c, lib{foo,bar}_v1.so)
Prints one line per case and a closing "N passed, N failed"; exits non-zero on any failure.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
ENGINE = os.path.join(ROOT, "target", "debug", "gloam")
CWORKER = os.path.join(ROOT, "target", "debug", "gloam-cworker")
RUST = os.path.join(ROOT, "target", "debug", "hello-rust")
MIB = 1024 * 1024
LIMIT = 16 * MIB  # the engine's default max_payload


def function(name, command, handler, args=(), workers=None, extra=()):
    lines = [f"[functions.{name}]", f"command = {json.dumps(command)}"]
    if args:
        lines.append(f"args = {json.dumps(list(args))}")
    lines.append(f'env = {{ GLOAM_HANDLER = "{handler}" }}')
    lines.append("min_workers = 1")
    if workers:
        lines.append(f"workers_per_process = {workers}")
    lines.extend(extra)
    return "\n".join(lines) + "\n"


class Engine:
    def __init__(self, build, tmp):
        self.tmp = tmp
        self.ipc = os.path.join(tmp, "ipc")
        tw = os.path.join(build, "test_worker")
        hc = os.path.join(build, "hello_c")
        cfg = [
            "[engine]",
            f'ipc_root = "{self.ipc}"',
            'listen = "127.0.0.1:0"',
            f'log_dir = "{os.path.join(tmp, "logs")}"',
            "",
        ]
        for h in ["Echo", "Fail", "Crash", "Sleep", "Big", "Invoke", "InvokeSize", "Deadline"]:
            cfg.append(function("C" + h, tw, h))
        cfg.append(function("CFanout", tw, "Fanout3", workers=2))
        for h in ["Foo", "Bar", "Nop", "Echo", "Fail", "Crash", "Sleep", "Fanout", "InvokeOther", "PassOn", "Method"]:
            cfg.append(function(h, hc, h))
        cfg.append(
            function(
                '"grpc:conformance.Methods"', hc, "Method", extra=['grpc_methods = ["First", "Second"]']
            )
        )
        # Its own timeout caps an internal call's deadline far below the caller's (30 s).
        cfg.append(function("SleepShort", hc, "Sleep", extra=["timeout_ms = 200"]))
        cfg.append(function("V1Foo", CWORKER, "Foo", args=[os.path.join(build, "libfoo_v1.so")]))
        cfg.append(function("V1Bar", CWORKER, "Bar", args=[os.path.join(build, "libbar_v1.so")]))
        self.has_rust = os.access(RUST, os.X_OK)
        if self.has_rust:
            cfg.append(function("RustEcho", RUST, "Echo"))
        self.config = os.path.join(tmp, "gloam.toml")
        with open(self.config, "w") as f:
            f.write("\n".join(cfg))
        env = dict(os.environ)
        # Leak checking in worker processes killed by the engine only adds noise to its logs;
        # test_api runs with it on.
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
        env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
        self.stderr = open(os.path.join(tmp, "engine.stderr"), "w")
        self.proc = subprocess.Popen(
            [ENGINE, "up", self.config], stdout=subprocess.PIPE, stderr=self.stderr, env=env, text=True
        )
        self.port = self._wait_ready(60)

    def _wait_ready(self, timeout):
        result = {}

        def read():
            for line in self.proc.stdout:
                if line.startswith("gloam: ready http://"):
                    result["port"] = int(line.strip().rsplit(":", 1)[1])
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        if "port" not in result:
            self.proc.kill()
            raise RuntimeError(f"engine not ready after {timeout}s; see {self.stderr.name}:\n" + self.tail())
        return result["port"]

    def tail(self, n=40):
        try:
            with open(self.stderr.name) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def call(self, name, body=b"", headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            try:
                conn.request("POST", f"/function/{name}", body=body, headers=headers or {})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway may answer (e.g. 413) and close before reading the body
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def call_raw(self, name, body):
        """POST over a plain socket, reading the reply while the body is still being written:
        the gateway may refuse a large body (413) and close before reading it all, and a client
        that writes everything first can lose that reply to the connection reset."""
        import socket

        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)

        def write():
            try:
                sock.sendall(
                    f"POST /function/{name} HTTP/1.1\r\nHost: gloam\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
                )
            except OSError:
                pass  # expected once the gateway has answered

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            resp = http.client.HTTPResponse(sock)
            resp.begin()
            return resp.status, resp.read()
        finally:
            sock.close()
            writer.join(60)

    def status(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/_/status")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError("engine did not stop within 60 s of SIGTERM")
        return rc


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def error_kind(body):
    try:
        return json.loads(body).get("error")
    except ValueError:
        return None


def case_echo(e):
    for name in ["CEcho", "Echo"]:
        st, out = e.call(name, b"hello gloam")
        expect((st, out) == (200, b"hello gloam"), f"{name}: {st} {out[:200]!r}")


def case_empty_input(e):
    st, out = e.call("CEcho", b"")
    expect((st, out) == (200, b""), f"CEcho: {st} {out!r}")
    st, out = e.call("Nop", b"ignored")
    expect((st, out) == (200, b""), f"Nop: {st} {out!r}")
    st, out = e.call("Bar", b"")
    expect((st, out) == (200, b"Hello, World"), f"Bar: {st} {out!r}")


def case_inline_edge_960_and_961(e):
    for n in (959, 960, 961):
        body = bytes((i * 7) % 256 for i in range(n))
        st, out = e.call("CEcho", body)
        expect(st == 200 and out == body, f"echo of {n} bytes: {st} len {len(out)}")
        st, out = e.call("CInvokeSize", f"CEcho:{n}".encode())
        expect((st, out) == (200, str(n).encode()), f"internal echo of {n} bytes: {st} {out!r}")


def case_shm_payload_2mib(e):
    body = os.urandom(2 * MIB)
    st, out = e.call("CEcho", body)
    expect(st == 200 and out == body, f"2 MiB echo: {st} len {len(out)}")
    st, out = e.call("CBig", str(2 * MIB).encode())
    expect(st == 200 and out == b"x" * (2 * MIB), f"2 MiB output: {st} len {len(out)}")
    st, out = e.call("CInvokeSize", f"CEcho:{2 * MIB}".encode())
    expect((st, out) == (200, str(2 * MIB).encode()), f"2 MiB internal: {st} {out!r}")


def case_oversize(e):
    st, out = e.call_raw("CEcho", b"z" * (LIMIT + 1))
    expect(st == 413 and error_kind(out) == "PAYLOAD_TOO_LARGE", f"HTTP: {st} {out[:200]!r}")
    st, out = e.call("CInvokeSize", f"CEcho:{LIMIT + 1}".encode())
    expect(st == 200 and out.startswith(b"ERR PAYLOAD_TOO_LARGE"), f"invoke: {st} {out[:200]!r}")
    st, out = e.call("CBig", str(LIMIT + 1).encode())
    expect(st == 413 and error_kind(out) == "PAYLOAD_TOO_LARGE", f"output: {st} {out[:200]!r}")
    st, out = e.call("CEcho", b"still fine")
    expect((st, out) == (200, b"still fine"), f"after: {st} {out!r}")


def case_handler_error(e):
    for name in ["CFail", "Fail"]:
        st, out = e.call(name, b"x")
        expect(st == 500 and error_kind(out) == "HANDLER_FAILED", f"{name}: {st} {out!r}")
        expect(json.loads(out).get("message") == "Fail was called", f"{name} message: {out!r}")
    st, out = e.call("CInvoke", b"CFail:x")
    expect(out.startswith(b"ERR HANDLER_FAILED") and b"Fail was called" in out, f"internal: {out!r}")
    st, out = e.call("CEcho", b"next")
    expect((st, out) == (200, b"next"), f"after: {st} {out!r}")


def case_internal_call(e):
    st, out = e.call("Foo", b"Gloam")
    expect((st, out) == (200, b"From function Bar: Hello, Gloam"), f"Foo: {st} {out!r}")
    st, out = e.call("CInvoke", b"CEcho:ping")
    expect((st, out) == (200, b"ping"), f"C->C: {st} {out!r}")
    if e.has_rust:
        st, out = e.call("CInvoke", b"RustEcho:ping rust")
        expect((st, out) == (200, b"ping rust"), f"C->Rust: {st} {out!r}")
    else:
        print("    (C->Rust skipped: target/debug/hello-rust not built)")


def case_concurrent_internal_calls(e):
    st, out = e.call("CFanout", b"CEcho")
    expect((st, out) == (200, b"a;b;c"), f"CFanout: {st} {out!r}")
    st, out = e.call("Fanout", b"x")
    expect((st, out) == (200, b"x0;x1;x2"), f"Fanout: {st} {out!r}")
    results = []

    def one(i):
        results.append(e.call("CFanout", b"CEcho"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    expect(results == [(200, b"a;b;c")] * 4, f"parallel: {results!r}")


def case_unknown_function(e):
    st, out = e.call("NoSuchFunction", b"x")
    expect(st == 404 and error_kind(out) == "FUNCTION_NOT_FOUND", f"HTTP: {st} {out!r}")
    expect(b"NoSuchFunction" in out, f"names the function: {out!r}")
    st, out = e.call("CInvoke", b"NoSuchFunction:x")
    expect(out.startswith(b"ERR FUNCTION_NOT_FOUND") and b"NoSuchFunction" in out, f"invoke: {out!r}")


def wait_workers(e, name, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for f in e.status().get("functions", []):
            if f.get("name") == name and f.get("idle", 0) >= 1:
                return
        time.sleep(0.05)
    raise AssertionError(f"{name} has no idle worker after {timeout}s")


def case_worker_crash(e):
    st, out = e.call("CCrash", b"crash")
    expect(st == 502 and error_kind(out) == "WORKER_CRASHED", f"crash: {st} {out!r}")
    wait_workers(e, "CCrash")
    st, out = e.call("CCrash", b"hello")
    expect((st, out) == (200, b"alive"), f"after restart: {st} {out!r}")


def case_deadline(e):
    st, out = e.call("CSleep", b"1000", headers={"X-Gloam-Timeout": "200"})
    expect(st == 504 and error_kind(out) == "TIMEOUT", f"sleep past deadline: {st} {out!r}")
    st, out = e.call("CDeadline", b"", headers={"X-Gloam-Timeout": "5000"})
    expect((st, out) == (200, b"deadline"), f"deadline visible: {st} {out!r}")
    st, out = e.call("CInvoke", b"CSleep:1000", headers={"X-Gloam-Timeout": "300"})
    expect(st == 504 or out.startswith(b"ERR TIMEOUT"), f"nested inherits deadline: {st} {out!r}")
    st, out = e.call("CSleep", b"10")
    expect((st, out) == (200, b"slept 10 ms"), f"after: {st} {out!r}")


def case_method_name(e):
    st, out = e.call("grpc:conformance.Methods", b"", {"X-Gloam-Method": "Second"})
    expect((st, out) == (200, b"Second"), f"Second: {st} {out!r}")
    st, out = e.call("grpc:conformance.Methods")
    expect((st, out) == (200, b"First"), f"First: {st} {out!r}")
    st, out = e.call("Method")
    expect((st, out) == (200, b""), f"plain: {st} {out!r}")


def case_passed_on_kind(e):
    # PassOn returns the status of its failed gloam_ctx_invoke(): the call keeps that kind.
    st, out = e.call("PassOn", b"SleepShort:2000")
    expect(st == 504 and error_kind(out) == "TIMEOUT", f"timeout passed on: {st} {out!r}")
    message = json.loads(out).get("message", "")
    expect("SleepShort" in message and not message.startswith("timeout: "), f"message: {out!r}")
    st, out = e.call("PassOn", b"Crash:x")
    expect(st == 502 and error_kind(out) == "WORKER_CRASHED", f"crash passed on: {st} {out!r}")
    st, out = e.call("PassOn", b"NoSuchFunction:x")
    expect(st == 404 and error_kind(out) == "FUNCTION_NOT_FOUND", f"not found: {st} {out!r}")
    # A plain handler failure passed on stays HANDLER_FAILED with its message.
    st, out = e.call("PassOn", b"Fail:x")
    expect(st == 500 and error_kind(out) == "HANDLER_FAILED", f"fail passed on: {st} {out!r}")
    expect(json.loads(out).get("message") == "Fail was called", f"fail message: {out!r}")
    # InvokeOther reports the failure with gloam_ctx_fail() and returns 1: HANDLER_FAILED.
    st, out = e.call("InvokeOther", b"NoSuchFunction:x")
    expect(st == 500 and error_kind(out) == "HANDLER_FAILED", f"InvokeOther: {st} {out!r}")
    wait_workers(e, "Crash")
    wait_workers(e, "SleepShort")


def case_v1_host(e):
    st, out = e.call("V1Bar", b"")
    expect((st, out) == (200, b"Hello, World"), f"V1Bar: {st} {out!r}")
    st, out = e.call("V1Bar", b"v1")
    expect((st, out) == (200, b"Hello, v1"), f"V1Bar: {st} {out!r}")
    st, out = e.call("V1Foo", b"Nightcore")
    expect((st, out) == (200, b"From function Bar: Hello, Nightcore"), f"V1Foo: {st} {out!r}")


def sanitizer_reports(log_dir):
    found = []
    for name in sorted(os.listdir(log_dir)) if os.path.isdir(log_dir) else []:
        with open(os.path.join(log_dir, name), errors="replace") as f:
            text = f.read()
        for marker in ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer"):
            if marker in text:
                found.append(f"{name}: {marker}")
    return found


CASES = [
    case_echo,
    case_empty_input,
    case_inline_edge_960_and_961,
    case_shm_payload_2mib,
    case_oversize,
    case_handler_error,
    case_internal_call,
    case_concurrent_internal_calls,
    case_unknown_function,
    case_deadline,
    case_passed_on_kind,
    case_method_name,
    case_v1_host,
    case_worker_crash,
]


def main():
    build = os.path.abspath(sys.argv[1])
    only = sys.argv[2:]
    tmp = tempfile.mkdtemp(prefix="gloam-c-test-")
    passed = failed = 0
    engine = None
    try:
        engine = Engine(build, tmp)
        for case in CASES:
            name = case.__name__[len("case_"):]
            if only and name not in only:
                continue
            t0 = time.monotonic()
            try:
                case(engine)
                passed += 1
                print(f"ok   {name} ({time.monotonic() - t0:.2f}s)", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {name}", flush=True)
                traceback.print_exc()
        rc = engine.stop()
        engine = None
        ipc = os.path.join(tmp, "ipc")
        leftovers = os.listdir(ipc) if os.path.isdir(ipc) else []
        reports = sanitizer_reports(os.path.join(tmp, "logs"))
        if reports:
            failed += 1
            print("FAIL sanitizers: " + "; ".join(reports), flush=True)
        else:
            passed += 1
            print("ok   sanitizers (no ASan/UBSan report in worker logs)", flush=True)
        if rc == 0 and not leftovers:
            passed += 1
            print("ok   clean_shutdown", flush=True)
        else:
            failed += 1
            print(f"FAIL clean_shutdown: exit {rc}, left {leftovers}", flush=True)
    except Exception:
        failed += 1
        traceback.print_exc()
    finally:
        if engine is not None:
            engine.proc.kill()
            engine.proc.wait()
            print("engine log tail:\n" + engine.tail(), file=sys.stderr)
    if failed:
        print(f"logs kept in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
