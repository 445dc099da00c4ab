-- wrk script for ci/wrk_point.py: POST an empty body, and print the run as one JSON line.
wrk.method = "POST"
wrk.body = ""

done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    '{"secs":%.3f,"requests":%d,"errors":%d,"per_s":%.1f,"latency":{"p50_us":%.1f,"p90_us":%.1f,' ..
    '"p99_us":%.1f,"p999_us":%.1f,"max_us":%.1f}}\n',
    secs, summary.requests, errors, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
