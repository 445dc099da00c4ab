"""The checks of ci/polyglot-sandbox.sh against a running, sandboxed polyglot stack.

Calls every function of examples/polyglot/gloam.toml over HTTP and checks the answers: the
whole chain Frontend (Python) -> Auth (Go) -> Render (Node.js, fan-out to Digest in C) ->
Checksum (C) -> Store (Rust) with a small order and with one of 50 items (every internal call
then carries more than 1 KiB), errors travelling back up, each step called directly, and every
language's Echo with 4 KiB and 256 KiB payloads. Then `gloam status` (text and JSON) must show
every function sandboxed with a worker, and every worker process must run in a user and a
mount namespace other than the engine's.

Usage: python3 ci/polyglot_sandbox.py --url URL --gloam GLOAM --engine-pid PID --config FILE
Standard library only; prints one line per check and exits 1 at the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from typing import Any

ECHOES = ["PythonEcho", "GoEcho", "NodeEcho", "CEcho", "RustEcho"]
CHAIN = ["python", "go", "node", "c", "rust"]


class Failed(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failed(what)


def call(url: str, name: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(f"{url}/function/{name}", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def ok_json(url: str, name: str, doc: Any) -> dict[str, Any]:
    status, body = call(url, name, json.dumps(doc).encode())
    check(status == 200, f"{name}: HTTP {status}: {body[:300]!r}")
    answer: dict[str, Any] = json.loads(body)
    return answer


def crc(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return f"{zlib.crc32(data):08x}"


def order(user: str, n: int) -> dict[str, Any]:
    items = [{"sku": f"SKU{i:03d}", "qty": 1 + i % 3, "price_cents": 100 + 7 * i} for i in range(n)]
    return {"user": user, "token": f"demo-{user}", "items": items}


def check_chain(url: str) -> None:
    for user, n in [("ada", 2), ("vip-grace", 50)]:
        doc = order(user, n)
        size = len(json.dumps(doc))
        out = ok_json(url, "Frontend", doc)
        check(out.get("path") == CHAIN, f"Frontend ({n} items): path {out.get('path')}")
        subtotal = sum(i["qty"] * i["price_cents"] for i in doc["items"])
        check(out["frontend"]["subtotal_cents"] == subtotal, f"subtotal {out['frontend']}")
        check(out["frontend"]["items"] == n, f"items {out['frontend']}")
        discount = 10 if user.startswith("vip-") else 0
        check(out["auth"]["discount_pct"] == discount, f"auth {out['auth']}")
        check(out["render"]["total_cents"] == round(subtotal * (100 - discount) / 100), "total")
        lines = out["render"]["lines"]
        check(len(lines) == n, f"{len(lines)} receipt lines for {n} items")
        for line in lines:  # each line's digest came from Digest (C), all at once
            m = re.fullmatch(r"(.*)  \[([0-9a-f]{8})\]", line)
            check(m is not None and crc(m.group(1)) == m.group(2), f"digest of {line!r}")
        check(re.fullmatch(r"[0-9a-f]{8}", out["checksum"]["crc32"]) is not None, "checksum")
        check(out["store"]["lang"] == "rust" and out["store"]["bytes_stored"] > 0, "store")
        print(f"  ok  Frontend: a {size}-byte order of {n} items through {' -> '.join(CHAIN)}"
              f" ({n} Digest calls in the fan-out), {out['checksum']['bytes']} bytes checksummed")
        if n == 50:
            check(out["checksum"]["bytes"] > 1024, "the chain's internal calls carried > 1 KiB")


def check_errors(url: str) -> None:
    bad = {"user": "mallory", "token": "guess", "items": [{"sku": "A1", "qty": 1, "price_cents": 1}]}
    for doc, needle in [(bad, "bad token"), ({"user": "ada", "token": "demo-ada", "items": []}, "items")]:
        status, body = call(url, "Frontend", json.dumps(doc).encode())
        err = json.loads(body)
        check(status == 500 and err["error"] == "HANDLER_FAILED" and needle in err["message"],
              f"Frontend with {doc}: HTTP {status} {body!r}")
    print("  ok  errors travel back up: a bad token (Go) and an empty order (Python) answer 500 HANDLER_FAILED")


def check_steps(url: str) -> None:
    doc = order("ada", 3)
    for name, path in [("Auth", CHAIN[1:]), ("Render", CHAIN[2:])]:
        out = ok_json(url, name, doc)
        check(out.get("path") == path, f"{name}: path {out.get('path')}")
    text = json.dumps(doc, separators=(",", ":"))
    status, body = call(url, "Checksum", text.encode())
    check(status == 200, f"Checksum: HTTP {status}: {body[:300]!r}")
    out = json.loads(body)
    check(out["checksum"] == {"lang": "c", "crc32": crc(text), "bytes": len(text)}, f"Checksum {out['checksum']}")
    check(out["path"] == ["c", "rust"], f"Checksum: path {out['path']}")
    out = ok_json(url, "Store", dict(doc, checksum={"lang": "c", "crc32": "0badcafe"}))
    check(out["path"] == ["c", "rust"] and out["store"]["key"] == "orders/0badcafe", f"Store {out}")
    status, body = call(url, "Digest", b"hello sandbox")
    check(status == 200 and body.decode() == crc("hello sandbox"), f"Digest: HTTP {status} {body!r}")
    print("  ok  Auth, Render, Checksum, Store and Digest called directly")


def check_echoes(url: str) -> None:
    payloads = [os.urandom(4 << 10), os.urandom(256 << 10)]
    for name in ECHOES:
        for p in payloads:
            status, body = call(url, name, p)
            check(status == 200 and body == p, f"{name}: {len(p)} bytes: HTTP {status}, {len(body)} bytes back")
    print(f"  ok  {', '.join(ECHOES)}: 4 KiB and 256 KiB of random bytes back intact")


def check_status(url: str, gloam: str, config: str) -> list[int]:
    with urllib.request.urlopen(f"{url}/_/status", timeout=10) as r:
        status = json.load(r)
    names = re.findall(r"^\[functions\.([A-Za-z]+)\]", open(config).read(), re.M)
    check(len(names) == 11, f"{config} names {len(names)} functions")
    funcs = {f["name"]: f for f in status["functions"]}
    check(sorted(funcs) == sorted(names), f"status lists {sorted(funcs)}")
    for n in names:
        check(funcs[n]["isolation"] == "sandbox", f"{n}: isolation {funcs[n]['isolation']!r} in /_/status")
        check(funcs[n]["restarts"] == 0, f"{n}: {funcs[n]['restarts']} restarts: {funcs[n].get('last_exit')}")
    addr = url.removeprefix("http://")
    text = subprocess.run([gloam, "status", "--addr", addr], check=True, capture_output=True, text=True).stdout
    for n in names:
        check(re.search(rf"^{n}: isolation sandbox, limits none$", text, re.M) is not None,
              f"`gloam status` does not show {n} sandboxed:\n{text}")
    pids = sorted({w["pid"] for w in status["workers"] if w.get("pid")})
    serving = {w["function"] for w in status["workers"]}
    check(serving == set(names), f"functions without a worker: {set(names) - serving}")
    print(f"  ok  `gloam status` and /_/status: all {len(names)} functions `isolation sandbox`, "
          f"no restart; {len(status['workers'])} workers in {len(pids)} processes")
    return pids


def check_namespaces(engine_pid: int, pids: list[int]) -> None:
    def ns(pid: int, kind: str) -> str:
        return os.readlink(f"/proc/{pid}/ns/{kind}")

    engine = {kind: ns(engine_pid, kind) for kind in ("user", "mnt", "pid")}
    for pid in pids:
        for kind, theirs in engine.items():
            check(ns(pid, kind) != theirs, f"worker process {pid} shares the engine's {kind} namespace")
    print(f"  ok  every worker process ({len(pids)}) in its own user, mount and PID namespaces")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--gloam", required=True)
    ap.add_argument("--engine-pid", type=int, required=True)
    ap.add_argument("--config", required=True)
    a = ap.parse_args()
    try:
        check_chain(a.url)
        check_errors(a.url)
        check_steps(a.url)
        check_echoes(a.url)
        pids = check_status(a.url, a.gloam, a.config)
        check_namespaces(a.engine_pid, pids)
    except (Failed, KeyError, TypeError, ValueError) as e:
        print(f"  FAILED  {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
