-- wrk script for scripts/bench: prints the whole run as one JSON line, prefixed "BENCH ",
-- which bench/bench.py parses (counts, bytes, errors by kind, latency percentiles in µs).
-- wrk counts a response with status > 399 in errors.status.
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH {"requests":%d,"bytes":%d,"duration_us":%d,' ..
        '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
        '"p50_us":%d,"p99_us":%d}\n',
        summary.requests, summary.bytes, summary.duration,
        e.connect, e.read, e.write, e.status, e.timeout,
        math.floor(latency:percentile(50)), math.floor(latency:percentile(99))))
end
