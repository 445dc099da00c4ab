#!/usr/bin/env python3
"""Cross-language matrix: every language calls every language's Echo through an internal call.

One engine (`target/debug/gloam up`), one config with ten functions: `<Lang>InvokeOther` and
`<Lang>Echo` for Python, Go, Node, C and Rust, served by the hello examples. For each of the 25
(caller, callee) pairs it POSTs `<Callee>Echo:<payload>` to `<Caller>InvokeOther`, with a small
binary payload (with ':' and non-UTF-8 bytes in it) and a 2 MiB one (by descriptor both ways),
and checks the answer is byte-exact. Prints one line per pair and "N passed, N failed".

Usage: ci/matrix/matrix.py   (ci/matrix/test.sh builds what it needs first)
Python 3 standard library only.
"""

import http.client
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEBUG = os.path.join(ROOT, "target", "debug")
GLOAM = os.path.join(DEBUG, "gloam")
VENV_PYTHON = os.environ.get(
    "GLOAM_PY", os.path.join(ROOT, "target", "venv-python", "bin", "python")
)
MIB = 1024 * 1024

# language -> (command, args)
LANGS = {
    "Python": (VENV_PYTHON, [os.path.join(ROOT, "examples", "hello-python", "main.py")]),
    "Go": (os.path.join(DEBUG, "hello-go"), []),
    "Node": ("node", [os.path.join(ROOT, "examples", "hello-node", "main.js")]),
    "C": (os.path.join(DEBUG, "hello-c", "hello_c"), []),
    "Rust": (os.path.join(DEBUG, "hello-rust"), []),
}


def config(tmp):
    """Return the gloam.toml of the matrix: ten functions, private IPC root and port."""
    lines = [
        "[engine]",
        f"ipc_root = {json.dumps(os.path.join(tmp, 'ipc'))}",
        'listen = "127.0.0.1:0"',
        f"log_dir = {json.dumps(os.path.join(tmp, 'logs'))}",
        "",
    ]
    for lang, (command, args) in LANGS.items():
        for handler in ("InvokeOther", "Echo"):
            lines += [
                f"[functions.{lang}{handler}]",
                f"command = {json.dumps(command)}",
                f"args = {json.dumps(args)}",
                f'env = {{ GLOAM_HANDLER = "{handler}" }}',
                "min_workers = 1",
                "",
            ]
    return "\n".join(lines)


def start(tmp):
    """Start `gloam up`; return the process, host and port once it is ready."""
    path = os.path.join(tmp, "gloam.toml")
    with open(path, "w") as f:
        f.write(config(tmp))
    stderr = open(os.path.join(tmp, "engine.stderr"), "wb")
    proc = subprocess.Popen(
        [GLOAM, "up", path], stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL
    )
    lines = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line.decode(errors="replace").strip())
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    end = time.monotonic() + 90
    while True:
        try:
            line = lines.get(timeout=max(0.1, end - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            proc.kill()
            proc.wait()
            raise RuntimeError("engine not ready (or exited); log:\n" + tail(tmp))
        if line.startswith("gloam: ready http://"):
            host, port = line[len("gloam: ready http://") :].rsplit(":", 1)
            return proc, host, int(port)


def tail(tmp, n=4000):
    """Return the end of the engine's log."""
    try:
        with open(os.path.join(tmp, "engine.stderr"), errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def post(host, port, name, body):
    """POST `body` to function `name`; return the status and the body."""
    conn = http.client.HTTPConnection(host, port, timeout=120)
    try:
        conn.request("POST", f"/function/{name}", body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def main():
    """Run the 25 pairs and the clean-shutdown check; return the exit code."""
    for need in [GLOAM] + [c for c, _ in LANGS.values() if os.sep in c]:
        if not os.access(need, os.X_OK):
            print(f"missing {need}: run ci/matrix/test.sh (it builds everything needed)")
            print("0 passed, 1 failed")
            return 1
    rng = random.Random(8)
    small = b"small:\x00\xff\xfe: payload \xe2\x82"  # ':' and invalid UTF-8 on purpose
    big = bytes(rng.getrandbits(8) for _ in range(2 * MIB))
    tmp = tempfile.mkdtemp(prefix="gloam-matrix-")
    passed = failed = 0
    proc = None
    try:
        proc, host, port = start(tmp)
        for caller in LANGS:
            for callee in LANGS:
                t0 = time.monotonic()
                problems = []
                for label, payload in (("small", small), ("2MiB", big)):
                    try:
                        body = f"{callee}Echo:".encode() + payload
                        st, out = post(host, port, f"{caller}InvokeOther", body)
                    except OSError as e:
                        problems.append(f"{label}: {e}")
                        continue
                    if st != 200:
                        problems.append(f"{label}: HTTP {st} {out[:200]!r}")
                    elif out != payload:
                        pairs = enumerate(zip(out, payload))
                        shortest = min(len(out), len(payload))
                        diff = next((i for i, (a, b) in pairs if a != b), shortest)
                        problems.append(
                            f"{label}: {len(out)} bytes back for {len(payload)}, "
                            f"first difference at {diff}"
                        )
                ms = (time.monotonic() - t0) * 1000
                pair = f"{caller:>6} -> {callee:<6}"
                if problems:
                    failed += 1
                    print(f"FAIL {pair} " + "; ".join(problems), flush=True)
                else:
                    passed += 1
                    what = f"small ({len(small)} B) and 2 MiB byte-exact"
                    print(f"ok   {pair} {what} ({ms:.0f} ms)", flush=True)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            rc = "no exit within 60 s"
        proc = None
        ipc = os.path.join(tmp, "ipc")
        left = os.listdir(ipc) if os.path.isdir(ipc) else []
        if rc == 0 and not left:
            passed += 1
            print("ok   clean shutdown (exit 0, IPC root empty)")
        else:
            failed += 1
            print(f"FAIL clean shutdown: exit {rc}, left {left}")
    except Exception as e:  # the engine did not start
        failed += 1
        print(f"FAIL {e}")
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    if failed:
        print(f"engine log tail ({tmp}):\n{tail(tmp)}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
