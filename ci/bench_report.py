#!/usr/bin/env python3
"""Turns the JSON lines of ci/bench.sh into bench/results/<date>.json, a Markdown summary, and
the latest table in BENCHMARKS.md (between the bench:begin / bench:end markers).

usage: bench_report.py RESULTS.jsonl OUT.json OUT.md BENCHMARKS.md
"""
import json
import os
import platform
import statistics
import subprocess
import sys

WHAT = {
    "nop_seq": "Gloam: external `Nop`, closed loop, 1 connection",
    "echo_http_seq": "baseline: bare hyper HTTP/1.1 echo, closed loop, 1 connection",
    "internal_rust": "Gloam: internal `Nop` call from a Rust handler (measured in the handler)",
    "grpc_unix": "baseline: gRPC unary (tonic) over a Unix socket, 1 connection",
    "foo_bar_chain": "Gloam: external `Foo` → internal `Bar`, closed loop, 1 connection",
    "echo_1mib": "Gloam: external `Echo` of 1 MiB, closed loop, 1 connection",
    "echo_http_1mib": "baseline: hyper echo of 1 MiB, closed loop, 1 connection",
    "fifo_roundtrip": "Gloam: raw FIFO channel 1 KiB round trip between two processes (floor)",
}
# (group, Gloam's name, baseline's name, label)
PAIRS = [
    ("seq", "nop_seq", "echo_http_seq", "external Nop / bare HTTP echo (sequential)"),
    ("open_2000", "nop_open_2000", "echo_http_open_2000", "external Nop / bare HTTP echo, open loop 2k/s"),
    ("open_5000", "nop_open_5000", "echo_http_open_5000", "external Nop / bare HTTP echo, open loop 5k/s"),
    ("open_10000", "nop_open_10000", "echo_http_open_10000", "external Nop / bare HTTP echo, open loop 10k/s"),
    ("open_20000", "nop_open_20000", "echo_http_open_20000", "external Nop / bare HTTP echo, open loop 20k/s"),
    ("open32_20000", "nop_open32_20000", "echo_http_open32_20000",
     "external Nop / bare HTTP echo, open loop 20k/s over 32 connections"),
] + [
    (f"wrk_t{t}_c{c}", f"wrk_nop_t{t}_c{c}", f"wrk_echo_t{t}_c{c}",
     f"external Nop / bare HTTP echo, wrk -t{t} -c{c}")
    for t in (1, 2) for c in (8, 32, 128)
] + [
    ("internal", "internal_rust", "grpc_unix", "internal call (Rust) / gRPC unary over UDS"),
    ("mib", "echo_1mib", "echo_http_1mib", "1 MiB echo / bare HTTP echo of 1 MiB"),
]


