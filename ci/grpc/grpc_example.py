#!/usr/bin/env python3
"""The gRPC example (examples/grpc/gloam.toml) end to end, with clients we did not write.

Starts ``gloam up`` on the example's functions (private ports, IPC root, logs and store), then
calls the Go (demo.Greeter), Python (demo.PyGreeter) and Rust (demo.RustGreeter) services with
grpcurl, the Go grpc package (examples/grpc/goclient) and Python's grpcio, on the HTTP port
(h2c) and on the gRPC-only port: SayHello answers; Fail is UNKNOWN with its message; Nested
with a deadline shorter than its internal call is DEADLINE_EXCEEDED; an unknown method is
UNIMPLEMENTED. Prints one line per check and "N passed, N failed".

Usage: ci/grpc/grpc_example.py   (ci/grpc/test.sh builds what it needs first)
"""

import os
import re
import subprocess
import sys
import tempfile
import threading

import grpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(ROOT, "examples", "grpc")
sys.path.insert(0, os.path.join(EXAMPLE, "python"))
import greeter_pb2  # noqa: E402

GLOAM = os.path.join(ROOT, "target", "debug", "gloam")
GO_CLIENT = os.path.join(ROOT, "target", "debug", "grpc-client-go")
GRPCURL = os.environ.get("GRPCURL", os.path.join(ROOT, "target", "tools", "bin", "grpcurl"))
SERVICES = {"Go": "demo.Greeter", "Python": "demo.PyGreeter", "Rust": "demo.RustGreeter"}

results = []


def check(what, ok, detail=""):
    """Record and print one check."""
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {what}{'' if ok else ': ' + detail}", flush=True)


def config(tmp):
    """Write the example's gloam.toml with private ports, IPC root, logs and store."""
    with open(os.path.join(EXAMPLE, "gloam.toml")) as f:
        text = f.read()
    text = text.replace('listen = "127.0.0.1:8080"', 'listen = "127.0.0.1:0"')
    text = text.replace('grpc_listen = "127.0.0.1:50051"', 'grpc_listen = "127.0.0.1:0"')
    text = re.sub(r'log_dir = ".*"', f'log_dir = "{tmp}/logs"\nipc_root = "{tmp}/ipc"', text)
    text = re.sub(r'store = ".*"', f'store = "{tmp}/async.redb"', text)
    path = os.path.join(EXAMPLE, f".test-{os.getpid()}.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def start(cfg, tmp):
    """``gloam up``; returns the process, the HTTP address and the gRPC-only address."""
    stderr = open(os.path.join(tmp, "engine.stderr"), "wb")
    p = subprocess.Popen([GLOAM, "up", cfg], stdout=subprocess.PIPE, stderr=stderr, text=True)
    found = {}

    def read():
        for line in p.stdout:
            if line.startswith("gloam: grpc "):
                found["grpc"] = line.split()[-1]
            if line.startswith("gloam: ready http://"):
                found["http"] = line.strip().removeprefix("gloam: ready http://")
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(90)
    if "http" not in found:
        p.kill()
        sys.exit(f"engine not ready in 90 s; see {tmp}/engine.stderr")
    return p, found["http"], found["grpc"]


def grpcurl(addr, method, data, *extra):
    """Call ``method`` with grpcurl; return whether it succeeded and what it printed."""
    r = subprocess.run(
        [GRPCURL, "-plaintext", "-import-path", EXAMPLE, "-proto", "greeter.proto",
         "-d", data, *extra, addr, method],
        capture_output=True, text=True, timeout=60,
    )
    return r.returncode == 0, r.stdout + r.stderr


def go_client(addr, method, name, sleep_ms=0, timeout_ms=20000):
    """Call ``method`` with the Go grpc package; return ``OK msg`` or ``ERR code msg``."""
    r = subprocess.run([GO_CLIENT, addr, method, name, str(sleep_ms), str(timeout_ms)],
                       capture_output=True, text=True, timeout=60)
    return r.stdout.strip()


def grpcio(channel, method, name, sleep_ms=0, timeout=20.0):
    """Call ``method`` with grpcio; return ``("OK", message)`` or (status name, details)."""
    call = channel.unary_unary(
        method,
        request_serializer=greeter_pb2.HelloRequest.SerializeToString,
        response_deserializer=greeter_pb2.HelloReply.FromString,
    )
    try:
        reply = call(greeter_pb2.HelloRequest(name=name, sleep_ms=sleep_ms), timeout=timeout)
        return "OK", reply.message
    except grpc.RpcError as e:
        return e.code().name, e.details()


def main():
    """Run every check against one engine; return the exit status."""
    tmp = tempfile.mkdtemp(prefix="gloam-grpc-")
    cfg = config(tmp)
    proc, http_addr, grpc_addr = start(cfg, tmp)
    try:
        for lang, svc in SERVICES.items():
            hello = f"Hello, Ada (from {lang}, method SayHello)"
            for port, addr in (("http port", http_addr), ("grpc port", grpc_addr)):
                ok, out = grpcurl(addr, f"{svc}/SayHello", '{"name": "Ada"}')
                check(f"grpcurl {svc}/SayHello on the {port}", ok and hello in out, out)
            out = go_client(grpc_addr, f"/{svc}/SayHello", "Ada")
            check(f"Go grpc {svc}/SayHello", out == f"OK {hello}", out)
            with grpc.insecure_channel(http_addr) as ch:
                got = grpcio(ch, f"/{svc}/SayHello", "Ada")
                check(f"grpcio {svc}/SayHello", got == ("OK", hello), str(got))
                got = grpcio(ch, f"/{svc}/Fail", "x")
                failed = got[0] == "UNKNOWN" and "Fail was called" in got[1]
                check(f"grpcio {svc}/Fail is UNKNOWN", failed, str(got))
                got = grpcio(ch, f"/{svc}/Nested", "x", sleep_ms=5000, timeout=0.5)
                late = got[0] == "DEADLINE_EXCEEDED"
                check(f"grpcio {svc}/Nested past its deadline", late, str(got))
                got = grpcio(ch, f"/{svc}/Nope", "x")
                check(f"grpcio {svc}/Nope is UNIMPLEMENTED", got[0] == "UNIMPLEMENTED", str(got))
            out = go_client(grpc_addr, f"/{svc}/Fail", "x")
            failed = out.startswith("ERR Unknown") and "Fail was called" in out
            check(f"Go grpc {svc}/Fail is Unknown", failed, out)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.remove(cfg)
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
