#!/usr/bin/env python3
"""Turns the JSON lines of ci/bench-isolation.sh into bench/results/<date>-isolation/results.json
and results.md: cold start, warm per-call latency and idle CPU of `isolation = "process"` against
`"sandbox"`, with verdicts against issue 19's goals.

usage: bench_isolation_report.py RAW.jsonl OUT_DIR --date D --load-before L --load-after L
                                 --cpus N --kernel K --bwrap V --commit C --settings S
       bench_isolation_report.py --line JSON     # one progress line for one result
"""
import argparse
import json
import math
import os
import statistics
import sys

MODES = ("process", "sandbox")
COLD_GOAL_MS = 30.0  # a sandbox's cold start adds at most this
WARM_GOAL_PCT = 5.0  # warm p50 and p99 at most this far apart
# /proc/<pid>/stat counts clock ticks (100 per second): over a 10 s period one tick is 0.1 % of
# a core, the resolution of an idle figure.
TICK_PCT_OF_CORE_10S = 0.1


def line(result):
    """One progress line for a `gloam bench http` or `gloam bench idle` result."""
    if "latency" in result:
        lat = result["latency"]
        return "p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs, %.0f calls/s" % (
            lat["p50_us"], lat["p99_us"], lat["p999_us"], result["achieved_per_s"])
    return "%.2f %% of a core, %d processes, %d workers" % (
        100 * result["cores"], result["processes"], result["workers"])


def pct(a, b):
    """How far `b` is from `a`, in % of `a`."""
    return 100.0 * (b - a) / a if a else float("nan")


def spread_pct(values):
    """The range of `values` in % of their median."""
    m = statistics.median(values)
    return 100.0 * (max(values) - min(values)) / m if m else float("nan")


def nearest_rank(values, q):
    v = sorted(values)
    return v[min(len(v), max(1, math.ceil(q * len(v)))) - 1]


