"""The Python side of the gRPC example.

Function ``grpc:demo.PyGreeter`` serves service ``demo.PyGreeter`` of ``../greeter.proto``. The
handler reads the method from ``ctx.method``
and decodes the request with the code protoc generated (``greeter_pb2``): the payload of a
gRPC call is the method's raw protobuf message.

Regenerate ``greeter_pb2.py`` after changing the ``.proto`` (from ``examples/grpc``)::

    python -m grpc_tools.protoc -I. --python_out=python --pyi_out=python greeter.proto
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gloam  # noqa: E402
import greeter_pb2  # noqa: E402


async def greeter(ctx: gloam.Context, data: bytes) -> bytes:
    """Serve every method of ``demo.PyGreeter``."""
    req = greeter_pb2.HelloRequest.FromString(data)
    if ctx.method == "SayHello":
        msg = f"Hello, {req.name} (from Python, method SayHello)"
        return greeter_pb2.HelloReply(message=msg).SerializeToString()
    if ctx.method == "Fail":
        raise RuntimeError("Fail was called")
    if ctx.method == "Crash":
        os._exit(3)
    if ctx.method == "Nested":
        # The call's deadline (from grpc-timeout) travels with the internal call; an
        # uncaught timeout keeps its kind (gRPC DEADLINE_EXCEEDED).
        await ctx.invoke("Sleep", str(req.sleep_ms).encode())
        return greeter_pb2.HelloReply(message="woke up").SerializeToString()
    if ctx.method == "Nop":
        return b""
    raise ValueError(f"no method {ctx.method!r}")


if __name__ == "__main__":
    gloam.serve({"PyGreeter": greeter})