def flat(line):
    """One result as (p50, p90, p99, p999, max, per_s, cpu_us_per_call, cores)."""
    r = line.get("result") or {}
    if "bench" in r:  # fifo_roundtrip's own JSON
        return dict(p50=r["p50_us"], p90=None, p99=r["p99_us"], p999=r["p999_us"], max=r["max_us"],
                    per_s=r["per_s"], cpu=None, cores=None, errors=0)
    lat = r.get("latency", r)
    cpu = r.get("cpu") or {}
    return dict(
        p50=lat.get("p50_us"), p90=lat.get("p90_us"), p99=lat.get("p99_us"),
        p999=lat.get("p999_us"), max=lat.get("max_us"),
        per_s=r.get("achieved_per_s", r.get("per_s")),
        cpu=cpu.get("us_per_call"), cores=cpu.get("cores"),
        errors=r.get("errors", 0) + r.get("unsent", 0),
    )


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=1):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def main():
    src, out_json, out_md, bench_md = sys.argv[1:5]
    lines = [json.loads(l) for l in open(src) if l.strip()]
    by_name = {}
    for l in lines:
        by_name.setdefault(l["name"], []).append(l)

    def summary(name):
        ok = [flat(l) for l in by_name.get(name, []) if "result" in l]
        if not ok:
            return None
        return {k: med([o[k] for o in ok]) for k in ok[0]} | {"rounds": len(ok)}

    ratios = []
    for group, a, b, label in PAIRS:
        ra = [l for l in by_name.get(a, []) if "result" in l]
        rb = [l for l in by_name.get(b, []) if "result" in l]
        per_round = []
        for x in ra:
            y = next((y for y in rb if y["round"] == x["round"]), None)
            if y is None:
                continue
            fx, fy = flat(x), flat(y)
            per_round.append({
                k: (fx[k] / fy[k]) if fx[k] and fy[k] else None
                for k in ("p50", "p99", "per_s")
            })
        if per_round:
            ratios.append({
                "pair": label, "gloam": a, "baseline": b, "rounds": len(per_round),
                "per_round": per_round,
                **{f"{k}_median": med([p[k] for p in per_round]) for k in ("p50", "p99", "per_s")},
                **{f"{k}_range": [min(v), max(v)] if (v := [p[k] for p in per_round if p[k]]) else None
                   for k in ("p50", "p99")},
            })
    fifo, internal = summary("fifo_roundtrip"), summary("internal_rust")
    if fifo and internal and fifo["p50"]:
        ratios.append({"pair": "internal call (Rust) / raw FIFO round trip", "gloam": "internal_rust",
                       "baseline": "fifo_roundtrip", "rounds": 1,
                       "p50_median": internal["p50"] / fifo["p50"],
                       "p99_median": internal["p99"] / fifo["p99"] if fifo["p99"] else None,
                       "per_s_median": internal["per_s"] / fifo["per_s"] if fifo["per_s"] else None})

    idle = next((l.get("result") for l in by_name.get("idle", []) if "result" in l), None)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    machine = {
        "cpus": os.cpu_count(), "kernel": platform.release(),
        "loadavg_at_end": os.getloadavg(), "commit": commit,
    }
    date = os.path.basename(out_json)[:-len(".json")]
    json.dump({"date": date, "machine": machine, "runs": lines, "ratios": ratios, "idle": idle},
              open(out_json, "w"), indent=1)

    md = [f"Run `{date}` on commit `{commit}`, {machine['cpus']} CPUs, kernel {machine['kernel']}, "
          f"load average at the end {machine['loadavg_at_end'][0]:.2f} "
          f"(the machine is shared: read ratios, not absolute figures).", "",
          "| benchmark | rounds | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | calls/s | server CPU µs/call | errors |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = ["nop_seq", "echo_http_seq"]
    for rate in (2000, 5000, 10000, 20000):
        order += [f"nop_open_{rate}", f"echo_http_open_{rate}"]
    order += ["nop_open32_20000", "echo_http_open32_20000"]
    order += [f"wrk_{who}_t{t}_c{c}" for t in (1, 2) for c in (8, 32, 128) for who in ("nop", "echo")]
    order += ["internal_rust", "internal_c", "internal_go", "internal_python", "internal_node",
              "grpc_unix", "fifo_roundtrip", "foo_bar_chain", "echo_1mib", "echo_http_1mib"]
    skipped = []
    for name in order:
        s = summary(name)
        if s is None:
            for l in by_name.get(name, []):
                if "skipped" in l:
                    skipped.append(f"{name}: {l['skipped']}")
                elif "error" in l:
                    skipped.append(f"{name}: the run failed")
            continue
        what = WHAT.get(name)
        if what is None and name.startswith("nop_open_"):
            what = f"Gloam: external `Nop`, open loop {int(name.rsplit('_', 1)[1]) // 1000}k/s, 4 connections"
        if what is None and name.startswith("echo_http_open_"):
            what = f"baseline: hyper echo, open loop {int(name.rsplit('_', 1)[1]) // 1000}k/s, 4 connections"
        if what is None and name.startswith("wrk_"):
            who, t, c = name.split("_")[1:]
            server = "Gloam: external `Nop`" if who == "nop" else "baseline: hyper echo"
            what = f"{server}, wrk -{t} -{c}"
        if name.endswith("open32_20000"):
            server = "Gloam: external `Nop`" if name.startswith("nop") else "baseline: hyper echo"
            what = f"{server}, open loop 20k/s, 32 connections"
        if what is None:
            what = name
        md.append(f"| {what} | {s['rounds']} | {fmt(s['p50'])} | {fmt(s['p90'])} | {fmt(s['p99'])} | "
                  f"{fmt(s['p999'])} | {fmt(s['max'])} | {fmt(s['per_s'])} | {fmt(s['cpu'])} | "
                  f"{fmt(s['errors'], 0)} |")
    md += ["", "Figures are medians over the rounds. Open loop: latency from the scheduled send time "
           "(no coordinated omission). Internal calls: measured inside the handler. Server CPU: "
           "engine + workers (or the baseline server) from /proc, per completed call.", "",
           "Ratios, Gloam / baseline, computed per round of alternating runs (A B A B ...), "
           "median and range over rounds:", "",
           "| pair | rounds | p50 ratio | p99 ratio | throughput ratio |", "|---|---:|---:|---:|---:|"]
    for r in ratios:
        rng = r.get("p50_range")
        p50 = fmt(r["p50_median"], 2) + (f" ({rng[0]:.2f}–{rng[1]:.2f})" if rng and r["rounds"] > 1 else "")
        md.append(f"| {r['pair']} | {r['rounds']} | {p50} | {fmt(r['p99_median'], 2)} | {fmt(r['per_s_median'], 2)} |")
    if idle:
        md += ["", f"Idle: engine + {idle['workers']} idle workers ({idle['processes']} processes) used "
               f"{idle['cpu_s']:.3f} CPU s over {idle['secs']:.1f} s ({idle['cores'] * 100:.2f} % of a core). "
               f"Engine peak RSS (VmHWM, after the whole run): {idle['engine_peak_rss_kib'] / 1024:.1f} MiB."]
    if skipped:
        md += ["", "Not measured: " + "; ".join(skipped) + "."]
    text = "\n".join(md) + "\n"
    open(out_md, "w").write(text)

    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if os.path.exists(bench_md):
        doc = open(bench_md).read()
        if begin in doc and end in doc:
            head, rest = doc.split(begin, 1)
            _, tail = rest.split(end, 1)
            open(bench_md, "w").write(f"{head}{begin}\n{text}{end}{tail}")


if __name__ == "__main__":
    main()