def no_nan(x):
    """`x` with NaN (a figure that could not be measured) as null, for strict JSON readers."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: no_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [no_nan(v) for v in x]
    return x


def verdict(diff, noise, goal, unit):
    """`diff` judged against `goal`, knowing that rounds of one mode differ by up to `noise`."""
    if abs(diff) <= goal:
        return f"meets the goal ({diff:+.1f} {unit}, at most {goal:g} {unit})"
    if abs(diff) <= noise:
        return (f"inconclusive: {diff:+.1f} {unit}, but rounds of one mode differ by up to "
                f"{noise:.1f} {unit} (noise)")
    return f"misses the goal ({diff:+.1f} {unit}, at most {goal:g} {unit})"


def cold(rows):
    out = {}
    for m in MODES:
        ms = [r["cold_start_us"] / 1000.0 for r in rows if r["mode"] == m]
        out[m] = {"runs_ms": ms, "p50_ms": statistics.median(ms),
                  "p90_ms": nearest_rank(ms, 0.9), "max_ms": max(ms)}
    added = out["sandbox"]["p50_ms"] - out["process"]["p50_ms"]
    out["added_p50_ms"] = added
    out["added_max_ms"] = out["sandbox"]["max_ms"] - out["process"]["max_ms"]
    out["verdict"] = (f"meets the goal (+{added:.1f} ms at p50, at most {COLD_GOAL_MS:g} ms)"
                      if added <= COLD_GOAL_MS else
                      f"misses the goal (+{added:.1f} ms at p50, at most {COLD_GOAL_MS:g} ms)")
    return out


WARM_METRICS = {
    "p50_us": lambda r: r["latency"]["p50_us"],
    "p99_us": lambda r: r["latency"]["p99_us"],
    "p999_us": lambda r: r["latency"]["p999_us"],
    "calls_per_s": lambda r: r["achieved_per_s"],
    "cpu_us_per_call": lambda r: (r.get("cpu") or {}).get("us_per_call", float("nan")),
}


def warm(rows):
    out = {}
    for m in MODES:
        results = [r["result"] for r in sorted(rows, key=lambda r: r["round"]) if r["mode"] == m]
        rounds = [{k: f(r) for k, f in WARM_METRICS.items()} for r in results]
        out[m] = {
            "rounds": rounds,
            "median": {k: statistics.median(x[k] for x in rounds) for k in WARM_METRICS},
            "spread_pct": {k: spread_pct([x[k] for x in rounds]) for k in WARM_METRICS},
        }
    out["diff_pct"] = {k: pct(out["process"]["median"][k], out["sandbox"]["median"][k])
                       for k in WARM_METRICS}
    # Round r of each mode ran back to back, so the machine's mood of the moment weighs on both:
    # the difference within each round is a better estimate than one between the medians.
    paired = {k: [pct(p[k], s[k]) for p, s in zip(out["process"]["rounds"], out["sandbox"]["rounds"])]
              for k in WARM_METRICS}
    out["paired_diff_pct"] = {}
    for k, v in paired.items():
        lo, hi, coverage = median_interval(v)
        out["paired_diff_pct"][k] = {"rounds": v, "median": statistics.median(v), "low": lo,
                                     "high": hi, "coverage": coverage}
    out["verdict"] = {k: paired_verdict(out["paired_diff_pct"][k]) for k in ("p50_us", "p99_us")}
    return out


def median_interval(values, wanted=0.9):
    """A confidence interval for the median that assumes nothing of the distribution (the sign
    test's): [k-th smallest, k-th largest] with the largest k that still covers `wanted`, and its
    coverage; with too few values, the whole range and what it covers."""
    v, n = sorted(values), len(values)

    def below(k):  # P(Bin(n, 1/2) < k)
        return sum(math.comb(n, i) for i in range(k)) / 2**n

    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * below(k + 1) >= wanted:
        k += 1
    return v[k - 1], v[n - k], 1 - 2 * below(k)


def paired_verdict(d):
    """Is the sandbox slower by more than the goal? Judged on the interval of the median paired
    difference: all of it at most the goal meets it, all of it above misses it."""
    m, lo, hi = d["median"], d["low"], d["high"]
    where = (f"median paired difference {m:+.1f} %, {100 * d['coverage']:.0f} % confidence "
             f"interval {lo:+.1f} to {hi:+.1f} %")
    goal = WARM_GOAL_PCT
    if -goal <= lo and hi <= goal:
        return f"meets the goal of at most {goal:g} % ({where})"
    if hi < -goal:
        return f"sandbox faster by more than {goal:g} %, which only noise explains ({where})"
    if lo > goal:
        return f"misses the goal of at most {goal:g} % ({where})"
    return f"inconclusive: the machine's noise is wider than the goal of {goal:g} % ({where})"


def idle(rows):
    out = {}
    for m in MODES:
        results = [r["result"] for r in rows if r["mode"] == m]
        pcts = [100.0 * r["cores"] for r in results]
        out[m] = {"rounds_pct_of_core": pcts, "median_pct_of_core": statistics.median(pcts),
                  "processes": [r["processes"] for r in results],
                  "workers": [r["workers"] for r in results],
                  "secs": [r["secs"] for r in results],
                  "engine_peak_rss_kib": [r["engine_peak_rss_kib"] for r in results]}
    diff = round(out["sandbox"]["median_pct_of_core"] - out["process"]["median_pct_of_core"], 6) + 0.0
    noise = max(max(out[m]["rounds_pct_of_core"]) - min(out[m]["rounds_pct_of_core"])
                for m in MODES)
    secs = min(min(out[m]["secs"]) for m in MODES)
    resolution = TICK_PCT_OF_CORE_10S * 10.0 / secs
    out["diff_points"] = diff
    out["resolution_points"] = resolution
    if abs(diff) <= resolution:
        out["verdict"] = (f"unchanged ({diff:+.2f} points of a core, within the resolution of "
                          f"{resolution:.2f}: one clock tick over the period)")
    else:
        out["verdict"] = verdict(diff, noise, resolution, "points of a core")
    return out


def fmt(x, digits=1):
    return "n/a" if x != x else f"{x:,.{digits}f}"


def markdown(report):
    mc, c, w, i = report["machine"], report["cold"], report["warm"], report["idle"]
    out = [
        f"# Isolation: process against sandbox ({report['date']})",
        "",
        f"`ci/bench-isolation.sh` at {report['commit']}, {mc['cpus']} CPUs, kernel "
        f"{mc['kernel']}, {mc['bwrap']}; load average (1/5/15 min) {mc['load_before']} before, "
        f"{mc['load_after']} after. Settings: {report['settings']}.",
        "",
        "## Cold start (spawn → READY, Rust worker)",
        "",
        "| isolation | runs | p50 ms | p90 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in MODES:
        x = c[m]
        out.append(f"| {m} | {len(x['runs_ms'])} | {fmt(x['p50_ms'])} | {fmt(x['p90_ms'])} | "
                   f"{fmt(x['max_ms'])} |")
    out += ["", f"Sandbox adds {fmt(c['added_p50_ms'])} ms at p50: {c['verdict']}.", "",
            "## Warm calls (closed loop, 1 connection, `Nop`; median of the rounds, [min–max])",
            "",
            "| isolation | rounds | p50 µs | p99 µs | p99.9 µs | calls/s | server CPU µs/call |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for m in MODES:
        x = w[m]
        cells = []
        for k, d in (("p50_us", 1), ("p99_us", 1), ("p999_us", 1), ("calls_per_s", 0),
                     ("cpu_us_per_call", 1)):
            v = [r[k] for r in x["rounds"]]
            cells.append(f"{fmt(x['median'][k], d)} [{fmt(min(v), d)}–{fmt(max(v), d)}]")
        out.append(f"| {m} | {len(x['rounds'])} | " + " | ".join(cells) + " |")
    keys = ("p50_us", "p99_us", "p999_us", "calls_per_s", "cpu_us_per_call")
    d = w["diff_pct"]
    out.append("| sandbox vs process, medians | | " + " | ".join(f"{d[k]:+.1f} %" for k in keys) + " |")
    pd = w["paired_diff_pct"]
    cov = 100 * pd["p50_us"]["coverage"]
    out.append(f"| sandbox vs process, paired rounds: median [{cov:.0f} % interval] | | " + " | ".join(
        f"{pd[k]['median']:+.1f} % [{pd[k]['low']:+.1f} to {pd[k]['high']:+.1f}]" for k in keys) + " |")
    out += ["", f"- p50: {w['verdict']['p50_us']}", f"- p99: {w['verdict']['p99_us']}", "",
            "## Idle CPU (engine + everything under it + listed workers)", "",
            "| isolation | workers | processes counted | % of one core per round | median |",
            "|---|---:|---:|---|---:|"]
    for m in MODES:
        x = i[m]
        out.append(f"| {m} | {x['workers'][0]} | {x['processes'][0]} | "
                   + ", ".join(fmt(v, 2) for v in x["rounds_pct_of_core"])
                   + f" | {fmt(x['median_pct_of_core'], 2)} |")
    out += ["", f"Sandbox vs process: {i['verdict']}.", ""]
    return "\n".join(out)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--line":
        print(line(json.loads(sys.argv[2])))
        return
    p = argparse.ArgumentParser()
    p.add_argument("raw")
    p.add_argument("out_dir")
    for flag in ("date", "load-before", "load-after", "cpus", "kernel", "bwrap", "commit",
                 "settings"):
        p.add_argument(f"--{flag}", required=True)
    a = p.parse_args()
    rows = [json.loads(x) for x in open(a.raw) if x.strip()]

    def by(kind):
        return [r for r in rows if r["kind"] == kind]

    report = {
        "bench": "isolation",
        "date": a.date,
        "commit": a.commit,
        "settings": a.settings,
        "machine": {"cpus": int(a.cpus), "kernel": a.kernel, "bwrap": a.bwrap,
                    "load_before": a.load_before, "load_after": a.load_after},
        "goals": {"cold_added_ms": COLD_GOAL_MS, "warm_diff_pct": WARM_GOAL_PCT,
                  "idle": "unchanged"},
        "cold": cold(by("cold")),
        "warm": warm(by("warm")),
        "idle": idle(by("idle")),
        "raw": rows,
    }
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "results.json"), "w") as f:
        json.dump(no_nan(report), f, indent=1, allow_nan=False)
        f.write("\n")
    with open(os.path.join(a.out_dir, "results.md"), "w") as f:
        f.write(markdown(report))


if __name__ == "__main__":
    main()
