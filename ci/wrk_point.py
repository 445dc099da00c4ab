#!/usr/bin/env python3
"""One wrk load point against a server, with the server's CPU per call: prints one JSON object
in the shape ci/bench_report.py reads (per_s, latency p50/p90/p99/p99.9/max in µs, errors, cpu).

usage: wrk_point.py URL PID THREADS CONNECTIONS DURATION_S

PID is the server's top process; its CPU and that of every descendant (for Gloam: the launcher
and the workers) is read from /proc before and after the run. wrk POSTs an empty body and
reports its own percentiles through ci/wrk_json.lua.
"""
import json
import os
import subprocess
import sys

HZ = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))


def tree(pid):
    """pid and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass  # gone since the listing
    return total


def main():
    url, pid, threads, conns, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
    before = cpu_ticks(tree(pid))
    run = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs:g}s", "-s", os.path.join(HERE, "wrk_json.lua"), url],
        capture_output=True, text=True, check=True,
    )
    after = cpu_ticks(tree(pid))
    line = next(l for l in reversed(run.stdout.splitlines()) if l.startswith("{"))
    r = json.loads(line)
    done = max(r["requests"] - r["errors"], 1)
    cpu_s = (after - before) / HZ
    r["cpu"] = {"us_per_call": cpu_s / done * 1e6, "cores": cpu_s / r["secs"]}
    print(json.dumps(r))


if __name__ == "__main__":
    main()
