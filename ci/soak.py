#!/usr/bin/env python3
"""The load and the killer of ci/soak.sh, against a running stack.

Client threads call Echo, Repeat (-> Echo, sequential: direct lanes) and Fanout (-> Echo x3 at
once) in a closed loop over keep-alive connections. Every request's payload is unique and
its answer is known in advance, so a 200 with any other body is a wrong answer; one request
in eight carries a payload past the 960-byte inline area (sealed memfds passed by descriptor). Every request sets
X-Gloam-Timeout; a request with no answer within that deadline plus a margin is hung. A
killer thread SIGKILLs a random worker process of the stack (callers and callees alike) every
N ms, after checking that the process descends from the engine.

usage: soak.py --url URL --engine-pid PID --seconds S [--clients C] [--kill-every-ms N]
               [--deadline-ms D] [--margin-ms M] --out REPORT.json
Prints progress to stderr and writes the figures as JSON.
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import urllib.parse

FUNCTIONS = ("Echo", "Repeat", "Fanout")


def rss_kib(pid):
    """The resident set of process `pid` in KiB (VmRSS), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def parent_of(pid):
    """The parent pid of `pid`, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces and parentheses).
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def descends_from(pid, ancestor):
    """Whether `ancestor` is among the first few ancestors of `pid`."""
    for _ in range(6):
        pid = parent_of(pid)
        if pid is None or pid <= 1:
            return False
        if pid == ancestor:
            return True
    return False


def make_call(rng, client, seq):
    """A unique call: (function, body bytes, expected answer bytes)."""
    tag = f"c{client}n{seq}"
    if rng.random() < 0.125:
        # Past the inline area: the payload goes by descriptor (each way, each hop).
        tag += "p" + "".join(rng.choice("abcdefghij") for _ in range(1200))
    kind = rng.choice(FUNCTIONS)
    if kind == "Echo":
        return kind, tag.encode(), tag.encode()
    if kind == "Repeat":
        parts = [f"{tag}.{i}" for i in range(3)]
        return kind, ("Echo:" + ",".join(parts)).encode(), ",".join(parts).encode()
    return kind, tag.encode(), ";".join(f"{tag}#{i}" for i in range(3)).encode()


class Figures:
    """What the clients and the killer counted, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.by_status = {}
        self.hung = []
        self.broken = []
        self.wrong = []
        self.kills = {}
        self.kill_failures = 0

    def answered(self, status, kind):
        key = f"{status} {kind}" if kind else str(status)
        with self.lock:
            self.by_status[key] = self.by_status.get(key, 0) + 1


def client_loop(n, url, args, stop, figures):
    rng = random.Random(1000 + n)
    timeout = (args.deadline_ms + args.margin_ms) / 1000
    conn = None
    seq = 0
    while not stop.is_set():
        seq += 1
        function, body, expected = make_call(rng, n, seq)
        if conn is None:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        with figures.lock:
            figures.sent += 1
        started = time.monotonic()
        try:
            conn.request(
                "POST",
                f"/function/{function}",
                body=body,
                headers={"X-Gloam-Timeout": str(args.deadline_ms)},
            )
            resp = conn.getresponse()
            data = resp.read()
        except (socket.timeout, TimeoutError):
            waited = time.monotonic() - started
            with figures.lock:
                figures.hung.append(f"{function} {body[:40]!r}: no answer in {waited:.1f} s")
            conn.close()
            conn = None
            continue
        except (OSError, http.client.HTTPException) as e:
            with figures.lock:
                figures.broken.append(f"{function} {body[:40]!r}: {e!r}")
            conn.close()
            conn = None
            continue
        if resp.status == 200:
            figures.answered(200, None)
            if data != expected:
                with figures.lock:
                    figures.wrong.append(
                        f"{function} {body[:40]!r}: got {data[:80]!r}, expected {expected[:80]!r}"
                    )
            continue
        try:
            kind = json.loads(data).get("error", "?")
        except ValueError:
            kind = "not JSON"
            with figures.lock:
                figures.wrong.append(
                    f"{function}: {resp.status} with a non-JSON body {data[:80]!r}"
                )
        figures.answered(resp.status, kind)


def status(url):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", "/_/status")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def killer_loop(url, args, stop, figures):
    rng = random.Random(7)
    while not stop.wait(args.kill_every_ms / 1000):
        try:
            workers = [w for w in status(url)["workers"] if w["function"] in FUNCTIONS]
        except (OSError, ValueError, http.client.HTTPException):
            with figures.lock:
                figures.kill_failures += 1
            continue
        if not workers:
            continue
        w = rng.choice(workers)
        if not descends_from(w["pid"], args.engine_pid):
            with figures.lock:
                figures.kill_failures += 1
            continue
        try:
            os.kill(w["pid"], signal.SIGKILL)
        except OSError:
            with figures.lock:
                figures.kill_failures += 1
            continue
        with figures.lock:
            figures.kills[w["function"]] = figures.kills.get(w["function"], 0) + 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--engine-pid", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--kill-every-ms", type=int, default=1000)
    p.add_argument("--deadline-ms", type=int, default=5000)
    p.add_argument("--margin-ms", type=int, default=5000)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    url = urllib.parse.urlparse(args.url)

    figures = Figures()
    rss_start = rss_kib(args.engine_pid)
    stop = threading.Event()
    stop_killer = threading.Event()
    clients = [
        threading.Thread(target=client_loop, args=(n, url, args, stop, figures), daemon=True)
        for n in range(args.clients)
    ]
    killer = threading.Thread(
        target=killer_loop, args=(url, args, stop_killer, figures), daemon=True
    )
    for t in clients:
        t.start()
    killer.start()
    start = time.monotonic()
    next_report = start + 30
    while time.monotonic() - start < args.seconds:
        time.sleep(0.2)
        if time.monotonic() >= next_report:
            next_report += 30
            with figures.lock:
                print(
                    f"soak: {time.monotonic() - start:.0f} s, {figures.sent} calls, "
                    f"{sum(figures.kills.values())} kills, {len(figures.wrong)} wrong, "
                    f"{len(figures.hung) + len(figures.broken)} without an answer",
                    file=sys.stderr,
                )
    stop_killer.set()
    killer.join()
    stop.set()
    # Each client finishes its call in flight: bounded by the deadline plus the margin.
    for t in clients:
        t.join((args.deadline_ms + args.margin_ms) / 1000 + 5)
    stuck = sum(1 for t in clients if t.is_alive())
    elapsed = time.monotonic() - start
    try:
        counts = {
            f["name"]: {k: f[k] for k in ("completed", "failed", "direct_calls")}
            for f in status(url)["functions"]
        }
    except (OSError, ValueError, http.client.HTTPException) as e:
        counts = {"error": repr(e)}
    report = {
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "kill_every_ms": args.kill_every_ms,
        "deadline_ms": args.deadline_ms,
        "sent": figures.sent,
        "by_status": dict(sorted(figures.by_status.items())),
        "hung": len(figures.hung) + stuck,
        "broken": len(figures.broken),
        "wrong": len(figures.wrong),
        "kills": figures.kills,
        "kill_failures": figures.kill_failures,
        "engine_counts": counts,
        "rss_kib_start": rss_start,
        "rss_kib_end": rss_kib(args.engine_pid),
        "examples": {
            "hung": figures.hung[:5],
            "broken": figures.broken[:5],
            "wrong": figures.wrong[:5],
        },
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
